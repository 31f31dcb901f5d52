//! Outbound queue figures: memory per queued message (the in-memory index;
//! the bytes stay on disk) and delivery throughput to a local peer (an SMTP
//! sink with STARTTLS on 127.0.0.1, reached through the implicit MX of
//! `*.localhost` names, which the resolver answers without DNS).
//!
//! `cargo run --release --example queue_bench -- [MESSAGES] [DOMAINS]`
//! (defaults 2000 and 1, then the same with 8 domains).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use frontdoor::mail::accounts::Accounts;
use frontdoor::mail::config::{DeliveryTls, MailConfig};
use frontdoor::mail::store::queue::Queue;
use frontdoor::mail::store::Store;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// After TLS: EHLO, MAIL, RCPT, DATA (counted), RSET, QUIT.
async fn after_tls<S: AsyncRead + AsyncWrite + Unpin>(s: S, count: Arc<AtomicU64>) {
    let mut s = BufReader::new(s);
    let mut line = String::new();
    let mut in_data = false;
    loop {
        line.clear();
        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let reply: &[u8] = if in_data {
            if line == ".\r\n" {
                in_data = false;
                count.fetch_add(1, Ordering::Relaxed);
                b"250 ok\r\n"
            } else {
                continue;
            }
        } else {
            let up = line.to_ascii_uppercase();
            if up.starts_with("EHLO") {
                b"250-sink\r\n250 SMTPUTF8\r\n"
            } else if up.starts_with("DATA") {
                in_data = true;
                b"354 go\r\n"
            } else if up.starts_with("QUIT") {
                let _ = s.get_mut().write_all(b"221 bye\r\n").await;
                return;
            } else {
                b"250 ok\r\n"
            }
        };
        if s.get_mut().write_all(reply).await.is_err() {
            return;
        }
    }
}

async fn sink(l: TcpListener, acceptor: tokio_rustls::TlsAcceptor, count: Arc<AtomicU64>) {
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        let (acceptor, count) = (acceptor.clone(), count.clone());
        tokio::spawn(async move {
            let _ = s.write_all(b"220 sink\r\n").await;
            let mut r = BufReader::new(&mut s);
            let mut line = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let up = line.to_ascii_uppercase();
                if up.starts_with("EHLO") {
                    let _ = r.get_mut().write_all(b"250-sink\r\n250 STARTTLS\r\n").await;
                } else if up.starts_with("STARTTLS") {
                    let _ = r.get_mut().write_all(b"220 go\r\n").await;
                    break;
                } else {
                    let _ = r.get_mut().write_all(b"530 tls first\r\n").await;
                }
            }
            if let Ok(tls) = acceptor.accept(s).await {
                after_tls(tls, count).await;
            }
        });
    }
}

async fn run(n: usize, domains: usize) {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["sink.localhost".to_string()]).unwrap();
    let cert = rustls::pki_types::CertificateDer::from(ck.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.key_pair.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let scfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let count = Arc::new(AtomicU64::new(0));
    let sink_task = tokio::spawn(sink(
        l,
        tokio_rustls::TlsAcceptor::from(Arc::new(scfg)),
        count.clone(),
    ));

    // Fill the queue first (peer unknown to the worker until it starts).
    let data = dir.path().to_owned();
    let before = rss_kib();
    let msg = {
        let mut m =
            b"From: <a@bench.example>\r\nTo: <b@peer.localhost>\r\nSubject: bench\r\n\r\n".to_vec();
        m.extend(std::iter::repeat_n(b'x', 1024));
        m.extend_from_slice(b"\r\n");
        m
    };
    let t0 = Instant::now();
    let (queued_rss, fill) = {
        let data = data.clone();
        tokio::task::spawn_blocking(move || {
            let q = Arc::new(Queue::open(&data).unwrap());
            let threads: Vec<_> = (0..8)
                .map(|t| {
                    let (q, msg) = (q.clone(), msg.clone());
                    std::thread::spawn(move || {
                        for i in (t..n).step_by(8) {
                            let rcpt = format!("b{i}@peer{}.localhost", i % domains);
                            q.enqueue("a@bench.example", &[rcpt], &msg).unwrap();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            (rss_kib(), q.len())
        })
        .await
        .unwrap()
    };
    let fill_s = t0.elapsed().as_secs_f64();
    // The index as the server holds it: opened from the files, fresh.
    let reopen = {
        let data = data.clone();
        tokio::task::spawn_blocking(move || {
            let r0 = rss_kib();
            let q = Queue::open(&data).unwrap();
            let r1 = rss_kib();
            (q.len(), r1.saturating_sub(r0))
        })
        .await
        .unwrap()
    };

    let mut cfg = MailConfig::with_data_dir(data.clone());
    cfg.domains = vec!["bench.example".into()];
    cfg.hostname = "bench.example".into();
    cfg.delivery.direct = true;
    cfg.delivery.tls = DeliveryTls::Encrypt;
    cfg.delivery.port = port;
    let cfg = Arc::new(cfg);
    let store = Store::open(&data).unwrap();
    let accounts = Accounts::from_config(&cfg);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    let t1 = Instant::now();
    let handle =
        frontdoor::mail::delivery::start(cfg, store, accounts, shutdown.clone(), &tracker).unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    while handle.depth() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = t1.elapsed().as_secs_f64();
    let delivered = count.load(Ordering::Relaxed);
    shutdown.cancel();
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
    sink_task.abort();
    println!(
        "{n} messages of {} bytes, {domains} destination domain(s): queued in {fill_s:.1} s ({:.0}/s, 8 threads); \
         RSS +{} KiB while queueing ({:.0} B per message), index re-read {} entries +{} KiB ({:.0} B per message); \
         delivered {delivered} in {secs:.1} s = {:.0} messages/s",
        msg_len(),
        fill as f64 / fill_s,
        queued_rss.saturating_sub(before),
        queued_rss.saturating_sub(before) as f64 * 1024.0 / n as f64,
        reopen.0,
        reopen.1,
        reopen.1 as f64 * 1024.0 / n as f64,
        delivered as f64 / secs,
    );
}

fn msg_len() -> usize {
    b"From: <a@bench.example>\r\nTo: <b@peer.localhost>\r\nSubject: bench\r\n\r\n".len() + 1026
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(2000);
    match args.get(1) {
        Some(d) => run(n, *d).await,
        None => {
            run(n, 1).await;
            run(n, 8).await;
        }
    }
}
