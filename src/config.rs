//! The YAML configuration: parsed once into validated, typed values.
//!
//! Raw serde structs (`Raw*`) never leave this module. `Config::load` reads
//! the file, deserialises it (serde_yaml reports syntax and type errors with
//! their line), then validates the whole document and reports *every*
//! problem as `file:line: path: reason`, not just the first. Runtime code
//! sees `SocketAddr`, `Duration`, enums and resolved route indices.
//!
//! Files the config names (certificates, keys, the registry) are checked by
//! the modules that own them (`tls`, `registry`) through `check_files`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::proxy_protocol;
use crate::yaml_lines::SourceMap;

/// One problem found in a file, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file.display(), l, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// All problems of one load; never empty.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Collects problems of one file with line lookups.
pub struct Reporter<'a> {
    pub file: &'a Path,
    pub map: &'a SourceMap,
    pub problems: Vec<Problem>,
}

impl<'a> Reporter<'a> {
    pub fn new(file: &'a Path, map: &'a SourceMap) -> Self {
        Self {
            file,
            map,
            problems: Vec::new(),
        }
    }

    /// Report `msg` at the line of YAML `path`.
    pub fn at(&mut self, path: &str, msg: impl fmt::Display) {
        self.problems.push(Problem {
            file: self.file.to_owned(),
            line: self.map.line(path),
            message: if path.is_empty() {
                msg.to_string()
            } else {
                format!("{path}: {msg}")
            },
        });
    }
}

/// Turn a serde_yaml error into a problem with its line.
pub fn yaml_problem(file: &Path, e: &serde_yaml::Error) -> Problem {
    let line = e.location().map(|l| l.line());
    // serde_yaml appends " at line L column C"; the line is already in front.
    let mut msg = e.to_string();
    if let Some(i) = msg.find(" at line ") {
        msg.truncate(i);
    }
    Problem {
        file: file.to_owned(),
        line,
        message: msg,
    }
}

