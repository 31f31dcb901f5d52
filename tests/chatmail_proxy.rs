//! The HTTPS CONNECT entry (`listeners[].https_connect`) with the real
//! binary: a tunnel to frontdoor's own IMAP and SMTP served in-process
//! (inner TLS, ALPN routing, logs with the real client address), the
//! refusals (403 for a foreign host, another port, an IP literal, a tunnel
//! inside a tunnel; 407 without or with wrong credentials), the web route
//! unchanged for other requests, the per-address limit counting tunnels,
//! greetings without a product name; and two Delta Chat 2.65 accounts
//! chatting through it as their `https://` proxy, with every ClientHello
//! that crossed the wire recorded and checked for mail ALPNs.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream as StdTcp, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const DOMAIN: &str = "chat.example";
const USER: &str = "proxy1234@chat.example";
const PASSWORD: &str = "a long proxy password";

/// A relay for DOMAIN: listener 0 the 443-style one (ALPN, web route with
/// CONNECT), listener 1 a 993-style fixed IMAP route.
fn config(dir: &Path, auth: &str, per_ip: usize) -> PathBuf {
    config_with(dir, auth, per_ip, "")
}

fn config_with(dir: &Path, auth: &str, per_ip: usize, extra: &str) -> PathBuf {
    write_cert(dir, "chat", &[DOMAIN, &format!("mta-sts.{DOMAIN}")]);
    let yaml = format!(
        r#"
listeners:
  - bind: "127.0.0.1:0"
    default_route: web
    https_connect: {{ auth: {auth} }}
  - bind: "127.0.0.1:0"
    route: imap
tls:
  certificates:
    - cert: chat.crt
      key: chat.key
routes:
  imap: {{ alpn: [imap], backend: "unix:imap.sock" }}
  smtp: {{ alpn: [smtp], backend: "unix:submission.sock" }}
  web: {{ alpn: ["http/1.1"], backend: "builtin:chatmail", proxy_protocol: none }}
limits: {{ per_ip_connections: {per_ip} }}
mail:
  domains: ["{DOMAIN}"]
  data_dir: .
  imap: {{ listen: "unix:imap.sock" }}
  submission: {{ listen: "unix:submission.sock" }}
  chatmail: {{}}
{extra}"#
    );
    let p = dir.join("frontdoor.yaml");
    std::fs::write(&p, yaml).unwrap();
    p
}

fn tls(alpn: &[&str]) -> tokio_rustls::TlsConnector {
    tokio_rustls::TlsConnector::from(client_config(alpn, None, Tls::V13))
}

fn name() -> ServerName<'static> {
    ServerName::try_from(DOMAIN.to_string()).unwrap()
}

