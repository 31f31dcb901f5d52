//! Reloading the whole configuration while serving (SIGHUP).
//!
//! The caller (`serve`) has already checked the new file exactly as
//! `frontdoor check` does; on a problem it never gets here. What happens
//! then, all or nothing:
//! - listeners are matched by their configured address: one that stays
//!   keeps its socket (no gap, nothing refused), a new one is bound, a
//!   removed one stops accepting; a new bind that fails refuses the reload;
//! - certificates, the key registry, routes, backends, limits, timeouts and
//!   client authentication come from the new file, and the TLS settings of
//!   every listener are rebuilt; any failure refuses the reload and the
//!   configuration in force stays as it was;
//! - the new configuration becomes the one new connections get; open ones
//!   keep the one they were accepted with (`Shared` is per configuration);
//! - what cannot change while running (the `mail:` section, which the
//!   bundled servers read at start, ACME and the metrics listener) is kept
//!   as it was and named in a log line: a restart or an upgrade
//!   (`serve --takeover`) applies it.

use std::net::SocketAddr;
use std::sync::Arc;

use sha2::Digest as _;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{
    accept_loop, bind_listener, listen_keys, listener_requires_auth, BoundListener, Current,
    ListenKey, Shared, StartError,
};
use crate::auth::Auth;
use crate::config::{Backend, Config};
use crate::tls::{self, CertStore, SniResolver};

/// Each listener's TLS settings for `config`, in its listener order.
pub(super) fn tls_configs(
    config: &Config,
    resolver: &Arc<SniResolver>,
    auth: Option<&Arc<Auth>>,
) -> Result<Vec<Arc<rustls::ServerConfig>>, StartError> {
    let mut out = Vec::with_capacity(config.listeners.len());
    for l in &config.listeners {
        let verifier = auth.map(|a| a.verifier(listener_requires_auth(config, l)));
        let mut alpn = config.listener_alpn(l);
        // tls-alpn-01 is answered where ALPN is negotiated anyway; a
        // listener that offers none must keep accepting any client ALPN.
        if config.acme.is_some() && !alpn.is_empty() {
            alpn.push(tls::certs::ACME_TLS_ALPN.to_vec());
        }
        out.push(tls::server_config(resolver.clone(), alpn, verifier)?);
    }
    Ok(out)
}

/// The chatmail web side, when a route of `config` is `builtin:chatmail`.
pub(super) fn web(config: &Config, ports: &[u16]) -> Option<Arc<crate::web::Web>> {
    config
        .routes
        .iter()
        .any(|r| r.backend == Backend::BuiltinChatmail)
        .then(|| crate::web::Web::new(config, ports).map(Arc::new))
        .flatten()
}

