//! `frontdoor serve` and `frontdoor check`: load, validate, run, reload, drain.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::diagnostics::Problems;
use crate::frontdoor::Frontdoor;

/// Load the config and every file it names; all problems, each with its place.
pub fn check(path: &Path) -> Result<Config, Problems> {
    let cfg = Config::load(path)?;
    let mut problems = Vec::new();
    for (i, cp) in cfg.certificates.iter().enumerate() {
        if let Err(e) = crate::tls::certs::load_pair(cp) {
            use crate::tls::certs::CertError::*;
            let on_key = match &e {
                Read { path, .. } | Pem { path, .. } | WorldWritable { path } => *path == cp.key,
                NoKey { .. } | BadKey { .. } | Mismatch { .. } => true,
                _ => false,
            };
            let field = if on_key { "key" } else { "cert" };
            problems.push(cfg.problem_at(&format!("tls.certificates[{i}].{field}"), e));
        }
    }
    if let Some(acme) = &cfg.acme {
        if let Some(ca) = &acme.directory_ca {
            let ok = std::fs::read(ca)
                .ok()
                .is_some_and(|pem| rustls_pemfile::certs(&mut &pem[..]).any(|c| c.is_ok()));
            if !ok {
                problems.push(cfg.problem_at(
                    "tls.acme.directory_ca",
                    format!("{}: no readable PEM certificate", ca.display()),
                ));
            }
        }
        if !cfg
            .listeners
            .iter()
            .any(|l| !cfg.listener_alpn(l).is_empty())
        {
            problems.push(cfg.problem_at(
                "tls.acme",
                "no listener negotiates ALPN, so none can answer the tls-alpn-01 challenge: route at least one ALPN on the listener the CA reaches (port 443)",
            ));
        }
    }
    if let Some(ca) = &cfg.client_auth {
        if let Err(e) = crate::auth::Auth::check(ca) {
            problems.extend(e.0);
        }
    }
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(Problems(problems))
    }
}

/// Why `serve` could not run. The operator's or the system's to fix; each
/// variant's source says which part failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The identity secret shared with the bundled servers.
    #[error(transparent)]
    Secret(crate::mail::MailError),
    /// The front door (listeners, certificates, registry).
    #[error(transparent)]
    Frontdoor(#[from] crate::frontdoor::StartError),
    /// The bundled mail servers.
    #[error("bundled mail servers: {0}")]
    Mail(crate::mail::MailError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The readiness document could not be written (`--ready-file`).
    #[error(transparent)]
    Ready(crate::ready::ReadyError),
    /// `--takeover`: the running instance did not hand its sockets over.
    #[error(transparent)]
    Takeover(crate::handover::client::TakeoverError),
}

/// Run the front door until SIGTERM/SIGINT; SIGHUP reloads the whole configuration.
pub async fn serve(cfg: Config) -> Result<(), ServeError> {
    serve_with(cfg, None).await
}

/// [`serve`], writing the readiness document ([`crate::ready`]) to
/// `ready_file` once every listener is bound and the signal handlers are
/// installed.
pub async fn serve_with(cfg: Config, ready_file: Option<&Path>) -> Result<(), ServeError> {
    let opts = ServeOptions {
        ready_file: ready_file.map(Path::to_owned),
        ..ServeOptions::default()
    };
    serve_opts(cfg, opts).await
}

/// How `serve` runs, beyond its configuration file.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// `--ready-file`: the readiness document ([`crate::ready`]).
    pub ready_file: Option<PathBuf>,
    /// `--takeover`: take the listening sockets over from the instance on
    /// the control socket, which then drains ([`crate::handover`]).
    pub takeover: bool,
    /// `--listen`: the first listener's address, kept across reloads.
    pub listen: Option<SocketAddr>,
    /// The control socket when the file names none (the embedded
    /// default's is in its data directory).
    pub control_socket: Option<PathBuf>,
}

impl ServeOptions {
    /// What the command line overrides, applied to a configuration read
    /// from the file (at start and at each reload).
    pub fn apply(&self, cfg: &mut Config) {
        if let (Some(l), Some(first)) = (self.listen, cfg.listeners.first_mut()) {
            first.bind = l;
        }
        if let Some(c) = &self.control_socket {
            if cfg.control_socket == Path::new(crate::config::DEFAULT_CONTROL_SOCKET) {
                cfg.control_socket = c.clone();
            }
        }
    }
}

