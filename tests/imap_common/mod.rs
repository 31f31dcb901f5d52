//! Harness for the IMAP end-to-end tests: one `frontdoor serve --config`
//! process running the front door (one ALPN listener routing `imap`/`smtp`,
//! one 993-style fixed IMAP listener) and, in-process, the bundled IMAP and
//! submission servers on Unix sockets behind PROXY v2, with client keys
//! made at test time and pinned in the registry.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::common;

pub const BIN: &str = env!("CARGO_BIN_EXE_frontdoor");

/// A client key: PEM files `<name>.crt`/`<name>.key` in the test dir.
pub struct Key {
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub fingerprint: String,
}

pub fn make_key(dir: &Path, name: &str) -> Key {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    // The certificate's own CN is chosen by the client and means nothing.
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "mallory@example.org");
    let cert = p.self_signed(&kp).unwrap();
    let fp = format!(
        "sha256:{}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(kp.public_key_der()))
    );
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, kp.serialize_pem()).unwrap();
    Key {
        name: name.into(),
        cert: c,
        key: k,
        fingerprint: fp,
    }
}

/// Everything running for one test: one `frontdoor serve` process with the
/// front door and the bundled mail servers (on Unix sockets) in it.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
    /// Front door listener with ALPN routing (imap, smtp).
    pub port: u16,
    /// Front door listener that always routes to IMAP (no ALPN needed).
    pub imaps_port: u16,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Stack {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn logs(&self) -> String {
        self.log.lock().unwrap().join("\n")
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
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(d.join("frontdoor.yaml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let l2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Front door listeners are numbered; mail ones are named.
                if line.contains("listening listener=") && !line.contains("listener=\"") {
                    if let Some(a) = common::field(&line, "addr") {
                        let _ = tx.send(a);
                    }
                }
                l2.lock().unwrap().push(line);
            }
        });
        let mut addrs: Vec<SocketAddr> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while addrs.len() < 2 {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(a) => addrs.push(a.parse().unwrap()),
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "frontdoor did not start:\n{}",
                        log.lock().unwrap().join("\n")
                    );
                }
            }
        }
        Stack {
            port: addrs[0].port(),
            imaps_port: addrs[1].port(),
            dir,
            child,
            log,
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
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