// ---------------------------------------------------------------- raw shape

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    listeners: Vec<RawListener>,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    routes: BTreeMap<String, RawRoute>,
    #[serde(default)]
    timeouts: RawTimeouts,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    client_auth: Option<RawClientAuth>,
    #[serde(default)]
    metrics: Option<RawMetrics>,
    mail: Option<crate::mail::config::RawMail>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    bind: String,
    #[serde(default)]
    default_route: Option<String>,
    #[serde(default)]
    sni_routes: BTreeMap<String, String>,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    client_auth: Option<String>,
    #[serde(default)]
    accept_proxy_protocol: Option<RawAcceptProxy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcceptProxy {
    from: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    certificates: Vec<RawCert>,
    #[serde(default)]
    acme: Option<RawAcme>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcme {
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    directory: Option<String>,
    #[serde(default)]
    directory_ca: Option<PathBuf>,
    #[serde(default)]
    state_dir: Option<PathBuf>,
    #[serde(default)]
    renew_before: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCert {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(default)]
    alpn: Vec<String>,
    backend: String,
    #[serde(default)]
    proxy_protocol: Option<String>,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    client_auth: Option<String>,
    #[serde(default)]
    identity: Option<String>,
    #[serde(default)]
    mode: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    handshake: Option<String>,
    connect: Option<String>,
    idle: Option<String>,
    shutdown_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<usize>,
    per_ip_connections: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientAuth {
    registry: PathBuf,
    #[serde(default)]
    unknown_key: Option<String>,
    #[serde(default)]
    identity_secret: Option<PathBuf>,
}

// ---------------------------------------------------------------- typed shape

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was loaded from (relative paths in it are relative to its directory).
    pub path: PathBuf,
    pub listeners: Vec<Listener>,
    pub certificates: Vec<CertPaths>,
    /// Certificates obtained and renewed by ACME (`tls.acme`).
    pub acme: Option<Acme>,
    /// Routes; listeners refer to them by index.
    pub routes: Vec<Route>,
    pub timeouts: Timeouts,
    pub max_connections: usize,
    /// Most open connections from one client address (IPv6: one /64).
    pub per_ip_connections: usize,
    pub client_auth: Option<ClientAuth>,
    /// Where Prometheus metrics are served (`GET /metrics`), if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// The bundled mail servers, when a `mail:` section is present.
    pub mail: Option<crate::mail::config::MailConfig>,
    /// Line of each YAML node, for problems found after loading (files it names).
    pub lines: SourceMap,
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub bind: SocketAddr,
    /// Route for a connection with no ALPN and no SNI match.
    pub default_route: Option<usize>,
    /// Lower-case SNI name → route.
    pub sni_routes: HashMap<String, usize>,
    /// Fixed route (993/465-style listener): everything goes there.
    pub route: Option<usize>,
    pub client_auth: ClientAuthMode,
    /// Upstream load balancers whose PROXY v1/v2 header (sent before the
    /// TLS handshake) gives the real client address. Empty: no header is read.
    pub accept_proxy_from: Vec<ipnet::IpNet>,
}

/// `tls.acme`: certificates by ACME with the tls-alpn-01 challenge.
#[derive(Debug, Clone)]
pub struct Acme {
    /// DNS names of the one certificate (lower case, no wildcards).
    pub domains: Vec<String>,
    /// Contact address given to the CA (`mailto:` added).
    pub email: Option<String>,
    /// The CA's directory URL.
    pub directory: String,
    /// Extra root certificate (PEM) trusted for the directory's HTTPS, for
    /// private or test CAs; the system roots otherwise.
    pub directory_ca: Option<PathBuf>,
    /// Account key, certificate and its key live here.
    pub state_dir: PathBuf,
    /// Renew when the certificate has less than this left.
    pub renew_before: Duration,
}

/// Let's Encrypt's production directory, the default `tls.acme.directory`.
pub const ACME_DEFAULT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What the backend speaks: picks the error line a client gets when the
/// backend is down, and keeps web ALPNs away from mail backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Imap,
    Smtp,
    Http,
    Raw,
}

impl Protocol {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "imap" => Self::Imap,
            "smtp" => Self::Smtp,
            "http" => Self::Http,
            "raw" => Self::Raw,
            _ => return None,
        })
    }
    pub fn is_mail(self) -> bool {
        matches!(self, Self::Imap | Self::Smtp)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// `ip:port`.
    Tcp(SocketAddr),
    /// `host:port`, resolved at connect time.
    Host(String, u16),
    /// `unix:/path`.
    Unix(PathBuf),
    /// `builtin:status`: a small page served by frontdoor itself (HTTP/1.1)
    /// saying what runs and how to connect.
    BuiltinStatus,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Tcp(a) => write!(f, "{a}"),
            Backend::Host(h, p) => write!(f, "{h}:{p}"),
            Backend::Unix(p) => write!(f, "unix:{}", p.display()),
            Backend::BuiltinStatus => f.write_str("builtin:status"),
        }
    }
}

impl Backend {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "builtin:status" {
            return Ok(Backend::BuiltinStatus);
        }
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            return Ok(Backend::Unix(PathBuf::from(p)));
        }
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Backend::Tcp(a));
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(format!(
                "bad backend address {s:?}: expected ip:port, host:port, unix:/path or builtin:status"
            ));
        };
        let port: u16 = port.parse().map_err(|_| {
            format!("bad backend address {s:?}: port {port:?} is not a number 1-65535")
        })?;
        let valid_host = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid_host || port == 0 {
            return Err(format!(
                "bad backend address {s:?}: expected ip:port, host:port or unix:/path"
            ));
        }
        Ok(Backend::Host(host.to_owned(), port))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuthMode {
    /// Ask for a certificate; none is fine.
    #[default]
    Optional,
    /// A pinned key is mandatory.
    Required,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub alpn: Vec<String>,
    pub backend: Backend,
    pub proxy_protocol: proxy_protocol::Version,
    pub protocol: Protocol,
    pub client_auth: ClientAuthMode,
    /// How a pinned key's identity reaches the backend.
    pub identity: IdentityMode,
    /// `mode: passthrough`: the raw TLS stream, ClientHello included, goes to
    /// a backend that terminates TLS itself.
    pub passthrough: bool,
}

