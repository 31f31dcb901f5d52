//! The bundled mail servers' listeners: binding a TCP or Unix socket (with
//! the socket file's mode), who may connect and what they must send first
//! ([`Intro`]: the PROXY header, read by [`super::peer::read_proxy_header`]),
//! and the accept loop that hands each connection to a protocol server
//! (through the one accept loop, [`crate::accept`]). Sessions are limited
//! to [`MAX_SESSIONS`] per listener and tracked for the drain.

#![warn(missing_docs)]

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::ListenAddr;
use super::peer::{self, PeerInfo, Source, TrustPolicy};

/// A listen address that could not be bound (the operator's or the
/// system's fault: in use, no permission, no such directory).
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {err}")]
pub struct BindError {
    /// The address as configured.
    pub addr: String,
    /// What the system said.
    pub err: io::Error,
}

/// Deadline for the PROXY header after accept.
pub const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Most simultaneous sessions per listener.
pub const MAX_SESSIONS: usize = 10_000;

/// An accepted connection, TCP or Unix.
pub use crate::net::Stream as Conn;

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    /// A TCP socket.
    Tcp(TcpListener),
    /// A Unix socket.
    Unix(UnixListener),
}

impl Listener {
    /// Bind `addr` with [`SocketMode::Shared`] (mode 0660).
    pub async fn bind(addr: &ListenAddr) -> Result<Listener, BindError> {
        Self::bind_with(addr, SocketMode::Shared).await
    }

    /// Bind `addr`. A Unix socket replaces a stale socket file and gets the
    /// mode `mode` asks for; a socket directory this call creates gets 0700
    /// (0711 for [`SocketMode::Peers`]).
    ///
    /// A socket a predecessor or systemd handed over for `addr` is taken
    /// instead ([`crate::handover`]); either way it is offered to a successor.
    pub async fn bind_with(addr: &ListenAddr, mode: SocketMode) -> Result<Listener, BindError> {
        let key = format!("mail:{addr}");
        let err = |e| BindError {
            addr: addr.to_string(),
            err: e,
        };
        let inherited = match addr {
            ListenAddr::Tcp(a) => crate::handover::take_tcp(&key, *a)
                .map(|l| TcpListener::from_std(l).map(Listener::Tcp)),
            ListenAddr::Unix(p) => crate::handover::take_unix(&key, p)
                .map(|l| UnixListener::from_std(l).map(Listener::Unix)),
        };
        let l = match inherited {
            Some(l) => l.map_err(err)?,
            None => Self::bind_new(addr, mode).await?,
        };
        let local = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        match &l {
            Listener::Tcp(t) => crate::handover::offer(crate::handover::Kind::Mail, &key, local, t),
            Listener::Unix(u) => {
                crate::handover::offer(crate::handover::Kind::Mail, &key, local, u)
            }
        }
        Ok(l)
    }

    async fn bind_new(addr: &ListenAddr, mode: SocketMode) -> Result<Listener, BindError> {
        let err = |e| BindError {
            addr: addr.to_string(),
            err: e,
        };
        match addr {
            ListenAddr::Tcp(a) => Ok(Listener::Tcp(TcpListener::bind(a).await.map_err(err)?)),
            ListenAddr::Unix(p) => {
                use std::os::unix::fs::{FileTypeExt, PermissionsExt};
                if let Some(dir) = p.parent() {
                    if !dir.exists() {
                        std::fs::create_dir_all(dir).map_err(err)?;
                        let dmode = if mode == SocketMode::Peers {
                            0o711
                        } else {
                            0o700
                        };
                        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dmode))
                            .map_err(err)?;
                    }
                }
                if let Ok(m) = std::fs::symlink_metadata(p) {
                    if m.file_type().is_socket() {
                        std::fs::remove_file(p).map_err(err)?;
                    }
                }
                let l = UnixListener::bind(p).map_err(err)?;
                let smode = match mode {
                    SocketMode::Owner => 0o600,
                    SocketMode::Shared => 0o660,
                    SocketMode::Peers => 0o666,
                };
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(smode)).map_err(err)?;
                Ok(Listener::Unix(l))
            }
        }
    }

    /// The bound address (with the real port for port 0).
    pub fn local_addr(&self) -> Option<ListenAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok().map(ListenAddr::Tcp),
            Listener::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| ListenAddr::Unix(p.to_owned()))),
        }
    }

    /// Wait for the next connection and say where it comes from (a TCP
    /// address, or a Unix peer's uid).
    pub async fn accept(&self) -> io::Result<(Conn, Source)> {
        match self {
            Listener::Tcp(l) => {
                let (s, a) = l.accept().await?;
                // Long IMAP IDLE sessions sit behind NATs too.
                let _ = socket2::SockRef::from(&s).set_keepalive(true);
                Ok((Conn::Tcp(s), Source::Tcp(a)))
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept().await?;
                let uid = s.peer_cred().ok().map(|c| c.uid());
                Ok((Conn::Unix(s), Source::Unix { uid }))
            }
        }
    }
}

