//! The real binary on loopback: routing by ALPN/SNI/default, the PROXY
//! header as an independent decoder (`ppp`) reads it, relaying, backends
//! down, hostile handshakes, limits and drain.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Setup {
    _dir: tempfile::TempDir,
    fd: Frontdoor,
    imap: CaptureBackend,
    smtp: CaptureBackend,
    web: CaptureBackend,
}

async fn setup(extra_listener: &str, timeouts: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = write_cert(
        dir.path(),
        "server",
        &["localhost", "mail.example.org", "imap.example.org"],
    );
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    let smtp = CaptureBackend::start("smtp", Expect::V1).await;
    let web = CaptureBackend::start("web", Expect::None).await;
    let cfg = format!(
        r#"
listeners:
  - bind: "127.0.0.1:0"
    default_route: web
    sni_routes:
      imap.example.org: imap
{extra_listener}
tls:
  certificates:
    - cert: {c}
      key: {k}
routes:
  imap:
    alpn: [imap]
    backend: "{imap}"
  smtp:
    alpn: [smtp]
    backend: "{smtp}"
    proxy_protocol: v1
  web:
    alpn: [h2, "http/1.1"]
    backend: "{web}"
    proxy_protocol: none
timeouts: {timeouts}
"#,
        c = c.display(),
        k = k.display(),
        imap = imap.addr,
        smtp = smtp.addr,
        web = web.addr,
    );
    let p = dir.path().join("frontdoor.yaml");
    std::fs::write(&p, cfg).unwrap();
    let n = if extra_listener.trim().is_empty() {
        1
    } else {
        2
    };
    let fd = Frontdoor::start(&p, n);
    Setup {
        _dir: dir,
        fd,
        imap,
        smtp,
        web,
    }
}

