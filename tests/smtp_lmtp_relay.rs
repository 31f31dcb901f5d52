//! LMTP delivery (per-recipient replies) and remote mail handed to the
//! smarthost, through the real `frontdoor mail serve`.

mod common;
mod mail_common;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use mail_common::*;

#[test]
fn lmtp_delivery_lands_with_one_reply_per_recipient() {
    let mut srv = Server::new(Opts::default());
    let mut c = Client::open(srv.lmtp, None);
    assert_eq!(c.cmd("EHLO x").0, 500, "LMTP wants LHLO");
    let (code, t) = c.cmd("LHLO mta.example.org");
    assert_eq!(code, 250, "{t}");
    assert_eq!(c.cmd("MAIL FROM:<someone@far.example>").0, 250);
    assert_eq!(c.cmd("RCPT TO:<alice@example.org>").0, 250);
    assert_eq!(c.cmd("RCPT TO:<nobody@example.org>").0, 550);
    assert_eq!(c.cmd("RCPT TO:<bob@example.org>").0, 250);
    assert_eq!(c.cmd("RCPT TO:<x@far.example>").0, 550);
    assert_eq!(c.cmd("DATA").0, 354);
    c.send(&message(
        "someone@far.example",
        "alice@example.org",
        "tok-lmtp",
    ));
    c.send(".\r\n");
    assert_eq!(c.reply().0, 250);
    assert_eq!(c.reply().0, 250);
    assert_eq!(c.cmd("QUIT").0, 221);
    let st = srv.stop_and_open_store();
    assert_eq!(count_token(&st, "alice@example.org", "tok-lmtp"), 1);
    assert_eq!(count_token(&st, "bob@example.org", "tok-lmtp"), 1);
    let m = &st.messages("alice@example.org", "INBOX").unwrap()[0];
    let raw = String::from_utf8(st.read("alice@example.org", "INBOX", m.uid).unwrap()).unwrap();
    assert!(
        raw.starts_with("Received: from mta.example.org ([127.0.0.1])"),
        "{raw}"
    );
    assert!(raw.contains("with LMTP"), "{raw}");
}

#[test]
fn lmtp_refuses_untrusted_sources() {
    let srv = Server::new(Opts {
        trusted: "10.0.0.0/8",
        ..Opts::default()
    });
    let mut c = Client::connect(srv.lmtp, None);
    assert!(c.closed_silently());
}

/// A one-shot SMTP sink: accepts one message and reports what it got.
fn smarthost() -> (String, mpsc::Receiver<(Vec<String>, String)>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        w.write_all(b"220 sink ESMTP\r\n").unwrap();
        let (mut cmds, mut data) = (Vec::new(), String::new());
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let l = line.trim_end().to_string();
            cmds.push(l.clone());
            if l.starts_with("EHLO") {
                w.write_all(b"250-sink\r\n250 8BITMIME\r\n").unwrap();
            } else if l == "DATA" {
                w.write_all(b"354 go\r\n").unwrap();
                loop {
                    line.clear();
                    r.read_line(&mut line).unwrap();
                    if line == ".\r\n" {
                        break;
                    }
                    data.push_str(&line);
                }
                w.write_all(b"250 queued\r\n").unwrap();
            } else if l == "QUIT" {
                w.write_all(b"221 bye\r\n").unwrap();
                break;
            } else {
                w.write_all(b"250 ok\r\n").unwrap();
            }
        }
        let _ = tx.send((cmds, data));
    });
    (addr, rx)
}

#[test]
fn remote_recipients_go_to_the_smarthost_local_ones_to_the_store() {
    let (addr, rx) = smarthost();
    let mut srv = Server::new(Opts {
        relay: Some(addr),
        ..Opts::default()
    });
    let h = || proxy_header(Some(identity("alice@example.org")), Some(SECRET));
    let mut c = Client::open(srv.submission, Some(&h()));
    c.cmd("EHLO x");
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org>").0, 250);
    assert_eq!(c.cmd("RCPT TO:<carol@far.example>").0, 250);
    assert_eq!(c.cmd("RCPT TO:<bob@example.org>").0, 250);
    c.cmd("DATA");
    c.send(&message(
        "alice@example.org",
        "carol@far.example",
        "tok-relay",
    ));
    c.send("..leading dot line\r\n");
    let (code, t) = c.cmd(".");
    assert_eq!(code, 250, "{t}");
    let (cmds, data) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        cmds.contains(&"MAIL FROM:<alice@example.org>".to_string()),
        "{cmds:?}"
    );
    assert!(
        cmds.contains(&"RCPT TO:<carol@far.example>".to_string()),
        "{cmds:?}"
    );
    assert!(
        !cmds.iter().any(|c| c.contains("bob@")),
        "local recipient not relayed: {cmds:?}"
    );
    assert!(data.contains("body tok-relay"), "{data}");
    assert!(
        data.contains("\r\n..leading dot line\r\n"),
        "dot-stuffed again on the way out: {data}"
    );
    let st = srv.stop_and_open_store();
    assert_eq!(count_token(&st, "bob@example.org", "tok-relay"), 1);
}

