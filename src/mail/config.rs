//! The `mail:` section of the configuration: raw serde shape and its
//! validation into [`MailConfig`].
//!
//! Invariants of a validated [`MailConfig`]: `domains` is non-empty and
//! lower-case; every listen address is a TCP socket address or an absolute
//! (base-resolved) Unix socket path; `max_message_size` is at least 1 KiB.
//! Errors are reported through the shared [`Reporter`] with file, line and
//! YAML path, all of them, not just the first.
//!
//! The raw shape (`RawMail`) is crate-private: the configuration's raw
//! document (`config::raw`) embeds it and `config` hands it to
//! `validate`; nothing else sees it.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

use crate::diagnostics::Reporter;

/// Default cap on one message (30 MiB, as chatmail relays use).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 31_457_280;

/// The raw `mail:` section as serde reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMail {
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    data_dir: Option<PathBuf>,
    #[serde(default)]
    trusted_proxies: Option<Vec<String>>,
    #[serde(default)]
    trusted_uids: Option<Vec<u32>>,
    #[serde(default)]
    identity_max_age: Option<String>,
    #[serde(default)]
    submission: Option<RawListen>,
    #[serde(default)]
    imap: Option<RawListen>,
    #[serde(default)]
    lmtp: Option<RawListen>,
    #[serde(default)]
    inbound: Option<RawListen>,
    #[serde(default)]
    relay: Option<String>,
    #[serde(default)]
    max_message_size: Option<usize>,
    #[serde(default)]
    quota: Option<RawSize>,
    #[serde(default)]
    delete_after: Option<String>,
    #[serde(default)]
    accounts: Option<RawAccounts>,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    banner: Option<String>,
    #[serde(default)]
    chatmail: Option<crate::mail::chatmail::config::RawChatmail>,
    #[serde(default)]
    dns: Option<RawDns>,
    #[serde(default)]
    dkim: Option<RawDkim>,
    #[serde(default)]
    account_page: Option<RawAccountPage>,
    #[serde(default)]
    mx: Option<RawMx>,
    #[serde(default)]
    delivery: Option<RawDelivery>,
    #[serde(default)]
    queue: Option<RawQueue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    #[serde(default)]
    direct: Option<bool>,
    #[serde(default)]
    tls: Option<String>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    mxdeliv: Option<bool>,
    #[serde(default)]
    https_port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    #[serde(default)]
    lifetime: Option<String>,
    #[serde(default)]
    retry: Option<String>,
    #[serde(default)]
    max_retry: Option<String>,
}

/// `mail.account_page:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccountPage {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    max_keys_per_account: Option<usize>,
    #[serde(default)]
    changes_per_hour: Option<u32>,
    #[serde(default)]
    session_lifetime: Option<String>,
}

/// The account page (`/account` on the web route, `src/web/account`):
/// users log in with their password and manage their own device keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountPageConfig {
    /// Device keys one account may have (all of its keys count, the
    /// operator's included).
    pub max_keys_per_account: usize,
    /// Key changes (add, generate, remove, preauth switch) one client
    /// address may make an hour.
    pub changes_per_hour: u32,
    /// A login session ends this long after the login.
    pub session_lifetime: std::time::Duration,
}

impl Default for AccountPageConfig {
    fn default() -> Self {
        Self {
            max_keys_per_account: 10,
            changes_per_hour: 30,
            session_lifetime: std::time::Duration::from_secs(30 * 60),
        }
    }
}

/// `mail.mx:`, the inbound MX's rules for its peers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMx {
    #[serde(default)]
    require_tls: Option<bool>,
    #[serde(default)]
    max_connections_per_peer: Option<usize>,
}

/// Sessions per client address on the MX when `mail.mx.max_connections_per_peer`
/// is not set: Postfix's `smtpd_client_connection_count_limit` default,
/// which chatmail relays keep on port 25.
pub const DEFAULT_MX_CONNECTIONS_PER_PEER: usize = 50;

/// `mail.dns:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    #[serde(default)]
    resolvers: Vec<String>,
}

/// The DKIM selector when `mail.dkim.selector` names none.
pub const DEFAULT_DKIM_SELECTOR: &str = "dkim";

