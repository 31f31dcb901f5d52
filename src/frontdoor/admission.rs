//! The admission decision: from the facts of a finished handshake (ALPN,
//! SNI), the client's key, the config and what the account lookup found,
//! the route this connection takes or why it is refused. Pure: no I/O, no
//! clock, no metrics; the connection acts on the answer.

use crate::auth::ClientKey;
use crate::config::{ClientAuthMode, Config, Listener, UnknownKey};

use super::close::CloseReason;

/// What the handshake established that routing looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    pub alpn: Option<&'a [u8]>,
    pub sni: Option<&'a str>,
}

/// What the bundled backends' accounts say of the pinned key's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCheck {
    /// Not looked up: no pinned key, or no bundled accounts here.
    NotChecked,
    Exists,
    Missing,
    /// The accounts could not be read (why).
    Unreadable(String),
}

/// Why a connection is refused after its handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A key not in the registry under `unknown_key: reject` (only on a
    /// resumed session: a full handshake fails in the verifier).
    UnknownKey,
    AccountMissing,
    AccountsUnreadable(String),
    NoRoute,
    /// The route (or listener) requires a pinned key and there is none.
    /// The route was chosen, and the connection counts as routed to it.
    KeyRequired {
        route: usize,
    },
}

impl From<Refusal> for CloseReason {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::UnknownKey => Self::UnknownKeyResumed,
            Refusal::AccountMissing => Self::AccountMissing,
            Refusal::AccountsUnreadable(_) => Self::AccountsUnreadable,
            Refusal::NoRoute => Self::NoRoute,
            Refusal::KeyRequired { .. } => Self::KeyRequired,
        }
    }
}

/// The route for this connection, or why it is refused. `unknown_key` is
/// the policy in force, `None` without client keys.
pub fn decide(
    cfg: &Config,
    l: &Listener,
    facts: Facts<'_>,
    key: &ClientKey,
    unknown_key: Option<UnknownKey>,
    account: &AccountCheck,
) -> Result<usize, Refusal> {
    if matches!(key, ClientKey::Unknown(_)) && unknown_key == Some(UnknownKey::Reject) {
        return Err(Refusal::UnknownKey);
    }
    match account {
        AccountCheck::NotChecked | AccountCheck::Exists => {}
        AccountCheck::Missing => return Err(Refusal::AccountMissing),
        AccountCheck::Unreadable(e) => return Err(Refusal::AccountsUnreadable(e.clone())),
    }
    let route = choose_route(cfg, l, facts.alpn, facts.sni).ok_or(Refusal::NoRoute)?;
    let required = cfg.routes[route].client_auth == ClientAuthMode::Required
        || l.client_auth == ClientAuthMode::Required;
    if required && !matches!(key, ClientKey::Pinned(_)) {
        return Err(Refusal::KeyRequired { route });
    }
    Ok(route)
}

