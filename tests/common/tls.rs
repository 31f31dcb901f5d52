//! TLS clients: rustls client configs (any server certificate, optional
//! client certificate, TLS 1.2 or 1.3) and a bounded line reader.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{ClientCert, T};

/// Accepts any server certificate: these tests are about the front door, not PKI.
#[derive(Debug)]
pub struct AnyServerCert;

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    V12,
    V13,
}

pub fn client_config(
    alpn: &[&str],
    cert: Option<ClientCert>,
    version: Tls,
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match version {
        Tls::V12 => &[&rustls::version::TLS12],
        Tls::V13 => &[&rustls::version::TLS13],
    };
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert));
    let mut cfg = match cert {
        Some(c) => b.with_client_auth_cert(c.chain, c.key).unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Arc::new(cfg)
}

/// TLS 1.3 connect with ALPN and SNI.
pub async fn connect(
    addr: SocketAddr,
    alpn: &[&str],
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    connect_with(addr, client_config(alpn, None, Tls::V13), sni).await
}

pub async fn connect_with(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let c = tokio_rustls::TlsConnector::from(cfg);
    let name = ServerName::try_from(sni.to_string()).unwrap();
    tokio::time::timeout(T, c.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))?
}

/// Read one CRLF-terminated line (bounded by time and size).
pub async fn read_line<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> std::io::Result<String> {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    tokio::time::timeout(T, async {
        while !out.ends_with(b"\n") && out.len() < 4096 {
            let n = s.read(&mut b).await?;
            if n == 0 {
                break;
            }
            out.push(b[0]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no line within timeout"))??;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
