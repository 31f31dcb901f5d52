//! Validation of the raw configuration into [`Config`], one function per
//! section (routes, listeners, tls, timeouts, limits, client_auth, metrics,
//! mail). Every problem goes to the [`Reporter`] at its YAML path; a
//! section with problems still yields a placeholder value so that the
//! sections after it are checked too. Invariant: sections are checked in
//! the order below (routes before listeners, which refer to them), so
//! problems on one line keep their order.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{
    RawAcme, RawClientAuth, RawConfig, RawLimits, RawListener, RawMetrics, RawRoute, RawTimeouts,
    RawTls,
};
use super::{
    parse_cidr, Acme, Backend, CertPaths, ClientAuth, ClientAuthMode, Config, ConnectAuth,
    HttpsConnect, IdentityMode, Listener, Protocol, Route, Timeouts, UnknownKey,
    ACME_DEFAULT_DIRECTORY, DEFAULT_MAX_CONNECTIONS, DEFAULT_PER_IP_CONNECTIONS,
};
use crate::diagnostics::{Reporter, SourceMap};
use crate::mail::config::{ListenAddr, MailConfig};
use crate::proxy_protocol;

/// The whole document: every section, then the checks across sections.
pub(super) fn validate(raw: RawConfig, base: &Path, path: &Path, r: &mut Reporter) -> Config {
    // Routes first: listeners refer to them.
    let routes = routes(raw.routes, base, r);
    // A config with only a `mail:` section runs `frontdoor mail serve`.
    if raw.listeners.is_empty() && raw.mail.is_none() {
        r.at("listeners", "at least one listener is needed");
    }
    let listeners = listeners(raw.listeners, &routes, r);
    let (certificates, acme) = tls(raw.tls, base, r);
    let timeouts = timeouts(&raw.timeouts, r);
    let (max_connections, per_ip_connections) = limits(&raw.limits, r);
    let client_auth = raw.client_auth.map(|c| client_auth(c, base, r));
    let metrics_listen = raw.metrics.and_then(|m| metrics(m, r));
    let control_socket = raw.control.map_or_else(
        || PathBuf::from(super::DEFAULT_CONTROL_SOCKET),
        |c| resolve(base, c.socket),
    );
    require_registry(&listeners, &routes, client_auth.as_ref(), r);
    let mail = raw.mail.map(|m| crate::mail::config::validate(m, base, r));
    connect_needs(&listeners, client_auth.is_some(), mail.is_some(), r);
    if let Some(m) = &mail {
        mail_identity_needs_secret(m, client_auth.as_ref(), !listeners.is_empty(), r);
    }
    if mail.as_ref().is_some_and(|m| m.account_page.is_some()) {
        if client_auth.is_none() {
            r.at(
                "mail.account_page",
                "the account page edits the key registry: add `client_auth: { registry: … }`",
            );
        }
        if !routes.iter().any(|rt| rt.backend.is_builtin()) {
            r.at(
                "mail.account_page",
                "the account page is served on a web route with backend builtin:chatmail or builtin:status; add one",
            );
        }
    }
    let chatmail_on = mail.as_ref().is_some_and(|m| m.chatmail.is_some());
    for rt in routes
        .iter()
        .filter(|rt| rt.backend == Backend::BuiltinChatmail)
    {
        if !chatmail_on {
            r.at(
                &format!("routes.{}.backend", rt.name),
                "builtin:chatmail needs chatmail mode: add `mail: { chatmail: {} }`",
            );
        }
    }
    // The chatmail web side's path routes go to HTTP backends.
    let paths = mail
        .iter()
        .filter_map(|m| m.chatmail.as_ref())
        .flat_map(|c| c.paths.iter());
    for (i, p) in paths.enumerate() {
        let at = format!("mail.chatmail.paths[{i}].backend");
        if p.backend.is_empty() {
            continue; // reported by mail::chatmail
        }
        match Backend::parse(&p.backend) {
            Ok(b) if !b.is_builtin() => {}
            Ok(_) => r.at(&at, "needs an HTTP backend: host:port or unix:/path"),
            Err(e) => r.at(&at, e.to_string()),
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
        control_socket,
        mail,
        lines: SourceMap::default(),
    }
}

fn resolve(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

pub(super) fn duration(
    r: &mut Reporter,
    path: &str,
    v: &Option<String>,
    default: Duration,
) -> Duration {
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

/// `routes:`: each route, and that no ALPN value belongs to two routes.
fn routes(raw: BTreeMap<String, RawRoute>, base: &Path, r: &mut Reporter) -> Vec<Route> {
    let mut alpn_owner: HashMap<String, String> = HashMap::new();
    raw.into_iter()
        .map(|(name, rr)| route(name, rr, base, &mut alpn_owner, r))
        .collect()
}

/// `routes.NAME`; `alpn_owner` maps each ALPN value seen so far to its route.
fn route(
    name: String,
    rr: RawRoute,
    base: &Path,
    alpn_owner: &mut HashMap<String, String>,
    r: &mut Reporter,
) -> Route {
    let p = SourceMap::child("routes", &name);
    let backend = match Backend::parse(&rr.backend) {
        Ok(b) => b,
        Err(e) => {
            r.at(&SourceMap::child(&p, "backend"), e);
            Backend::Unix(PathBuf::new())
        }
    };
    let backend = match backend {
        Backend::Unix(sock) if !sock.as_os_str().is_empty() => Backend::Unix(resolve(base, sock)),
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
    if backend.is_builtin() && rr.alpn.iter().any(|a| a != "http/1.1") {
        r.at(
            &SourceMap::child(&p, "alpn"),
            format!("{backend} speaks HTTP/1.1 only: list just \"http/1.1\" (h2 must not be advertised for it)"),
        );
    }
    let client_auth = client_auth_mode(r, &SourceMap::child(&p, "client_auth"), &rr.client_auth);
    let passthrough = route_mode(&p, rr.mode.as_deref(), protocol, client_auth, r);
    let identity = route_identity(&p, rr.identity.as_deref(), protocol, proxy_protocol, r);
    Route {
        name,
        alpn: rr.alpn,
        backend,
        proxy_protocol,
        protocol,
        client_auth,
        identity,
        passthrough,
    }
}

/// `routes.NAME.mode` (at `p`): whether the route passes TLS through.
fn route_mode(
    p: &str,
    mode: Option<&str>,
    protocol: Protocol,
    client_auth: ClientAuthMode,
    r: &mut Reporter,
) -> bool {
    match mode {
        None | Some("terminate") => false,
        Some("passthrough") => {
            if protocol.is_mail() {
                r.at(&SourceMap::child(p, "mode"), "mail routes are terminated by frontdoor (pinned keys, identity); passthrough is for web or other TLS backends");
            }
            if client_auth == ClientAuthMode::Required {
                r.at(&SourceMap::child(p, "mode"), "a passthrough route cannot require a pinned client key (frontdoor does not see the handshake)");
            }
            true
        }
        Some(o) => {
            r.at(
                &SourceMap::child(p, "mode"),
                format!("unknown value {o:?} (expected terminate or passthrough)"),
            );
            false
        }
    }
}

/// `routes.NAME.identity` (at `p`): how the identity reaches the backend.
fn route_identity(
    p: &str,
    identity: Option<&str>,
    protocol: Protocol,
    proxy_protocol: proxy_protocol::Version,
    r: &mut Reporter,
) -> IdentityMode {
    match identity {
        None | Some("proxy") => IdentityMode::ProxyHeader,
        Some("xclient") => {
            if protocol != Protocol::Smtp {
                r.at(
                    &SourceMap::child(p, "identity"),
                    "identity: xclient is for SMTP routes only",
                );
            }
            if proxy_protocol != proxy_protocol::Version::None {
                // Postfix would check XCLIENT authorization against the
                // client address from the header, not the front door's.
                r.at(
                    &SourceMap::child(p, "identity"),
                    "identity: xclient needs proxy_protocol: none (XCLIENT carries the client address)",
                );
            }
            IdentityMode::Xclient
        }
        Some(o) => {
            r.at(
                &SourceMap::child(p, "identity"),
                format!("unknown value {o:?} (expected proxy or xclient)"),
            );
            IdentityMode::ProxyHeader
        }
    }
}

/// Index of the route called `name`, or a problem at `path` naming the known ones.
fn route_index(routes: &[Route], r: &mut Reporter, path: &str, name: &str) -> Option<usize> {
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
}

/// `listeners:`: addresses (each bound once), their routes and PROXY sources.
fn listeners(raw: Vec<RawListener>, routes: &[Route], r: &mut Reporter) -> Vec<Listener> {
    let mut listeners = Vec::new();
    let mut binds: HashMap<SocketAddr, usize> = HashMap::new();
    for (i, rl) in raw.into_iter().enumerate() {
        listeners.push(listener(i, rl, routes, &mut binds, r));
    }
    listeners
}

/// `listeners[i]`; `binds` maps each address bound so far to its listener.
fn listener(
    i: usize,
    rl: RawListener,
    routes: &[Route],
    binds: &mut HashMap<SocketAddr, usize>,
    r: &mut Reporter,
) -> Listener {
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
        .and_then(|n| route_index(routes, r, &SourceMap::child(&p, "route"), n));
    let default_route = match rl.default_route.as_deref() {
        Some(n) => route_index(routes, r, &SourceMap::child(&p, "default_route"), n),
        None => routes.iter().position(|x| x.name == "web"),
    };
    let mut sni_routes = HashMap::new();
    for (host, n) in &rl.sni_routes {
        let hp = SourceMap::child(&SourceMap::child(&p, "sni_routes"), host);
        if let Some(idx) = route_index(routes, r, &hp, n) {
            sni_routes.insert(host.to_ascii_lowercase(), idx);
        }
    }
    let client_auth = client_auth_mode(r, &SourceMap::child(&p, "client_auth"), &rl.client_auth);
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
    let https_connect = rl.https_connect.as_ref().map(|hc| {
        let ap = SourceMap::child(&SourceMap::child(&p, "https_connect"), "auth");
        let auth = match hc.auth.as_deref() {
            None | Some("password") => ConnectAuth::Password,
            Some("none") => ConnectAuth::None,
            Some("key") => ConnectAuth::Key,
            Some(o) => {
                r.at(
                    &ap,
                    format!("unknown value {o:?} (expected password, none or key)"),
                );
                ConnectAuth::Password
            }
        };
        HttpsConnect { auth }
    });
    if let (Some(_), Some(ri)) = (&https_connect, route) {
        if routes[ri].protocol != Protocol::Http {
            r.at(
                &SourceMap::child(&p, "https_connect"),
                format!(
                    "CONNECT is served on the web route, and this listener sends everything to route {:?}",
                    routes[ri].name
                ),
            );
        }
    }
    Listener {
        bind,
        default_route,
        sni_routes,
        route,
        client_auth,
        accept_proxy_from,
        https_connect,
    }
}

/// `tls:`: certificate files (base-resolved) and the ACME settings.
fn tls(raw: RawTls, base: &Path, r: &mut Reporter) -> (Vec<CertPaths>, Option<Acme>) {
    let acme = raw.acme.map(|a| validate_acme(a, base, r));
    let certificates = raw
        .certificates
        .into_iter()
        .map(|c| CertPaths {
            cert: resolve(base, c.cert),
            key: resolve(base, c.key),
        })
        .collect();
    (certificates, acme)
}

/// `timeouts:`: each a positive duration, defaults otherwise.
fn timeouts(t: &RawTimeouts, r: &mut Reporter) -> Timeouts {
    let d = Timeouts::default();
    Timeouts {
        handshake: duration(r, "timeouts.handshake", &t.handshake, d.handshake),
        connect: duration(r, "timeouts.connect", &t.connect, d.connect),
        idle: duration(r, "timeouts.idle", &t.idle, d.idle),
        shutdown_grace: duration(
            r,
            "timeouts.shutdown_grace",
            &t.shutdown_grace,
            d.shutdown_grace,
        ),
        drain_spread: None,
    }
    .with_spread(r, &t.drain_spread)
}

/// `limits:`: (max_connections, per_ip_connections), each at least 1.
fn limits(l: &RawLimits, r: &mut Reporter) -> (usize, usize) {
    let max_connections = match l.max_connections {
        Some(0) => {
            r.at("limits.max_connections", "must be at least 1");
            DEFAULT_MAX_CONNECTIONS
        }
        Some(n) => n,
        None => DEFAULT_MAX_CONNECTIONS,
    };
    let per_ip_connections = match l.per_ip_connections {
        Some(0) => {
            r.at("limits.per_ip_connections", "must be at least 1");
            DEFAULT_PER_IP_CONNECTIONS
        }
        Some(n) => n,
        None => DEFAULT_PER_IP_CONNECTIONS,
    };
    (max_connections, per_ip_connections)
}

/// `client_auth:`: the registry, what an unknown key gets, the identity secret.
fn client_auth(c: RawClientAuth, base: &Path, r: &mut Reporter) -> ClientAuth {
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
}

/// `metrics:`: the address metrics are served on.
fn metrics(m: RawMetrics, r: &mut Reporter) -> Option<SocketAddr> {
    match m.listen.parse::<SocketAddr>() {
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
    }
}

/// `client_auth: required` anywhere needs a `client_auth` section (the registry).
fn require_registry(
    listeners: &[Listener],
    routes: &[Route],
    client_auth: Option<&ClientAuth>,
    r: &mut Reporter,
) {
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
}

/// `https_connect.auth: key` checks keys against the registry, and `auth:
/// password` accounts of the bundled servers.
fn connect_needs(listeners: &[Listener], registry: bool, mail: bool, r: &mut Reporter) {
    for (i, l) in listeners.iter().enumerate() {
        let at = format!("listeners[{i}].https_connect.auth");
        match l.https_connect.map(|h| h.auth) {
            Some(ConnectAuth::Key) if !registry => r.at(
                &at,
                "auth: key needs a client_auth section with a registry of pinned keys",
            ),
            Some(ConnectAuth::Password) if !mail => r.at(
                &at,
                "auth: password checks accounts of the bundled mail servers: add a mail: section, or use auth: key or none",
            ),
            _ => {}
        }
    }
}

/// Loopback is not a trust boundary: a TCP listener that takes PROXY
/// headers honours an identity only with an HMAC. A secret exists when the
/// operator names one, or when this config also runs the front door
/// (`runs_front_door`: one process, generated in the data directory).
fn mail_identity_needs_secret(
    m: &MailConfig,
    client_auth: Option<&ClientAuth>,
    runs_front_door: bool,
    r: &mut Reporter,
) {
    let has_secret = client_auth.is_some_and(|c| c.identity_secret.is_some()) || runs_front_door;
    for (name, addr) in [("submission", &m.submission), ("imap", &m.imap)] {
        if let (Some(ListenAddr::Tcp(a)), false) = (addr, has_secret) {
            r.at(
                &format!("mail.{name}.listen"),
                format!(
                    "TCP listener {a} would honour identity TLVs without a secret: any local process can reach it and claim to be anyone. Set client_auth.identity_secret (the file the front door signs headers with), or listen on a unix: socket"
                ),
            );
        }
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

/// A host name with at least two labels ([`crate::mail::config::valid_domain`]:
/// `_chat.example` included).
fn is_dns_name(s: &str) -> bool {
    s.contains('.') && crate::mail::config::valid_domain(s)
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