/// Read until a blank line (bounded): a response head.
async fn head<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    let _ = tokio::time::timeout(T, async {
        while !out.ends_with(b"\r\n\r\n") && out.len() < 4096 {
            match s.read(&mut b).await {
                Ok(1) => out.push(b[0]),
                _ => break,
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

fn basic(user: &str, pw: &str) -> String {
    let t = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
    format!("Proxy-Authorization: Basic {t}\r\n")
}

/// The outer TLS connection (no ALPN, SNI DOMAIN) with `request` sent;
/// the stream and the response head.
async fn connect_request(
    addr: SocketAddr,
    request: &str,
) -> (tokio_rustls::client::TlsStream<TcpStream>, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut s = tokio::time::timeout(T, tls(&[]).connect(name(), tcp))
        .await
        .unwrap()
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    let h = head(&mut s).await;
    (s, h)
}

fn connect_line(target: &str, auth: &str) -> String {
    format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n")
}

/// A tunnel to `target` with the account's credentials, inner TLS with
/// `alpn` done.
async fn tunnel<S>(outer: S, alpn: &[&str]) -> tokio_rustls::client::TlsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::time::timeout(T, tls(alpn).connect(name(), outer))
        .await
        .expect("inner handshake in time")
        .expect("inner handshake")
}

async fn open_tunnel(
    addr: SocketAddr,
    target: &str,
    alpn: &[&str],
) -> tokio_rustls::client::TlsStream<tokio_rustls::client::TlsStream<TcpStream>> {
    let (outer, h) = connect_request(addr, &connect_line(target, &basic(USER, PASSWORD))).await;
    assert_eq!(h, "HTTP/1.1 200 Connection established\r\n\r\n");
    tunnel(outer, alpn).await
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, line: &str, tag: &str) -> String {
    s.write_all(line.as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    let mut all = String::new();
    for _ in 0..50 {
        let l = read_line(s).await.unwrap();
        all.push_str(&l);
        if l.starts_with(tag) || l.is_empty() {
            break;
        }
    }
    all
}

/// What must not appear before login: the product's name or a version.
fn assert_neutral(what: &str, text: &str) {
    let lower = text.to_ascii_lowercase();
    assert!(
        !lower.contains("frontdoor"),
        "{what} names the product: {text:?}"
    );
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        !text.contains(version),
        "{what} carries the version: {text:?}"
    );
}

#[tokio::test]
async fn a_tunnel_reaches_the_bundled_imap_and_smtp_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let fd = Frontdoor::start(&config(dir.path(), "password", 100), 2);
    let (web, imaps) = (fd.addrs[0], fd.addrs[1]);

    // ALPN imap inside a tunnel to the 443-style listener.
    let mut s = open_tunnel(web, &format!("{DOMAIN}:{}", web.port()), &["imap"]).await;
    let greeting = read_line(&mut s).await.unwrap();
    assert!(greeting.starts_with("* OK"), "{greeting}");
    assert_neutral("IMAP greeting", &greeting);
    let caps = command(&mut s, "a1 CAPABILITY\r\n", "a1 ").await;
    assert!(
        caps.contains("IMAP4rev1") && caps.contains("a1 OK"),
        "{caps}"
    );
    assert_neutral("pre-auth CAPABILITY", &caps);
    let id = command(&mut s, "a2 ID NIL\r\n", "a2 ").await;
    assert!(id.contains("a2 OK"), "{id}");
    assert_neutral("ID reply", &id);
    // The proxy login created the account (chatmail): it logs in inside.
    let login = command(
        &mut s,
        &format!("a3 LOGIN {USER} \"{PASSWORD}\"\r\n"),
        "a3 ",
    )
    .await;
    assert!(login.contains("a3 OK"), "{login}");
    let _ = command(&mut s, "a4 LOGOUT\r\n", "a4 ").await;
    drop(s);

    // No ALPN inside a tunnel to the 993-style listener: its fixed route.
    let mut s = open_tunnel(web, &format!("{DOMAIN}:{}", imaps.port()), &[]).await;
    let greeting = read_line(&mut s).await.unwrap();
    assert!(greeting.starts_with("* OK"), "{greeting}");
    drop(s);

    // SMTP by ALPN, through a target named by the certificate.
    let mut s = open_tunnel(web, &format!("MTA-STS.{DOMAIN}:{}", web.port()), &["smtp"]).await;
    let greeting = read_line(&mut s).await.unwrap();
    assert!(greeting.starts_with("220 "), "{greeting}");
    assert_neutral("SMTP greeting", &greeting);
    let ehlo = command(&mut s, "EHLO client.example\r\n", "250 ").await;
    assert!(ehlo.contains("250 "), "{ehlo}");
    assert_neutral("EHLO reply", &ehlo);
    drop(s);

    // Each inner connection has its own close line: the real client
    // address, the route its inner ALPN chose, `via` its outer connection,
    // whose own line says the tunnel closed.
    let log = fd.events();
    for (alpn, route, listener) in [("imap", "imap", 0), ("-", "imap", 1), ("smtp", "smtp", 0)] {
        let inner = log
            .wait_event(T, |e| {
                is_close(e)
                    && str_field(e, "via") != "-"
                    && str_field(e, "alpn") == alpn
                    && num_field(e, "listener") == listener
            })
            .await
            .unwrap_or_else(|| panic!("no inner close line for {alpn}: {}", log.text()));
        assert_eq!(str_field(&inner, "route"), route);
        assert!(str_field(&inner, "client").starts_with("127.0.0.1:"));
        let via = str_field(&inner, "via");
        let outer = log
            .wait_event(T, |e| {
                closed_with(e, "tunnel_closed") && str_field(e, "id") == via
            })
            .await
            .unwrap_or_else(|| panic!("no outer close line {via}: {}", log.text()));
        assert!(num_field(&outer, "bytes_up") > 0, "{outer}");
        assert_eq!(str_field(&outer, "client"), str_field(&inner, "client"));
    }
    assert!(no_panic(log));
}

#[tokio::test]
async fn connect_is_refused_for_what_is_not_ours_and_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let fd = Frontdoor::start(&config(dir.path(), "password", 100), 2);
    let web = fd.addrs[0];
    let auth = basic(USER, PASSWORD);
    let port = web.port();
    // A port nothing of ours listens on.
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (target, why) in [
        (format!("other.example:{port}"), "another host"),
        (format!("{DOMAIN}:{free}"), "another port"),
        (format!("127.0.0.1:{port}"), "an IP literal"),
        (format!("[::1]:{port}"), "an IPv6 literal"),
    ] {
        let (_, h) = connect_request(web, &connect_line(&target, &auth)).await;
        assert!(h.starts_with("HTTP/1.1 403 "), "{why}: {h}");
        let ev = fd
            .events()
            .wait_event(T, |e| {
                str_field(e, "message") == "CONNECT refused"
                    && str_field(e, "destination") == target
            })
            .await
            .unwrap_or_else(|| panic!("no log line for {target}: {}", fd.logs()));
        assert_eq!(num_field(&ev, "status"), 403);
    }

    let target = format!("{DOMAIN}:{port}");
    let (_, h) = connect_request(web, &connect_line(&target, "")).await;
    assert!(h.starts_with("HTTP/1.1 407 "), "{h}");
    assert!(h.contains("\r\nProxy-Authenticate: Basic"), "{h}");
    let (_, h) = connect_request(web, &connect_line(&target, &basic(USER, "wrong password"))).await;
    assert!(h.starts_with("HTTP/1.1 407 "), "{h}");

    // A target the client chose goes into the log escaped.
    let (_, h) = connect_request(web, "CONNECT ev\u{1b}[31mil:443 HTTP/1.1\r\n\r\n").await;
    assert!(h.starts_with("HTTP/1.1 400 "), "{h}");
    fd.events()
        .wait_event(T, |e| str_field(e, "destination") == "ev\\u{1b}[31mil:443")
        .await
        .unwrap_or_else(|| panic!("target not escaped: {}", fd.logs()));

    // A tunnel inside a tunnel.
    let mut inner = open_tunnel(web, &target, &[]).await;
    inner
        .write_all(connect_line(&target, &auth).as_bytes())
        .await
        .unwrap();
    let h = head(&mut inner).await;
    assert!(h.starts_with("HTTP/1.1 403 "), "{h}");

    // Anything else on the same listener is the web route as before.
    let (_, h) = connect_request(
        web,
        &format!("GET / HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(h.starts_with("HTTP/1.1 200 "), "{h}");
    assert!(!h.to_ascii_lowercase().contains("frontdoor"), "{h}");
    assert!(no_panic(fd.events()));
}

#[tokio::test]
async fn a_tunnel_counts_against_the_per_address_limit() {
    let dir = tempfile::tempdir().unwrap();
    let fd = Frontdoor::start(&config(dir.path(), "none", 2), 2);
    let web = fd.addrs[0];
    let target = format!("{DOMAIN}:{}", web.port());
    // auth: none takes a CONNECT without credentials.
    let (outer, h) = connect_request(web, &connect_line(&target, "")).await;
    assert_eq!(h, "HTTP/1.1 200 Connection established\r\n\r\n");
    let mut t1 = tunnel(outer, &["imap"]).await;
    assert!(read_line(&mut t1).await.unwrap().starts_with("* OK"));
    let mut direct = connect(web, &["imap"], DOMAIN).await.unwrap();
    assert!(read_line(&mut direct).await.unwrap().starts_with("* OK"));

    // Two open (one tunnelled, one direct): a third is closed at accept.
    let third = connect(web, &["imap"], DOMAIN).await;
    assert!(third.is_err(), "a third connection got through");
    fd.events()
        .wait_event(T, |e| {
            str_field(e, "message")
                == "per-address connection limit reached: closing new connection"
        })
        .await
        .unwrap_or_else(|| panic!("no limit line: {}", fd.logs()));

    // The tunnel's slot is given back when it closes.
    drop(t1);
    let ok = poll_until_with(T, || async {
        match connect(web, &["imap"], DOMAIN).await {
            Ok(mut s) => read_line(&mut s).await.is_ok_and(|l| l.starts_with("* OK")),
            Err(_) => false,
        }
    })
    .await;
    assert!(ok, "no slot after the tunnel closed: {}", fd.logs());
}

// ---- Delta Chat through the proxy, every ClientHello on the wire checked ----

const DC_DOMAIN: &str = "_chat.localhost";
const DC_WITHIN: Duration = Duration::from_secs(60);

/// The ALPN protocols of the ClientHello at the start of `bytes` (one TLS
/// record, RFC 8446 §4.1.2 and RFC 7301 §3.1); `None` if it is not one.
fn client_hello_alpn(bytes: &[u8]) -> Option<Vec<String>> {
    let rec = bytes.get(5..5 + u16::from_be_bytes([*bytes.get(3)?, *bytes.get(4)?]) as usize)?;
    if bytes[0] != 22 || *rec.first()? != 1 {
        return None;
    }
    let mut p = 4 + 2 + 32; // handshake header, legacy_version, random
    p += 1 + *rec.get(p)? as usize; // session id
    p += 2 + u16::from_be_bytes([*rec.get(p)?, *rec.get(p + 1)?]) as usize; // suites
    p += 1 + *rec.get(p)? as usize; // compression
    let ext_end = p + 2 + u16::from_be_bytes([*rec.get(p)?, *rec.get(p + 1)?]) as usize;
    p += 2;
    let mut alpn = Vec::new();
    while p + 4 <= ext_end.min(rec.len()) {
        let ty = u16::from_be_bytes([rec[p], rec[p + 1]]);
        let len = u16::from_be_bytes([rec[p + 2], rec[p + 3]]) as usize;
        let body = rec.get(p + 4..p + 4 + len)?;
        if ty == 16 {
            let mut q = 2;
            while q < body.len() {
                let n = body[q] as usize;
                alpn.push(String::from_utf8_lossy(body.get(q + 1..q + 1 + n)?).into_owned());
                q += 1 + n;
            }
        }
        p += 4 + len;
    }
    Some(alpn)
}

/// The content types of the TLS records in `bytes` (a client's whole
/// stream), as far as they are complete.
fn record_types(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut p = 0;
    while p + 5 <= bytes.len() {
        out.push(bytes[p]);
        p += 5 + u16::from_be_bytes([bytes[p + 3], bytes[p + 4]]) as usize;
    }
    out
}

/// What each client sent, one buffer per connection.
type Wire = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

/// A TCP relay on `listen` to `to` that records what each client sent.
fn recording_relay(listen: &str, to: SocketAddr) -> Wire {
    let l = TcpListener::bind(listen).unwrap_or_else(|e| panic!("{listen}: {e}"));
    let seen: Wire = Arc::default();
    let s2 = seen.clone();
    std::thread::spawn(move || {
        // Delta Chat opens a handful (8 here); the thread ends with the test.
        for c in l.incoming().take(256) {
            let Ok(mut client) = c else { break };
            let Ok(mut server) = StdTcp::connect(to) else {
                continue;
            };
            let rec: Arc<Mutex<Vec<u8>>> = Arc::default();
            s2.lock().unwrap().push(rec.clone());
            let (mut c2, mut s3) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let mut b = [0u8; 16384];
                loop {
                    match client.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            rec.lock().unwrap().extend_from_slice(&b[..n]);
                            if server.write_all(&b[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = server.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s3, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    seen
}

#[test]
fn delta_chat_chats_through_the_https_proxy_with_no_mail_alpn_on_the_wire() {
    let resolved: Vec<_> = (DC_DOMAIN, 443)
        .to_socket_addrs()
        .unwrap_or_else(|e| panic!("{DC_DOMAIN} does not resolve ({e}): see .ci/setup"))
        .collect();
    assert!(
        resolved.iter().any(|a| a.ip().is_loopback()),
        "{resolved:?}"
    );
    let data = tempfile::tempdir().unwrap();
    let relay = Launch::new(["serve", "--chatmail", DC_DOMAIN, "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data.path())
        .start();
    let fd = relay.frontdoor_addrs()[0];
    // The wire: the client reaches the proxy on 443, through the recorder.
    let wire = recording_relay("127.0.0.1:443", fd);

    // A's proxy comes from the relay's invite QR (fresh credentials), B's
    // from a URL with its own account's.
    let invite = Command::new(BIN)
        .args(["chatmail", "invite", "--proxy", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(invite.status.success());
    let qr = String::from_utf8_lossy(&invite.stdout)
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let accounts = data.path().join("dc-accounts");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/deltachat/proxy_two_accounts.py"
    );
    let (a, b) = (
        format!("alice1234@{DC_DOMAIN}"),
        format!("bob123456@{DC_DOMAIN}"),
    );
    let t0 = Instant::now();
    let out = Command::new("python3")
        .arg(script)
        .args([
            &format!("{DC_DOMAIN}:443"),
            DC_DOMAIN,
            &fd.port().to_string(),
            &a,
            "alice's long password",
            &b,
            "bob's long password",
            &accounts.display().to_string(),
            &DC_WITHIN.as_secs().to_string(),
            &qr,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("python3");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("{stderr}\nDelta Chat took {:?}", t0.elapsed());
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}\nrelay:\n{}",
        relay.log.text()
    );
    let line = |prefix: &str| -> String {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{stdout}"))
            .trim()
            .to_owned()
    };
    assert!(line("VERSION ").contains("2.65.0"), "{stdout}");
    // Delta Chat reads the invite as a proxy for the relay's 443.
    assert_eq!(line("QR A "), format!("proxy {DC_DOMAIN} 443"), "{stdout}");
    assert_eq!(line(&format!("PROXY {a} ")), "1", "{stdout}");
    assert_eq!(line(&format!("PROXY {b} ")), "1", "{stdout}");
    assert_eq!(
        line("RECEIVED B "),
        "hello from A through the proxy encrypted"
    );
    assert_eq!(
        line("RECEIVED A "),
        "hello from B through the proxy encrypted"
    );

    // Every connection Delta Chat made crossed the recorder: each starts
    // with a ClientHello offering no ALPN or only http/1.1, and carries no
    // other handshake record after it (the inner TLS is inside the outer
    // one's application data).
    let wire = wire.lock().unwrap();
    assert!(wire.len() >= 2, "{} connections on the wire", wire.len());
    let offered: Vec<_> = wire
        .iter()
        .map(|c| client_hello_alpn(&c.lock().unwrap()))
        .collect();
    eprintln!(
        "{} connections on the wire, ALPN offered: {offered:?}",
        wire.len()
    );
    for (i, c) in wire.iter().enumerate() {
        let bytes = c.lock().unwrap();
        let alpn = client_hello_alpn(&bytes)
            .unwrap_or_else(|| panic!("connection {i} does not start with a ClientHello"));
        assert!(
            alpn.is_empty() || alpn == ["http/1.1"],
            "connection {i} offered ALPN {alpn:?} on the wire"
        );
        let types = record_types(&bytes);
        assert_eq!(
            types.iter().filter(|&&t| t == 22).count(),
            1,
            "connection {i}: {types:?}"
        );
    }
    drop(wire);
    // And frontdoor saw the mail sessions inside tunnels only.
    for alpn in ["imap", "smtp"] {
        relay
            .log
            .wait_event_sync(T, |e| is_close(e) && str_field(e, "alpn") == alpn)
            .unwrap_or_else(|| panic!("no {alpn} session closed: {}", relay.log.text()));
    }
    let events = relay.log.events();
    let mail: Vec<_> = events
        .iter()
        .filter(|e| is_close(e) && ["imap", "smtp"].contains(&str_field(e, "alpn").as_str()))
        .collect();
    for e in mail {
        assert_ne!(
            str_field(e, "via"),
            "-",
            "a mail session outside a tunnel: {e}"
        );
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn the_invite_and_the_status_page_give_a_proxy_url_that_opens_a_tunnel() {
    let data = tempfile::tempdir().unwrap();
    let relay = Launch::new(["serve", "--chatmail", DOMAIN, "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data.path())
        .start();
    let web = relay.frontdoor_addrs()[0];
    let out = Command::new(BIN)
        .args(["chatmail", "invite", "--proxy", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let url = stdout.lines().next().unwrap();
    // The form Delta Chat's QR decoder takes for a proxy: a port, no path.
    let rest = url
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("{url}"));
    let (userinfo, hostport) = rest.rsplit_once('@').unwrap_or_else(|| panic!("{url}"));
    assert_eq!(hostport, format!("{DOMAIN}:443"), "{url}");
    let (user, password) = userinfo.split_once(':').unwrap();
    let (user, password) = (percent_decode(user), percent_decode(password));
    assert!(user.ends_with(&format!("@{DOMAIN}")), "{user}");
    assert!(stdout.contains('\u{2588}'), "no QR code: {stdout}");

    // The URL's credentials open a tunnel (the account is made at this login).
    let target = format!("{DOMAIN}:{}", web.port());
    let (outer, h) = connect_request(web, &connect_line(&target, &basic(&user, &password))).await;
    assert_eq!(h, "HTTP/1.1 200 Connection established\r\n\r\n");
    let mut s = tunnel(outer, &["imap"]).await;
    assert!(read_line(&mut s).await.unwrap().starts_with("* OK"));
    drop(s);

    // The page shows a proxy URL too (fresh credentials each time) and its QR.
    let mut pages = Vec::new();
    for _ in 0..2 {
        let (mut s, h) = connect_request(
            web,
            &format!("GET / HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(h.starts_with("HTTP/1.1 200 "), "{h}");
        let mut body = String::new();
        let _ = tokio::time::timeout(T, s.read_to_string(&mut body)).await;
        let at = body
            .find("Proxy: <code>https://")
            .unwrap_or_else(|| panic!("{body}"));
        let code = &body[at + 13..];
        let code = code[..code.find("</code>").unwrap()].to_owned();
        assert!(
            code.ends_with(&format!("@{DOMAIN}:{}", web.port())),
            "{code}"
        );
        assert_eq!(body.matches("<svg").count(), 2, "{body}");
        assert!(!body.to_ascii_lowercase().contains("frontdoor"), "{body}");
        pages.push(code);
    }
    assert_ne!(
        pages[0], pages[1],
        "the same proxy credentials on two pages"
    );
}

#[tokio::test]
async fn auth_key_takes_a_pinned_key_on_the_outer_tls() {
    let dir = tempfile::tempdir().unwrap();
    let key = make_key(dir.path(), "phone");
    std::fs::write(
        dir.path().join("keys.yaml"),
        format!(
            "keys:\n  - name: phone\n    fingerprint: \"{}\"\n    account: {USER}\n    login: {USER}\n",
            key.fingerprint
        ),
    )
    .unwrap();
    let cfg = config_with(
        dir.path(),
        "key",
        100,
        "client_auth: { registry: keys.yaml, unknown_key: anonymous }\n",
    );
    // The key's account must exist (a pinned key of a missing account is refused).
    let mut add = Command::new(BIN)
        .args(["accounts", "add", USER, "--config"])
        .arg(&cfg)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(PASSWORD.as_bytes())
        .unwrap();
    assert!(add.wait().unwrap().success());
    let fd = Frontdoor::start(&cfg, 2);
    let web = fd.addrs[0];
    let target = format!("{DOMAIN}:{}", web.port());

    // Without a key: refused, credentials or not.
    let (_, h) = connect_request(web, &connect_line(&target, &basic(USER, PASSWORD))).await;
    assert!(h.starts_with("HTTP/1.1 403 "), "{h}");

    // With the pinned key on the outer TLS: the tunnel opens.
    let pem = |p: &Path| std::fs::read(p).unwrap();
    let chain = rustls_pemfile::certs(&mut &pem(&key.cert)[..])
        .map(|c| c.unwrap())
        .collect();
    let k = rustls_pemfile::private_key(&mut &pem(&key.key)[..])
        .unwrap()
        .unwrap();
    let outer_cfg = client_config(&[], Some(ClientCert { chain, key: k }), Tls::V13);
    let mut outer = connect_with(web, outer_cfg, DOMAIN).await.unwrap();
    outer
        .write_all(connect_line(&target, "").as_bytes())
        .await
        .unwrap();
    let h = head(&mut outer).await;
    assert_eq!(h, "HTTP/1.1 200 Connection established\r\n\r\n");
    let mut s = tunnel(outer, &["imap"]).await;
    assert!(read_line(&mut s).await.unwrap().starts_with("* OK"));
    drop(s);
    let outer = fd
        .events()
        .wait_event(T, |e| closed_with(e, "tunnel_closed"))
        .await
        .unwrap_or_else(|| panic!("{}", fd.logs()));
    assert_eq!(str_field(&outer, "key"), "phone");
}
