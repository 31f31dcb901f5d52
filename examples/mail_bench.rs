//! Local delivery throughput of the bundled mail backend, end to end over
//! LMTP on loopback (parse, Received: header, durable store write with
//! fsyncs, `250`): messages per second for small messages and MB/s for large
//! ones, with several concurrent sessions.
//!
//! `cargo run --release --example mail_bench [-- SESSIONS SMALL_PER_SESSION LARGE_COUNT LARGE_MIB]`
//! The data directory is a temporary directory on the current file system's
//! temp dir (`TMPDIR`), so the figure is that disk's fsync speed.

use std::path::Path;
use std::time::Instant;

use frontdoor::config::Config;
use frontdoor::mail::config::ListenAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

async fn reply(s: &mut TcpStream, buf: &mut Vec<u8>) -> u16 {
    loop {
        if let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            if line.get(3) != Some(&b'-') {
                return String::from_utf8_lossy(&line[..3]).parse().unwrap_or(0);
            }
            continue;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return 0;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One LMTP session delivering `count` messages of `body` to alice.
async fn session(addr: std::net::SocketAddr, count: usize, body: std::sync::Arc<Vec<u8>>) -> usize {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut buf = Vec::new();
    assert_eq!(reply(&mut s, &mut buf).await, 220);
    s.write_all(b"LHLO bench\r\n").await.expect("write");
    assert_eq!(reply(&mut s, &mut buf).await, 250);
    let mut ok = 0;
    for _ in 0..count {
        // Pipelined envelope, as PIPELINING clients do.
        s.write_all(b"MAIL FROM:<bench@far.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
            .await
            .expect("write");
        for _ in 0..3 {
            reply(&mut s, &mut buf).await;
        }
        s.write_all(&body).await.expect("write");
        s.write_all(b".\r\n").await.expect("write");
        if reply(&mut s, &mut buf).await == 250 {
            ok += 1;
        }
    }
    let _ = s.write_all(b"QUIT\r\n").await;
    ok
}

fn message(size: usize) -> Vec<u8> {
    let mut m =
        b"From: <bench@far.example>\r\nTo: <alice@example.org>\r\nSubject: bench\r\n\r\n".to_vec();
    let line =
        b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n";
    while m.len() < size {
        m.extend_from_slice(line);
    }
    m
}

async fn run(addr: std::net::SocketAddr, sessions: usize, per: usize, size: usize) -> (usize, f64) {
    let body = std::sync::Arc::new(message(size));
    let t = Instant::now();
    let tasks: Vec<_> = (0..sessions)
        .map(|_| tokio::spawn(session(addr, per, body.clone())))
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap_or(0);
    }
    (ok, t.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sessions = args.first().copied().unwrap_or(8);
    let per = args.get(1).copied().unwrap_or(250);
    let large = args.get(2).copied().unwrap_or(40);
    let large_mib = args.get(3).copied().unwrap_or(4);

    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = "mail:\n  domains: [example.org]\n  data_dir: data\n  lmtp: { listen: \"127.0.0.1:0\" }\n  max_message_size: 104857600\n";
    let cfg_path = dir.path().join("frontdoor.yaml");
    std::fs::write(&cfg_path, yaml).expect("write config");
    let cfg = Config::load(Path::new(&cfg_path)).expect("config");
    frontdoor::mail::accounts::Accounts::new(
        &dir.path().join("data"),
        &["example.org".into()],
        false,
    )
    .add("alice@example.org", "pw")
    .expect("account");
    let shutdown = CancellationToken::new();
    let servers = frontdoor::mail::start(
        cfg.mail.as_ref().expect("mail section"),
        frontdoor::mail::resolve_identity_secret(&cfg).expect("identity secret"),
        shutdown.clone(),
        None,
    )
    .await
    .expect("start");
    let Some(ListenAddr::Tcp(addr)) = servers.lmtp.clone() else {
        panic!("no lmtp listener")
    };

    let small = 1024;
    let (ok, secs) = run(addr, sessions, per, small).await;
    println!(
        "small: {ok} messages of {small} bytes, {sessions} sessions: {:.0} messages/s ({secs:.2} s)",
        ok as f64 / secs
    );
    let (ok1, secs1) = run(addr, 1, per.min(200), small).await;
    println!(
        "small: {ok1} messages of {small} bytes, 1 session: {:.0} messages/s ({secs1:.2} s)",
        ok1 as f64 / secs1
    );
    let size = large_mib << 20;
    let (ok, secs) = run(addr, 2, large.div_ceil(2), size).await;
    println!(
        "large: {ok} messages of {large_mib} MiB, 2 sessions: {:.1} MB/s ({secs:.2} s)",
        (ok * size) as f64 / secs / 1e6
    );
    println!("data dir file system: {}", std::env::temp_dir().display());
    shutdown.cancel();
    servers.wait(std::time::Duration::from_secs(5)).await;
}
