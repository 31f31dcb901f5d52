//! HTTP `CONNECT` tunnels to frontdoor's own mail endpoints
//! (`listeners[].https_connect`): the pure part. Parsing the request head
//! (RFC 9110 §9.3.6: `CONNECT host:port HTTP/1.1`, `Proxy-Authorization:
//! Basic …` per RFC 7617), deciding whether a target is one of frontdoor's
//! own endpoints, and the exact reply bytes. `conn` does the I/O: it sniffs
//! the first bytes of a web-route connection, checks the credentials
//! through the bundled servers' throttled login path, and hands the
//! tunnelled stream to the connection pipeline as if it had arrived on the
//! target listener.
//!
//! Invariants: only a DNS name frontdoor serves (mail domains, certificate
//! names, SNI route names) on a port one of its listeners is bound to is a
//! target; an IP literal never is, so frontdoor is never an open proxy. The
//! replies name no product and no version.

use std::net::SocketAddr;

use base64::Engine as _;

/// The bytes a tunnel request starts with (RFC 9110 §9.3.6).
pub const PREFIX: &[u8] = b"CONNECT ";

/// The reply that opens the tunnel; Delta Chat reads it as one chunk
/// ending in a blank line.
pub const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

/// How a CONNECT request was refused: its reply and the log's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The head is not a CONNECT request frontdoor understands (client's fault).
    #[error("malformed CONNECT request: {0}")]
    Malformed(&'static str),
    /// The target is not one of frontdoor's own endpoints.
    #[error("CONNECT target is not one of this server's endpoints")]
    Foreign,
    /// A tunnel inside a tunnel.
    #[error("CONNECT inside a tunnel")]
    Nested,
    /// Credentials missing or wrong.
    #[error("proxy credentials missing or wrong")]
    Credentials,
    /// The outer TLS carried no pinned client key (`auth: key`).
    #[error("a pinned client key is required for CONNECT here")]
    KeyRequired,
    /// Too many failed logins from this address (or the check pool is full).
    #[error("proxy login throttled")]
    Throttled,
    /// The password check could not be made (the server's fault).
    #[error("proxy login unavailable")]
    Unavailable,
}

impl Refused {
    /// The reply sent before closing.
    pub fn reply(&self) -> &'static [u8] {
        match self {
            Refused::Malformed(_) => {
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
            Refused::Foreign | Refused::Nested | Refused::KeyRequired => {
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
            Refused::Credentials => {
                b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"proxy\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
            Refused::Throttled => {
                b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
            Refused::Unavailable => {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
        }
    }

    /// The reply's status code (for the log line).
    pub fn status(&self) -> u16 {
        match self {
            Refused::Malformed(_) => 400,
            Refused::Foreign | Refused::Nested | Refused::KeyRequired => 403,
            Refused::Credentials => 407,
            Refused::Throttled => 429,
            Refused::Unavailable => 503,
        }
    }
}

/// A parsed CONNECT request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The target as sent (`host:port`), for the log (escape it).
    pub target: String,
    /// Lower case, without a trailing dot; `None` for an IP literal.
    pub host: Option<String>,
    pub port: u16,
    /// `Proxy-Authorization: Basic` user and password, when sent.
    pub credentials: Option<(String, String)>,
}

/// Parse a request head (everything up to and including the blank line).
pub fn parse(head: &[u8]) -> Result<Request, Refused> {
    let text = std::str::from_utf8(head).map_err(|_| Refused::Malformed("not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let (Some("CONNECT"), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refused::Malformed("request line"));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(Refused::Malformed("HTTP version"));
    }
    let (host, port) = split_target(target)?;
    let mut credentials = None;
    for line in lines {
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(Refused::Malformed("header line"));
        };
        if name.eq_ignore_ascii_case("proxy-authorization") {
            credentials = basic(value.trim());
            if credentials.is_none() {
                return Err(Refused::Credentials);
            }
        }
    }
    Ok(Request {
        target: target.to_owned(),
        host,
        port,
        credentials,
    })
}

/// The target of a request line as sent, for the log of one that did not
/// parse (lossy UTF-8; escape it when logging).
pub fn raw_target(head: &[u8]) -> String {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let target = line.split(|&b| b == b' ').nth(1).unwrap_or_default();
    String::from_utf8_lossy(&target[..target.len().min(512)]).into_owned()
}

/// `host:port` or `[v6]:port` (RFC 9110 §7.2 authority form).
fn split_target(target: &str) -> Result<(Option<String>, u16), Refused> {
    if let Some(rest) = target.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or(Refused::Malformed("target"))?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(Refused::Malformed("target"));
        }
        return Ok((None, port_of(p)?));
    }
    let (host, port) = target
        .rsplit_once(':')
        .ok_or(Refused::Malformed("target"))?;
    let port = port_of(port)?;
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok((None, port));
    }
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let dns = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !dns {
        return Err(Refused::Malformed("target host"));
    }
    Ok((Some(host), port))
}

