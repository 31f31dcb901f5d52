//! The front door: listeners, accept loops, limits, reload and drain.
//!
//! `Frontdoor::bind` turns a validated `Config` into bound sockets and TLS
//! acceptors; `run` serves until the shutdown token fires, then stops
//! accepting, lets open connections drain for the grace period and closes
//! what is left. Each accepted connection is handled by `conn::handle`.
//!
//! Resources are counted with RAII: a connection holds a semaphore permit
//! (`limits.max_connections`) and a slot of its client address
//! (`limits.per_ip_connections`, `per_ip`), and lives in a `TaskTracker` for
//! the drain.

pub mod admission;
pub mod backend;
pub mod builtin;
pub mod client_io;
pub mod close;
pub mod conn;
pub mod connect;
pub mod drain;
pub mod handshake;
pub mod per_ip;
pub mod prelude;
pub mod record13;
pub mod relay;
mod reload;
pub mod tls_stream;
pub mod upstream;
pub mod xclient;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::config::{Config, Listener};
use crate::tls::{self, CertStore, SniResolver};

/// Why the front door could not start. The operator's to fix (a listen
/// address, certificate files, the registry or secret), or the system's
/// (the address is in use, TLS setup failed).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address as configured.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// A certificate (files, the generated one, ACME's stored ones) is unusable.
    #[error(transparent)]
    Certificates(#[from] tls::certs::CertError),
    /// Certificate files are unusable: every problem found, one per line.
    #[error("{}", lines(.0))]
    CertificateFiles(Vec<tls::certs::CertError>),
    /// rustls refused the TLS configuration.
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    /// Client authentication could not start (registry, identity secret).
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
}

fn lines(errs: &[tls::certs::CertError]) -> String {
    errs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

pub use crate::accept::RateLimitedLog;

/// Counters read while serving (the status page, the drain).
#[derive(Default, Debug)]
pub struct Stats {
    /// Connections open now.
    pub open: AtomicU64,
}

/// State shared by every connection of one configuration: the config,
/// the TLS settings built from it, and (behind `Arc`s, the same in every
/// configuration a reload brings) the counters, limits' state and
/// certificates. A connection keeps the `Shared` it was accepted with for
/// its whole life, so a reload changes only what new connections get.
pub struct Shared {
    pub config: Arc<Config>,
    /// Each listener's TLS settings, in `config.listeners` order.
    pub tls: Vec<Arc<rustls::ServerConfig>>,
    /// Each listener's bound port, in `config.listeners` order (port 0
    /// resolved): a CONNECT tunnel's target port names a listener by it.
    pub ports: Vec<u16>,
    /// Each listener's key, in `config.listeners` order.
    keys: Vec<ListenKey>,
    pub resolver: Arc<SniResolver>,
    pub auth: Option<Arc<Auth>>,
    /// The bundled backends' accounts, when they run in this process: a
    /// pinned key whose account does not exist there is refused.
    pub accounts: Option<crate::mail::accounts::Accounts>,
    pub stats: Arc<Stats>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Fires when the drain grace period is over: open connections close.
    pub force_close: CancellationToken,
    /// The drain's start and spread: each connection's moment to close.
    pub drain: Arc<drain::Drain>,
    next_id: Arc<AtomicU64>,
    id_prefix: Arc<str>,
    pub over_limit_log: Arc<RateLimitedLog>,
    /// Open connections per client address.
    pub per_ip: Arc<per_ip::PerIp>,
    pub over_ip_limit_log: Arc<RateLimitedLog>,
    /// The chatmail web side, when a route is `builtin:chatmail`.
    pub web: Option<Arc<crate::web::Web>>,
    /// The account page (`mail.account_page`), on the built-in web routes.
    pub account_page: Option<Arc<crate::web::account::AccountPage>>,
    /// The password checks of this process, when it has mail accounts and
    /// the account page or a CONNECT entry with `auth: password`: the
    /// bundled IMAP and SMTP servers use the same ones
    /// (`mail::start_with`), so all logins share one throttle.
    pub logins: Option<Arc<crate::mail::login::Logins>>,
    /// The bundled backend's outbound queue, once started (for metrics);
    /// the same cell in every configuration a reload brings.
    pub mail_queue: Arc<std::sync::OnceLock<Arc<crate::mail::delivery::Handle>>>,
    /// The bundled MX, once started, for `POST /mxdeliv` on the chatmail
    /// web side; the same cell in every configuration a reload brings.
    pub mail_mx: Arc<std::sync::OnceLock<Arc<crate::mail::smtp::SmtpContext>>>,
}

impl crate::metrics::ScrapeSource for Shared {
    fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    fn scrape(&self) -> crate::metrics::Scrape {
        crate::metrics::Scrape {
            registry: self.auth.as_ref().map(|auth| {
                let (ok, failed) = auth.registry().reload_counts();
                crate::metrics::RegistryScrape {
                    reloads_ok: ok,
                    reloads_failed: failed,
                    keys: auth.registry().current().len(),
                }
            }),
            certs: self
                .resolver
                .current()
                .certs()
                .iter()
                .map(|c| (c.meta.names.join(","), c.meta.not_after))
                .collect(),
            queue: self.mail_queue.get().map(|h| crate::metrics::QueueScrape {
                depth: h.depth(),
                delivered: h.stats.delivered.load(Ordering::Relaxed),
                failed: h.stats.failed(),
                deferred: h.stats.deferred(),
                mta_sts: h.stats.mta_sts(),
            }),
        }
    }
}

impl Shared {
    /// A slot for one more connection from `client`; `None` (logged, at
    /// most once a second) when its address is at `limits.per_ip_connections`.
    pub fn per_ip_slot(&self, client: SocketAddr) -> Option<per_ip::IpSlot> {
        match self.per_ip.try_acquire(client.ip()) {
            Ok(slot) => Some(slot),
            Err(key) => {
                if let Some(n) = self.over_ip_limit_log.allow() {
                    tracing::warn!(
                        client = %client,
                        address = %key,
                        per_ip_connections = self.per_ip.limit(),
                        suppressed = n,
                        "per-address connection limit reached: closing new connection"
                    );
                }
                None
            }
        }
    }
}

impl Shared {
    /// A connection id, unique across restarts in practice:
    /// `<start time base36>-<counter>`; it also travels as `PP2_TYPE_UNIQUE_ID`.
    pub fn next_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.id_prefix)
    }
}

