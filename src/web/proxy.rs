//! Path routes (`mail.chatmail.paths`): a request whose path is a route's
//! prefix, or starts with it and `/`, goes to that HTTP/1.1 backend
//! (`host:port` or `unix:/path`) through hyper's client, one backend
//! connection per request.
//!
//! Invariants: the backend learns the client address only from this front
//! door: client-sent `X-Real-IP`, `X-Forwarded-For`, `X-Forwarded-Proto`,
//! `X-Forwarded-Host`, `X-Forwarded-Port` and `Forwarded` are removed and
//! `X-Real-IP`/`X-Forwarded-For` set to the real address (`X-Forwarded-Proto:
//! https`); hop-by-hop headers (RFC 9110 §7.6.1) go no further, except that
//! an `Upgrade` request keeps its token and `Connection: upgrade`. A
//! `101 Switching Protocols` answer to it hands both upgraded streams to
//! the caller ([`Upgrade`]), which relays them once the client connection
//! has given up its stream.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};

use crate::config::Backend;
use crate::net::Stream;

/// How long the backend may take to send its response head.
pub const RESPONSE_HEAD_TIMEOUT: Duration = Duration::from_secs(60);

/// A path route, its backend parsed.
#[derive(Debug, Clone)]
pub struct PathBackend {
    /// Without a trailing `/`; empty matches every path.
    pub prefix: String,
    pub backend: Backend,
}

impl PathBackend {
    pub fn matches(&self, path: &str) -> bool {
        match path.strip_prefix(self.prefix.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/') || self.prefix.is_empty(),
            None => false,
        }
    }
}

/// Both sides of an upgraded request, ready once the client connection
/// has let its stream go.
pub struct Upgrade {
    pub client: OnUpgrade,
    pub backend: OnUpgrade,
    pub protocol: String,
}

/// Why a request did not reach its backend (the backend's side: 502/504).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("backend unreachable: {0}")]
    Connect(std::io::Error),
    #[error("backend HTTP handshake: {0}")]
    Handshake(hyper::Error),
    #[error("backend request failed: {0}")]
    Request(hyper::Error),
    #[error("backend sent no response head within {0:?}")]
    Timeout(Duration),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Headers a client must not set for the backend: the front door says them.
const FORWARDING: [&str; 6] = [
    "x-real-ip",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "forwarded",
];

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the old `Keep-Alive` and
/// `Proxy-Connection`).
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The `Upgrade` token a request asks for, when `Connection` names it.
pub fn upgrade_token(h: &HeaderMap) -> Option<String> {
    let asks = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let token = h.get(header::UPGRADE)?.to_str().ok()?.trim();
    (asks && !token.is_empty()).then(|| token.to_owned())
}

/// Remove hop-by-hop headers, those named in `Connection` too.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

/// The request headers as the backend gets them (pure).
pub fn backend_headers(h: &mut HeaderMap, client: SocketAddr, upgrade: Option<&str>) {
    strip_hop_by_hop(h);
    for n in FORWARDING {
        h.remove(n);
    }
    let ip = client.ip().to_canonical().to_string();
    if let Ok(v) = HeaderValue::from_str(&ip) {
        h.insert(HeaderName::from_static("x-real-ip"), v.clone());
        h.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    h.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("https"),
    );
    if let Some(t) = upgrade.and_then(|t| HeaderValue::from_str(t).ok()) {
        h.insert(header::UPGRADE, t);
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Send `req` to `backend`; on `101` to an upgrade request, `upgrade` gets
/// both sides.
pub async fn forward(
    mut req: Request<Incoming>,
    backend: &Backend,
    client: SocketAddr,
    connect_timeout: Duration,
    upgrade: &mut Option<Upgrade>,
) -> Result<Response<BoxBody<Bytes, hyper::Error>>, ProxyError> {
    let token = upgrade_token(req.headers());
    let client_upgrade = token.as_ref().map(|_| hyper::upgrade::on(&mut req));
    backend_headers(req.headers_mut(), client, token.as_deref());
    *req.version_mut() = hyper::Version::HTTP_11;

    let stream = connect(backend, connect_timeout)
        .await
        .map_err(ProxyError::Connect)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(ProxyError::Handshake)?;
    // Drives the backend connection while the response (or the upgrade)
    // is under way; ends with it.
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "path route backend connection ended with an error");
        }
    });
    let mut resp = tokio::time::timeout(RESPONSE_HEAD_TIMEOUT, sender.send_request(req))
        .await
        .map_err(|_| ProxyError::Timeout(RESPONSE_HEAD_TIMEOUT))?
        .map_err(ProxyError::Request)?;
    match (resp.status(), client_upgrade, token) {
        (StatusCode::SWITCHING_PROTOCOLS, Some(client), Some(requested)) => {
            let protocol = resp
                .headers()
                .get(header::UPGRADE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(&requested)
                .to_owned();
            *upgrade = Some(Upgrade {
                client,
                backend: hyper::upgrade::on(&mut resp),
                protocol: protocol.clone(),
            });
            strip_hop_by_hop(resp.headers_mut());
            if let Ok(v) = HeaderValue::from_str(&protocol) {
                resp.headers_mut().insert(header::UPGRADE, v);
            }
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        _ => strip_hop_by_hop(resp.headers_mut()),
    }
    Ok(resp.map(|b| b.boxed()))
}

/// Connect to a path route's backend within `timeout`.
async fn connect(b: &Backend, timeout: Duration) -> std::io::Result<Stream> {
    let fut = async {
        Ok::<_, std::io::Error>(match b {
            Backend::Tcp(a) => Stream::Tcp(TcpStream::connect(a).await?),
            Backend::Host(h, p) => Stream::Tcp(TcpStream::connect((h.as_str(), *p)).await?),
            Backend::Unix(p) => Stream::Unix(UnixStream::connect(p).await?),
            Backend::BuiltinStatus | Backend::BuiltinChatmail => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    format!("{b} is not an HTTP backend"),
                ))
            }
        })
    };
    let s = tokio::time::timeout(timeout, fut).await.map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("connect timed out after {timeout:?}"),
        )
    })??;
    if let Stream::Tcp(t) = &s {
        let _ = t.set_nodelay(true);
    }
    Ok(s)
}

/// Both sides' upgraded IO, for the tunnel.
pub type UpgradedIo = TokioIo<Upgraded>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_forwarding_headers_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert("x-real-ip", HeaderValue::from_static("6.6.6.6"));
        h.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("forwarded", HeaderValue::from_static("for=6.6.6.6"));
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret, Upgrade"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("host", HeaderValue::from_static("chat.example.org"));
        let token = upgrade_token(&h);
        assert_eq!(token.as_deref(), Some("websocket"));
        let client: SocketAddr = "[::ffff:192.0.2.7]:5555".parse().unwrap();
        backend_headers(&mut h, client, token.as_deref());
        assert_eq!(h.get("x-real-ip").unwrap(), "192.0.2.7");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "192.0.2.7");
        assert!(h.get("forwarded").is_none());
        assert!(h.get("x-secret").is_none());
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("host").unwrap(), "chat.example.org");
    }

    #[test]
    fn prefix_matches_whole_segments() {
        let p = PathBackend {
            prefix: "/relay".into(),
            backend: Backend::BuiltinStatus,
        };
        assert!(p.matches("/relay"));
        assert!(p.matches("/relay/x"));
        assert!(!p.matches("/relayx"));
        assert!(!p.matches("/"));
        let all = PathBackend {
            prefix: String::new(),
            backend: Backend::BuiltinStatus,
        };
        assert!(all.matches("/anything"));
    }
}
