//! The YAML configuration: parsed once into validated, typed values.
//!
//! This module owns the typed shape runtime code sees (`SocketAddr`,
//! `Duration`, enums and resolved route indices) and [`Config::load`].
//! The raw serde structs live in `raw` and never leave this module;
//! `validate` turns them into the typed shape, one function per section.
//! `Config::load` reads the file, deserialises it (serde_yaml reports
//! syntax and type errors with their line), then validates the whole
//! document and reports *every* problem as `file:line: path: reason`
//! (through [`crate::diagnostics`]), not just the first.
//!
//! Files the config names (certificates, keys, the registry) are checked by
//! the modules that own them (`tls`, `registry`) when `serve::check` runs.

mod raw;
mod validate;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::diagnostics::{yaml_problem, Problem, Problems, Reporter, SourceMap};
use crate::proxy_protocol;

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
    /// `control: { socket }`: where a running instance hands its
    /// listening sockets to its successor (`serve --takeover`).
    pub control_socket: PathBuf,
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
    /// `https_connect`: HTTP `CONNECT` tunnels to frontdoor's own mail
    /// endpoints on the web route (`frontdoor::connect`).
    pub https_connect: Option<HttpsConnect>,
}

/// `listeners[].https_connect`: who may open a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpsConnect {
    pub auth: ConnectAuth,
}

/// `https_connect.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectAuth {
    /// An account's password in `Proxy-Authorization: Basic` (the default).
    #[default]
    Password,
    /// Anyone (the tunnel reaches only frontdoor's own endpoints, whose
    /// logins still apply).
    None,
    /// A pinned client key on the outer TLS.
    Key,
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
    /// `builtin:chatmail`: the web side of a chatmail relay, served by
    /// frontdoor itself (needs `mail.chatmail`).
    BuiltinChatmail,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Tcp(a) => write!(f, "{a}"),
            Backend::Host(h, p) => write!(f, "{h}:{p}"),
            Backend::Unix(p) => write!(f, "unix:{}", p.display()),
            Backend::BuiltinStatus => f.write_str("builtin:status"),
            Backend::BuiltinChatmail => f.write_str("builtin:chatmail"),
        }
    }
}

/// Why a `backend:` value was refused (the operator's value is wrong).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("unix: needs a socket path")]
    EmptyUnixPath,
    #[error(
        "bad backend address {0:?}: expected ip:port, host:port, unix:/path, builtin:status or builtin:chatmail"
    )]
    NoPort(String),
    #[error("bad backend address {addr:?}: port {port:?} is not a number 1-65535")]
    BadPort { addr: String, port: String },
    #[error("bad backend address {0:?}: expected ip:port, host:port or unix:/path")]
    BadHost(String),
}

impl Backend {
    /// Served in-process by frontdoor rather than connected to.
    pub fn is_builtin(&self) -> bool {
        matches!(self, Backend::BuiltinStatus | Backend::BuiltinChatmail)
    }

    pub fn parse(s: &str) -> Result<Self, BackendError> {
        if s == "builtin:status" {
            return Ok(Backend::BuiltinStatus);
        }
        if s == "builtin:chatmail" {
            return Ok(Backend::BuiltinChatmail);
        }
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(BackendError::EmptyUnixPath);
            }
            return Ok(Backend::Unix(PathBuf::from(p)));
        }
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Backend::Tcp(a));
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(BackendError::NoPort(s.to_owned()));
        };
        let port: u16 = port.parse().map_err(|_| BackendError::BadPort {
            addr: s.to_owned(),
            port: port.to_owned(),
        })?;
        let valid_host = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid_host || port == 0 {
            return Err(BackendError::BadHost(s.to_owned()));
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
    /// Over how long a draining process closes its long-lived connections
    /// (each at a random moment in it); `None`: the whole `shutdown_grace`;
    /// zero: no spread, what is open at the end of the grace is closed.
    pub drain_spread: Option<Duration>,
}

impl Timeouts {
    /// The drain spread in force: `drain_spread`, at most `shutdown_grace`.
    pub fn spread(&self) -> Duration {
        self.drain_spread
            .unwrap_or(self.shutdown_grace)
            .min(self.shutdown_grace)
    }

    fn with_spread(mut self, r: &mut crate::diagnostics::Reporter, v: &Option<String>) -> Self {
        if let Some(text) = v {
            // `0s` is allowed here: no spread.
            let d = match humantime::parse_duration(text) {
                Ok(d) if d.is_zero() => d,
                _ => validate::duration(r, "timeouts.drain_spread", v, self.shutdown_grace),
            };
            if d > self.shutdown_grace {
                r.at(
                    "timeouts.drain_spread",
                    "must not be longer than timeouts.shutdown_grace (connections still open at its end are closed)",
                );
            }
            self.drain_spread = Some(d);
        }
        self
    }
}

/// Where the control socket is when the configuration names none.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/frontdoor/control.sock";

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(10),
            connect: Duration::from_secs(5),
            idle: Duration::from_secs(30 * 60),
            shutdown_grace: Duration::from_secs(30),
            drain_spread: None,
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
        let raw: raw::RawConfig =
            serde_yaml::from_str(text).map_err(|e| Problems(vec![yaml_problem(path, &e)]))?;
        let map = SourceMap::new(text);
        let mut r = Reporter::new(path, &map);
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        let mut cfg = validate::validate(raw, &base, path, &mut r);
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

/// `10.0.0.0/8`, `::1/128`, or a bare address (a /32 or /128).
pub fn parse_cidr(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
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
    fn https_connect_is_checked_against_what_it_needs() {
        let with = |connect: &str, extra: &str| {
            let text = GOOD.replace(
                "    default_route: web\n",
                &format!("    default_route: web\n    https_connect: {connect}\n"),
            ) + extra;
            Config::parse(Path::new("f.yaml"), &text)
        };
        let mail = "mail: { domains: [example.org], data_dir: /tmp/m }\n";
        let c = with("{}", mail).unwrap();
        assert_eq!(
            c.listeners[0].https_connect,
            Some(HttpsConnect {
                auth: ConnectAuth::Password
            })
        );
        let c = with("{ auth: none }", "").unwrap();
        assert_eq!(
            c.listeners[0].https_connect.map(|h| h.auth),
            Some(ConnectAuth::None)
        );
        let msg = |r: Result<Config, Problems>| r.unwrap_err().to_string();
        let e = msg(with("{ auth: password }", ""));
        assert!(e.contains("f.yaml:5: listeners[0].https_connect.auth: auth: password checks accounts of the bundled mail servers"), "{e}");
        let e = msg(with("{ auth: key }", mail));
        assert!(
            e.contains("listeners[0].https_connect.auth: auth: key needs a client_auth section"),
            "{e}"
        );
        let e = msg(with("{ auth: maybe }", mail));
        assert!(
            e.contains("unknown value \"maybe\" (expected password, none or key)"),
            "{e}"
        );
        let fixed = GOOD.replace(
            "    default_route: web\n",
            "    default_route: web\n  - bind: \"127.0.0.1:993\"\n    route: imap\n    https_connect: { auth: none }\n",
        );
        let e = msg(Config::parse(Path::new("f.yaml"), &fixed));
        assert!(
            e.contains("listeners[1].https_connect: CONNECT is served on the web route"),
            "{e}"
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