fn base36(mut n: u64) -> String {
    const D: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(D[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The configuration in force, where accept loops and the metrics endpoint
/// find it; a reload swaps it.
pub struct Current {
    shared: std::sync::RwLock<Arc<Shared>>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Current {
    fn new(shared: Shared) -> Self {
        Self {
            metrics: shared.metrics.clone(),
            shared: std::sync::RwLock::new(Arc::new(shared)),
        }
    }

    /// The configuration in force now.
    pub fn load(&self) -> Arc<Shared> {
        match self.shared.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn store(&self, next: Arc<Shared>) {
        match self.shared.write() {
            Ok(mut g) => *g = next,
            Err(p) => *p.into_inner() = next,
        }
    }
}

impl crate::metrics::ScrapeSource for Current {
    fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    fn scrape(&self) -> crate::metrics::Scrape {
        self.load().scrape()
    }
}

/// What a reload matches listeners by: the configured address, and which
/// of the listeners configured with that address it is (several may say
/// `127.0.0.1:0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ListenKey(SocketAddr, usize);

/// Each listener's key, in `config.listeners` order.
fn listen_keys(config: &Config) -> Vec<ListenKey> {
    let mut out: Vec<ListenKey> = Vec::with_capacity(config.listeners.len());
    for l in &config.listeners {
        let nth = out.iter().filter(|k| k.0 == l.bind).count();
        out.push(ListenKey(l.bind, nth));
    }
    out
}

/// A bound front-door listener: its key and its socket.
struct BoundListener {
    key: ListenKey,
    socket: TcpListener,
}

pub struct Frontdoor {
    current: Arc<Current>,
    listeners: Vec<BoundListener>,
    metrics_listener: Option<TcpListener>,
    limit: Arc<Semaphore>,
    ready: Option<reload::Announce>,
}

/// Names for the generated certificate when the config names none.
pub const SELF_SIGNED_NAMES: [&str; 1] = ["localhost"];

impl Frontdoor {
    /// Load certificates and the registry, build TLS configs, bind listeners.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let files = if config.certificates.is_empty() && config.acme.is_none() {
            tracing::warn!(
                "no tls.certificates configured: serving a freshly generated SELF-SIGNED certificate for 'localhost'. Clients will not trust it; configure real certificates for production"
            );
            let names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|s| s.to_string()).collect();
            let (c, k) = tls::certs::self_signed(&names)?;
            let loaded = tls::certs::from_pem(
                c.as_bytes(),
                k.as_bytes(),
                "generated".as_ref(),
                "generated".as_ref(),
            )?;
            vec![loaded]
        } else if config.certificates.is_empty() {
            Vec::new()
        } else {
            CertStore::load(&config.certificates)
                .map_err(StartError::CertificateFiles)?
                .into_certs()
        };
        let managed = match &config.acme {
            Some(a) => crate::acme::initial(a)?,
            None => Vec::new(),
        };
        let resolver = Arc::new(SniResolver::with_managed(files, managed)?);
        let auth = match &config.client_auth {
            Some(ca) => Some(Arc::new(Auth::open(ca)?)),
            None => None,
        };
        let mut listeners = Vec::new();
        for key in listen_keys(&config) {
            listeners.push(BoundListener {
                key,
                socket: bind_listener(key)?,
            });
        }
        let metrics_listener = match config.metrics_listen {
            Some(a) => {
                let name = format!("metrics:{a}");
                let l = inherited_or_bound(&name, a)?;
                if let Ok(local) = l.local_addr() {
                    crate::handover::offer(
                        crate::handover::Kind::Metrics,
                        &name,
                        local.to_string(),
                        &l,
                    );
                }
                Some(l)
            }
            None => None,
        };
        let accounts = config
            .mail
            .as_ref()
            .map(crate::mail::accounts::Accounts::from_config);
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.socket.local_addr().map_or(0, |a| a.port()))
            .collect();
        let mut logins = None;
        let account_page = match (
            config.mail.as_ref(),
            config.mail.as_ref().and_then(|m| m.account_page.clone()),
            &auth,
            &accounts,
        ) {
            (Some(mail), Some(page), Some(auth), Some(accounts)) => {
                let l = crate::mail::login::Logins::new(accounts.clone(), 0);
                logins = Some(l.clone());
                Some(Arc::new(crate::web::account::AccountPage::new(
                    page,
                    auth.registry().path().to_owned(),
                    accounts.clone(),
                    mail.data_dir.clone(),
                    l,
                )))
            }
            _ => None,
        };
        let connect_logins = config.listeners.iter().any(|l| {
            l.https_connect
                .is_some_and(|h| h.auth == crate::config::ConnectAuth::Password)
        });
        if let (None, true, Some(accounts)) = (&logins, connect_logins, &accounts) {
            logins = Some(crate::mail::login::Logins::new(accounts.clone(), 0));
        }
        let limit = Arc::new(Semaphore::new(config.max_connections));
        let per_ip = per_ip::PerIp::new(config.per_ip_connections);
        let metrics = Arc::new(crate::metrics::Metrics::new());
        reload::count_config(&metrics, &config);
        let shared = Shared {
            tls: reload::tls_configs(&config, &resolver, auth.as_ref())?,
            keys: listen_keys(&config),
            web: reload::web(&config, &ports),
            ports,
            config: Arc::new(config),
            resolver,
            auth,
            accounts,
            stats: Arc::default(),
            metrics,
            force_close: CancellationToken::new(),
            drain: Arc::default(),
            next_id: Arc::new(AtomicU64::new(1)),
            id_prefix: base36(start).into(),
            over_limit_log: Arc::new(RateLimitedLog::new(1000)),
            per_ip,
            over_ip_limit_log: Arc::new(RateLimitedLog::new(1000)),
            account_page,
            logins,
            mail_queue: Arc::default(),
            mail_mx: Arc::default(),
        };
        Ok(Self {
            current: Arc::new(Current::new(shared)),
            listeners,
            metrics_listener,
            limit,
            ready: None,
        })
    }

    /// The metrics listener's address, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Actual bound addresses, in listener order (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.socket.local_addr().ok())
            .collect()
    }

    /// The configuration in force now.
    pub fn shared(&self) -> Arc<Shared> {
        self.current.load()
    }

    /// Where the configuration in force is found (it changes on reload).
    pub fn current(&self) -> Arc<Current> {
        self.current.clone()
    }

    /// Rewrite the readiness document at `path` after each reload: the
    /// front door's listeners as they are then, and `others` (the bundled
    /// mail servers) as given.
    pub fn announce(
        &mut self,
        path: std::path::PathBuf,
        others: Arc<std::sync::Mutex<crate::ready::Ready>>,
    ) {
        self.ready = Some((path, others));
    }

    /// Serve until `shutdown` fires; then drain and return. Each
    /// configuration that arrives on `reloads` (already checked as
    /// `frontdoor check` does) replaces the one in force (the `reload` module says how).
    pub async fn run(
        self,
        shutdown: CancellationToken,
        mut reloads: tokio::sync::mpsc::Receiver<Config>,
    ) {
        let tracker = TaskTracker::new();
        let mut loops = Vec::new();
        let shared = self.current.load();
        let metrics_listener_addr = self.metrics_addr();
        if let Some(ml) = self.metrics_listener {
            if let Ok(a) = ml.local_addr() {
                tracing::info!(addr = %a, "metrics listening");
            }
            loops.push(tokio::spawn(crate::metrics::serve(
                ml,
                self.current.clone(),
                shutdown.clone(),
            )));
        }
        if let Some(acme) = &shared.config.acme {
            loops.push(tokio::spawn(crate::acme::run(
                acme.clone(),
                shared.resolver.clone(),
                shared.metrics.acme_orders.clone(),
                shutdown.clone(),
            )));
        }
        let mut running = reload::Running::new(
            self.current.clone(),
            self.limit.clone(),
            tracker.clone(),
            shutdown.clone(),
            metrics_listener_addr,
            self.ready,
        );
        for l in self.listeners {
            running.start(l);
        }
        drop(shared);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                next = reloads.recv() => match next {
                    Some(cfg) => running.reload(cfg).await,
                    None => {
                        shutdown.cancelled().await;
                        break;
                    }
                },
            }
        }
        crate::handover::withdraw_all();
        let listeners = running.stop_all();
        for h in loops.into_iter().chain(listeners) {
            let _ = h.await;
        }
        tracker.close();
        let shared = self.current.load();
        let open = shared.stats.open.load(Ordering::Relaxed);
        let grace = shared.config.timeouts.shutdown_grace;
        let spread = shared.config.timeouts.spread();
        tracing::info!(
            open,
            grace_secs = grace.as_secs_f64(),
            spread_secs = spread.as_secs_f64(),
            "shutting down: no longer accepting; draining open connections"
        );
        shared.drain.start(spread);
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            let open = shared.stats.open.load(Ordering::Relaxed);
            tracing::warn!(
                open,
                "drain grace period over: closing remaining connections"
            );
            shared.force_close.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
        }
        tracing::info!("stopped");
    }
}