/// [`serve`] with [`ServeOptions`].
pub async fn serve_opts(mut cfg: Config, opts: ServeOptions) -> Result<(), ServeError> {
    opts.apply(&mut cfg);
    // Front door and bundled servers in one process share a generated
    // identity secret: the front door signs, the servers check.
    crate::mail::prepare_identity_secret(&mut cfg).map_err(ServeError::Secret)?;
    let shutdown = CancellationToken::new();
    let grace = cfg.timeouts.shutdown_grace;
    crate::handover::systemd::inherit_listen_fds();
    let predecessor = if opts.takeover {
        let p = crate::handover::client::take_over(&cfg.control_socket)
            .await
            .map_err(ServeError::Takeover)?;
        // The predecessor lets go of the mail store when its drain ends.
        crate::handover::wait_for_store_lock(
            crate::handover::control::READY_WITHIN + grace + Duration::from_secs(30),
        );
        Some(p)
    } else {
        None
    };
    // Bind the front door (certificates, listeners) first: the inbound MX's
    // STARTTLS serves the same certificates.
    let mut fd = Frontdoor::bind(cfg.clone()).await?;
    let current = fd.current();
    let stop = shutdown.clone();
    let (reloads, reload_rx) = tokio::sync::mpsc::channel(1);
    // Install the handlers before the listeners announce themselves, so a
    // signal sent right after "listening" is never the default (fatal) one.
    use tokio::signal::unix::{signal, SignalKind};
    let (mut hup, mut term, mut int) = (
        signal(SignalKind::hangup()).map_err(ServeError::Signals)?,
        signal(SignalKind::terminate()).map_err(ServeError::Signals)?,
        signal(SignalKind::interrupt()).map_err(ServeError::Signals)?,
    );
    let path = cfg.path.clone();
    let handed_over = CancellationToken::new();
    let handed = handed_over.clone();
    let reload_opts = opts.clone();
    let reload_current = current.clone();
    let signals = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!(config = %path.display(), "SIGHUP: reloading the configuration");
                    if let Some(next) = checked_for_reload(&path, &reload_current, &reload_opts) {
                        let _ = reloads.send(next).await;
                    }
                }
                _ = term.recv() => { tracing::info!("SIGTERM received"); break; }
                _ = int.recv() => { tracing::info!("SIGINT received"); break; }
                _ = handed.cancelled() => break,
            }
        }
        crate::handover::systemd::stopping();
        stop.cancel();
    });
    let (front, metrics) = (fd.local_addrs(), fd.metrics_addr());
    let others = Arc::new(std::sync::Mutex::new(crate::ready::Ready::new()));
    if let Some(path) = &opts.ready_file {
        fd.announce(path.clone(), others.clone());
    }
    // Taking over, the front door accepts at once (the predecessor stops
    // when told READY); connections for the bundled servers wait in their
    // inherited sockets until the store is free. Otherwise it accepts
    // once the bundled servers listen.
    let mut run = Some(fd);
    let mut front_task = None;
    if let Some(p) = predecessor {
        if let Some(fd) = run.take() {
            front_task = Some(tokio::spawn(fd.run(shutdown.clone(), reload_rx)));
        }
        if let Err(e) = p.ready().await {
            tracing::warn!(error = %e, "the predecessor did not confirm the takeover");
        }
        return finish(FinishArgs {
            cfg,
            current,
            opts,
            shutdown,
            handed_over,
            signals,
            front,
            metrics,
            others,
            run: None,
            front_task,
            reload_rx: None,
        })
        .await;
    }
    finish(FinishArgs {
        cfg,
        current,
        opts,
        shutdown,
        handed_over,
        signals,
        front,
        metrics,
        others,
        run,
        front_task,
        reload_rx: Some(reload_rx),
    })
    .await
}

struct FinishArgs {
    cfg: Config,
    current: Arc<crate::frontdoor::Current>,
    opts: ServeOptions,
    shutdown: CancellationToken,
    handed_over: CancellationToken,
    signals: tokio::task::JoinHandle<()>,
    front: Vec<SocketAddr>,
    metrics: Option<SocketAddr>,
    others: Arc<std::sync::Mutex<crate::ready::Ready>>,
    run: Option<Frontdoor>,
    front_task: Option<tokio::task::JoinHandle<()>>,
    reload_rx: Option<tokio::sync::mpsc::Receiver<Config>>,
}

