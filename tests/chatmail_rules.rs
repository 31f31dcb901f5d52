//! The chatmail rules of the bundled backend, against the real binary with
//! Python's smtplib and imaplib through the front door (TLS, ALPN), LMTP on
//! its Unix socket and the inbound MX on loopback:
//! - submission: cleartext refused with filtermail's `523`, the same message
//!   OpenPGP-encrypted (made by GnuPG at test time) passes and reaches the
//!   recipient's INBOX, where the recipient's key decrypts it; a Secure-Join
//!   request passes, filtermail's fake one does not; `From:` other than
//!   MAIL FROM gets filtermail's `500`, MAIL FROM of another account `553`
//!   at RCPT; the stored copy has `Subject: [...]`
//!   and no trace of the client (Received, User-Agent, X-Mailer,
//!   X-Originating-IP, its EHLO name, its address);
//! - LMTP and the MX apply the incoming rule, with the per-account
//!   `allowCleartextIncoming` switch, and stored copies lose
//!   Received/DKIM-Signature/Authentication-Results;
//! - the per-sender send limit: burst + 1 messages in a row gives `450 4.7.1`.
//!
//! Needs python3 and gpg (a test that cannot run them fails, it does not skip).

mod chatmail_common;
mod common;
mod imap_common;

use std::time::Duration;

use chatmail_common::*;
use common::str_field;
use imap_common::python;

/// Message shapes as Delta Chat sends them, shared by the scripts.
const SHAPES: &str = r#"
import imaplib, smtplib, socket, ssl, sys
A, B, C = "alice@example.org", "bob@example.org", "carol@example.org"

def ctx(alpn):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.set_alpn_protocols([alpn])
    return c

def crlf(s):
    return s.replace("\r\n", "\n").replace("\n", "\r\n").encode()

def encrypted(frm, tok, armor, to=B, extra=""):
    return crlf(f"""From: {frm}
To: {to}
Subject: {tok} subject
Message-ID: <{tok}@example.org>
{extra}Chat-Version: 1.0
MIME-Version: 1.0
Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";
	boundary="XyZ"


--XyZ
Content-Description: PGP/MIME version identification
Content-Type: application/pgp-encrypted

Version: 1


--XyZ
Content-Description: OpenPGP encrypted message
Content-Disposition: inline; filename="encrypted.asc";
Content-Type: application/octet-stream; name="encrypted.asc"

{armor}

--XyZ--
""")

def plain(frm, tok, to=B):
    return crlf(f"From: {frm}\nTo: {to}\nSubject: {tok} subject\nMessage-ID: <{tok}@example.org>\n\nhello {tok}\n")

def securejoin(body, tok, frm=A):
    return crlf(f"""Subject: Message from {frm}
From: <{frm}>
To: <{B}>
Message-ID: <{tok}@example.org>
Chat-Version: 1.0
Secure-Join: vc-request
Secure-Join-Invitenumber: RANDOM-TOKEN
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="Gl9"


--Gl9
Content-Type: text/plain; charset=utf-8

{body}


--Gl9--
""")

def inbox(port, user):
    M = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx("imap"), timeout=10)
    M.login(user, user.split("@")[0] + "-pw")
    M.select("INBOX")
    out = []
    for uid in M.uid("SEARCH", None, "ALL")[1][0].split():
        raw = M.uid("FETCH", uid, "(BODY.PEEK[])")[1][0][1]
        head = raw.split(b"\r\n\r\n", 1)[0].decode()
        fields = {}
        for line in head.replace("\r\n\t", " ").replace("\r\n ", " ").split("\r\n"):
            k, _, v = line.partition(":")
            fields.setdefault(k.strip().lower(), v.strip())
        out.append((fields.get("message-id", "").strip("<>").split("@")[0], fields, raw))
    M.logout()
    return out
"#;

const SUBMIT: &str = r#"
port, armor, armor_gpg, outdir = int(sys.argv[1]), open(sys.argv[2]).read(), open(sys.argv[3]).read(), sys.argv[4]

def send(msg, frm=A, to=(B,)):
    with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx("smtp"), local_hostname="client-ehlo.example", timeout=10) as s:
        s.login(A, "alice-pw")
        try:
            s.sendmail(frm, list(to), msg)
            return "250"
        except smtplib.SMTPDataError as e:
            return f"{e.smtp_code} {e.smtp_error.decode()}"

