//! The URIs Delta Chat scans to join a chatmail relay: `dclogin:` for an
//! existing account (address and password, Delta Chat's
//! `src/qr/dclogin_scheme.rs`) and `dcaccount:` for signing up on a relay
//! (`src/qr.rs` `decode_account`), and the `https://` proxy URL of the
//! relay's CONNECT entry (`src/qr.rs` reads an `http(s)://` URL with a
//! port, no path and no query as a proxy; `src/net/proxy.rs` takes the
//! percent-decoded user and password for `Proxy-Authorization: Basic`).
//! Pure string building, no I/O.
//!
//! Invariant: every byte that is not an RFC 3986 unreserved character (nor
//! the `@` of the address) is percent-encoded, so the address survives
//! Delta Chat's split on `?` and `/` and the password survives its
//! form-urlencoded query parsing (where `+` would mean a space).

use std::fmt::Write as _;

/// `s` with every byte outside `A-Za-z0-9-._~` (and `keep`) as `%XX`.
fn percent_encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `dclogin:ADDRESS?p=PASSWORD&v=1`: Delta Chat logs in to `address` with
/// `password` and finds the servers itself (autoconfig, then guesses).
pub fn dclogin_url(address: &str, password: &str) -> String {
    format!(
        "dclogin:{}?p={}&v=1",
        percent_encode(address, b"@"),
        percent_encode(password, b"")
    )
}

/// `https://USER:PASSWORD@HOST:PORT` (no credentials: `https://HOST:PORT`),
/// with no trailing slash: Delta Chat takes a URL with a path for a web
/// link, not a proxy. User and password are percent-encoded whole (the
/// address's `@` too).
pub fn proxy_url(host: &str, port: u16, credentials: Option<(&str, &str)>) -> String {
    match credentials {
        Some((user, password)) => format!(
            "https://{}:{}@{host}:{port}",
            percent_encode(user, b""),
            percent_encode(password, b"")
        ),
        None => format!("https://{host}:{port}"),
    }
}

/// Which `dcaccount:` form to give out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteForm {
    /// `dcaccount:https://DOMAIN/new`: the client asks the relay's `/new`
    /// for an address and password (chatmail's own invite).
    New,
    /// `dcaccount:DOMAIN`: the client picks its own random address and
    /// password and simply logs in; the relay creates the account then.
    Domain,
}

/// The relay's `dcaccount:` invite for `domain`.
pub fn dcaccount_uri(domain: &str, form: InviteForm) -> String {
    match form {
        InviteForm::New => format!("dcaccount:https://{domain}/new"),
        InviteForm::Domain => format!("dcaccount:{domain}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dclogin_encodes_what_delta_chat_would_misread() {
        assert_eq!(
            dclogin_url("abcde1234@_chat.localhost", "Pw1-._~"),
            "dclogin:abcde1234@_chat.localhost?p=Pw1-._~&v=1"
        );
        assert_eq!(
            dclogin_url("a/b?c@x.org", "a+b&c=d %é"),
            "dclogin:a%2Fb%3Fc@x.org?p=a%2Bb%26c%3Dd%20%25%C3%A9&v=1"
        );
    }

    #[test]
    fn proxy_urls_are_what_delta_chat_reads_as_a_proxy() {
        assert_eq!(
            proxy_url("_chat.localhost", 443, None),
            "https://_chat.localhost:443"
        );
        assert_eq!(
            proxy_url("chat.example", 443, Some(("abc@chat.example", "p@:/?#%w"))),
            "https://abc%40chat.example:p%40%3A%2F%3F%23%25w@chat.example:443"
        );
    }

    #[test]
    fn dcaccount_forms_are_those_delta_chat_decodes() {
        assert_eq!(
            dcaccount_uri("_chat.localhost", InviteForm::New),
            "dcaccount:https://_chat.localhost/new"
        );
        assert_eq!(
            dcaccount_uri("_chat.localhost", InviteForm::Domain),
            "dcaccount:_chat.localhost"
        );
    }
}
