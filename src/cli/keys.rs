//! `frontdoor keys …`: manage the pinned-key registry from the command line.
//!
//! Every subcommand works on one registry file (`--registry PATH`, or
//! `--data-dir DIR` meaning `DIR/keys.yaml`, default
//! `./frontdoor-data/keys.yaml`). Edits go through `registry::edit`, so
//! they are atomic, keep the rest of the file byte for byte, and
//! serialise with concurrent edits. `gen` makes a client key, a minimal
//! self-signed certificate and a PKCS#12 bundle for mail apps.
//! Errors are reported through `anyhow` here, at the CLI edge only.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};

use frontdoor::registry::generate::Generated;
use frontdoor::registry::{
    self, check_key_acceptable, fingerprint_spki, load_public_key, KeyEntry, Registry,
};

/// Default registry path when neither `--registry` nor `--data-dir` is given.
pub const DEFAULT_REGISTRY: &str = "frontdoor-data/keys.yaml";

#[derive(Args, Debug)]
#[command(about = "Manage the pinned TLS client keys (the registry file)")]
pub struct KeysArgs {
    /// The registry file [default: ./frontdoor-data/keys.yaml].
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "data_dir")]
    pub registry: Option<PathBuf>,
    /// Data directory: the registry is DIR/keys.yaml.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: KeysCmd,
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// Print the fingerprint (sha256:BASE64 of the SubjectPublicKeyInfo) of a
    /// certificate, public key or private key file.
    Fingerprint {
        /// Certificate (PEM or DER), public key PEM, or private key PEM.
        file: PathBuf,
    },
    /// Pin a key: append an entry to the registry.
    Add {
        /// A unique name for this key (the device), e.g. alice-phone.
        #[arg(long)]
        name: String,
        /// The account the key logs in to.
        #[arg(long)]
        account: String,
        /// The login address of the account.
        #[arg(long)]
        login: String,
        /// Greet with `* OK` instead of `* PREAUTH` (for IMAP clients that choke on PREAUTH).
        #[arg(long)]
        no_imap_preauth: bool,
        /// Certificate, public key or private key file of the client.
        file: PathBuf,
    },
    /// List the pinned keys.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a key by name or fingerprint.
    Remove {
        /// The key's name, or its fingerprint in any accepted form.
        key: String,
    },
    /// Show one key by name or fingerprint.
    Show {
        /// The key's name, or its fingerprint in any accepted form.
        key: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Generate a client key, a self-signed certificate and a PKCS#12 bundle
    /// (DIR/NAME.key, DIR/NAME.crt, DIR/NAME.p12).
    Gen {
        /// Name of the key (file names and the certificate's CN).
        #[arg(long)]
        name: String,
        /// Directory to write the files to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Key type.
        #[arg(long = "type", value_enum, default_value_t = GenType::Ed25519)]
        key_type: GenType,
        /// Password of the .p12 file (default: empty).
        #[arg(long, default_value = "")]
        p12_password: String,
        /// Encrypt the .p12 with 3DES and SHA-1 instead of AES-256 and
        /// SHA-256, for older importers.
        #[arg(long)]
        p12_legacy: bool,
        /// Account, to print a ready `keys add` command.
        #[arg(long)]
        account: Option<String>,
        /// Login address, to print a ready `keys add` command.
        #[arg(long)]
        login: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GenType {
    /// Ed25519 (small, fast; not every mail app supports it).
    Ed25519,
    /// ECDSA P-256 (widely supported).
    P256,
    /// RSA 2048 bits (the widest support).
    Rsa,
}

impl KeysArgs {
    /// The registry file these arguments name.
    pub fn registry_path(&self) -> PathBuf {
        match (&self.registry, &self.data_dir) {
            (Some(p), _) => p.clone(),
            (None, Some(d)) => d.join("keys.yaml"),
            (None, None) => PathBuf::from(DEFAULT_REGISTRY),
        }
    }
}

/// Run one `keys` subcommand.
pub fn run(args: KeysArgs) -> anyhow::Result<ExitCode> {
    let path = args.registry_path();
    let mut out = std::io::stdout().lock();
    match args.cmd {
        KeysCmd::Fingerprint { file } => {
            let spki = load_public_key(&file)?;
            writeln!(out, "{}", fingerprint_spki(&spki))?;
            if let Err(e) = check_key_acceptable(&spki) {
                eprintln!("warning: {e}");
            }
        }
        KeysCmd::Add {
            name,
            account,
            login,
            no_imap_preauth,
            file,
        } => {
            let spki = load_public_key(&file)?;
            let kind = check_key_acceptable(&spki)
                .with_context(|| format!("{} cannot be pinned", file.display()))?;
            let entry = KeyEntry {
                name,
                fingerprint: fingerprint_spki(&spki),
                account,
                login,
                imap_preauth: !no_imap_preauth,
                added_by: None,
                added_at: None,
            };
            check_entry(&entry)?;
            registry::add_entry(&path, &entry)?;
            writeln!(
                out,
                "added {:?} ({kind}, {}) for {} to {}",
                entry.name,
                entry.fingerprint,
                entry.login,
                path.display()
            )?;
        }
        KeysCmd::List { json } => {
            let reg = load_or_empty(&path)?;
            if json {
                let v: Vec<serde_json::Value> = reg.entries().iter().map(entry_json).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                out.write_all(table(&reg).as_bytes())?;
            }
        }
        KeysCmd::Remove { key } => {
            let e = registry::remove_entry(&path, &key)?;
            writeln!(
                out,
                "removed {:?} ({}) from {}",
                e.name,
                e.fingerprint,
                path.display()
            )?;
        }
        KeysCmd::Show { key, json } => {
            let reg = load_or_empty(&path)?;
            let Some(e) = reg.find(&key) else {
                bail!(
                    "no key named {key:?} or with that fingerprint in {}",
                    path.display()
                );
            };
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&entry_json(e))?)?;
            } else {
                writeln!(
                    out,
                    "name:         {}\nfingerprint:  {}\nhex:          {}\naccount:      {}\nlogin:        {}\nimap_preauth: {}\nadded_by:     {}\nadded_at:     {}",
                    e.name,
                    e.fingerprint,
                    e.fingerprint.to_hex(),
                    e.account,
                    e.login,
                    e.imap_preauth,
                    e.added_by.as_deref().unwrap_or("operator"),
                    e.added_at.as_deref().unwrap_or("-")
                )?;
            }
        }
        KeysCmd::Gen {
            name,
            out: dir,
            key_type,
            p12_password,
            p12_legacy,
            account,
            login,
        } => {
            let g = generate(&name, key_type, &p12_password, p12_legacy)?;
            let files = write_generated(&dir, &name, &g)?;
            let add = format!(
                "frontdoor keys --registry {} add --name {} --account {} --login {} {}",
                shell_quote(&path.display().to_string()),
                shell_quote(&name),
                shell_quote(account.as_deref().unwrap_or("ACCOUNT")),
                shell_quote(login.as_deref().unwrap_or("LOGIN@DOMAIN")),
                shell_quote(&files.crt.display().to_string()),
            );
            writeln!(
                out,
                "wrote {} (private key, keep it secret)\nwrote {} (certificate)\nwrote {} (PKCS#12 for mail apps, {})\nfingerprint: {}\npin it with:\n  {add}",
                files.key.display(),
                files.crt.display(),
                files.p12.display(),
                if p12_password.is_empty() {
                    "empty password"
                } else {
                    "with the given password"
                },
                g.fingerprint,
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A missing registry file lists as empty (nothing pinned yet).
fn load_or_empty(path: &Path) -> anyhow::Result<Registry> {
    if !path.exists() && path.symlink_metadata().is_err() {
        eprintln!(
            "note: {} does not exist yet; no keys are pinned",
            path.display()
        );
        return Ok(Registry::default());
    }
    Registry::load(path).map_err(|p| anyhow::anyhow!("{p}"))
}

/// Refuse an entry the registry would refuse, with the CLI's words.
fn check_entry(e: &KeyEntry) -> anyhow::Result<()> {
    for (what, v) in [
        ("--name", &e.name),
        ("--account", &e.account),
        ("--login", &e.login),
    ] {
        if v.trim().is_empty() {
            bail!("{what} must not be empty");
        }
        if v.chars().any(char::is_control) {
            bail!("{what} must not contain control characters");
        }
    }
    if !e.login.contains('@') {
        bail!("--login {:?} is not an address (no @)", e.login);
    }
    Ok(())
}

fn entry_json(e: &KeyEntry) -> serde_json::Value {
    serde_json::json!({
        "name": e.name,
        "account": e.account,
        "login": e.login,
        "imap_preauth": e.imap_preauth,
        "fingerprint": e.fingerprint.to_string(),
        "added_by": e.added_by,
        "added_at": e.added_at,
    })
}

/// The `keys list` table, columns padded to their widest cell.
fn table(reg: &Registry) -> String {
    let header = [
        "NAME",
        "ACCOUNT",
        "LOGIN",
        "PREAUTH",
        "ADDED BY",
        "ADDED AT",
        "FINGERPRINT",
    ];
    let rows: Vec<[String; 7]> = reg
        .entries()
        .iter()
        .map(|e| {
            [
                e.name.clone(),
                e.account.clone(),
                e.login.clone(),
                if e.imap_preauth { "yes" } else { "no" }.to_owned(),
                e.added_by.clone().unwrap_or_else(|| "operator".into()),
                e.added_at.clone().unwrap_or_else(|| "-".into()),
                e.fingerprint.to_string(),
            ]
        })
        .collect();
    let mut width = header.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut s = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ", w = width[i]);
            }
        }
        s.push_str(l.trim_end());
        s.push('\n');
    };
    line(&header);
    for r in &rows {
        line(&r.each_ref().map(String::as_str));
    }
    s
}

