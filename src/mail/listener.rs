//! The bundled mail servers' listeners: binding a TCP or Unix socket (with
//! the socket file's mode), who may connect and what they must send first
//! ([`Intro`]: the PROXY header, read by [`super::peer::read_proxy_header`]),
//! and the accept loop that hands each connection to a protocol server
//! (through the one accept loop, [`crate::accept`]). Sessions are limited
//! to [`MAX_SESSIONS`] per listener and tracked for the drain; a listener
//! open to the world (the inbound MX) also limits the sessions of each
//! client address ([`PeerLimit`]), as Postfix's anvil does.

#![warn(missing_docs)]

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
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

/// How long a refused client gets to take its one-line refusal.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most simultaneous sessions per client address on a listener open to the
/// world. The key is the address, an IPv6 one cut to its /64 (one host
/// owns a whole /64). A connection over the limit gets `refusal` and is
/// closed before anything else is read.
#[derive(Debug)]
pub struct PeerLimit {
    max: usize,
    refusal: &'static [u8],
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted session of a client address; uncounted on drop.
#[derive(Debug)]
pub struct PeerPermit {
    limit: Arc<PeerLimit>,
    key: IpAddr,
}

impl Drop for PeerPermit {
    fn drop(&mut self) {
        let mut open = self
            .limit
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The counting key of `ip`: itself, or its /64 for IPv6 (IPv4-mapped
/// addresses count as IPv4).
pub fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl PeerLimit {
    /// At most `max` sessions per client address; over it, `refusal`
    /// (a complete protocol line) is written and the connection closed.
    pub fn new(max: usize, refusal: &'static [u8]) -> Arc<PeerLimit> {
        Arc::new(PeerLimit {
            max,
            refusal,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Count one more session of `ip`, or `None` when it has `max` already.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<PeerPermit> {
        let key = peer_key(ip);
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(PeerPermit {
            limit: self.clone(),
            key,
        })
    }

    /// Sessions open now for `ip`'s key.
    pub fn open(&self, ip: IpAddr) -> usize {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&peer_key(ip))
            .copied()
            .unwrap_or(0)
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
    spawn_accept_loop_limited(
        name, listener, intro, trust, None, shutdown, tracker, handle,
    )
}

/// [`spawn_accept_loop`] with a [`PeerLimit`] on TCP clients, when given.
#[allow(clippy::too_many_arguments)]
pub fn spawn_accept_loop_limited<F, Fut>(
    name: &'static str,
    listener: Listener,
    intro: Intro,
    trust: Arc<TrustPolicy>,
    per_peer: Option<Arc<PeerLimit>>,
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
            let (handle, trust, per_peer) = (handle.clone(), trust.clone(), per_peer.clone());
            t2.spawn(async move {
                let _permit = permit;
                let _peer_permit = match (&per_peer, source) {
                    (Some(limit), Source::Tcp(a)) => match limit.try_acquire(a.ip()) {
                        Some(p) => Some(p),
                        None => {
                            tracing::warn!(
                                listener = name,
                                client = %a,
                                max = limit.max,
                                refused = "peer_limit",
                                "connection refused: too many sessions from this client address"
                            );
                            let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
                                let _ = conn.write_all(limit.refusal).await;
                                let _ = conn.shutdown().await;
                            })
                            .await;
                            return;
                        }
                    },
                    _ => None,
                };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_limit_counts_per_address_and_uncounts_on_drop() {
        let l = PeerLimit::new(2, b"421 busy\r\n");
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let p1 = l.try_acquire(a).unwrap();
        let p2 = l.try_acquire(a).unwrap();
        assert!(l.try_acquire(a).is_none());
        let q = l.try_acquire(b).unwrap();
        drop(p1);
        assert_eq!(l.open(a), 1);
        let p3 = l.try_acquire(a).unwrap();
        drop((p2, p3, q));
        assert_eq!(l.open(a), 0);
        assert!(l.open.lock().unwrap().is_empty(), "no entry left behind");
        // One IPv6 host owns its /64; a mapped IPv4 address is that address.
        let v6: IpAddr = "2001:db8:1:2::5".parse().unwrap();
        assert_eq!(peer_key(v6), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(peer_key(mapped), a);
    }
}