/// Who may open a Unix socket (the kernel's check, before `SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketMode {
    /// Only this uid (0600): a PROXY socket with no `mail.trusted_uids`.
    Owner,
    /// This uid and its group (0660): LMTP from the local MTA.
    Shared,
    /// Anyone may connect (0666); the peer's uid is checked on accept
    /// against `mail.trusted_uids` before a byte is read.
    Peers,
}

/// How a listener treats the start of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intro {
    /// A PROXY header from a trusted source is required (behind the front door).
    ProxyRequired,
    /// No header; only trusted sources may connect (LMTP from the local MTA).
    TrustedDirect,
    /// No header; anyone may connect (inbound MX).
    OpenDirect,
}

/// Work out who is connecting, per `intro`; `None` means refuse (logged).
pub async fn accept_peer(
    conn: &mut Conn,
    source: Source,
    intro: Intro,
    trust: &TrustPolicy,
) -> Option<PeerInfo> {
    match intro {
        Intro::ProxyRequired => {
            match peer::read_proxy_header(conn, source, trust, PROXY_HEADER_TIMEOUT).await {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(source = ?source, refused = e.label(), error = %e, "connection refused: {e}");
                    None
                }
            }
        }
        // LMTP on a Unix socket is guarded by the socket's mode (the MTA's
        // uid is not the front door's); over TCP by `trusted_proxies`.
        Intro::TrustedDirect if matches!(source, Source::Tcp(_)) && !trust.trusts(source) => {
            tracing::warn!(source = ?source, refused = "untrusted", "connection refused: source not in trusted_proxies");
            None
        }
        _ => Some(PeerInfo::direct(source)),
    }
}

/// Run an accept loop on `listener` until `shutdown`, handing each accepted
/// connection (after [`accept_peer`]) to `handle`. Sessions are tracked by
/// `tracker` and limited to [`MAX_SESSIONS`] at once.
pub fn spawn_accept_loop<F, Fut>(
    name: &'static str,
    listener: Listener,
    intro: Intro,
    trust: Arc<TrustPolicy>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    handle: F,
) where
    F: Fn(Conn, PeerInfo) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let handle = Arc::new(handle);
    let limit = Arc::new(Semaphore::new(MAX_SESSIONS));
    let t2 = tracker.clone();
    tracker.spawn(async move {
        crate::accept::run(name, &listener, &shutdown, |mut conn, source| {
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                tracing::warn!(
                    listener = name,
                    "too many sessions ({MAX_SESSIONS}); connection dropped"
                );
                return;
            };
            let (handle, trust) = (handle.clone(), trust.clone());
            t2.spawn(async move {
                let _permit = permit;
                if let Some(peer) = accept_peer(&mut conn, source, intro, &trust).await {
                    handle(conn, peer).await;
                }
            });
        })
        .await;
        tracing::info!(listener = name, "stopped accepting");
    });
}

impl crate::accept::Listen for Listener {
    type Conn = Conn;
    type Addr = Source;

    fn accept(&self) -> impl std::future::Future<Output = io::Result<(Conn, Source)>> + Send {
        Listener::accept(self)
    }
}
