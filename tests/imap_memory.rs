//! What an idle IMAP session costs: 2000 sessions (PREAUTH, SELECT INBOX,
//! IDLE) over Unix socket pairs, resident memory measured before and after
//! (`/proc/self/statm`), the figure printed. The bound is loose, to catch a
//! per-session buffer that outlives its data, not to benchmark.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use frontdoor::mail::accounts::Accounts;
use frontdoor::mail::config::MailConfig;
use frontdoor::mail::imap::session::{serve, ImapContext};
use frontdoor::mail::peer::{PeerInfo, Source};
use frontdoor::mail::store::Store;
use frontdoor::proxy_protocol::IdentityTlvs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const SESSIONS: usize = 2000;

/// Resident memory once two readings in a row agree (bounded): freed
/// buffers and allocator caches have settled.
async fn settled_rss() -> u64 {
    let mut last = rss_bytes();
    common::poll_until_async(Duration::from_secs(2), || {
        let now = rss_bytes();
        let same = now == last;
        last = now;
        same
    })
    .await;
    last
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

async fn read_until(s: &mut UnixStream, needle: &[u8]) {
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.windows(needle.len()).any(|w| w == needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, s.read(&mut chunk))
            .await
            .expect("reply in time")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_cheap() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = MailConfig::with_data_dir(dir.path().to_owned());
    cfg.domains = vec!["example.org".into()];
    let store = Store::open(dir.path()).unwrap();
    let accounts = Accounts::new(dir.path(), &cfg.domains, false);
    accounts.add("alice@example.org", "alice-pw").unwrap();
    store
        .deliver(
            &["alice@example.org".into()],
            b"Subject: x\r\n\r\nhello\r\n",
        )
        .unwrap();
    let ctx = Arc::new(ImapContext::new(store.clone(), accounts, Arc::new(cfg)));
    let mut peer = PeerInfo::direct(Source::Unix { uid: None });
    peer.identity = Some(IdentityTlvs {
        account: "alice@example.org".into(),
        login: "alice@example.org".into(),
        key_name: "k".into(),
        fingerprint: [1; 32],
        no_imap_preauth: false,
    });

    // Warm up allocator pools and the blocking thread pool first.
    let mut clients = Vec::with_capacity(SESSIONS + 50);
    let open = |ctx: Arc<ImapContext>, peer: PeerInfo| async move {
        let (mut c, s) = UnixStream::pair().unwrap();
        tokio::spawn(async move {
            let _ = serve(s, peer, ctx).await;
        });
        read_until(&mut c, b"PREAUTH").await;
        c.write_all(b"a SELECT INBOX\r\nb IDLE\r\n").await.unwrap();
        read_until(&mut c, b"+ idling\r\n").await;
        c
    };
    for _ in 0..50 {
        clients.push(open(ctx.clone(), peer.clone()).await);
    }
    let before = settled_rss().await;
    for _ in 0..SESSIONS {
        clients.push(open(ctx.clone(), peer.clone()).await);
    }
    let after = settled_rss().await;
    let per = after.saturating_sub(before) / SESSIONS as u64;
    println!("resident memory per idle IMAP session (in IDLE): {per} bytes ({SESSIONS} sessions)");
    assert!(per < 32 * 1024, "{per} bytes per idle session");

    // They are all really idling: one delivery wakes every one of them.
    store
        .deliver(&["alice@example.org".into()], b"Subject: y\r\n\r\nhi\r\n")
        .unwrap();
    for c in clients.iter_mut().step_by(97) {
        read_until(c, b"* 2 EXISTS\r\n").await;
    }
}
