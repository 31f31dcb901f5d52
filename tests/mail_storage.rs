//! Storage limits of the bundled backends, through the real front door.
//!
//! `mail.quota`, seen by Python's imaplib and
//! smtplib: GETQUOTAROOT/GETQUOTA report usage and limit in KiB, APPEND over
//! the quota (and COPY) gets `NO [OVERQUOTA]`, and submission to a full mailbox gets
//! `552 5.2.2` at RCPT (smtplib declares SIZE). `mail.delete_after`: an
//! open IMAP session sees the message expunged once it is old enough. Needs
//! python3.

mod common;
mod imap_common;

use std::time::Duration;

use common::num_field;
use imap_common::*;

const PY: &str = r#"
import imaplib, smtplib, ssl, sys
port = int(sys.argv[1])

def ctx(alpn):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.set_alpn_protocols([alpn])
    return c

def send(size):
    body = "x" * size
    msg = f"From: <alice@example.org>\r\nTo: <alice@example.org>\r\nSubject: q\r\n\r\n{body}\r\n"
    with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx("smtp"), timeout=10) as s:
        s.login("alice@example.org", "alice-pw")
        try:
            s.sendmail("alice@example.org", ["alice@example.org"], msg)
            return "sent"
        except smtplib.SMTPRecipientsRefused as e:
            code, text = e.recipients["alice@example.org"]
            return f"{code} {text.decode()}"

M = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx("imap"), timeout=10)
M.login("alice@example.org", "alice-pw")
print("CAPS", "QUOTA" in M.capabilities, "QUOTA=RES-STORAGE" in M.capabilities)
typ, (roots, quotas) = M.getquotaroot("INBOX")
print("ROOT", typ, roots[0].decode(), "|", quotas[0].decode())
print("APPEND", M.append("INBOX", None, None, b"Subject: a\r\n\r\n" + b"y" * 12000)[0])
typ, data = M.getquota('""')
print("QUOTA", typ, data[0].decode())
typ, data = M.append("INBOX", None, None, b"Subject: b\r\n\r\n" + b"y" * 12000)
print("APPEND2", typ, data[0].decode())
print("SMTP small", send(500))
print("SMTP big", send(12000))
typ, data = M.getquota('""')
print("QUOTA", typ, data[0].decode())
M.select("INBOX")
typ, data = M.copy("1", "INBOX")
print("COPY", typ, data[0].decode())
typ, data = M.getquota("other")
print("OTHER", typ)
M.logout()
"#;

#[test]
fn quota_through_imap_and_submission() {
    let dir = tempfile::tempdir().unwrap();
    let s = Stack::start_with(&[], dir, "  quota: 20K\n");
    let (ok, out, err) = python(PY, &[&s.port.to_string()], Duration::from_secs(60));
    assert!(ok, "{out}\n{err}\n{}", s.logs());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec![
            "CAPS True True",
            "ROOT OK \"INBOX\" \"\" | \"\" (STORAGE 0 20)",
            "APPEND OK",
            "QUOTA OK \"\" (STORAGE 11 20)",
            "APPEND2 NO [OVERQUOTA] mailbox full: over quota",
            "SMTP small sent",
            "SMTP big 552 5.2.2 Mailbox full",
            "QUOTA OK \"\" (STORAGE 12 20)",
            "COPY NO [OVERQUOTA] mailbox full: over quota",
            "OTHER NO",
        ],
        "{}",
        s.logs()
    );
}

const EXPIRE: &str = r#"
import imaplib, ssl, sys, time
port = int(sys.argv[1])
c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
c.check_hostname = False
c.verify_mode = ssl.CERT_NONE
c.set_alpn_protocols(["imap"])
M = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=c, timeout=10)
M.login("alice@example.org", "alice-pw")
t0 = time.time()
print("APPEND", M.append("INBOX", None, None, b"Subject: short-lived\r\n\r\nbye\r\n")[0])
print("EXISTS", M.select("INBOX")[1][0].decode())
gone = None
while time.time() - t0 < 20:
    M.noop()
    if M.response("EXPUNGE")[1] != [None]:
        gone = time.time() - t0
        break
    # sleep-ok: the interval of a poll bounded by the 20 s loop.
    time.sleep(0.2)
print("GONE", gone is not None and 2.0 <= gone <= 15.0, round(gone or -1))
print("EXISTS", M.select("INBOX")[1][0].decode())
M.logout()
"#;

#[test]
fn delete_after_expunges_old_messages_under_an_open_session() {
    let dir = tempfile::tempdir().unwrap();
    let s = Stack::start_with(&[], dir, "  delete_after: 3s\n");
    let (ok, out, err) = python(EXPIRE, &[&s.port.to_string()], Duration::from_secs(60));
    assert!(ok, "{out}\n{err}\n{}", s.logs());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["APPEND OK", "EXISTS 1"], "{out}");
    assert!(lines[2].starts_with("GONE True"), "{out}\n{}", s.logs());
    assert_eq!(lines[3], "EXISTS 0", "{out}");
    assert!(
        s.log().event(|e| num_field(e, "removed") >= 1).is_some(),
        "{}",
        s.logs()
    );
}
