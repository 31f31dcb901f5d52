//! The embedded default: `frontdoor serve` with no `--config`.
//!
//! Creates (or reuses) a data directory holding everything a working relay
//! needs on one machine: a self-signed certificate for `localhost`, an empty
//! key registry, the bundled IMAP and submission servers on Unix sockets
//! inside it, and the config that ties them together, written to
//! `<data-dir>/frontdoor.yaml` so an operator can read and edit it. A config
//! already there is reused as it is; only `--listen` overrides it.
//!
//! `frontdoor serve --chatmail DOMAIN` is the same layout as a chatmail
//! relay for DOMAIN ([`prepare_chatmail`]): mail domain DOMAIN, a
//! self-signed certificate for DOMAIN and `mta-sts.DOMAIN`, the web route
//! on `builtin:chatmail`, `mail.chatmail: {}` (accounts created on first
//! login). A config already in the data directory is reused only if it is a
//! chatmail relay for DOMAIN; its `tls:` section (certificates or ACME) is
//! the operator's.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the embedded default lives unless `--data-dir` says otherwise.
pub const DEFAULT_DATA_DIR: &str = "frontdoor-data";
/// A port that needs no root.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Cert(String),
    #[error("{0:?} is not a domain name")]
    BadDomain(String),
    #[error("{config}: {problem}; use another --data-dir for a relay for {domain}")]
    OtherRelay {
        config: PathBuf,
        domain: String,
        problem: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EmbeddedError + '_ {
    move |source| EmbeddedError::Io {
        path: path.to_owned(),
        source,
    }
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), EmbeddedError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io(path))?;
    f.write_all(text.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// The config text of the embedded default (paths relative to the data dir).
pub fn default_config(listen: SocketAddr) -> String {
    format!(
        r#"# frontdoor: the embedded default, written by `frontdoor serve` on first start.
# Edit freely; `frontdoor check --config <this file>` validates it.
listeners:
  - bind: "{listen}"           # imap, smtp and the status page on one port (ALPN)
    default_route: web
tls:
  certificates:
    - cert: tls/localhost.crt   # self-signed for "localhost": replace for real use
      key: tls/localhost.key
routes:
  imap:
    alpn: [imap]
    backend: "unix:imap.sock"
  smtp:
    alpn: [smtp]
    backend: "unix:submission.sock"
  web:
    alpn: ["http/1.1"]
    backend: "builtin:status"
    proxy_protocol: none
client_auth:
  registry: keys.yaml           # `frontdoor keys add --data-dir <dir> ...`
  unknown_key: anonymous        # clients without a pinned key log in with a password
mail:
  domains: [localhost]
  data_dir: .
  imap: {{ listen: "unix:imap.sock" }}
  submission: {{ listen: "unix:submission.sock" }}
"#
    )
}

/// Create the data dir's files where missing; return the config path.
pub fn prepare(dir: &Path, listen: SocketAddr) -> Result<PathBuf, EmbeddedError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    let config = dir.join("frontdoor.yaml");
    if config.exists() {
        return Ok(config);
    }
    write_self_signed(&dir.join("tls"), "localhost", &["localhost".to_owned()])?;
    write_registry(dir)?;
    write_new(&config, &default_config(listen), 0o600)?;
    Ok(config)
}

/// What to tell the operator after start.
pub fn next_steps(dir: &Path, listen: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "frontdoor is serving the embedded default from {d}:\n\
         \x20 IMAP (ALPN imap), SMTP submission (ALPN smtp) and a status page (https://{listen}/) on {listen}\n\
         \x20 config: {d}/frontdoor.yaml   key registry: {d}/keys.yaml   certificate: {d}/tls/localhost.crt (self-signed)\n\
         Next steps:\n\
         \x20 frontdoor accounts add alice@localhost --data-dir {d}          # prints a password\n\
         \x20 frontdoor keys gen --name alice-phone --out {d}/client-keys   # a client key + .p12 for a mail app\n\
         \x20 frontdoor keys add --data-dir {d} --name alice-phone --account alice@localhost --login alice@localhost {d}/client-keys/alice-phone.crt\n\
         \x20 openssl s_client -connect {listen} -alpn imap -quiet             # talk IMAP through the front door\n"
    )
}

