//! The account page (`/account`, `mail.account_page`) through the real
//! front door with the bundled IMAP server behind it.
//!
//! - In headless Chromium (Debian's `chromium` and `chromium-driver`, driven
//!   over WebDriver by `tests/account_page/browser.py`): log in, generate a
//!   key and download its `.p12`, which (extracted with `openssl pkcs12`)
//!   opens an IMAP session through the front door greeted with `* PREAUTH`
//!   as alice; a certificate made with the page's own openssl commands (for the
//!   device name typed into it) is uploaded and logs in too; removing the first key closes its open IMAP
//!   session. The same script makes the screenshot `docs/account-page.png`
//!   (written there with `FRONTDOOR_UPDATE_SCREENSHOT=1`).
//! - At the HTTP level (`tests/account_page/http.py`): without a session or
//!   with a wrong CSRF token every change is refused and the registry stays
//!   byte for byte; another account's address and keys are refused; the
//!   keys-per-account limit and the changes-per-address rate hold; wrong passwords are throttled in the same
//!   tables as IMAP logins (the right password is then refused on both).
//! - The page can be switched off per account (`noAccountPage`) and by
//!   `enabled: false`; the status page offers it too.

mod common;
mod imap_common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{str_field, Launch, Process, BIN};
use imap_common::{python, Stack};

