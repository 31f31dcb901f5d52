//! Crash safety: deliveries in a loop while the server is killed with
//! SIGKILL at random moments, many rounds. Afterwards every message that got
//! its `250` is in the store exactly once (for each recipient), no message is
//! there twice, and the store opens clean.

mod common;
mod mail_common;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mail_common::*;

const ROUNDS: usize = 20;

fn random_ms(lo: u64, hi: u64) -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    lo + u64::from_le_bytes(b) % (hi - lo)
}

/// Deliver to alice and bob until the connection breaks; push acked tokens.
fn sender(
    addr: SocketAddr,
    lmtp: bool,
    prefix: String,
    acked: Arc<Mutex<Vec<String>>>,
    sent: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) {
    let header = (!lmtp).then(|| proxy_header(Some(identity("alice@example.org")), Some(SECRET)));
    let Some(mut c) = Client::try_connect(addr, header.as_deref()) else {
        return;
    };
    if c.try_reply().is_none() {
        return;
    }
    let hello = if lmtp { "LHLO x\r\n" } else { "EHLO x\r\n" };
    c.send(hello);
    if c.try_reply().is_none() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let token = format!("{prefix}-{n}");
        n += 1;
        let msg = message("alice@example.org", "bob@example.org", &token);
        let script = "MAIL FROM:<alice@example.org>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n";
        sent.lock().unwrap().push(token.clone());
        // A write may fail once the server is gone: then the message is unacked.
        use std::io::Write;
        if c.s.write_all(script.as_bytes()).is_err() {
            return;
        }
        for _ in 0..4 {
            match c.try_reply() {
                Some((code, _)) if code < 400 => {}
                _ => return,
            }
        }
        if c.s.write_all(format!("{msg}.\r\n").as_bytes()).is_err() {
            return;
        }
        let replies = if lmtp { 2 } else { 1 };
        for _ in 0..replies {
            match c.try_reply() {
                Some((250, _)) => {}
                _ => return,
            }
        }
        acked.lock().unwrap().push(token);
    }
}

fn tokens_in(st: &frontdoor::mail::store::Store, account: &str) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for msg in st.messages(account, "INBOX").unwrap() {
        let raw = String::from_utf8(st.read(account, "INBOX", msg.uid).unwrap()).unwrap();
        assert_eq!(raw.len() as u64, msg.size);
        let subject = raw
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_else(|| panic!("message without subject: {raw}"))
            .to_string();
        assert!(
            raw.ends_with(&format!("body {subject}\r\n")),
            "truncated message: {raw}"
        );
        *m.entry(subject).or_insert(0) += 1;
    }
    m
}

#[test]
fn kill_9_during_deliveries_loses_and_duplicates_nothing() {
    let started = Instant::now();
    let mut srv = Server::new(Opts::default());
    let acked = Arc::new(Mutex::new(Vec::new()));
    let sent = Arc::new(Mutex::new(Vec::new()));
    for round in 0..ROUNDS {
        if round > 0 {
            // Restarting is itself the check that the store opens after a crash.
            srv.start();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = [(srv.lmtp, true), (srv.submission, false), (srv.lmtp, true)]
            .into_iter()
            .enumerate()
            .map(|(i, (addr, lmtp))| {
                let (a, s, st) = (acked.clone(), sent.clone(), stop.clone());
                std::thread::spawn(move || sender(addr, lmtp, format!("r{round}t{i}"), a, s, st))
            })
            .collect();
        // sleep-ok: the crash comes at a random moment of the deliveries; the
        // wait is the thing under test, not a stand-in for a signal.
        std::thread::sleep(Duration::from_millis(random_ms(20, 400)));
        srv.kill();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
    }
    let st = srv.stop_and_open_store();
    let acked = acked.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    assert!(
        acked.len() > ROUNDS,
        "too few deliveries to mean anything: {}",
        acked.len()
    );
    for account in ["alice@example.org", "bob@example.org"] {
        let have = tokens_in(&st, account);
        for t in &acked {
            assert_eq!(
                have.get(t),
                Some(&1),
                "{account}: acknowledged {t} must be there exactly once"
            );
        }
        for (t, n) in &have {
            assert_eq!(*n, 1, "{account}: {t} stored {n} times");
            assert!(sent.contains(t), "{account}: {t} was never sent");
        }
        // UIDs strictly increase and UIDNEXT is above them all.
        let msgs = st.messages(account, "INBOX").unwrap();
        let status = st.status(account, "INBOX").unwrap();
        assert!(msgs.windows(2).all(|w| w[0].uid < w[1].uid));
        assert!(msgs.last().is_none_or(|m| m.uid < status.uidnext));
    }
    eprintln!(
        "{} rounds, {} sent, {} acknowledged, {:?}",
        ROUNDS,
        sent.len(),
        acked.len(),
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}
