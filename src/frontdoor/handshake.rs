//! The handshake phase of a connection: the upstream load balancer's PROXY
//! header (when the client address is trusted for one), the key-failure
//! throttle, the ClientHello peek that picks a passthrough route, and the
//! TLS handshake itself, each wait bounded by `timeouts.handshake`. A
//! connection inside a CONNECT tunnel (`ClientIo::Tunnel`) has neither an
//! upstream header nor a passthrough route: its TLS is always terminated.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use super::client_io::ClientIo;
use super::close::CloseReason;
use super::tls_stream;
use super::Shared;
use crate::config::{Config, Listener};
use crate::tls::client_hello::{self, Hello, Peeked};

/// How the handshake phase ended.
pub enum Handshaken {
    /// TLS terminated here.
    Tls(Box<tls_stream::TlsStream>),
    /// A passthrough route: the ClientHello is still unread in `tcp`.
    Passthrough {
        tcp: TcpStream,
        route: usize,
        hello: Hello,
    },
}

/// Run the handshake phase. `client` and `local` become the addresses an
/// upstream PROXY header gives, and `ip_slot` the real client's slot.
#[allow(clippy::too_many_arguments)]
pub async fn handshake(
    shared: &Shared,
    id: &str,
    l: &Listener,
    tls_config: Arc<rustls::ServerConfig>,
    io: ClientIo,
    client: &mut SocketAddr,
    local: &mut SocketAddr,
    ip_slot: &mut Option<super::per_ip::IpSlot>,
) -> Result<Handshaken, CloseReason> {
    let cfg = &shared.config;
    let mut tcp = match io {
        ClientIo::Tcp(tcp) => tcp,
        tunnel @ ClientIo::Tunnel(_) => {
            return Box::pin(terminate(shared, id, tls_config, tunnel, *client)).await
        }
    };
    if l.accept_proxy_from.iter().any(|n| n.contains(&client.ip())) {
        // An upstream load balancer: its header gives the real client.
        match tokio::time::timeout(
            cfg.timeouts.handshake,
            Box::pin(super::upstream::read_header(&mut tcp)),
        )
        .await
        {
            Ok(Ok(Some((src, dst)))) => {
                tracing::debug!(id = %id, upstream = %*client, client = %src, "PROXY header from upstream");
                *client = src;
                *local = dst;
                match shared.per_ip_slot(src) {
                    Some(slot) => *ip_slot = Some(slot),
                    None => return Err(CloseReason::PerIpLimit),
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(error)) => {
                return Err(CloseReason::BadUpstreamHeader {
                    upstream: *client,
                    error,
                })
            }
            Err(_) => return Err(CloseReason::NoUpstreamHeader),
        }
    }
    // TCP_NODELAY and keepalive come from the listener on Linux (see
    // `client_socket_options`).
    #[cfg(not(target_os = "linux"))]
    {
        let _ = tcp.set_nodelay(true);
        let ka = socket2::TcpKeepalive::new().with_time(super::KEEPALIVE);
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&ka);
    }

    if let Some(auth) = &shared.auth {
        if !Box::pin(auth.throttle(client.ip())).await {
            return Err(CloseReason::Throttled);
        }
    }

    if cfg.listener_has_passthrough(l) {
        let peeked = tokio::select! {
            r = tokio::time::timeout(cfg.timeouts.handshake, Box::pin(peek_hello(&tcp))) => r,
            _ = shared.force_close.cancelled() => return Err(CloseReason::ShutdownDuringHandshake),
        };
        match peeked {
            Ok(Ok(Some(hello))) => {
                if let Some(ri) = passthrough_route(cfg, l, &hello) {
                    return Ok(Handshaken::Passthrough {
                        tcp,
                        route: ri,
                        hello,
                    });
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => return Err(CloseReason::NoClientHello(e)),
            Err(_) => return Err(CloseReason::HelloTimeout),
        }
    }

    Box::pin(terminate(
        shared,
        id,
        tls_config,
        ClientIo::Tcp(tcp),
        *client,
    ))
    .await
}

/// The TLS handshake, bounded by `timeouts.handshake` and the drain.
async fn terminate(
    shared: &Shared,
    id: &str,
    tls_config: Arc<rustls::ServerConfig>,
    io: ClientIo,
    client: SocketAddr,
) -> Result<Handshaken, CloseReason> {
    let cfg = &shared.config;
    if io.is_tunnel() {
        // The same key-failure throttle as a direct connection.
        if let Some(auth) = &shared.auth {
            if !Box::pin(auth.throttle(client.ip())).await {
                return Err(CloseReason::Throttled);
            }
        }
    }
    let tls = tokio::select! {
        r = tracing::Instrument::instrument(
            tokio::time::timeout(cfg.timeouts.handshake, Box::pin(tls_stream::accept(io, tls_config))),
            tracing::info_span!("handshake", id = %id, client = %client),
        ) => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                if let Some(auth) = &shared.auth {
                    auth.note_handshake_error(client.ip(), &e);
                }
                return Err(CloseReason::handshake_failed(e));
            }
            Err(_) => return Err(CloseReason::HandshakeTimeout),
        },
        _ = shared.force_close.cancelled() => return Err(CloseReason::ShutdownDuringHandshake),
    };
    Ok(Handshaken::Tls(Box::new(tls)))
}

/// Wait until the whole ClientHello is in the socket buffer, without
/// consuming it. `None`: not a parseable ClientHello (rustls will answer).
async fn peek_hello(tcp: &TcpStream) -> std::io::Result<Option<Hello>> {
    // Most hellos fit 2 KiB; the buffer grows only for those that do not, so
    // a stalled client costs what it sent, not the largest hello.
    const MAX: usize = client_hello::MAX_HELLO + 64;
    let mut buf = vec![0u8; 2048];
    loop {
        let n = tcp.peek(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        match client_hello::peek(&buf[..n]) {
            Ok(Peeked::Hello(h)) => return Ok(Some(h)),
            Ok(Peeked::NeedMore) if n < buf.len() => {
                // peek returns at once while any byte is queued: wait a
                // little for the rest (the caller bounds the total wait).
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Ok(Peeked::NeedMore) if buf.len() < MAX => buf.resize((buf.len() * 4).min(MAX), 0),
            Ok(Peeked::NeedMore) | Err(_) => return Ok(None),
        }
    }
}

/// The passthrough route for this ClientHello, if any: mail ALPNs are
/// always terminated here; otherwise ALPN, then SNI, then the default.
pub fn passthrough_route(cfg: &Config, l: &Listener, hello: &Hello) -> Option<usize> {
    if let Some(r) = l.route {
        return cfg.routes[r].passthrough.then_some(r);
    }
    if !hello.alpn.is_empty() {
        let offered = |a: &[u8]| hello.alpn.iter().any(|x| x == a);
        if cfg.listener_alpn(l).iter().any(|a| offered(a)) {
            return None;
        }
        return cfg
            .routes
            .iter()
            .position(|r| r.passthrough && r.alpn.iter().any(|a| offered(a.as_bytes())));
    }
    let r = hello
        .sni
        .as_ref()
        .and_then(|n| l.sni_routes.get(n).copied())
        .or(l.default_route)?;
    cfg.routes[r].passthrough.then_some(r)
}