async fn greeting(addr: SocketAddr, alpn: &[&str], sni: &str) -> String {
    let mut s = connect(addr, alpn, sni).await.unwrap();
    read_line(&mut s).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_alpn_then_sni_then_default() {
    let s = setup("", "{ handshake: 3s }").await;
    let a = s.fd.addrs[0];
    assert_eq!(greeting(a, &["imap"], "localhost").await, "imap ready\r\n");
    assert_eq!(greeting(a, &["smtp"], "localhost").await, "smtp ready\r\n");
    assert_eq!(greeting(a, &["h2"], "localhost").await, "web ready\r\n");
    assert_eq!(
        greeting(a, &["http/1.1"], "localhost").await,
        "web ready\r\n"
    );
    // A client listing several: the server's order puts mail first.
    assert_eq!(
        greeting(a, &["http/1.1", "imap"], "localhost").await,
        "imap ready\r\n"
    );
    // No ALPN: SNI route, else the listener's default.
    assert_eq!(greeting(a, &[], "imap.example.org").await, "imap ready\r\n");
    assert_eq!(greeting(a, &[], "mail.example.org").await, "web ready\r\n");
    // ALPN beats SNI.
    assert_eq!(
        greeting(a, &["smtp"], "imap.example.org").await,
        "smtp ready\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_without_overlap_gets_no_application_protocol() {
    let s = setup("", "{ handshake: 3s }").await;
    let e = connect(s.fd.addrs[0], &["xmpp-client", "pop3"], "localhost")
        .await
        .unwrap_err();
    let text = format!("{e:?}");
    assert!(text.contains("NoApplicationProtocol"), "{text}");
    // Nothing reached any backend.
    assert!(
        s.imap.headers().is_empty() && s.smtp.headers().is_empty() && s.web.headers().is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v2_header_read_by_an_independent_decoder() {
    let s = setup("", "{ handshake: 3s }").await;
    let tcp = TcpStream::connect(s.fd.addrs[0]).await.unwrap();
    let client_addr = tcp.local_addr().unwrap();
    drop(tcp);
    let mut c = connect(s.fd.addrs[0], &["imap"], "mail.example.org")
        .await
        .unwrap();
    let client_addr2 = c.get_ref().0.local_addr().unwrap();
    assert_eq!(client_addr.ip(), client_addr2.ip());
    assert_eq!(read_line(&mut c).await.unwrap(), "imap ready\r\n");
    let h = s.imap.headers().pop().unwrap().header;
    let parsed = ppp::v2::Header::try_from(h.as_slice()).expect("ppp decodes our header");
    assert_eq!(parsed.command, ppp::v2::Command::Proxy);
    match parsed.addresses {
        ppp::v2::Addresses::IPv4(a) => {
            assert_eq!(
                SocketAddr::from((a.source_address, a.source_port)),
                client_addr2
            );
            assert_eq!(
                SocketAddr::from((a.destination_address, a.destination_port)),
                s.fd.addrs[0]
            );
        }
        other => panic!("expected IPv4 addresses, got {other:?}"),
    }
    let tlvs: Vec<(u8, Vec<u8>)> = parsed
        .tlvs()
        .map(|t| t.unwrap())
        .map(|t| (t.kind, t.value.to_vec()))
        .collect();
    let get = |k: u8| tlvs.iter().find(|(t, _)| *t == k).map(|(_, v)| v.clone());
    assert_eq!(get(0x01).unwrap(), b"imap");
    assert_eq!(get(0x02).unwrap(), b"mail.example.org");
    let id = String::from_utf8(get(0x05).unwrap()).unwrap();
    assert!(!id.is_empty());
    // PP2_TYPE_SSL: client = PP2_CLIENT_SSL only, verify != 0 (no pinned key), sub-TLVs.
    let ssl = get(0x20).unwrap();
    assert_eq!(ssl[0], 0x01);
    assert_ne!(u32::from_be_bytes([ssl[1], ssl[2], ssl[3], ssl[4]]), 0);
    let subs: Vec<ppp::v2::TypeLengthValue> = ppp::v2::TypeLengthValues::from(&ssl[5..])
        .map(|t| t.unwrap())
        .collect();
    let sub = |k: u8| subs.iter().find(|t| t.kind == k).map(|t| t.value.to_vec());
    assert_eq!(sub(0x21).unwrap(), b"TLSv1.3");
    assert!(String::from_utf8(sub(0x23).unwrap())
        .unwrap()
        .starts_with("TLS13_"));
    assert!(sub(0x22).is_none(), "no CN without a pinned key");
    // The connection id in the header is the one in the log line.
    drop(c);
    assert!(
        s.fd.wait_event(T, |e| is_close(e) && str_field(e, "id") == id)
            .await
            .is_some(),
        "{}",
        s.fd.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v1_and_none_on_request() {
    let s = setup("", "{ handshake: 3s }").await;
    let mut c = connect(s.fd.addrs[0], &["smtp"], "localhost")
        .await
        .unwrap();
    let me = c.get_ref().0.local_addr().unwrap();
    assert_eq!(read_line(&mut c).await.unwrap(), "smtp ready\r\n");
    let h = s.smtp.headers().pop().unwrap().header;
    let want = format!(
        "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\n",
        me.port(),
        s.fd.addrs[0].port()
    );
    assert_eq!(String::from_utf8(h.clone()).unwrap(), want);
    let v1 = ppp::v1::Header::try_from(h.as_slice()).expect("ppp decodes our v1 line");
    assert!(matches!(v1.addresses, ppp::v1::Addresses::Tcp4(_)));
    // `none`: the backend's first bytes are the client's.
    let mut w = connect(s.fd.addrs[0], &["http/1.1"], "localhost")
        .await
        .unwrap();
    assert_eq!(read_line(&mut w).await.unwrap(), "web ready\r\n");
    w.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    assert_eq!(read_line(&mut w).await.unwrap(), "GET / HTTP/1.1\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_each_way_intact_and_half_close() {
    let s = setup("", "{ handshake: 3s }").await;
    let c = connect(s.fd.addrs[0], &["imap"], "localhost")
        .await
        .unwrap();
    let (mut r, mut w) = tokio::io::split(c);
    assert_eq!(read_line(&mut r).await.unwrap(), "imap ready\r\n");
    const N: usize = 16 << 20;
    let data: Vec<u8> = (0..N).map(|i| (i * 7 + i / 4093) as u8).collect();
    let d2 = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&d2).await.unwrap();
        // Half-close: the backend sees EOF, echoes the rest, then closes.
        w.shutdown().await.unwrap();
        w
    });
    let mut back = Vec::with_capacity(N);
    tokio::time::timeout(Duration::from_secs(60), r.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert_eq!(back.len(), N);
    assert!(back == data, "echoed bytes differ");
    let close =
        s.fd.wait_event(T, |e| is_close(e) && num_field(e, "bytes_up") == N as u64)
            .await
            .unwrap_or_else(|| panic!("{}", s.fd.logs()));
    assert_eq!(
        num_field(&close, "bytes_down"),
        (N + "imap ready\r\n".len()) as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_backend_answers_in_the_clients_protocol() {
    let dir = tempfile::tempdir().unwrap();
    // A port with nothing listening: bound and never listened on, and held
    // for the whole test, so no other test can take it meanwhile (a
    // connection to it is refused).
    let held = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    held.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    let dead = held.local_addr().unwrap().as_socket().unwrap();
    let cfg = format!(
        r#"
listeners:
  - bind: "127.0.0.1:0"
routes:
  imap: {{ alpn: [imap], backend: "{dead}" }}
  smtp: {{ alpn: [smtp], backend: "unix:{sock}" }}
timeouts: {{ connect: 2s }}
"#,
        sock = dir.path().join("nothing.sock").display()
    );
    let p = dir.path().join("f.yaml");
    std::fs::write(&p, cfg).unwrap();
    let fd = Frontdoor::start(&p, 1);
    let mut c = connect(fd.addrs[0], &["imap"], "localhost").await.unwrap();
    let line = read_line(&mut c).await.unwrap();
    assert!(line.starts_with("* BYE "), "{line}");
    let mut c = connect(fd.addrs[0], &["smtp"], "localhost").await.unwrap();
    let line = read_line(&mut c).await.unwrap();
    assert!(line.starts_with("421 4.3.2 "), "{line}");
    let dead = dead.to_string();
    let unreachable = |e: &serde_json::Value| closed_with(e, "backend_unreachable");
    assert!(
        fd.wait_event(T, |e| unreachable(e) && str_field(e, "backend") == dead)
            .await
            .is_some(),
        "{}",
        fd.logs()
    );
    assert!(
        fd.wait_event(T, |e| unreachable(e)
            && str_field(e, "backend").ends_with("nothing.sock"))
            .await
            .is_some(),
        "{}",
        fd.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_stalled_handshakes_are_dropped_while_others_work() {
    let s = setup("", "{ handshake: 2s }").await;
    let a = s.fd.addrs[0];
    // Garbage instead of a ClientHello: closed quickly.
    let mut g = TcpStream::connect(a).await.unwrap();
    g.write_all(b"GET / HTTP/1.0\r\n\r\n\x00\x01\x02garbage")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(T, async {
        let mut total = 0;
        loop {
            match g.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    })
    .await
    .expect("garbage connection closed");
    assert!(n < 64, "only an alert comes back");
    // Stalled clients: half a ClientHello, and nothing at all.
    let mut stalled = Vec::new();
    for i in 0..20 {
        let mut t = TcpStream::connect(a).await.unwrap();
        if i % 2 == 0 {
            t.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
                .await
                .unwrap();
        }
        stalled.push(t);
    }
    // A well-behaved client is served meanwhile, promptly.
    let t0 = Instant::now();
    assert_eq!(greeting(a, &["imap"], "localhost").await, "imap ready\r\n");
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "served in {:?}",
        t0.elapsed()
    );
    // The stalled ones are closed at the handshake timeout (2 s), not before 1.5 s.
    let t0 = Instant::now();
    for mut t in stalled {
        let r = tokio::time::timeout(Duration::from_secs(6), t.read(&mut buf))
            .await
            .expect("closed by timeout");
        assert!(matches!(r, Ok(0) | Err(_)));
    }
    let waited = t0.elapsed();
    assert!(
        waited > Duration::from_millis(1200) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert!(s
        .fd
        .wait_event(T, |e| closed_with(e, "handshake_timeout"))
        .await
        .is_some());
    assert!(no_panic(s.fd.events()), "{}", s.fd.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_route_listener_takes_clients_without_alpn() {
    let s = setup(
        "  - bind: \"127.0.0.1:0\"\n    route: imap",
        "{ handshake: 3s }",
    )
    .await;
    let fixed = s.fd.addrs[1];
    assert_eq!(
        greeting(fixed, &[], "whatever.example").await,
        "imap ready\r\n"
    );
    assert_eq!(
        greeting(fixed, &["imap"], "localhost").await,
        "imap ready\r\n"
    );
    // Strict ALPN: a web ALPN never reaches the IMAP backend.
    assert!(connect(fixed, &["h2"], "localhost").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_closes_the_excess() {
    let dir = tempfile::tempdir().unwrap();
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    let cfg = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\nroutes:\n  imap: {{ alpn: [imap], backend: \"{}\" }}\nlimits: {{ max_connections: 3 }}\n",
        imap.addr
    );
    let p = dir.path().join("f.yaml");
    std::fs::write(&p, cfg).unwrap();
    let fd = Frontdoor::start(&p, 1);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = connect(fd.addrs[0], &["imap"], "localhost").await.unwrap();
        assert_eq!(read_line(&mut c).await.unwrap(), "imap ready\r\n");
        held.push(c);
    }
    assert!(
        connect(fd.addrs[0], &["imap"], "localhost").await.is_err(),
        "fourth is refused"
    );
    assert!(fd
        .wait_event(T, |e| at(e, "WARN") && num_field(e, "max_connections") == 3)
        .await
        .is_some());
    held.pop();
    // A slot frees up: served again (retried while the close lands).
    let a = fd.addrs[0];
    assert!(
        poll_until_with(T, || async move {
            match connect(a, &["imap"], "localhost").await {
                Ok(mut c) => read_line(&mut c).await.is_ok_and(|l| l == "imap ready\r\n"),
                Err(_) => false,
            }
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_open_connections_then_exits() {
    let mut s = setup(
        "",
        "{ handshake: 3s, shutdown_grace: 2s, drain_spread: 0s }",
    )
    .await;
    let a = s.fd.addrs[0];
    let mut c = connect(a, &["imap"], "localhost").await.unwrap();
    assert_eq!(read_line(&mut c).await.unwrap(), "imap ready\r\n");
    s.fd.signal("TERM");
    // The drain starts: its event carries the open count and the grace.
    let drain =
        s.fd.wait_event(T, |e| e.get("grace_secs").is_some())
            .await
            .unwrap_or_else(|| panic!("{}", s.fd.logs()));
    assert_eq!(num_field(&drain, "open"), 1);
    // New connections are refused once the listeners close; the open one
    // still relays during the grace period.
    assert!(poll_until_with(T, || async move { TcpStream::connect(a).await.is_err() }).await);
    c.write_all(b"still here\r\n").await.unwrap();
    assert_eq!(read_line(&mut c).await.unwrap(), "still here\r\n");
    // After the grace period it is closed and the process exits 0.
    let mut status = None;
    let child = &mut s.fd.child;
    assert!(
        poll_until_async(T, || {
            status = child.try_wait().unwrap();
            status.is_some()
        })
        .await
    );
    assert!(status.unwrap().success());
    // The grace period ran out with the connection still open: forced.
    assert!(
        s.fd.events()
            .wait_event(T, |e| at(e, "WARN") && num_field(e, "open") == 1)
            .await
            .is_some(),
        "{}",
        s.fd.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_certificates_and_refuses_a_bad_one() {
    let s = setup("", "{ handshake: 3s }").await;
    let dir = s._dir.path();
    // Replace the certificate with one for another name.
    let (c2, k2) = write_cert(dir, "next", &["next.example.org"]);
    std::fs::copy(&c2, dir.join("server.crt")).unwrap();
    std::fs::copy(&k2, dir.join("server.key")).unwrap();
    s.fd.signal("HUP");
    assert!(s
        .fd
        .wait_event(T, |e| num_field(e, "certificates") == 1)
        .await
        .is_some());
    let names = |c: &tokio_rustls::client::TlsStream<TcpStream>| {
        let der = c.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        String::from_utf8_lossy(&der).contains("next.example.org")
    };
    let c = connect(s.fd.addrs[0], &["imap"], "localhost")
        .await
        .unwrap();
    assert!(names(&c));
    // A key that does not match: refused, old certificate stays.
    let (_, k3) = write_cert(dir, "other", &["other.example.org"]);
    std::fs::copy(&k3, dir.join("server.key")).unwrap();
    s.fd.signal("HUP");
    assert!(
        s.fd.wait_event(T, |e| at(e, "ERROR")
            && str_field(e, "error").contains("server.key"))
            .await
            .is_some(),
        "{}",
        s.fd.logs()
    );
    let c = connect(s.fd.addrs[0], &["imap"], "localhost")
        .await
        .unwrap();
    assert!(names(&c));
}

fn check(cfg: &str, dir: &Path) -> (bool, String) {
    let p = dir.join("frontdoor.yaml");
    std::fs::write(&p, cfg).unwrap();
    let out = std::process::Command::new(Frontdoor::bin())
        .args(["check", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_reports_each_problem_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (c, k) = write_cert(d, "a", &["a.test"]);
    let (_, k_other) = write_cert(d, "b", &["b.test"]);
    let base = |certs: &str, routes: &str, listener_extra: &str| {
        format!(
            "listeners:\n  - bind: \"127.0.0.1:8443\"\n{listener_extra}tls:\n  certificates:\n{certs}routes:\n{routes}"
        )
    };
    let good_cert = format!("    - cert: {}\n      key: {}\n", c.display(), k.display());
    let good_routes = "  imap:\n    alpn: [imap]\n    backend: \"127.0.0.1:1143\"\n";
    let file = d.join("frontdoor.yaml").display().to_string();

    let (ok, out) = check(&base(&good_cert, good_routes, ""), d);
    assert!(ok, "{out}");

    let missing = format!(
        "    - cert: {}/missing.pem\n      key: {}\n",
        d.display(),
        k.display()
    );
    let (ok, out) = check(&base(&missing, good_routes, ""), d);
    assert!(!ok);
    assert!(out.contains("missing.pem: cannot read"), "{out}");
    assert!(
        out.contains(&format!("{file}:5: tls.certificates[0].cert: ")),
        "line of the certificate entry: {out}"
    );

    let mismatch = format!(
        "    - cert: {}\n      key: {}\n",
        c.display(),
        k_other.display()
    );
    let (ok, out) = check(&base(&mismatch, good_routes, ""), d);
    assert!(!ok);
    assert!(out.contains("does not match the certificate"), "{out}");
    assert!(
        out.contains(&format!("{file}:6: tls.certificates[0].key: ")),
        "{out}"
    );

    let (ok, out) = check(
        &base(&good_cert, good_routes, "    default_route: nowhere\n"),
        d,
    );
    assert!(!ok);
    assert!(
        out.contains(&format!(
            "{file}:3: listeners[0].default_route: unknown route \"nowhere\""
        )),
        "{out}"
    );

    let dup = format!("{good_routes}  other:\n    alpn: [imap]\n    backend: \"127.0.0.1:1144\"\n");
    let (ok, out) = check(&base(&good_cert, &dup, ""), d);
    assert!(!ok);
    assert!(
        out.contains(&format!(
            "{file}:12: routes.other.alpn[0]: ALPN \"imap\" is already routed"
        )),
        "{out}"
    );

    let bad_backend = "  imap:\n    alpn: [imap]\n    backend: \"127.0.0.1\"\n";
    let (ok, out) = check(&base(&good_cert, bad_backend, ""), d);
    assert!(!ok);
    assert!(
        out.contains(&format!(
            "{file}:10: routes.imap.backend: bad backend address"
        )),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_client_addresses_reach_the_backend_and_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    let cfg = format!(
        "listeners:\n  - bind: \"[::1]:0\"\nroutes:\n  imap: {{ alpn: [imap], backend: \"{}\" }}\n",
        imap.addr
    );
    let p = dir.path().join("f.yaml");
    std::fs::write(&p, cfg).unwrap();
    let fd = Frontdoor::start(&p, 1);
    let addr = fd.addrs[0];
    // Every line is JSON, and the listener's event names its address.
    assert!(fd
        .wait_event(T, |e| str_field(e, "addr") == addr.to_string())
        .await
        .is_some());
    assert!(addr.is_ipv6());
    let mut c = connect(addr, &["imap"], "localhost").await.unwrap();
    let me = c.get_ref().0.local_addr().unwrap();
    assert_eq!(read_line(&mut c).await.unwrap(), "imap ready\r\n");
    let h = imap.headers().pop().unwrap().header;
    let parsed = ppp::v2::Header::try_from(h.as_slice()).unwrap();
    match parsed.addresses {
        ppp::v2::Addresses::IPv6(a) => {
            assert_eq!(SocketAddr::from((a.source_address, a.source_port)), me);
            assert_eq!(
                SocketAddr::from((a.destination_address, a.destination_port)),
                addr
            );
        }
        other => panic!("expected IPv6, got {other:?}"),
    }
    drop(c);
    let v = fd
        .wait_event(T, is_close)
        .await
        .unwrap_or_else(|| panic!("a close line:\n{}", fd.logs()));
    assert_eq!(v["route"], "imap");
    assert_eq!(v["bytes_down"], 12);
    assert_eq!(str_field(&v, "client"), me.to_string());
    // Every line of the log is a JSON object.
    let lines = fd.log.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v.is_object())),
        "{}",
        fd.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_status_page_over_http1_with_curl() {
    let dir = tempfile::tempdir().unwrap();
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    let cfg = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\nroutes:\n  imap: {{ alpn: [imap], backend: \"{}\" }}\n  web: {{ alpn: [\"http/1.1\"], backend: \"builtin:status\" }}\n",
        imap.addr
    );
    let p = dir.path().join("f.yaml");
    std::fs::write(&p, cfg).unwrap();
    let fd = Frontdoor::start(&p, 1);
    let url = format!("https://{}/", fd.addrs[0]);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args([
                "-sk",
                "--http1.1",
                "-w",
                "\n%{http_code} %{http_version}",
                &url,
            ])
            .output()
            .expect("curl runs")
    })
    .await
    .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains("<h1>Mail server</h1>"), "{body}");
    assert!(body.contains("ALPN imap, http/1.1"), "{body}");
    assert!(body.trim_end().ends_with("200 1.1"), "{body}");
    // No ALPN at all goes to the default route `web` too; h2 is not offered.
    let mut c = connect(fd.addrs[0], &[], "localhost").await.unwrap();
    c.write_all(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_line(&mut c).await.unwrap(),
        "HTTP/1.1 404 Not Found\r\n"
    );
    assert!(connect(fd.addrs[0], &["h2"], "localhost").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_file_lists_every_listener_with_its_real_address() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    let cfg = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\n  - bind: \"127.0.0.1:0\"\n    route: imap\nroutes:\n  imap: {{ alpn: [imap], backend: \"{}\" }}\nmetrics: {{ listen: \"127.0.0.1:0\" }}\nmail:\n  domains: [example.org]\n  data_dir: data\n  submission: {{ listen: \"127.0.0.1:0\" }}\n  imap: {{ listen: \"unix:imap.sock\" }}\n",
        imap.addr
    );
    let p = d.join("f.yaml");
    std::fs::write(&p, cfg).unwrap();
    let fd = Frontdoor::start(&p, 2);
    let ready = &fd.ready;
    assert_eq!(ready.pid, fd.child.id());
    let kinds: Vec<(String, String)> = ready
        .listeners
        .iter()
        .map(|e| (format!("{:?}", e.kind), e.name.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("Frontdoor", "0"),
            ("Frontdoor", "1"),
            ("Metrics", "metrics"),
            ("Mail", "submission"),
            ("Mail", "imap"),
        ]
        .map(|(k, n)| (k.to_string(), n.to_string())),
        "{ready:?}"
    );
    // Port 0 resolved: every TCP listener is there at the port it names.
    let mut tcp = fd.addrs.clone();
    tcp.push(fd.metrics_addr().unwrap());
    tcp.push(fd.mail("submission").unwrap().tcp());
    for a in &tcp {
        assert_ne!(a.port(), 0, "{ready:?}");
        TcpStream::connect(a).await.unwrap();
    }
    assert_eq!(
        greeting(fd.addrs[1], &["imap"], "localhost").await,
        "imap ready\r\n"
    );
    // The Unix socket by its absolute path, accepting.
    let Some(MailAddr::Unix(sock)) = fd.mail("imap") else {
        panic!("{ready:?}")
    };
    assert_eq!(sock, d.join("imap.sock"));
    tokio::net::UnixStream::connect(&sock).await.unwrap();
    // Written whole, under its final name only.
    let files: Vec<_> = std::fs::read_dir(fd.ready_file().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, ["ready.json"]);
}

#[test]
fn an_unwritable_ready_file_stops_the_start_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.yaml");
    std::fs::write(
        &p,
        "listeners:\n  - bind: \"127.0.0.1:0\"\nroutes:\n  imap: { alpn: [imap], backend: \"127.0.0.1:9\" }\n",
    )
    .unwrap();
    let out = std::process::Command::new(Frontdoor::bin())
        .args(["serve", "--config"])
        .arg(&p)
        .args(["--ready-file", "/nonexistent-dir/ready.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot write the ready file /nonexistent-dir/ready.json"),
        "{err}"
    );
}
