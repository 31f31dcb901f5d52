//! HTTPS delivery between relays (`POST /mxdeliv`, the format chatmail
//! relays and Madmail use: the message as the body, `X-Mail-From`, one
//! `X-Mail-To` per recipient). A sending relay `_a` with
//! `mail.delivery.mxdeliv: true` and a whole chatmail relay `_b`
//! (`frontdoor serve`, the web side on `ip:443`), found through the test's
//! dnsmasq:
//! - a message from `_a` to `_b` goes over HTTPS, is checked by `_b`'s MX
//!   rules (`dkim=pass`) and lands once;
//! - a message `_b` refuses over HTTPS (unknown recipient) goes on to SMTP
//!   in the same attempt and comes back as a delivery report;
//! - a peer without HTTPS (`_c`, an MX only) gets SMTP, and is not asked
//!   again for the next message;
//! - curl against `_b`'s `/mxdeliv`: an unsigned message is refused with
//!   the MX's DKIM reply, a missing `X-Mail-To` is `400`, a body over
//!   `mail.max_message_size` is `413`, `GET` is `405`, an address already
//!   at `mail.mx.max_connections_per_peer` on port 25 is `503`, and none of
//!   it reaches the mailbox.
//!
//! Needs root (ports 25 and 443), dnsmasq, curl and python3.

mod common;
mod federation_common;
mod mail_common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::logs::str_field;
use common::poll::poll_until;
use common::Process;
use federation_common::*;

const C: &str = "_c.chat.test";
const T: Duration = Duration::from_secs(60);

/// The INBOX of `account` in `data` (its relay stopped: the store is locked
/// while it runs).
fn inbox(data: &Path, account: &str) -> Vec<String> {
    let st = frontdoor::mail::store::Store::open(data).unwrap();
    st.messages(account, "INBOX")
        .unwrap_or_default()
        .iter()
        .map(|m| String::from_utf8_lossy(&st.read(account, "INBOX", m.uid).unwrap()).into_owned())
        .collect()
}

fn curl(ip: &str, ca: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert"])
        .arg(ca)
        .args([
            "--resolve",
            &format!("{B}:443:{ip}"),
            "-w",
            "\n%{http_code}",
        ])
        .args(args)
        .arg(format!("https://{B}/mxdeliv"))
        .output()
        .expect("curl is needed for this test");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_owned(), body.to_owned())
}

/// The sending relay `_a`: direct delivery, HTTPS first, retries an hour
/// apart (a retry is a flush).
fn https_sender(ip: &str, dns_port: u16, ca: &Ca) -> Relay {
    Relay::with_delivery(
        A,
        ip,
        dns_port,
        ca,
        "{ retry: 1h }",
        "{ direct: true, ca_file: ca.pem, mxdeliv: true }",
    )
}

