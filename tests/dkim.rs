//! DKIM end to end: frontdoor A (submission, smarthost = B's MX) signs what
//! its accounts send; frontdoor B's MX (`mail.dkim.verify`) looks the keys
//! up in a real DNS server the test starts (Debian's dnsmasq on loopback,
//! publishing A's TXT records), stores the signed message with
//! `Authentication-Results: ...; dkim=pass` (dkimpy, Debian's python3-dkim,
//! verifies both signatures of the stored copy independently), and refuses
//! unsigned, altered and unaligned messages (Python smtplib as the client)
//! with the reason.

mod common;
mod mail_common;

use std::process::Command;

use common::dns::{self, free_port, Dns, Record};
use common::str_field;
use mail_common::*;

fn start_dns(port: u16, records: &[(String, String)]) -> Dns {
    let records: Vec<Record> = records.iter().map(|(n, v)| Record::txt(n, v)).collect();
    dns::start(([127, 0, 0, 1], port).into(), &records)
}

/// Sends each message file given after the port to dave@b.example through
/// B's MX with smtplib; prints one line per message: `OK` or the refusal.
const SEND: &str = r#"
import smtplib, sys
port = int(sys.argv[1])
for path in sys.argv[2:]:
    msg = open(path, "rb").read()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.sendmail("alice@example.org", ["dave@b.example"], msg)
        print("OK")
    except smtplib.SMTPDataError as e:
        print("REFUSED", e.smtp_code, e.smtp_error.decode())
"#;