/// A port: digits only (`u16`'s parser would take a `+`).
fn port_of(p: &str) -> Result<u16, Refused> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refused::Malformed("port"));
    }
    p.parse().map_err(|_| Refused::Malformed("port"))
}

/// `Basic <base64(user:password)>` (RFC 7617 §2).
fn basic(value: &str) -> Option<(String, String)> {
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The listener a target names: `host` one of `names` (lower case) and
/// `port` the bound port of a listener (the first one, preferring those on
/// `local`'s address). `None`: not one of ours.
pub fn target_listener(
    req: &Request,
    names: &[String],
    bound: &[SocketAddr],
    local: SocketAddr,
) -> Option<usize> {
    let host = req.host.as_deref()?;
    if !names.iter().any(|n| n == host) {
        return None;
    }
    let same_ip = bound
        .iter()
        .position(|b| b.port() == req.port && b.ip() == local.ip());
    same_ip.or_else(|| bound.iter().position(|b| b.port() == req.port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(head: &str) -> Result<Request, Refused> {
        parse(head.as_bytes())
    }

    #[test]
    fn parses_delta_chats_request() {
        // What chatmail core's `http_connect_request` writes.
        let r = req("CONNECT _Chat.localhost.:443 HTTP/1.1\r\nHost: _chat.localhost:443\r\nProxy-Authorization: Basic YWxpY2VAeDpzM2NyZXQ6eA==\r\n\r\n").unwrap();
        assert_eq!(r.host.as_deref(), Some("_chat.localhost"));
        assert_eq!(r.port, 443);
        assert_eq!(
            r.credentials,
            Some(("alice@x".to_owned(), "s3cret:x".to_owned()))
        );
        let r = req("CONNECT a.example:993 HTTP/1.1\r\nHost: a.example:993\r\n\r\n").unwrap();
        assert_eq!(r.credentials, None);
    }

    #[test]
    fn ip_literals_have_no_host() {
        assert_eq!(
            req("CONNECT 127.0.0.1:443 HTTP/1.1\r\n\r\n").unwrap().host,
            None
        );
        let r = req("CONNECT [::1]:993 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!((r.host, r.port), (None, 993));
    }

    #[test]
    fn malformed_heads_are_refused_with_400() {
        for bad in [
            "GET / HTTP/1.1\r\n\r\n",
            "CONNECT a.example HTTP/1.1\r\n\r\n",
            "CONNECT a.example:99999 HTTP/1.1\r\n\r\n",
            "CONNECT a.example:+443 HTTP/1.1\r\n\r\n",
            "CONNECT [::1]:+993 HTTP/1.1\r\n\r\n",
            "CONNECT a.example:443 HTTP/2\r\n\r\n",
            "CONNECT a/b:443 HTTP/1.1\r\n\r\n",
            "CONNECT a.example:443 HTTP/1.1\r\nbroken\r\n\r\n",
        ] {
            let e = req(bad).unwrap_err();
            assert_eq!(e.status(), 400, "{bad:?}");
            assert!(e.reply().starts_with(b"HTTP/1.1 400 "));
        }
        let e = req("CONNECT a.example:443 HTTP/1.1\r\nProxy-Authorization: Bearer x\r\n\r\n")
            .unwrap_err();
        assert_eq!(e, Refused::Credentials);
        assert!(std::str::from_utf8(e.reply())
            .unwrap()
            .contains("\r\nProxy-Authenticate: Basic realm=\"proxy\"\r\n"));
    }

    #[test]
    fn only_own_names_and_bound_ports_are_targets() {
        let names = vec!["chat.example".to_owned(), "mta-sts.chat.example".to_owned()];
        let bound: Vec<SocketAddr> = vec![
            "0.0.0.0:443".parse().unwrap(),
            "127.0.0.1:993".parse().unwrap(),
            "127.0.0.2:993".parse().unwrap(),
        ];
        let local: SocketAddr = "127.0.0.2:443".parse().unwrap();
        let t = |head: &str| target_listener(&req(head).unwrap(), &names, &bound, local);
        assert_eq!(t("CONNECT chat.example:443 HTTP/1.1\r\n\r\n"), Some(0));
        assert_eq!(t("CONNECT CHAT.example:993 HTTP/1.1\r\n\r\n"), Some(2));
        assert_eq!(t("CONNECT chat.example:465 HTTP/1.1\r\n\r\n"), None);
        assert_eq!(t("CONNECT other.example:443 HTTP/1.1\r\n\r\n"), None);
        assert_eq!(t("CONNECT 127.0.0.1:443 HTTP/1.1\r\n\r\n"), None);
    }
}
