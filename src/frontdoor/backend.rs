//! Backend connections (TCP, host name, Unix socket) and what a client hears
//! when its backend cannot be reached.

use std::io;
use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};

use crate::config::{Backend, Protocol};

/// A connected backend stream.
pub use crate::net::Stream as BackendStream;

/// Connect within `timeout`.
pub async fn connect(b: &Backend, timeout: Duration) -> io::Result<BackendStream> {
    let fut = async {
        Ok::<_, io::Error>(match b {
            Backend::Tcp(a) => BackendStream::Tcp(TcpStream::connect(a).await?),
            Backend::Host(h, p) => BackendStream::Tcp(TcpStream::connect((h.as_str(), *p)).await?),
            Backend::Unix(p) => BackendStream::Unix(UnixStream::connect(p).await?),
            Backend::BuiltinStatus | Backend::BuiltinChatmail => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("{b} is served in-process"),
                ))
            }
        })
    };
    let s = tokio::time::timeout(timeout, fut).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connect timed out after {timeout:?}"),
        )
    })??;
    if let BackendStream::Tcp(t) = &s {
        let _ = t.set_nodelay(true);
    }
    Ok(s)
}

/// What the client hears, in its own protocol, when the backend is down.
/// `None` where the protocol has no such line (raw, h2).
pub fn unavailable_message(p: Protocol, alpn: Option<&[u8]>) -> Option<&'static [u8]> {
    match p {
        Protocol::Imap => Some(b"* BYE [UNAVAILABLE] Mail service temporarily unavailable, try again later\r\n"),
        Protocol::Smtp => Some(b"421 4.3.2 Service not available, try again later\r\n"),
        Protocol::Http if alpn != Some(b"h2") => Some(
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 32\r\nConnection: close\r\n\r\nBackend temporarily unavailable\n",
        ),
        _ => None,
    }
}
