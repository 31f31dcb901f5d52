//! Submission through the real front door: `frontdoor serve` terminates TLS
//! and routes ALPN `smtp` (and a 465-style fixed listener) to the bundled
//! submission server run by `frontdoor mail serve`, with PROXY v2 between
//! them. Clients: Python smtplib (ALPN `smtp`) and swaks (no ALPN, fixed
//! listener). Needs python3 and swaks (Debian package `swaks`); a missing
//! tool fails the test.

mod common;
mod mail_common;

use std::process::Command;

use mail_common::*;

struct Setup {
    mail: Server,
    _fd: common::Frontdoor,
    alpn_port: u16,
    fixed_port: u16,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let mail = Server::new(Opts::default());
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = common::write_cert(dir.path(), "server", &["localhost", "mail.example.org"]);
    let cfg = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\n  - bind: \"127.0.0.1:0\"\n    route: submission\ntls:\n  certificates:\n    - {{ cert: {}, key: {} }}\nroutes:\n  submission: {{ alpn: [smtp], backend: \"{}\", proxy_protocol: v2 }}\n",
        c.display(),
        k.display(),
        mail.submission
    );
    let p = dir.path().join("fd.yaml");
    std::fs::write(&p, cfg).unwrap();
    let fd = common::Frontdoor::start(&p, 2);
    let (alpn_port, fixed_port) = (fd.addrs[0].port(), fd.addrs[1].port());
    Setup {
        mail,
        _fd: fd,
        alpn_port,
        fixed_port,
        _dir: dir,
    }
}

const PY: &str = r#"
import smtplib, ssl, sys
from email.message import EmailMessage
port = int(sys.argv[1])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["smtp"])
def msg(frm, token):
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = frm, "bob@example.org", token
    m.set_content("via the front door")
    return m
with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=10) as s:
    print("ALPN", s.sock.selected_alpn_protocol())
    try:
        s.send_message(msg("alice@example.org", "x"))
    except smtplib.SMTPSenderRefused as e:
        print("NOAUTH", e.smtp_code)
    s.login("alice@example.org", "alice-pw")
    try:
        s.send_message(msg("alice@example.org", "x"), from_addr="bob@example.org")
    except smtplib.SMTPSenderRefused as e:
        print("SENDER", e.smtp_code)
    s.send_message(msg("alice@example.org", "tok-fd-python"))
    print("SENT")
"#;

#[test]
fn smtplib_over_alpn_smtp_and_swaks_over_fixed_listener() {
    let mut s = setup();
    let out = Command::new("python3")
        .args(["-c", PY, &s.alpn_port.to_string()])
        .output()
        .expect("python3 is needed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        vec!["ALPN smtp", "NOAUTH 530", "SENDER 553", "SENT"]
    );

    let swaks = |extra: &[&str]| {
        let mut args = vec![
            "--server",
            "127.0.0.1",
            "--port",
            &s.fixed_port.to_string(),
            "--tls-on-connect",
            "--from",
            "bob@example.org",
            "--to",
            "alice@example.org",
            "--h-Subject",
            "tok-swaks",
            "--auth",
            "PLAIN",
            "--auth-user",
            "bob@example.org",
            "--timeout",
            "10",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        args.extend(extra.iter().map(|x| x.to_string()));
        Command::new("swaks")
            .args(&args)
            .output()
            .expect("swaks is needed (Debian package swaks)")
    };
    let ok = swaks(&["--auth-password", "bob-pw"]);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(text.contains("<~  235 2.7.0"), "{text}");
    assert!(text.contains("<~  250 2.0.0 Ok: queued"), "{text}");
    let bad = swaks(&["--auth-password", "wrong"]);
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(!bad.status.success());
    assert!(text.contains("<~* 535 5.7.8"), "{text}");

    let st = s.mail.stop_and_open_store();
    assert_eq!(count_token(&st, "bob@example.org", "tok-fd-python"), 1);
    assert_eq!(count_token(&st, "alice@example.org", "tok-swaks"), 1);
    // The Received: header carries the client address the front door saw.
    let m = &st.messages("alice@example.org", "INBOX").unwrap()[0];
    let raw = String::from_utf8(st.read("alice@example.org", "INBOX", m.uid).unwrap()).unwrap();
    assert!(raw.contains("([127.0.0.1])"), "{raw}");
    assert!(
        raw.contains("with ESMTPSA"),
        "TLS at the front door shows as S: {raw}"
    );
}