/// The SHA-256 of the configuration file, hex, as the metrics and log show it.
pub(super) fn config_hash(config: &Config) -> String {
    let bytes = std::fs::read(&config.path).unwrap_or_default();
    let d = sha2::Sha256::digest(&bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Put `config`'s hash in the metrics as the one in force.
pub(super) fn count_config(metrics: &crate::metrics::Metrics, config: &Config) -> String {
    let hash = config_hash(config);
    metrics.config_hash.clear();
    metrics
        .config_hash
        .get_or_create(&crate::metrics::HashLabel {
            sha256: hash.clone(),
        })
        .set(1);
    hash
}

/// A listener that is accepting: its configured address and its loop.
struct Accepting {
    key: ListenKey,
    local: Option<SocketAddr>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The front door while it serves: the configuration in force and the
/// listeners accepting for it.
pub(super) struct Running {
    current: Arc<Current>,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    listeners: Vec<Accepting>,
    metrics_addr: Option<SocketAddr>,
    ready: Option<Announce>,
}

/// Where the readiness document goes, and its entries that are not the
/// front door's (the bundled servers', filled in once they listen).
pub(super) type Announce = (
    std::path::PathBuf,
    Arc<std::sync::Mutex<crate::ready::Ready>>,
);

impl Running {
    pub(super) fn new(
        current: Arc<Current>,
        limit: Arc<Semaphore>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
        metrics_addr: Option<SocketAddr>,
        ready: Option<Announce>,
    ) -> Self {
        Self {
            current,
            limit,
            tracker,
            shutdown,
            listeners: Vec::new(),
            metrics_addr,
            ready,
        }
    }

    /// Start accepting on `l`.
    pub(super) fn start(&mut self, l: BoundListener) {
        let local = l.socket.local_addr().ok();
        if let Some(a) = local {
            let index = listen_keys(&self.current.load().config)
                .iter()
                .position(|k| *k == l.key);
            tracing::info!(listener = index, addr = %a, "listening");
        }
        let stop = self.shutdown.child_token();
        let key = l.key;
        let task = tokio::spawn(accept_loop(
            self.current.clone(),
            l,
            self.limit.clone(),
            self.tracker.clone(),
            stop.clone(),
        ));
        self.listeners.push(Accepting {
            key,
            local,
            stop,
            task,
        });
    }

    /// Stop every accept loop; their handles, to wait for.
    pub(super) fn stop_all(&mut self) -> Vec<JoinHandle<()>> {
        self.listeners
            .drain(..)
            .map(|a| {
                a.stop.cancel();
                a.task
            })
            .collect()
    }

    /// Put `next` in force, or keep the configuration in force and log why not.
    pub(super) async fn reload(&mut self, next: Config) {
        let prev = self.current.load();
        match self.apply(&prev, next).await {
            Ok(()) => {
                prev.metrics
                    .config_reloads
                    .get_or_create(&crate::metrics::ResultLabel { result: "ok" })
                    .inc();
            }
            Err(e) => {
                prev.metrics
                    .config_reloads
                    .get_or_create(&crate::metrics::ResultLabel { result: "failed" })
                    .inc();
                tracing::error!(error = %e, "configuration reload refused; the configuration in force stays");
            }
        }
    }

    async fn apply(&mut self, prev: &Arc<Shared>, mut next: Config) -> Result<(), StartError> {
        keep_what_needs_a_restart(&prev.config, &mut next);
        // New listeners first: a bind that fails refuses the whole reload.
        let mut bound = Vec::new();
        let keys = listen_keys(&next);
        for key in &keys {
            if !self.listeners.iter().any(|a| a.key == *key) {
                bound.push(BoundListener {
                    key: *key,
                    socket: bind_listener(*key)?,
                });
            }
        }
        let ports: Vec<u16> = keys
            .iter()
            .map(|key| {
                self.listeners
                    .iter()
                    .find(|a| a.key == *key)
                    .and_then(|a| a.local)
                    .or_else(|| {
                        bound
                            .iter()
                            .find(|b| b.key == *key)
                            .and_then(|b| b.socket.local_addr().ok())
                    })
                    .map_or(0, |a| a.port())
            })
            .collect();
        let auth = match (&prev.config.client_auth, &next.client_auth, &prev.auth) {
            (Some(old), Some(new), Some(a)) if same_client_auth(old, new) => {
                a.reload();
                Some(a.clone())
            }
            (_, Some(new), _) => Some(Arc::new(Auth::open(new)?)),
            (_, None, _) => None,
        };
        let certs = if next.certificates.is_empty() {
            None
        } else {
            Some(CertStore::load(&next.certificates).map_err(StartError::CertificateFiles)?)
        };
        let mut tls = tls_configs(&next, &prev.resolver, auth.as_ref())?;
        // A listener that stays keeps its session cache and its ticket
        // keys: clients resume across the reload, and one of each is kept
        // per listener, not one per configuration an open connection still
        // holds.
        for (i, key) in keys.iter().enumerate() {
            let old = prev.keys.iter().position(|k| k == key);
            if let (Some(o), Some(cfg)) = (old, Arc::get_mut(&mut tls[i])) {
                cfg.session_storage = prev.tls[o].session_storage.clone();
                cfg.ticketer = prev.tls[o].ticketer.clone();
            }
        }
        // Nothing below fails: from here on the reload happens.
        if let Some(store) = certs {
            let n = store.certs().len();
            prev.resolver.replace(store);
            tracing::info!(certificates = n, "certificates reloaded");
        }
        self.resize_limits(prev.config.max_connections, next.max_connections);
        prev.per_ip.set_limit(next.per_ip_connections);
        let hash = count_config(&prev.metrics, &next);
        let shared = Shared {
            tls,
            keys: keys.clone(),
            web: web(&next, &ports),
            ports,
            config: Arc::new(next),
            resolver: prev.resolver.clone(),
            auth,
            accounts: prev.accounts.clone(),
            stats: prev.stats.clone(),
            metrics: prev.metrics.clone(),
            force_close: prev.force_close.clone(),
            drain: prev.drain.clone(),
            next_id: prev.next_id.clone(),
            id_prefix: prev.id_prefix.clone(),
            over_limit_log: prev.over_limit_log.clone(),
            per_ip: prev.per_ip.clone(),
            over_ip_limit_log: prev.over_ip_limit_log.clone(),
            // Read from `mail:`, which changes only at a restart.
            account_page: prev.account_page.clone(),
            logins: prev.logins.clone(),
            mail_queue: prev.mail_queue.clone(),
            mail_mx: prev.mail_mx.clone(),
        };
        let binds = keys;
        self.current.store(Arc::new(shared));
        let (added, mut removed) = (bound.len(), 0);
        for l in bound {
            self.start(l);
        }
        self.listeners.retain(|a| {
            let keep = binds.contains(&a.key);
            if !keep {
                tracing::info!(addr = %a.key.0, "listener removed: no longer accepting");
                crate::handover::withdraw(&crate::handover::frontdoor_key(a.key.0, a.key.1));
                a.stop.cancel();
                removed += 1;
            }
            keep
        });
        // The ready file first: whoever reads the log line finds it current.
        self.rewrite_ready();
        tracing::info!(
            sha256 = %hash,
            listeners = binds.len(),
            listeners_added = added,
            listeners_removed = removed,
            "configuration reloaded"
        );
        Ok(())
    }

    /// `limits.max_connections` changed: more permits now, or fewer as
    /// soon as enough connections have closed.
    fn resize_limits(&self, old: usize, new: usize) {
        if new > old {
            self.limit.add_permits(new - old);
        } else if new < old {
            let fewer = old - new;
            let gone = self.limit.forget_permits(fewer);
            let rest = u32::try_from(fewer - gone).unwrap_or(u32::MAX);
            if rest > 0 {
                let limit = self.limit.clone();
                tokio::spawn(async move {
                    if let Ok(p) = limit.acquire_many_owned(rest).await {
                        p.forget();
                    }
                });
            }
        }
    }

    fn rewrite_ready(&self) {
        let Some((path, others)) = &self.ready else {
            return;
        };
        let shared = self.current.load();
        let addrs: Vec<SocketAddr> = listen_keys(&shared.config)
            .iter()
            .filter_map(|c| {
                self.listeners
                    .iter()
                    .find(|a| a.key == *c)
                    .and_then(|a| a.local)
            })
            .collect();
        let mut ready = crate::ready::Ready::new();
        ready.frontdoor(&addrs, self.metrics_addr);
        if let Ok(o) = others.lock() {
            ready.listeners.extend(o.listeners.iter().cloned());
        }
        if let Err(e) = ready.write(path) {
            tracing::error!(error = %e, "cannot rewrite the ready file after the reload");
        }
    }
}

fn same_client_auth(a: &crate::config::ClientAuth, b: &crate::config::ClientAuth) -> bool {
    a.registry == b.registry
        && a.unknown_key == b.unknown_key
        && a.identity_secret == b.identity_secret
}

/// Parts read only at start stay as they are; each that the new file
/// changes is named in one log line.
fn keep_what_needs_a_restart(prev: &Config, next: &mut Config) {
    let mut kept = Vec::new();
    if format!("{:?}", prev.mail) != format!("{:?}", next.mail) {
        kept.push("mail");
        next.mail = prev.mail.clone();
    }
    if format!("{:?}", prev.acme) != format!("{:?}", next.acme) {
        kept.push("tls.acme");
        next.acme = prev.acme.clone();
    }
    if prev.metrics_listen != next.metrics_listen {
        kept.push("metrics.listen");
        next.metrics_listen = prev.metrics_listen;
    }
    if prev.control_socket != next.control_socket {
        kept.push("control.socket");
        next.control_socket = prev.control_socket.clone();
    }
    if !kept.is_empty() {
        tracing::warn!(
            sections = %kept.join(", "),
            "changed in the file but read only at start: kept as they were until a restart or an upgrade (serve --takeover)"
        );
    }
}
