//! The bundled IMAP server in chatmail mode, checked with real clients
//! through the front door: Python (imaplib, and a raw client with zlib for
//! COMPRESS=DEFLATE in `tests/chatmail_imap/client.py`) for the
//! capabilities, the METADATA entries chatmail relays serve, device tokens
//! that persist across a restart, refused input, and compression with
//! IDLE; then the real Delta Chat core exchanging a message with
//! compression on, seen negotiated in the JSON log.

mod common;
mod imap_common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{num_field, str_field};
use imap_common::*;
use serde_json::Value;

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/chatmail_imap/client.py");

/// Run a check of client.py against `port`; its JSON answer.
fn check(args: &[&str]) -> Value {
    let script = std::fs::read_to_string(CLIENT).unwrap();
    let (ok, out, err) = python(&script, args, Duration::from_secs(60));
    assert!(
        ok,
        "client.py {args:?} failed:\nstdout:\n{out}\nstderr:\n{err}"
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

const APPVERSIONS: &str = r#"{
  "clients": [
    {"clientId": "deltachat", "sources": [
      {"sourceId": "gplay", "versionInteger": 754, "versionString": "2.57.0",
       "downloadUrl": "https://github.com/deltachat/deltachat-android/releases"}
    ]}
  ]
}"#;

/// `mail:` lines turning chatmail mode on with every METADATA source set.
fn chatmail_extra(dir: &std::path::Path, compress: bool) -> String {
    std::fs::write(dir.join("appversions.json"), APPVERSIONS).unwrap();
    std::fs::write(dir.join("turn.secret"), "north\n").unwrap();
    format!(
        "  chatmail:\n    iroh_relay: \"https://iroh.example.org/\"\n    turn: \"turn.example.org:3478\"\n    turn_secret_file: turn.secret\n    appversions: appversions.json\n    privacy_mail: privacy@example.org\n    metadata_comment: \"a test relay\"\n    imap_compress: {compress}\n"
    )
}

fn chatmail_stack(compress: bool) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let extra = chatmail_extra(dir.path(), compress);
    Stack::start_with(&[], dir, &extra)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn xchatmail_and_xdeltapush_only_in_chatmail_mode() {
    let plain = Stack::start(&[], tempfile::tempdir().unwrap());
    let port = plain.imaps_port.to_string();
    let r = check(&["caps", &port, "alice@example.org", "alice-pw"]);
    for when in ["before", "after"] {
        let caps = strings(&r[when]);
        assert!(caps.contains(&"METADATA".to_owned()), "{caps:?}");
        for c in ["XCHATMAIL", "XDELTAPUSH", "COMPRESS=DEFLATE"] {
            assert!(!caps.contains(&c.to_owned()), "{c} offered: {caps:?}");
        }
    }
    drop(plain);

    let cm = chatmail_stack(false);
    let port = cm.imaps_port.to_string();
    let r = check(&["caps", &port, "alice@example.org", "alice-pw"]);
    for when in ["before", "after"] {
        let caps = strings(&r[when]);
        for c in ["XCHATMAIL", "XDELTAPUSH", "METADATA"] {
            assert!(caps.contains(&c.to_owned()), "{c} missing {when}: {caps:?}");
        }
        assert!(!caps.contains(&"COMPRESS=DEFLATE".to_owned()), "{caps:?}");
    }
    drop(cm);

    let cz = chatmail_stack(true);
    let port = cz.imaps_port.to_string();
    let r = check(&["caps", &port, "alice@example.org", "alice-pw"]);
    assert!(strings(&r["after"]).contains(&"COMPRESS=DEFLATE".to_owned()));
}

#[test]
fn shared_metadata_as_chatmail_serves_it() {
    let s = chatmail_stack(false);
    let port = s.imaps_port.to_string();
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let r = check(&["meta", &port, "alice@example.org", "alice-pw"]);
    assert!(r["tagged"].as_str().unwrap().contains("OK"), "{r}");
    let m = &r["server"];
    assert_eq!(m["/shared/comment"], "a test relay");
    assert_eq!(m["/shared/admin"], "mailto:privacy@example.org");
    assert_eq!(
        m["/shared/vendor/deltachat/irohrelay"],
        "https://iroh.example.org/"
    );
    // host:port:expiry:password, as Delta Chat's create_ice_servers_from_metadata reads it.
    let turn = m["/shared/vendor/deltachat/turn"].as_str().unwrap();
    let parts: Vec<&str> = turn.splitn(4, ':').collect();
    assert_eq!(&parts[..2], ["turn.example.org", "3478"], "{turn}");
    let expiry: i64 = parts[2].parse().unwrap();
    assert!(
        expiry >= before + 5 * 86_400 - 5 && expiry <= before + 5 * 86_400 + 120,
        "{turn}"
    );
    // The TURN REST API password: base64(HMAC-SHA1(secret, username)).
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"north");
    let tag = ring::hmac::sign(&key, parts[2].as_bytes());
    use base64::Engine;
    assert_eq!(
        parts[3],
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    );
    // appversions: the configured JSON, on one line, the same value.
    let av = m["/shared/vendor/deltachat/appversions"].as_str().unwrap();
    assert!(!av.contains('\n'), "{av}");
    let want: Value = serde_json::from_str(APPVERSIONS).unwrap();
    assert_eq!(serde_json::from_str::<Value>(av).unwrap(), want);
    // Shared entries belong to the server (mailbox ""), not to INBOX.
    assert_eq!(
        r["inbox"]["/shared/vendor/deltachat/irohrelay"],
        Value::Null
    );
    let depth1 = strings(&r["depth1"]);
    for e in ["irohrelay", "turn", "appversions"] {
        assert!(
            depth1.contains(&format!("/shared/vendor/deltachat/{e}")),
            "{depth1:?}"
        );
    }
    let maxsize = &r["maxsize"];
    assert_eq!(maxsize["entries"]["/shared/comment"], "a test relay");
    assert!(maxsize["entries"]
        .get("/shared/vendor/deltachat/appversions")
        .is_none());
    let t = maxsize["tagged"].as_str().unwrap();
    assert!(t.contains("OK [METADATA LONGENTRIES "), "{t}");
}

