//! The identity in a PROXY header is honoured only when it is authenticated
//! (DESIGN §4: loopback is not a trust boundary). Against the real binary:
//! - TCP mail listeners: a forged header (no HMAC, a wrong one, a stale
//!   timestamp, a replay of a valid one) gets no PREAUTH; the generated
//!   secret of a one-process config is 0600 and the pinned-key path through
//!   the front door still logs in; `check` refuses a TCP mail listener that
//!   has no secret, naming the line;
//! - Unix sockets: another uid (65534, by `setpriv`) cannot open the socket,
//!   and when an operator loosens the modes it is refused by its peer
//!   credentials before a byte is read;
//! - a registry edit that moves a key to another account closes its open
//!   session within 2 s, and its next session is the new account.
//!
//! Needs python3 and setpriv (util-linux); runs as root in CI, as the
//! other-uid cases need.

mod common;
mod imap_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{closed_with, str_field, T};
use frontdoor::proxy_protocol::{encode_v2_at, unix_millis_now, ConnInfo, IdentityTlvs};
use imap_common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A header claiming `account`, as an attacker (or the front door) makes it.
fn header(account: Option<&str>, secret: Option<&[u8]>, ts_ms: u64) -> Vec<u8> {
    encode_v2_at(
        &ConnInfo {
            src: "192.0.2.9:40000".parse().unwrap(),
            dst: "127.0.0.1:443".parse().unwrap(),
            alpn: Some(b"imap".to_vec()),
            authority: None,
            unique_id: Some(b"forged".to_vec()),
            ssl: None,
            identity: account.map(|a| IdentityTlvs {
                account: a.into(),
                login: a.into(),
                key_name: "made-up".into(),
                fingerprint: [0x42; 32],
                no_imap_preauth: false,
            }),
        },
        secret,
        ts_ms,
    )
}

/// The first line the server sends after `header`, or `None` if it closes
/// without one (bounded by a 5 s read timeout).
fn first_line<S: Read + Write>(mut s: S, header: &[u8]) -> Option<String> {
    s.write_all(header).ok()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(n) if n > 0 => Some(line),
        _ => None,
    }
}

fn tcp_greeting(port: u16, header: &[u8]) -> Option<String> {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    first_line(s, header)
}

/// Wait (bounded) for a refusal of the mail servers with `refused == why`.
fn refused(stack: &Stack, why: &str) -> Option<serde_json::Value> {
    stack
        .log()
        .wait_event_sync(Duration::from_secs(5), |e| str_field(e, "refused") == why)
}

const PREAUTH_VIA_FRONTDOOR: &str = r#"
import imaplib, ssl, sys
port, keydir, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
c.check_hostname = False
c.verify_mode = ssl.CERT_NONE
c.load_cert_chain(f"{keydir}/{key}.crt", f"{keydir}/{key}.key")
M = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=c, timeout=10)
print("WELCOME", M.welcome.decode())
typ, data = M.select("INBOX")
print("SELECT", typ)
M.logout()
"#;

