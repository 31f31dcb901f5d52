//! The bundled chatmail-style mail backends: the durable [`store`], the
//! [`accounts`] and their throttled password checks ([`login`]), the SMTP servers ([`smtp`]), the IMAP server ([`imap`]), direct delivery to other relays from the outbound queue ([`delivery`]) and how they are started from the
//! configuration ([`start`]), with their background sweeps (messages past
//! `delete_after`, chatmail accounts past `delete_inactive_users_after`:
//! `inactive_loop`).
//!
//! Each protocol server exposes `serve(stream, PeerInfo, ctx)` over any
//! `AsyncRead + AsyncWrite` and never owns sockets or TLS; this module owns
//! starting them; [`listener`] owns the listeners (TCP or Unix socket), the
//! PROXY header read ([`peer::read_proxy_header`]) and the accept loops. One process owns a
//! data directory: [`store::Store::open`] takes an exclusive lock.

pub mod accounts;
pub mod chatmail;
pub mod config;
pub mod delivery;
pub mod dkim;
pub mod dns_records;
pub mod imap;
pub mod listener;
pub mod login;
pub mod message;
pub mod peer;
pub mod smtp;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use accounts::Accounts;
use config::{ListenAddr, MailConfig};
pub use listener::{
    accept_peer, spawn_accept_loop, spawn_accept_loop_limited, Conn, Intro, Listener, SocketMode,
    MAX_SESSIONS, PROXY_HEADER_TIMEOUT,
};
use peer::TrustPolicy;
use store::Store;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error(transparent)]
    Bind(#[from] listener::BindError),
    #[error(transparent)]
    Secret(#[from] crate::identity_secret::SecretError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("STARTTLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error(transparent)]
    Dkim(#[from] dkim::DkimError),
    #[error(transparent)]
    Delivery(#[from] delivery::DeliveryError),
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
    /// The outbound queue and its worker, with direct delivery.
    pub delivery: Option<Arc<delivery::Handle>>,
    /// The inbound MX's context: `POST /mxdeliv` delivers through it.
    pub mx: Option<Arc<smtp::SmtpContext>>,
    /// Tracks accept loops and sessions; closed by [`MailServers::wait`].
    pub tracker: TaskTracker,
}

impl MailServers {
    /// Wait until all accept loops have stopped (after the shutdown token
    /// fired) and sessions ended, at most `grace` for the sessions.
    pub async fn wait(self, grace: Duration) {
        // The copies kept for a successor close: nothing queues for nobody.
        crate::handover::withdraw_all();
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

/// Open the store; after a takeover, wait (bounded) while the predecessor
/// still holds its lock during its drain ([`crate::handover`]).
async fn open_store(dir: &Path) -> Result<Store, store::StoreError> {
    let deadline = crate::handover::store_lock_wait().map(|d| tokio::time::Instant::now() + d);
    let mut said = false;
    loop {
        let d = dir.to_owned();
        let opened = tokio::task::spawn_blocking(move || Store::open(&d))
            .await
            .map_err(|e| store::StoreError::Corrupt(format!("store open task: {e}")))?;
        match (opened, deadline) {
            (Err(store::StoreError::Locked(_)), Some(end)) if tokio::time::Instant::now() < end => {
                if !said {
                    tracing::info!(dir = %dir.display(), "the predecessor still holds the mail store: waiting for its drain to end");
                    said = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            (r, _) => {
                if said && r.is_ok() {
                    tracing::info!("mail store taken over");
                }
                return r;
            }
        }
    }
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
    start_with(mail, identity_secret, shutdown, certs, None).await
}

/// [`start`] with the process's password checks (`logins`), when the front
/// door made them for its account page: web, IMAP and SMTP logins then
/// count in one set of throttles.
pub async fn start_with(
    mail: &MailConfig,
    identity_secret: Option<Vec<u8>>,
    shutdown: CancellationToken,
    certs: Option<Arc<crate::tls::SniResolver>>,
    logins: Option<Arc<login::Logins>>,
) -> Result<MailServers, MailError> {
    let starttls = match certs {
        Some(resolver) => Some(smtp::StartTls(tokio_rustls::TlsAcceptor::from(
            starttls_config(resolver)?,
        ))),
        None => None,
    };
    let mail = Arc::new(mail.clone());
    std::fs::create_dir_all(&mail.data_dir).map_err(store::StoreError::from)?;
    let store = open_store(&mail.data_dir).await?;
    let accounts = Accounts::from_config(&mail);
    let mut unix_uids: Vec<u32> = peer::own_uid().into_iter().collect();
    unix_uids.extend(mail.trusted_uids.iter().copied());
    // One set of password throttles and one check pool for IMAP and SMTP.
    let logins = logins.unwrap_or_else(|| login::Logins::new(accounts.clone(), 0));
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
        delivery: None,
        mx: None,
        tracker: tracker.clone(),
    };
    if mail.delivery.direct {
        let handle = delivery::start(
            mail.clone(),
            store.clone(),
            accounts.clone(),
            shutdown.clone(),
            &tracker,
        )?;
        servers.delivery = Some(handle);
    }
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
    // DKIM: the MX's check, and the signing keys (made on first start)
    // when mail can leave (smarthost or direct delivery), and always in
    // chatmail mode, whose relay publishes them (`frontdoor mail dns`)
    // before its first message leaves.
    let dkim_verify = match (&mail.inbound, mail.dkim_verify) {
        (Some(_), true) => Some(Arc::new(dkim::Verifier::new(
            &mail.dns_resolvers,
            &mail.hostname,
        )?)),
        _ => None,
    };
    let dkim_sign = match &mail.submission {
        Some(_) if !mail.domains.is_empty() && (mail.sends_remote() || mail.chatmail.is_some()) => {
            let (dir, sel) = (mail.data_dir.clone(), mail.dkim_selector.clone());
            let s =
                tokio::task::spawn_blocking(move || dkim::active::ActiveSigner::start(&dir, &sel))
                    .await
                    .map_err(|e| dkim::DkimError::Generate(e.to_string()))??;
            Some(Arc::new(s))
        }
        _ => None,
    };
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
        // The MX is open to the world: sessions are limited per client
        // (HTTPS deliveries to /mxdeliv count too).
        let per_peer = match mode {
            smtp::Mode::Inbound => Some(listener::PeerLimit::new(
                mail.mx_max_connections_per_peer,
                b"421 4.7.0 Too many connections from your address, try again later\r\n",
            )),
            _ => None,
        };
        let ctx = Arc::new(smtp::SmtpContext {
            mode,
            per_peer: per_peer.clone(),
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
            dkim_verify: match mode {
                smtp::Mode::Inbound => dkim_verify.clone(),
                _ => None,
            },
            dkim_sign: match mode {
                smtp::Mode::Submission => dkim_sign.clone(),
                _ => None,
            },
            queue: match mode {
                smtp::Mode::Submission => servers.delivery.clone(),
                _ => None,
            },
        });
        if mode == smtp::Mode::Inbound {
            servers.mx = Some(ctx.clone());
        }
        if mode == smtp::Mode::Inbound && mail.mx_require_tls && starttls.is_none() {
            tracing::error!(
                "mail.mx.require_tls is on but the MX has no certificate for STARTTLS: \
                 every delivery on {name} is refused (give tls.certificates, or set \
                 mail.mx.require_tls: false)"
            );
        }
        spawn_accept_loop_limited(
            name,
            l,
            intro,
            trust.clone(),
            per_peer,
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
