//! Delta Chat onboarding on a frontdoor chatmail relay, with no manual
//! server settings: `frontdoor serve --chatmail _chat.localhost` on
//! 127.0.0.1:443 (993 and 465 not listening), the real Delta Chat core
//! (`deltachat-rpc-server`/`-client` 2.65.0) adding one account from
//! `dcaccount:_chat.localhost` (the client picks its own credentials and
//! the first login creates the account) and one from
//! `dcaccount:https://_chat.localhost/new` (the relay mints them). Both must
//! configure through the relay's autoconfig onto port 443 with ALPN and
//! exchange end-to-end encrypted
//! messages after a vCard import and after SecureJoin.
//!
//! `_chat.localhost` resolves to 127.0.0.1 through /etc/hosts (`.ci/setup`
//! adds it): Delta Chat skips chain validation for names that start with
//! `_` but still checks that the certificate names the host.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::launch::Launch;
use common::logs::str_field;

const DOMAIN: &str = "_chat.localhost";

/// The whole exchange (two configurations, two messages, one SecureJoin) on
/// a loaded 2-core machine.
const WITHIN: Duration = Duration::from_secs(240);

fn script_output(args: &[&str]) -> (bool, String, String) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/deltachat/chatmail_onboard.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
            .join("\n")
    });
    let err = std::thread::spawn(move || std::io::read_to_string(err).unwrap_or_default());
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if t0.elapsed() > WITHIN + Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        // sleep-ok: the interval of a poll bounded by `WITHIN`.
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    (status.is_some_and(|s| s.success()), out, err)
}

#[test]
fn delta_chat_onboards_by_qr_onto_443_and_chats_end_to_end() {
    let resolved: Vec<_> = (DOMAIN, 443)
        .to_socket_addrs()
        .unwrap_or_else(|e| {
            panic!("{DOMAIN} does not resolve ({e}): add it to /etc/hosts as .ci/setup does")
        })
        .collect();
    assert!(
        resolved.iter().any(|a| a.ip().is_loopback()),
        "{DOMAIN} must resolve to loopback: {resolved:?}"
    );
    for port in [993, 465] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} must not be listening: Delta Chat must find 443 by itself"
        );
    }
    let data = tempfile::tempdir().unwrap();
    let relay = Launch::new(["serve", "--chatmail", DOMAIN, "--listen", "127.0.0.1:443"])
        .arg("--data-dir")
        .arg(data.path())
        .start();
    let acc_dir = data.path().join("dc-accounts");
    let (ok, out, err) = script_output(&[
        DOMAIN,
        &acc_dir.display().to_string(),
        &WITHIN.as_secs().to_string(),
    ]);
    assert!(
        ok,
        "stdout:\n{out}\nstderr:\n{err}\nrelay:\n{}",
        relay.log.text()
    );
    eprintln!("{err}");
    let line = |prefix: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{out}"))
            .trim()
            .to_owned()
    };
    assert!(line("VERSION ").contains("2.65.0"), "{out}");

    // Each account got an address of the relay: A's local part chosen by
    // the client (9 characters), B's minted by /new.
    let mut addrs = Vec::new();
    for who in ["A", "B"] {
        let addr = line(&format!("CONFIGURED {who} "));
        let (local, domain) = addr.split_once('@').unwrap_or_else(|| panic!("{addr}"));
        assert_eq!(domain, DOMAIN, "{out}");
        assert_eq!(local.len(), 9, "{out}");
        assert!(
            local
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "{out}"
        );
        // Found by autoconfig: IMAP and SMTP both on 443, no other port.
        let used = line(&format!("INFO {who} used_transport_settings "));
        assert!(used.contains(":443"), "{who} configured {used}");
        for other in [":993", ":465", ":143", ":587"] {
            assert!(!used.contains(other), "{who} configured {used}");
        }
        addrs.push(addr);
    }
    assert_ne!(addrs[0], addrs[1]);
    assert_eq!(line("RECEIVED B "), "1 hello from A by vcard", "{out}");
    assert_eq!(line("SECUREJOIN "), "done", "{out}");
    assert_eq!(
        line("RECEIVED A "),
        "1 hello from B after securejoin",
        "{out}"
    );

    // The relay created both accounts on their first login.
    let created: Vec<String> = relay
        .log
        .events()
        .iter()
        .filter(|e| str_field(e, "message") == "account created on first login")
        .map(|e| str_field(e, "account"))
        .collect();
    for a in &addrs {
        assert!(
            created.contains(a),
            "{a} not created at first login: {created:?}"
        );
    }
}
