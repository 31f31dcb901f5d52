//! Delivery between relays without a smarthost: two frontdoor relays
//! (`_a.chat.test` and `_b.chat.test`, each with its MX on port 25 of its
//! own loopback address), and a DNS server the test starts (Debian's
//! dnsmasq) publishing their MX, A and DKIM TXT records. Each relay's queue
//! worker finds the other's MX through `mail.dns.resolvers`, requires
//! STARTTLS and verifies the certificate against the test's CA
//! (`mail.delivery.ca_file`); the receiving MX verifies the DKIM signature
//! (`dkim=pass`). Also: a message waits in the queue while the peer is down
//! (`frontdoor mail queue` lists it) and goes once it is back (`--flush`);
//! a peer answering 550 produces a delivery report in the sender's INBOX;
//! kill -9 of the sending relay during deliveries loses nothing; in
//! chatmail mode cleartext for another relay is refused before the queue;
//! and Delta Chat 2.65 users signed up on each of two whole relays
//! (`frontdoor serve`, port 443) chat end to end across them, the relays
//! delivering to each other over HTTPS (`/mxdeliv`).
//!
//! Each test uses its own loopback addresses and DNS server, so they run
//! in parallel. Needs root (port 25), dnsmasq and python3.

mod common;
mod federation_common;
mod mail_common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::logs::str_field;
use common::poll::poll_until;
use common::Launch;
use federation_common::*;
use mail_common::{identity, proxy_header, Client, SECRET};

#[test]
fn two_relays_deliver_to_each_other_over_verified_tls_with_dkim_pass() {
    let (_dns, mut a, mut b) = pair("127.0.1.2", "127.0.1.3", "{ retry: 1s, max_retry: 2s }");
    a.start();
    b.start();
    let from_a = format!("alice@{A}");
    let from_b = format!("bob@{B}");
    assert_eq!(
        a.submit(&from_a, &from_b, "a-to-b@test"),
        Some(250),
        "{}",
        a.log()
    );
    assert_eq!(
        b.submit(&from_b, &from_a, "b-to-a@test"),
        Some(250),
        "{}",
        b.log()
    );
    for (sender, receiver) in [(&a, &b), (&b, &a)] {
        let ok = poll_until(Duration::from_secs(30), || {
            !sender.events("queue: delivered").is_empty()
                && !receiver.events("DKIM: dkim=pass").is_empty()
                && !receiver.events("delivered").is_empty()
        });
        assert!(
            ok,
            "sender:\n{}\nreceiver:\n{}",
            sender.log(),
            receiver.log()
        );
        let d = &sender.events("queue: delivered")[0];
        assert_eq!(d["tls"], serde_json::json!(true), "{d}");
        assert_eq!(str_field(d, "host"), receiver.domain, "{d}");
    }
    assert!(poll_until(Duration::from_secs(10), || a.queued() == 0));
    let at_b = b.stop_and_read(&from_b);
    let at_a = a.stop_and_read(&from_a);
    for (msgs, signer, verifier, id) in [(&at_b, A, B, "a-to-b@test"), (&at_a, B, A, "b-to-a@test")]
    {
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        let m = &msgs[0];
        assert!(m.contains(&format!("Message-ID: <{id}>")), "{m}");
        assert!(
            m.starts_with(&format!("Authentication-Results: {verifier};")),
            "{m}"
        );
        assert!(
            m.contains(&format!("dkim=pass header.d={signer} header.s=dkim-ed")),
            "{m}"
        );
        assert!(
            m.contains(&format!("dkim=pass header.d={signer} header.s=dkim ")),
            "{m}"
        );
    }
}

