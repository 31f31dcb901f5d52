//! The bundled chatmail-style mail backends: the durable [`store`], the
//! [`accounts`] and their throttled password checks ([`login`]), the SMTP servers ([`smtp`]), the IMAP server ([`imap`]) and how they are started from the
//! configuration ([`start`]), with their background sweeps (messages past
//! `delete_after`, chatmail accounts past `delete_inactive_users_after`:
//! [`inactive_loop`]).
//!
//! Each protocol server exposes `serve(stream, PeerInfo, ctx)` over any
//! `AsyncRead + AsyncWrite` and never owns sockets or TLS; this module owns
//! the listeners (TCP or Unix socket), the PROXY header read
//! ([`peer::read_proxy_header`]) and the accept loops. One process owns a
//! data directory: [`store::Store::open`] takes an exclusive lock.

pub mod accounts;
pub mod chatmail;
pub mod config;
pub mod imap;
pub mod login;
pub mod peer;
pub mod smtp;
pub mod store;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use accounts::Accounts;
use config::{ListenAddr, MailConfig};
use peer::{PeerInfo, Source, TrustPolicy};
use store::Store;

/// Deadline for the PROXY header after accept.
pub const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Most simultaneous sessions per listener.
pub const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("cannot listen on {addr}: {err}")]
    Bind { addr: String, err: io::Error },
    #[error(transparent)]
    Secret(#[from] crate::identity_secret::SecretError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("STARTTLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// `mail.delete_after`: remove messages older than `after`, shortly after
/// start and then every tenth of `after` (at most hourly).
async fn expire_loop(store: Store, after: Duration, shutdown: CancellationToken) {
    let every = (after / 10).clamp(Duration::from_millis(100), Duration::from_secs(3600));
    let mut wait = every.min(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
        wait = every;
        let cutoff = store::unix_now().saturating_sub(after.as_secs() as i64);
        let st = store.clone();
        match tokio::task::spawn_blocking(move || st.expire(cutoff)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(removed = n, "expired messages older than delete_after"),
            Ok(Err(e)) => tracing::error!(error = %e, "expiring old messages failed"),
            Err(e) => tracing::error!(error = %e, "expiry task failed"),
        }
    }
}

/// Accounts examined per pass of [`inactive_loop`].
const INACTIVE_SCAN_PER_PASS: usize = 4096;
/// Accounts deleted per pass of [`inactive_loop`].
const INACTIVE_DELETE_PER_PASS: usize = 64;

/// `mail.chatmail.delete_inactive_users_after`: delete accounts without a
/// login for `after`, with their mail, shortly after start and then every
/// tenth of `after` (at most hourly). A pass looks at most at
/// [`INACTIVE_SCAN_PER_PASS`] accounts and deletes at most
/// [`INACTIVE_DELETE_PER_PASS`]; the next pass goes on where it stopped.
/// Each deletion is mark, drop the mail, remove the record
/// ([`Accounts::mark_deleting`]), so a crash in between is finished by the
/// next pass. Pinned keys of a deleted account stay in the key registry
/// and are refused (their account is gone); `frontdoor keys remove` drops them.
async fn inactive_loop(
    accounts: Accounts,
    store: Store,
    after: Duration,
    shutdown: CancellationToken,
) {
    let every = (after / 10).clamp(Duration::from_millis(100), Duration::from_secs(3600));
    let mut wait = every.min(Duration::from_secs(5));
    let mut cursor: Option<String> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
        wait = every;
        let cutoff =
            store::unix_now().saturating_sub(i64::try_from(after.as_secs()).unwrap_or(i64::MAX));
        let (acc, st, mut cur) = (accounts.clone(), store.clone(), cursor.take());
        let pass = tokio::task::spawn_blocking(move || {
            let r = delete_inactive(&acc, &st, cutoff, &mut cur);
            (r, cur)
        })
        .await;
        match pass {
            Ok((r, cur)) => {
                cursor = cur;
                match r {
                    Ok(gone) if gone.is_empty() => {}
                    Ok(gone) => {
                        for a in &gone {
                            tracing::info!(account = %a, inactive_for = %humantime::format_duration(after), "deleted an inactive account and its mail");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "deleting inactive accounts failed"),
                }
            }
            Err(e) => tracing::error!(error = %e, "inactive account task failed"),
        }
    }
}

/// Why a pass of [`inactive_loop`] stopped.
#[derive(Debug, thiserror::Error)]
enum InactiveError {
    #[error(transparent)]
    Accounts(#[from] accounts::AccountError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// One pass of [`inactive_loop`]: the accounts deleted.
fn delete_inactive(
    accounts: &Accounts,
    store: &Store,
    cutoff: i64,
    cursor: &mut Option<String>,
) -> Result<Vec<String>, InactiveError> {
    let due = accounts.inactive(
        cutoff,
        cursor,
        INACTIVE_SCAN_PER_PASS,
        INACTIVE_DELETE_PER_PASS,
    )?;
    let marked = accounts.mark_deleting(&due, cutoff)?;
    for a in &marked {
        store.drop_account(a)?;
    }
    accounts.finish_delete(&marked)?;
    Ok(marked)
}

/// TLS for STARTTLS on the inbound MX: TLS 1.2/1.3, the given certificates
/// by SNI, no client certificates, no ALPN.
fn starttls_config(
    resolver: Arc<crate::tls::SniResolver>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    Ok(Arc::new(cfg))
}

/// An accepted connection, TCP or Unix.
pub use crate::net::Stream as Conn;

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Bind `addr` with [`SocketMode::Shared`] (mode 0660).
    pub async fn bind(addr: &ListenAddr) -> Result<Listener, MailError> {
        Self::bind_with(addr, SocketMode::Shared).await
    }

    /// Bind `addr`. A Unix socket replaces a stale socket file and gets the
    /// mode `mode` asks for; a socket directory this call creates gets 0700
    /// (0711 for [`SocketMode::Peers`]).
    pub async fn bind_with(addr: &ListenAddr, mode: SocketMode) -> Result<Listener, MailError> {
        let err = |e| MailError::Bind {
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
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            let (mut conn, source) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = name, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                tracing::warn!(
                    listener = name,
                    "too many sessions ({MAX_SESSIONS}); connection dropped"
                );
                continue;
            };
            let (handle, trust) = (handle.clone(), trust.clone());
            t2.spawn(async move {
                let _permit = permit;
                if let Some(peer) = accept_peer(&mut conn, source, intro, &trust).await {
                    handle(conn, peer).await;
                }
            });
        }
        tracing::info!(listener = name, "stopped accepting");
    });
}