/// How a route hands the identity to its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdentityMode {
    /// In the PROXY v2 header only (`PP2_SUBTYPE_SSL_CN` and the 0xE0.. TLVs).
    #[default]
    ProxyHeader,
    /// SMTP only: the front door sends Postfix `XCLIENT LOGIN=… ADDR=…`
    /// before relaying (`frontdoor::xclient`); needs `proxy_protocol: none`.
    Xclient,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub handshake: Duration,
    pub connect: Duration,
    pub idle: Duration,
    pub shutdown_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(10),
            connect: Duration::from_secs(5),
            idle: Duration::from_secs(30 * 60),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownKey {
    /// Fail the handshake with `bad_certificate`.
    #[default]
    Reject,
    /// Continue without identity.
    Anonymous,
}

#[derive(Debug, Clone)]
pub struct ClientAuth {
    pub registry: PathBuf,
    pub unknown_key: UnknownKey,
    pub identity_secret: Option<PathBuf>,
}

/// Default cap on simultaneous client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default cap per client address (IPv6 /64). A mail app holds two to four
/// connections per account, so this leaves room for some hundreds of users
/// behind one NAT while no single address can take all the slots.
pub const DEFAULT_PER_IP_CONNECTIONS: usize = 1_000;

impl Config {
    /// Read, parse and validate `path`. File contents named by the config
    /// (certificates, registry) are not read here; see `check_files`.
    pub fn load(path: &Path) -> Result<Config, Problems> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Problems(vec![Problem {
                file: path.to_owned(),
                line: None,
                message: format!("cannot read: {e}"),
            }])
        })?;
        Self::parse(path, &text)
    }

    /// Parse and validate `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, Problems> {
        let raw: RawConfig =
            serde_yaml::from_str(text).map_err(|e| Problems(vec![yaml_problem(path, &e)]))?;
        let map = SourceMap::new(text);
        let mut r = Reporter::new(path, &map);
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        let mut cfg = validate(raw, &base, path, &mut r);
        cfg.lines = map.clone();
        if r.problems.is_empty() {
            Ok(cfg)
        } else {
            r.problems.sort_by_key(|p| p.line);
            Err(Problems(r.problems))
        }
    }

    /// A problem at the line of YAML `path` in this config file.
    pub fn problem_at(&self, path: &str, msg: impl fmt::Display) -> Problem {
        Problem {
            file: self.path.clone(),
            line: self.lines.line(path),
            message: format!("{path}: {msg}"),
        }
    }

    /// Whether this listener can pass connections through (so the ClientHello
    /// must be inspected before TLS).
    pub fn listener_has_passthrough(&self, l: &Listener) -> bool {
        match l.route {
            Some(r) => self.routes[r].passthrough,
            None => self.routes.iter().any(|r| r.passthrough),
        }
    }

    pub fn route_by_name(&self, name: &str) -> Option<usize> {
        self.routes.iter().position(|r| r.name == name)
    }

    /// ALPN protocols a listener offers, mail protocols first (DESIGN §2):
    /// only those of routes it can reach.
    pub fn listener_alpn(&self, l: &Listener) -> Vec<Vec<u8>> {
        let mut routes: Vec<&Route> = match l.route {
            Some(i) => vec![&self.routes[i]],
            None => self.routes.iter().collect(),
        };
        routes.sort_by_key(|r| match r.protocol {
            Protocol::Imap => 0,
            Protocol::Smtp => 1,
            Protocol::Http => 3,
            Protocol::Raw => 2,
        });
        routes
            .iter()
            .filter(|r| !r.passthrough)
            .flat_map(|r| r.alpn.iter().map(|a| a.as_bytes().to_vec()))
            .collect()
    }
}