#[test]
fn mail_waits_in_the_queue_while_the_peer_is_down_and_goes_on_flush() {
    // A retry interval far beyond the test: only the flush sends it again.
    let (_dns, mut a, mut b) = pair("127.0.2.2", "127.0.2.3", "{ retry: 1h }");
    a.start();
    let to = format!("bob@{B}");
    let ids = ["waits1@test", "waits2@test", "waits3@test"];
    for id in ids {
        assert_eq!(a.submit(&format!("alice@{A}"), &to, id), Some(250));
    }
    // The first attempts fail (nothing on B's port 25): listed with their error.
    let mut listing = String::new();
    let listed = poll_until(Duration::from_secs(30), || {
        listing = a.queue_cli(false);
        listing.matches("attempts=1").count() == 3
    });
    assert!(listed, "{listing}\n{}", a.log());
    assert_eq!(
        listing.matches(&format!("to={to} ")).count(),
        3,
        "{listing}"
    );
    assert!(listing.contains(&format!("from=alice@{A}")), "{listing}");
    assert!(listing.lines().any(|l| l == "3 queued"), "{listing}");
    assert!(
        listing.contains("connect to _b.chat.test [127.0.2.3:25]"),
        "{listing}"
    );
    assert!(!a.events("queue: delivery deferred").is_empty());
    b.start();
    let out = a.queue_cli(true);
    assert!(out.contains("flush requested"), "{out}");
    let ok = poll_until(Duration::from_secs(30), || {
        a.events("queue: delivered").len() == 3
    });
    assert!(ok, "A:\n{}\nB:\n{}", a.log(), b.log());
    assert!(poll_until(Duration::from_secs(10), || a.queued() == 0));
    assert!(!a
        .events("queue: flush requested, retrying every entry now")
        .is_empty());
    // One connection for all three: B's replies name one session.
    let replies: Vec<String> = a
        .events("queue: delivered")
        .iter()
        .map(|e| str_field(e, "reply"))
        .collect();
    assert!(replies.iter().all(|r| r == &replies[0]), "{replies:?}");
    assert_eq!(b.events("DKIM: dkim=pass").len(), 3, "{}", b.log());
    let msgs = b.stop_and_read(&to);
    let have = message_ids(&msgs);
    for id in ids {
        assert_eq!(have.get(&format!("<{id}>")), Some(&1), "{msgs:?}");
    }
}

/// An SMTP server offering STARTTLS that refuses every recipient with 550.
const REFUSER: &str = r#"
import socket, ssl, sys
ip, crt, key = sys.argv[1], sys.argv[2], sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(crt, key)
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((ip, 25))
srv.listen(5)
print("READY", flush=True)
srv.settimeout(60)
while True:
    c, _ = srv.accept()
    c.settimeout(30)
    f = c.makefile("rb")
    c.sendall(b"220 refuser ESMTP\r\n")
    tls = False
    while True:
        line = f.readline()
        if not line:
            break
        cmd = line.strip().upper()
        if cmd.startswith(b"EHLO"):
            c.sendall(b"250-refuser\r\n250 STARTTLS\r\n" if not tls else b"250 refuser\r\n")
        elif cmd == b"STARTTLS":
            c.sendall(b"220 go ahead\r\n")
            c = ctx.wrap_socket(c, server_side=True)
            f = c.makefile("rb")
            tls = True
        elif cmd.startswith(b"MAIL"):
            c.sendall(b"250 ok\r\n")
        elif cmd.startswith(b"RCPT"):
            c.sendall(b"550 5.1.1 No such user here\r\n")
        elif cmd == b"RSET":
            c.sendall(b"250 ok\r\n")
        elif cmd == b"QUIT":
            c.sendall(b"221 bye\r\n")
            break
        else:
            c.sendall(b"502 no\r\n")
    c.close()
"#;

