//! The `frontdoor` command line: parses arguments and calls into the library.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "frontdoor",
    version,
    about = "A TLS front door for mail hosts: one port for IMAP, SMTP submission and the web, routed by ALPN, with pinned-key client authentication and PROXY v2 to the backends."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the front door.
    Serve {
        /// The YAML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Load and validate the configuration and every file it names; print each problem as file:line: reason.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The bundled mail servers.
    Mail {
        #[command(subcommand)]
        cmd: frontdoor::mail::cli::MailCmd,
    },
    /// Manage mail accounts of the bundled servers.
    Accounts(frontdoor::mail::cli::AccountsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve { .. } => ExitCode::from(2),
        Cmd::Check { config } => match frontdoor::config::Config::load(&config) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        Cmd::Mail { cmd } => frontdoor::mail::cli::run_mail(cmd),
        Cmd::Accounts(args) => frontdoor::mail::cli::run_accounts(args),
    }
}
