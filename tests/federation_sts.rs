//! MTA-STS (RFC 8461) on outbound delivery between two relays: `_a` runs
//! `frontdoor mail serve` with `mail.delivery.tls: encrypt` (any
//! certificate would do without a policy) and `_b` is a whole chatmail
//! relay (`frontdoor serve`) whose web side serves its own policy
//! (`mode: enforce`, `mx: _b.chat.test`) on `https://mta-sts._b.chat.test/`
//! (port 443 of its loopback address); the test's dnsmasq publishes
//! `_mta-sts._b.chat.test TXT "v=STSv1; id=…"` with the id `frontdoor mail
//! dns` prints. With a certificate valid for the MX name the message goes
//! and `_a`'s log says the enforce policy was applied; with one that does
//! not name the MX host it stays queued with the MTA-STS reason until the
//! certificate is fixed and the queue flushed. A policy served by a plain
//! HTTPS server whose `mx` names other hosts defers the message while it
//! is `enforce` and only warns once it is `testing` under a new `id` (about
//! the hosts and about the MX certificate, which names another host).
//!
//! Needs root (ports 25 and 443), dnsmasq, python3.

mod common;
mod federation_common;
mod mail_common;

use std::path::Path;
use std::time::Duration;

use common::logs::str_field;
use common::poll::poll_until;
use common::Process;
use federation_common::*;

/// `_b` as a whole chatmail relay, with its account `bob@_b`.
fn start_b(dir: &Path) -> Process {
    serve_relay(dir)
}

/// DNS for `_a` (MX, A, DKIM) and `_b` (MX, A, `mta-sts.` A, `_mta-sts` TXT).
fn dns(port: u16, a: &Relay, ip_a: &str, ip_b: &str) -> Dns {
    let mut txt = a.txt();
    txt.push((
        format!("_mta-sts.{B}"),
        format!(
            "v=STSv1; id={}",
            frontdoor::mail::dns_records::mta_sts_id(B)
        ),
    ));
    let sts_host = format!("mta-sts.{B}");
    start_dns_with(
        port,
        &[(A, ip_a), (B, ip_b)],
        &[(sts_host.as_str(), ip_b)],
        &txt,
    )
}

fn sender(ip: &str, port: u16, ca: &Ca) -> Relay {
    Relay::with_delivery(
        A,
        ip,
        port,
        ca,
        "{ retry: 1h }",
        "{ direct: true, tls: encrypt, ca_file: ca.pem }",
    )
}

#[test]
fn an_enforce_policy_with_a_valid_certificate_delivers_and_is_logged() {
    let (ip_a, ip_b) = ("127.0.6.2", "127.0.6.3");
    let ca = Ca::new();
    let port = free_port();
    let mut a = sender(ip_a, port, &ca);
    let dir_b = chatmail_relay(B, ip_b, port, &ca);
    add_account(&dir_b.path().join("frontdoor.yaml"), &format!("bob@{B}"));
    let _dns = dns(port, &a, ip_a, ip_b);
    let b = start_b(dir_b.path());
    a.start();
    let (from, to) = (format!("alice@{A}"), format!("bob@{B}"));
    let body = encrypted(&from, &to, "sts-ok@test");
    assert_eq!(a.submit_body(&from, &to, &body), Some(250), "{}", a.log());
    let ok = poll_until(Duration::from_secs(60), || {
        !a.events("queue: delivered").is_empty()
    });
    assert!(ok, "A:\n{}\nB:\n{}", a.log(), b.log.text());
    let fetched = &a.events("MTA-STS: policy fetched")[0];
    assert_eq!(str_field(fetched, "mode"), "enforce", "{fetched}");
    assert_eq!(str_field(fetched, "mx"), B, "{fetched}");
    assert_eq!(
        str_field(fetched, "id"),
        frontdoor::mail::dns_records::mta_sts_id(B)
    );
    let applied = &a.events("MTA-STS: policy applied")[0];
    assert_eq!(str_field(applied, "hosts"), B, "{applied}");
    let d = &a.events("queue: delivered")[0];
    assert_eq!(str_field(d, "mta_sts"), "enforce", "{d}");
    assert_eq!(d["tls"], serde_json::json!(true), "{d}");
    assert!(poll_until(Duration::from_secs(10), || {
        !events(&b, "DKIM: dkim=pass").is_empty()
    }));
    // Cached durably with its id and expiry.
    let cached = std::fs::read_to_string(a.data().join(format!("mta-sts/{B}.json"))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&cached).unwrap();
    assert_eq!(v["id"], frontdoor::mail::dns_records::mta_sts_id(B));
    assert!(v["expires"].as_i64().unwrap() > v["fetched"].as_i64().unwrap() + 2_000_000);
    assert_eq!(a.queued(), 0);
}