/// The running mail servers.
#[derive(Debug)]
pub struct MailServers {
    /// The one store of this process (the IMAP server must use this one).
    pub store: Store,
    pub accounts: Accounts,
    pub config: Arc<MailConfig>,
    pub trust: Arc<TrustPolicy>,
    pub submission: Option<ListenAddr>,
    pub lmtp: Option<ListenAddr>,
    pub inbound: Option<ListenAddr>,
    pub imap: Option<ListenAddr>,
    /// Tracks accept loops and sessions; closed by [`MailServers::wait`].
    pub tracker: TaskTracker,
}

impl MailServers {
    /// Wait until all accept loops have stopped (after the shutdown token
    /// fired) and sessions ended, at most `grace` for the sessions.
    pub async fn wait(self, grace: Duration) {
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("mail sessions still open after {grace:?}; leaving them");
        }
    }
}

/// Read the identity secret with the same checks as the front door
/// ([`crate::identity_secret::read`]: trimmed, >= 16 bytes, not readable by others).
pub fn read_identity_secret(path: &Path) -> Result<Vec<u8>, MailError> {
    Ok(crate::identity_secret::read(path)?)
}

/// File name of the generated secret inside `mail.data_dir`.
pub const GENERATED_SECRET: &str = "identity_secret";

/// Where the identity secret of a configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `client_auth.identity_secret`, provided by the operator.
    Configured(PathBuf),
    /// Front door and bundled servers in one configuration (one process):
    /// generated on first start in the data directory (mode 0600).
    Generated(PathBuf),
    /// None: identities are honoured only from allowed Unix-socket peers.
    None,
}