/// A running front door: ALPN imap → the bundled IMAP server, http/1.1 →
/// `web_backend`, with accounts alice, bob, carol (`<name>-pw`) and bob's
/// operator-pinned key `bob-phone`.
fn start(dir: &Path, web_backend: &str, page: &str) -> Process {
    let (c, k) = common::write_cert(dir, "server", &["localhost"]);
    let bob = common::make_key(dir, "bob-phone");
    std::fs::write(
        dir.join("keys.yaml"),
        format!(
            "# operator's keys\nkeys:\n  - name: bob-phone   # bob's phone\n    fingerprint: \"{}\"\n    account: bob@example.org\n    login: bob@example.org\n",
            bob.fingerprint
        ),
    )
    .unwrap();
    let chatmail = if web_backend == "builtin:chatmail" {
        "  chatmail: {}\n"
    } else {
        ""
    };
    let cfg = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\ntls:\n  certificates:\n    - {{ cert: {}, key: {} }}\nroutes:\n  imap: {{ alpn: [imap], backend: \"unix:imap.sock\", proxy_protocol: v2 }}\n  web: {{ alpn: [\"http/1.1\"], backend: \"{web_backend}\" }}\nclient_auth:\n  registry: keys.yaml\n  unknown_key: anonymous\nmail:\n  domains: [example.org]\n  data_dir: data\n  imap: {{ listen: \"unix:imap.sock\" }}\n{chatmail}{page}",
        c.display(),
        k.display(),
    );
    std::fs::write(dir.join("frontdoor.yaml"), cfg).unwrap();
    for a in ["alice", "bob", "carol"] {
        Stack::accounts(
            dir,
            &["add", &format!("{a}@example.org")],
            &format!("{a}-pw"),
        );
    }
    Launch::new(["serve", "--config"])
        .arg(dir.join("frontdoor.yaml"))
        .start()
}

fn keys_list(dir: &Path) -> String {
    let out = Command::new(BIN)
        .args(["keys", "--registry"])
        .arg(dir.join("keys.yaml"))
        .arg("list")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn script(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/account_page/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn in_chromium_generate_download_preauth_upload_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fd = start(
        d,
        "builtin:status",
        "  account_page: { max_keys_per_account: 5 }\n",
    );
    let port = fd.frontdoor_addrs()[0].port().to_string();
    // The screenshot in docs/ is remade with FRONTDOOR_UPDATE_SCREENSHOT=1;
    // otherwise the script's one goes to the test's directory and is only
    // checked to be a PNG.
    let docs_shot = format!("{}/docs/account-page.png", env!("CARGO_MANIFEST_DIR"));
    let shot = if std::env::var_os("FRONTDOOR_UPDATE_SCREENSHOT").is_some() {
        docs_shot
    } else {
        d.join("account-page.png").display().to_string()
    };
    let started = std::time::Instant::now();
    let (ok, out, err) = python(
        &script("browser.py"),
        &[&port, &d.display().to_string(), &shot],
        Duration::from_secs(90),
    );
    let log = fd.log.text();
    assert!(ok, "browser script failed:\n{out}\n{err}\n{log}");
    let png = std::fs::read(&shot).expect("the browser script saved its screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "not a screenshot"
    );
    let lines: Vec<&str> = out.lines().collect();
    for want in [
        "LOGGED-IN alice@example.org",
        "DOWNLOADED phone.p12 True",
        "ROWS phone",
        "NOTICE True",
        "IMAP-P12 PREAUTH True",
        "ROWS phone,tablet",
        "IMAP-OPENSSL PREAUTH",
        "SCREENSHOT True True",
        "ROWS tablet",
        "IMAP-CLOSED True True",
        "LOGGED-OUT True",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in:\n{out}\n{err}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    // The registry: the operator's entry and comments kept, the user's
    // entry tagged; `keys list` says who added what.
    let reg = std::fs::read_to_string(d.join("keys.yaml")).unwrap();
    assert!(
        reg.starts_with("# operator's keys\nkeys:\n  - name: bob-phone   # bob's phone\n"),
        "{reg}"
    );
    assert!(reg.contains("name: \"alice@example.org/tablet\""), "{reg}");
    assert!(!reg.contains("alice@example.org/phone"), "{reg}");
    assert!(reg.contains("added_by: self"), "{reg}");
    assert!(reg.contains("added_at: \"20"), "{reg}");
    let list = keys_list(d);
    let tablet = list
        .lines()
        .find(|l| l.contains("alice@example.org/tablet"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(tablet.contains(" self "), "{list}");
    let bob = list.lines().find(|l| l.starts_with("bob-phone")).unwrap();
    assert!(bob.contains(" operator "), "{list}");
    // The removal was applied by the running registry and closed the
    // session the key had open.
    let closed = fd.log.wait_event_sync(common::T, |e| {
        common::is_close(e)
            && str_field(e, "key") == "alice@example.org/phone"
            && str_field(e, "alpn") == "imap"
            && str_field(e, "reason").contains("client key removed from the registry")
    });
    assert!(closed.is_some(), "{log}");
    assert!(
        fd.log
            .event(
                |e| str_field(e, "message") == "account page: key generated and pinned"
                    && str_field(e, "account") == "alice@example.org"
                    && str_field(e, "key") == "phone"
            )
            .is_some(),
        "{log}"
    );
}

#[test]
fn refusals_csrf_other_accounts_limits_and_throttling() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fd = start(
        d,
        "builtin:chatmail",
        "  account_page: { max_keys_per_account: 2, changes_per_hour: 12 }\n",
    );
    let port = fd.frontdoor_addrs()[0].port().to_string();
    let (ok, out, err) = python(
        &script("http.py"),
        &[&port, &d.display().to_string()],
        Duration::from_secs(60),
    );
    assert!(ok, "http script failed:\n{out}\n{err}\n{}", fd.log.text());
    let lines: Vec<&str> = out.lines().collect();
    let mut want = vec![
        "LOGIN-PAGE 200 no-store True True True".to_owned(),
        "COOKIE-FLAGS fd_login True".to_owned(),
        "COOKIE-FLAGS fd_account True".to_owned(),
        "LOGIN-BAD-CSRF 403".to_owned(),
        "LOGIN-NO-COOKIE 403".to_owned(),
        "LOGIN 303 /account True".to_owned(),
        "PAGE 200 True True".to_owned(),
        "OTHER-LOGIN 403 True".to_owned(),
        "OTHER-KEY remove 400".to_owned(),
        "OTHER-KEY preauth 400".to_owned(),
        "OTHER-KEY traversal 400".to_owned(),
        "BAD-NAME 400 True".to_owned(),
        "PRIVATE-KEY 400".to_owned(),
        "ADD-DER 303 True True".to_owned(),
        "ADD-2 303".to_owned(),
        "ADD-OVER-LIMIT 403 True".to_owned(),
        "PREAUTH-OFF 303 True".to_owned(),
        "RATE 303,303,429 True True".to_owned(),
        "LOGOUT 303".to_owned(),
        "AFTER-LOGOUT 403".to_owned(),
        "WRONG 403,403,403,403,403,403,403,403,403,403,429,429".to_owned(),
        "RIGHT-THROTTLED 429".to_owned(),
        "IMAP-THROTTLED True".to_owned(),
    ];
    for a in ["add", "generate", "remove", "preauth", "logout"] {
        want.push(format!("NO-SESSION {a} 403"));
        want.push(format!("BAD-CSRF {a} 403"));
    }
    for w in &want {
        assert!(
            lines.contains(&w.as_str()),
            "missing {w:?} in:\n{out}\n{err}"
        );
    }
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("BAD-CSRF")).count(),
        15,
        "{out}"
    );
    assert!(
        lines
            .iter()
            .filter(|l| l.starts_with("UNCHANGED"))
            .all(|l| *l == "UNCHANGED True"),
        "{out}"
    );
    // bob's operator-pinned entry is untouched.
    let reg = std::fs::read_to_string(d.join("keys.yaml")).unwrap();
    assert!(
        reg.contains("  - name: bob-phone   # bob's phone\n"),
        "{reg}"
    );
    assert!(!reg.contains("evil"), "{reg}");
}

#[test]
fn switched_off_per_account_and_globally() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fd = start(d, "builtin:status", "  account_page: {}\n");
    let port = fd.frontdoor_addrs()[0].port().to_string();
    std::fs::create_dir_all(d.join("data/mailboxes/bob@example.org")).unwrap();
    std::fs::write(d.join("data/mailboxes/bob@example.org/noAccountPage"), "").unwrap();
    const PY: &str = r#"
import http.client, re, ssl, sys, urllib.parse
port = int(sys.argv[1])
c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE
c.set_alpn_protocols(["http/1.1"])
def req(m, p, body=None, cookie=None):
    h = http.client.HTTPSConnection("127.0.0.1", port, context=c, timeout=10)
    hd = {"Content-Type": "application/x-www-form-urlencoded"}
    if cookie: hd["Cookie"] = cookie
    h.request(m, p, body=urllib.parse.urlencode(body) if body else None, headers=hd)
    r = h.getresponse(); d = r.read().decode(); h.close(); return r, d
r, page = req("GET", "/")
print("STATUS", r.status, "<h1>Mail server</h1>" in page, 'href="/account"' in page)
for user in ("bob", "alice"):
    r, page = req("GET", "/account")
    ck = r.getheader("Set-Cookie").split(";")[0]
    tok = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    r, body = req("POST", "/account/login", {"csrf": tok, "user": f"{user}@example.org", "password": f"{user}-pw"}, ck)
    print("LOGIN", user, r.status, "turned off" in body)
"#;
    let (ok, out, err) = python(PY, &[&port], Duration::from_secs(30));
    assert!(ok, "{out}\n{err}");
    for w in [
        "STATUS 200 True True",
        "LOGIN bob 403 True",
        "LOGIN alice 303 False",
    ] {
        assert!(out.lines().any(|l| l == w), "missing {w:?} in:\n{out}");
    }
    drop(fd);

    // Globally off: /account is not there, the status page does not link it.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fd = start(d, "builtin:status", "  account_page: { enabled: false }\n");
    let port = fd.frontdoor_addrs()[0].port().to_string();
    const OFF: &str = r#"
import http.client, ssl, sys
c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE
c.set_alpn_protocols(["http/1.1"])
for p in ("/account", "/"):
    h = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=c, timeout=10)
    h.request("GET", p); r = h.getresponse(); d = r.read().decode()
    print("OFF", p, r.status, "/account" in d)
"#;
    let (ok, out, err) = python(OFF, &[&port], Duration::from_secs(30));
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("OFF /account 404 False"), "{out}");
    assert!(out.contains("OFF / 200 False"), "{out}");
}