fn resolve(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

fn duration(r: &mut Reporter, path: &str, v: &Option<String>, default: Duration) -> Duration {
    match v {
        None => default,
        Some(s) => match humantime::parse_duration(s) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                r.at(path, "must be greater than zero");
                default
            }
            Err(e) => {
                r.at(
                    path,
                    format!("bad duration {s:?}: {e} (examples: 10s, 5m, 1h)"),
                );
                default
            }
        },
    }
}

fn validate(raw: RawConfig, base: &Path, path: &Path, r: &mut Reporter) -> Config {
    // Routes first: listeners refer to them.
    let mut routes = Vec::new();
    let mut alpn_owner: HashMap<String, String> = HashMap::new();
    for (name, rr) in raw.routes {
        let p = SourceMap::child("routes", &name);
        let backend = match Backend::parse(&rr.backend) {
            Ok(b) => b,
            Err(e) => {
                r.at(&SourceMap::child(&p, "backend"), e);
                Backend::Unix(PathBuf::new())
            }
        };
        let backend = match backend {
            Backend::Unix(sock) if !sock.as_os_str().is_empty() => {
                Backend::Unix(resolve(base, sock))
            }
            b => b,
        };
        let proxy_protocol = match rr.proxy_protocol.as_deref() {
            None | Some("v2") => proxy_protocol::Version::V2,
            Some("v1") => proxy_protocol::Version::V1,
            Some("none") => proxy_protocol::Version::None,
            Some(o) => {
                r.at(
                    &SourceMap::child(&p, "proxy_protocol"),
                    format!("unknown value {o:?} (expected v2, v1 or none)"),
                );
                proxy_protocol::Version::V2
            }
        };
        for (i, a) in rr.alpn.iter().enumerate() {
            let ap = SourceMap::item(&SourceMap::child(&p, "alpn"), i);
            if a.is_empty() || a.len() > 255 {
                r.at(&ap, "an ALPN protocol name is 1 to 255 bytes");
            }
            if let Some(other) = alpn_owner.insert(a.clone(), name.clone()) {
                r.at(
                    &ap,
                    format!("ALPN {a:?} is already routed by route {other:?}; each ALPN value may belong to one route"),
                );
            }
        }
        let inferred = || {
            let has = |v: &str| rr.alpn.iter().any(|a| a == v) || name == v;
            if has("imap") {
                Protocol::Imap
            } else if has("smtp") || name == "submission" {
                Protocol::Smtp
            } else if has("h2") || has("http/1.1") || name == "web" || name == "http" {
                Protocol::Http
            } else {
                Protocol::Raw
            }
        };
        let protocol = match rr.protocol.as_deref() {
            None => inferred(),
            Some(s) => Protocol::parse(s).unwrap_or_else(|| {
                r.at(
                    &SourceMap::child(&p, "protocol"),
                    format!("unknown protocol {s:?} (expected imap, smtp, http or raw)"),
                );
                inferred()
            }),
        };
        let web_alpn = rr.alpn.iter().any(|a| a == "h2" || a.starts_with("http/"));
        if protocol.is_mail() && web_alpn {
            r.at(
                &SourceMap::child(&p, "alpn"),
                "a mail route must not take web ALPN values (h2, http/1.x): that is what cross-protocol attacks use",
            );
        }
        if backend == Backend::BuiltinStatus && rr.alpn.iter().any(|a| a != "http/1.1") {
            r.at(
                &SourceMap::child(&p, "alpn"),
                "builtin:status speaks HTTP/1.1 only: list just \"http/1.1\" (h2 must not be advertised for it)",
            );
        }
        let client_auth =
            client_auth_mode(r, &SourceMap::child(&p, "client_auth"), &rr.client_auth);
        let passthrough = match rr.mode.as_deref() {
            None | Some("terminate") => false,
            Some("passthrough") => {
                if protocol.is_mail() {
                    r.at(&SourceMap::child(&p, "mode"), "mail routes are terminated by frontdoor (pinned keys, identity); passthrough is for web or other TLS backends");
                }
                if client_auth == ClientAuthMode::Required {
                    r.at(&SourceMap::child(&p, "mode"), "a passthrough route cannot require a pinned client key (frontdoor does not see the handshake)");
                }
                true
            }
            Some(o) => {
                r.at(
                    &SourceMap::child(&p, "mode"),
                    format!("unknown value {o:?} (expected terminate or passthrough)"),
                );
                false
            }
        };
        let identity = match rr.identity.as_deref() {
            None | Some("proxy") => IdentityMode::ProxyHeader,
            Some("xclient") => {
                if protocol != Protocol::Smtp {
                    r.at(
                        &SourceMap::child(&p, "identity"),
                        "identity: xclient is for SMTP routes only",
                    );
                }
                if proxy_protocol != proxy_protocol::Version::None {
                    // Postfix would check XCLIENT authorization against the
                    // client address from the header, not the front door's.
                    r.at(
                        &SourceMap::child(&p, "identity"),
                        "identity: xclient needs proxy_protocol: none (XCLIENT carries the client address)",
                    );
                }
                IdentityMode::Xclient
            }
            Some(o) => {
                r.at(
                    &SourceMap::child(&p, "identity"),
                    format!("unknown value {o:?} (expected proxy or xclient)"),
                );
                IdentityMode::ProxyHeader
            }
        };
        routes.push(Route {
            name,
            alpn: rr.alpn,
            backend,
            proxy_protocol,
            protocol,
            client_auth,
            identity,
            passthrough,
        });
    }
    let find = |r: &mut Reporter, path: &str, name: &str| -> Option<usize> {
        let i = routes.iter().position(|x| x.name == name);
        if i.is_none() {
            let known: Vec<&str> = routes.iter().map(|x| x.name.as_str()).collect();
            r.at(
                path,
                format!(
                    "unknown route {name:?} (routes defined: {})",
                    known.join(", ")
                ),
            );
        }
        i
    };

    // A config with only a `mail:` section runs `frontdoor mail serve`.
    if raw.listeners.is_empty() && raw.mail.is_none() {
        r.at("listeners", "at least one listener is needed");
    }
    let mut listeners = Vec::new();
    let mut binds: HashMap<SocketAddr, usize> = HashMap::new();
    for (i, rl) in raw.listeners.into_iter().enumerate() {
        let p = SourceMap::item("listeners", i);
        let bind = match rl.bind.parse::<SocketAddr>() {
            Ok(a) => {
                if let Some(j) = binds.insert(a, i).filter(|_| a.port() != 0) {
                    r.at(
                        &SourceMap::child(&p, "bind"),
                        format!("address {a} is already bound by listeners[{j}]"),
                    );
                }
                a
            }
            Err(_) => {
                r.at(
                    &SourceMap::child(&p, "bind"),
                    format!("bad listen address {:?}: expected ip:port such as \"0.0.0.0:443\" or \"[::]:443\"", rl.bind),
                );
                SocketAddr::from(([0, 0, 0, 0], 0))
            }
        };
        let route = rl
            .route
            .as_deref()
            .and_then(|n| find(r, &SourceMap::child(&p, "route"), n));
        let default_route = match rl.default_route.as_deref() {
            Some(n) => find(r, &SourceMap::child(&p, "default_route"), n),
            None => routes.iter().position(|x| x.name == "web"),
        };
        let mut sni_routes = HashMap::new();
        for (host, n) in &rl.sni_routes {
            let hp = SourceMap::child(&SourceMap::child(&p, "sni_routes"), host);
            if let Some(idx) = find(r, &hp, n) {
                sni_routes.insert(host.to_ascii_lowercase(), idx);
            }
        }
        let client_auth =
            client_auth_mode(r, &SourceMap::child(&p, "client_auth"), &rl.client_auth);
        let mut accept_proxy_from = Vec::new();
        if let Some(ap) = &rl.accept_proxy_protocol {
            let fp = SourceMap::child(&SourceMap::child(&p, "accept_proxy_protocol"), "from");
            if ap.from.is_empty() {
                r.at(
                    &fp,
                    "list at least one source address or CIDR (e.g. \"10.0.0.0/8\")",
                );
            }
            for (k, c) in ap.from.iter().enumerate() {
                match parse_cidr(c) {
                    Some(n) => accept_proxy_from.push(n),
                    None => r.at(
                        &SourceMap::item(&fp, k),
                        format!("bad address or CIDR {c:?}"),
                    ),
                }
            }
        }
        listeners.push(Listener {
            bind,
            default_route,
            sni_routes,
            route,
            client_auth,
            accept_proxy_from,
        });
    }

    let acme = raw.tls.acme.map(|a| validate_acme(a, base, r));
    let certificates = raw
        .tls
        .certificates
        .into_iter()
        .map(|c| CertPaths {
            cert: resolve(base, c.cert),
            key: resolve(base, c.key),
        })
        .collect();

    let d = Timeouts::default();
    let t = &raw.timeouts;
    let timeouts = Timeouts {
        handshake: duration(r, "timeouts.handshake", &t.handshake, d.handshake),
        connect: duration(r, "timeouts.connect", &t.connect, d.connect),
        idle: duration(r, "timeouts.idle", &t.idle, d.idle),
        shutdown_grace: duration(
            r,
            "timeouts.shutdown_grace",
            &t.shutdown_grace,
            d.shutdown_grace,
        ),
    };
    let max_connections = match raw.limits.max_connections {
        Some(0) => {
            r.at("limits.max_connections", "must be at least 1");
            DEFAULT_MAX_CONNECTIONS
        }
        Some(n) => n,
        None => DEFAULT_MAX_CONNECTIONS,
    };
    let per_ip_connections = match raw.limits.per_ip_connections {
        Some(0) => {
            r.at("limits.per_ip_connections", "must be at least 1");
            DEFAULT_PER_IP_CONNECTIONS
        }
        Some(n) => n,
        None => DEFAULT_PER_IP_CONNECTIONS,
    };
    let client_auth = raw.client_auth.map(|c| {
        let unknown_key = match c.unknown_key.as_deref() {
            None | Some("reject") => UnknownKey::Reject,
            Some("anonymous") => UnknownKey::Anonymous,
            Some(o) => {
                r.at(
                    "client_auth.unknown_key",
                    format!("unknown value {o:?} (expected reject or anonymous)"),
                );
                UnknownKey::Reject
            }
        };
        ClientAuth {
            registry: resolve(base, c.registry),
            unknown_key,
            identity_secret: c.identity_secret.map(|p| resolve(base, p)),
        }
    });
    let metrics_listen = raw
        .metrics
        .and_then(|m| match m.listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                r.at(
                    "metrics.listen",
                    format!(
                        "bad listen address {:?}: expected ip:port such as \"127.0.0.1:9443\"",
                        m.listen
                    ),
                );
                None
            }
        });
    let needs_auth = listeners
        .iter()
        .any(|l| l.client_auth == ClientAuthMode::Required)
        || routes
            .iter()
            .any(|x| x.client_auth == ClientAuthMode::Required);
    if needs_auth && client_auth.is_none() {
        r.at(
            "",
            "client_auth: required is set but there is no client_auth section with a registry",
        );
    }
    let mail = raw.mail.map(|m| crate::mail::config::validate(m, base, r));
    if let Some(m) = &mail {
        // Loopback is not a trust boundary: a TCP listener that takes PROXY
        // headers honours an identity only with an HMAC. A secret exists when
        // the operator names one, or when this config also runs the front
        // door (one process: generated in the data directory).
        let has_secret = client_auth
            .as_ref()
            .is_some_and(|c| c.identity_secret.is_some())
            || !listeners.is_empty();
        for (name, addr) in [("submission", &m.submission), ("imap", &m.imap)] {
            if let (Some(crate::mail::config::ListenAddr::Tcp(a)), false) = (addr, has_secret) {
                r.at(
                    &format!("mail.{name}.listen"),
                    format!(
                        "TCP listener {a} would honour identity TLVs without a secret: any local process can reach it and claim to be anyone. Set client_auth.identity_secret (the file the front door signs headers with), or listen on a unix: socket"
                    ),
                );
            }
        }
    }
    Config {
        path: path.to_owned(),
        listeners,
        certificates,
        acme,
        routes,
        timeouts,
        max_connections,
        per_ip_connections,
        client_auth,
        metrics_listen,
        mail,
        lines: SourceMap::default(),
    }
}