#[test]
fn relays_deliver_over_https_and_fall_back_to_smtp() {
    let (ip_a, ip_b, ip_c) = ("127.0.11.2", "127.0.11.3", "127.0.11.4");
    let ca = Ca::new();
    let port = free_port();
    let mut a = https_sender(ip_a, port, &ca);
    let mut c = Relay::new(C, ip_c, port, &ca, "{ retry: 1h }");
    let dir_b = chatmail_relay(B, ip_b, port, &ca);
    let bob = format!("bob@{B}");
    add_account(&dir_b.path().join("frontdoor.yaml"), &bob);
    let mut txt = a.txt();
    txt.extend(c.txt());
    txt.extend(dkim_txt(&dir_b.path().join("data"), B));
    let _dns = start_dns(port, &[(A, ip_a), (B, ip_b), (C, ip_c)], &txt);
    let mut b = serve_relay(dir_b.path());
    a.start();
    c.start();
    let diag = |a: &Relay, b: &Process| format!("A:\n{}\nB:\n{}", a.log(), b.log.text());

    // A to B: over HTTPS, through B's MX rules.
    let alice = format!("alice@{A}");
    let body = encrypted(&alice, &bob, "over-https@test");
    assert_eq!(a.submit_body(&alice, &bob, &body), Some(250), "{}", a.log());
    assert!(
        poll_until(T, || !a.events("queue: delivered").is_empty()),
        "{}",
        diag(&a, &b)
    );
    let d = &a.events("queue: delivered")[0];
    assert_eq!(str_field(d, "via"), "https", "{d}");
    assert_eq!(str_field(d, "host"), B, "{d}");
    assert_eq!(str_field(d, "rcpt"), bob, "{d}");
    let served = b
        .log
        .wait_event_sync(T, |e| str_field(e, "message") == "mxdeliv")
        .unwrap_or_else(|| panic!("{}", diag(&a, &b)));
    assert_eq!(served["status"], serde_json::json!(200), "{served}");
    assert_eq!(str_field(&served, "from"), alice, "{served}");
    assert!(
        !events(&b, "DKIM: dkim=pass").is_empty(),
        "{}",
        diag(&a, &b)
    );
    assert!(
        a.events("queue: trying SMTP").is_empty(),
        "{}",
        diag(&a, &b)
    );

    // Refused over HTTPS (no such user at B): SMTP in the same attempt,
    // whose 550 makes the delivery report.
    let ghost = format!("ghost@{B}");
    let body = encrypted(&alice, &ghost, "to-ghost@test");
    assert_eq!(
        a.submit_body(&alice, &ghost, &body),
        Some(250),
        "{}",
        a.log()
    );
    assert!(
        poll_until(T, || !a
            .events("queue: delivery report stored for the sender")
            .is_empty()),
        "{}",
        diag(&a, &b)
    );
    let tried = &a.events("queue: trying SMTP")[0];
    assert!(
        str_field(tried, "error").contains("403") && str_field(tried, "error").contains("5.1.1"),
        "{tried}"
    );
    let failed = &a.events("queue: delivery failed for good")[0];
    assert!(str_field(failed, "error").contains("550"), "{failed}");

    // C has no HTTPS side: SMTP, and the next message goes there directly.
    let carol = format!("bob@{C}");
    for id in ["to-c-1@test", "to-c-2@test"] {
        let body = encrypted(&alice, &carol, id);
        assert_eq!(
            a.submit_body(&alice, &carol, &body),
            Some(250),
            "{}",
            a.log()
        );
    }
    assert!(
        poll_until(T, || a
            .events("queue: delivered")
            .iter()
            .filter(|e| str_field(e, "host") == C)
            .count()
            == 2),
        "{}",
        a.log()
    );
    for d in a
        .events("queue: delivered")
        .iter()
        .filter(|e| str_field(e, "host") == C)
    {
        assert_eq!(str_field(d, "via"), "smtp", "{d}");
    }
    let asked_c: Vec<_> = a
        .events("queue: trying SMTP")
        .into_iter()
        .filter(|e| str_field(e, "domain") == C)
        .collect();
    assert_eq!(asked_c.len(), 1, "{asked_c:?}");
    assert!(
        str_field(&asked_c[0], "error").contains("no HTTPS delivery"),
        "{asked_c:?}"
    );
    let at_c = c.stop_and_read(&carol);
    assert_eq!(at_c.len(), 2, "{at_c:?}");

    // B holds the one message it took, once, with its verdict on top.
    b.kill();
    let got = inbox(&dir_b.path().join("data"), &bob);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("Message-ID: <over-https@test>"),
        "{}",
        got[0]
    );
    assert!(
        got[0].starts_with(&format!("Authentication-Results: {B};")),
        "{}",
        got[0]
    );
    assert!(got[0].contains("dkim=pass"), "{}", got[0]);
}

#[test]
fn mxdeliv_refuses_what_the_mx_refuses() {
    let ip_b = "127.0.11.7";
    let ca = Ca::new();
    let port = free_port();
    let dir_b = chatmail_relay(B, ip_b, port, &ca);
    let cfg = dir_b.path().join("frontdoor.yaml");
    let mut yaml = std::fs::read_to_string(&cfg).unwrap();
    yaml.push_str("  max_message_size: 65536\n  mx: { max_connections_per_peer: 1 }\n");
    std::fs::write(&cfg, yaml).unwrap();
    let bob = format!("bob@{B}");
    add_account(&cfg, &bob);
    let _dns = start_dns(port, &[(B, ip_b)], &dkim_txt(&dir_b.path().join("data"), B));
    let mut b = serve_relay(dir_b.path());
    let cafile = dir_b.path().join("ca.pem");
    let msg = dir_b.path().join("unsigned.eml");
    std::fs::write(
        &msg,
        encrypted("mallory@elsewhere.test", &bob, "unsigned@test"),
    )
    .unwrap();
    let post = |extra: &[&str]| {
        let mut args = vec!["-X", "POST", "--data-binary"];
        let at = format!("@{}", msg.display());
        args.push(&at);
        args.extend_from_slice(extra);
        curl(ip_b, &cafile, &args)
    };
    let to = format!("X-Mail-To: {bob}");
    // Unsigned: the MX's DKIM refusal, as the answer.
    let (code, body) = post(&["-H", "X-Mail-From: mallory@elsewhere.test", "-H", &to]);
    assert_eq!(code, "403", "{body}\n{}", b.log.text());
    assert!(body.contains("554 5.7.1 No DKIM signature found"), "{body}");
    // No recipient.
    let (code, body) = post(&["-H", "X-Mail-From: mallory@elsewhere.test"]);
    assert_eq!(code, "400", "{body}");
    assert!(body.contains("X-Mail-To"), "{body}");
    // A recipient smuggling SMTP parameters.
    let (code, _) = post(&["-H", &format!("X-Mail-To: {bob}> NOTIFY=NEVER")]);
    assert_eq!(code, "400");
    // Over mail.max_message_size: refused while the body is read.
    let big = dir_b.path().join("big.eml");
    std::fs::write(&big, vec![b'x'; 200_000]).unwrap();
    let (code, body) = curl(
        ip_b,
        &cafile,
        &[
            "-X",
            "POST",
            "--data-binary",
            &format!("@{}", big.display()),
            "-H",
            &to,
            // The refusal comes before the body is sent (no reset while
            // curl is still uploading).
            "-H",
            "Expect: 100-continue",
            "--expect100-timeout",
            "30",
        ],
    );
    assert_eq!(code, "413", "{body}");
    assert!(body.contains("5.3.4"), "{body}");
    // Not a POST.
    let (code, _) = curl(ip_b, &cafile, &[]);
    assert_eq!(code, "405");
    // An address holding its one MX session on port 25 gets no second one
    // over HTTPS; once it lets go, it does.
    let src = "127.0.0.9";
    let smtp = {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let at = |a: String| socket2::SockAddr::from(a.parse::<std::net::SocketAddr>().unwrap());
        s.bind(&at(format!("{src}:0"))).unwrap();
        s.connect_timeout(&at(format!("{ip_b}:25")), T).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        std::net::TcpStream::from(s)
    };
    let mut greeting = [0u8; 3];
    std::io::Read::read_exact(&mut &smtp, &mut greeting).unwrap();
    assert_eq!(&greeting, b"220");
    let from_src = |extra: &[&str]| {
        let mut args = vec!["--interface", src];
        args.extend_from_slice(extra);
        post(&args)
    };
    let sender = "X-Mail-From: mallory@elsewhere.test";
    let (code, body) = from_src(&["-H", sender, "-H", &to]);
    assert_eq!(code, "503", "{body}");
    assert!(body.contains("421 4.7.0 Too many connections"), "{body}");
    drop(smtp);
    assert!(
        poll_until(T, || from_src(&["-H", sender, "-H", &to]).0 == "403"),
        "the slot is given back when the SMTP session ends\n{}",
        b.log.text()
    );
    let refused = b
        .log
        .wait_event_sync(T, |e| str_field(e, "message") == "mxdeliv")
        .unwrap();
    assert_eq!(refused["status"], serde_json::json!(403), "{refused}");
    b.kill();
    assert!(inbox(&dir_b.path().join("data"), &bob).is_empty());
}