/// The bundled servers, the control socket, readiness; then serve until
/// the shutdown and drain.
async fn finish(a: FinishArgs) -> Result<(), ServeError> {
    let FinishArgs {
        cfg,
        current,
        opts,
        shutdown,
        handed_over,
        signals,
        front,
        metrics,
        others,
        run,
        mut front_task,
        reload_rx,
    } = a;
    let grace = cfg.timeouts.shutdown_grace;
    let resolver = current.load().resolver.clone();
    let mail = match &cfg.mail {
        Some(m) => {
            let started = match crate::mail::resolve_identity_secret(&cfg) {
                Ok(secret) => {
                    // The account page's password checks, when it runs:
                    // web, IMAP and SMTP logins count in one set of throttles.
                    let logins = current.load().logins.clone();
                    crate::mail::start_with(m, secret, shutdown.clone(), Some(resolver), logins)
                        .await
                }
                Err(e) => Err(e),
            };
            match started {
                Ok(s) => {
                    if let Some(q) = &s.delivery {
                        let _ = current.load().mail_queue.set(q.clone());
                    }
                    if let Some(mx) = &s.mx {
                        let _ = current.load().mail_mx.set(mx.clone());
                    }
                    Some(s)
                }
                Err(e) => {
                    shutdown.cancel();
                    if let Some(t) = front_task {
                        let _ = t.await;
                    }
                    return Err(ServeError::Mail(e));
                }
            }
        }
        None => None,
    };
    crate::handover::drop_unclaimed();
    match crate::handover::control::bind(&cfg.control_socket, opts.takeover).await {
        Ok(l) => {
            tracing::info!(path = %cfg.control_socket.display(), "control socket ready for a successor (serve --takeover)");
            tokio::spawn(crate::handover::control::serve(
                l,
                shutdown.clone(),
                handed_over,
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, "no control socket: this instance cannot hand its sockets to a successor")
        }
    }
    {
        let mut o = match others.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(m) = &mail {
            o.mail(m);
        }
    }
    if let Some(path) = &opts.ready_file {
        let mut ready = crate::ready::Ready::new();
        ready.frontdoor(&front, metrics);
        if let Ok(o) = others.lock() {
            ready.listeners.extend(o.listeners.iter().cloned());
        }
        if let Err(e) = ready.write(path) {
            shutdown.cancel();
            return Err(ServeError::Ready(e));
        }
    }
    if let (Some(fd), Some(rx)) = (run, reload_rx) {
        front_task = Some(tokio::spawn(fd.run(shutdown.clone(), rx)));
    }
    crate::handover::systemd::ready();
    // The bundled servers drain beside the front door, not after it: their
    // sessions end as the front door's connections to them close, and then
    // the store's lock is free for a successor whose own connections wait
    // for it (an old front-door connection may be among them).
    let front = async {
        if let Some(t) = front_task {
            let _ = t.await;
        }
    };
    let mail = async {
        if let Some(m) = mail {
            shutdown.cancelled().await;
            m.wait(grace).await;
            tracing::info!("bundled mail servers stopped; the mail store is released");
        }
    };
    tokio::join!(front, mail);
    signals.abort();
    Ok(())
}

/// The configuration file read again for a reload and checked exactly as
/// `frontdoor check` does; `None` (every problem logged as
/// `file:line: reason`, the failure counted) when it has any problem.
fn checked_for_reload(
    path: &Path,
    current: &crate::frontdoor::Current,
    opts: &ServeOptions,
) -> Option<Config> {
    let failed = |n: usize| {
        current
            .load()
            .metrics
            .config_reloads
            .get_or_create(&crate::metrics::ResultLabel { result: "failed" })
            .inc();
        tracing::error!(
            problems = n,
            "configuration reload refused; the configuration in force stays"
        );
    };
    let mut next = match check(path) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems.0 {
                tracing::error!(error = %p, "configuration problem");
            }
            failed(problems.0.len());
            // The key registry is its own file with its own reload: it is
            // read again (the last good one stays on error) whatever the
            // rest of the configuration holds.
            if let Some(a) = &current.load().auth {
                a.reload();
            }
            return None;
        }
    };
    opts.apply(&mut next);
    if let Err(e) = crate::mail::prepare_identity_secret(&mut next) {
        tracing::error!(error = %e, "identity secret");
        failed(1);
        return None;
    }
    Some(next)
}

/// Set up tracing: `format` is `text` or `json`; the filter comes from
/// `RUST_LOG` when set, else `level`.
pub fn init_logging(format: &str, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().flatten_event(true).init();
    } else {
        b.with_ansi(false).init();
    }
}