/// The config text of `serve --chatmail DOMAIN` (paths relative to the data dir).
pub fn chatmail_config(domain: &str, listen: SocketAddr) -> String {
    format!(
        r#"# frontdoor: a chatmail relay for {domain}, written by
# `frontdoor serve --chatmail {domain}` on first start. Edit freely;
# `frontdoor check --config <this file>` validates it. Delta Chat reaches a
# relay on port 443 (IMAP and SMTP by ALPN, the web side for the rest).
listeners:
  - bind: "{listen}"           # imap, smtp and the relay's web side on one port (ALPN)
    default_route: web
    # Delta Chat's https:// proxy (https://USER:PASSWORD@{domain}:443): an
    # HTTP CONNECT tunnel to this relay's own IMAP/SMTP, so the wire shows
    # one TLS connection with no mail ALPN. `frontdoor chatmail invite --proxy`.
    https_connect: {{ auth: password }}
tls:
  # Self-signed for {domain} and mta-sts.{domain}. Delta Chat accepts it for a
  # name starting with "_" (it still checks the name); for a public relay
  # replace it, or replace this list with `acme: {{ domains: [...], email: ... }}`.
  certificates:
    - cert: tls/{domain}.crt
      key: tls/{domain}.key
routes:
  imap:
    alpn: [imap]
    backend: "unix:imap.sock"
  smtp:
    alpn: [smtp]
    backend: "unix:submission.sock"
  web:
    alpn: ["http/1.1"]
    backend: "builtin:chatmail"  # invite page, /new, autoconfig, mta-sts
    proxy_protocol: none
client_auth:
  registry: keys.yaml           # pinned client keys, optional for chatmail clients
  unknown_key: anonymous        # Delta Chat logs in with a password
mail:
  domains: ["{domain}"]
  data_dir: .
  imap: {{ listen: "unix:imap.sock" }}
  submission: {{ listen: "unix:submission.sock" }}
  # Chatmail mode with every default: accounts created on first login for
  # 9-character [a-z0-9._-] local parts and passwords of 9 or more characters,
  # quota 500M, messages deleted after 20 days, accounts after 90 days
  # without a login. Keys: docs/mail.md ("Chatmail mode").
  chatmail: {{}}
"#
    )
}

fn write_self_signed(tls: &Path, stem: &str, names: &[String]) -> Result<(), EmbeddedError> {
    fs::create_dir_all(tls).map_err(io(tls))?;
    let (crt, key) = (
        tls.join(format!("{stem}.crt")),
        tls.join(format!("{stem}.key")),
    );
    if crt.exists() && key.exists() {
        return Ok(());
    }
    let (c, k) = frontdoor::tls::certs::self_signed(names)
        .map_err(|e| EmbeddedError::Cert(e.to_string()))?;
    let _ = fs::remove_file(&crt);
    let _ = fs::remove_file(&key);
    write_new(&key, &k, 0o600)?;
    write_new(&crt, &c, 0o644)
}

fn write_registry(dir: &Path) -> Result<(), EmbeddedError> {
    let registry = dir.join("keys.yaml");
    if registry.exists() {
        return Ok(());
    }
    write_new(
        &registry,
        "# Pinned TLS client keys. frontdoor reloads this file when it changes.\n# Add keys with `frontdoor keys add --data-dir DIR ...`.\nkeys:\n",
        0o600,
    )
}

/// `serve --chatmail DOMAIN`: create the data dir's files where missing
/// (the config, the key registry and, unless the config names certificates
/// or ACME of its own, the self-signed certificate); return the config path
/// and the lower-cased domain.
pub fn prepare_chatmail(
    dir: &Path,
    domain: &str,
    listen: SocketAddr,
) -> Result<(PathBuf, String), EmbeddedError> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if !frontdoor::mail::config::valid_domain(&domain) {
        return Err(EmbeddedError::BadDomain(domain));
    }
    fs::create_dir_all(dir).map_err(io(dir))?;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    let config = dir.join("frontdoor.yaml");
    let other = |problem: String| EmbeddedError::OtherRelay {
        config: config.clone(),
        domain: domain.clone(),
        problem,
    };
    if config.exists() {
        // Reused only as the relay for this domain; whether it loads at all
        // is for `serve` to report, with every problem.
        if let Ok(cfg) = frontdoor::config::Config::load(&config) {
            match &cfg.mail {
                Some(m) if m.chatmail.is_none() => {
                    return Err(other("not a chatmail relay (no mail.chatmail)".into()))
                }
                Some(m) if !m.domains.contains(&domain) => {
                    return Err(other(format!("a relay for {}", m.domains.join(", "))))
                }
                None => return Err(other("no mail: section".into())),
                Some(_) => {}
            }
        }
        return Ok((config, domain));
    }
    write_self_signed(
        &dir.join("tls"),
        &domain,
        &[domain.clone(), format!("mta-sts.{domain}")],
    )?;
    write_registry(dir)?;
    write_new(&config, &chatmail_config(&domain, listen), 0o600)?;
    Ok((config, domain))
}

/// What to tell the operator of a chatmail relay after start.
pub fn chatmail_next_steps(dir: &Path, domain: &str, listen: SocketAddr) -> String {
    use frontdoor::mail::chatmail::uri::{dcaccount_uri, InviteForm};
    let d = dir.display();
    format!(
        "frontdoor is serving a chatmail relay for {domain} from {d}:\n\
         \x20 IMAP (ALPN imap), SMTP submission (ALPN smtp) and the relay's web side on {listen}\n\
         \x20 config: {d}/frontdoor.yaml   certificate: {d}/tls/{domain}.crt (self-signed unless the config says otherwise)\n\
         \x20 accounts are created at their first login (9-character [a-z0-9._-] address, password of 9+ characters)\n\
         Invite (scan with Delta Chat; it reaches the relay on port 443 of {domain}):\n\
         \x20 {new}\n\
         \x20 {short}\n\
         Next steps:\n\
         \x20 frontdoor chatmail invite --data-dir {d}              # the invite as a QR code\n\
         \x20 frontdoor accounts add abcd12345@{domain} --data-dir {d}   # an account now: a dclogin: QR code\n",
        new = dcaccount_uri(domain, InviteForm::New),
        short = dcaccount_uri(domain, InviteForm::Domain),
    )
}