fn mx_send(port: u16, files: &[&std::path::Path]) -> Vec<String> {
    let out = Command::new("python3")
        .args(["-c", SEND])
        .arg(port.to_string())
        .args(files)
        .output()
        .expect("python3 is needed for this test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Verifies every DKIM-Signature of the message in argv[1] with dkimpy
/// (Debian's python3-dkim, python3-nacl for ed25519), the keys given as
/// `name=value` arguments instead of DNS; prints one verdict per signature.
const DKIMPY: &str = r#"
import sys, dkim
keys = dict(a.split("=", 1) for a in sys.argv[2:])
msg = open(sys.argv[1], "rb").read()
def dns(name, timeout=5):
    return keys.get(name.decode().rstrip("."), "").encode()
d = dkim.DKIM(msg)
n = sum(1 for l in msg.split(b"\r\n\r\n")[0].split(b"\r\n") if l.lower().startswith(b"dkim-signature:"))
for i in range(n):
    print(i, d.verify(idx=i, dnsfunc=dns))
"#;

fn inbox_with(st: &frontdoor::mail::store::Store, account: &str, token: &str) -> Option<String> {
    let msgs = st.messages(account, "INBOX").ok()?;
    msgs.iter().find_map(|m| {
        let b = st.read(account, "INBOX", m.uid).ok()?;
        let t = String::from_utf8_lossy(&b).into_owned();
        t.contains(token).then_some(t)
    })
}

#[test]
fn signed_mail_passes_unsigned_and_altered_mail_is_refused() {
    let dns_port = free_port();
    let mut b = Server::new(Opts {
        inbound: true,
        domains: "[example.org, b.example]",
        extra: format!(
            "  dns: {{ resolvers: [\"127.0.0.1:{dns_port}\"] }}\n  dkim: {{ verify: true }}\n"
        ),
        ..Opts::default()
    });
    let out = b.accounts(&["add", "dave@b.example"], Some("dave-pw"));
    assert!(out.status.success(), "{out:?}");
    let mx = b.inbound.unwrap();
    let a = Server::new(Opts {
        relay: Some(mx.to_string()),
        ..Opts::default()
    });
    // A made its keys on first start (0600); the library reads the same
    // files and gives the TXT records to publish.
    let key = a.data_dir().join("dkim/rsa.der");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", key.display());
    let signer = frontdoor::mail::dkim::Signer::load_or_generate(&a.data_dir(), "dkim").unwrap();
    // The TXT records are logged at first start, each in its own field.
    let generated = a
        .process
        .as_ref()
        .unwrap()
        .log
        .event(|e| e.get("txt_rsa").is_some())
        .unwrap_or_else(|| panic!("no DKIM key event: {}", a.logs()));
    assert_eq!(str_field(&generated, "level"), "WARN", "{generated}");
    assert_eq!(
        str_field(&generated, "txt_rsa"),
        signer.txt_rsa,
        "{generated}"
    );
    assert_eq!(
        str_field(&generated, "txt_ed25519"),
        signer.txt_ed25519,
        "{generated}"
    );
    assert_eq!(str_field(&generated, "selector_rsa"), "dkim", "{generated}");
    assert_eq!(
        str_field(&generated, "selector_ed25519"),
        "dkim-ed",
        "{generated}"
    );
    let _dns = start_dns(
        dns_port,
        &[
            ("dkim._domainkey.example.org".into(), signer.txt_rsa.clone()),
            (
                "dkim-ed._domainkey.example.org".into(),
                signer.txt_ed25519.clone(),
            ),
        ],
    );

    // (a) alice submits to A; A signs and relays to B's MX, which verifies.
    let h = proxy_header(Some(identity("alice@example.org")), Some(SECRET));
    let mut c = Client::open(a.submission, Some(&h));
    c.cmd("EHLO x");
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org>").0, 250);
    assert_eq!(c.cmd("RCPT TO:<dave@b.example>").0, 250);
    c.cmd("DATA");
    c.send(&message(
        "alice@example.org",
        "dave@b.example",
        "tok-signed",
    ));
    let (code, t) = c.cmd(".");
    assert_eq!(code, 250, "{t}\nA: {}\nB: {}", a.logs(), b.logs());
    // (b) unsigned, (c) signed by A's keys and then altered, (d) signed
    // but for another domain than From:.
    let dir = tempfile::tempdir().unwrap();
    let plain = message("alice@example.org", "dave@b.example", "tok-unsigned");
    let signed = signer.sign_message(
        &["example.org".to_string()],
        message("alice@example.org", "dave@b.example", "tok-altered").as_bytes(),
    );
    let altered = String::from_utf8(signed)
        .unwrap()
        .replace("body tok-altered", "body tok-altered, and more");
    let other = format!(
        "{}{}",
        signer.sign("b.example", plain.as_bytes()),
        plain.replace("tok-unsigned", "tok-other")
    );
    let files = [("plain", plain), ("altered", altered), ("other", other)].map(|(n, m)| {
        let p = dir.path().join(n);
        std::fs::write(&p, m).unwrap();
        p
    });
    let lines = mx_send(
        mx.port(),
        &files.iter().map(|p| p.as_path()).collect::<Vec<_>>(),
    );
    assert_eq!(
        lines,
        [
            "REFUSED 554 5.7.1 No DKIM signature found",
            "REFUSED 554 5.7.1 DKIM signature is invalid: Calculated body hash does not match signature hash",
            "REFUSED 554 5.7.1 No valid DKIM signature found: none is aligned with the From: domain example.org",
        ],
        "{}",
        b.logs()
    );
    let logs = b.logs();
    let st = b.stop_and_open_store();
    let st_dir = tempfile::tempdir().unwrap();
    let stored = inbox_with(&st, "dave@b.example", "tok-signed")
        .unwrap_or_else(|| panic!("not stored on B: {}", logs));
    let ar = stored
        .lines()
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(ar.starts_with("authentication-results: "), "{stored}");
    // Both signatures (ed25519 and RSA) verified.
    assert_eq!(stored.matches("dkim=pass").count(), 2, "{stored}");
    assert!(stored.contains("header.s=dkim-ed"), "{stored}");
    assert!(
        stored.contains("DKIM-Signature: v=1; a=ed25519-sha256"),
        "{stored}"
    );
    assert!(stored.contains("a=rsa-sha256"), "{stored}");
    // An independent verifier agrees on both signatures.
    let copy = st_dir.path().join("stored.eml");
    std::fs::write(&copy, &stored).unwrap();
    let out = Command::new("/usr/bin/python3")
        .args(["-c", DKIMPY])
        .arg(&copy)
        .arg(format!("dkim._domainkey.example.org={}", signer.txt_rsa))
        .arg(format!(
            "dkim-ed._domainkey.example.org={}",
            signer.txt_ed25519
        ))
        .output()
        .expect("Debian's python3 with python3-dkim and python3-nacl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0 True\n1 True\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for tok in ["tok-unsigned", "tok-altered", "tok-other"] {
        assert!(inbox_with(&st, "dave@b.example", tok).is_none(), "{tok}");
    }
}

/// chatmail's own `test_reject_missing_dkim`: port 25 after STARTTLS, an
/// unsigned message to a local user, `SMTPDataError` "No DKIM signature
/// found". In chatmail mode the check is on by default and comes before the
/// encryption rule (this cleartext message would otherwise get 523).
const CHATMAIL_REJECT: &str = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.check_hostname = False
msg = "From: <fake@example.net>\r\nTo: <bob@example.org>\r\nSubject: x\r\n\r\nhello\r\n"
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30) as s:
    s.starttls(context=ctx)
    try:
        s.sendmail("fake@example.net", ["bob@example.org"], msg)
        print("ACCEPTED")
    except smtplib.SMTPDataError as e:
        print(e.smtp_code, e.smtp_error.decode())
"#;

#[test]
fn chatmail_mx_refuses_unsigned_mail_after_starttls() {
    let srv = Server::new(Opts {
        inbound: true,
        mx_cert: true,
        extra: "  chatmail: {}\n  dns: { resolvers: [\"127.0.0.1:9\"] }\n".into(),
        ..Opts::default()
    });
    let out = Command::new("python3")
        .args(["-c", CHATMAIL_REJECT])
        .arg(srv.inbound.unwrap().port().to_string())
        .arg(srv.dir.path().join("mx.crt"))
        .output()
        .expect("python3 is needed for this test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "554 5.7.1 No DKIM signature found",
        "{}",
        srv.logs()
    );
}
