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
        /// Once every listener is bound, write a JSON document listing each
        /// one with its actual address here (atomically; docs/operations.md).
        #[arg(long, value_name = "PATH")]
        ready_file: Option<PathBuf>,
    },
    /// Print the DNS records the relay needs (zone-file lines: A/AAAA, MX,
    /// DKIM, MTA-STS, SPF, DMARC, SRV, autoconfig, TLSRPT); with --check,
    /// look each up through `mail.dns.resolvers` (or the system's) and say
    /// ok, MISSING or WRONG. Exit code 1 when a record is wrong, a required
    /// one is missing, or a lookup fails.
    Dns {
        /// The YAML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Look the records up and compare.
        #[arg(long)]
        check: bool,
        /// This host's public address (repeat for IPv4 and IPv6).
        #[arg(long, value_name = "ADDR")]
        ip: Vec<std::net::IpAddr>,
    },
    /// List the outbound queue (id, from, to, attempts, next attempt, last
    /// error); with --flush, ask the running server to retry every entry now.
    Queue {
        /// The YAML configuration (its mail: section gives data_dir).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The data directory (default ./frontdoor-data).
        #[arg(long, conflicts_with = "config")]
        data_dir: Option<PathBuf>,
        /// Retry every entry now (the server picks the request up within a second).
        #[arg(long)]
        flush: bool,
    },
    /// DKIM keys: list them, make a new pair (rotate), switch signing to
    /// it (activate) and remove an old one (retire), without a restart.
    Dkim(super::dkim::DkimArgs),
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
    /// Create an account; the password is read from stdin when it is not a
    /// terminal, else generated and printed. Prints the account's dclogin:
    /// URL (which holds the password) and its QR code, for Delta Chat.
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

pub(super) fn load_mail(path: &Path) -> Result<(Config, MailConfig), LoadMailError> {
    let cfg = Config::load(path)?;
    let mail = cfg
        .mail
        .clone()
        .ok_or_else(|| LoadMailError::NoMailSection(path.to_owned()))?;
    Ok((cfg, mail))
}

/// Run a `frontdoor mail …` command (logging is set up by `main`, as the
/// global `--log-format`/`--log-level` flags say).
pub fn run_mail(cmd: MailCmd) -> ExitCode {
    match cmd {
        MailCmd::Dns { config, check, ip } => match run_dns(&config, check, &ip) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        MailCmd::Queue {
            config,
            data_dir,
            flush,
        } => match run_queue(config, data_dir, flush) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        MailCmd::Dkim(args) => super::dkim::run(args),
        MailCmd::Serve { config, ready_file } => {
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
                // Handlers first, so a signal sent as soon as the ready
                // file appears is never the default (fatal) one.
                let signals = Signals::install();
                if let Some(path) = &ready_file {
                    let mut ready = frontdoor::ready::Ready::new();
                    ready.mail(&servers);
                    if let Err(e) = ready.write(path) {
                        eprintln!("{e}");
                        return ExitCode::from(1);
                    }
                }
                signals.wait().await;
                tracing::info!("shutting down");
                shutdown.cancel();
                servers.wait(cfg.timeouts.shutdown_grace).await;
                ExitCode::SUCCESS
            })
        }
    }
}

