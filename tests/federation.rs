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
//! (`frontdoor serve`, port 443) chat end to end across them.
//!
//! Each test uses its own loopback addresses and DNS server, so they run
//! in parallel. Needs root (port 25), dnsmasq and python3.

mod common;
mod mail_common;

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::logs::str_field;
use common::poll::poll_until;
use common::{Launch, Process};
use mail_common::{identity, proxy_header, Client, BIN, SECRET, SECRET_TEXT};

const A: &str = "_a.chat.test";
const B: &str = "_b.chat.test";

/// dnsmasq in the foreground, no upstream, no hosts file; killed on drop.
struct Dns(Child);

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free for both UDP and TCP (dnsmasq binds both), outside the
/// kernel's ephemeral range so that no outgoing connection takes it
/// between this check and dnsmasq's bind.
fn free_port() -> u16 {
    for _ in 0..200 {
        let p = 20000 + (random_ms(0, 12000) as u16);
        let tcp = std::net::TcpListener::bind(("127.0.0.1", p));
        let udp = UdpSocket::bind(("127.0.0.1", p));
        if tcp.is_ok() && udp.is_ok() {
            return p;
        }
    }
    panic!("no free port for dnsmasq");
}

/// A DNS query for `name` of type `qtype` (RFC 1035 §4.1).
fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q
}

