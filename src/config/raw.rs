//! The configuration file's raw shape: serde structs exactly as the YAML
//! is written, strings and all. They are private to the `config` module:
//! `validate` turns them into the typed values of `config`, and nothing
//! else sees them. The `mail:` section's raw shape belongs to
//! `mail::config` and is reached only from here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::mail::config::RawMail;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) listeners: Vec<RawListener>,
    #[serde(default)]
    pub(super) tls: RawTls,
    #[serde(default)]
    pub(super) routes: BTreeMap<String, RawRoute>,
    #[serde(default)]
    pub(super) timeouts: RawTimeouts,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) client_auth: Option<RawClientAuth>,
    #[serde(default)]
    pub(super) metrics: Option<RawMetrics>,
    #[serde(default)]
    pub(super) control: Option<RawControl>,
    pub(super) mail: Option<RawMail>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawControl {
    pub(super) socket: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub(super) bind: String,
    #[serde(default)]
    pub(super) default_route: Option<String>,
    #[serde(default)]
    pub(super) sni_routes: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) route: Option<String>,
    #[serde(default)]
    pub(super) client_auth: Option<String>,
    #[serde(default)]
    pub(super) accept_proxy_protocol: Option<RawAcceptProxy>,
    #[serde(default)]
    pub(super) https_connect: Option<RawHttpsConnect>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttpsConnect {
    #[serde(default)]
    pub(super) auth: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAcceptProxy {
    pub(super) from: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    #[serde(default)]
    pub(super) certificates: Vec<RawCert>,
    #[serde(default)]
    pub(super) acme: Option<RawAcme>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAcme {
    #[serde(default)]
    pub(super) domains: Vec<String>,
    #[serde(default)]
    pub(super) email: Option<String>,
    #[serde(default)]
    pub(super) directory: Option<String>,
    #[serde(default)]
    pub(super) directory_ca: Option<PathBuf>,
    #[serde(default)]
    pub(super) state_dir: Option<PathBuf>,
    #[serde(default)]
    pub(super) renew_before: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCert {
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    #[serde(default)]
    pub(super) alpn: Vec<String>,
    pub(super) backend: String,
    #[serde(default)]
    pub(super) proxy_protocol: Option<String>,
    #[serde(default)]
    pub(super) protocol: Option<String>,
    #[serde(default)]
    pub(super) client_auth: Option<String>,
    #[serde(default)]
    pub(super) identity: Option<String>,
    #[serde(default)]
    pub(super) mode: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    pub(super) handshake: Option<String>,
    pub(super) connect: Option<String>,
    pub(super) idle: Option<String>,
    pub(super) shutdown_grace: Option<String>,
    pub(super) drain_spread: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_connections: Option<usize>,
    pub(super) per_ip_connections: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClientAuth {
    pub(super) registry: PathBuf,
    #[serde(default)]
    pub(super) unknown_key: Option<String>,
    #[serde(default)]
    pub(super) identity_secret: Option<PathBuf>,
}