#[test]
fn inbound_mx_takes_local_mail_only_and_offers_no_auth() {
    let mut srv = Server::new(Opts {
        inbound: true,
        ..Opts::default()
    });
    let mut c = Client::open(srv.inbound.unwrap(), None);
    let (code, ehlo) = c.cmd("EHLO mx.far.example");
    assert_eq!(code, 250);
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    assert!(
        !ehlo.contains("STARTTLS"),
        "no certificate, no STARTTLS: {ehlo}"
    );
    assert_eq!(
        c.cmd(&format!(
            "AUTH PLAIN {}",
            b64(b"\0alice@example.org\0alice-pw")
        ))
        .0,
        502
    );
    assert_eq!(c.cmd("MAIL FROM:<someone@far.example>").0, 250);
    let (code, t) = c.cmd("RCPT TO:<x@elsewhere.example>");
    assert_eq!(code, 550, "{t}");
    assert!(t.contains("5.7.1"), "{t}");
    assert_eq!(c.cmd("RCPT TO:<Alice@EXAMPLE.org>").0, 250);
    assert_eq!(c.cmd("DATA").0, 354);
    c.send(&message(
        "someone@far.example",
        "alice@example.org",
        "tok-mx",
    ));
    assert_eq!(c.cmd(".").0, 250);
    let st = srv.stop_and_open_store();
    assert_eq!(count_token(&st, "alice@example.org", "tok-mx"), 1);
}

/// Python's smtplib as a sending MTA: STARTTLS verified against the MX's
/// certificate, then a delivery marked ESMTPS; and input pipelined after
/// STARTTLS (plaintext anyone could inject) is dropped, not run under TLS.
const STARTTLS_SCRIPT: &str = r#"
import smtplib, socket, ssl, sys
port, cafile = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=cafile)
with smtplib.SMTP("127.0.0.1", port) as s:
    s.ehlo("mta.far.example")
    print("OFFERED", s.has_extn("starttls"))
    s._host = "mx.example.org"
    code, _ = s.starttls(context=ctx)
    print("STARTTLS", code, s.sock.version())
    s.ehlo("mta.far.example")
    print("AGAIN", s.has_extn("starttls"))
    print("SECOND", s.docmd("STARTTLS")[0])
    s.sendmail("someone@far.example", ["alice@example.org"],
        "From: someone@far.example\r\nTo: alice@example.org\r\nSubject: tls\r\n\r\ntok-mx-tls\r\n")
    print("SENT")

def line(sock):
    out = b""
    while not out.endswith(b"\r\n") and len(out) < 4096:
        b = sock.recv(1)
        if not b:
            break
        out += b
    return out.decode()

def reply(sock):
    lines = [line(sock)]
    while len(lines[-1]) > 3 and lines[-1][3] == "-":
        lines.append(line(sock))
    return lines

raw = socket.create_connection(("127.0.0.1", port), timeout=10)
reply(raw)
raw.sendall(b"EHLO a\r\n"); reply(raw)
raw.sendall(b"STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n")
print("READY", reply(raw)[0].strip())
t = ctx.wrap_socket(raw, server_hostname="mx.example.org")
t.sendall(b"NOOP\r\n")
print("AFTER", reply(t)[0][:3])
"#;

#[test]
fn inbound_mx_starttls_with_smtplib_and_no_injection() {
    let mut srv = Server::new(Opts {
        inbound: true,
        mx_cert: true,
        ..Opts::default()
    });
    let cafile = srv.dir.path().join("mx.crt");
    let out = std::process::Command::new("python3")
        .args(["-c", STARTTLS_SCRIPT])
        .arg(srv.inbound.unwrap().port().to_string())
        .arg(&cafile)
        .output()
        .expect("python3 is needed for this test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            "OFFERED True",
            "STARTTLS 220 TLSv1.3",
            "AGAIN False",
            "SECOND 503",
            "SENT",
            "READY 220 2.0.0 Ready to start TLS",
            // The first reply under TLS is the NOOP's: had the injected MAIL
            // been run, its reply (503, no EHLO yet) would come first.
            "AFTER 250",
        ]
    );
    let st = srv.stop_and_open_store();
    let m = &st.messages("alice@example.org", "INBOX").unwrap()[0];
    let raw = String::from_utf8(st.read("alice@example.org", "INBOX", m.uid).unwrap()).unwrap();
    assert!(raw.contains("tok-mx-tls"), "{raw}");
    assert!(raw.contains("with ESMTPS"), "{raw}");
}