client = "User-Agent: TestClient/1.0\nX-Mailer: TestMailer 2\nX-Originating-IP: [198.51.100.9]\n"
print("PLAIN", send(plain(A, "tok-plain")))
print("ENC", send(encrypted(A, "tok-enc", armor, extra=client)))
print("GNUPG-FRAMING", send(encrypted(A, "tok-gnupg", armor_gpg)))
print("SJ", send(securejoin("Secure-Join: vc-request", "tok-sj")))
print("SJFAKE", send(securejoin("Meow!", "tok-sjfake")))
print("FORGED", send(encrypted(C, "tok-forged", armor)))
try:
    send(encrypted(C, "tok-sender", armor), frm=C)
except smtplib.SMTPRecipientsRefused as e:
    print("SENDER", e.recipients[B][0], e.recipients[B][1].decode())
for tok, f, raw in inbox(port, B):
    low = raw.lower()
    leaks = [h for h in ("received", "user-agent", "x-mailer", "x-originating-ip") if h in f]
    leaks += [t for t in (b"client-ehlo", b"127.0.0.1", b"198.51.100.9") if t in low]
    print("MSG", tok, "subject=" + f.get("subject", "-"), "leaks=" + ",".join(map(str, leaks)))
    if tok == "tok-enc":
        body = raw.decode()
        start = body.index("-----BEGIN PGP MESSAGE-----")
        end = body.index("-----END PGP MESSAGE-----") + 25
        open(outdir + "/stored.asc", "w").write(body[start:end].replace("\r\n", "\n") + "\n")
"#;

#[test]
fn submission_encryption_rule_and_header_cleanup() {
    let s = chatmail_stack("{}");
    let bob = Gpg::new("Bob <bob@example.org>");
    let work = tempfile::tempdir().unwrap();
    let gpg_armor = bob.encrypt("bob@example.org", "the secret text for bob\n", work.path());
    let armor = write(work.path(), "new.asc", &reframe(&gpg_armor));
    let raw = write(work.path(), "gpg.asc", &gpg_armor);
    let script = format!("{SHAPES}{SUBMIT}");
    let (ok, out, err) = python(
        &script,
        &[
            &s.port.to_string(),
            armor.to_str().unwrap(),
            raw.to_str().unwrap(),
            work.path().to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(ok, "{out}\n{err}\n{}", s.logs());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "PLAIN 523 Encryption Needed: Invalid Unencrypted Mail",
            "ENC 250",
            // GnuPG 2.2 frames the session key packet in the old format,
            // which filtermail's check refuses too.
            "GNUPG-FRAMING 523 Encryption Needed: Invalid Unencrypted Mail",
            "SJ 250",
            "SJFAKE 523 Encryption Needed: Invalid Unencrypted Mail",
            "FORGED 500 Invalid FROM <carol@example.org> for <alice@example.org>",
            // MAIL FROM of another account: refused at RCPT, where a chatmail
            // relay's Postfix refuses it.
            "SENDER 553 5.7.1 Sender address not allowed for this account",
            "MSG tok-enc subject=[...] leaks=",
            "MSG tok-sj subject=[...] leaks=",
        ],
        "{}",
        s.logs()
    );
    // What bob's client sees: the stored message decrypts with bob's key.
    let stored = std::fs::read_to_string(work.path().join("stored.asc")).unwrap();
    assert_eq!(
        bob.decrypt(&stored, work.path()),
        "the secret text for bob\n"
    );
}

const INCOMING: &str = r#"
port, mx_port, lmtp_path, armor, flag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], open(sys.argv[4]).read(), sys.argv[5]
R = "stranger@remote.example"

def mx(msg, to=(B,), frm=R):
    with smtplib.SMTP("127.0.0.1", mx_port, local_hostname="mx.remote.example", timeout=10) as s:
        try:
            s.sendmail(frm, list(to), msg)
            return "250"
        except smtplib.SMTPDataError as e:
            return f"{e.smtp_code} {e.smtp_error.decode()}"

def lmtp(msg, to):
    # smtplib.LMTP reads one reply after DATA; LMTP sends one per recipient.
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(lmtp_path)
    f = s.makefile("rb")
    def reply():
        while True:
            line = f.readline().decode().rstrip()
            if line[3:4] != "-":
                return line
    reply()
    for c in ["LHLO mta.example", f"MAIL FROM:<{R}>"] + [f"RCPT TO:<{t}>" for t in to] + ["DATA"]:
        s.sendall(c.encode() + b"\r\n")
        reply()
    s.sendall(msg + b".\r\n")
    out = [reply() for _ in to]
    s.sendall(b"QUIT\r\n")
    s.close()
    return " | ".join(out)

