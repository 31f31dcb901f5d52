//! `frontdoor chatmail …` and the terminal QR codes of the CLI: the
//! relay's `dcaccount:` invite (`chatmail invite`), its `https://` proxy
//! URL (`chatmail invite --proxy`) and the `dclogin:` URL `accounts add`
//! prints. The URIs come from the library
//! (`mail::chatmail::uri`); this module only finds the relay's domain in
//! the configuration and renders.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use frontdoor::config::{Config, ConnectAuth};
use frontdoor::mail::chatmail::uri::{dcaccount_uri, proxy_url, InviteForm};
use frontdoor::mail::config::MailConfig;

#[derive(Debug, Args)]
pub struct ChatmailArgs {
    #[command(subcommand)]
    pub cmd: ChatmailCmd,
}

#[derive(Debug, Subcommand)]
pub enum ChatmailCmd {
    /// Print the relay's dcaccount: invite and its QR code (scan it with Delta Chat to sign up).
    Invite {
        /// The YAML configuration (its mail: section names the domain).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The data directory whose frontdoor.yaml to read (default ./frontdoor-data).
        #[arg(long, conflicts_with = "config")]
        data_dir: Option<PathBuf>,
        /// `dcaccount:DOMAIN` (the client picks its own credentials) instead
        /// of `dcaccount:https://DOMAIN/new` (the relay's /new gives them).
        #[arg(long, conflicts_with = "proxy")]
        short: bool,
        /// The relay's HTTPS proxy for Delta Chat instead (`https://USER:PASSWORD@HOST:443`,
        /// the first listener with `https_connect`): under `auth: password`
        /// with fresh credentials whose account is created at the first login.
        #[arg(long)]
        proxy: bool,
    },
}

/// `text` as a QR code of Unicode half blocks, two modules per character
/// cell, with its quiet zone. Drawn for a dark terminal background (dark
/// modules are blank cells, light ones full blocks), as `qrencode -t UTF8`
/// does; `None` if `text` is too long for a QR code.
pub fn terminal_qr(text: &str) -> Option<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

/// `uri` on its own line, then its QR code, written to stdout at once; a
/// closed stdout (`| head`) is not an error worth a panic.
pub fn print_with_qr(uri: &str) {
    use std::io::Write;
    let mut text = format!("{uri}\n");
    if let Some(qr) = terminal_qr(uri) {
        text.push_str(&qr);
        text.push('\n');
    }
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn load(config: &Path) -> anyhow::Result<(Config, MailConfig)> {
    let cfg = Config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mail = cfg
        .mail
        .clone()
        .ok_or_else(|| anyhow::anyhow!("{}: no mail: section", config.display()))?;
    Ok((cfg, mail))
}

/// The proxy URL of the first listener with `https_connect`, for `domain`.
fn proxy_invite(cfg: &Config, mail: &MailConfig, domain: &str) -> anyhow::Result<String> {
    let Some((l, hc)) = cfg
        .listeners
        .iter()
        .find_map(|l| l.https_connect.map(|h| (l, h)))
    else {
        anyhow::bail!(
            "{}: no listener has https_connect (add `https_connect: {{ auth: password }}` to the 443 listener)",
            cfg.path.display()
        );
    };
    // Port 0 (a test's) stands for the port the relay is reached on.
    let port = match l.bind.port() {
        0 => 443,
        p => p,
    };
    Ok(match hc.auth {
        ConnectAuth::None | ConnectAuth::Key => {
            if hc.auth == ConnectAuth::Key {
                eprintln!("note: this listener takes CONNECT only with a pinned client key, which Delta Chat does not send");
            }
            proxy_url(domain, port, None)
        }
        ConnectAuth::Password => {
            let Some(c) = &mail.chatmail else {
                anyhow::bail!("auth: password needs an account; not a chatmail relay");
            };
            if !c.new_accounts {
                anyhow::bail!("new accounts are switched off (mail.chatmail.new_accounts: false): no fresh proxy credentials; use an existing account's address and password in https://ADDRESS:PASSWORD@{domain}:{port}");
            }
            let creds = frontdoor::web::newemail::mint(
                domain,
                c.username_max_length,
                c.password_min_length.saturating_add(3),
                &mut frontdoor::web::newemail::os_random,
            )?;
            proxy_url(domain, port, Some((&creds.email, &creds.password)))
        }
    })
}

/// `frontdoor chatmail …`
pub fn run(args: ChatmailArgs) -> ExitCode {
    let res = (|| -> anyhow::Result<()> {
        match args.cmd {
            ChatmailCmd::Invite {
                config,
                data_dir,
                short,
                proxy,
            } => {
                let config = config.unwrap_or_else(|| {
                    data_dir
                        .unwrap_or_else(|| PathBuf::from(super::embedded::DEFAULT_DATA_DIR))
                        .join("frontdoor.yaml")
                });
                let (cfg, mail) = load(&config)?;
                let Some(chatmail) = &mail.chatmail else {
                    anyhow::bail!(
                        "{}: not a chatmail relay (no mail.chatmail section)",
                        config.display()
                    );
                };
                let domain = mail
                    .domains
                    .first()
                    .ok_or_else(|| anyhow::anyhow!("{}: no mail domain", config.display()))?;
                if proxy {
                    print_with_qr(&proxy_invite(&cfg, &mail, domain)?);
                    return Ok(());
                }
                let form = if short {
                    InviteForm::Domain
                } else {
                    InviteForm::New
                };
                let uri = dcaccount_uri(domain, form);
                if !chatmail.new_accounts {
                    eprintln!("note: new accounts are switched off (mail.chatmail.new_accounts: false): this invite creates none");
                }
                print_with_qr(&uri);
            }
        }
        Ok(())
    })();
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::from(1)
        }
    }
}
