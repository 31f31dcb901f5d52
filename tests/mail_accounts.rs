//! `frontdoor accounts …` on the real binary: add (password from stdin),
//! list, passwd, remove, refusals; `--data-dir` picks up the data dir's
//! frontdoor.yaml; and a password set by the CLI works at once for SMTP AUTH
//! on a running server (no restart).

mod common;
mod mail_common;
use std::io::Write;
use std::process::{Command, Stdio};

use mail_common::*;

fn run(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut c = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn accounts_cli_round_trip() {
    let srv = Server::new(Opts::default());
    let cfg = srv.config();
    let cfg = cfg.to_str().unwrap();
    let (ok, out, _) = run(&["accounts", "list", "--config", cfg], "");
    assert!(ok);
    assert_eq!(out, "alice@example.org\nbob@example.org\n");
    let (ok, _, err) = run(
        &["accounts", "add", "eve@elsewhere.org", "--config", cfg],
        "pw\n",
    );
    assert!(!ok);
    assert!(err.contains("not in a local domain"), "{err}");
    let (ok, _, err) = run(
        &["accounts", "add", "alice@example.org", "--config", cfg],
        "pw\n",
    );
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");
    let (ok, _, err) = run(
        &["accounts", "add", "carol@example.org", "--config", cfg],
        "",
    );
    assert!(!ok, "empty stdin must not create a passwordless account");
    assert!(err.contains("empty password"), "{err}");

    // A new password is live for the running server at once.
    let (ok, _, _) = run(
        &["accounts", "passwd", "bob@example.org", "--config", cfg],
        "new-bob-pw\n",
    );
    assert!(ok);
    let h = || proxy_header(None, None);
    let mut c = Client::open(srv.submission, Some(&h()));
    c.cmd("EHLO x");
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", b64(b"\0bob@example.org\0bob-pw")))
            .0,
        535
    );
    assert_eq!(
        c.cmd(&format!(
            "AUTH PLAIN {}",
            b64(b"\0bob@example.org\0new-bob-pw")
        ))
        .0,
        235
    );

    let (ok, _, _) = run(
        &["accounts", "remove", "bob@example.org", "--config", cfg],
        "",
    );
    assert!(ok);
    let (_, out, _) = run(&["accounts", "list", "--config", cfg], "");
    assert_eq!(out, "alice@example.org\n");
    let mut c = Client::open(srv.submission, Some(&h()));
    c.cmd("EHLO x");
    assert_eq!(
        c.cmd(&format!(
            "AUTH PLAIN {}",
            b64(b"\0bob@example.org\0new-bob-pw")
        ))
        .0,
        535
    );

    // The file holds argon2id hashes, never the passwords.
    let text = read_file(&srv.data_dir().join("accounts.json"));
    assert!(text.contains("$argon2id$"), "{text}");
    assert!(!text.contains("alice-pw"));
}

#[test]
fn data_dir_reads_its_frontdoor_yaml() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("frontdoor.yaml"),
        "mail:\n  domains: [localhost]\n  data_dir: .\n",
    )
    .unwrap();
    let dd = d.path().to_str().unwrap();
    let (ok, out, err) = run(
        &["accounts", "add", "me@localhost", "--data-dir", dd],
        "pw\n",
    );
    assert!(ok, "{err}");
    assert_eq!(out.lines().next(), Some("created me@localhost"));
    assert_eq!(out.lines().nth(1), Some("dclogin:me@localhost?p=pw&v=1"));
    let (ok, _, _) = run(
        &["accounts", "add", "me@example.org", "--data-dir", dd],
        "pw\n",
    );
    assert!(!ok);
    assert!(d.path().join("accounts.json").exists());
}

#[test]
fn auto_create_on_first_login() {
    let srv = Server::new(Opts {
        auto_create: true,
        ..Opts::default()
    });
    let h = || proxy_header(None, None);
    let mut c = Client::open(srv.submission, Some(&h()));
    c.cmd("EHLO x");
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", b64(b"\0new@example.org\0short")))
            .0,
        535
    );
    assert_eq!(
        c.cmd(&format!(
            "AUTH PLAIN {}",
            b64(b"\0new@example.org\0long-enough-pw")
        ))
        .0,
        235
    );
    let (_, out, _) = run(
        &[
            "accounts",
            "list",
            "--config",
            srv.config().to_str().unwrap(),
        ],
        "",
    );
    assert!(out.contains("new@example.org\n"), "{out}");
}
