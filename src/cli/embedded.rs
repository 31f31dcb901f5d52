//! The embedded default: `frontdoor serve` with no `--config`.
//!
//! Creates (or reuses) a data directory holding everything a working relay
//! needs on one machine: a self-signed certificate for `localhost`, an empty
//! key registry, the bundled IMAP and submission servers on Unix sockets
//! inside it, and the config that ties them together, written to
//! `<data-dir>/frontdoor.yaml` so an operator can read and edit it. A config
//! already there is reused as it is; only `--listen` overrides it.

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
    let tls = dir.join("tls");
    fs::create_dir_all(&tls).map_err(io(&tls))?;
    let (crt, key) = (tls.join("localhost.crt"), tls.join("localhost.key"));
    if !crt.exists() || !key.exists() {
        let (c, k) = frontdoor::tls::certs::self_signed(&["localhost".to_owned()])
            .map_err(|e| EmbeddedError::Cert(e.to_string()))?;
        let _ = fs::remove_file(&crt);
        let _ = fs::remove_file(&key);
        write_new(&key, &k, 0o600)?;
        write_new(&crt, &c, 0o644)?;
    }
    let registry = dir.join("keys.yaml");
    if !registry.exists() {
        write_new(
            &registry,
            "# Pinned TLS client keys. frontdoor reloads this file when it changes.\n# Add keys with `frontdoor keys add --data-dir DIR ...`.\nkeys:\n",
            0o600,
        )?;
    }
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
