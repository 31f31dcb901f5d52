//! Reloading the whole configuration while serving (SIGHUP): a changed
//! route applies to new connections only, an open connection keeps its
//! backend, listeners come and go without a gap, a broken file changes
//! nothing and is reported with file and line, and a client opening
//! connections without pause sees no failure across ten reloads.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Setup {
    dir: tempfile::TempDir,
    cert: (PathBuf, PathBuf),
    a: CaptureBackend,
    b: CaptureBackend,
}

impl Setup {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cert = write_cert(dir.path(), "server", &["localhost"]);
        Self {
            cert,
            a: CaptureBackend::start("alpha", Expect::None).await,
            b: CaptureBackend::start("beta", Expect::None).await,
            dir,
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("frontdoor.yaml")
    }

    /// The config with `binds` as listeners, all routed to `backend`.
    fn write(&self, binds: &[&str], backend: SocketAddr, extra: &str) {
        let mut listeners = String::new();
        for b in binds {
            listeners.push_str(&format!("  - bind: \"{b}\"\n    default_route: web\n"));
        }
        let cfg = format!(
            "listeners:\n{listeners}tls:\n  certificates:\n    - cert: {c}\n      key: {k}\nroutes:\n  web:\n    alpn: [\"http/1.1\"]\n    backend: \"{backend}\"\n    proxy_protocol: none\nmetrics:\n  listen: \"127.0.0.1:0\"\n{extra}",
            c = self.cert.0.display(),
            k = self.cert.1.display(),
        );
        // Written whole, then renamed: the reload never reads half a file.
        let tmp = self.dir.path().join("frontdoor.yaml.tmp");
        std::fs::write(&tmp, cfg).unwrap();
        std::fs::rename(&tmp, self.path()).unwrap();
    }

    fn start(&self) -> Process {
        Launch::new(["serve", "--config"]).arg(self.path()).start()
    }
}

/// A TLS connection that got its backend's greeting (`<name> ready`).
async fn open(
    addr: SocketAddr,
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    String,
) {
    let mut c = connect(addr, &[], "localhost").await.unwrap();
    let greeting = read_line(&mut c).await.unwrap();
    (c, greeting)
}

async fn echo(
    c: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    line: &str,
) -> String {
    c.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
    read_line(c).await.unwrap()
}

fn reloaded(e: &serde_json::Value) -> bool {
    str_field(e, "message") == "configuration reloaded"
}

async fn reload(p: &Process, n: usize) {
    p.signal("HUP");
    assert!(
        p.log
            .wait_event(T, |_| p.log.count(reloaded) >= n)
            .await
            .is_some(),
        "reload {n} not done:\n{}",
        p.log.text()
    );
}

fn ready_addrs(path: &Path) -> Vec<SocketAddr> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "frontdoor")
        .map(|e| e["addr"].as_str().unwrap().parse().unwrap())
        .collect()
}