#[test]
fn turn_entry_only_when_turn_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let s = Stack::start_with(
        &[],
        dir,
        "  chatmail:\n    iroh_relay: \"https://iroh.example.org/\"\n",
    );
    let r = check(&[
        "meta",
        &s.imaps_port.to_string(),
        "alice@example.org",
        "alice-pw",
    ]);
    let m = &r["server"];
    assert_eq!(
        m["/shared/vendor/deltachat/irohrelay"],
        "https://iroh.example.org/"
    );
    for e in [
        "/shared/vendor/deltachat/turn",
        "/shared/vendor/deltachat/appversions",
        "/shared/comment",
        "/shared/admin",
    ] {
        assert_eq!(m[e], Value::Null, "{e}: {r}");
    }
}

/// Start the binary again on the stack's config and data (same listeners,
/// new ports); the IMAP (fixed-route) port.
fn restart(s: &mut Stack) -> (common::Frontdoor, u16) {
    s.process.kill();
    let fd = common::Frontdoor::start(&s.path().join("frontdoor.yaml"), 2);
    let port = fd.addrs[1].port();
    (fd, port)
}

#[test]
fn device_token_persists_across_restart_per_account() {
    let mut s = chatmail_stack(false);
    let port = s.imaps_port.to_string();
    let token = "openpgp:dGVzdC10b2tlbi1hbGljZQ==";
    let r = check(&["settoken", &port, "alice@example.org", "alice-pw", token]);
    assert!(r["tagged"].as_str().unwrap().contains("OK"), "{r}");
    let r = check(&["gettoken", &port, "alice@example.org", "alice-pw"]);
    assert_eq!(r["token"], token);
    let (fd, port) = restart(&mut s);
    let port = port.to_string();
    let r = check(&["gettoken", &port, "alice@example.org", "alice-pw"]);
    assert_eq!(r["token"], token, "after restart: {r}\n{}", fd.logs());
    let r = check(&["gettoken", &port, "bob@example.org", "bob-pw"]);
    assert_eq!(r["token"], Value::Null, "bob sees alice's token: {r}");
    // A second device of alice adds its token beside the first.
    let r = check(&["settoken", &port, "alice@example.org", "alice-pw", "second"]);
    assert!(r["tagged"].as_str().unwrap().contains("OK"), "{r}");
    let r = check(&["gettoken", &port, "alice@example.org", "alice-pw"]);
    let got = r["token"].as_str().unwrap();
    let mut tokens: Vec<&str> = got.split(' ').collect();
    tokens.sort();
    assert_eq!(tokens, [token, "second"]);
}