fn validate_acme(a: RawAcme, base: &Path, r: &mut Reporter) -> Acme {
    if a.domains.is_empty() {
        r.at(
            "tls.acme.domains",
            "name at least one domain for the certificate",
        );
    }
    let mut domains = Vec::new();
    for (i, d) in a.domains.iter().enumerate() {
        let path = format!("tls.acme.domains[{i}]");
        let d = d.trim_end_matches('.').to_ascii_lowercase();
        if d.starts_with("*.") {
            r.at(
                &path,
                format!("{d:?}: wildcard names need the dns-01 challenge; tls-alpn-01 can only prove single names"),
            );
        } else if !is_dns_name(&d) {
            r.at(&path, format!("{d:?} is not a DNS name"));
        } else if domains.contains(&d) {
            r.at(&path, format!("{d:?} is listed twice"));
        } else {
            domains.push(d);
        }
    }
    if let Some(e) = &a.email {
        if !e.contains('@') || e.contains(char::is_whitespace) {
            r.at("tls.acme.email", format!("{e:?} is not a mail address"));
        }
    }
    let directory = a
        .directory
        .unwrap_or_else(|| ACME_DEFAULT_DIRECTORY.to_owned());
    if !directory.starts_with("https://") {
        r.at(
            "tls.acme.directory",
            format!("{directory:?}: the ACME directory must be an https:// URL"),
        );
    }
    let state_dir = match a.state_dir {
        Some(p) => resolve(base, p),
        None => {
            r.at(
                "tls.acme",
                "state_dir is required: the directory where the account key and certificates are kept",
            );
            PathBuf::new()
        }
    };
    Acme {
        domains,
        email: a.email,
        directory,
        directory_ca: a.directory_ca.map(|p| resolve(base, p)),
        state_dir,
        renew_before: duration(
            r,
            "tls.acme.renew_before",
            &a.renew_before,
            Duration::from_secs(30 * 86_400),
        ),
    }
}

