//! `frontdoor mail dkim list|rotate|activate|retire`: DKIM key rotation
//! on the keyring of the library ([`frontdoor::mail::dkim::keys`]). Run as
//! the user the server runs as (the key files are 0600).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use frontdoor::mail::config::MailConfig;
use frontdoor::mail::dkim::keys::Keyring;
use frontdoor::mail::dkim::{selectors, Signer};
use frontdoor::mail::dns_records::{txt_rdata, TTL};

#[derive(Debug, Args)]
pub struct DkimArgs {
    /// The YAML configuration (its mail: section gives data_dir, the
    /// configured selector and the domains).
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// The data directory (default ./frontdoor-data; its frontdoor.yaml is read when present).
    #[arg(long, global = true, conflicts_with = "config")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: DkimCmd,
}

#[derive(Debug, Subcommand)]
pub enum DkimCmd {
    /// The kept key pairs: selector, creation time, active or kept, and
    /// the DNS names their public keys go under.
    List,
    /// Make a new key pair beside the kept ones (not active yet) and print
    /// its DNS records; publish them, then `activate` it.
    Rotate {
        /// The new selector (default: dkimYYYY-MM of today).
        #[arg(long)]
        selector: Option<String>,
    },
    /// Sign with SELECTOR from now on; a running server switches before its
    /// next message, without a restart.
    Activate { selector: String },
    /// Remove the key pair of SELECTOR (not the active one); then remove
    /// its DNS records.
    Retire { selector: String },
}

fn mail_config(args: &DkimArgs) -> anyhow::Result<MailConfig> {
    Ok(match (&args.config, &args.data_dir) {
        (Some(c), _) => super::mail::load_mail(c)?.1,
        (None, d) => {
            let dir = d
                .clone()
                .unwrap_or_else(|| PathBuf::from(super::mail::DEFAULT_DATA_DIR));
            let cfg = dir.join("frontdoor.yaml");
            if cfg.exists() {
                super::mail::load_mail(&cfg)?.1
            } else {
                MailConfig::with_data_dir(dir)
            }
        }
    })
}

fn time(t: Option<std::time::SystemTime>) -> String {
    t.map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|| "-".into())
}

/// The zone lines of `signer` for each domain.
fn records(signer: &Signer, domains: &[String]) -> Vec<String> {
    let (ed, rsa) = selectors(signer.selector());
    let domains: Vec<String> = if domains.is_empty() {
        vec!["<domain>".into()]
    } else {
        domains.to_vec()
    };
    let mut out = Vec::new();
    for d in &domains {
        for (sel, txt) in [(&ed, &signer.txt_ed25519), (&rsa, &signer.txt_rsa)] {
            let name = format!("{sel}._domainkey.{d}.");
            out.push(format!("{name:<40} {TTL:<6} IN  TXT    {}", txt_rdata(txt)));
        }
    }
    out
}

/// Run a `frontdoor mail dkim …` command.
pub fn run(args: DkimArgs) -> ExitCode {
    match run_inner(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("frontdoor mail dkim: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_inner(args: &DkimArgs) -> anyhow::Result<()> {
    let mail = mail_config(args)?;
    let ring = Keyring::new(&mail.data_dir, &mail.dkim_selector);
    match &args.cmd {
        DkimCmd::List => {
            let keys = ring.list()?;
            if keys.is_empty() {
                println!(
                    "no DKIM keys in {} yet (they are made at the first start)",
                    ring.dir().display()
                );
            }
            for k in keys {
                let (ed, rsa) = selectors(&k.selector);
                println!(
                    "{:<16} created={}  {:<6}  {ed}._domainkey (ed25519), {rsa}._domainkey (rsa-2048)",
                    k.selector,
                    time(k.created),
                    if k.active { "active" } else { "kept" },
                );
            }
        }
        DkimCmd::Rotate { selector } => {
            let sel = selector
                .clone()
                .unwrap_or_else(|| Keyring::dated_selector(std::time::SystemTime::now()));
            let signer = ring.rotate(&sel)?;
            println!("; new DKIM key pair {sel} in {}", ring.dir().display());
            println!("; publish these records (keep the old ones), then:");
            println!(";   frontdoor mail dkim activate {sel}");
            for l in records(&signer, &mail.domains) {
                println!("{l}");
            }
        }
        DkimCmd::Activate { selector } => {
            let before = ring.active()?;
            ring.activate(selector)?;
            println!(
                "active DKIM selector: {selector} (was {before}); a running server signs with it from its next message"
            );
            println!("keep the records of {before} published until you retire it");
        }
        DkimCmd::Retire { selector } => {
            ring.retire(selector)?;
            let (ed, rsa) = selectors(selector);
            println!(
                "retired DKIM selector {selector}; remove its records ({ed}._domainkey and {rsa}._domainkey) from DNS once mail signed with it has been delivered"
            );
        }
    }
    Ok(())
}
