//! The built-in web page (`backend: "builtin:status"`): what runs here and
//! how to connect. HTTP/1.1 only, one request per connection, bounded in
//! size and time; it never reads more than the request head.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::Shared;
use crate::http_head::read_head;

/// Serve one request; returns (bytes read, bytes written).
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, shared: &Shared) -> (u64, u64) {
    let head = match read_head(s).await {
        Ok(h) => h,
        Err(n) => return (n as u64, 0),
    };
    let up = head.len() as u64;
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = match (method, path) {
        ("GET" | "HEAD", "/") => ("200 OK", page(shared)),
        ("GET" | "HEAD", _) => ("404 Not Found", "not found\n".to_owned()),
        _ => ("405 Method Not Allowed", "only GET and HEAD\n".to_owned()),
    };
    let ctype = if status.starts_with("200") {
        "text/html; charset=utf-8"
    } else {
        "text/plain"
    };
    let mut resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        resp.extend_from_slice(body.as_bytes());
    }
    let _ = s.write_all(&resp).await;
    let _ = s.shutdown().await;
    (up, resp.len() as u64)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn page(shared: &Shared) -> String {
    let cfg = &shared.config;
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=utf-8><title>frontdoor</title></head><body>\n<h1>frontdoor</h1>\n<p>A TLS front door for mail: IMAP, SMTP submission and the web on one port, routed by ALPN.</p>\n<h2>Listeners</h2><ul>\n",
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
    let _ = write!(
        h,
        "<h2>Connecting</h2>\n<p>Mail clients: IMAP and SMTP server = this host, port {port}, security SSL/TLS. Delta Chat sends ALPN by itself on this port. A self-signed certificate needs \"accept invalid certificates\" in the client.</p>\n<pre>openssl s_client -connect HOST:{port} -alpn imap -quiet</pre>\n</body></html>\n"
    );
    h
}
