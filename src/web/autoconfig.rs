//! Thunderbird autoconfig (`/.well-known/autoconfig/mail/config-v1.1.xml`,
//! `/mail/config-v1.1.xml`) and the MTA-STS policy
//! (`/.well-known/mta-sts.txt`) of the relay, made once from the config.
//!
//! The XML follows chatmail's `autoconfig.xml.j2` (username
//! `%EMAILADDRESS%`, `password-cleartext`) but lists exactly the ports this
//! config serves with TLS: every front door listener that routes ALPN
//! `imap` (or `smtp`) to a terminated route, and every listener whose fixed
//! route is an IMAP (or SMTP) route, all as `SSL`. The bundled servers'
//! own `mail.imap`/`mail.submission` sockets are not listed: they speak
//! plaintext behind a PROXY header and refuse clients, and frontdoor offers
//! no STARTTLS for IMAP or submission, so 143/587 appear nowhere.
//! Delta Chat core (`src/configure/auto_mozilla.rs`) reads `type`,
//! `hostname`, `port`, `socketType` and `username` of each
//! `incomingServer`/`outgoingServer`, in document order.

use std::fmt::Write as _;

use super::markup::escape;
use crate::config::{Config, Protocol};

/// The TLS ports clients may use, per protocol, in the order listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServedPorts {
    pub imap: Vec<u16>,
    pub smtp: Vec<u16>,
}

/// Put the protocol's standard implicit-TLS port first (chatmail lists
/// 993/465 first), then the others in ascending order, each once.
fn order(mut ports: Vec<u16>, standard: u16) -> Vec<u16> {
    ports.sort_unstable_by_key(|p| (*p != standard, *p));
    ports.dedup();
    ports
}

/// The ports `cfg` serves IMAP and SMTP on; `bound[i]` is listener `i`'s
/// actual port (a configured port 0 resolved).
pub fn served_ports(cfg: &Config, bound: &[u16]) -> ServedPorts {
    let mut imap = Vec::new();
    let mut smtp = Vec::new();
    for (i, l) in cfg.listeners.iter().enumerate() {
        let port = bound.get(i).copied().unwrap_or(l.bind.port());
        if port == 0 {
            continue;
        }
        match l.route {
            Some(r) => match cfg.routes[r].protocol {
                Protocol::Imap => imap.push(port),
                Protocol::Smtp => smtp.push(port),
                Protocol::Http | Protocol::Raw => {}
            },
            None => {
                let has = |alpn: &str| {
                    cfg.routes
                        .iter()
                        .any(|r| !r.passthrough && r.alpn.iter().any(|a| a == alpn))
                };
                if has("imap") {
                    imap.push(port);
                }
                if has("smtp") {
                    smtp.push(port);
                }
            }
        }
    }
    ServedPorts {
        imap: order(imap, 993),
        smtp: order(smtp, 465),
    }
}

/// The autoconfig document for `domain` (which is also the server name).
pub fn xml(domain: &str, ports: &ServedPorts) -> String {
    let d = escape(domain);
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\n<clientConfig version=\"1.1\">\n  <emailProvider id=\"{d}\">\n    <domain>{d}</domain>\n    <displayName>{d} chatmail</displayName>\n    <displayShortName>{d}</displayShortName>\n"
    );
    let server = |x: &mut String, tag: &str, typ: &str, port: u16| {
        let _ = write!(
            x,
            "    <{tag} type=\"{typ}\">\n      <hostname>{d}</hostname>\n      <port>{port}</port>\n      <socketType>SSL</socketType>\n      <authentication>password-cleartext</authentication>\n      <username>%EMAILADDRESS%</username>\n    </{tag}>\n"
        );
    };
    for p in &ports.imap {
        server(&mut x, "incomingServer", "imap", *p);
    }
    for p in &ports.smtp {
        server(&mut x, "outgoingServer", "smtp", *p);
    }
    x.push_str("  </emailProvider>\n</clientConfig>\n");
    x
}

/// The MTA-STS policy served (kept beside the `_mta-sts` record whose id
/// is made from it).
pub use crate::mail::dns_records::mta_sts_policy as mta_sts;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(yaml: &str) -> Config {
        Config::parse(Path::new("/tmp/f.yaml"), yaml).unwrap()
    }

    #[test]
    fn alpn_listener_gives_443_for_both() {
        let c = cfg("listeners:\n  - bind: \"0.0.0.0:443\"\nroutes:\n  imap: { alpn: [imap], backend: \"127.0.0.1:1143\" }\n  smtp: { alpn: [smtp], backend: \"127.0.0.1:1587\" }\n  web: { alpn: [\"http/1.1\"], backend: \"builtin:status\" }\n");
        let p = served_ports(&c, &[443]);
        assert_eq!(p.imap, vec![443]);
        assert_eq!(p.smtp, vec![443]);
    }

    #[test]
    fn fixed_listeners_add_993_and_465_first() {
        let c = cfg("listeners:\n  - bind: \"0.0.0.0:443\"\n  - bind: \"[::]:443\"\n  - { bind: \"0.0.0.0:993\", route: imap }\n  - { bind: \"0.0.0.0:465\", route: smtp }\nroutes:\n  imap: { alpn: [imap], backend: \"127.0.0.1:1143\" }\n  smtp: { alpn: [smtp], backend: \"127.0.0.1:1587\" }\n");
        let p = served_ports(&c, &[443, 443, 993, 465]);
        assert_eq!(p.imap, vec![993, 443]);
        assert_eq!(p.smtp, vec![465, 443]);
    }

    #[test]
    fn xml_escapes_and_lists_in_order() {
        let x = xml(
            "a&b",
            &ServedPorts {
                imap: vec![993, 443],
                smtp: vec![443],
            },
        );
        assert!(x.contains("<domain>a&amp;b</domain>"));
        let i993 = x.find("<port>993</port>").unwrap();
        let i443 = x.find("<port>443</port>").unwrap();
        assert!(i993 < i443);
        assert_eq!(x.matches("<outgoingServer type=\"smtp\">").count(), 1);
    }
}