fn listener_requires_auth(cfg: &Config, l: &Listener) -> bool {
    use crate::config::ClientAuthMode::Required;
    l.client_auth == Required
        || l.route
            .is_some_and(|r| cfg.routes[r].client_auth == Required)
}

fn bind_socket(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // "[::]:443" means IPv6 only; list "0.0.0.0:443" too for IPv4.
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

/// Long IMAP IDLE sessions sit behind NATs: TCP keepalive after this long.
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(120);

/// `TCP_NODELAY` and keepalive for client connections, set once on the
/// listener: Linux copies both to every accepted socket, which saves three
/// `setsockopt` calls per connection (`conn` sets them per connection on
/// other systems).
fn client_socket_options(listener: &TcpListener) {
    let s = socket2::SockRef::from(listener);
    let _ = s.set_nodelay(true);
    let _ = s.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(KEEPALIVE));
}

/// Bind a front-door listener with its client socket options: the socket
/// a predecessor or systemd handed over when there is one
/// ([`crate::handover`]), else a new one; either way offered to a successor.
fn bind_listener(key: ListenKey) -> Result<TcpListener, StartError> {
    let name = crate::handover::frontdoor_key(key.0, key.1);
    let socket = inherited_or_bound(&name, key.0)?;
    client_socket_options(&socket);
    if let Ok(a) = socket.local_addr() {
        crate::handover::offer(
            crate::handover::Kind::Frontdoor,
            &name,
            a.to_string(),
            &socket,
        );
    }
    Ok(socket)
}

