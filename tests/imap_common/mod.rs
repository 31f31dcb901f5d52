//! Harness for the IMAP end-to-end tests: the bundled mail servers
//! (`frontdoor mail serve`, IMAP and submission behind PROXY v2) and the
//! real front door in front of them (`frontdoor serve`: one ALPN listener
//! routing `imap`/`smtp`, one 993-style fixed IMAP listener), with client
//! keys made at test time and pinned in the registry.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

/// Everything running for one test.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub mail: Child,
    pub fd: common::Frontdoor,
    /// Front door listener with ALPN routing (imap, smtp).
    pub port: u16,
    /// Front door listener that always routes to IMAP (no ALPN needed).
    pub imaps_port: u16,
    pub imap_backend: SocketAddr,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.mail.kill();
        let _ = self.mail.wait();
    }
}

impl Stack {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Run `frontdoor accounts ARGS --config` with `stdin`.
    pub fn accounts(dir: &Path, args: &[&str], stdin: &str) {
        let mut c = Command::new(BIN)
            .arg("accounts")
            .args(args)
            .arg("--config")
            .arg(dir.join("mail.yaml"))
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
        let d = dir.path();
        std::fs::write(
            d.join("mail.yaml"),
            "mail:\n  domains: [example.org]\n  data_dir: data\n  trusted_proxies: [\"127.0.0.0/8\"]\n  submission: { listen: \"127.0.0.1:0\" }\n  imap: { listen: \"127.0.0.1:0\" }\n  max_message_size: 10000000\n",
        )
        .unwrap();
        for a in ["alice", "bob", "carol"] {
            Self::accounts(d, &["add", &format!("{a}@example.org")], &format!("{a}-pw"));
        }
        let mut mail = Command::new(BIN)
            .args(["mail", "serve", "--config"])
            .arg(d.join("mail.yaml"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(mail.stdout.take().unwrap()).lines();
        let (mut imap, mut sub): (Option<SocketAddr>, Option<SocketAddr>) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(20);
        while imap.is_none() || sub.is_none() {
            assert!(Instant::now() < deadline, "mail servers did not start");
            let Some(Ok(l)) = lines.next() else {
                panic!("mail servers exited: {:?}", mail.try_wait());
            };
            if let Some(a) = l.strip_prefix("imap listening on ") {
                imap = Some(a.parse().unwrap());
            }
            if let Some(a) = l.strip_prefix("submission listening on ") {
                sub = Some(a.parse().unwrap());
            }
        }
        let (imap, sub) = (imap.unwrap(), sub.unwrap());
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
            "listeners:\n  - bind: \"127.0.0.1:0\"\n  - bind: \"127.0.0.1:0\"\n    route: imap\ntls:\n  certificates:\n    - {{ cert: {}, key: {} }}\nroutes:\n  imap: {{ alpn: [imap], backend: \"{imap}\", proxy_protocol: v2 }}\n  submission: {{ alpn: [smtp], backend: \"{sub}\", proxy_protocol: v2 }}\nclient_auth:\n  registry: keys.yaml\n  unknown_key: anonymous\n",
            c.display(),
            k.display(),
        );
        let p = d.join("fd.yaml");
        std::fs::write(&p, cfg).unwrap();
        let fd = common::Frontdoor::start(&p, 2);
        let (port, imaps_port) = (fd.addrs[0].port(), fd.addrs[1].port());
        Stack {
            dir,
            mail,
            fd,
            port,
            imaps_port,
            imap_backend: imap,
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
