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
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

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
    #[error("no address for {0}: {1}")]
    Dns(String, String),
    #[error("connect to {0}: {1}")]
    Connect(String, String),
    #[error("TLS with {0}: {1}")]
    Tls(String, String),
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
    let ips: Vec<std::net::IpAddr> = resolver
        .lookup_ip(format!("{host}.").as_str())
        .await
        .map_err(|e| FetchError::Dns(host.to_owned(), e.to_string()))?
        .iter()
        .take(4)
        .collect();
    let mut last = FetchError::Dns(host.to_owned(), "no address".into());
    let mut tcp = None;
    for ip in ips {
        match TcpStream::connect(SocketAddr::new(ip, PORT)).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = FetchError::Connect(format!("{host} [{ip}]"), e.to_string()),
        }
    }
    let tcp = tcp.ok_or(last)?;
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| FetchError::Tls(host.to_owned(), e.to_string()))?;
    let stream = tls
        .connect(name, tcp)
        .await
        .map_err(|e| FetchError::Tls(host.to_owned(), e.to_string()))?;
    let http = |e: hyper::Error| FetchError::Http(host.to_owned(), e.to_string());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    let driver = tokio::spawn(conn);
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