#[test]
fn bad_metadata_and_compress_input_is_refused() {
    let s = chatmail_stack(false);
    let r = check(&[
        "bad",
        &s.imaps_port.to_string(),
        "alice@example.org",
        "alice-pw",
    ]);
    let reply = |k: &str| r[k].as_str().unwrap().to_owned();
    assert!(reply("compress_before_login").contains(" BAD "), "{r}");
    for k in [
        "not_private_or_shared",
        "double_slash",
        "wildcard",
        "no_entries",
    ] {
        assert!(reply(k).contains(" BAD "), "{k}: {r}");
    }
    assert!(reply("set_shared").contains(" NO [NOPERM]"), "{r}");
    assert!(reply("token_with_space").contains(" NO "), "{r}");
    assert!(
        reply("too_large").contains(" NO [METADATA MAXSIZE 4096]"),
        "{r}"
    );
    assert!(
        reply("no_such_mailbox").contains(" NO [NONEXISTENT]"),
        "{r}"
    );
    // COMPRESS is not offered here (imap_compress off).
    assert!(reply("compress_unknown").contains(" NO "), "{r}");
    assert!(reply("noop_after").contains(" OK "), "{r}");
}

#[test]
fn compress_deflate_with_a_raw_zlib_client() {
    let s = chatmail_stack(true);
    let port = s.imaps_port.to_string();
    // One message to fetch.
    let script = format!(
        "import imaplib,ssl\nc=ssl.create_default_context();c.check_hostname=False;c.verify_mode=ssl.CERT_NONE\nm=imaplib.IMAP4_SSL('127.0.0.1',{port},ssl_context=c)\nm.login('alice@example.org','alice-pw')\nm.append('INBOX',None,None,b'From: a@example.org\\r\\nSubject: first\\r\\n\\r\\n' + b'compress me ' * 400 + b'\\r\\n')\nm.logout()\n"
    );
    let (ok, out, err) = python(&script, &[], Duration::from_secs(30));
    assert!(ok, "{out}{err}");
    let r = check(&["compress", &port, "alice@example.org", "alice-pw"]);
    let v = |k: &str| r[k].as_str().unwrap().to_owned();
    assert!(v("compress").contains(" OK "), "{r}");
    assert!(v("caps_after").starts_with("* CAPABILITY "), "{r}");
    assert!(!v("caps_after").contains("COMPRESS=DEFLATE"), "{r}");
    assert!(
        v("compress_again").contains(" NO [COMPRESSIONACTIVE]"),
        "{r}"
    );
    assert!(v("select").contains(" OK "), "{r}");
    assert!(v("fetch").contains(" OK "), "{r}");
    assert_eq!(v("fetched").matches("compress me ").count(), 400, "{r}");
    assert_eq!(v("idle"), "+ idling");
    assert_eq!(v("idle_update"), "* 2 EXISTS");
    assert!(v("done").contains(" OK "), "{r}");
    assert!(v("logout").contains(" OK "), "{r}");
    // The session's closing line counts what compression saved.
    let closed = s
        .log()
        .wait_event_sync(common::T, |e| {
            str_field(e, "message") == "session closed" && str_field(e, "compress") == "DEFLATE"
        })
        .unwrap_or_else(|| panic!("no closing line:\n{}", s.logs()));
    let plain = num_field(&closed, "deflate_plain_out");
    let wire = num_field(&closed, "deflate_wire_out");
    assert!(plain > 4800 && wire * 3 < plain, "{closed}");
}

#[test]
fn deltachat_with_compress_exchanges_a_message() {
    let s = chatmail_stack(true);
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
    eprintln!("{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[1..],
        &[
            "CONFIGURED alice@example.org",
            "CONFIGURED bob@example.org",
            "RECEIVED hello from alice via frontdoor",
        ],
        "stderr:\n{err}"
    );
    // Both accounts' IMAP sessions turned compression on (the JSON log's
    // `compression on` events with `compress` and `account`).
    let on = |a: &'static str| {
        move |e: &Value| {
            str_field(e, "message") == "compression on"
                && str_field(e, "compress") == "DEFLATE"
                && str_field(e, "account") == a
        }
    };
    for a in ["alice@example.org", "bob@example.org"] {
        assert!(
            s.log().wait_event_sync(common::T, on(a)).is_some(),
            "no COMPRESS for {a}:\n{}",
            s.logs()
        );
    }
    let n = s
        .log()
        .count(|e| str_field(e, "message") == "compression on");
    println!("COMPRESS=DEFLATE sessions of Delta Chat: {n}");
}
