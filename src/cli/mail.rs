//! The `frontdoor mail …` and `frontdoor accounts …` commands: argument
//! shapes (clap) and their `run` functions, so `main.rs` only wires them.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;

use frontdoor::config::Config;
use frontdoor::diagnostics::Problems;
use frontdoor::mail::accounts::{generate_password, Accounts};
use frontdoor::mail::config::MailConfig;

/// Default data directory when neither `--config` nor `--data-dir` is given.
pub const DEFAULT_DATA_DIR: &str = "frontdoor-data";

#[derive(Debug, Subcommand)]
pub enum MailCmd {
    /// Run only the bundled mail servers of the config's `mail:` section.
    Serve {
        /// The YAML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct AccountsArgs {
    /// The YAML configuration (its mail: section gives data_dir and domains).
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// The data directory (default ./frontdoor-data; its frontdoor.yaml is read when present).
    #[arg(long, global = true, conflicts_with = "config")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: AccountsCmd,
}

#[derive(Debug, Subcommand)]
pub enum AccountsCmd {
    /// Create an account; the password is read from stdin when it is not a terminal, else generated and printed.
    Add { address: String },
    /// List accounts.
    List,
    /// Remove an account (its stored mail stays until the store drops it).
    Remove { address: String },
    /// Set a new password (stdin, or generated and printed).
    Passwd { address: String },
}

/// Why a configuration file cannot drive the mail commands (the operator's
/// file is wrong).
#[derive(Debug, thiserror::Error)]
pub enum LoadMailError {
    #[error(transparent)]
    Invalid(#[from] Problems),
    #[error("{}: no mail: section", .0.display())]
    NoMailSection(PathBuf),
}

fn load_mail(path: &Path) -> Result<(Config, MailConfig), LoadMailError> {
    let cfg = Config::load(path)?;
    let mail = cfg
        .mail
        .clone()
        .ok_or_else(|| LoadMailError::NoMailSection(path.to_owned()))?;
    Ok((cfg, mail))
}

/// `frontdoor mail …`
/// Run a `frontdoor mail …` command, logging as the global
/// `--log-format`/`--log-level` flags say (`RUST_LOG` overrides the level).
pub fn run_mail(cmd: MailCmd, log_format: &str, log_level: &str) -> ExitCode {
    frontdoor::serve::init_logging(log_format, log_level);
    match cmd {
        MailCmd::Serve { config } => {
            let (cfg, mail) = match load_mail(&config) {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(1);
                }
            };
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            rt.block_on(async move {
                let shutdown = CancellationToken::new();
                // Without the front door, STARTTLS on the MX uses the
                // certificate files of `tls.certificates`, if any.
                let certs = if cfg.certificates.is_empty() {
                    None
                } else {
                    match frontdoor::tls::CertStore::load(&cfg.certificates) {
                        Ok(store) => Some(Arc::new(frontdoor::tls::SniResolver::new(store))),
                        Err(errs) => {
                            for e in errs {
                                eprintln!("{e}");
                            }
                            return ExitCode::from(1);
                        }
                    }
                };
                let started = match frontdoor::mail::resolve_identity_secret(&cfg) {
                    Ok(secret) => {
                        frontdoor::mail::start(&mail, secret, shutdown.clone(), certs).await
                    }
                    Err(e) => Err(e),
                };
                let servers = match started {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(1);
                    }
                };
                // One line per listener on stdout, for operators and scripts
                // (the real port when the config says port 0).
                for (name, addr) in [
                    ("submission", &servers.submission),
                    ("lmtp", &servers.lmtp),
                    ("inbound", &servers.inbound),
                    ("imap", &servers.imap),
                ] {
                    if let Some(a) = addr {
                        println!("{name} listening on {a}");
                    }
                }
                wait_for_signal().await;
                tracing::info!("shutting down");
                shutdown.cancel();
                servers.wait(cfg.timeouts.shutdown_grace).await;
                ExitCode::SUCCESS
            })
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn accounts_for(args: &AccountsArgs) -> anyhow::Result<Accounts> {
    let mail = match (&args.config, &args.data_dir) {
        (Some(c), _) => load_mail(c)?.1,
        (None, d) => {
            let dir = d.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
            let cfg = dir.join("frontdoor.yaml");
            if cfg.exists() {
                load_mail(&cfg)?.1
            } else {
                MailConfig::with_data_dir(dir)
            }
        }
    };
    Ok(Accounts::new(
        &mail.data_dir,
        &mail.domains,
        mail.auto_create,
    ))
}

fn read_or_generate_password() -> anyhow::Result<(String, bool)> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok((generate_password()?, true));
    }
    let mut s = String::new();
    stdin
        .lock()
        .take(4096)
        .read_to_string(&mut s)
        .map_err(|e| anyhow::anyhow!("reading the password from stdin: {e}"))?;
    let p = s.lines().next().unwrap_or("").to_owned();
    if p.is_empty() {
        anyhow::bail!("empty password on stdin");
    }
    Ok((p, false))
}

/// `frontdoor accounts …`
pub fn run_accounts(args: AccountsArgs) -> ExitCode {
    let res = (|| -> anyhow::Result<()> {
        let accounts = accounts_for(&args)?;
        match &args.cmd {
            AccountsCmd::Add { address } => {
                let (pw, generated) = read_or_generate_password()?;
                let a = accounts.add(address, &pw)?;
                if generated {
                    println!("created {a} with password: {pw}");
                } else {
                    println!("created {a}");
                }
            }
            AccountsCmd::List => {
                for a in accounts.list()? {
                    println!("{a}");
                }
            }
            AccountsCmd::Remove { address } => {
                accounts.remove(address)?;
                println!("removed {address}");
            }
            AccountsCmd::Passwd { address } => {
                let (pw, generated) = read_or_generate_password()?;
                accounts.set_password(address, &pw)?;
                if generated {
                    println!("new password for {address}: {pw}");
                } else {
                    println!("password changed for {address}");
                }
            }
        }
        Ok(())
    })();
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
