//! The client-certificate verifier: authentication by pinned public key.
//!
//! This is the one `danger` file. It replaces X.509 chain validation only:
//! - it takes the end-entity certificate's SubjectPublicKeyInfo and asks the
//!   `KeyPolicy` whether that key is acceptable (pinned, or allowed through
//!   as anonymous); issuer, names, validity dates and extensions are
//!   skipped on purpose — only the key counts;
//! - it still requires proof of possession: the handshake signature
//!   (CertificateVerify) is checked against that same SPKI with the crypto
//!   provider's verification algorithms (Ed25519, ECDSA P-256/P-384, RSA
//!   PKCS#1 and PSS);
//! - it sends no CA hints (an empty `certificate_authorities` list), so
//!   clients offer whatever certificate they hold.
//!
//! rustls does not call this verifier on a resumed session, and a verifier
//! cannot hand an identity back, so the connection code derives the identity
//! from `peer_certificates()` after every handshake, against the registry
//! then in force.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

/// Why a presented key may not complete the handshake. Always the client's
/// fault: it presented the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyRefusal {
    /// A kind or size of key frontdoor does not accept.
    #[error("not an acceptable key type or size: {0}")]
    Unacceptable(#[from] crate::registry::KeyError),
    /// A key the registry does not hold, on a listener that requires one.
    #[error("unknown key {0}")]
    Unknown(crate::registry::Fingerprint),
}

/// Decides whether a presented key may complete the handshake.
pub trait KeyPolicy: Send + Sync + fmt::Debug {
    /// `Ok` lets the handshake continue; `Err` fails it with the
    /// `bad_certificate` alert, and is for the log.
    fn check(&self, spki: &[u8]) -> Result<(), KeyRefusal>;
}

/// Extract the DER SubjectPublicKeyInfo of a certificate, ignoring the rest.
pub fn spki_of(cert: &[u8]) -> Option<Vec<u8>> {
    use x509_parser::prelude::*;
    let (_, c) = X509Certificate::from_der(cert).ok()?;
    Some(c.tbs_certificate.subject_pki.raw.to_vec())
}

#[derive(Debug)]
pub struct PinnedKeyVerifier {
    policy: Arc<dyn KeyPolicy>,
    mandatory: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl PinnedKeyVerifier {
    pub fn new(policy: Arc<dyn KeyPolicy>, mandatory: bool) -> Self {
        Self {
            policy,
            mandatory,
            algs: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }

    fn verify_sig(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
        tls13: bool,
    ) -> Result<HandshakeSignatureValid, Error> {
        let bad = || Error::InvalidCertificate(CertificateError::BadSignature);
        if tls13 && !tls13_scheme(dss.scheme) {
            return Err(bad());
        }
        let spki = spki_of(cert.as_ref())
            .ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let spki = SubjectPublicKeyInfoDer::from(spki.as_slice());
        let key = webpki::RawPublicKeyEntity::try_from(&spki)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let algs = self
            .algs
            .mapping
            .iter()
            .find(|(s, _)| *s == dss.scheme)
            .map(|(_, a)| *a)
            .ok_or_else(bad)?;
        // TLS 1.3 names exactly one algorithm per scheme; TLS 1.2's ECDSA
        // schemes do not fix the curve, so try each candidate (as rustls does).
        let candidates = if tls13 {
            &algs[..algs.len().min(1)]
        } else {
            algs
        };
        for alg in candidates {
            if key.verify_signature(*alg, message, dss.signature()).is_ok() {
                return Ok(HandshakeSignatureValid::assertion());
            }
        }
        Err(bad())
    }
}

/// RFC 8446 §4.2.3: PKCS#1 v1.5 and SHA-1 schemes are not for TLS 1.3 handshakes.
fn tls13_scheme(s: SignatureScheme) -> bool {
    use SignatureScheme::*;
    matches!(
        s,
        ECDSA_NISTP256_SHA256
            | ECDSA_NISTP384_SHA384
            | ECDSA_NISTP521_SHA512
            | ED25519
            | ED448
            | RSA_PSS_SHA256
            | RSA_PSS_SHA384
            | RSA_PSS_SHA512
    )
}

impl ClientCertVerifier for PinnedKeyVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let spki = spki_of(end_entity.as_ref())
            .ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
        match self.policy.check(&spki) {
            Ok(()) => Ok(ClientCertVerified::assertion()),
            // BadEncoding is what maps to the `bad_certificate` alert.
            Err(reason) => {
                tracing::debug!(%reason, "client key refused in handshake");
                Err(Error::InvalidCertificate(CertificateError::BadEncoding))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verify_sig(message, cert, dss, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verify_sig(message, cert, dss, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
