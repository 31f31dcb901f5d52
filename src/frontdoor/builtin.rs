//! The built-in status page (`backend: "builtin:status"`): what runs here
//! and how to connect, at `/`, served by the same hyper server as the
//! chatmail web side (`web::serve`), with the account page under
//! `/account` when it is on. The page is made when the connection is
//! accepted (a kept-alive connection sees the figures of that moment).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::Shared;

use crate::web::markup::escape as esc;

/// The status page's HTML as things stand.
pub fn page(shared: &Shared) -> String {
    let cfg = &shared.config;
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=utf-8><title>Mail server</title></head><body>\n<h1>Mail server</h1>\n<p>IMAP, SMTP submission and the web on one port, routed by ALPN.</p>\n<h2>Listeners</h2><ul>\n",
    );
    for l in &cfg.listeners {
        let what = match l.route {
            Some(r) => format!("everything to route <b>{}</b>", esc(&cfg.routes[r].name)),
            None => {
                let alpn: Vec<String> = cfg
                    .listener_alpn(l)
                    .iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                format!("ALPN {}", esc(&alpn.join(", ")))
            }
        };
        let _ = writeln!(h, "<li>{} — {what}</li>", l.bind);
    }
    h.push_str("</ul><h2>Routes</h2><ul>\n");
    for r in &cfg.routes {
        let _ = writeln!(
            h,
            "<li><b>{}</b>: ALPN [{}] → {}</li>",
            esc(&r.name),
            esc(&r.alpn.join(", ")),
            esc(&r.backend.to_string())
        );
    }
    h.push_str("</ul><h2>Certificates</h2><ul>\n");
    for c in shared.resolver.current().certs() {
        let _ = writeln!(
            h,
            "<li>{} (expires at unix time {})</li>",
            esc(&c.meta.names.join(", ")),
            c.meta.not_after
        );
    }
    h.push_str("</ul>\n");
    if let Some(a) = &shared.auth {
        let _ = writeln!(
            h,
            "<p>Pinned client keys: {}.</p>",
            a.registry().current().len()
        );
    }
    let _ = writeln!(
        h,
        "<p>Open connections: {}.</p>",
        shared.stats.open.load(Ordering::Relaxed)
    );
    let port = cfg.listeners.first().map(|l| l.bind.port()).unwrap_or(443);
    if shared.account_page.is_some() {
        h.push_str("<p><a href=\"/account\">Manage your device keys</a> (log in with your mail address and password).</p>\n");
    }
    let _ = write!(
        h,
        "<h2>Connecting</h2>\n<p>Mail clients: IMAP and SMTP server = this host, port {port}, security SSL/TLS. Delta Chat sends ALPN by itself on this port. A self-signed certificate needs \"accept invalid certificates\" in the client.</p>\n<pre>openssl s_client -connect HOST:{port} -alpn imap -quiet</pre>\n</body></html>\n"
    );
    h
}