fn inherited_or_bound(name: &str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    let err = |source| StartError::Bind { addr, source };
    match crate::handover::take_tcp(name, addr) {
        Some(l) => TcpListener::from_std(l).map_err(err),
        None => bind_socket(addr).map_err(err),
    }
}

/// Accept on one listener (through the one accept loop, [`crate::accept`])
/// until `stop`: each connection gets the configuration in force at its
/// accept, takes a permit of `limits.max_connections` and a slot of its
/// client address, or is closed at once.
async fn accept_loop(
    current: Arc<Current>,
    l: BoundListener,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    let name = l.key.0.to_string();
    crate::accept::run(&name, &l.socket, &stop, |tcp, peer| {
        let shared = current.load();
        // A listener a reload removed accepts nothing more.
        let Some(index) = shared.keys.iter().position(|k| *k == l.key) else {
            drop(tcp);
            return;
        };
        let permit = match limit.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if let Some(n) = shared.over_limit_log.allow() {
                    tracing::warn!(
                        client = %peer,
                        max_connections = shared.config.max_connections,
                        suppressed = n,
                        "connection limit reached: closing new connection"
                    );
                }
                drop(tcp);
                return;
            }
        };
        // Behind an upstream balancer the address that counts is the one
        // its PROXY header names (`conn` takes that slot).
        let upstream = shared.config.listeners[index]
            .accept_proxy_from
            .iter()
            .any(|n| n.contains(&peer.ip()));
        let slot = if upstream {
            None
        } else {
            match shared.per_ip_slot(peer) {
                Some(s) => Some(s),
                None => {
                    drop(tcp);
                    return;
                }
            }
        };
        let tls_config = shared.tls[index].clone();
        tracker.spawn(async move {
            conn::handle(shared, index, tls_config, tcp, peer, (permit, slot)).await;
        });
    })
    .await;
}
