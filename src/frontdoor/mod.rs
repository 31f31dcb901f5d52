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
pub mod close;
pub mod conn;
pub mod handshake;
pub mod per_ip;
pub mod prelude;
pub mod record13;
pub mod relay;
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

/// State shared by every connection.
pub struct Shared {
    pub config: Arc<Config>,
    pub resolver: Arc<SniResolver>,
    pub auth: Option<Arc<Auth>>,
    /// The bundled backends' accounts, when they run in this process: a
    /// pinned key whose account does not exist there is refused.
    pub accounts: Option<crate::mail::accounts::Accounts>,
    pub stats: Stats,
    pub metrics: crate::metrics::Metrics,
    /// Fires when the drain grace period is over: open connections close.
    pub force_close: CancellationToken,
    next_id: AtomicU64,
    id_prefix: String,
    pub over_limit_log: RateLimitedLog,
    /// Open connections per client address.
    pub per_ip: Arc<per_ip::PerIp>,
    pub over_ip_limit_log: RateLimitedLog,
    /// The chatmail web side, when a route is `builtin:chatmail`.
    pub web: Option<Arc<crate::web::Web>>,
    /// The account page (`mail.account_page`), on the built-in web routes.
    pub account_page: Option<Arc<crate::web::account::AccountPage>>,
    /// The password checks of this process, when it has mail accounts and
    /// the account page: the bundled IMAP and SMTP servers use the same
    /// ones (`mail::start_with`), so all logins share one throttle.
    pub logins: Option<Arc<crate::mail::login::Logins>>,
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

struct BoundListener {
    index: usize,
    socket: TcpListener,
    tls_config: Arc<rustls::ServerConfig>,
}

pub struct Frontdoor {
    shared: Arc<Shared>,
    listeners: Vec<BoundListener>,
    metrics_listener: Option<TcpListener>,
    limit: Arc<Semaphore>,
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
        for (index, l) in config.listeners.iter().enumerate() {
            let verifier = auth
                .as_ref()
                .map(|a| a.verifier(listener_requires_auth(&config, l)));
            let mut alpn = config.listener_alpn(l);
            // tls-alpn-01 is answered where ALPN is negotiated anyway; a
            // listener that offers none must keep accepting any client ALPN.
            if config.acme.is_some() && !alpn.is_empty() {
                alpn.push(tls::certs::ACME_TLS_ALPN.to_vec());
            }
            let tls_cfg = tls::server_config(resolver.clone(), alpn, verifier)?;
            let socket = bind_socket(l.bind).map_err(|source| StartError::Bind {
                addr: l.bind,
                source,
            })?;
            client_socket_options(&socket);
            listeners.push(BoundListener {
                index,
                socket,
                tls_config: tls_cfg,
            });
        }
        let metrics_listener = match config.metrics_listen {
            Some(a) => Some(bind_socket(a).map_err(|source| StartError::Bind { addr: a, source })?),
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
        let web = if config
            .routes
            .iter()
            .any(|r| r.backend == crate::config::Backend::BuiltinChatmail)
        {
            let ports: Vec<u16> = listeners
                .iter()
                .map(|l| l.socket.local_addr().map_or(0, |a| a.port()))
                .collect();
            crate::web::Web::new(&config, &ports).map(Arc::new)
        } else {
            None
        };
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
        let limit = Arc::new(Semaphore::new(config.max_connections));
        let per_ip = per_ip::PerIp::new(config.per_ip_connections);
        Ok(Self {
            shared: Arc::new(Shared {
                config: Arc::new(config),
                resolver,
                auth,
                accounts,
                stats: Stats::default(),
                metrics: crate::metrics::Metrics::new(),
                force_close: CancellationToken::new(),
                next_id: AtomicU64::new(1),
                id_prefix: base36(start),
                over_limit_log: RateLimitedLog::new(1000),
                per_ip,
                over_ip_limit_log: RateLimitedLog::new(1000),
                web,
                account_page,
                logins,
            }),
            listeners,
            metrics_listener,
            limit,
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

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serve until `shutdown` fires; then drain and return.
    pub async fn run(self, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        let mut loops = Vec::new();
        if let Some(ml) = self.metrics_listener {
            if let Ok(a) = ml.local_addr() {
                tracing::info!(addr = %a, "metrics listening");
            }
            loops.push(tokio::spawn(crate::metrics::serve(
                ml,
                self.shared.clone(),
                shutdown.clone(),
            )));
        }
        if let Some(acme) = &self.shared.config.acme {
            loops.push(tokio::spawn(crate::acme::run(
                acme.clone(),
                self.shared.resolver.clone(),
                self.shared.metrics.acme_orders.clone(),
                shutdown.clone(),
            )));
        }
        for l in self.listeners {
            if let Ok(a) = l.socket.local_addr() {
                tracing::info!(listener = l.index, addr = %a, "listening");
            }
            let shared = self.shared.clone();
            let limit = self.limit.clone();
            let tracker2 = tracker.clone();
            let stop = shutdown.clone();
            loops.push(tokio::spawn(accept_loop(shared, l, limit, tracker2, stop)));
        }
        shutdown.cancelled().await;
        for h in loops {
            let _ = h.await;
        }
        tracker.close();
        let open = self.shared.stats.open.load(Ordering::Relaxed);
        let grace = self.shared.config.timeouts.shutdown_grace;
        tracing::info!(
            open,
            grace_secs = grace.as_secs_f64(),
            "shutting down: no longer accepting; draining open connections"
        );
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            let open = self.shared.stats.open.load(Ordering::Relaxed);
            tracing::warn!(
                open,
                "drain grace period over: closing remaining connections"
            );
            self.shared.force_close.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
        }
        tracing::info!("stopped");
    }

    /// SIGHUP: reload certificates and the key registry; keep the old ones on error.
    pub fn reload(&self) {
        reload(&self.shared);
    }
}

/// Reload certificates and the registry (see `Frontdoor::reload`).
pub fn reload(shared: &Shared) {
    let cfg = &shared.config;
    if !cfg.certificates.is_empty() {
        match CertStore::load(&cfg.certificates) {
            Ok(store) => {
                let n = store.certs().len();
                shared.resolver.replace(store);
                tracing::info!(certificates = n, "certificates reloaded");
            }
            Err(errs) => {
                for e in errs {
                    tracing::error!(error = %e, "certificate reload refused; keeping the previous certificates");
                }
            }
        }
    }
    if let Some(a) = &shared.auth {
        a.reload();
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

/// Accept on one listener (through the one accept loop, [`crate::accept`])
/// until `stop`: each connection takes a permit of `limits.max_connections`
/// and a slot of its client address, or is closed at once.
async fn accept_loop(
    shared: Arc<Shared>,
    l: BoundListener,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    crate::accept::run(l.index, &l.socket, &stop, |tcp, peer| {
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
        let upstream = shared.config.listeners[l.index]
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
        let shared = shared.clone();
        let tls_config = l.tls_config.clone();
        let index = l.index;
        tracker.spawn(async move {
            conn::handle(shared, index, tls_config, tcp, peer, (permit, slot)).await;
        });
    })
    .await;
}
