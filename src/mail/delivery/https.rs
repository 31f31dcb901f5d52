//! One HTTPS connection of the delivery worker (MTA-STS policy fetches,
//! `/mxdeliv` deliveries): the host's addresses from the worker's resolver
//! (`mail.dns.resolvers`), TCP to the first of them that answers, TLS for
//! the host name with the connector the caller chose (which decides how
//! the certificate is checked), then hyper's HTTP/1.1 client over it.
//! Deadlines belong to the callers.

use std::net::SocketAddr;

use hyper::body::Body;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Most addresses of one host tried.
pub const MAX_ADDRS: usize = 4;

/// Why no HTTP request could be sent.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpsError {
    #[error("no address for {0}: {1}")]
    Dns(String, String),
    #[error("connect to {0}: {1}")]
    Connect(String, String),
    #[error("TLS with {0}: {1}")]
    Tls(String, String),
    #[error("HTTP with {0}: {1}")]
    Http(String, String),
}

/// The addresses of `host` (a name, no trailing dot) on `port`.
pub async fn resolve(
    resolver: &hickory_resolver::TokioResolver,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, HttpsError> {
    Ok(resolver
        .lookup_ip(format!("{host}.").as_str())
        .await
        .map_err(|e| HttpsError::Dns(host.to_owned(), e.to_string()))?
        .iter()
        .take(MAX_ADDRS)
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

/// An HTTP/1.1 connection to `host` at the first of `addrs` that takes it,
/// and the task driving it (abort it when done).
pub async fn connect<B>(
    addrs: &[SocketAddr],
    tls: &tokio_rustls::TlsConnector,
    host: &str,
) -> Result<(SendRequest<B>, JoinHandle<()>), HttpsError>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut last = HttpsError::Dns(host.to_owned(), "no address".into());
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = HttpsError::Connect(format!("{host} [{addr}]"), e.to_string()),
        }
    }
    let tcp = tcp.ok_or(last)?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| HttpsError::Tls(host.to_owned(), e.to_string()))?;
    let stream = tls
        .connect(name, tcp)
        .await
        .map_err(|e| HttpsError::Tls(host.to_owned(), e.to_string()))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| HttpsError::Http(host.to_owned(), e.to_string()))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((sender, driver))
}
