//! Harness for the IMAP end-to-end tests: one `frontdoor serve --config`
//! process running the front door (one ALPN listener routing `imap`/`smtp`,
//! one 993-style fixed IMAP listener) and, in-process, the bundled IMAP and
//! submission servers on Unix sockets behind PROXY v2, with client keys
//! made at test time and pinned in the registry.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{self, poll_until, Launch, Log, Process};

pub use crate::common::BIN;

#[allow(unused_imports)]
pub use crate::common::{make_key, Key};

/// Everything running for one test: one `frontdoor serve` process with the
/// front door and the bundled mail servers (on Unix sockets) in it.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub process: Process,
    /// Front door listener with ALPN routing (imap, smtp).
    pub port: u16,
    /// Front door listener that always routes to IMAP (no ALPN needed).
    pub imaps_port: u16,
}

impl Stack {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The raw log (JSON lines), for failure messages.
    pub fn logs(&self) -> String {
        self.process.log.text()
    }

    /// The process's JSON log.
    pub fn log(&self) -> &Log {
        &self.process.log
    }

    /// Run `frontdoor accounts ARGS --config` with `stdin`.
    pub fn accounts(dir: &Path, args: &[&str], stdin: &str) {
        let mut c = Command::new(BIN)
            .arg("accounts")
            .args(args)
            .arg("--config")
            .arg(dir.join("frontdoor.yaml"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(format!("{stdin}\n").as_bytes())
            .unwrap();
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "accounts {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start with accounts alice/bob/carol (passwords `<name>-pw`) and the
    /// given registry entries `(key, account, imap_preauth)`.
    pub fn start(keys: &[(&Key, &str, bool)], dir: tempfile::TempDir) -> Stack {
        Self::start_with(keys, dir, "")
    }

    /// `start`, with `mail_extra` (indented YAML lines) added to `mail:`.
    pub fn start_with(
        keys: &[(&Key, &str, bool)],
        dir: tempfile::TempDir,
        mail_extra: &str,
    ) -> Stack {
        Self::start_at(
            keys,
            dir,
            mail_extra,
            "unix:imap.sock",
            "unix:submission.sock",
        )
    }

    /// `start_with`, the bundled IMAP and submission servers listening at
    /// `imap` and `submission` (`unix:PATH` or `ip:port`), where the front
    /// door's routes send them.
    pub fn start_at(
        keys: &[(&Key, &str, bool)],
        dir: tempfile::TempDir,
        mail_extra: &str,
        imap: &str,
        submission: &str,
    ) -> Stack {
        let d = dir.path();
        let (c, k) = common::write_cert(d, "server", &["localhost", "mail.example.org"]);
        let mut reg = String::from("keys:\n");
        for (key, account, preauth) in keys {
            reg.push_str(&format!(
                "  - name: {}\n    fingerprint: \"{}\"\n    account: {account}\n    login: {account}\n    imap_preauth: {preauth}\n",
                key.name, key.fingerprint
            ));
        }
        std::fs::write(d.join("keys.yaml"), reg).unwrap();
        let cfg = format!(
            "listeners:\n  - bind: \"127.0.0.1:0\"\n  - bind: \"127.0.0.1:0\"\n    route: imap\ntls:\n  certificates:\n    - {{ cert: {}, key: {} }}\nroutes:\n  imap: {{ alpn: [imap], backend: \"{imap}\", proxy_protocol: v2 }}\n  submission: {{ alpn: [smtp], backend: \"{submission}\", proxy_protocol: v2 }}\nclient_auth:\n  registry: keys.yaml\n  unknown_key: anonymous\nmail:\n  domains: [example.org]\n  data_dir: data\n  submission: {{ listen: \"{submission}\" }}\n  imap: {{ listen: \"{imap}\" }}\n  max_message_size: 10000000\n{mail_extra}",
            c.display(),
            k.display(),
        );
        std::fs::write(d.join("frontdoor.yaml"), cfg).unwrap();
        for a in ["alice", "bob", "carol"] {
            Self::accounts(d, &["add", &format!("{a}@example.org")], &format!("{a}-pw"));
        }
        let process = Launch::new(["serve", "--config"])
            .arg(d.join("frontdoor.yaml"))
            .start();
        let addrs = process.frontdoor_addrs();
        assert_eq!(addrs.len(), 2, "{:?}", process.ready);
        Stack {
            port: addrs[0].port(),
            imaps_port: addrs[1].port(),
            dir,
            process,
        }
    }
}

/// Run `python3 -c script args...`; the test fails when python3 is missing.
pub fn python(script: &str, args: &[&str], timeout: Duration) -> (bool, String, String) {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed for this test");
    if !poll_until(timeout, || child.try_wait().unwrap().is_some()) {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