/// `mail.dkim:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDkim {
    #[serde(default)]
    selector: Option<String>,
    #[serde(default)]
    verify: Option<bool>,
}

/// A byte count: a number, or a string such as `100M` (K, M, G: powers of 1024).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawSize {
    Bytes(u64),
    Text(String),
}

/// `100M` → 104857600; `512K`, `1G`, `1.5G`, plain digits; an optional `B`/`iB`.
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, mult) = match t.chars().last()?.to_ascii_uppercase() {
        'K' => (&t[..t.len() - 1], 1u64 << 10),
        'M' => (&t[..t.len() - 1], 1 << 20),
        'G' => (&t[..t.len() - 1], 1 << 30),
        'T' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = num.trim().parse().ok()?;
    if !v.is_finite() || v < 0.0 || v * mult as f64 > u64::MAX as f64 / 2.0 {
        return None;
    }
    Some((v * mult as f64) as u64)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    listen: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccounts {
    #[serde(default)]
    auto_create: bool,
}

/// Where a mail server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Why a `listen:` value was refused (the operator's value is wrong).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenAddrError {
    #[error("unix: needs a socket path")]
    EmptyUnixPath,
    #[error("bad listen address {0:?}: expected ip:port or unix:/path")]
    Bad(String),
}

impl ListenAddr {
    /// `ip:port` or `unix:/path` (a relative path is taken from `base`).
    pub fn parse(s: &str, base: &Path) -> Result<Self, ListenAddrError> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(ListenAddrError::EmptyUnixPath);
            }
            let p = PathBuf::from(p);
            return Ok(ListenAddr::Unix(if p.is_absolute() {
                p
            } else {
                base.join(p)
            }));
        }
        s.parse::<SocketAddr>()
            .map(ListenAddr::Tcp)
            .map_err(|_| ListenAddrError::Bad(s.to_owned()))
    }
}

/// The validated `mail:` section.
/// How the delivery worker checks a peer's certificate after STARTTLS
/// (STARTTLS itself is always required to other relays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryTls {
    /// The certificate must chain to a trusted root (the system's, plus
    /// `mail.delivery.ca_file`) and name the MX host.
    Verify,
    /// Any certificate: encrypted, not authenticated (opportunistic peers).
    Encrypt,
}

/// Direct delivery to the recipients' MX hosts (`mail.delivery`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// On: remote mail goes to the MX hosts of its domain (default on in
    /// chatmail mode without a smarthost).
    pub direct: bool,
    pub tls: DeliveryTls,
    /// Extra trust anchors (PEM) for [`DeliveryTls::Verify`].
    pub ca_file: Option<PathBuf>,
    /// The port of the peers' MX (25; another only for tests and labs).
    pub port: u16,
    /// Try HTTPS delivery (`POST https://<domain>/mxdeliv`) before SMTP
    /// (default on in chatmail mode).
    pub mxdeliv: bool,
    /// The port of the peers' HTTPS (443; another only for tests and labs).
    pub https_port: u16,
}

/// The outbound queue's timing (`mail.queue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueTiming {
    /// A message not delivered within this time is returned (DSN).
    pub lifetime: std::time::Duration,
    /// The first retry after a temporary failure; doubled each time ...
    pub retry: std::time::Duration,
    /// ... up to this.
    pub max_retry: std::time::Duration,
}

/// Default `mail.queue.lifetime` (Postfix's `maximal_queue_lifetime`).
pub const DEFAULT_QUEUE_LIFETIME: std::time::Duration = std::time::Duration::from_secs(5 * 86400);
/// Default first retry (Postfix's `minimal_backoff_time`).
pub const DEFAULT_QUEUE_RETRY: std::time::Duration = std::time::Duration::from_secs(300);
/// Default longest retry interval (Postfix's `maximal_backoff_time`).
pub const DEFAULT_QUEUE_MAX_RETRY: std::time::Duration = std::time::Duration::from_secs(4000);

