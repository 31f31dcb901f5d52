//! fetchmail (Debian package `fetchmail`), a classic client that sends no
//! ALPN, fetching over the front door's 993-style fixed IMAP listener: with
//! a password, and with a pinned client key and SASL EXTERNAL. Messages go
//! through an mda command into a file the test reads. A missing fetchmail
//! fails the test.

mod common;
mod imap_common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use imap_common::*;

const SEND: &str = r#"
import smtplib, ssl, sys
port, token = int(sys.argv[1]), sys.argv[2]
c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
c.check_hostname = False
c.verify_mode = ssl.CERT_NONE
c.set_alpn_protocols(["smtp"])
with smtplib.SMTP_SSL("127.0.0.1", port, context=c, timeout=10) as s:
    s.login("alice@example.org", "alice-pw")
    s.sendmail("alice@example.org", ["bob@example.org"], f"From: <alice@example.org>\r\nTo: <bob@example.org>\r\nSubject: {token}\r\nMessage-ID: <{token}@example.org>\r\n\r\nbody {token}\r\n".encode())
print("SENT")
"#;

fn send(s: &Stack, token: &str) {
    let (ok, out, err) = python(SEND, &[&s.port.to_string(), token], Duration::from_secs(30));
    assert!(ok && out.trim() == "SENT", "{out}{err}");
}

fn fetchmail(s: &Stack, name: &str, auth: &str, user_opts: &str) -> (bool, String) {
    let home = s.path().join(format!("home-{name}"));
    std::fs::create_dir_all(&home).unwrap();
    let mbox = s.path().join(format!("{name}.mbox"));
    let rc = home.join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "set no bouncemail\npoll 127.0.0.1 service {} protocol IMAP {auth}\n  user \"bob@example.org\" there with password \"bob-pw\" is \"root\" here\n  ssl no sslcertck fetchall {user_opts}\n  mda \"/usr/bin/tee -a {}\"\n",
            s.imaps_port,
            mbox.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new("timeout")
        .args(["60", "fetchmail", "-f"])
        .arg(&rc)
        .args(["--nodetach", "--nosyslog", "-v"])
        .env("HOME", &home)
        .env("FETCHMAILHOME", &home)
        .output()
        .expect("fetchmail is needed (Debian package fetchmail)");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(127), "fetchmail is needed: {log}");
    let got = std::fs::read_to_string(&mbox).unwrap_or_default();
    (out.status.success(), format!("{got}\n--- log ---\n{log}"))
}

#[test]
fn fetchmail_over_the_fixed_imap_listener() {
    let dir = tempfile::tempdir().unwrap();
    let key = make_key(dir.path(), "bob-desktop");
    let s = Stack::start(&[(&key, "bob@example.org", false)], dir);

    send(&s, "tok-fm-1");
    send(&s, "tok-fm-2");
    let (ok, text) = fetchmail(&s, "password", "auth password", "");
    assert!(ok, "{text}");
    assert!(
        text.contains("Subject: tok-fm-1") && text.contains("Subject: tok-fm-2"),
        "{text}"
    );
    // fetchmail deleted what it fetched: a second run finds nothing.
    let (ok, text) = fetchmail(&s, "again", "auth password", "");
    assert!(!ok && !text.contains("tok-fm"), "{text}");
    assert!(text.contains("No mail for bob@example.org"), "{text}");

    // The client key and SASL EXTERNAL (the key's imap_preauth is false).
    send(&s, "tok-fm-3");
    let (ok, text) = fetchmail(
        &s,
        "external",
        "auth external",
        &format!(
            "sslcert \"{}\" sslkey \"{}\"",
            s.path().join("bob-desktop.crt").display(),
            s.path().join("bob-desktop.key").display()
        ),
    );
    assert!(ok, "{text}");
    assert!(text.contains("Subject: tok-fm-3"), "{text}");
    assert!(text.contains("AUTHENTICATE EXTERNAL"), "{text}");
}