/// Messages queued for one relay go over one HTTPS connection: while
/// three are submitted, `_b` has no address in the DNS (a TXT record
/// only), so all three wait in `_a`'s queue; once it has one, a flush
/// delivers them as one batch, and `_b`'s web log shows the three requests
/// on the same connection.
#[test]
fn a_batch_goes_over_one_https_connection() {
    let (ip_a, ip_b) = ("127.0.11.8", "127.0.11.9");
    let ca = Ca::new();
    let port = free_port();
    let mut a = https_sender(ip_a, port, &ca);
    let dir_b = chatmail_relay(B, ip_b, port, &ca);
    let bob = format!("bob@{B}");
    add_account(&dir_b.path().join("frontdoor.yaml"), &bob);
    let mut b = serve_relay(dir_b.path());
    let no_address = vec![(B.to_owned(), "no address yet".to_owned())];
    let dns = start_dns(port, &[(A, ip_a)], &no_address);
    a.start();
    let alice = format!("alice@{A}");
    let ids = ["batch-1@test", "batch-2@test", "batch-3@test"];
    for id in ids {
        let body = encrypted(&alice, &bob, id);
        assert_eq!(a.submit_body(&alice, &bob, &body), Some(250), "{}", a.log());
    }
    assert!(
        poll_until(T, || a.events("queue: delivery deferred").len()
            == ids.len()),
        "{}",
        a.log()
    );
    let deferred = &a.events("queue: delivery deferred")[0];
    assert!(
        str_field(deferred, "error").contains("no address"),
        "{deferred}"
    );
    drop(dns);
    let mut txt = a.txt();
    txt.extend(dkim_txt(&dir_b.path().join("data"), B));
    let _dns = start_dns(port, &[(A, ip_a), (B, ip_b)], &txt);
    a.queue_cli(true);
    assert!(
        poll_until(T, || a.events("queue: delivered").len() == ids.len()),
        "{}\nB:\n{}",
        a.log(),
        b.log.text()
    );
    for d in a.events("queue: delivered") {
        assert_eq!(str_field(&d, "via"), "https", "{d}");
    }
    assert!(a.events("queue: trying SMTP").is_empty(), "{}", a.log());
    let posts = poll_until(T, || {
        events(&b, "web request")
            .iter()
            .filter(|e| str_field(e, "path") == "/mxdeliv")
            .count()
            == ids.len()
    });
    let requests: Vec<_> = events(&b, "web request")
        .into_iter()
        .filter(|e| str_field(e, "path") == "/mxdeliv")
        .collect();
    assert!(posts, "{requests:?}");
    let conns: std::collections::HashSet<String> =
        requests.iter().map(|e| str_field(e, "id")).collect();
    assert_eq!(conns.len(), 1, "one connection for the batch: {requests:?}");
    for r in &requests {
        assert_eq!(r["status"], serde_json::json!(200), "{r}");
    }
    b.kill();
    let got = inbox(&dir_b.path().join("data"), &bob);
    assert_eq!(got.len(), ids.len(), "{got:?}");
    for id in ids {
        let n = got
            .iter()
            .filter(|m| m.contains(&format!("Message-ID: <{id}>")))
            .count();
        assert_eq!(n, 1, "{id} once");
    }
}
