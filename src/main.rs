//! The `frontdoor` command line: parses arguments and calls into the library.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "frontdoor",
    version,
    about = "A TLS front door for mail hosts: one port for IMAP, SMTP submission and the web, routed by ALPN, with pinned-key client authentication and PROXY v2 to the backends.",
    after_help = "Configuration reference and examples: README.md, docs/ and examples/ in the source tree."
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter when RUST_LOG is unset (e.g. info, debug, frontdoor=debug).
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the front door (TLS on the configured listeners, routing to backends).
    ///
    /// Without --config: the embedded default in --data-dir (created on first
    /// start): a self-signed certificate for localhost, the bundled IMAP and
    /// submission servers, an empty key registry, listening on 127.0.0.1:8443.
    ///
    /// With --chatmail DOMAIN (and no --config): the same layout as a
    /// chatmail relay for DOMAIN (mail domain DOMAIN, a self-signed
    /// certificate for DOMAIN and mta-sts.DOMAIN, the web route on
    /// builtin:chatmail, accounts created at their first login).
    Serve {
        /// The YAML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Serve the embedded default as a chatmail relay for this domain.
        #[arg(long, value_name = "DOMAIN", conflicts_with = "config")]
        chatmail: Option<String>,
        /// Data directory of the embedded default (used when --config is not given).
        #[arg(long, default_value = cli::embedded::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Listen address overriding the first listener's `bind`.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Once every listener is bound, write a JSON document listing each
        /// one with its actual address here (atomically; docs/operations.md).
        #[arg(long, value_name = "PATH")]
        ready_file: Option<PathBuf>,
        /// Take the listening sockets over from the instance running with
        /// this configuration (its control socket), which then drains: a
        /// binary upgrade that refuses no connection.
        #[arg(long)]
        takeover: bool,
    },
    /// Validate the configuration and every file it names; print each problem as file:line: reason.
    Check {
        /// The YAML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The bundled mail servers.
    Mail {
        #[command(subcommand)]
        cmd: cli::mail::MailCmd,
    },
    /// Manage mail accounts of the bundled servers.
    Accounts(cli::mail::AccountsArgs),
    /// Manage the pinned TLS client keys: fingerprint, add, list, remove, show, gen.
    Keys(cli::keys::KeysArgs),
    /// Chatmail relay tools: the dcaccount: invite.
    Chatmail(cli::chatmail::ChatmailArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let fmt = match cli.log_format {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    };
    // Every subcommand logs (to stderr) as the global flags say.
    frontdoor::serve::init_logging(fmt, &cli.log_level);
    match cli.cmd {
        Cmd::Serve {
            config,
            chatmail,
            data_dir,
            listen,
            ready_file,
            takeover,
        } => {
            let embedded = config.is_none();
            let default_listen = || {
                listen.unwrap_or_else(|| {
                    cli::embedded::DEFAULT_LISTEN
                        .parse()
                        .unwrap_or_else(|_| ([127, 0, 0, 1], 8443).into())
                })
            };
            let mut relay_domain = None;
            let config = match (config, chatmail) {
                (Some(c), _) => c,
                (None, Some(domain)) => {
                    match cli::embedded::prepare_chatmail(&data_dir, &domain, default_listen()) {
                        Ok((p, d)) => {
                            relay_domain = Some(d);
                            p
                        }
                        Err(e) => {
                            eprintln!("frontdoor: cannot prepare the chatmail relay: {e}");
                            return ExitCode::from(1);
                        }
                    }
                }
                (None, None) => match cli::embedded::prepare(&data_dir, default_listen()) {
                    Ok(p) => p,
                    Err(e) => {
                        eprintln!("frontdoor: cannot prepare the embedded default: {e}");
                        return ExitCode::from(1);
                    }
                },
            };
            let mut cfg = match frontdoor::serve::check(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(1);
                }
            };
            let opts = frontdoor::serve::ServeOptions {
                ready_file,
                takeover,
                listen,
                control_socket: embedded.then(|| data_dir.join("control.sock")),
            };
            opts.apply(&mut cfg);
            if embedded {
                if let Some(first) = cfg.listeners.first() {
                    match &relay_domain {
                        Some(d) => eprint!(
                            "{}",
                            cli::embedded::chatmail_next_steps(&data_dir, d, first.bind)
                        ),
                        None => eprint!("{}", cli::embedded::next_steps(&data_dir, first.bind)),
                    }
                }
            }
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("frontdoor: cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            match rt.block_on(frontdoor::serve::serve_opts(cfg, opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("frontdoor: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Check { config } => match frontdoor::serve::check(&config) {
            Ok(cfg) => {
                println!(
                    "{}: OK ({} listeners, {} routes)",
                    config.display(),
                    cfg.listeners.len(),
                    cfg.routes.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        Cmd::Mail { cmd } => cli::mail::run_mail(cmd),
        Cmd::Accounts(args) => cli::mail::run_accounts(args),
        Cmd::Chatmail(args) => cli::chatmail::run(args),
        Cmd::Keys(args) => cli::keys::run(args).unwrap_or_else(|e| {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }),
    }
}
