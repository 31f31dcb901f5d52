//! Chatmail accounts and `serve --chatmail`, with the real binary and real
//! clients: `frontdoor serve --chatmail _chat.localhost` serves IMAP by ALPN
//! with its self-signed certificate for the underscore name and the web
//! route; Python's imaplib logging in through the front door creates
//! admissible accounts and only those; `new_accounts: false` stops
//! creation but not existing accounts; accounts without a login for
//! `delete_inactive_users_after` go with their mail while active ones stay;
//! `accounts add` prints a `dclogin:` URL Delta Chat's parser takes and
//! `chatmail invite` the relay's `dcaccount:` invite.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const DOMAIN: &str = "_chat.localhost";

/// A running `serve --chatmail DOMAIN --listen 127.0.0.1:0 --data-dir D`,
/// launched by the kit (JSON log, ready file with the real address).
struct Relay {
    proc: Process,
    data: PathBuf,
}

impl Relay {
    fn start(data: &Path) -> Relay {
        let proc = Launch::new(["serve", "--chatmail", DOMAIN, "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data)
            .start();
        Relay {
            proc,
            data: data.to_owned(),
        }
    }

    /// The front door's port, as the ready file gives it.
    fn port(&self) -> u16 {
        self.proc.frontdoor_addrs()[0].port()
    }

    /// The log so far, for failure messages.
    fn logs(&self) -> String {
        self.proc.log.text()
    }

    /// What the binary printed to stderr that is not a JSON event (the
    /// banner with the invite), one line each, trimmed.
    fn banner(&self) -> Vec<String> {
        self.proc
            .log
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
            .map(|l| l.trim().to_owned())
            .collect()
    }

    fn config(&self) -> PathBuf {
        self.data.join("frontdoor.yaml")
    }

    fn cert(&self) -> PathBuf {
        self.data.join(format!("tls/{DOMAIN}.crt"))
    }

    /// Stop it (SIGTERM) and wait until it has exited.
    fn stop(mut self) {
        self.proc.signal("TERM");
        let child = &mut self.proc.child;
        assert!(
            poll_until(T, || child.try_wait().unwrap().is_some()),
            "did not stop"
        );
    }

    /// Log in by IMAP for each (user, password), through the front door;
    /// `true` for each login that succeeded.
    fn logins(&self, creds: &[(&str, &str)]) -> Vec<bool> {
        let mut args = vec![
            self.port().to_string(),
            self.cert().to_str().unwrap().to_owned(),
        ];
        for (u, p) in creds {
            args.push(u.to_string());
            args.push(p.to_string());
        }
        let out = python(LOGIN, &args);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("alpn=imap"), "{out}");
        lines[1..].iter().map(|l| l.starts_with("OK")).collect()
    }

    fn accounts(&self) -> Vec<String> {
        let out = frontdoor(
            &[
                "accounts",
                "list",
                "--config",
                self.config().to_str().unwrap(),
            ],
            None,
        );
        out.lines().map(str::to_owned).collect()
    }
}

/// The event of a first login that created no account: its `address`
/// and `reason` fields.
fn is_refusal(e: &serde_json::Value) -> bool {
    str_field(e, "target") == "frontdoor::mail::accounts"
        && e.get("address").is_some()
        && e.get("reason").is_some()
}

/// The event of an account created at its first login (`account`).
fn is_creation(e: &serde_json::Value) -> bool {
    at(e, "INFO")
        && str_field(e, "target") == "frontdoor::mail::accounts"
        && e.get("account").is_some()
        && e.get("error").is_none()
}

/// The event of an inactive account deleted with its mail (`account`,
/// `inactive_for`).
fn is_deletion(e: &serde_json::Value) -> bool {
    e.get("account").is_some() && e.get("inactive_for").is_some()
}

/// Run the binary; stdout on success, a panic with stderr otherwise.
fn frontdoor(args: &[&str], stdin: Option<&str>) -> String {
    let mut c = Command::new(Frontdoor::bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut i = c.stdin.take().unwrap();
        if let Some(s) = stdin {
            i.write_all(s.as_bytes()).unwrap();
        }
    }
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn python(script: &str, args: &[String]) -> String {
    let out = Command::new("timeout")
        .args(["60", "python3", "-c", script])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// IMAP logins through the front door: TLS with ALPN imap and SNI
/// _chat.localhost, the certificate checked against the relay's
/// self-signed one (name included). First line: the ALPN and the
/// certificate's names; then OK/NO per login.
const LOGIN: &str = r#"
import imaplib, socket, ssl, sys
port, cafile, creds = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
name = "_chat.localhost"
ctx = ssl.create_default_context(cafile=cafile)
ctx.set_alpn_protocols(["imap"])
class C(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout):
        s = socket.create_connection(("127.0.0.1", port), timeout)
        return self.ssl_context.wrap_socket(s, server_hostname=name)
c = C(name, port, ssl_context=ctx, timeout=10)
san = [v for k, v in c.sock.getpeercert()["subjectAltName"]]
print(f"alpn={c.sock.selected_alpn_protocol()} names={','.join(sorted(san))} greeting={c.welcome.decode()}")
c.logout()
for user, pw in zip(creds[0::2], creds[1::2]):
    c = C(name, port, ssl_context=ctx, timeout=10)
    try:
        c.login(user, pw)
        typ, data = c.select("INBOX")
        print(f"OK {user} exists={data[0].decode()}")
        c.logout()
    except imaplib.IMAP4.error as e:
        print(f"NO {user} {e}")
"#;

/// Delta Chat's `decode_login` (src/qr/dclogin_scheme.rs) in Python:
/// `://` to `:`, the address up to `?` or `/`, percent-decoded; the query
/// form-decoded; `v` must be 1 and `p` present.
const DCLOGIN: &str = r#"
import sys, urllib.parse
qr = sys.argv[1].replace("://", ":", 1)
assert qr.lower().startswith("dclogin:"), qr
url = urllib.parse.urlparse(qr)
assert url.scheme.lower() == "dclogin", url
payload = qr[len("dclogin:"):]
addr = urllib.parse.unquote(payload.split("?")[0].split("/")[0], errors="strict")
q = urllib.parse.parse_qs(url.query, strict_parsing=True)
assert q["v"] == ["1"], q
print(addr)
print(q["p"][0])
"#;

/// Delta Chat's `decode_account` (src/qr.rs) in Python: the domain.
const DCACCOUNT: &str = r#"
import sys, urllib.parse
qr = sys.argv[1]
assert qr.lower().startswith("dcaccount:"), qr
payload = qr[len("dcaccount:"):]
if payload.startswith("//"):
    payload = payload[2:]
assert payload and not payload.startswith("/"), qr
if payload.startswith("https://"):
    print(urllib.parse.urlparse(payload).hostname)
else:
    print(payload)
"#;

/// Decode the terminal QR code in `out` (the CLI's half-block rendering,
/// drawn for a dark background: a full block is two light modules, a
/// blank two dark ones) as a phone's scanner would read it.
fn decode_terminal_qr(out: &str) -> String {
    let rows: Vec<Vec<char>> = out
        .lines()
        .filter(|l| !l.is_empty() && l.chars().all(|c| " \u{2580}\u{2584}\u{2588}".contains(c)))
        .map(|l| l.chars().collect())
        .collect();
    assert!(rows.len() > 10, "no QR code in {out}");
    let width = rows.iter().map(Vec::len).max().unwrap();
    const SCALE: usize = 4;
    let (w, h) = (width * SCALE, rows.len() * 2 * SCALE);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        let (col, row) = (x / SCALE, y / SCALE);
        let c = rows[row / 2].get(col).copied().unwrap_or(' ');
        let top = row % 2 == 0;
        let light = match c {
            '\u{2588}' => true,
            '\u{2580}' => top,
            '\u{2584}' => !top,
            _ => false,
        };
        if light {
            255
        } else {
            0
        }
    });
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in {out}");
    grids[0].decode().unwrap().1
}

/// Replace the `chatmail: {}` line of the generated config.
fn set_chatmail(config: &Path, section: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    assert!(text.contains("  chatmail: {}\n"), "{text}");
    std::fs::write(
        config,
        text.replace("  chatmail: {}\n", &format!("  chatmail: {section}\n")),
    )
    .unwrap();
}

#[test]
fn serve_chatmail_is_a_relay_whose_first_logins_create_admissible_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let relay = Relay::start(&data);
    let port = relay.port();
    // The banner (printed, not logged) carries the invite.
    assert!(
        relay
            .banner()
            .iter()
            .any(|l| l == "dcaccount:https://_chat.localhost/new"),
        "{}",
        relay.logs()
    );
    // The written config validates, underscore domain and all.
    let out = frontdoor(
        &["check", "--config", relay.config().to_str().unwrap()],
        None,
    );
    assert!(out.contains("OK"), "{out}");

