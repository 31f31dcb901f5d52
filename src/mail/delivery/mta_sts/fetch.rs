//! Fetching a policy (RFC 8461 §3.3): `GET
//! https://mta-sts.<domain>/.well-known/mta-sts.txt` over HTTP/1.1 (hyper's
//! client) in TLS (tokio-rustls) whose certificate must verify for
//! `mta-sts.<domain>` against the delivery worker's trust anchors (the
//! system's roots plus `mail.delivery.ca_file`), whatever
//! `mail.delivery.tls` says. The host's addresses come from the worker's
//! resolver (`mail.dns.resolvers`).
//!
//! Bounds: the whole fetch within [`FETCH_TIMEOUT`], a body of at most
//! [`MAX_POLICY_BYTES`]; only `200` with a `text/plain` media type is taken
//! (a `3xx` is not followed, §3.3).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};

use crate::mail::delivery::https::{self, HttpsError};

pub use super::policy::MAX_POLICY_BYTES;

/// The whole fetch: connect, TLS, request, body (RFC 8461 §3.3 suggests a
/// minute).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// The well-known path (RFC 8461 §3.2).
pub const PATH: &str = "/.well-known/mta-sts.txt";
/// The HTTPS port.
pub const PORT: u16 = 443;

/// Why a policy could not be fetched.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Https(#[from] HttpsError),
    #[error("HTTP with {0}: {1}")]
    Http(String, String),
    #[error("{0} answered {1} (redirects are not followed)")]
    Status(String, u16),
    #[error("{0} served {1}, not text/plain")]
    MediaType(String, String),
    #[error("policy from {0} larger than {MAX_POLICY_BYTES} bytes")]
    TooLarge(String),
    #[error("fetching from {0} timed out")]
    Timeout(String),
}

/// The policy text of `domain` (not yet parsed).
pub async fn fetch(
    resolver: &hickory_resolver::TokioResolver,
    tls: &tokio_rustls::TlsConnector,
    domain: &str,
) -> Result<Vec<u8>, FetchError> {
    let host = format!("mta-sts.{}", domain.trim_end_matches('.'));
    match tokio::time::timeout(FETCH_TIMEOUT, fetch_inner(resolver, tls, &host)).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout(host)),
    }
}

async fn fetch_inner(
    resolver: &hickory_resolver::TokioResolver,
    tls: &tokio_rustls::TlsConnector,
    host: &str,
) -> Result<Vec<u8>, FetchError> {
    let addrs = https::resolve(resolver, host, PORT).await?;
    get(&addrs, tls, host).await
}

/// The GET itself, to the first of `addrs` that takes the connection.
async fn get(
    addrs: &[SocketAddr],
    tls: &tokio_rustls::TlsConnector,
    host: &str,
) -> Result<Vec<u8>, FetchError> {
    let (mut sender, driver) = https::connect(addrs, tls, host).await?;
    let http = |e: hyper::Error| FetchError::Http(host.to_owned(), e.to_string());
    let req = hyper::Request::get(PATH)
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "frontdoor MTA-STS")
        .body(Empty::<Bytes>::new())
        .map_err(|e| FetchError::Http(host.to_owned(), e.to_string()))?;
    let result = async {
        let resp = sender.send_request(req).await.map_err(http)?;
        if resp.status() != hyper::StatusCode::OK {
            return Err(FetchError::Status(host.to_owned(), resp.status().as_u16()));
        }
        let media = resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let essence = media.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("text/plain") {
            return Err(FetchError::MediaType(
                host.to_owned(),
                crate::log_safe::Escaped(&media).to_string(),
            ));
        }
        let body = Limited::new(resp.into_body(), MAX_POLICY_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    FetchError::TooLarge(host.to_owned())
                } else {
                    FetchError::Http(host.to_owned(), e.to_string())
                }
            })?;
        Ok(body.to_bytes().to_vec())
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const HOST: &str = "mta-sts.example.test";

    /// A TLS server for `HOST` answering one request with `response`, and
    /// a client connector trusting it.
    async fn server(response: Vec<u8>) -> (SocketAddr, tokio_rustls::TlsConnector) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![HOST.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().clone();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let scfg = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![der.clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(scfg));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            // A client refusing the certificate ends the handshake.
            let Ok(mut s) = acceptor.accept(tcp).await else {
                return;
            };
            let mut head = Vec::new();
            let mut b = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut b).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                head.extend_from_slice(&b[..n]);
            }
            assert!(head.starts_with(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\n"));
            let _ = s.write_all(&response).await;
            let _ = s.shutdown().await;
        });
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let ccfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (addr, tokio_rustls::TlsConnector::from(Arc::new(ccfg)))
    }

    async fn answer(response: &[u8]) -> Result<Vec<u8>, FetchError> {
        let (addr, tls) = server(response.to_vec()).await;
        get(&[addr], &tls, HOST).await
    }

    #[tokio::test]
    async fn takes_only_a_bounded_text_plain_200() {
        let policy = "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 60\n";
        let ok = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{policy}",
            policy.len()
        );
        assert_eq!(answer(ok.as_bytes()).await.unwrap(), policy.as_bytes());
        let redirect =
            b"HTTP/1.1 301 Moved\r\nLocation: https://evil.example/\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(
            answer(redirect).await,
            Err(FetchError::Status(_, 301))
        ));
        let html = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nhi";
        assert!(matches!(answer(html).await, Err(FetchError::MediaType(..))));
        let mut big = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            MAX_POLICY_BYTES + 1
        )
        .into_bytes();
        big.resize(big.len() + MAX_POLICY_BYTES + 1, b'a');
        assert!(matches!(answer(&big).await, Err(FetchError::TooLarge(_))));
    }

    #[tokio::test]
    async fn a_certificate_for_another_name_is_refused() {
        let (addr, tls) = server(b"HTTP/1.1 200 OK\r\n\r\n".to_vec()).await;
        assert!(matches!(
            get(&[addr], &tls, "mta-sts.other.test").await,
            Err(FetchError::Https(HttpsError::Tls(..)))
        ));
    }
}
