//! Soak: the real binary under mixed load while faults are injected, for a
//! bounded time (`SOAK_SECONDS`, default 90 s of load).
//!
//! Load, all bounded in count and time: repeated full handshakes with and
//! without a pinned key, bulk transfers echoed and verified byte for byte, a
//! pool of idle connections held throughout, and mail sent through ALPN
//! `smtp` to the bundled submission server (Python smtplib; every message has
//! a unique token in its Subject and Message-ID).
//!
//! Faults: the echo backend killed and restarted, the key registry edited
//! (key removed, re-added, a broken edit), SIGHUP reloads.
//!
//! At the end: no panic in the log; open fds back near the baseline; RSS
//! within a bound of the start; every mail acknowledged with 250 present in
//! the store exactly once; every client failure explained by a fault window.
//! A summary line gives the figures. Needs python3 (a missing one fails).

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use rustls::pki_types::PrivateKeyDer;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const ACCOUNT: &str = "soak@example.org";
const PASSWORD: &str = "a soak test password";
const IDLE_POOL: usize = 200;
const BULK_BYTES: usize = 3 * 1024 * 1024;
/// After a fault ends, clients may still see its effect for this long
/// (registry reload after the file changes, connects racing a restart).
const GRACE: Duration = Duration::from_secs(3);

/// An echo backend behind PROXY v2: greets with `echo <account>` (the
/// identity TLV 0xE0, `-` when anonymous), then echoes every byte. It can be
/// killed (listener and every connection closed) and restarted on its port.
struct Echo {
    addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Echo {
    async fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        Self {
            addr,
            task: Some(tokio::spawn(serve_echo(l))),
        }
    }

