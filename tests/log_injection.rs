//! Text a client chooses never forges a log line or reaches a PROXY header
//! unchecked: a ClientHello built by hand whose SNI holds a line break and a
//! whole forged log line, sent to a passthrough route (by ALPN and by SNI
//! route) and to a terminated one. The name is checked as rustls checks it
//! on both paths, so the client gets `illegal_parameter`, the log has one
//! line for the connection, no backend sees the name, and well-formed
//! clients on the same port are still passed through with their SNI in the
//! PROXY header.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use frontdoor::proxy_protocol as pp;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a forged line would look like, starting a line of its own.
const FORGED: &str =
    "2030-01-01T00:00:00.000000Z  INFO frontdoor::frontdoor::conn: connection closed id=forged";

/// A ClientHello from rustls offering `alpn`, whose SNI is then replaced by
/// `sni` (a placeholder of the same length is asked for, so no length field
/// changes): the exact bytes a client could send.
fn hello_with_sni(sni: &str, alpn: &[&str]) -> Vec<u8> {
    // Labels of at most 60 characters, no trailing dot: a valid DNS name.
    let placeholder: String = (0..sni.len())
        .map(|i| {
            if i % 61 == 60 && i + 1 < sni.len() {
                '.'
            } else {
                'p'
            }
        })
        .collect();
    let mut cfg = (*client_config(alpn, None, Tls::V13)).clone();
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    let name = ServerName::try_from(placeholder.clone()).unwrap();
    let mut c = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut hello = Vec::new();
    c.write_tls(&mut hello).unwrap();
    let at = hello
        .windows(sni.len())
        .position(|w| w == placeholder.as_bytes())
        .expect("the placeholder name in the ClientHello");
    hello[at..at + sni.len()].copy_from_slice(sni.as_bytes());
    hello
}

/// Send `hello`, read until the server closes (bounded by `T`), and return
/// the alert description it sent, if it sent one.
async fn send_hello(addr: SocketAddr, hello: &[u8]) -> Option<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(hello).await.unwrap();
    let mut got = Vec::new();
    // Not closed within `T`: no alert either (checked by the caller).
    let _ = tokio::time::timeout(T, s.read_to_end(&mut got)).await;
    // A plaintext alert record: 21, version, length 2, level, description.
    match got.as_slice() {
        [21, 3, _, 0, 2, 2, d, ..] => Some(*d),
        _ => None,
    }
}

/// A close line as the text format writes it: a timestamp, the level,
/// then the event (rustls' own warning quotes the name, escaped, further
/// on its line; that is not a line of its own).
fn close_line(l: &str) -> bool {
    l.split_once("  INFO ").is_some_and(|(stamp, rest)| {
        !stamp.contains(' ') && rest.starts_with("frontdoor::frontdoor::conn: connection closed ")
    })
}

fn proxy_authority(raw: &[u8]) -> Option<String> {
    let pp::Decoded::Complete { header, .. } = pp::decode(raw).unwrap() else {
        panic!("incomplete PROXY header");
    };
    header.tlvs.iter().find_map(|(t, v)| {
        (*t == pp::PP2_TYPE_AUTHORITY).then(|| String::from_utf8_lossy(v).into_owned())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newline_in_a_passthrough_sni_gives_one_log_line_and_reaches_no_backend() {
    let dir = tempfile::tempdir().unwrap();
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    let web = CaptureBackend::start("web", Expect::V2).await;
    let cfg = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\n    sni_routes: {{ www.example.org: web }}\nroutes:\n  imap: {{ alpn: [imap], backend: \"{}\" }}\n  web: {{ alpn: [h2, \"http/1.1\"], backend: \"{}\", mode: passthrough, proxy_protocol: v2 }}\n",
        imap.addr, web.addr
    );
    let p = dir.path().join("f.yaml");
    std::fs::write(&p, cfg).unwrap();
    // The text format is what is under test here: a client's bytes must
    // not start a line of it (JSON escapes by construction).
    let mut fd = Frontdoor::launch(Launch::new(["serve", "--config"]).arg(&p).text_log(), 1);
    let addr = fd.addrs[0];
    let evil = format!("www.example.org\n{FORGED}");

    // Passthrough by ALPN, by SNI route (no ALPN), and a terminated route.
    let cases: [(&str, &[&str]); 3] = [
        ("passthrough by ALPN", &["h2"]),
        ("passthrough by SNI route", &[]),
        ("terminated (imap)", &["imap"]),
    ];
    let mut alerts = Vec::new();
    for (what, alpn) in cases {
        alerts.push((what, send_hello(addr, &hello_with_sni(&evil, alpn)).await));
    }
    // A well-formed passthrough client after them: its SNI is in the header.
    let good = hello_with_sni("www.example.org", &["h2"]);
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&good).await.unwrap();
    let mut greeting = [0u8; 11];
    tokio::time::timeout(T, s.read_exact(&mut greeting))
        .await
        .expect("the passthrough backend answers")
        .unwrap();
    assert_eq!(&greeting, b"web ready\r\n");
    drop(s);

    // One close line per connection, 4 in all, and the last is the good one.
    // log-text-ok: the lines of the text format are what is under test.
    let closed = |fd: &Frontdoor| fd.logs().lines().filter(|l| close_line(l)).count();
    poll_until_async(T, || closed(&fd) >= 4).await;
    let logs = fd.logs();
    // The forged text never starts a line, and no line holds it unescaped.
    for l in logs.lines() {
        assert!(!l.starts_with("2030-01-01"), "forged line:\n{logs}");
        assert!(!l.contains("id=forged") || l.contains("\\n"), "{l}");
    }
    assert_eq!(closed(&fd), 4, "close lines:\n{logs}");
    for (what, alert) in alerts {
        // rustls' answer to a server name that is not a DNS name.
        assert_eq!(alert, Some(47), "{what}: illegal_parameter");
    }
    // log-text-ok: the lines of the text format are what is under test.
    let refused = logs
        .lines()
        .filter(|l| close_line(l) && l.contains("ServerNameMustContainOneHostName"))
        .count();
    // log-text-ok: the lines of the text format are what is under test.
    let ids: std::collections::BTreeSet<_> = logs
        .lines()
        .filter(|l| close_line(l))
        // log-text-ok: the text format's `id=` field.
        .filter_map(|l| field(l, "id"))
        .collect();
    assert_eq!(ids.len(), 4, "one close line per connection: {ids:?}");
    assert_eq!(refused, 3, "a clear reason for each refusal:\n{logs}");

    // No backend got the name; the passthrough one got exactly the good
    // client, with its DNS name as the authority TLV.
    assert!(imap.headers().is_empty(), "the imap backend was reached");
    let headers = web.headers();
    assert_eq!(headers.len(), 1, "passthrough connections: {headers:?}");
    for h in &headers {
        assert!(
            !String::from_utf8_lossy(&h.header).contains("forged"),
            "the forged name in a PROXY header"
        );
    }
    assert_eq!(
        proxy_authority(&headers[0].header).as_deref(),
        Some("www.example.org")
    );
    assert!(fd.child.try_wait().unwrap().is_none(), "frontdoor exited");
}
