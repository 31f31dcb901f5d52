//! `frontdoor serve` and `frontdoor check`: load, validate, run, reload, drain.

use std::path::Path;

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
}

/// Run the front door until SIGTERM/SIGINT; SIGHUP reloads certificates and registry.
pub async fn serve(cfg: Config) -> Result<(), ServeError> {
    serve_with(cfg, None).await
}

/// [`serve`], writing the readiness document ([`crate::ready`]) to
/// `ready_file` once every listener is bound and the signal handlers are
/// installed.
pub async fn serve_with(mut cfg: Config, ready_file: Option<&Path>) -> Result<(), ServeError> {
    // Front door and bundled servers in one process share a generated
    // identity secret: the front door signs, the servers check.
    crate::mail::prepare_identity_secret(&mut cfg).map_err(ServeError::Secret)?;
    let shutdown = CancellationToken::new();
    let grace = cfg.timeouts.shutdown_grace;
    // Bind the front door (certificates, listeners) first: the inbound MX's
    // STARTTLS serves the same certificates. It accepts only in `run`, after
    // the bundled mail servers' sockets exist.
    let fd = Frontdoor::bind(cfg.clone()).await?;
    let shared = fd.shared();
    let mail = match &cfg.mail {
        Some(m) => {
            let started = match crate::mail::resolve_identity_secret(&cfg) {
                Ok(secret) => {
                    crate::mail::start_with(
                        m,
                        secret,
                        shutdown.clone(),
                        Some(shared.resolver.clone()),
                        shared.logins.clone(),
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            Some(started.map_err(ServeError::Mail)?)
        }
        None => None,
    };
    let stop = shutdown.clone();
    // Install the handlers before the listeners announce themselves, so a
    // signal sent right after "listening" is never the default (fatal) one.
    use tokio::signal::unix::{signal, SignalKind};
    let (mut hup, mut term, mut int) = (
        signal(SignalKind::hangup()).map_err(ServeError::Signals)?,
        signal(SignalKind::terminate()).map_err(ServeError::Signals)?,
        signal(SignalKind::interrupt()).map_err(ServeError::Signals)?,
    );
    let signals = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading certificates and key registry");
                    crate::frontdoor::reload(&shared);
                }
                _ = term.recv() => { tracing::info!("SIGTERM received"); break; }
                _ = int.recv() => { tracing::info!("SIGINT received"); break; }
            }
        }
        stop.cancel();
    });
    if let Some(path) = ready_file {
        let mut ready = crate::ready::Ready::new();
        ready.frontdoor(&fd.local_addrs(), fd.metrics_addr());
        if let Some(m) = &mail {
            ready.mail(m);
        }
        ready.write(path).map_err(ServeError::Ready)?;
    }
    fd.run(shutdown).await;
    if let Some(m) = mail {
        m.wait(grace).await;
    }
    signals.abort();
    Ok(())
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