#[derive(Debug, Clone)]
pub struct MailConfig {
    /// Local mail domains, lower-case.
    pub domains: Vec<String>,
    /// Store and accounts live here.
    pub data_dir: PathBuf,
    /// PROXY headers (and identities) are honoured only from these sources
    /// and from Unix-socket peers.
    pub trusted_proxies: Vec<IpNet>,
    /// Uids besides this process's own that may send a PROXY header on a
    /// Unix socket (`SO_PEERCRED`).
    pub trusted_uids: Vec<u32>,
    /// How old a signed PROXY header may be before it is refused.
    pub identity_max_age: std::time::Duration,
    pub submission: Option<ListenAddr>,
    /// Carried for the IMAP server.
    pub imap: Option<ListenAddr>,
    pub lmtp: Option<ListenAddr>,
    pub inbound: Option<ListenAddr>,
    /// Smarthost for remote recipients (`host:port`).
    pub relay: Option<String>,
    pub max_message_size: usize,
    /// Storage limit per account in bytes (all mailboxes), if any.
    pub quota: Option<u64>,
    /// Messages are removed this long after their arrival, if set.
    pub delete_after: Option<std::time::Duration>,
    pub auto_create: bool,
    /// Name used in greetings and Received: headers.
    pub hostname: String,
    /// `mail.banner`: the server's name in the IMAP and SMTP greetings,
    /// the IMAP `ID` reply and `Received:` headers. `None` (the default):
    /// none of them names a product or a version, so that nothing before
    /// login tells an observer inside a tunnel what answers.
    pub banner: Option<String>,
    /// Chatmail mode (`mail.chatmail:`), when on.
    pub chatmail: Option<crate::mail::chatmail::ChatmailConfig>,
    /// DNS servers for DKIM key lookups (`mail.dns.resolvers`); empty: the
    /// system's.
    pub dns_resolvers: Vec<SocketAddr>,
    /// DKIM selector of the signing keys (`mail.dkim.selector`).
    pub dkim_selector: String,
    /// Verify DKIM on the inbound MX (`mail.dkim.verify`; default: on in
    /// chatmail mode).
    pub dkim_verify: bool,
    /// `mail.account_page`, when the section is there and not `enabled: false`.
    pub account_page: Option<AccountPageConfig>,
    /// The MX refuses MAIL before STARTTLS (`mail.mx.require_tls`; default:
    /// on in chatmail mode, as chatmail's Postfix has
    /// `smtpd_tls_security_level=encrypt` on port 25).
    pub mx_require_tls: bool,
    /// Most simultaneous MX sessions per client address
    /// (`mail.mx.max_connections_per_peer`).
    pub mx_max_connections_per_peer: usize,
    pub delivery: Delivery,
    pub queue: QueueTiming,
}

impl MailConfig {
    /// A config for `data_dir` with defaults, for the CLI when no config file is given.
    pub fn with_data_dir(data_dir: PathBuf) -> Self {
        Self {
            domains: Vec::new(),
            data_dir,
            trusted_proxies: default_trusted(),
            trusted_uids: Vec::new(),
            identity_max_age: crate::mail::peer::DEFAULT_IDENTITY_MAX_AGE,
            submission: None,
            imap: None,
            lmtp: None,
            inbound: None,
            relay: None,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            quota: None,
            delete_after: None,
            auto_create: false,
            hostname: "localhost".into(),
            banner: None,
            chatmail: None,
            dns_resolvers: Vec::new(),
            dkim_selector: DEFAULT_DKIM_SELECTOR.into(),
            dkim_verify: false,
            account_page: None,
            mx_require_tls: false,
            mx_max_connections_per_peer: DEFAULT_MX_CONNECTIONS_PER_PEER,
            delivery: Delivery {
                direct: false,
                tls: DeliveryTls::Verify,
                ca_file: None,
                port: 25,
                mxdeliv: false,
                https_port: 443,
            },
            queue: QueueTiming {
                lifetime: DEFAULT_QUEUE_LIFETIME,
                retry: DEFAULT_QUEUE_RETRY,
                max_retry: DEFAULT_QUEUE_MAX_RETRY,
            },
        }
    }

    /// True when remote recipients are accepted (smarthost or direct).
    pub fn sends_remote(&self) -> bool {
        self.relay.is_some() || self.delivery.direct
    }

    /// Is `domain` one of ours (case-insensitive)?
    pub fn is_local_domain(&self, domain: &str) -> bool {
        let d = domain.to_ascii_lowercase();
        self.domains.contains(&d)
    }
}