#[test]
fn an_enforce_policy_keeps_mail_queued_while_the_mx_certificate_does_not_verify() {
    let (ip_a, ip_b) = ("127.0.7.2", "127.0.7.3");
    let ca = Ca::new();
    let port = free_port();
    let mut a = sender(ip_a, port, &ca);
    // The certificate names the policy host, not the MX host.
    let sts_host = format!("mta-sts.{B}");
    let dir_b = chatmail_relay_for(B, ip_b, port, &ca, &[&sts_host]);
    add_account(&dir_b.path().join("frontdoor.yaml"), &format!("bob@{B}"));
    let _dns = dns(port, &a, ip_a, ip_b);
    let b = start_b(dir_b.path());
    a.start();
    let (from, to) = (format!("alice@{A}"), format!("bob@{B}"));
    let body = encrypted(&from, &to, "sts-bad@test");
    assert_eq!(a.submit_body(&from, &to, &body), Some(250), "{}", a.log());
    let mut listing = String::new();
    let deferred = poll_until(Duration::from_secs(60), || {
        listing = a.queue_cli(false);
        listing.contains("attempts=1")
    });
    assert!(deferred, "{listing}\nA:\n{}\nB:\n{}", a.log(), b.log.text());
    assert!(
        listing.contains(&format!("MTA-STS policy of {B} (enforce, id ")),
        "{listing}"
    );
    assert!(listing.lines().any(|l| l == "1 queued"), "{listing}");
    assert!(a.events("queue: delivered").is_empty(), "{}", a.log());
    assert!(
        !a.events("MTA-STS: no mail host passed the policy; deferred")
            .is_empty(),
        "{}",
        a.log()
    );
    // Fixed: a certificate for the MX name too; the flush delivers it.
    drop(b);
    ca.issue(dir_b.path(), "relay", &[B, &sts_host]);
    let b = start_b(dir_b.path());
    let out = a.queue_cli(true);
    assert!(out.contains("flush requested"), "{out}");
    let ok = poll_until(Duration::from_secs(60), || {
        !a.events("queue: delivered").is_empty()
    });
    assert!(ok, "A:\n{}\nB:\n{}", a.log(), b.log.text());
    let d = &a.events("queue: delivered")[0];
    assert_eq!(str_field(d, "mta_sts"), "enforce", "{d}");
    assert!(poll_until(Duration::from_secs(10), || a.queued() == 0));
}

