//! What COMPRESS=DEFLATE costs an idle IMAP session: N sessions of the
//! bundled IMAP server (in this process, over Unix socket pairs, with the
//! binary's allocator) log in, optionally turn on `COMPRESS DEFLATE`, select
//! INBOX and enter IDLE; resident memory (`/proc/self/statm`) is measured
//! before and after, and the difference per session printed, for plain and
//! compressed sessions. The clients keep no compression state once their
//! session idles (their inflater is dropped after `+ idling`), so the
//! figure is the server's.
//!
//! Also printed: what one compressor costs while output flows (sessions
//! drop it when they rest).
//!
//! `cargo run --release --example imap_compress_memory -- [N]` (default 2000)

use std::sync::Arc;
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use frontdoor::mail::accounts::Accounts;
use frontdoor::mail::chatmail::ChatmailConfig;
use frontdoor::mail::config::MailConfig;
use frontdoor::mail::imap::session::{serve, ImapContext};
use frontdoor::mail::peer::{PeerInfo, Source};
use frontdoor::mail::store::Store;
use frontdoor::proxy_protocol::IdentityTlvs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Read until `needle` shows up in the (inflated, if `inflate`) stream.
async fn read_until(s: &mut UnixStream, mut inflate: Option<&mut Decompress>, needle: &[u8]) {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !got.windows(needle.len()).any(|w| w == needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => n,
            other => panic!("no {needle:?} in time: {other:?}"),
        };
        match inflate.as_deref_mut() {
            Some(d) => {
                let mut out = Vec::with_capacity(64 * 1024);
                d.decompress_vec(&chunk[..n], &mut out, FlushDecompress::Sync)
                    .expect("valid deflate from the server");
                got.extend_from_slice(&out);
            }
            None => got.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The client's compressed `SELECT` and `IDLE`: the same bytes for every
/// session, since each client stream starts fresh.
fn compressed_commands() -> Vec<u8> {
    let mut c = Compress::new(Compression::new(6), false);
    let mut out = Vec::with_capacity(1024);
    c.compress_vec(
        b"b SELECT INBOX\r\nc IDLE\r\n",
        &mut out,
        FlushCompress::Sync,
    )
    .expect("compress");
    out
}

async fn open(ctx: Arc<ImapContext>, peer: PeerInfo, compress: bool, cmds: &[u8]) -> UnixStream {
    let (mut c, s) = UnixStream::pair().expect("socket pair");
    tokio::spawn(async move {
        let _ = serve(s, peer, ctx).await;
    });
    read_until(&mut c, None, b"PREAUTH").await;
    if compress {
        c.write_all(b"a COMPRESS DEFLATE\r\n").await.expect("write");
        read_until(&mut c, None, b"a OK").await;
        c.write_all(cmds).await.expect("write");
        let mut d = Decompress::new(false);
        read_until(&mut c, Some(&mut d), b"+ idling\r\n").await;
    } else {
        c.write_all(b"b SELECT INBOX\r\nc IDLE\r\n")
            .await
            .expect("write");
        read_until(&mut c, None, b"+ idling\r\n").await;
    }
    c
}

/// Bytes per idle session for `n` sessions.
async fn measure(n: usize, compress: bool) -> u64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = MailConfig::with_data_dir(dir.path().to_owned());
    cfg.domains = vec!["example.org".into()];
    cfg.chatmail = Some(ChatmailConfig {
        imap_compress: true,
        ..ChatmailConfig::default()
    });
    let store = Store::open(dir.path()).expect("store");
    let accounts = Accounts::new(dir.path(), &cfg.domains, false);
    accounts
        .add("alice@example.org", "alice-pw")
        .expect("account");
    store
        .deliver(
            &["alice@example.org".into()],
            b"Subject: x\r\n\r\nhello\r\n",
        )
        .expect("deliver");
    let ctx = Arc::new(ImapContext::new(store, accounts, Arc::new(cfg)));
    let mut peer = PeerInfo::direct(Source::Unix { uid: None });
    peer.identity = Some(IdentityTlvs {
        account: "alice@example.org".into(),
        login: "alice@example.org".into(),
        key_name: "k".into(),
        fingerprint: [1; 32],
        no_imap_preauth: false,
    });
    let cmds = compressed_commands();
    // Let the allocator return the password hash's 19 MiB first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut clients = Vec::with_capacity(n + 50);
    // Warm up allocator pools and the blocking thread pool first.
    for _ in 0..50 {
        clients.push(open(ctx.clone(), peer.clone(), compress, &cmds).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_bytes();
    for _ in 0..n {
        clients.push(open(ctx.clone(), peer.clone(), compress, &cmds).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_bytes();
    eprintln!("compress={compress}: RSS {before} -> {after} bytes");
    drop(clients);
    after.saturating_sub(before) / n as u64
}

/// Each mode runs in a process of its own (this program, run again with
/// `plain N` or `deflate N`), so one's freed memory cannot hide the other's.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .rev()
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    if args.get(1).map(String::as_str) == Some("compressor") {
        // One compressor as a session holds it while output flows.
        let before = rss_bytes();
        let mut held = Vec::with_capacity(n);
        for _ in 0..n {
            let mut c = Compress::new(Compression::new(6), false);
            let mut out = Vec::with_capacity(256);
            let _ = c.compress_vec(b"* 1 EXISTS\r\n", &mut out, FlushCompress::Sync);
            held.push(c);
        }
        println!("{}", rss_bytes().saturating_sub(before) / n as u64);
        return;
    }
    if let Some(mode @ ("plain" | "deflate")) = args.get(1).map(String::as_str) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let per = rt.block_on(measure(n, mode == "deflate"));
        println!("{per}");
        return;
    }
    let run = |mode: &str| -> u64 {
        let exe = std::env::current_exe().expect("own path");
        let out = std::process::Command::new(exe)
            .args([mode, &n.to_string()])
            .output()
            .expect("run a measurement");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    };
    let plain = run("plain");
    let deflate = run("deflate");
    let compressor = run("compressor");
    println!("{n} idle IMAP sessions (SELECT INBOX, IDLE), resident memory per session:");
    println!("  plain:            {:>7.1} KiB", plain as f64 / 1024.0);
    println!("  COMPRESS=DEFLATE: {:>7.1} KiB", deflate as f64 / 1024.0);
    println!(
        "  difference:       {:>7.1} KiB",
        (deflate as f64 - plain as f64) / 1024.0
    );
    println!(
        "a compressor while output flows (dropped when the session rests): {:.1} KiB",
        compressor as f64 / 1024.0
    );
}
