//! Helpers for the chatmail-mode tests: a stack in chatmail mode with LMTP
//! and the inbound MX, the addresses of its mail listeners (its ready file),
//! OpenPGP messages made with GnuPG at test time (re-framed in the new
//! packet format, `reframe.py`), and the message shapes Delta Chat sends.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::imap_common::Stack;

/// The re-framing script (old-format OpenPGP packet headers to new ones).
pub const REFRAME: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/chatmail_common/reframe.py"
);

/// Start a stack (accounts alice/bob/carol) in chatmail mode with
/// `chatmail` (YAML flow mapping) as the `mail.chatmail:` section, LMTP on
/// `unix:lmtp.sock` and the inbound MX on a loopback port.
pub fn chatmail_stack(chatmail: &str) -> Stack {
    chatmail_stack_with(chatmail, "")
}

/// [`chatmail_stack`] with more lines for the `mail:` section.
pub fn chatmail_stack_with(chatmail: &str, more: &str) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "  chatmail: {chatmail}\n  lmtp: {{ listen: \"unix:lmtp.sock\" }}\n  inbound: {{ listen: \"127.0.0.1:0\" }}\n{more}"
    );
    Stack::start_with(&[], dir, &extra)
}

/// The address of a named mail listener (`inbound`, `lmtp`), as the ready
/// file gives it (`ip:port` or `unix:/path`).
pub fn mail_listener(s: &Stack, name: &str) -> String {
    s.process
        .ready
        .listeners
        .iter()
        .find(|e| e.name == name)
        .map(|e| e.addr.clone())
        .unwrap_or_else(|| panic!("no {name} listener: {:?}", s.process.ready))
}

/// A GnuPG home with a generated key for `uid` (ed25519 + cv25519).
pub struct Gpg {
    pub home: tempfile::TempDir,
}

impl Gpg {
    pub fn new(uid: &str) -> Gpg {
        // Short path: gpg-agent's socket lives in the home.
        let home = tempfile::Builder::new()
            .prefix("g")
            .tempdir_in("/tmp")
            .unwrap();
        let g = Gpg { home };
        g.run(&[
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            "future-default",
            "default",
            "never",
        ]);
        g
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", self.home.path())
            .args(["--batch", "--quiet"]);
        c
    }

    fn run(&self, args: &[&str]) -> Vec<u8> {
        let out = self
            .cmd()
            .args(args)
            .output()
            .expect("gpg (GnuPG) is needed for this test");
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// `text` encrypted to `to` (armored, as GnuPG writes it).
    pub fn encrypt(&self, to: &str, text: &str, dir: &Path) -> String {
        let plain = dir.join("plain.txt");
        std::fs::write(&plain, text).unwrap();
        let out = self.run(&[
            "--armor",
            "--trust-model",
            "always",
            "-r",
            to,
            "--output",
            "-",
            "--encrypt",
            plain.to_str().unwrap(),
        ]);
        String::from_utf8(out).unwrap()
    }

    /// Decrypt an armored message; the plaintext.
    pub fn decrypt(&self, armored: &str, dir: &Path) -> String {
        let f = dir.join("in.asc");
        std::fs::write(&f, armored).unwrap();
        String::from_utf8(self.run(&["--output", "-", "--decrypt", f.to_str().unwrap()])).unwrap()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// GnuPG's armor with its packets re-framed in the new header format.
pub fn reframe(armored: &str) -> String {
    let mut c = std::process::Command::new("python3")
        .arg(REFRAME)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is needed for this test");
    use std::io::Write;
    c.stdin
        .take()
        .unwrap()
        .write_all(armored.as_bytes())
        .unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// Write `text` to `dir/name`; its path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}