    /// Closes the listener and every open connection (dropping the JoinSet
    /// aborts the connection tasks).
    async fn kill(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    async fn restart(&mut self) {
        // The port was just closed; binding it again can briefly fail.
        let bound = Arc::new(Mutex::new(None));
        let addr = self.addr;
        poll_until_with(T, || {
            let bound = bound.clone();
            async move {
                let l = TcpListener::bind(addr).await.ok();
                let ok = l.is_some();
                *bound.lock().unwrap() = l;
                ok
            }
        })
        .await;
        let l = bound
            .lock()
            .unwrap()
            .take()
            .unwrap_or_else(|| panic!("cannot rebind {addr}"));
        self.task = Some(tokio::spawn(serve_echo(l)));
    }
}

async fn serve_echo(l: TcpListener) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            a = l.accept() => {
                let Ok((s, _)) = a else { return };
                conns.spawn(echo_conn(s));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn echo_conn(mut s: TcpStream) {
    let mut h = vec![0u8; 16];
    if s.read_exact(&mut h).await.is_err() {
        return;
    }
    let len = u16::from_be_bytes([h[14], h[15]]) as usize;
    let mut rest = vec![0u8; len];
    if s.read_exact(&mut rest).await.is_err() {
        return;
    }
    h.extend_from_slice(&rest);
    let Ok(header) = ppp::v2::Header::try_from(h.as_slice()) else {
        return;
    };
    let account = header
        .tlvs()
        .filter_map(Result::ok)
        .find(|t| t.kind == 0xE0)
        .map(|t| String::from_utf8_lossy(&t.value).into_owned())
        .unwrap_or_else(|| "-".into());
    if s.write_all(format!("echo {account}\r\n").as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let (mut r, mut w) = s.split();
    let _ = tokio::io::copy(&mut r, &mut w).await;
    let _ = w.shutdown().await;
}

/// Time windows in which a fault may explain a client failure.
#[derive(Default)]
struct Windows(Mutex<Vec<(Instant, Option<Instant>)>>);

impl Windows {
    fn open(&self) -> usize {
        let mut w = self.0.lock().unwrap();
        w.push((Instant::now(), None));
        w.len() - 1
    }
    fn close(&self, i: usize) {
        self.0.lock().unwrap()[i].1 = Some(Instant::now());
    }
    /// Does [from, to] overlap a window (extended by GRACE)?
    fn explains(&self, from: Instant, to: Instant) -> bool {
        self.0.lock().unwrap().iter().any(|(a, b)| {
            let end = b.map(|b| b + GRACE);
            from <= end.unwrap_or(to) && to >= *a
        })
    }
}

#[derive(Default)]
struct Stats {
    connections: AtomicU64,
    handshakes_key: AtomicU64,
    handshakes_anon: AtomicU64,
    key_seen_anon: AtomicU64,
    bulk_ok: AtomicU64,
    bytes_verified: AtomicU64,
    echo_failures_explained: AtomicU64,
    key_failures_explained: AtomicU64,
    down_probes: AtomicU64,
    faults: AtomicU64,
    unexplained: Mutex<Vec<String>>,
}

impl Stats {
    fn bad(&self, what: String) {
        self.unexplained.lock().unwrap().push(what);
    }
}

struct Key {
    cert: ClientCert,
    fp: String,
}

fn make_key() -> Key {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "soak-client");
    let cert = p.self_signed(&kp).unwrap();
    let fp = format!(
        "sha256:{}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(kp.public_key_der()))
    );
    Key {
        cert: ClientCert {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::try_from(kp.serialize_der()).unwrap(),
        },
        fp,
    }
}

/// Replace the registry the way an editor does: write elsewhere, rename.
fn write_registry(path: &Path, body: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn registry_with(fp: Option<&str>) -> String {
    let mut s = String::from("# pinned keys\nkeys:\n");
    if let Some(fp) = fp {
        s.push_str(&format!("  - name: soak-key\n    fingerprint: \"{fp}\"\n    account: {ACCOUNT}\n    login: {ACCOUNT}\n    imap_preauth: false\n"));
    }
    s
}

/// The running binary: its listener and metrics addresses and its log.
struct Server {
    fd: Frontdoor,
    addr: SocketAddr,
    metrics: SocketAddr,
}

impl Server {
    fn start(config: &Path) -> Self {
        let fd = Frontdoor::start(config, 1);
        let (addr, metrics) = (fd.addrs[0], fd.metrics_addr().expect("a metrics listener"));
        Self { fd, addr, metrics }
    }
    fn pid(&self) -> u32 {
        self.fd.child.id()
    }
    fn logs(&self) -> String {
        self.fd.logs()
    }
    fn count(&self, pred: impl Fn(&serde_json::Value) -> bool) -> usize {
        self.fd.count(pred)
    }
    fn signal(&self, sig: &str) {
        self.fd.signal(sig)
    }
    /// SIGTERM, then wait (bounded) for the exit.
    fn stop(&mut self) {
        self.signal("TERM");
        let child = &mut self.fd.child;
        if !poll_until(Duration::from_secs(40), || {
            child.try_wait().unwrap().is_some()
        }) {
            let _ = child.kill();
            panic!("did not stop on SIGTERM");
        }
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

/// Connect on `alpn`, read the greeting line.
async fn open(
    addr: SocketAddr,
    alpn: &str,
    key: Option<&Key>,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, String), String> {
    let cfg = client_config(&[alpn], key.map(|k| k.cert.clone()), Tls::V13);
    let mut s = connect_with(addr, cfg, "localhost")
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let g = read_line(&mut s)
        .await
        .map_err(|e| format!("greeting: {e}"))?;
    if g.is_empty() {
        return Err("closed before the greeting".into());
    }
    Ok((s, g))
}

/// One bulk transfer: `BULK_BYTES` written while read back and compared.
async fn bulk(addr: SocketAddr, seed: u64) -> Result<(), String> {
    let (s, g) = open(addr, "x-echo", None).await?;
    if g != "echo -\r\n" {
        return Err(format!("greeting {g:?}"));
    }
    let data: Arc<Vec<u8>> = Arc::new(
        (0..BULK_BYTES)
            .map(|i| ((i as u64).wrapping_mul(31).wrapping_add(seed) % 251) as u8)
            .collect(),
    );
    let (mut r, mut w) = tokio::io::split(s);
    let d2 = data.clone();
    let writer = tokio::spawn(async move {
        for c in d2.chunks(64 * 1024) {
            w.write_all(c).await?;
        }
        w.flush().await?;
        Ok::<_, std::io::Error>(w)
    });
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    while got < BULK_BYTES {
        let n = r.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!("closed after {got} bytes"));
        }
        if buf[..n] != data[got..got + n] {
            return Err(format!("corrupt echo at byte {got}"));
        }
        got += n;
    }
    let _w = writer
        .await
        .map_err(|e| format!("{e}"))?
        .map_err(|e| format!("write: {e}"))?;
    Ok(())
}

/// A temp dir with a certificate, a registry holding `key`, an account, and
/// a config routing x-echo and x-hold to `echo` and `hold`, smtp to the
/// bundled submission server, with metrics.
struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    mail_dir: PathBuf,
    registry: PathBuf,
}

fn setup(key: &Key, echo: SocketAddr, hold: SocketAddr) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (c, k) = write_cert(root, "server", &["localhost"]);
    let mail_dir = root.join("mail");
    std::fs::create_dir_all(&mail_dir).unwrap();
    let registry: PathBuf = root.join("keys.yaml");
    write_registry(&registry, &registry_with(Some(&key.fp)));
    let sock = mail_dir.join("submission.sock");
    let cfg = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\ntls:\n  certificates:\n    - {{ cert: {}, key: {} }}\nroutes:\n  echo: {{ alpn: [x-echo], backend: \"{}\", protocol: raw }}\n  hold: {{ alpn: [x-hold], backend: \"{}\", protocol: raw }}\n  smtp: {{ alpn: [smtp], backend: \"unix:{}\" }}\nclient_auth:\n  registry: keys.yaml\n  unknown_key: anonymous\ntimeouts: {{ connect: 2s }}\nmetrics: {{ listen: \"127.0.0.1:0\" }}\nmail:\n  domains: [example.org]\n  data_dir: {}\n  submission: {{ listen: \"unix:{}\" }}\n",
        c.display(),
        k.display(),
        echo,
        hold,
        sock.display(),
        mail_dir.display(),
        sock.display(),
    );
    let config = root.join("frontdoor.yaml");
    std::fs::write(&config, cfg).unwrap();
    let mut add = Command::new(Frontdoor::bin())
        .args(["accounts", "add", ACCOUNT, "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "accounts add: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    Setup {
        _dir: dir,
        config,
        mail_dir,
        registry,
    }
}

const MAILER: &str = r#"
import smtplib, ssl, sys, time
port, account, password, seconds = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["smtp"])
end = time.monotonic() + seconds
n = 0
while time.monotonic() < end and n < 100000:
    try:
        with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=15) as s:
            s.login(account, password)
            print("CONN", flush=True)
            for _ in range(5):
                n += 1
                tok = "soak-%d-%d" % (n, int(time.time() * 1000))
                msg = ("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\nbody of %s\r\n"
                       % (account, account, tok, tok, tok))
                try:
                    s.sendmail(account, [account], msg)
                    print("ACK", tok, flush=True)
                except smtplib.SMTPException as e:
                    print("FAIL", tok, repr(e), flush=True)
    except (OSError, smtplib.SMTPException) as e:
        print("ERR", repr(e), flush=True)
    # sleep-ok: the mailer's pacing between connections.
    time.sleep(0.05)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_under_faults() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(90);
    let load = Duration::from_secs(seconds);
    let key = Arc::new(make_key());
    let mut echo = Echo::start().await;
    let hold = Echo::start().await;
    let Setup {
        _dir,
        config,
        mail_dir,
        registry,
    } = setup(&key, echo.addr, hold.addr);
    let mut server = Server::start(&config);
    let pid = server.pid();
    let addr = server.addr;
    // Warm up every path once (lazy initialisation is not a leak), then
    // take the baseline.
    let (s, g) = open(addr, "x-hold", Some(&key)).await.unwrap();
    assert_eq!(g, format!("echo {ACCOUNT}\r\n"), "{}", server.logs());
    drop(s);
    bulk(addr, 0).await.unwrap();
    // Both warm-up connections closed (their close lines are out).
    assert!(
        poll_until_async(T, || server.count(is_close) >= 2).await,
        "{}",
        server.logs()
    );
    let (fds_before, rss_before) = (open_fds(pid), rss_kib(pid));

    let stats = Arc::new(Stats::default());
    let echo_down = Arc::new(Windows::default());
    let key_gone = Arc::new(Windows::default());
    let t_start = Instant::now();
    let deadline = t_start + load;

    // The idle pool, held to the end.
    let mut pool = Vec::new();
    for i in 0..IDLE_POOL {
        let (s, g) = open(addr, "x-hold", None)
            .await
            .unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
        assert_eq!(g, "echo -\r\n");
        pool.push(s);
        stats.connections.fetch_add(1, Relaxed);
    }

    let mut tasks = JoinSet::new();
    // Mail: smtplib in a child process for the whole load time.
    let mailer = Command::new("python3")
        .args([
            "-c",
            MAILER,
            &addr.port().to_string(),
            ACCOUNT,
            PASSWORD,
            &seconds.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed");
    let mailer = tokio::task::spawn_blocking(move || mailer.wait_with_output().unwrap());

    // Handshakes, alternating with and without the pinned key.
    for w in 0..2u64 {
        let (stats, key_gone, key) = (stats.clone(), key_gone.clone(), key.clone());
        tasks.spawn(async move {
            let mut i = w;
            while Instant::now() < deadline {
                i += 1;
                let with_key = i % 2 == 0;
                let t0 = Instant::now();
                let r = open(addr, "x-hold", with_key.then_some(&*key)).await;
                stats.connections.fetch_add(1, Relaxed);
                let t1 = Instant::now();
                match (with_key, r) {
                    (false, Ok((_, g))) if g == "echo -\r\n" => {
                        stats.handshakes_anon.fetch_add(1, Relaxed);
                    }
                    (true, Ok((_, g))) if g == format!("echo {ACCOUNT}\r\n") => {
                        stats.handshakes_key.fetch_add(1, Relaxed);
                    }
                    // Key removed from the registry: the key is unknown,
                    // and `unknown_key: anonymous` lets it in anonymously.
                    (true, Ok((_, g))) if g == "echo -\r\n" && key_gone.explains(t0, t1) => {
                        stats.handshakes_key.fetch_add(1, Relaxed);
                        stats.key_seen_anon.fetch_add(1, Relaxed);
                    }
                    // A removed key loses its open sessions.
                    (true, Err(_)) if key_gone.explains(t0, t1) => {
                        stats.key_failures_explained.fetch_add(1, Relaxed);
                    }
                    (k, r) => stats.bad(format!(
                        "handshake with_key={k} at {:?}: {:?}",
                        t0 - t_start,
                        r.map(|x| x.1)
                    )),
                }
            }
        });
    }

    // Bulk transfers through the faulted echo backend.
    for w in 0..2u64 {
        let (stats, echo_down) = (stats.clone(), echo_down.clone());
        tasks.spawn(async move {
            let mut seed = w * 1000;
            while Instant::now() < deadline {
                seed += 1;
                let t0 = Instant::now();
                let r = tokio::time::timeout(Duration::from_secs(30), bulk(addr, seed)).await;
                stats.connections.fetch_add(1, Relaxed);
                let t1 = Instant::now();
                match r {
                    Ok(Ok(())) => {
                        stats.bulk_ok.fetch_add(1, Relaxed);
                        stats.bytes_verified.fetch_add(BULK_BYTES as u64, Relaxed);
                    }
                    Ok(Err(_)) if echo_down.explains(t0, t1) => {
                        stats.echo_failures_explained.fetch_add(1, Relaxed);
                        // sleep-ok: load pacing while the fault lasts.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Ok(Err(e)) => {
                        stats.bad(format!("bulk at {:?}: {e}", t0 - t_start));
                    }
                    Err(_) => stats.bad(format!("bulk at {:?}: hung 30 s", t0 - t_start)),
                }
            }
        });
    }

    // RSS every few seconds, to tell growth from a plateau.
    let samples = Arc::new(Mutex::new(Vec::new()));
    {
        let samples = samples.clone();
        tasks.spawn(async move {
            while Instant::now() < deadline {
                samples.lock().unwrap().push(rss_kib(pid) / 1024);
                // sleep-ok: the RSS sampling interval.
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
    }

    // Faults, spread over the load time.
    let rounds = (seconds / 15).max(3);
    let step = load / (rounds as u32 + 1);
    for round in 0..rounds {
        // sleep-ok: the fault schedule, spread over the load time.
        tokio::time::sleep_until((t_start + step * (round as u32 + 1)).into()).await;
        // The echo backend dies; a client meanwhile is closed, not hung.
        let w = echo_down.open();
        echo.kill().await;
        stats.faults.fetch_add(1, Relaxed);
        let t0 = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(8), open(addr, "x-echo", None)).await;
        match r {
            Ok(Err(_)) => {
                stats.down_probes.fetch_add(1, Relaxed);
            }
            other => stats.bad(format!(
                "echo connection with the backend down: {:?} after {:?}",
                other.map(|r| r.map(|x| x.1)),
                t0.elapsed()
            )),
        }
        // sleep-ok: how long the backend stays down is the fault.
        tokio::time::sleep(Duration::from_secs(1)).await;
        echo.restart().await;
        echo_down.close(w);
        // Registry: remove the key, re-add it; a broken edit in between
        // leaves the last good registry in force.
        match round % 3 {
            0 => {
                let w = key_gone.open();
                write_registry(&registry, &registry_with(None));
                stats.faults.fetch_add(1, Relaxed);
                // sleep-ok: how long the key stays removed is the fault.
                tokio::time::sleep(Duration::from_secs(2)).await;
                write_registry(&registry, &registry_with(Some(&key.fp)));
                stats.faults.fetch_add(1, Relaxed);
                // sleep-ok: the key's return settles within the fault window.
                tokio::time::sleep(Duration::from_secs(1)).await;
                key_gone.close(w);
            }
            1 => {
                write_registry(&registry, "keys:\n  - name: [broken\n\0junk");
                server.signal("HUP");
                stats.faults.fetch_add(2, Relaxed);
                // sleep-ok: how long the broken registry stays is the fault.
                tokio::time::sleep(Duration::from_secs(2)).await;
                write_registry(&registry, &registry_with(Some(&key.fp)));
                stats.faults.fetch_add(1, Relaxed);
            }
            _ => {
                server.signal("HUP");
                stats.faults.fetch_add(1, Relaxed);
            }
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    println!("soak: RSS MiB every 5 s: {:?}", samples.lock().unwrap());
    let mail = mailer.await.unwrap();
    let mail_out = String::from_utf8_lossy(&mail.stdout).into_owned();
    assert!(
        mail.status.success(),
        "mailer: {mail_out}{}",
        String::from_utf8_lossy(&mail.stderr)
    );
    let acked: Vec<String> = mail_out
        .lines()
        .filter_map(|l| l.strip_prefix("ACK "))
        .map(str::to_string)
        .collect();
    let mail_failures: Vec<&str> = mail_out
        .lines()
        .filter(|l| !l.starts_with("ACK ") && *l != "CONN")
        .collect();
    let mail_conns = mail_out.lines().filter(|l| *l == "CONN").count();
    stats.connections.fetch_add(mail_conns as u64, Relaxed);

    // The idle pool survived every fault (its backend was never killed).
    for (i, s) in pool.iter_mut().enumerate() {
        s.write_all(b"ping\r\n").await.unwrap();
        assert_eq!(
            read_line(s).await.unwrap(),
            "ping\r\n",
            "idle connection {i}"
        );
    }
    drop(pool);
    let load_time = t_start.elapsed();

    // Open fds back to the baseline once the clients are gone.
    let mut fds_after = open_fds(pid);
    poll_until_async(Duration::from_secs(15), || {
        fds_after = open_fds(pid);
        fds_after <= fds_before + 8
    })
    .await;
    let rss_after = rss_kib(pid);
    let metrics = Command::new("curl")
        .args(["-s", &format!("http://{}/metrics", server.metrics)])
        .output()
        .expect("curl is needed");
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();
    let registry = |e: &serde_json::Value| e.get("registry").is_some();
    let (reloaded_empty, kept_last_good) = (
        server.count(|e| registry(e) && at(e, "INFO") && e.get("keys") == Some(&0.into())),
        server.count(|e| registry(e) && at(e, "WARN") && e.get("kept").is_some()),
    );
    server.stop();
    let logs = server.logs();

    // Every acknowledged mail is in the store exactly once.
    let store = frontdoor::mail::store::Store::open(&mail_dir).unwrap();
    let mut present = std::collections::HashMap::<String, usize>::new();
    for m in store.messages(ACCOUNT, "INBOX").unwrap() {
        let raw = store.read(ACCOUNT, "INBOX", m.uid).unwrap();
        let raw = String::from_utf8_lossy(&raw);
        if let Some(tok) = raw
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .map(|s| s.trim().to_string())
        {
            *present.entry(tok).or_default() += 1;
        }
    }
    let found = acked.iter().filter(|t| present.get(*t) == Some(&1)).count();

    let s = &stats;
    println!(
        "soak: duration={:.0}s connections={} handshakes_key={} (anonymous while revoked: {}) handshakes_anon={} bulk={} bytes_verified={} idle_pool={} mails_acked={} mails_present={} faults={} (echo kills={}, down probes closed={}) echo_failures_explained={} key_failures_explained={} fds_before={} fds_after={} rss_before_kib={} rss_after_kib={} metrics_connections_total={} registry_removals_applied={} broken_edits_refused={}",
        load_time.as_secs_f64(),
        s.connections.load(Relaxed),
        s.handshakes_key.load(Relaxed),
        s.key_seen_anon.load(Relaxed),
        s.handshakes_anon.load(Relaxed),
        s.bulk_ok.load(Relaxed),
        s.bytes_verified.load(Relaxed),
        IDLE_POOL,
        acked.len(),
        found,
        s.faults.load(Relaxed),
        rounds,
        s.down_probes.load(Relaxed),
        s.echo_failures_explained.load(Relaxed),
        s.key_failures_explained.load(Relaxed),
        fds_before,
        fds_after,
        rss_before,
        rss_after,
        metrics
            .lines()
            .filter(|l| l.starts_with("frontdoor_connections_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>(),
        reloaded_empty,
        kept_last_good,
    );

    assert!(no_panic(server.fd.events()), "{logs}");
    let bad = s.unexplained.lock().unwrap().clone();
    assert!(bad.is_empty(), "failures no fault explains: {bad:#?}");
    assert!(
        mail_failures.is_empty(),
        "no fault touches mail: {mail_failures:#?}"
    );
    assert!(!acked.is_empty(), "no mail was acknowledged");
    assert_eq!(found, acked.len(), "acknowledged mail missing or doubled");
    assert_eq!(s.down_probes.load(Relaxed), rounds);
    assert!(s.handshakes_key.load(Relaxed) > 0 && s.handshakes_anon.load(Relaxed) > 0);
    assert!(s.bulk_ok.load(Relaxed) > 0);
    assert!(
        fds_after <= fds_before + 8,
        "fds: {fds_before} before, {fds_after} after"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS: {rss_before} KiB before, {rss_after} KiB after"
    );
    // The removals were applied and the broken edits refused.
    assert!(reloaded_empty >= 1, "key removal not applied:\n{logs}");
    assert!(
        kept_last_good >= 1,
        "broken registry edit not refused:\n{logs}"
    );
}

const LOGINS: &str = r#"
import smtplib, ssl, sys
port, account, password, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
tag = int(sys.argv[5])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["smtp"])
for i in range(n):
    # One source address (all loopback) and one unknown name per wrong
    # password, so that the password throttles (10 failures per address, 30
    # per name) let every check through to argon2.
    src = (f"127.0.{tag}.{i % 250 + 1}", 0)
    with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=15, source_address=src) as s:
        s.login(account, password)
        try:
            s.login(f"nobody-{tag}-{i}@example.org", "wrong password")
        except smtplib.SMTPException:
            pass
print("done")
"#;

/// Password checks must not grow the server: each argon2 check used to
/// allocate and free 19 MiB, which glibc kept per thread arena (+300 MiB
/// after a few dozen logins).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_logins_keep_memory_bounded() {
    let key = make_key();
    let (echo, hold) = (Echo::start().await, Echo::start().await);
    let st = setup(&key, echo.addr, hold.addr);
    let server = Server::start(&st.config);
    let pid = server.pid();
    let run = |n: usize| {
        let out = Command::new("python3")
            .args([
                "-c",
                LOGINS,
                &server.addr.port().to_string(),
                ACCOUNT,
                PASSWORD,
                &n.to_string(),
                &n.to_string(),
            ])
            .output()
            .expect("python3 is needed");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // One login first: the checks' working memory is allocated once.
    run(1);
    let before = rss_kib(pid);
    // Parallel clients so that checks land on several blocking threads.
    let clients: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn({
                let port = server.addr.port();
                move || {
                    let tag = (20 + i).to_string();
                    Command::new("python3")
                        .args([
                            "-c",
                            LOGINS,
                            &port.to_string(),
                            ACCOUNT,
                            PASSWORD,
                            "10",
                            &tag,
                        ])
                        .output()
                        .expect("python3 is needed")
                }
            })
        })
        .collect();
    for c in clients {
        let out = c.join().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    run(10);
    let after = rss_kib(pid);
    println!("logins: RSS {before} KiB before 100 password checks, {after} KiB after");
    assert!(
        after < before + 48 * 1024,
        "RSS {before} KiB before, {after} KiB after"
    );
    assert!(no_panic(server.fd.events()), "{}", server.logs());
}