impl SecretSource {
    pub fn of(cfg: &Config) -> SecretSource {
        if let Some(p) = cfg
            .client_auth
            .as_ref()
            .and_then(|c| c.identity_secret.clone())
        {
            return SecretSource::Configured(p);
        }
        match &cfg.mail {
            Some(m) if !cfg.listeners.is_empty() => {
                SecretSource::Generated(m.data_dir.join(GENERATED_SECRET))
            }
            _ => SecretSource::None,
        }
    }
}

/// For one-process configurations: create the generated secret if it does
/// not exist yet and point `client_auth.identity_secret` at it, so that the
/// front door signs with what the bundled servers check. Idempotent.
pub fn prepare_identity_secret(cfg: &mut Config) -> Result<(), MailError> {
    let SecretSource::Generated(path) = SecretSource::of(cfg) else {
        return Ok(());
    };
    generate_shared_secret(&path)?;
    if let Some(ca) = cfg.client_auth.as_mut() {
        ca.identity_secret = Some(path);
    }
    Ok(())
}

/// The identity secret the bundled servers of `cfg` check PROXY headers
/// with, for [`start`]: generated first when `cfg` runs the front door too
/// (as [`prepare_identity_secret`] does), then read with the shared checks
/// ([`read_identity_secret`]); `None` when the configuration has no secret.
pub fn resolve_identity_secret(cfg: &Config) -> Result<Option<Vec<u8>>, MailError> {
    let path = match SecretSource::of(cfg) {
        SecretSource::Configured(p) => p,
        SecretSource::Generated(p) => {
            generate_shared_secret(&p)?;
            p
        }
        SecretSource::None => return Ok(None),
    };
    Ok(Some(read_identity_secret(&path)?))
}

/// Create the generated secret at `path` unless it exists, saying so.
fn generate_shared_secret(path: &Path) -> Result<(), MailError> {
    if crate::identity_secret::generate(path)? {
        tracing::info!(path = %path.display(), "generated the identity secret shared by the front door and the bundled mail servers");
    }
    Ok(())
}

