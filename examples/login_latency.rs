//! Password login latency of the bundled IMAP server, unloaded and while
//! other connections from another client address send wrong passwords.
//!
//! `cargo run --release --example login_latency [-- FLOODERS LOGINS]`
//! (defaults: 60 flooding connections, 25 timed logins per phase).
//!
//! The IMAP server runs in this process on loopback behind PROXY v2
//! headers, which say which client address each connection is from: the
//! timed logins come from 198.51.100.1, the flood from 192.0.2.66. Each timed
//! login is a fresh connection; the figure is the LOGIN command's round trip
//! (argon2 check included), median and 90th percentile.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use frontdoor::config::Config;
use frontdoor::mail::config::ListenAddr;
use frontdoor::proxy_protocol::{encode_v2, ConnInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr, client: &str) -> std::io::Result<Conn> {
        let mut s = TcpStream::connect(addr).await?;
        let header = encode_v2(
            &ConnInfo {
                src: client.parse().map_err(std::io::Error::other)?,
                dst: "127.0.0.1:993".parse().map_err(std::io::Error::other)?,
                alpn: None,
                authority: None,
                unique_id: None,
                ssl: None,
                identity: None,
            },
            None,
        );
        s.write_all(&header).await?;
        let mut c = Conn { s, buf: Vec::new() };
        c.line().await?; // greeting
        Ok(c)
    }

    async fn line(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let l: Vec<u8> = self.buf.drain(..=i).collect();
                return Ok(String::from_utf8_lossy(&l).into_owned());
            }
            let mut chunk = [0u8; 4096];
            let n = self.s.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The tagged reply to `tag cmd`.
    async fn cmd(&mut self, tag: &str, cmd: &str) -> std::io::Result<String> {
        self.s
            .write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .await?;
        loop {
            let l = self.line().await?;
            if l.starts_with(tag) {
                return Ok(l);
            }
        }
    }
}

async fn timed_login(addr: SocketAddr) -> Duration {
    let mut c = Conn::open(addr, "198.51.100.1:40000")
        .await
        .expect("connect");
    let t0 = Instant::now();
    let r = c
        .cmd("a1", "LOGIN alice@example.org alice-pw")
        .await
        .expect("login reply");
    let took = t0.elapsed();
    assert!(r.starts_with("a1 OK"), "correct login refused: {r}");
    let _ = c.cmd("a2", "LOGOUT").await;
    took
}

fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        ms(v[v.len() / 2]),
        ms(v[v.len() * 9 / 10]),
        ms(v[v.len() - 1])
    )
}

#[derive(Default)]
struct Counts {
    checked: AtomicU64,
    refused: AtomicU64,
    other: AtomicU64,
}

async fn flooder(addr: SocketAddr, port: u16, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut c) = Conn::open(addr, &format!("192.0.2.66:{port}")).await else {
            continue;
        };
        for tag in ["f1", "f2"] {
            match c.cmd(tag, "LOGIN bob@example.org wrong-password").await {
                Ok(r) if r.contains("[AUTHENTICATIONFAILED]") => &counts.checked,
                Ok(r) if r.contains("[UNAVAILABLE]") => &counts.refused,
                _ => &counts.other,
            }
            .fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let flooders = args.first().copied().unwrap_or(60);
    let logins = args.get(1).copied().unwrap_or(25).max(2);

    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = "mail:\n  domains: [example.org]\n  data_dir: data\n  trusted_proxies: [\"127.0.0.0/8\"]\n  imap: { listen: \"127.0.0.1:0\" }\n";
    let cfg_path = dir.path().join("frontdoor.yaml");
    std::fs::write(&cfg_path, yaml).expect("write config");
    let cfg = Config::load(Path::new(&cfg_path)).expect("config");
    let accounts = frontdoor::mail::accounts::Accounts::new(
        &dir.path().join("data"),
        &["example.org".into()],
        false,
    );
    accounts
        .add("alice@example.org", "alice-pw")
        .expect("account");
    accounts.add("bob@example.org", "bob-pw").expect("account");
    let shutdown = CancellationToken::new();
    let servers = frontdoor::mail::start(
        cfg.mail.as_ref().expect("mail section"),
        frontdoor::mail::resolve_identity_secret(&cfg).expect("identity secret"),
        shutdown.clone(),
        None,
    )
    .await
    .expect("start");
    let Some(ListenAddr::Tcp(addr)) = servers.imap.clone() else {
        panic!("no imap listener")
    };

    timed_login(addr).await; // warm-up
    let mut unloaded = Vec::new();
    for _ in 0..logins {
        unloaded.push(timed_login(addr).await);
    }
    println!("unloaded: {logins} logins: {}", summary(unloaded));

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let tasks: Vec<_> = (0..flooders)
        .map(|i| {
            tokio::spawn(flooder(
                addr,
                40_000 + i as u16,
                stop.clone(),
                counts.clone(),
            ))
        })
        .collect();
    // Let the flood reach its steady state first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut loaded = Vec::new();
    for _ in 0..logins {
        loaded.push(timed_login(addr).await);
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    println!(
        "under a flood of {flooders} connections sending wrong passwords from another address: {logins} logins: {}",
        summary(loaded)
    );
    println!(
        "flood: {} wrong passwords checked, {} refused before checking, {} other replies",
        counts.checked.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
        counts.other.load(Ordering::Relaxed)
    );
    shutdown.cancel();
    servers.wait(Duration::from_secs(5)).await;
}
