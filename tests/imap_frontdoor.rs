//! The bundled IMAP server through the real front door, driven by Python's
//! imaplib and smtplib (TLS with ALPN `imap`/`smtp`, client keys pinned in
//! the registry): PREAUTH for a pinned key and SELECT/FETCH of a message that
//! key sent over ALPN `smtp`; `imap_preauth: false` → `* OK` then
//! `AUTHENTICATE EXTERNAL`; a password for another account refused with the
//! key; password LOGIN without a key; IDLE woken by a delivery; the IMAP
//! socket itself refuses a client without a PROXY header. Needs
//! python3; a missing python3 fails the test.

mod common;
mod imap_common;

use std::time::Duration;

use common::str_field;
use imap_common::*;

const PY: &str = r#"
import imaplib, smtplib, ssl, sys, time
port, keydir = int(sys.argv[1]), sys.argv[2]

def ctx(alpn, key=None):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.set_alpn_protocols([alpn])
    if key:
        c.load_cert_chain(f"{keydir}/{key}.crt", f"{keydir}/{key}.key")
    return c

def imap(key=None):
    return imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx("imap", key), timeout=10)

def send(key, frm, to, token):
    with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx("smtp", key), timeout=10) as s:
        s.sendmail(frm, [to], f"From: <{frm}>\r\nTo: <{to}>\r\nSubject: {token}\r\nMessage-ID: <{token}@example.org>\r\n\r\nbody {token}\r\n".encode())

# 1. Pinned key, preauth on: the key's account without any login.
send("alice-phone", "alice@example.org", "alice@example.org", "tok-preauth")
M = imap("alice-phone")
print("WELCOME", M.welcome.split(b" ")[1].decode(), M.state)
typ, data = M.select("INBOX")
print("SELECT", typ, data[0].decode())
typ, data = M.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
print("FETCH", typ, data[0][1].decode().strip())
M.logout()

# 2. Pinned key with imap_preauth: false: OK greeting, then EXTERNAL.
M = imap("alice-laptop")
print("WELCOME", M.welcome.split(b" ")[1].decode(), M.state)
typ, data = M.authenticate("EXTERNAL", lambda _: b"")
print("EXTERNAL", typ, M.state)
typ, data = M.select("INBOX", readonly=True)
print("SELECT", typ, data[0].decode())
M.logout()

# 3. The same key with the password of another account: refused.
M = imap("alice-laptop")
try:
    M.login("bob@example.org", "bob-pw")
    print("OTHER accepted")
except imaplib.IMAP4.error as e:
    print("OTHER refused", "AUTHENTICATIONFAILED" in str(e))

# 4. No key: password login.
M = imap()
print("WELCOME", M.welcome.split(b" ")[1].decode(), M.state)
try:
    M.authenticate("EXTERNAL", lambda _: b"")
    print("NOKEY-EXTERNAL accepted")
except imaplib.IMAP4.error:
    print("NOKEY-EXTERNAL refused")
typ, data = M.login("bob@example.org", "bob-pw")
print("LOGIN", typ)

# 5. IDLE: a delivery to bob wakes the session.
typ, data = M.select("INBOX")
print("SELECT", typ, data[0].decode())
M.send(b"I1 IDLE\r\n")
print("IDLE", M.readline().decode().strip())
send("alice-phone", "alice@example.org", "bob@example.org", "tok-idle")
t0 = time.monotonic()
line = M.readline().decode().strip()
waited = time.monotonic() - t0
print("WOKE", line, waited < 1.0)
M.send(b"DONE\r\n")
print("DONE", M.readline().decode().strip())
typ, data = M.fetch("1", "(BODY[HEADER.FIELDS (SUBJECT)])")
print("FETCH", typ, data[0][1].decode().strip())
M.logout()
"#;

#[test]
fn imaplib_through_the_front_door() {
    let dir = tempfile::tempdir().unwrap();
    let phone = make_key(dir.path(), "alice-phone");
    let laptop = make_key(dir.path(), "alice-laptop");
    let s = Stack::start(
        &[
            (&phone, "alice@example.org", true),
            (&laptop, "alice@example.org", false),
        ],
        dir,
    );
    let (ok, out, err) = python(
        PY,
        &[&s.port.to_string(), &s.path().display().to_string()],
        Duration::from_secs(60),
    );
    assert!(
        ok,
        "stdout:\n{out}\nstderr:\n{err}\nfrontdoor:\n{}",
        s.logs()
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "WELCOME PREAUTH AUTH",
            "SELECT OK 1",
            "FETCH OK Subject: tok-preauth",
            "WELCOME OK NONAUTH",
            "EXTERNAL OK AUTH",
            "SELECT OK 1",
            "OTHER refused True",
            "WELCOME OK NONAUTH",
            "NOKEY-EXTERNAL refused",
            "LOGIN OK",
            "SELECT OK 0",
            "IDLE + idling",
            "WOKE * 1 EXISTS True",
            "DONE I1 OK IDLE terminated",
            "FETCH OK Subject: tok-idle",
        ],
        "stderr:\n{err}"
    );
}

#[test]
fn imap_socket_requires_a_proxy_header() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let s = Stack::start(&[], dir);
    let mut c = std::os::unix::net::UnixStream::connect(s.path().join("imap.sock")).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    c.write_all(b"a CAPABILITY\r\n").unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(
        got.is_empty(),
        "no greeting without a PROXY header: {:?}",
        String::from_utf8_lossy(&got)
    );
    // The refusal is logged with why: no PROXY header, bytes that are not one.
    let refused = s
        .log()
        .wait_event_sync(Duration::from_secs(5), |e| e.get("refused").is_some())
        .unwrap_or_else(|| panic!("{}", s.logs()));
    assert_eq!(str_field(&refused, "refused"), "bad_header", "{refused}");
}