/// `frontdoor mail dns [--check]`.
fn run_dns(config: &Path, check: bool, ip: &[std::net::IpAddr]) -> anyhow::Result<ExitCode> {
    use frontdoor::mail::dns_records::{self, Need, Rule, Verdict};
    use std::io::Write;
    let (_, mail) = load_mail(config)?;
    // Written, not printed: a closed pipe (`| head`) ends the command
    // with an error instead of a panic.
    let mut out = std::io::stdout().lock();
    // Every kept pair: during a rotation the old and the new selector are
    // both published.
    let ring = frontdoor::mail::dkim::keys::Keyring::new(&mail.data_dir, &mail.dkim_selector);
    let dkim: Vec<(String, String)> = ring
        .signers()?
        .iter()
        .flat_map(|s| s.records().to_vec())
        .collect();
    let records = dns_records::expected(&dns_records::Inputs {
        domains: &mail.domains,
        addrs: ip,
        dkim: &dkim,
    });
    let heading = |need: Need| match need {
        Need::Required => "; Required",
        Need::Recommended => "; Recommended",
        Need::Optional => "; Optional",
    };
    if !check {
        writeln!(
            out,
            "; DNS records for {} (frontdoor mail dns)",
            mail.domains.join(", ")
        )?;
        if dkim.is_empty() {
            writeln!(
                out,
                "; DKIM keys are made at the first start of frontdoor; run this again after it"
            )?;
        }
        for need in [Need::Required, Need::Recommended, Need::Optional] {
            writeln!(out, "{}", heading(need))?;
            for e in records.iter().filter(|e| e.need == need) {
                writeln!(out, "{}", dns_records::zone_line(e))?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rt = tokio::runtime::Runtime::new()?;
    let auth = frontdoor::mail::dkim::authenticator(&mail.dns_resolvers)?;
    let resolver = auth.resolver();
    let (mut ok, mut missing, mut wrong, mut failed) = (0, 0, 0, 0);
    let mut bad = dkim.is_empty();
    if dkim.is_empty() {
        writeln!(
            out,
            "MISSING  DKIM keys: none in {}/dkim yet (start frontdoor once)",
            mail.data_dir.display()
        )?;
    }
    for e in &records {
        let answers = rt.block_on(async {
            if let Rule::Alias(target) = &e.rule {
                let c = dns_records::lookup(resolver, &e.name, "CNAME").await?;
                if !c.is_empty() {
                    return Ok((c, Vec::new()));
                }
                let mine = dns_records::lookup(resolver, &e.name, "A").await?;
                let mut theirs = Vec::new();
                for t in ["A", "AAAA"] {
                    for a in dns_records::lookup(resolver, target, t).await? {
                        if let dns_records::Answer::Addr(ip) = a {
                            theirs.push(ip);
                        }
                    }
                }
                return Ok((mine, theirs));
            }
            dns_records::lookup(resolver, &e.name, e.rtype)
                .await
                .map(|a| (a, Vec::new()))
        });
        let shown = match &e.rdata {
            Some(_) => dns_records::zone_line(e),
            None => format!("{} A/AAAA (any address)", e.name),
        };
        match answers {
            Err(err) => {
                failed += 1;
                bad = true;
                writeln!(out, "ERROR    {shown}\n         {err}")?;
            }
            Ok((answers, target)) => match dns_records::judge(e, &answers, &target) {
                Verdict::Ok => {
                    ok += 1;
                    writeln!(out, "ok       {shown}")?;
                }
                Verdict::Missing => {
                    missing += 1;
                    let tag = match e.need {
                        Need::Required => {
                            bad = true;
                            "MISSING "
                        }
                        Need::Recommended => "missing ",
                        Need::Optional => "optional",
                    };
                    writeln!(out, "{tag} {shown}")?;
                }
                Verdict::Wrong(found) => {
                    wrong += 1;
                    bad = true;
                    writeln!(out, "WRONG    {shown}\n         found: {found}")?;
                }
            },
        }
    }
    writeln!(
        out,
        "{ok} ok, {missing} missing, {wrong} wrong, {failed} lookups failed"
    )?;
    Ok(if bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `frontdoor mail queue [--flush]`: reads the queue files directly (the
/// server may be running); a flush is a request file the worker watches.
fn run_queue(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    flush: bool,
) -> anyhow::Result<()> {
    use frontdoor::mail::store::queue;
    let dir = match (config, data_dir) {
        (Some(c), _) => load_mail(&c)?.1.data_dir,
        (None, Some(d)) => d,
        (None, None) => PathBuf::from(DEFAULT_DATA_DIR),
    };
    let entries = queue::list_dir(&dir)?;
    let fmt_time = |t: i64| {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64);
        humantime::format_rfc3339_seconds(t).to_string()
    };
    for e in &entries {
        let to: Vec<String> = e
            .rcpts
            .iter()
            .map(|r| match r.status {
                queue::RcptStatus::Pending => r.addr.clone(),
                queue::RcptStatus::Delivered => format!("{} (delivered)", r.addr),
                queue::RcptStatus::Failed => format!("{} (failed)", r.addr),
            })
            .collect();
        let from = if e.from.is_empty() { "<>" } else { &e.from };
        println!(
            "{}  from={}  to={}  size={}  queued={}  attempts={}  next={}  error={}",
            e.id,
            frontdoor::log_safe::Escaped(from),
            frontdoor::log_safe::Escaped(&to.join(",")),
            e.size,
            fmt_time(e.queued),
            e.attempts,
            fmt_time(e.next_attempt),
            frontdoor::log_safe::Escaped(if e.last_error.is_empty() {
                "-"
            } else {
                &e.last_error
            }),
        );
    }
    println!("{} queued", entries.len());
    if flush {
        let p = queue::request_flush(&dir)?;
        println!("flush requested ({})", p.display());
    }
    Ok(())
}

/// SIGTERM and SIGINT, their handlers installed on creation.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        Self {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
        }
    }

    /// Until either arrives (a handler that could not be installed never fires).
    async fn wait(mut self) {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = recv(&mut self.term) => {}
            _ = recv(&mut self.int) => {}
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
    Ok(Accounts::from_config(&mail))
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
                // For Delta Chat: scanning this logs in to the new account.
                super::chatmail::print_with_qr(&frontdoor::mail::chatmail::uri::dclogin_url(
                    &a, &pw,
                ));
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