/// dnsmasq on 127.0.0.1:`port`: for each (domain, ip) an MX record naming
/// the domain itself and its A record; and the TXT records given.
fn start_dns(port: u16, hosts: &[(&str, &str)], txt: &[(String, String)]) -> Dns {
    let mut cmd = Command::new("dnsmasq");
    cmd.args([
        "--keep-in-foreground",
        "--no-daemon",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        "--pid-file=",
        "--user=root",
        &format!("--port={port}"),
    ]);
    for (d, ip) in hosts {
        cmd.arg(format!("--mx-host={d},{d},10"));
        cmd.arg(format!("--host-record={d},{ip}"));
    }
    for (name, value) in txt {
        let parts: Vec<String> = value
            .as_bytes()
            .chunks(250)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        cmd.arg(format!("--txt-record={name},{}", parts.join(",")));
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq is needed for this test (.ci/setup installs dnsmasq-base)");
    let dns = Dns(child);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let q = query(hosts[0].0, 15);
    let mut buf = [0u8; 4096];
    let mut dns = dns;
    for _ in 0..50 {
        if let Ok(Some(st)) = dns.0.try_wait() {
            panic!("dnsmasq exited ({st}) on port {port}");
        }
        let _ = sock.send_to(&q, ("127.0.0.1", port));
        if let Ok(n) = sock.recv(&mut buf) {
            if n > 12 && u16::from_be_bytes([buf[6], buf[7]]) > 0 {
                return dns;
            }
        }
    }
    panic!("dnsmasq did not answer");
}

/// The test's certificate authority.
struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "federation test CA");
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A server certificate for `names`, PEM files `<stem>.crt/.key` in `dir`.
    fn issue(&self, dir: &Path, stem: &str, names: &[&str]) {
        let key = rcgen::KeyPair::generate().unwrap();
        let p =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        std::fs::write(dir.join(format!("{stem}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
    }

    fn write(&self, path: &Path) {
        std::fs::write(path, self.cert.pem()).unwrap();
    }
}

/// One relay: `frontdoor mail serve` with submission (PROXY header, as
/// behind the front door), the MX on `ip:25` with a certificate from the
/// CA, direct delivery, DKIM verification.
struct Relay {
    domain: &'static str,
    dir: tempfile::TempDir,
    process: Option<Process>,
    submission: SocketAddr,
}

impl Relay {
    fn new(domain: &'static str, ip: &str, dns_port: u16, ca: &Ca, queue: &str) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("secret"), format!("{SECRET_TEXT}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
        ca.write(&p.join("ca.pem"));
        ca.issue(p, "mx", &[domain]);
        let yaml = format!(
            "client_auth:\n  registry: keys.yaml\n  identity_secret: secret\n\
             tls:\n  certificates:\n    - cert: mx.crt\n      key: mx.key\n\
             mail:\n  domains: [\"{domain}\"]\n  hostname: \"{domain}\"\n  data_dir: data\n\
             \x20 submission: {{ listen: \"127.0.0.1:0\" }}\n\
             \x20 inbound: {{ listen: \"{ip}:25\" }}\n\
             \x20 dns: {{ resolvers: [\"127.0.0.1:{dns_port}\"] }}\n\
             \x20 dkim: {{ verify: true }}\n\
             \x20 delivery: {{ direct: true, ca_file: ca.pem }}\n\
             \x20 queue: {queue}\n"
        );
        std::fs::write(p.join("frontdoor.yaml"), yaml).unwrap();
        let r = Relay {
            domain,
            dir,
            process: None,
            submission: "0.0.0.0:0".parse().unwrap(),
        };
        for user in ["alice", "bob"] {
            let mut c = Command::new(BIN)
                .args(["accounts", "add", &format!("{user}@{domain}"), "--config"])
                .arg(r.config())
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(b"a-password\n").unwrap();
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{out:?}");
        }
        r
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("frontdoor.yaml")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The DKIM TXT records of this relay (keys made before its first start).
    fn txt(&self) -> Vec<(String, String)> {
        let s = frontdoor::mail::dkim::Signer::load_or_generate(&self.data(), "dkim").unwrap();
        vec![
            (
                format!("dkim-ed._domainkey.{}", self.domain),
                s.txt_ed25519.clone(),
            ),
            (
                format!("dkim._domainkey.{}", self.domain),
                s.txt_rsa.clone(),
            ),
        ]
    }

    fn start(&mut self) {
        let p = Launch::new(["mail", "serve", "--config"])
            .arg(self.config())
            .start();
        self.submission = p.mail("submission").unwrap().tcp();
        self.process = Some(p);
    }

    fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    fn log(&self) -> String {
        self.process
            .as_ref()
            .map(|p| p.log.text())
            .unwrap_or_default()
    }

    /// Events of the running process whose message is `msg`.
    fn events(&self, msg: &str) -> Vec<serde_json::Value> {
        self.process
            .as_ref()
            .map(|p| {
                p.log
                    .events()
                    .into_iter()
                    .filter(|e| str_field(e, "message") == msg)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `frontdoor mail queue [--flush]`: its stdout.
    fn queue_cli(&self, flush: bool) -> String {
        let mut c = Command::new(BIN);
        c.args(["mail", "queue", "--config"]).arg(self.config());
        if flush {
            c.arg("--flush");
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// How many entries `frontdoor mail queue` lists.
    fn queued(&self) -> usize {
        let out = self.queue_cli(false);
        out.lines()
            .find_map(|l| l.strip_suffix(" queued"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {out}"))
    }

    /// Submit one message from `from` (an account here) to `to`; the reply
    /// code after the data (`None` when the connection broke).
    fn submit(&self, from: &str, to: &str, msg_id: &str) -> Option<u16> {
        let header = proxy_header(Some(identity(from)), Some(SECRET));
        let mut c = Client::try_connect(self.submission, Some(&header))?;
        c.try_reply()?;
        c.send("EHLO client\r\n");
        c.try_reply()?;
        c.send(&format!("MAIL FROM:<{from}>\r\n"));
        if c.try_reply()?.0 != 250 {
            return None;
        }
        c.send(&format!("RCPT TO:<{to}>\r\n"));
        let (code, text) = c.try_reply()?;
        assert_eq!(code, 250, "RCPT {to}: {text}");
        c.send("DATA\r\n");
        c.try_reply()?;
        let body = format!(
            "From: <{from}>\r\nTo: <{to}>\r\nSubject: test\r\nMessage-ID: <{msg_id}>\r\n\r\nbody of {msg_id}\r\n.\r\n"
        );
        if c.s.write_all(body.as_bytes()).is_err() {
            return None;
        }
        let code = c.try_reply()?.0;
        c.send("QUIT\r\n");
        Some(code)
    }

    /// Stop the relay and read every INBOX message of `account`.
    fn stop_and_read(&mut self, account: &str) -> Vec<String> {
        self.kill();
        let st = frontdoor::mail::store::Store::open(&self.data()).unwrap();
        st.messages(account, "INBOX")
            .unwrap_or_default()
            .iter()
            .map(|m| {
                String::from_utf8_lossy(&st.read(account, "INBOX", m.uid).unwrap()).into_owned()
            })
            .collect()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Two relays on `ip_a`/`ip_b` and their DNS server.
fn pair(ip_a: &str, ip_b: &str, queue: &str) -> (Dns, Relay, Relay) {
    let ca = Ca::new();
    let port = free_port();
    let a = Relay::new(A, ip_a, port, &ca, queue);
    let b = Relay::new(B, ip_b, port, &ca, queue);
    let mut txt = a.txt();
    txt.extend(b.txt());
    let dns = start_dns(port, &[(A, ip_a), (B, ip_b)], &txt);
    (dns, a, b)
}

fn message_ids(msgs: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for t in msgs {
        if let Some(id) = t.lines().find_map(|l| l.strip_prefix("Message-ID: ")) {
            *m.entry(id.trim().to_owned()).or_insert(0) += 1;
        }
    }
    m
}

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

fn random_ms(lo: u64, hi: u64) -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    lo + u64::from_le_bytes(b) % (hi - lo)
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

/// A whole chatmail relay (`frontdoor serve`): the front door on `ip:443`
/// (IMAP, SMTP and the web side by ALPN, as Delta Chat expects), the MX on
/// `ip:25`, a certificate from the CA for the domain and its `mta-sts.`
/// name, direct delivery (chatmail mode's default) trusting the CA.
fn chatmail_relay(domain: &str, ip: &str, dns_port: u16, ca: &Ca) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    ca.write(&p.join("ca.pem"));
    ca.issue(p, "relay", &[domain, &format!("mta-sts.{domain}")]);
    std::fs::write(p.join("keys.yaml"), "keys:\n").unwrap();
    let yaml = format!(
        r#"listeners:
  - bind: "{ip}:443"
    default_route: web
tls:
  certificates:
    - cert: relay.crt
      key: relay.key
routes:
  imap: {{ alpn: [imap], backend: "unix:imap.sock" }}
  smtp: {{ alpn: [smtp], backend: "unix:submission.sock" }}
  web: {{ alpn: ["http/1.1"], backend: "builtin:chatmail", proxy_protocol: none }}
client_auth:
  registry: keys.yaml
  unknown_key: anonymous
metrics: {{ listen: "127.0.0.1:0" }}
mail:
  domains: ["{domain}"]
  hostname: "{domain}"
  data_dir: data
  imap: {{ listen: "unix:imap.sock" }}
  submission: {{ listen: "unix:submission.sock" }}
  inbound: {{ listen: "{ip}:25" }}
  dns: {{ resolvers: ["127.0.0.1:{dns_port}"] }}
  delivery: {{ ca_file: ca.pem }}
  queue: {{ retry: 1s, max_retry: 2s }}
  chatmail: {{}}
"#
    );
    std::fs::write(p.join("frontdoor.yaml"), yaml).unwrap();
    dir
}

fn dkim_txt(data: &Path, domain: &str) -> Vec<(String, String)> {
    let s = frontdoor::mail::dkim::Signer::load_or_generate(data, "dkim").unwrap();
    vec![
        (
            format!("dkim-ed._domainkey.{domain}"),
            s.txt_ed25519.clone(),
        ),
        (format!("dkim._domainkey.{domain}"), s.txt_rsa.clone()),
    ]
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
    // the receiving MX logged dkim=pass for it.
    for (sender, receiver, peer) in [(&relay_a, &relay_b, B), (&relay_b, &relay_a, A)] {
        let delivered = sender
            .log
            .event(|e| str_field(e, "message") == "queue: delivered")
            .unwrap_or_else(|| panic!("no delivery: {}", diag()));
        assert_eq!(str_field(&delivered, "host"), peer, "{delivered}");
        assert_eq!(delivered["tls"], serde_json::json!(true), "{delivered}");
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
