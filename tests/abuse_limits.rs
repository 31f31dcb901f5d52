//! Limits that keep one client from hurting the others, against the real
//! binary: the per-address connection cap (direct and behind an upstream
//! PROXY header), the bound on a ClientHello still in progress, the
//! key-failure throttle counting an IPv6 /64 as one address, and the
//! password throttle (Python imaplib/smtplib, sources 127.0.0.1, .2 and .3:
//! all loopback): a wrong-password flood from one address does not slow a
//! correct login from another, and failures past the limit are refused
//! before any hashing.

mod common;
mod imap_common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use frontdoor::proxy_protocol as pp;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn write_config(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let p = dir.join("f.yaml");
    std::fs::write(&p, body).unwrap();
    p
}

async fn tcp_from(src: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(format!("{src}:0").parse().unwrap())?;
    s.connect(addr).await
}

/// TLS with ALPN imap over `tcp` (after `header`, if any); the backend's greeting.
async fn greeting(
    mut tcp: TcpStream,
    header: &[u8],
    cert: Option<ClientCert>,
) -> std::io::Result<(tokio_rustls::client::TlsStream<TcpStream>, String)> {
    tcp.write_all(header).await?;
    let c = tokio_rustls::TlsConnector::from(client_config(&["imap"], cert, Tls::V13));
    let mut s = tokio::time::timeout(
        T,
        c.connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await??;
    let line = read_line(&mut s).await?;
    Ok((s, line))
}

fn upstream_header(src: &str) -> Vec<u8> {
    pp::encode_v2(
        &pp::ConnInfo {
            src: src.parse().unwrap(),
            dst: "198.51.100.10:443".parse().unwrap(),
            alpn: None,
            authority: None,
            unique_id: None,
            ssl: None,
            identity: None,
        },
        None,
    )
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_address_cap_refuses_one_address_and_not_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    let p = write_config(
        dir.path(),
        &format!("listeners:\n  - bind: \"127.0.0.1:0\"\n  - bind: \"127.0.0.1:0\"\n    accept_proxy_protocol: {{ from: [\"127.0.0.0/8\"] }}\nroutes:\n  imap: {{ alpn: [imap], backend: \"{}\" }}\nlimits: {{ per_ip_connections: 3 }}\n", imap.addr),
    );
    let fd = Frontdoor::start(&p, 2);
    let (a, behind) = (fd.addrs[0], fd.addrs[1]);
    let mut held = Vec::new();
    for _ in 0..3 {
        let (s, line) = greeting(tcp_from("127.0.0.1", a).await.unwrap(), b"", None)
            .await
            .unwrap();
        assert_eq!(line, "imap ready\r\n");
        held.push(s);
    }
    // The fourth from 127.0.0.1 is closed before its handshake.
    let fourth = greeting(tcp_from("127.0.0.1", a).await.unwrap(), b"", None).await;
    assert!(fourth.is_err(), "a fourth connection was served");
    assert!(
        fd.wait_event(T, |e| at(e, "WARN")
            && num_field(e, "per_ip_connections") == 3)
            .await
            .is_some(),
        "{}",
        fd.logs()
    );
    // Another address is not affected.
    for _ in 0..3 {
        let (s, line) = greeting(tcp_from("127.0.0.2", a).await.unwrap(), b"", None)
            .await
            .unwrap();
        assert_eq!(line, "imap ready\r\n");
        held.push(s);
    }
    // A closed connection gives its slot back (polled: the server notices
    // the close asynchronously).
    drop(held.remove(0));
    let back = std::sync::Arc::new(std::sync::Mutex::new(None));
    let b2 = back.clone();
    assert!(
        poll_until_with(T, || {
            let back = b2.clone();
            async move {
                match greeting(tcp_from("127.0.0.1", a).await.unwrap(), b"", None).await {
                    Ok(got) => {
                        *back.lock().unwrap() = Some(got);
                        true
                    }
                    Err(_) => false,
                }
            }
        })
        .await,
        "the slot never came back"
    );
    let (s, line) = back.lock().unwrap().take().unwrap();
    assert_eq!(line, "imap ready\r\n");
    held.push(s);
    // Behind an upstream balancer: the address in its header counts, not
    // the balancer's (all of these come from 127.0.0.1).
    for _ in 0..3 {
        let tcp = TcpStream::connect(behind).await.unwrap();
        let (s, line) = greeting(tcp, &upstream_header("203.0.113.7:4000"), None)
            .await
            .unwrap();
        assert_eq!(line, "imap ready\r\n");
        held.push(s);
    }
    let tcp = TcpStream::connect(behind).await.unwrap();
    assert!(greeting(tcp, &upstream_header("203.0.113.7:4001"), None)
        .await
        .is_err());
    let tcp = TcpStream::connect(behind).await.unwrap();
    let (s, line) = greeting(tcp, &upstream_header("203.0.113.8:4000"), None)
        .await
        .unwrap();
    assert_eq!(line, "imap ready\r\n");
    held.push(s);
    assert_eq!(imap.headers().len(), 3 + 3 + 1 + 3 + 1);
    assert!(
        fd.wait_event(T, |e| closed_with(e, "per_ip_limit")
            && str_field(e, "client") == "203.0.113.7:4001")
            .await
            .is_some(),
        "{}",
        fd.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hello_in_progress_costs_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    let p = write_config(
        dir.path(),
        &format!("listeners:\n  - bind: \"127.0.0.1:0\"\nroutes:\n  imap: {{ alpn: [imap], backend: \"{}\" }}\ntimeouts: {{ handshake: 60s }}\n", imap.addr),
    );
    let fd = Frontdoor::start(&p, 1);
    let a = fd.addrs[0];
    let pid = fd.child.id();
    // A record announcing a ClientHello of `body` bytes, `sent` bytes of it sent.
    let hello = |body: usize, sent: usize| {
        let mut v = vec![0x16, 0x03, 0x01];
        let rec = (body + 4).min(16_384);
        v.extend_from_slice(&(rec as u16).to_be_bytes());
        v.extend_from_slice(&[0x01, (body >> 16) as u8, (body >> 8) as u8, body as u8]);
        v.extend_from_slice(&[0x03, 0x03]);
        v.resize(5 + sent, 0x41);
        v
    };
    const N: usize = 300;
    // 1. 300 clients announce a 64 KiB ClientHello and send 60 KiB of it
    // (in 16 KiB records): each is closed after the first 17 KiB or so,
    // long before the handshake timeout.
    let base = rss_kib(pid);
    let mut tasks = Vec::new();
    for _ in 0..N {
        tasks.push(tokio::spawn(async move {
            let mut t = TcpStream::connect(a).await.unwrap();
            let t0 = Instant::now();
            let mut bytes = Vec::new();
            let mut left = 65_531usize + 4;
            let mut first = true;
            while bytes.len() < 60 * 1024 {
                let rec = left.min(16_384);
                if first {
                    bytes.extend_from_slice(&hello(65_531, rec));
                    first = false;
                } else {
                    bytes.extend_from_slice(&[0x16, 0x03, 0x01]);
                    bytes.extend_from_slice(&(rec as u16).to_be_bytes());
                    bytes.resize(bytes.len() + rec, 0x42);
                }
                left -= rec;
            }
            let _ = t.write_all(&bytes).await;
            let mut b = [0u8; 64];
            let closed = tokio::time::timeout(Duration::from_secs(20), async {
                loop {
                    match t.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            })
            .await
            .is_ok();
            (closed, t0.elapsed())
        }));
    }
    let mut worst = Duration::ZERO;
    for t in tasks {
        let (closed, took) = t.await.unwrap();
        assert!(closed, "an oversized ClientHello was kept open");
        worst = worst.max(took);
    }
    let grown_big = rss_kib(pid).saturating_sub(base);
    // 2. 300 clients stall 16,000 bytes into a ClientHello that fits the bound.
    let base = rss_kib(pid);
    let mut stalled = Vec::new();
    for _ in 0..N {
        let mut t = TcpStream::connect(a).await.unwrap();
        t.write_all(&hello(16_380, 16_000)).await.unwrap();
        stalled.push(t);
    }
    // Wait (bounded) until the server has read them: its RSS stops growing.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = 0;
    loop {
        // sleep-ok: the interval of a poll bounded by `deadline` (RSS is
        // compared across it).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = rss_kib(pid);
        if now == last || Instant::now() > deadline {
            break;
        }
        last = now;
    }
    let grown = rss_kib(pid).saturating_sub(base);
    let per = grown * 1024 / N as u64;
    println!(
        "oversized hellos: closed within {worst:?}, RSS +{grown_big} KiB for {N}; stalled 16 KB hellos: RSS +{grown} KiB for {N} = {per} bytes each"
    );
    assert!(
        worst < Duration::from_secs(10),
        "took {worst:?} to close an oversized hello"
    );
    assert!(
        per < 40 * 1024,
        "a stalled 16 KB ClientHello costs {per} bytes"
    );
    // A normal client is still served at once, and rustls saw nothing odd.
    let (_s, line) = greeting(TcpStream::connect(a).await.unwrap(), b"", None)
        .await
        .unwrap();
    assert_eq!(line, "imap ready\r\n");
    assert!(no_panic(fd.events()), "{}", fd.logs());
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_failures_count_a_whole_ipv6_64() {
    let dir = tempfile::tempdir().unwrap();
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    let (c, k) = write_cert(dir.path(), "server", &["localhost"]);
    std::fs::write(dir.path().join("keys.yaml"), "keys: []\n").unwrap();
    let p = write_config(
        dir.path(),
        &format!("listeners:\n  - bind: \"127.0.0.1:0\"\n    accept_proxy_protocol: {{ from: [\"127.0.0.0/8\"] }}\ntls:\n  certificates:\n    - {{ cert: {}, key: {} }}\nroutes:\n  imap: {{ alpn: [imap], backend: \"{}\" }}\nclient_auth:\n  registry: keys.yaml\n  unknown_key: reject\n", c.display(), k.display(), imap.addr),
    );
    let fd = Frontdoor::start(&p, 1);
    let a = fd.addrs[0];
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    let unknown = ClientCert {
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::try_from(kp.serialize_der()).unwrap(),
    };
    // Three unknown keys from three addresses of one /64.
    for i in 1..=3 {
        let tcp = TcpStream::connect(a).await.unwrap();
        let h = upstream_header(&format!("[2001:db8:1:2::{i}]:4000"));
        assert!(greeting(tcp, &h, Some(unknown.clone())).await.is_err());
    }
    let slowed = fd
        .wait_event(T, |e| at(e, "WARN") && e.get("failures").is_some())
        .await
        .unwrap_or_else(|| panic!("{}", fd.logs()));
    // A fourth address of that /64 waits before its handshake; one of the
    // next /64 does not.
    let timed = |src: &'static str| async move {
        let tcp = TcpStream::connect(a).await.unwrap();
        let t0 = Instant::now();
        let r = greeting(tcp, &upstream_header(src), None).await;
        (r.map(|x| x.1), t0.elapsed())
    };
    let (r, other) = timed("[2001:db8:1:3::1]:4000").await;
    assert_eq!(r.unwrap(), "imap ready\r\n");
    let (r, sibling) = timed("[2001:db8:1:2::ffff]:4000").await;
    assert_eq!(r.unwrap(), "imap ready\r\n");
    println!("handshake from the same /64: {sibling:?}, from the next /64: {other:?}");
    assert!(sibling >= Duration::from_millis(900), "{sibling:?}");
    assert!(other < Duration::from_millis(900), "{other:?}");
    // Counted for the whole /64.
    assert_eq!(str_field(&slowed, "key"), "2001:db8:1:2::/64", "{slowed}");
}

const PY: &str = r#"
import imaplib, smtplib, socket, ssl, statistics, sys, threading, time
port, mode = int(sys.argv[1]), sys.argv[2]

def ctx(alpn):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.set_alpn_protocols([alpn])
    return c

class IMAP(imaplib.IMAP4_SSL):
    def __init__(self, src):
        self.src = src
        super().__init__("127.0.0.1", port, ssl_context=ctx("imap"), timeout=30)
    def _create_socket(self, timeout):
        s = socket.create_connection((self.host, self.port), timeout, source_address=(self.src, 0))
        return self.ssl_context.wrap_socket(s, server_hostname="localhost")

def code(e):
    t = str(e)
    for c in ("UNAVAILABLE", "AUTHENTICATIONFAILED"):
        if c in t:
            return c
    return t

def login(M, user, pw):
    t0 = time.perf_counter()
    try:
        M.login(user, pw)
        r = "OK"
    except imaplib.IMAP4.error as e:
        r = code(e)
    return r, (time.perf_counter() - t0) * 1000

def correct(src):
    M = IMAP(src)
    r, ms = login(M, "alice@example.org", "alice-pw")
    try:
        M.logout()
    except Exception:
        pass
    return r, ms

def smtp(src, pw):
    with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx("smtp"), timeout=30, source_address=(src, 0)) as s:
        try:
            s.login("alice@example.org", pw)
            return 235
        except smtplib.SMTPAuthenticationError as e:
            return e.smtp_code

if mode == "flood":
    stop = threading.Event()
    counts = {}
    lock = threading.Lock()
    def flooder():
        while not stop.is_set():
            try:
                M = IMAP("127.0.0.2")
                for _ in range(2):
                    r, _ = login(M, "bob@example.org", "wrong-pw")
                    with lock:
                        counts[r] = counts.get(r, 0) + 1
                M.logout()
            except Exception as e:
                with lock:
                    counts["error"] = counts.get("error", 0) + 1
    for r, _ in [correct("127.0.0.1")]:
        assert r == "OK", r
    unloaded = [correct("127.0.0.1") for _ in range(15)]
    threads = [threading.Thread(target=flooder) for _ in range(60)]
    for t in threads:
        t.start()
    deadline = time.time() + 30
    while sum(counts.values()) < 120 and time.time() < deadline:
        # sleep-ok: the interval of a poll bounded by `deadline`.
        time.sleep(0.05)
    loaded = [correct("127.0.0.1") for _ in range(15)]
    stop.set()
    for t in threads:
        t.join(60)
    print("UNLOADED_MS", round(statistics.median(ms for _, ms in unloaded), 1))
    print("FLOOD_MS", round(statistics.median(ms for _, ms in loaded), 1))
    print("RESULTS", sorted(set(r for r, _ in unloaded + loaded)))
    print("FLOOD", sorted(counts.items()))
elif mode == "limit":
    seq = []
    for _ in range(10):
        M = IMAP("127.0.0.3")
        for _ in range(2):
            seq.append(login(M, "bob@example.org", "wrong-pw"))
        M.logout()
        if seq[-1][0] == "UNAVAILABLE":
            break
    print("SEQ", " ".join(r for r, _ in seq))
    print("MS", " ".join(str(round(ms)) for _, ms in seq))
    # Refused before hashing: even the right password, from that address.
    print("SAME_ADDR", correct("127.0.0.3")[0])
    print("OTHER_ADDR", correct("127.0.0.1")[0])
    print("SMTP_SAME", smtp("127.0.0.3", "alice-pw"))
    print("SMTP_OTHER", smtp("127.0.0.1", "alice-pw"))
"#;

fn value<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ').map(str::trim))
        .unwrap_or_else(|| panic!("no {key} in {out}"))
}

#[test]
fn a_wrong_password_flood_does_not_slow_a_correct_login_from_elsewhere() {
    let s = imap_common::Stack::start(&[], tempfile::tempdir().unwrap());
    let (ok, out, err) = imap_common::python(
        PY,
        &[&s.port.to_string(), "flood"],
        Duration::from_secs(240),
    );
    println!("{out}");
    assert!(ok, "{out}\n{err}\n{}", s.logs());
    let unloaded: f64 = value(&out, "UNLOADED_MS").parse().unwrap();
    let flood: f64 = value(&out, "FLOOD_MS").parse().unwrap();
    assert_eq!(
        value(&out, "RESULTS"),
        "['OK']",
        "every correct login succeeded"
    );
    // Generous: the flood's own TLS handshakes share the CPU. Without the
    // limits the checks queue behind the flood's (seconds).
    assert!(
        flood < (unloaded * 5.0).max(500.0),
        "median login {flood} ms under the flood, {unloaded} ms without"
    );
    let flood_counts = value(&out, "FLOOD");
    assert!(flood_counts.contains("'UNAVAILABLE'"), "{flood_counts}");
    let log = s.log();
    assert!(
        log.wait_event_sync(T, |e| e.get("refused_by").is_some())
            .is_some(),
        "{}",
        s.logs()
    );
    // The address limit was reached (that event names the client, the
    // account limit's names the account).
    assert!(
        log.wait_event_sync(T, |e| {
            at(e, "WARN") && e.get("limit").is_some() && e.get("client").is_some()
        })
        .is_some(),
        "{}",
        s.logs()
    );
}

#[test]
fn failures_past_the_limit_are_refused_before_hashing() {
    let s = imap_common::Stack::start(&[], tempfile::tempdir().unwrap());
    let (ok, out, err) = imap_common::python(
        PY,
        &[&s.port.to_string(), "limit"],
        Duration::from_secs(120),
    );
    println!("{out}");
    assert!(ok, "{out}\n{err}\n{}", s.logs());
    let seq: Vec<&str> = value(&out, "SEQ").split(' ').collect();
    let failed = seq
        .iter()
        .take_while(|r| **r == "AUTHENTICATIONFAILED")
        .count();
    // Ten failures are checked (one may have aged out on a slow machine);
    // the next is refused.
    assert!((10..=11).contains(&failed), "{seq:?}");
    assert_eq!(seq.last(), Some(&"UNAVAILABLE"), "{seq:?}");
    assert_eq!(value(&out, "SAME_ADDR"), "UNAVAILABLE");
    assert_eq!(value(&out, "OTHER_ADDR"), "OK");
    assert_eq!(value(&out, "SMTP_SAME"), "454");
    assert_eq!(value(&out, "SMTP_OTHER"), "235");
    assert!(
        s.log()
            .event(|e| str_field(e, "refused_by") == "address"
                && str_field(e, "client").contains("127.0.0.3"))
            .is_some(),
        "{}",
        s.logs()
    );
}