/// Route for a finished handshake: fixed route, else ALPN, else SNI, else
/// the listener default (DESIGN §2).
pub fn choose_route(
    cfg: &Config,
    l: &Listener,
    alpn: Option<&[u8]>,
    sni: Option<&str>,
) -> Option<usize> {
    if let Some(r) = l.route {
        return Some(r);
    }
    if let Some(a) = alpn {
        // rustls only negotiates values this listener offered, all of which
        // belong to exactly one route.
        return cfg
            .routes
            .iter()
            .position(|r| r.alpn.iter().any(|x| x.as_bytes() == a));
    }
    if let Some(name) = sni {
        if let Some(r) = l.sni_routes.get(&name.to_ascii_lowercase()) {
            return Some(*r);
        }
    }
    l.default_route
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Identity;
    use std::path::Path;
    use std::sync::Arc;

    #[test]
    fn route_order_is_fixed_alpn_sni_default() {
        let cfg = Config::parse(
            Path::new("t.yaml"),
            r#"
listeners:
  - bind: "127.0.0.1:1"
    sni_routes: { IMAP.example.org: imap }
  - bind: "127.0.0.1:2"
    route: smtp
routes:
  imap: { alpn: [imap], backend: "127.0.0.1:10" }
  smtp: { alpn: [smtp], backend: "127.0.0.1:11" }
  web: { alpn: [h2, "http/1.1"], backend: "127.0.0.1:12" }
"#,
        )
        .unwrap();
        let name = |r: Option<usize>| r.map(|i| cfg.routes[i].name.as_str());
        let l0 = &cfg.listeners[0];
        assert_eq!(
            name(choose_route(
                &cfg,
                l0,
                Some(b"smtp"),
                Some("imap.example.org")
            )),
            Some("smtp")
        );
        assert_eq!(name(choose_route(&cfg, l0, Some(b"h2"), None)), Some("web"));
        assert_eq!(
            name(choose_route(&cfg, l0, None, Some("imap.EXAMPLE.org"))),
            Some("imap")
        );
        assert_eq!(
            name(choose_route(&cfg, l0, None, Some("www.example.org"))),
            Some("web")
        );
        assert_eq!(name(choose_route(&cfg, l0, None, None)), Some("web"));
        assert_eq!(
            name(choose_route(&cfg, &cfg.listeners[1], None, None)),
            Some("smtp")
        );
    }

    #[test]
    fn refusals_in_order() {
        let cfg = Config::parse(
            Path::new("t.yaml"),
            r#"
listeners:
  - bind: "127.0.0.1:1"
routes:
  imap: { alpn: [imap], backend: "127.0.0.1:10", client_auth: required }
  smtp: { alpn: [smtp], backend: "127.0.0.1:11" }
client_auth: { registry: keys.yaml, unknown_key: anonymous }
"#,
        )
        .unwrap();
        let l = &cfg.listeners[0];
        let imap = Facts {
            alpn: Some(b"imap"),
            sni: None,
        };
        let smtp = Facts {
            alpn: Some(b"smtp"),
            sni: None,
        };
        let pinned = ClientKey::Pinned(Arc::new(Identity {
            account: "alice".into(),
            login: "alice".into(),
            key_name: "laptop".into(),
            fingerprint: [7; 32],
            imap_preauth: true,
        }));
        let unknown = ClientKey::Unknown("ab".into());
        let anon = Some(UnknownKey::Anonymous);
        let ok = AccountCheck::Exists;
        let none = AccountCheck::NotChecked;

        assert_eq!(decide(&cfg, l, imap, &pinned, anon, &ok), Ok(0));
        assert_eq!(
            decide(&cfg, l, smtp, &ClientKey::Absent, anon, &none),
            Ok(1)
        );
        // A route that requires a key: chosen, then refused without one.
        assert_eq!(
            decide(&cfg, l, imap, &ClientKey::Absent, anon, &none),
            Err(Refusal::KeyRequired { route: 0 })
        );
        assert_eq!(
            decide(&cfg, l, imap, &unknown, anon, &none),
            Err(Refusal::KeyRequired { route: 0 })
        );
        // An unknown key under `reject` is refused before anything else.
        assert_eq!(
            decide(&cfg, l, smtp, &unknown, Some(UnknownKey::Reject), &none),
            Err(Refusal::UnknownKey)
        );
        // The account check comes before routing.
        assert_eq!(
            decide(
                &cfg,
                l,
                Facts::default(),
                &pinned,
                anon,
                &AccountCheck::Missing
            ),
            Err(Refusal::AccountMissing)
        );
        assert_eq!(
            decide(
                &cfg,
                l,
                imap,
                &pinned,
                anon,
                &AccountCheck::Unreadable("denied".into())
            ),
            Err(Refusal::AccountsUnreadable("denied".into()))
        );
        assert_eq!(
            decide(&cfg, l, Facts::default(), &pinned, anon, &ok),
            Err(Refusal::NoRoute)
        );
        assert_eq!(
            CloseReason::from(Refusal::NoRoute).to_string(),
            "no route for this connection (no ALPN, no SNI route, no default_route)"
        );
    }
}