fn default_trusted() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// A host or mail domain name: dot-separated labels of 1 to 63 letters,
/// digits, hyphens (not first or last) and underscores, 253 bytes at most.
/// Underscores are allowed because chatmail relays are tested under names
/// such as `_chat.localhost`: Delta Chat skips chain validation for a host
/// name that starts with `_` (a self-signed certificate works) but still
/// checks the name, and rustls accepts such names in SNI.
pub fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Validate the raw section; problems go to `r` at `mail.*` paths.
pub(crate) fn validate(raw: RawMail, base: &Path, r: &mut Reporter) -> MailConfig {
    let mut domains = Vec::new();
    if raw.domains.is_empty() {
        r.at("mail.domains", "at least one local mail domain is needed");
    }
    for (i, d) in raw.domains.iter().enumerate() {
        let d = d.trim_end_matches('.').to_ascii_lowercase();
        if !valid_domain(&d) {
            r.at(
                &format!("mail.domains[{i}]"),
                format!("{d:?} is not a domain name"),
            );
        }
        domains.push(d);
    }
    let data_dir = match raw.data_dir {
        Some(p) if p.is_absolute() => p,
        Some(p) => base.join(p),
        None => base.join("frontdoor-data"),
    };
    let trusted_proxies = match raw.trusted_proxies {
        None => default_trusted(),
        Some(v) => v
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let parsed = s
                    .parse::<IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from));
                match parsed {
                    Ok(n) => Some(n),
                    Err(_) => {
                        r.at(
                            &format!("mail.trusted_proxies[{i}]"),
                            format!("bad network {s:?}: expected a CIDR such as 127.0.0.0/8"),
                        );
                        None
                    }
                }
            })
            .collect(),
    };
    let trusted_uids = raw.trusted_uids.unwrap_or_default();
    let identity_max_age = match raw.identity_max_age {
        None => crate::mail::peer::DEFAULT_IDENTITY_MAX_AGE,
        Some(s) => match humantime::parse_duration(&s) {
            Ok(d)
                if d >= std::time::Duration::from_secs(1)
                    && d <= std::time::Duration::from_secs(600) =>
            {
                d
            }
            Ok(_) => {
                r.at("mail.identity_max_age", "must be between 1s and 10m");
                crate::mail::peer::DEFAULT_IDENTITY_MAX_AGE
            }
            Err(e) => {
                r.at(
                    "mail.identity_max_age",
                    format!("bad duration {s:?}: {e} (examples: 30s, 2m)"),
                );
                crate::mail::peer::DEFAULT_IDENTITY_MAX_AGE
            }
        },
    };
    let mut listen = |name: &str, v: Option<RawListen>| -> Option<ListenAddr> {
        let v = v?;
        match ListenAddr::parse(&v.listen, base) {
            Ok(a) => Some(a),
            Err(e) => {
                r.at(&format!("mail.{name}.listen"), e);
                None
            }
        }
    };
    let submission = listen("submission", raw.submission);
    let imap = listen("imap", raw.imap);
    let lmtp = listen("lmtp", raw.lmtp);
    let inbound = listen("inbound", raw.inbound);
    if let Some(relay) = &raw.relay {
        let ok = relay
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
        if !ok {
            r.at(
                "mail.relay",
                format!("bad smarthost {relay:?}: expected host:port"),
            );
        }
    }
    let max_message_size = match raw.max_message_size {
        None => DEFAULT_MAX_MESSAGE_SIZE,
        Some(n) if n < 1024 => {
            r.at("mail.max_message_size", "must be at least 1024 bytes");
            DEFAULT_MAX_MESSAGE_SIZE
        }
        Some(n) => n,
    };
    let quota = match raw.quota {
        None => None,
        Some(RawSize::Bytes(n)) => Some(n),
        Some(RawSize::Text(t)) => match parse_size(&t) {
            Some(n) => Some(n),
            None => {
                r.at(
                    "mail.quota",
                    format!("bad size {t:?}: expected bytes or a size such as 100M, 2G"),
                );
                None
            }
        },
    };
    if quota.is_some_and(|q| q < 1024) {
        r.at("mail.quota", "must be at least 1K");
    }
    let delete_after = raw
        .delete_after
        .and_then(|s| match humantime::parse_duration(&s) {
            Ok(d) if d.as_secs() >= 1 => Some(d),
            Ok(_) => {
                r.at("mail.delete_after", "must be at least 1s");
                None
            }
            Err(e) => {
                r.at(
                    "mail.delete_after",
                    format!("bad duration {s:?}: {e} (examples: 20d, 12h)"),
                );
                None
            }
        });
    let chatmail = raw
        .chatmail
        .map(|c| crate::mail::chatmail::config::validate(c, base, r));
    let (quota, delete_after) = match &chatmail {
        Some(_) => (
            quota.or(Some(crate::mail::chatmail::config::DEFAULT_CHATMAIL_QUOTA)),
            delete_after.or(Some(
                crate::mail::chatmail::config::DEFAULT_CHATMAIL_DELETE_AFTER,
            )),
        ),
        None => (quota, delete_after),
    };
    let auto_create = match raw.accounts {
        Some(a) => a.auto_create,
        None => chatmail.is_some(),
    };
    let hostname = raw
        .hostname
        .or_else(|| domains.first().cloned())
        .unwrap_or_else(|| "localhost".into());
    let banner = match raw.banner {
        Some(b) if b.is_empty() => None,
        Some(b)
            if b.len() <= 64
                && b.bytes().all(|c| c.is_ascii_graphic() || c == b' ')
                && !b.contains(['"', '\\', '(', ')', '[', ']']) =>
        {
            Some(b)
        }
        Some(b) => {
            r.at(
                "mail.banner",
                format!("bad banner {b:?}: at most 64 printable ASCII characters, without quotes, backslashes, parentheses or brackets"),
            );
            None
        }
        None => None,
    };
    let mut dns_resolvers = Vec::new();
    for (i, a) in raw.dns.unwrap_or_default().resolvers.iter().enumerate() {
        match a.parse::<SocketAddr>() {
            Ok(a) => dns_resolvers.push(a),
            Err(_) => r.at(
                &format!("mail.dns.resolvers[{i}]"),
                format!("bad resolver {a:?}: expected ip:port"),
            ),
        }
    }
    let raw_dkim = raw.dkim.unwrap_or_default();
    let dkim_selector = match raw_dkim.selector {
        None => DEFAULT_DKIM_SELECTOR.to_owned(),
        Some(s) if valid_domain(&s) && !s.contains('.') => s,
        Some(s) => {
            r.at(
                "mail.dkim.selector",
                format!("bad selector {s:?}: one DNS label (letters, digits, hyphens)"),
            );
            DEFAULT_DKIM_SELECTOR.to_owned()
        }
    };
    let dkim_verify = raw_dkim.verify.unwrap_or(chatmail.is_some());
    let account_page = raw
        .account_page
        .filter(|a| a.enabled != Some(false))
        .map(|a| {
            let mut c = AccountPageConfig::default();
            match a.max_keys_per_account {
                Some(0) => r.at(
                    "mail.account_page.max_keys_per_account",
                    "must be at least 1",
                ),
                Some(n) => c.max_keys_per_account = n,
                None => {}
            }
            match a.changes_per_hour {
                Some(0) => r.at(
                    "mail.account_page.changes_per_hour",
                    "must be at least 1 (enabled: false turns the page off)",
                ),
                Some(n) => c.changes_per_hour = n,
                None => {}
            }
            if let Some(s) = a.session_lifetime {
                match humantime::parse_duration(&s) {
                    Ok(d) if d >= std::time::Duration::from_secs(60) => c.session_lifetime = d,
                    Ok(_) => r.at("mail.account_page.session_lifetime", "must be at least 1m"),
                    Err(e) => r.at(
                        "mail.account_page.session_lifetime",
                        format!("bad duration {s:?}: {e} (examples: 30m, 2h)"),
                    ),
                }
            }
            c
        });
    let raw_mx = raw.mx.unwrap_or_default();
    let mx_require_tls = raw_mx.require_tls.unwrap_or(chatmail.is_some());
    let mx_max_connections_per_peer = match raw_mx.max_connections_per_peer {
        None => DEFAULT_MX_CONNECTIONS_PER_PEER,
        Some(0) => {
            r.at("mail.mx.max_connections_per_peer", "must be at least 1");
            DEFAULT_MX_CONNECTIONS_PER_PEER
        }
        Some(n) => n,
    };
    let raw_delivery = raw.delivery.unwrap_or_default();
    let tls = match raw_delivery.tls.as_deref() {
        None | Some("verify") => DeliveryTls::Verify,
        Some("encrypt") => DeliveryTls::Encrypt,
        Some(other) => {
            r.at(
                "mail.delivery.tls",
                format!("bad value {other:?}: expected verify or encrypt"),
            );
            DeliveryTls::Verify
        }
    };
    let ca_file = raw_delivery
        .ca_file
        .map(|p| if p.is_absolute() { p } else { base.join(p) });
    if let Some(p) = &ca_file {
        if !p.is_file() {
            r.at(
                "mail.delivery.ca_file",
                format!("{} is not a readable file", p.display()),
            );
        }
    }
    if raw_delivery.port == Some(0) {
        r.at("mail.delivery.port", "must not be 0");
    }
    if raw_delivery.https_port == Some(0) {
        r.at("mail.delivery.https_port", "must not be 0");
    }
    let direct = raw_delivery
        .direct
        .unwrap_or(chatmail.is_some() && raw.relay.is_none());
    if direct && raw.relay.is_some() {
        r.at(
            "mail.delivery.direct",
            "cannot be on together with mail.relay (a smarthost): pick one",
        );
    }
    let delivery = Delivery {
        direct,
        tls,
        ca_file,
        port: raw_delivery.port.filter(|p| *p != 0).unwrap_or(25),
        mxdeliv: raw_delivery.mxdeliv.unwrap_or(chatmail.is_some()),
        https_port: raw_delivery.https_port.filter(|p| *p != 0).unwrap_or(443),
    };
    let raw_queue = raw.queue.unwrap_or_default();
    let mut dur = |key: &str, v: Option<String>, default: std::time::Duration| match v {
        None => default,
        Some(s) => match humantime::parse_duration(&s) {
            Ok(d) if d.as_millis() >= 100 => d,
            Ok(_) => {
                r.at(key, "must be at least 100ms");
                default
            }
            Err(e) => {
                r.at(
                    key,
                    format!("bad duration {s:?}: {e} (examples: 5d, 5m, 1h)"),
                );
                default
            }
        },
    };
    let queue = QueueTiming {
        lifetime: dur(
            "mail.queue.lifetime",
            raw_queue.lifetime,
            DEFAULT_QUEUE_LIFETIME,
        ),
        retry: dur("mail.queue.retry", raw_queue.retry, DEFAULT_QUEUE_RETRY),
        max_retry: dur(
            "mail.queue.max_retry",
            raw_queue.max_retry,
            DEFAULT_QUEUE_MAX_RETRY,
        ),
    };
    MailConfig {
        domains,
        data_dir,
        trusted_proxies,
        trusted_uids,
        identity_max_age,
        submission,
        imap,
        lmtp,
        inbound,
        relay: raw.relay,
        max_message_size,
        quota,
        delete_after,
        auto_create,
        hostname,
        banner,
        chatmail,
        dns_resolvers,
        dkim_selector,
        dkim_verify,
        account_page,
        mx_require_tls,
        mx_max_connections_per_peer,
        delivery,
        queue,
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_size, valid_domain};

    #[test]
    fn domains_may_hold_underscores() {
        for good in [
            "_chat.localhost",
            "example.org",
            "localhost",
            "a-b.c",
            "_dmarc.x.y",
        ] {
            assert!(valid_domain(good), "{good}");
        }
        for bad in [
            "",
            "a..b",
            "-a.b",
            "a-.b",
            "a b.c",
            "a.b\n",
            "bücher.example",
            ".a",
        ] {
            assert!(!valid_domain(bad), "{bad}");
        }
        assert!(!valid_domain(&"a".repeat(64)));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100M"), Some(100 << 20));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("1.5G"), Some(3 << 29));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("10MB"), Some(10 << 20));
        for bad in ["", "M", "-1M", "ten", "1X", "NaN", "1e300G"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }
}