#[test]
fn a_refusing_peer_gives_the_sender_a_delivery_report() {
    let ca = Ca::new();
    let port = free_port();
    let c_domain = "_c.chat.test";
    let mut a = Relay::new(A, "127.0.3.2", port, &ca, "{ retry: 1s }");
    let _dns = start_dns(port, &[(A, "127.0.3.2"), (c_domain, "127.0.3.4")], &a.txt());
    let tmp = tempfile::tempdir().unwrap();
    ca.issue(tmp.path(), "c", &[c_domain]);
    let mut refuser = Command::new("python3")
        .args(["-c", REFUSER, "127.0.3.4"])
        .arg(tmp.path().join("c.crt"))
        .arg(tmp.path().join("c.key"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(refuser.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "READY");
    a.start();
    let from = format!("alice@{A}");
    let to = format!("nobody@{c_domain}");
    assert_eq!(a.submit(&from, &to, "refused@test"), Some(250));
    let ok = poll_until(Duration::from_secs(30), || {
        !a.events("queue: delivery report stored for the sender")
            .is_empty()
    });
    let _ = refuser.kill();
    let _ = refuser.wait();
    assert!(ok, "{}", a.log());
    assert!(a.queued() == 0);
    let inbox = a.stop_and_read(&from);
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    let dsn = &inbox[0];
    for want in [
        "Content-Type: multipart/report; report-type=delivery-status;",
        "From: Mail Delivery System <MAILER-DAEMON@_a.chat.test>",
        "Auto-Submitted: auto-replied",
        "Content-Type: message/delivery-status",
        &format!("Final-Recipient: rfc822; {to}"),
        "Action: failed",
        "Status: 5.1.1",
        "Remote-MTA: dns; _c.chat.test",
        "Diagnostic-Code: smtp; RCPT TO: 550 5.1.1 No such user here",
        "Content-Type: text/rfc822-headers",
        "Message-ID: <refused@test>",
    ] {
        assert!(dsn.contains(want), "{want:?} not in:\n{dsn}");
    }
    assert!(
        !dsn.contains("body of refused@test"),
        "only headers go back"
    );
}

#[test]
fn kill_9_of_the_sender_during_deliveries_loses_nothing() {
    const ROUNDS: usize = 6;
    let (_dns, mut a, mut b) = pair("127.0.4.2", "127.0.4.3", "{ retry: 1s, max_retry: 1s }");
    b.start();
    let to = format!("bob@{B}");
    let from = format!("alice@{A}");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let sent = Arc::new(Mutex::new(Vec::new()));
    for round in 0..ROUNDS {
        a.start();
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let (acked, sent, stop) = (acked.clone(), sent.clone(), stop.clone());
                let (addr, from, to) = (a.submission, from.clone(), to.clone());
                std::thread::spawn(move || {
                    let relay = Sender { addr };
                    let deadline = Instant::now() + Duration::from_secs(10);
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let id = format!("r{round}t{t}n{n}@test");
                        n += 1;
                        sent.lock().unwrap().push(format!("<{id}>"));
                        match relay.submit(&from, &to, &id) {
                            Some(250) => acked.lock().unwrap().push(format!("<{id}>")),
                            _ => return,
                        }
                    }
                })
            })
            .collect();
        // sleep-ok: the kill comes at a random moment of the deliveries; the
        // wait is the thing under test, not a stand-in for a signal.
        std::thread::sleep(Duration::from_millis(random_ms(300, 1500)));
        a.kill();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
    }
    // The last start drains what is left.
    a.start();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= ROUNDS,
        "too few messages to mean anything: {}",
        acked.len()
    );
    let drained = poll_until(Duration::from_secs(60), || a.queued() == 0);
    assert!(drained, "{}\n{}", a.queue_cli(false), a.log());
    let msgs = b.stop_and_read(&to);
    let have = message_ids(&msgs);
    let sent = sent.lock().unwrap().clone();
    for id in &acked {
        let queue_log: Vec<String> = a
            .log()
            .lines()
            .filter(|l| l.contains("queue") || l.contains("WARN") || l.contains("ERROR"))
            .map(str::to_owned)
            .collect();
        assert!(
            have.contains_key(id),
            "acknowledged {id} was never delivered; A:\n{}",
            queue_log.join("\n")
        );
    }
    // A duplicate can only come from a kill after the final dot reached the
    // peer and before the queue's mark: at most one per kill and destination.
    let dups: usize = have.values().map(|n| n - 1).sum();
    assert!(
        dups <= ROUNDS,
        "{dups} duplicates in {ROUNDS} kills: {have:?}"
    );
    for id in have.keys() {
        assert!(sent.contains(id), "{id} was never sent");
    }
    eprintln!(
        "federation crash: {ROUNDS} kills, {} sent, {} acknowledged, {} delivered, {dups} duplicates",
        sent.len(),
        acked.len(),
        have.len()
    );
}

/// A submission client for the crash test's threads (a Relay is not Send).
struct Sender {
    addr: SocketAddr,
}

impl Sender {
    fn submit(&self, from: &str, to: &str, msg_id: &str) -> Option<u16> {
        let header = proxy_header(Some(identity(from)), Some(SECRET));
        let mut c = Client::try_connect(self.addr, Some(&header))?;
        c.try_reply()?;
        c.send_try("EHLO client\r\n")?;
        c.try_reply()?;
        c.send_try(&format!("MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n"))?;
        for _ in 0..3 {
            if c.try_reply()?.0 >= 400 {
                return None;
            }
        }
        c.send_try(&format!(
            "From: <{from}>\r\nTo: <{to}>\r\nSubject: test\r\nMessage-ID: <{msg_id}>\r\n\r\nbody of {msg_id}\r\n.\r\n"
        ))?;
        Some(c.try_reply()?.0)
    }
}

trait SendTry {
    fn send_try(&mut self, s: &str) -> Option<()>;
}

impl SendTry for Client {
    fn send_try(&mut self, s: &str) -> Option<()> {
        self.s.write_all(s.as_bytes()).ok()
    }
}