    // IMAP by ALPN with the self-signed certificate for the underscore name.
    let out = python(
        LOGIN,
        &[port.to_string(), relay.cert().to_str().unwrap().to_owned()],
    );
    assert!(
        out.starts_with("alpn=imap names=_chat.localhost,mta-sts._chat.localhost greeting=* OK"),
        "{out}"
    );
    // The web route (the default route, ALPN http/1.1).
    let page = Command::new("curl")
        .args([
            "-s",
            "--http1.1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            relay.cert().to_str().unwrap(),
            "--resolve",
            &format!("{DOMAIN}:{port}:127.0.0.1"),
            &format!("https://{DOMAIN}:{port}/"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&page.stdout), "200");

    // First logins: only the admissible one creates an account.
    let ok = relay.logins(&[
        ("abcde1234@_chat.localhost", "123456789"),
        ("short@_chat.localhost", "123456789"),
        ("abcde9999@_chat.localhost", "12345678"),
        ("abcd+1234@_chat.localhost", "123456789"),
        ("abcde5678@elsewhere.example", "123456789"),
        ("abcde1234@_chat.localhost", "123456789"),
        ("abcde1234@_chat.localhost", "wrong-password"),
    ]);
    assert_eq!(ok, [true, false, false, false, false, true, false]);
    assert_eq!(relay.accounts(), ["abcde1234@_chat.localhost"]);
    let refused: Vec<(String, String)> = relay
        .proc
        .log
        .events()
        .iter()
        .filter(|e| is_refusal(e))
        .map(|e| (str_field(e, "address"), str_field(e, "reason")))
        .collect();
    assert_eq!(
        refused,
        [
            (
                "short@_chat.localhost",
                "local part must be 9 to 9 characters long"
            ),
            (
                "abcde9999@_chat.localhost",
                "password must be at least 9 characters long"
            ),
            (
                "abcd+1234@_chat.localhost",
                "local part may contain only a-z, 0-9, '.', '_' and '-'"
            ),
        ]
        .map(|(a, r)| (a.to_owned(), r.to_owned())),
        "{}",
        relay.logs()
    );
    let created: Vec<String> = relay
        .proc
        .log
        .events()
        .iter()
        .filter(|e| is_creation(e))
        .map(|e| str_field(e, "account"))
        .collect();
    assert_eq!(created, ["abcde1234@_chat.localhost"], "{}", relay.logs());

    // The invite, in both forms Delta Chat decodes, with a QR code.
    let cfg = relay.config();
    let cfg = cfg.to_str().unwrap();
    for (args, want) in [
        (
            vec!["chatmail", "invite", "--config", cfg],
            "dcaccount:https://_chat.localhost/new",
        ),
        (
            vec![
                "chatmail",
                "invite",
                "--data-dir",
                data.to_str().unwrap(),
                "--short",
            ],
            "dcaccount:_chat.localhost",
        ),
    ] {
        let out = frontdoor(&args, None);
        let first = out.lines().next().unwrap();
        assert_eq!(first, want);
        assert_eq!(python(DCACCOUNT, &[first.to_owned()]), "_chat.localhost\n");
        assert_eq!(decode_terminal_qr(&out), want);
    }
    relay.stop();

    // The data directory is this relay's: another domain is refused.
    let out = Command::new(Frontdoor::bin())
        .args(["serve", "--chatmail", "other.example", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("a relay for _chat.localhost; use another --data-dir"),
        "{err}"
    );

    // No new accounts: the existing one keeps working, a new one is refused.
    set_chatmail(&data.join("frontdoor.yaml"), "{ new_accounts: false }");
    let relay = Relay::start(&data);
    let ok = relay.logins(&[
        ("zyxwv9876@_chat.localhost", "123456789"),
        ("abcde1234@_chat.localhost", "123456789"),
    ]);
    assert_eq!(ok, [false, true]);
    assert_eq!(relay.accounts(), ["abcde1234@_chat.localhost"]);
    let refusal = relay
        .proc
        .log
        .event(|e| is_refusal(e) && str_field(e, "address") == "zyxwv9876@_chat.localhost")
        .unwrap_or_else(|| panic!("{}", relay.logs()));
    assert_eq!(
        str_field(&refusal, "reason"),
        "new accounts are switched off (mail.chatmail.new_accounts: false)",
        "{refusal}"
    );
}

#[test]
fn check_accepts_underscore_names_and_still_refuses_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_cert(d, "chat", &[DOMAIN]);
    let cfg = |domain: &str| {
        format!(
            "listeners:\n  - bind: \"127.0.0.1:0\"\n    default_route: imap\n\
             tls:\n  certificates:\n    - cert: chat.crt\n      key: chat.key\n\
             routes:\n  imap:\n    alpn: [imap]\n    backend: \"unix:imap.sock\"\n\
             mail:\n  domains: [\"{domain}\"]\n  data_dir: data\n  imap: {{ listen: \"unix:imap.sock\" }}\n"
        )
    };
    std::fs::write(d.join("good.yaml"), cfg(DOMAIN)).unwrap();
    // ACME names too (a CA of a test setup may issue for them).
    let acme = |name: &str| {
        format!(
            "listeners:\n  - bind: \"127.0.0.1:0\"\n    default_route: imap\n\
             tls:\n  acme:\n    domains: [\"{name}\", \"mta-sts.{name}\"]\n    email: ops@example.org\n    state_dir: acme-state\n\
             routes:\n  imap:\n    alpn: [imap]\n    backend: \"unix:imap.sock\"\n"
        )
    };
    std::fs::write(d.join("acme.yaml"), acme("_chat.example.org")).unwrap();
    let out = frontdoor(
        &["check", "--config", d.join("acme.yaml").to_str().unwrap()],
        None,
    );
    assert!(out.contains("OK"), "{out}");
    std::fs::write(d.join("acme-bad.yaml"), acme("bad!.example.org")).unwrap();
    let out = Command::new(Frontdoor::bin())
        .args(["check", "--config"])
        .arg(d.join("acme-bad.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a DNS name"));
    std::fs::write(d.join("bad.yaml"), cfg("bad_domain!.example")).unwrap();
    let out = frontdoor(
        &["check", "--config", d.join("good.yaml").to_str().unwrap()],
        None,
    );
    assert!(out.contains("OK"), "{out}");
    let out = Command::new(Frontdoor::bin())
        .args(["check", "--config"])
        .arg(d.join("bad.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a domain name"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Log in as `user` over and over (about three times a second) until
/// `stop` exists; bounded in count and time.
const KEEP_ACTIVE: &str = r#"
import imaplib, os, socket, ssl, sys, time
port, cafile, user, pw, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=cafile)
ctx.set_alpn_protocols(["imap"])
class C(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout):
        s = socket.create_connection(("127.0.0.1", port), timeout)
        return self.ssl_context.wrap_socket(s, server_hostname="_chat.localhost")
t0 = time.monotonic()
n = 0
while not os.path.exists(stop) and n < 300 and time.monotonic() - t0 < 60:
    c = C("_chat.localhost", port, ssl_context=ctx, timeout=10)
    c.login(user, pw)
    c.logout()
    n += 1
    # sleep-ok: the pace of the logins that keep the account active.
    time.sleep(0.3)
print(n)
"#;

/// Send one message from `user` to itself through submission (ALPN smtp).
const SEND: &str = r#"
import smtplib, socket, ssl, sys
port, cafile, user, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=cafile)
ctx.set_alpn_protocols(["smtp"])
class S(smtplib.SMTP_SSL):
    def _get_socket(self, host, port, timeout):
        s = socket.create_connection(("127.0.0.1", port), timeout)
        return self.context.wrap_socket(s, server_hostname="_chat.localhost")
with S("_chat.localhost", port, context=ctx, timeout=10) as s:
    s.login(user, pw)
    s.sendmail(user, [user], f"From: {user}\r\nTo: {user}\r\nSubject: x\r\n\r\nkept until the account goes\r\n")
print("sent")
"#;

#[test]
fn inactive_accounts_go_with_their_mail_and_active_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    Relay::start(&data).stop();
    // The message below is cleartext: its sender passes the encryption rule.
    set_chatmail(
        &data.join("frontdoor.yaml"),
        "{ delete_inactive_users_after: \"3s\", passthrough_senders: [\"idleacct1@_chat.localhost\"] }",
    );
    let relay = Relay::start(&data);
    let port = relay.port();
    let (idle, active) = ("idleacct1@_chat.localhost", "activeac1@_chat.localhost");
    assert_eq!(
        relay.logins(&[(idle, "idle-password"), (active, "active-password")]),
        [true, true]
    );
    let cert = relay.cert().to_str().unwrap().to_owned();
    let out = python(
        SEND,
        &[
            port.to_string(),
            cert.clone(),
            idle.into(),
            "idle-password".into(),
        ],
    );
    assert_eq!(out, "sent\n");
    let out = python(
        LOGIN,
        &[
            port.to_string(),
            cert.clone(),
            idle.into(),
            "idle-password".into(),
        ],
    );
    assert!(out.contains(&format!("OK {idle} exists=1")), "{out}");

    let stop = dir.path().join("stop");
    let keeper = Command::new("python3")
        .args([
            "-c",
            KEEP_ACTIVE,
            &port.to_string(),
            &cert,
            active,
            "active-password",
        ])
        .arg(&stop)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        poll_until(Duration::from_secs(20), || !relay
            .accounts()
            .iter()
            .any(|a| a == idle)),
        "not deleted: {}",
        relay.logs()
    );
    // The active account logs in for a while longer than the period: it
    // is the only account at every check of the next 3 s.
    let mut checks = 0;
    poll_until(Duration::from_secs(3), || {
        assert_eq!(relay.accounts(), [active.to_string()], "{}", relay.logs());
        checks += 1;
        false
    });
    assert!(checks > 1, "{checks} checks");
    std::fs::write(&stop, "").unwrap();
    let kept = keeper.wait_with_output().unwrap();
    assert!(
        kept.status.success(),
        "{}",
        String::from_utf8_lossy(&kept.stderr)
    );
    let n: u32 = String::from_utf8_lossy(&kept.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(n >= 5, "only {n} logins");
    assert_eq!(relay.accounts(), [active.to_string()]);
    let deleted: Vec<String> = relay
        .proc
        .log
        .events()
        .iter()
        .filter(|e| is_deletion(e))
        .map(|e| str_field(e, "account"))
        .collect();
    assert_eq!(deleted, [idle], "{}", relay.logs());
    // Its mail went with it: logging in again makes a new, empty account.
    let out = python(
        LOGIN,
        &[port.to_string(), cert, idle.into(), "new-password".into()],
    );
    assert!(out.contains(&format!("OK {idle} exists=0")), "{out}");
}

#[test]
fn accounts_add_prints_a_dclogin_url_delta_chat_parses_and_that_logs_in() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let relay = Relay::start(&data);
    // A password with the characters a URL query treats specially.
    let pw = "pa+ss&w=rd/?%# 1";
    let out = frontdoor(
        &[
            "accounts",
            "add",
            "Qrcode123@_chat.localhost",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        Some(&format!("{pw}\n")),
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("created qrcode123@_chat.localhost"));
    let url = lines.next().unwrap();
    assert!(url.starts_with("dclogin:"), "{out}");
    assert_eq!(decode_terminal_qr(&out), url);
    let parsed = python(DCLOGIN, &[url.to_owned()]);
    assert_eq!(parsed, format!("qrcode123@_chat.localhost\n{pw}\n"));
    // The credentials in it are the account's.
    assert_eq!(relay.logins(&[("qrcode123@_chat.localhost", pw)]), [true]);
}

#[test]
fn an_interrupted_deletion_is_finished_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    Relay::start(&data).stop();
    set_chatmail(
        &data.join("frontdoor.yaml"),
        "{ passthrough_senders: [\"crashacc1@_chat.localhost\"] }",
    );
    let relay = Relay::start(&data);
    let port = relay.port();
    let acct = "crashacc1@_chat.localhost";
    assert_eq!(relay.logins(&[(acct, "crash-password")]), [true]);
    let cert = relay.cert().to_str().unwrap().to_owned();
    let out = python(
        SEND,
        &[
            port.to_string(),
            cert.clone(),
            acct.into(),
            "crash-password".into(),
        ],
    );
    assert_eq!(out, "sent\n");
    relay.stop();
    // The state a crash after the first step of a deletion leaves: the
    // record marked, the mail still in the store.
    let cfg = frontdoor::config::Config::load(&data.join("frontdoor.yaml")).unwrap();
    let accounts = frontdoor::mail::accounts::Accounts::from_config(cfg.mail.as_ref().unwrap());
    assert_eq!(
        accounts
            .mark_deleting(&[acct.to_string()], i64::MAX)
            .unwrap(),
        [acct]
    );
    let raw = std::fs::read_to_string(data.join("accounts.json")).unwrap();
    assert!(
        raw.contains(acct) && raw.contains("\"deleting\": true"),
        "{raw}"
    );

    let relay = Relay::start(&data);
    let port = relay.port();
    // Marked: it no longer logs in, and a first login does not re-create it.
    assert_eq!(relay.logins(&[(acct, "crash-password")]), [false]);
    assert!(
        poll_until(Duration::from_secs(20), || !std::fs::read_to_string(
            data.join("accounts.json")
        )
        .unwrap()
        .contains(acct)),
        "not finished: {}",
        relay.logs()
    );
    let v = relay
        .proc
        .log
        .wait_event_sync(T, is_deletion)
        .unwrap_or_else(|| panic!("{}", relay.logs()));
    assert_eq!(v["account"], acct, "{v}");
    // Its mail is gone: the address is free again and starts empty.
    let out = python(
        LOGIN,
        &[port.to_string(), cert, acct.into(), "crash-password".into()],
    );
    assert!(out.contains(&format!("OK {acct} exists=0")), "{out}");
}