/// Quote for a POSIX shell when needed.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

// ---------------------------------------------------------------- keys gen

/// Make a key of `key_type`, a self-signed certificate with CN=`name` and
/// a PKCS#12 bundle of both (`registry::generate`).
pub fn generate(
    name: &str,
    key_type: GenType,
    p12_password: &str,
    p12_legacy: bool,
) -> anyhow::Result<Generated> {
    let kind = match key_type {
        GenType::Ed25519 => registry::generate::KeyType::Ed25519,
        GenType::P256 => registry::generate::KeyType::P256,
        GenType::Rsa => registry::generate::KeyType::Rsa,
    };
    Ok(registry::generate::generate(
        name,
        kind,
        p12_password,
        p12_legacy,
    )?)
}

/// Paths `keys gen` wrote.
pub struct GeneratedFiles {
    pub key: PathBuf,
    pub crt: PathBuf,
    pub p12: PathBuf,
}

fn write_generated(dir: &Path, name: &str, g: &Generated) -> anyhow::Result<GeneratedFiles> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = GeneratedFiles {
        key: dir.join(format!("{name}.key")),
        crt: dir.join(format!("{name}.crt")),
        p12: dir.join(format!("{name}.p12")),
    };
    // Refuse before writing anything, so a clash leaves no half set.
    for p in [&files.key, &files.crt, &files.p12] {
        if p.symlink_metadata().is_ok() {
            bail!(
                "{} already exists; choose another --name or --out",
                p.display()
            );
        }
    }
    write_new(&files.key, g.key_pem.as_bytes(), 0o600)?;
    write_new(&files.p12, &g.p12, 0o600)?;
    write_new(&files.crt, g.cert_pem.as_bytes(), 0o644)?;
    Ok(files)
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("/a/b-c.crt"), "/a/b-c.crt");
        assert_eq!(shell_quote("it's here"), "'it'\\''s here'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn registry_path_forms() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            k: KeysArgs,
        }
        let p = |a: &[&str]| T::try_parse_from(a).map(|t| t.k.registry_path());
        assert_eq!(p(&["t", "list"]).unwrap(), PathBuf::from(DEFAULT_REGISTRY));
        assert_eq!(
            p(&["t", "--data-dir", "/d", "list"]).unwrap(),
            PathBuf::from("/d/keys.yaml")
        );
        assert_eq!(
            p(&["t", "list", "--registry", "/r.yaml"]).unwrap(),
            PathBuf::from("/r.yaml")
        );
        assert!(p(&["t", "--registry", "/r", "--data-dir", "/d", "list"]).is_err());
    }
}