/// Open the store and start the configured SMTP listeners (submission, LMTP,
/// inbound) and the IMAP server of the `mail:` section. `frontdoor serve`
/// calls this when `mail:` is present; `frontdoor mail serve` runs only this.
///
/// `identity_secret`: the key signed PROXY headers are checked with, as the
/// caller resolved it from the whole configuration
/// ([`resolve_identity_secret`]); `None` honours identities only from
/// allowed Unix-socket peers.
///
/// `certs`: the server certificates STARTTLS on the inbound MX answers with
/// (the front door's, ACME ones included); `None` offers no STARTTLS.
pub async fn start(
    mail: &MailConfig,
    identity_secret: Option<Vec<u8>>,
    shutdown: CancellationToken,
    certs: Option<Arc<crate::tls::SniResolver>>,
) -> Result<MailServers, MailError> {
    let starttls = match certs {
        Some(resolver) => Some(smtp::StartTls(tokio_rustls::TlsAcceptor::from(
            starttls_config(resolver)?,
        ))),
        None => None,
    };
    let mail = Arc::new(mail.clone());
    std::fs::create_dir_all(&mail.data_dir).map_err(store::StoreError::from)?;
    let dir = mail.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&dir))
        .await
        .map_err(|e| store::StoreError::Corrupt(format!("store open task: {e}")))??;
    let accounts = Accounts::from_config(&mail);
    let mut unix_uids: Vec<u32> = peer::own_uid().into_iter().collect();
    unix_uids.extend(mail.trusted_uids.iter().copied());
    // One set of password throttles and one check pool for IMAP and SMTP.
    let logins = login::Logins::new(accounts.clone(), 0);
    let trust = Arc::new(TrustPolicy {
        trusted: mail.trusted_proxies.clone(),
        unix_uids,
        identity_secret,
        max_age: mail.identity_max_age,
        replay: Arc::default(),
    });
    // PROXY sockets: only this uid may connect, unless other uids are named.
    let proxy_mode = if mail.trusted_uids.is_empty() {
        SocketMode::Owner
    } else {
        SocketMode::Peers
    };
    let tracker = TaskTracker::new();
    if let Some(after) = mail.delete_after {
        tracker.spawn(expire_loop(store.clone(), after, shutdown.clone()));
    }
    if let Some(after) = mail
        .chatmail
        .as_ref()
        .and_then(|c| c.delete_inactive_users_after)
    {
        tracker.spawn(inactive_loop(
            accounts.clone(),
            store.clone(),
            after,
            shutdown.clone(),
        ));
    }
    let mut servers = MailServers {
        store: store.clone(),
        accounts: accounts.clone(),
        config: mail.clone(),
        trust: trust.clone(),
        submission: None,
        lmtp: None,
        inbound: None,
        imap: None,
        tracker: tracker.clone(),
    };
    let listeners = [
        (
            smtp::Mode::Submission,
            mail.submission.as_ref(),
            Intro::ProxyRequired,
            "submission",
        ),
        (
            smtp::Mode::Lmtp,
            mail.lmtp.as_ref(),
            Intro::TrustedDirect,
            "lmtp",
        ),
        (
            smtp::Mode::Inbound,
            mail.inbound.as_ref(),
            Intro::OpenDirect,
            "inbound",
        ),
    ];
    // One limiter for every submission listener (chatmail mode).
    let send_limit = mail.chatmail.as_ref().map(|c| {
        Arc::new(crate::mail::chatmail::send_limit::SendLimiter::new(
            c.max_user_send_per_minute,
            c.max_user_send_burst_size,
        ))
    });
    for (mode, addr, intro, name) in listeners {
        let Some(addr) = addr else { continue };
        let sock_mode = match intro {
            Intro::ProxyRequired => proxy_mode,
            _ => SocketMode::Shared,
        };
        let l = Listener::bind_with(addr, sock_mode).await?;
        let bound = l.local_addr();
        tracing::info!(listener = name, addr = %bound.as_ref().map(ToString::to_string).unwrap_or_default(), "listening");
        match mode {
            smtp::Mode::Submission => servers.submission = bound,
            smtp::Mode::Lmtp => servers.lmtp = bound,
            smtp::Mode::Inbound => servers.inbound = bound,
        }
        let ctx = Arc::new(smtp::SmtpContext {
            mode,
            cfg: mail.clone(),
            store: store.clone(),
            accounts: accounts.clone(),
            logins: logins.clone(),
            // Submission arrives through the front door's TLS and LMTP from
            // the local MTA; only the MX talks TLS itself.
            starttls: match mode {
                smtp::Mode::Inbound => starttls.clone(),
                _ => None,
            },
            send_limit: send_limit.clone(),
        });
        spawn_accept_loop(
            name,
            l,
            intro,
            trust.clone(),
            shutdown.clone(),
            tracker.clone(),
            move |conn, peer| {
                let ctx = ctx.clone();
                async move {
                    let _ = smtp::serve(conn, peer, ctx).await;
                }
            },
        );
    }
    if let Some(addr) = mail.imap.as_ref() {
        let l = Listener::bind_with(addr, proxy_mode).await?;
        servers.imap = l.local_addr();
        tracing::info!(listener = "imap", addr = %servers.imap.as_ref().map(ToString::to_string).unwrap_or_default(), "listening");
        let ctx = Arc::new(imap::session::ImapContext::with_logins(
            store.clone(),
            accounts.clone(),
            mail.clone(),
            logins.clone(),
        ));
        imap::server::spawn(l, ctx, trust.clone(), shutdown.clone(), tracker.clone());
    }
    Ok(servers)
}
