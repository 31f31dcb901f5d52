//! `mail.delivery.tls: encrypt`: a server certificate verifier that takes
//! any certificate. What it skips: the chain to a trusted root, the name,
//! the validity dates. What it keeps: the handshake signature, checked by
//! the crypto provider, so the session key belongs to the presented
//! certificate (encryption against a passive listener, no authentication).
//! Used only for outgoing SMTP, and only when the config asks for it.
//!
//! [`Reporting`] is the same for a domain whose MTA-STS policy is in
//! `testing` mode under `encrypt`: it runs the web PKI verifier and, when
//! that refuses, records why (and for which name) instead of refusing, so
//! that the worker can log what an `enforce` policy would have stopped.
//! Signatures are checked by the wrapped verifier.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Accepts any server certificate; delegates signature checks.
#[derive(Debug)]
pub struct AnyCert(pub Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Verifies as the web PKI does; a refusal is recorded, not returned.
#[derive(Debug)]
pub struct Reporting {
    inner: Arc<WebPkiServerVerifier>,
    /// The name and the reason of the last refusal.
    refused: Mutex<Option<(String, String)>>,
}

impl Reporting {
    pub fn new(inner: Arc<WebPkiServerVerifier>) -> Reporting {
        Reporting {
            inner,
            refused: Mutex::new(None),
        }
    }

    /// The last refusal (server name, reason), taken.
    pub fn take_refusal(&self) -> Option<(String, String)> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

impl ServerCertVerifier for Reporting {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Err(e) =
            self.inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            *self.refused.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((server_name.to_str().into_owned(), e.to_string()));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