/// A host name: dot-separated labels of letters, digits and inner hyphens.
fn is_dns_name(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `10.0.0.0/8`, `::1/128`, or a bare address (a /32 or /128).
pub fn parse_cidr(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

fn client_auth_mode(r: &mut Reporter, path: &str, v: &Option<String>) -> ClientAuthMode {
    match v.as_deref() {
        None | Some("optional") => ClientAuthMode::Optional,
        Some("required") => ClientAuthMode::Required,
        Some(o) => {
            r.at(
                path,
                format!("unknown value {o:?} (expected optional or required)"),
            );
            ClientAuthMode::Optional
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listeners:
  - bind: "127.0.0.1:8443"
    default_route: web
    sni_routes:
      imap.example.org: imap
tls:
  certificates: []
routes:
  imap:
    alpn: [imap]
    backend: "127.0.0.1:1143"
    proxy_protocol: v2
  smtp:
    alpn: [smtp]
    backend: "unix:/run/frontdoor/submission.sock"
  web:
    alpn: [h2, "http/1.1"]
    backend: "127.0.0.1:8080"
    proxy_protocol: none
timeouts: { handshake: 10s, connect: 5s, idle: 30m }
limits: { max_connections: 20000 }
"#;

    #[test]
    fn issue_example_is_accepted() {
        let c = Config::parse(Path::new("/etc/f.yaml"), GOOD).unwrap();
        assert_eq!(c.routes.len(), 3);
        let l = &c.listeners[0];
        assert_eq!(c.routes[l.default_route.unwrap()].name, "web");
        assert_eq!(
            c.routes[l.sni_routes["imap.example.org"]].protocol,
            Protocol::Imap
        );
        assert_eq!(c.timeouts.idle, Duration::from_secs(1800));
        assert_eq!(c.max_connections, 20000);
        assert_eq!(c.per_ip_connections, DEFAULT_PER_IP_CONNECTIONS);
        assert_eq!(
            c.listener_alpn(l),
            vec![
                b"imap".to_vec(),
                b"smtp".to_vec(),
                b"h2".to_vec(),
                b"http/1.1".to_vec()
            ]
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let bad = GOOD
            .replace("default_route: web", "default_route: nosuch")
            .replace("alpn: [smtp]", "alpn: [imap]")
            .replace("\"127.0.0.1:8080\"", "\"127.0.0.1\"");
        let e = Config::parse(Path::new("f.yaml"), &bad).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("f.yaml:4: listeners[0].default_route: unknown route \"nosuch\""),
            "{text}"
        );
        assert!(
            text.contains("f.yaml:15: routes.smtp.alpn[0]: ALPN \"imap\" is already routed"),
            "{text}"
        );
        assert!(
            text.contains("f.yaml:19: routes.web.backend: bad backend address"),
            "{text}"
        );
        assert_eq!(e.0.len(), 3, "{text}");
    }

    #[test]
    fn per_ip_connections_is_read_and_checked_with_its_line() {
        let ok = GOOD.replace(
            "limits: { max_connections: 20000 }",
            "limits:\n  max_connections: 20000\n  per_ip_connections: 50",
        );
        assert_eq!(
            Config::parse(Path::new("f.yaml"), &ok)
                .unwrap()
                .per_ip_connections,
            50
        );
        for (value, want) in [
            (
                "0",
                "f.yaml:24: limits.per_ip_connections: must be at least 1",
            ),
            ("-3", "f.yaml:24"),
            ("lots", "f.yaml:24"),
        ] {
            let bad = ok.replace(
                "per_ip_connections: 50",
                &format!("per_ip_connections: {value}"),
            );
            let text = Config::parse(Path::new("f.yaml"), &bad)
                .unwrap_err()
                .to_string();
            assert!(text.starts_with(want), "{value}: {text}");
        }
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let bad = GOOD.replace("limits: {", "limitz: {");
        let e = Config::parse(Path::new("f.yaml"), &bad).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("f.yaml:22: unknown field `limitz`"),
            "{text}"
        );
    }

    #[test]
    fn backend_forms() {
        assert_eq!(
            Backend::parse("[::1]:25").unwrap(),
            Backend::Tcp("[::1]:25".parse().unwrap())
        );
        assert_eq!(
            Backend::parse("mail.local:25").unwrap(),
            Backend::Host("mail.local".into(), 25)
        );
        assert!(Backend::parse("127.0.0.1").is_err());
        assert!(Backend::parse("host:99999").is_err());
        assert!(Backend::parse("unix:").is_err());
        assert!(Backend::parse("a b:1").is_err());
    }
}
