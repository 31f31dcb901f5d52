//! Python's smtplib against the submission listener (the PROXY v2 header
//! written by the test before smtplib takes over the socket): AUTH PLAIN via
//! `login()`, `send_message`, and the refusal codes as smtplib reports them
//! (an EHLO name that is not one printable word included).
//! Needs `python3` (a test that cannot run it fails, it does not skip).

mod common;
mod mail_common;
use std::process::Command;

use mail_common::*;

const SCRIPT: &str = r#"
import smtplib, socket, sys, binascii
from email.message import EmailMessage
port, header = int(sys.argv[1]), binascii.unhexlify(sys.argv[2])

class ProxySMTP(smtplib.SMTP):
    def _get_socket(self, host, port, timeout):
        s = socket.create_connection((host, port), timeout)
        s.sendall(header)
        return s

def msg(frm):
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = frm, "bob@example.org", "tok-python"
    m.set_content("hello from smtplib, with ümlaut")
    return m

with ProxySMTP("127.0.0.1", port) as s:
    try:
        s.send_message(msg("alice@example.org"))
        print("NOAUTH accepted")
    except smtplib.SMTPSenderRefused as e:
        print("NOAUTH", e.smtp_code)
    try:
        s.login("alice@example.org", "nope")
    except smtplib.SMTPAuthenticationError as e:
        print("BADPW", e.smtp_code)
with ProxySMTP("127.0.0.1", port) as s:
    s.login("alice@example.org", "alice-pw")
    try:
        s.send_message(msg("bob@example.org"), from_addr="alice@example.org")
    except smtplib.SMTPDataError as e:
        print("FROM", e.smtp_code)
    try:
        s.send_message(msg("alice@example.org"), to_addrs=["x@remote.example"])
    except smtplib.SMTPRecipientsRefused as e:
        print("RELAY", e.recipients["x@remote.example"][0])
    print("SENT", s.send_message(msg("alice@example.org")))
with ProxySMTP("127.0.0.1", port) as s:
    # An EHLO name with a terminal escape in it: refused; a real one is not.
    print("EHLO", s.ehlo("evil\x1b[2J.example")[0], s.ehlo("client.example")[0])
"#;

#[test]
fn smtplib_auth_send_and_refusals() {
    let mut srv = Server::new(Opts::default());
    let header: String = proxy_header(None, None)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let out = Command::new("python3")
        .args(["-c", SCRIPT, &srv.submission.port().to_string(), &header])
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
            "NOAUTH 530",
            "BADPW 535",
            "FROM 550",
            "RELAY 550",
            "SENT {}",
            "EHLO 501 250"
        ]
    );
    let st = srv.stop_and_open_store();
    assert_eq!(count_token(&st, "bob@example.org", "tok-python"), 1);
}