async fn scrape(addr: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(T, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_route_applies_to_new_connections_only() {
    let s = Setup::new().await;
    s.write(&["127.0.0.1:0"], s.a.addr, "");
    let p = s.start();
    let addr = p.frontdoor_addrs()[0];
    let (mut old, greeting) = open(addr).await;
    assert_eq!(greeting.trim(), "alpha ready");

    s.write(&["127.0.0.1:0"], s.b.addr, "");
    reload(&p, 1).await;

    // The listener kept its socket (same port); new connections go to beta.
    assert_eq!(ready_addrs(p.ready_file()), vec![addr]);
    let (mut new, greeting) = open(addr).await;
    assert_eq!(greeting.trim(), "beta ready");
    assert_eq!(echo(&mut new, "to beta").await.trim(), "to beta");
    // The open connection still talks to alpha.
    assert_eq!(echo(&mut old, "still alpha").await.trim(), "still alpha");
    assert_eq!(s.a.headers().len(), 1);
    assert_eq!(s.b.headers().len(), 1);
    // The reload is counted and the hash in force is the new file's.
    let m = scrape(p.metrics_addr().unwrap()).await;
    assert!(
        m.contains("frontdoor_config_reloads_total{result=\"ok\"} 1"),
        "{m}"
    );
    let hash = sha256_hex(&std::fs::read(s.path()).unwrap());
    assert!(
        m.contains(&format!("frontdoor_config_info{{sha256=\"{hash}\"}} 1")),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_changes_nothing_and_is_reported_with_file_and_line() {
    let s = Setup::new().await;
    s.write(&["127.0.0.1:0"], s.a.addr, "");
    let good = std::fs::read(s.path()).unwrap();
    let p = s.start();
    let addr = p.frontdoor_addrs()[0];

    // A new backend and a bad duration: nothing of it may apply.
    s.write(&["127.0.0.1:0"], s.b.addr, "timeouts:\n  idle: soon\n");
    let text = std::fs::read_to_string(s.path()).unwrap();
    let line = text.lines().position(|l| l.contains("idle: soon")).unwrap() + 1;
    p.signal("HUP");
    let want = format!("{}:{line}:", s.path().display());
    let problem = p
        .log
        .wait_event(T, |e| {
            at(e, "ERROR") && str_field(e, "error").starts_with(&want)
        })
        .await;
    assert!(problem.is_some(), "no `{want}` problem:\n{}", p.log.text());
    assert!(str_field(&problem.unwrap(), "error").contains("timeouts.idle"));
    assert!(p
        .log
        .wait_event(T, |e| str_field(e, "message").contains("reload refused"))
        .await
        .is_some());

    let (_c, greeting) = open(addr).await;
    assert_eq!(greeting.trim(), "alpha ready", "the old route stays");
    let m = scrape(p.metrics_addr().unwrap()).await;
    assert!(
        m.contains("frontdoor_config_reloads_total{result=\"failed\"} 1"),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "frontdoor_config_info{{sha256=\"{}\"}} 1",
            sha256_hex(&good)
        )),
        "{m}"
    );
    assert_eq!(p.log.count(reloaded), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_are_added_and_removed_and_the_ready_file_follows() {
    let s = Setup::new().await;
    s.write(&["127.0.0.1:0"], s.a.addr, "");
    let p = s.start();
    let first = p.frontdoor_addrs()[0];

    s.write(&["127.0.0.1:0", "127.0.0.9:0"], s.a.addr, "");
    reload(&p, 1).await;
    let addrs = ready_addrs(p.ready_file());
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    assert_eq!(addrs[0], first);
    let second = addrs[1];
    assert_eq!(second.ip().to_string(), "127.0.0.9");
    let (_c, greeting) = open(second).await;
    assert_eq!(greeting.trim(), "alpha ready");

    // The first one removed: it stops accepting, the second one serves.
    s.write(&["127.0.0.9:0"], s.a.addr, "");
    reload(&p, 2).await;
    assert_eq!(ready_addrs(p.ready_file()), vec![second]);
    assert!(
        poll_until_async(T, || std::net::TcpStream::connect(first).is_err()).await,
        "the removed listener still accepts"
    );
    let (_c, greeting) = open(second).await;
    assert_eq!(greeting.trim(), "alpha ready");
    assert!(no_panic(&p.log));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_connection_fails_during_ten_reloads() {
    let s = Setup::new().await;
    s.write(&["127.0.0.1:0"], s.a.addr, "");
    let p = s.start();
    let addr = p.frontdoor_addrs()[0];
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            // Bounded: stops when told, and after at most 60 s.
            let end = tokio::time::Instant::now() + Duration::from_secs(60);
            while !stop.load(Relaxed) && tokio::time::Instant::now() < end {
                let round = async {
                    let mut c = connect(addr, &[], "localhost").await?;
                    let greeting = read_line(&mut c).await?;
                    c.write_all(b"hello\r\n").await?;
                    let back = read_line(&mut c).await?;
                    std::io::Result::Ok(greeting.ends_with(" ready\r\n") && back == "hello\r\n")
                };
                match round.await {
                    Ok(true) => ok.fetch_add(1, Relaxed),
                    _ => failed.fetch_add(1, Relaxed),
                };
            }
        }));
    }
    for n in 1..=10 {
        let backend = if n % 2 == 1 { s.b.addr } else { s.a.addr };
        s.write(&["127.0.0.1:0"], backend, "");
        let before = ok.load(Relaxed);
        reload(&p, n).await;
        // Connections keep succeeding after each reload before the next.
        assert!(
            poll_until_async(T, || ok.load(Relaxed) >= before + 20).await,
            "no progress after reload {n}"
        );
    }
    stop.store(true, Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (ok, failed) = (ok.load(Relaxed), failed.load(Relaxed));
    println!("reloads: 10, connections ok {ok}, failed {failed}");
    assert_eq!(failed, 0);
    assert!(!s.a.headers().is_empty() && !s.b.headers().is_empty());
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}