report = crlf(f"""From: Mail Delivery Subsystem <MAILER-DAEMON@remote.example>
To: {B}
Subject: Undelivered Mail Returned to Sender
Message-ID: <mx-report@remote.example>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="R1"

--R1
Content-Type: text/plain

Your message could not be delivered.
--R1
Content-Type: message/delivery-status

Reporting-MTA: dns; remote.example
Action: failed
--R1--
""")
# Incoming armor may carry a Version header.
versioned = armor.replace("-----BEGIN PGP MESSAGE-----\n", "-----BEGIN PGP MESSAGE-----\nVersion: Test 1\n", 1)
trace = "Received: from mx.remote.example ([203.0.113.5])\n\tby remote; Mon, 1 Jan 2024 00:00:00 +0000\nDKIM-Signature: v=1; a=ed25519-sha256; d=remote.example;\n\tb=abc\nAuthentication-Results: remote.example; dkim=pass\n"
print("MX-PLAIN", mx(plain(R, "mx-plain")))
print("MX-ENC", mx(encrypted(R, "mx-enc", versioned, extra=trace)))
print("MX-SJ", mx(securejoin("Secure-Join: vc-request", "mx-sj", frm=R)))
print("MX-SJFAKE", mx(securejoin("Meow!", "mx-sjfake", frm=R)))
print("MX-REPORT", mx(report, frm=""))
print("MX-CAROL-BEFORE", mx(plain(R, "mx-carol-before", to=C), to=(C,)))
import os
os.makedirs(os.path.dirname(flag), exist_ok=True)
open(flag, "w").close()
print("MX-CAROL", mx(plain(R, "mx-carol", to=C), to=(C,)))
print("MX-BOTH", mx(plain(R, "mx-both"), to=(B, C)))
print("LMTP-BOTH", lmtp(plain(R, "lmtp-both"), (B, C)))
print("LMTP-ENC", lmtp(encrypted(R, "lmtp-enc", armor), (B,)))
for user in (B, C):
    for tok, f, raw in inbox(port, user):
        trace = [h for h in ("received", "dkim-signature", "authentication-results") if h in f]
        print("MSG", user.split("@")[0], tok, "subject=" + f.get("subject", "-"), "trace=" + ",".join(trace))
"#;

#[test]
fn lmtp_and_mx_apply_the_incoming_rule() {
    // Unsigned test mail: the MX's DKIM check (tests/dkim.rs) is off here.
    // Plaintext on the MX: its TLS rule is tested in tests/mx_peers.rs.
    let s = chatmail_stack_with(
        "{}",
        "  dkim: { verify: false }\n  mx: { require_tls: false }\n",
    );
    let mx = mail_listener(&s, "inbound");
    let mx_port = mx.rsplit(':').next().unwrap().to_owned();
    let lmtp = s.path().join("lmtp.sock");
    let armor = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/chatmail/encrypted-newformat.asc"
    );
    let flag = s
        .path()
        .join("data/mailboxes/carol@example.org/allowCleartextIncoming");
    let script = format!("{SHAPES}{INCOMING}");
    let (ok, out, err) = python(
        &script,
        &[
            &s.port.to_string(),
            &mx_port,
            lmtp.to_str().unwrap(),
            armor,
            flag.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(ok, "{out}\n{err}\n{}", s.logs());
    let lines: Vec<&str> = out.lines().collect();
    let e523 = "523 Encryption Needed: Invalid Unencrypted Mail";
    let ok_lmtp = |l: &&str| l.starts_with("250 2.0.0 Ok");
    assert_eq!(lines[0], format!("MX-PLAIN {e523}"), "{out}");
    assert_eq!(lines[1], "MX-ENC 250", "{out}");
    assert_eq!(lines[2], "MX-SJ 250", "{out}");
    assert_eq!(lines[3], format!("MX-SJFAKE {e523}"), "{out}");
    assert_eq!(lines[4], "MX-REPORT 250", "{out}");
    // carol enforces until her switch file exists; then only she accepts.
    assert_eq!(lines[5], format!("MX-CAROL-BEFORE {e523}"), "{out}");
    assert_eq!(lines[6], "MX-CAROL 250", "{out}");
    // The MX gives one reply: a refusing recipient refuses the message.
    assert_eq!(lines[7], format!("MX-BOTH {e523}"), "{out}");
    // LMTP answers each recipient: bob refuses, carol accepts.
    let both: Vec<&str> = lines[8]
        .strip_prefix("LMTP-BOTH ")
        .unwrap()
        .split(" | ")
        .collect();
    assert_eq!(both[0], e523, "{out}");
    assert!(ok_lmtp(&both[1]), "{out}");
    assert!(
        ok_lmtp(&lines[9].strip_prefix("LMTP-ENC ").unwrap()),
        "{out}"
    );
    assert_eq!(
        lines[10..],
        [
            "MSG bob mx-enc subject=mx-enc subject trace=",
            "MSG bob mx-sj subject=Message from stranger@remote.example trace=",
            "MSG bob mx-report subject=Undelivered Mail Returned to Sender trace=",
            "MSG bob lmtp-enc subject=lmtp-enc subject trace=",
            "MSG carol mx-carol subject=mx-carol subject trace=",
            "MSG carol lmtp-both subject=lmtp-both subject trace=",
        ],
        "{out}\n{}",
        s.logs()
    );
}

const LIMIT: &str = r#"
port, armor = int(sys.argv[1]), open(sys.argv[2]).read()
with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx("smtp"), timeout=10) as s:
    s.login(A, "alice-pw")
    for i in range(4):
        try:
            s.sendmail(A, [B], encrypted(A, f"limit-{i}", armor))
            print("SEND", i, "250")
        except smtplib.SMTPRecipientsRefused as e:
            code, text = e.recipients[B]
            print("SEND", i, code, text.decode().split(" rate-limited until ")[0])