/// An HTTPS server on `argv[1]:443` (certificate `argv[2]`, key `argv[3]`)
/// answering every GET with the file `argv[4]` as `text/plain`.
const POLICY_SERVER: &str = r#"
import http.server, ssl, sys
ip, crt, key, path = sys.argv[1:5]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = open(path, "rb").read()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer((ip, 443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(crt, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("READY", flush=True)
srv.serve_forever()
"#;

/// Kills the child on drop.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_policy_naming_other_mx_hosts_defers_when_enforced_and_only_warns_in_testing() {
    use std::io::BufRead;
    let (ip_a, ip_b) = ("127.0.9.2", "127.0.9.3");
    let ca = Ca::new();
    let port = free_port();
    let mut a = sender(ip_a, port, &ca);
    let mut b = Relay::new(B, ip_b, port, &ca, "{ retry: 1h }");
    // B's MX certificate names another host: `encrypt` takes it, and the
    // testing policy reports it.
    ca.issue(b.dir.path(), "mx", &["mx.elsewhere.test"]);
    let web = tempfile::tempdir().unwrap();
    let sts_host = format!("mta-sts.{B}");
    ca.issue(web.path(), "web", &[&sts_host]);
    let policy = web.path().join("policy.txt");
    std::fs::write(
        &policy,
        "version: STSv1\nmode: enforce\nmx: mx.elsewhere.test\nmx: *.elsewhere.test\nmax_age: 86400\n",
    )
    .unwrap();
    let mut child = std::process::Command::new("python3")
        .args(["-c", POLICY_SERVER, ip_b])
        .arg(web.path().join("web.crt"))
        .arg(web.path().join("web.key"))
        .arg(&policy)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _web = Killed(child);
    assert_eq!(line.trim(), "READY");
    let mut keys = a.txt();
    keys.extend(b.txt());
    let records = |id: &str| {
        let mut txt = keys.clone();
        txt.push((format!("_mta-sts.{B}"), format!("v=STSv1; id={id}")));
        start_dns_with(
            port,
            &[(A, ip_a), (B, ip_b)],
            &[(sts_host.as_str(), ip_b)],
            &txt,
        )
    };
    let dns = records("one");
    b.start();
    a.start();
    let (from, to) = (format!("alice@{A}"), format!("bob@{B}"));
    assert_eq!(a.submit(&from, &to, "sts-mx@test"), Some(250));
    let mut listing = String::new();
    let deferred = poll_until(Duration::from_secs(60), || {
        listing = a.queue_cli(false);
        listing.contains("attempts=1")
    });
    assert!(deferred, "{listing}\n{}", a.log());
    assert!(
        listing.contains(&format!(
            "MTA-STS policy of {B} (enforce, id one): no mail host matches its mx patterns (mx.elsewhere.test,*.elsewhere.test); MX hosts: {B}"
        )),
        "{listing}"
    );
    assert!(a.events("queue: delivered").is_empty());
    // The domain switches to testing under a new id: fetched again, the
    // mismatch is only logged, and the message goes.
    std::fs::write(
        &policy,
        "version: STSv1\nmode: testing\nmx: mx.elsewhere.test\nmax_age: 86400\n",
    )
    .unwrap();
    drop(dns);
    let _dns = records("two");
    a.queue_cli(true);
    let ok = poll_until(Duration::from_secs(60), || {
        !a.events("queue: delivered").is_empty()
    });
    assert!(ok, "A:\n{}\nB:\n{}", a.log(), b.log());
    let d = &a.events("queue: delivered")[0];
    assert_eq!(str_field(d, "mta_sts"), "testing", "{d}");
    let warned = a.events(
        "MTA-STS testing: these mail hosts are not in the policy (an enforce policy would skip them); delivering anyway",
    );
    assert_eq!(warned.len(), 1, "{}", a.log());
    assert_eq!(str_field(&warned[0], "hosts"), B);
    let cert = a.events(
        "MTA-STS testing: this certificate would not pass an enforce policy; delivering anyway",
    );
    assert_eq!(cert.len(), 1, "{}", a.log());
    assert_eq!(str_field(&cert[0], "host"), B);
    assert!(
        str_field(&cert[0], "error").contains("not valid for name"),
        "{}",
        cert[0]
    );
    assert_eq!(a.events("MTA-STS: policy fetched").len(), 2, "{}", a.log());
    assert!(poll_until(Duration::from_secs(10), || a.queued() == 0));
}