#[test]
fn in_chatmail_mode_cleartext_for_another_relay_is_refused_before_the_queue() {
    let ca = Ca::new();
    let port = free_port();
    // Chatmail mode: direct delivery is its default (no `relay`).
    let mut a = Relay::new(A, "127.0.5.2", port, &ca, "{ retry: 1s }\n  chatmail: {}");
    let _dns = start_dns(port, &[(A, "127.0.5.2")], &a.txt());
    a.start();
    let from = format!("alice@{A}");
    assert_eq!(
        a.submit(&from, &format!("bob@{B}"), "clear@test"),
        Some(523),
        "{}",
        a.log()
    );
    assert_eq!(a.queued(), 0);
    assert!(a.events("queued for delivery").is_empty());
    let refused = a.events("chatmail rule: outgoing mail refused");
    assert_eq!(refused.len(), 1, "{}", a.log());
}

/// Delta Chat core 2.65 end to end across two relays: sign-up by QR on
/// each, an encrypted message each way, relayed MX to MX with DKIM.
/// `_a.chat.test` and `_b.chat.test` resolve to 127.0.0.2 and 127.0.0.3
/// through /etc/hosts for Delta Chat (`.ci/setup` adds them); the relays
/// find each other's MX and keys through the test's dnsmasq.
#[test]
fn delta_chat_users_on_two_relays_chat_end_to_end() {
    use std::net::ToSocketAddrs;
    for (d, ip) in [(A, "127.0.0.2"), (B, "127.0.0.3")] {
        let got: Vec<_> = (d, 443)
            .to_socket_addrs()
            .unwrap_or_else(|e| {
                panic!("{d} does not resolve ({e}): add it to /etc/hosts as .ci/setup does")
            })
            .collect();
        assert!(
            got.iter().any(|a| a.ip().to_string() == ip),
            "{d} must resolve to {ip} (/etc/hosts, as .ci/setup does): {got:?}"
        );
    }
    let ca = Ca::new();
    let port = free_port();
    let dir_a = chatmail_relay(A, "127.0.0.2", port, &ca);
    let dir_b = chatmail_relay(B, "127.0.0.3", port, &ca);
    let mut txt = dkim_txt(&dir_a.path().join("data"), A);
    txt.extend(dkim_txt(&dir_b.path().join("data"), B));
    let _dns = start_dns(port, &[(A, "127.0.0.2"), (B, "127.0.0.3")], &txt);
    let relay_a = Launch::new(["serve", "--config"])
        .arg(dir_a.path().join("frontdoor.yaml"))
        .start();
    let relay_b = Launch::new(["serve", "--config"])
        .arg(dir_b.path().join("frontdoor.yaml"))
        .start();
    let within = Duration::from_secs(240);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/deltachat/two_relays.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args([A, B])
        .arg(dir_a.path().join("dc-accounts"))
        .arg(within.as_secs().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with deltachat-rpc-client (.ci/setup installs it)");
    let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || std::io::read_to_string(out).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(err).unwrap_or_default());
    let mut status = None;
    poll_until(within + Duration::from_secs(30), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let diag = || {
        format!(
            "stdout:\n{out}\nstderr:\n{err}\nA:\n{}\nB:\n{}",
            relay_a.log.text(),
            relay_b.log.text()
        )
    };
    assert!(status.is_some_and(|s| s.success()), "{}", diag());
    eprintln!("{err}");
    let line = |prefix: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{out}"))
            .trim()
            .to_owned()
    };
    assert!(line("VERSION ").contains("2.65.0"), "{out}");
    assert!(line("CONFIGURED A ").ends_with(&format!("@{A}")), "{out}");
    assert!(line("CONFIGURED B ").ends_with(&format!("@{B}")), "{out}");
    // Received, and shown with the padlock: end-to-end encrypted.
    assert_eq!(
        line("RECEIVED B "),
        "1 hello from A on the first relay",
        "{out}"
    );
    assert_eq!(
        line("RECEIVED A "),
        "1 hello from B on the second relay",
        "{out}"
    );
    // Each way: queued and delivered over TLS by the sender's worker, and
    // the receiving MX's rules logged dkim=pass for it.
    for (sender, receiver, peer) in [(&relay_a, &relay_b, B), (&relay_b, &relay_a, A)] {
        let delivered = sender
            .log
            .event(|e| str_field(e, "message") == "queue: delivered")
            .unwrap_or_else(|| panic!("no delivery: {}", diag()));
        assert_eq!(str_field(&delivered, "host"), peer, "{delivered}");
        assert_eq!(delivered["tls"], serde_json::json!(true), "{delivered}");
        // Whole relays deliver to each other over HTTPS (`/mxdeliv`).
        assert_eq!(str_field(&delivered, "via"), "https", "{delivered}");
        assert!(
            receiver
                .log
                .count(|e| str_field(e, "message") == "DKIM: dkim=pass")
                >= 1,
            "{}",
            diag()
        );
    }
}