#[test]
fn tcp_mail_listener_honours_only_a_fresh_signed_header() {
    let dir = tempfile::tempdir().unwrap();
    let phone = make_key(dir.path(), "alice-phone");
    let (imap_port, sub_port) = (free_port(), free_port());
    let stack = Stack::start_at(
        &[(&phone, "alice@example.org", true)],
        dir,
        "",
        &format!("127.0.0.1:{imap_port}"),
        &format!("127.0.0.1:{sub_port}"),
    );
    // One process, TCP mail listeners: the secret was generated, 0600.
    let secret_path = stack.path().join("data/identity_secret");
    let mode = std::fs::metadata(&secret_path)
        .expect("identity secret generated in the data dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let secret = std::fs::read_to_string(&secret_path).unwrap();
    let secret = secret.trim().as_bytes();
    assert!(secret.len() >= 32);

    // The pinned-key path through the front door still logs in.
    let (ok, out, err) = python(
        PREAUTH_VIA_FRONTDOOR,
        &[
            &stack.imaps_port.to_string(),
            stack.path().to_str().unwrap(),
            "alice-phone",
        ],
        Duration::from_secs(20),
    );
    assert!(ok, "{out}\n{err}\n{}", stack.logs());
    assert!(out.contains("WELCOME * PREAUTH"), "{out}");
    assert!(out.contains("SELECT OK"), "{out}");

    let now = unix_millis_now();
    // A local process forging alice's identity over TCP loopback.
    for (what, h, log) in [
        (
            "no HMAC",
            header(Some("alice@example.org"), None, now),
            "bad_hmac",
        ),
        (
            "a wrong secret",
            header(
                Some("alice@example.org"),
                Some(b"guessed-secret-0123456789"),
                now,
            ),
            "bad_hmac",
        ),
        (
            "a header made 60 s ago",
            header(Some("alice@example.org"), Some(secret), now - 60_000),
            "stale",
        ),
    ] {
        assert_eq!(
            tcp_greeting(imap_port, &h),
            None,
            "{what}: must get no greeting"
        );
        assert!(
            refused(&stack, log).is_some(),
            "{what}: log says why\n{}",
            stack.logs()
        );
    }
    // The same on submission: no AUTH-less session for a forger.
    assert_eq!(
        tcp_greeting(sub_port, &header(Some("alice@example.org"), None, now)),
        None
    );

    // What the front door itself sends: accepted once, refused when replayed.
    let valid = header(Some("alice@example.org"), Some(secret), unix_millis_now());
    let g = tcp_greeting(imap_port, &valid).expect("a valid header is greeted");
    assert!(g.starts_with("* PREAUTH"), "{g}");
    assert_eq!(tcp_greeting(imap_port, &valid), None, "a replayed header");
    assert!(refused(&stack, "replayed").is_some(), "{}", stack.logs());
    // Anonymous headers need no MAC and still work.
    let g = tcp_greeting(imap_port, &header(None, None, now)).expect("anonymous is greeted");
    assert!(g.starts_with("* OK"), "{g}");
}

#[test]
fn check_refuses_a_tcp_mail_listener_without_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("mail.yaml");
    std::fs::write(
        &cfg,
        "mail:\n  domains: [example.org]\n  data_dir: data\n  submission: { listen: \"unix:sock/submission.sock\" }\n  imap: { listen: \"127.0.0.1:1143\" }\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "check must refuse: {err}");
    assert!(
        err.contains("mail.yaml:5: mail.imap.listen") && err.contains("without a secret"),
        "{err}"
    );
    assert!(
        !err.contains("mail.submission"),
        "unix sockets are fine: {err}"
    );
    // `mail serve` refuses to start on it as well.
    let out = Command::new(BIN)
        .args(["mail", "serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    // With a secret the same listener is accepted.
    std::fs::write(d.join("secret"), "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(d.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(d.join("keys.yaml"), "keys: []\n").unwrap();
    let mut yaml = std::fs::read_to_string(&cfg).unwrap();
    yaml.push_str("client_auth:\n  registry: keys.yaml\n  identity_secret: secret\n");
    std::fs::write(&cfg, yaml).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run `python3 -c script args` as uid/gid 65534 (nobody).
fn as_nobody(script: &str, args: &[&str]) -> String {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "timeout",
            "20",
            "python3",
            "-c",
            script,
        ])
        .args(args)
        .output()
        .expect("setpriv (util-linux) is needed for this test");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const UNIX_FORGER: &str = r#"
import socket, sys
path, hexhdr = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(path)
except OSError as e:
    print("DENIED", e.errno)
    sys.exit(0)
try:
    # Refused before a byte is read: the write itself may fail (EPIPE).
    s.sendall(bytes.fromhex(hexhdr))
    data = s.recv(200)
except OSError as e:
    data = b""
print("GREETING", data.decode(errors="replace").strip() if data else "<closed>")
"#;

#[test]
fn unix_socket_takes_headers_only_from_the_front_doors_uid() {
    let dir = tempfile::tempdir().unwrap();
    let phone = make_key(dir.path(), "alice-phone");
    let stack = Stack::start(&[(&phone, "alice@example.org", true)], dir);
    let sock = stack.path().join("imap.sock");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "PROXY socket mode {mode:o}");
    let forged = header(Some("alice@example.org"), None, unix_millis_now());
    let hex: String = forged.iter().map(|b| format!("{b:02x}")).collect();
    let path = sock.to_str().unwrap();

    // Another uid cannot even open the socket.
    let out = as_nobody(UNIX_FORGER, &[path, &hex]);
    assert!(out.contains("DENIED 13"), "{out}");

    // Modes loosened by hand: the peer's uid is still refused, before a byte is read.
    std::fs::set_permissions(stack.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody(UNIX_FORGER, &[path, &hex]);
    assert!(out.contains("GREETING <closed>"), "{out}");
    let uid = refused(&stack, "untrusted_uid").unwrap_or_else(|| panic!("{}", stack.logs()));
    assert!(str_field(&uid, "error").contains("uid 65534"), "{uid}");
    let anon = header(None, None, unix_millis_now());
    let anon_hex: String = anon.iter().map(|b| format!("{b:02x}")).collect();
    let out = as_nobody(UNIX_FORGER, &[path, &anon_hex]);
    assert!(
        out.contains("GREETING <closed>"),
        "even without identity: {out}"
    );

    // The front door's own uid: an unsigned identity is refused (the
    // one-process secret is in force on Unix sockets too), a signed one is greeted.
    let s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(first_line(s, &forged), None);
    let secret = std::fs::read_to_string(stack.path().join("data/identity_secret")).unwrap();
    let signed = header(
        Some("alice@example.org"),
        Some(secret.trim().as_bytes()),
        unix_millis_now(),
    );
    let s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let g = first_line(s, &signed).expect("greeted");
    assert!(g.starts_with("* PREAUTH"), "{g}");
}

const HELD_SESSION: &str = r#"
import imaplib, ssl, sys, time
port, keydir, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def ctx():
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.load_cert_chain(f"{keydir}/{key}.crt", f"{keydir}/{key}.key")
    return c
M = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx(), timeout=10)
print("OPEN", M.welcome.decode(), flush=True)
sys.stdin.readline()
t0 = time.monotonic()
M.sock.settimeout(5)
try:
    while M.sock.recv(4096):
        pass
    how = "eof"
except Exception as e:
    how = type(e).__name__
print("CLOSED", how, round(time.monotonic() - t0, 3), flush=True)
M2 = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx(), timeout=10)
print("AGAIN", M2.welcome.decode(), flush=True)
M2.logout()
"#;

fn write_registry(path: &Path, entries: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("keys:\n{entries}")).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_key_moved_to_another_account_loses_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let phone = make_key(dir.path(), "alice-phone");
    let stack = Stack::start(&[(&phone, "alice@example.org", true)], dir);
    let mut py = Command::new("python3")
        .args(["-c", HELD_SESSION])
        .arg(stack.imaps_port.to_string())
        .arg(stack.path())
        .arg("alice-phone")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut lines = BufReader::new(py.stdout.take().unwrap()).lines();
    let mut next = || lines.next().and_then(Result::ok).unwrap_or_default();
    let open = next();
    assert!(
        open.starts_with("OPEN * PREAUTH") && open.contains("alice@example.org"),
        "{open}\n{}",
        stack.logs()
    );
    write_registry(
        &stack.path().join("keys.yaml"),
        &format!(
            "  - name: alice-phone\n    fingerprint: \"{}\"\n    account: bob@example.org\n    login: bob@example.org\n",
            phone.fingerprint
        ),
    );
    py.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let closed = next();
    let secs: f64 = closed
        .rsplit(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(99.0);
    assert!(
        closed.starts_with("CLOSED") && secs < 2.0,
        "session must end within 2 s: {closed}\n{}",
        stack.logs()
    );
    let again = next();
    assert!(
        again.starts_with("AGAIN * PREAUTH") && again.contains("bob@example.org"),
        "{again}"
    );
    let _ = py.wait();
    let closed = stack
        .log()
        .wait_event_sync(T, |e| {
            closed_with(e, "stopped") && str_field(e, "key") == "alice-phone"
        })
        .unwrap_or_else(|| panic!("{}", stack.logs()));
    assert!(
        str_field(&closed, "reason").contains("client key's identity changed in the registry"),
        "{closed}"
    );
}