with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx("smtp"), timeout=10) as s:
    s.login(B, "bob-pw")
    s.sendmail(B, [A], encrypted(B, "limit-bob", armor, to=A))
    print("OTHER 250")
print("DELIVERED", len(inbox(port, B)))
"#;

#[test]
fn send_limit_burst_plus_one_is_refused() {
    let s = chatmail_stack("{ max_user_send_per_minute: 1, max_user_send_burst_size: 3 }");
    let armor = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/chatmail/encrypted-newformat.asc"
    );
    let script = format!("{SHAPES}{LIMIT}");
    let (ok, out, err) = python(
        &script,
        &[&s.port.to_string(), armor],
        Duration::from_secs(60),
    );
    assert!(ok, "{out}\n{err}\n{}", s.logs());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "SEND 0 250",
            "SEND 1 250",
            "SEND 2 250",
            "SEND 3 450 4.7.1: Too much mail from <alice@example.org>,",
            "OTHER 250",
            "DELIVERED 3",
        ],
        "{}",
        s.logs()
    );
}

/// Real Delta Chat (deltachat-rpc-server 2.65.0) through chatmail mode: its
/// messages are encrypted in the shape the rule accepts, so B receives A's
/// text, and the server's log names the rule's verdict.
#[test]
fn deltachat_messages_pass_the_rule() {
    let s = chatmail_stack("{}");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/deltachat/two_accounts.py"
    );
    let script = std::fs::read_to_string(script).unwrap();
    let acc_dir = s.path().join("dc-accounts");
    let (ok, out, err) = python(
        &script,
        &[
            &s.port.to_string(),
            "alice@example.org",
            "alice-pw",
            "bob@example.org",
            "bob-pw",
            &acc_dir.display().to_string(),
            "90",
        ],
        Duration::from_secs(120),
    );
    assert!(
        ok,
        "stdout:\n{out}\nstderr:\n{err}\nfrontdoor:\n{}",
        s.logs()
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.last().copied(),
        Some("RECEIVED hello from alice via frontdoor"),
        "stderr:\n{err}"
    );
    // The rule's verdicts on submission (the session span's mode): passed
    // as encrypted, never refused.
    let submission = |e: &serde_json::Value| e["span"]["mode"] == "Submission";
    assert!(
        s.log()
            .event(|e| submission(e) && str_field(e, "pass") == "Encrypted")
            .is_some(),
        "{}",
        s.logs()
    );
    assert!(
        s.log()
            .event(|e| submission(e) && e.get("code").is_some() && e.get("reason").is_some())
            .is_none(),
        "{}",
        s.logs()
    );
}
