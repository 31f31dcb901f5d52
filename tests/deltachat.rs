//! Delta Chat end to end through the front door: the real Delta Chat core
//! (Python packages `deltachat-rpc-server` and `deltachat-rpc-client`, same
//! version) configures two accounts against the front door's ALPN listener
//! on loopback (IMAP and SMTP on one port, implicit TLS, a self-signed
//! certificate accepted), A imports B's vCard and sends a text, and B must
//! receive it within the deadline. Missing packages fail the test.

mod common;
mod imap_common;

use std::time::Duration;

use imap_common::*;

#[test]
fn deltachat_two_accounts_exchange_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let s = Stack::start(&[], dir);
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
    // The core's warnings, for whoever reads the test output.
    eprintln!("{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("VERSION "), "{out}");
    assert_eq!(
        &lines[1..],
        &[
            "CONFIGURED alice@example.org",
            "CONFIGURED bob@example.org",
            "RECEIVED hello from alice via frontdoor",
        ],
        "stderr:\n{err}"
    );
}
