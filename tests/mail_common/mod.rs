//! Test harness shared by the mail/SMTP integration tests: writes a config,
//! starts the real `frontdoor mail serve` (the kit's launcher, `crate::common`),
//! speaks SMTP with a PROXY v2 header.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use frontdoor::proxy_protocol::{encode_v2, ConnInfo, IdentityTlvs};

use crate::common::{Launch, Process};

pub use crate::common::BIN;
/// The identity secret the default server checks (TCP listeners honour an
/// identity only with an HMAC made with it).
pub const SECRET_TEXT: &str = "test-identity-secret-0123456789";
pub const SECRET: &[u8] = SECRET_TEXT.as_bytes();

pub struct Opts {
    pub trusted: &'static str,
    pub secret: Option<&'static str>,
    pub relay: Option<String>,
    pub max_size: usize,
    pub auto_create: bool,
    pub inbound: bool,
    /// Write a self-signed certificate for `mx.example.org` (mx.crt/mx.key
    /// in the config directory) into `tls.certificates`.
    pub mx_cert: bool,
    /// The `mail.domains` flow sequence.
    pub domains: &'static str,
    /// More lines for the `mail:` section (indented by two spaces).
    pub extra: String,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            trusted: "127.0.0.0/8",
            secret: Some(SECRET_TEXT),
            relay: None,
            max_size: 100_000,
            auto_create: false,
            inbound: false,
            mx_cert: false,
            domains: "[example.org]",
            extra: String::new(),
        }
    }
}

pub struct Server {
    pub dir: tempfile::TempDir,
    pub process: Option<Process>,
    pub submission: SocketAddr,
    pub lmtp: SocketAddr,
    pub inbound: Option<SocketAddr>,
    want_inbound: bool,
}

impl Server {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("frontdoor.yaml")
    }

    /// Write the config and create accounts alice/bob (passwords alice-pw/bob-pw).
    pub fn new(o: Opts) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut yaml = String::new();
        if let Some(s) = o.secret {
            std::fs::write(dir.path().join("secret"), format!("{s}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                dir.path().join("secret"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
            yaml.push_str("client_auth:\n  registry: keys.yaml\n  identity_secret: secret\n");
        }
        yaml.push_str(&format!(
            "mail:\n  domains: {}\n  data_dir: data\n  trusted_proxies: [\"{}\"]\n  submission: {{ listen: \"127.0.0.1:0\" }}\n  lmtp: {{ listen: \"127.0.0.1:0\" }}\n  max_message_size: {}\n  accounts: {{ auto_create: {} }}\n",
            o.domains, o.trusted, o.max_size, o.auto_create
        ));
        yaml.push_str(&o.extra);
        if o.inbound {
            yaml.push_str("  inbound: { listen: \"127.0.0.1:0\" }\n");
        }
        if let Some(r) = &o.relay {
            yaml.push_str(&format!("  relay: \"{r}\"\n"));
        }
        if o.mx_cert {
            let ck =
                rcgen::generate_simple_self_signed(vec!["mx.example.org".to_string()]).unwrap();
            std::fs::write(dir.path().join("mx.crt"), ck.cert.pem()).unwrap();
            std::fs::write(dir.path().join("mx.key"), ck.key_pair.serialize_pem()).unwrap();
            yaml.push_str("tls:\n  certificates:\n    - cert: mx.crt\n      key: mx.key\n");
        }
        std::fs::write(dir.path().join("frontdoor.yaml"), yaml).unwrap();
        let mut s = Server {
            dir,
            process: None,
            submission: "0.0.0.0:0".parse().unwrap(),
            lmtp: "0.0.0.0:0".parse().unwrap(),
            inbound: None,
            want_inbound: o.inbound,
        };
        s.accounts(&["add", "alice@example.org"], Some("alice-pw"));
        s.accounts(&["add", "bob@example.org"], Some("bob-pw"));
        s.start();
        s
    }

    pub fn accounts(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut c = Command::new(BIN)
            .arg("accounts")
            .args(args)
            .arg("--config")
            .arg(self.config())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            let mut i = c.stdin.take().unwrap();
            if let Some(s) = stdin {
                i.write_all(s.as_bytes()).unwrap();
                i.write_all(b"\n").unwrap();
            }
        }
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "accounts {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Start (or restart) the server and learn its ports from its ready file.
    pub fn start(&mut self) {
        let p = Launch::new(["mail", "serve", "--config"])
            .arg(self.config())
            .start();
        let tcp = |name| p.mail(name).map(|a| a.tcp());
        self.submission = tcp("submission").expect("a submission listener");
        self.lmtp = tcp("lmtp").expect("an lmtp listener");
        self.inbound = tcp("inbound");
        assert_eq!(self.inbound.is_some(), self.want_inbound, "{:?}", p.ready);
        self.process = Some(p);
    }

    /// The raw log (JSON lines), for failure messages.
    pub fn logs(&self) -> String {
        self.process
            .as_ref()
            .map(|p| p.log.text())
            .unwrap_or_default()
    }

    /// The running process (its JSON log, its pid).
    pub fn process(&self) -> &Process {
        self.process.as_ref().expect("the server is running")
    }

    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// Stop the server and open its store directly.
    pub fn stop_and_open_store(&mut self) -> frontdoor::mail::store::Store {
        self.kill();
        frontdoor::mail::store::Store::open(&self.data_dir()).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn identity(account: &str) -> IdentityTlvs {
    IdentityTlvs {
        account: account.into(),
        login: account.into(),
        key_name: "phone".into(),
        fingerprint: [0xAB; 32],
        no_imap_preauth: false,
    }
}

/// A header as the front door makes it: a connection id of its own each
/// time, so that two signed headers are never the same bytes (the server
/// refuses a replayed one).
pub fn proxy_header(identity: Option<IdentityTlvs>, secret: Option<&[u8]>) -> Vec<u8> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    encode_v2(
        &ConnInfo {
            src: "192.0.2.7:40000".parse().unwrap(),
            dst: "127.0.0.1:443".parse().unwrap(),
            alpn: Some(b"smtp".to_vec()),
            authority: Some("mail.example.org".into()),
            unique_id: Some(format!("conn-{n}").into_bytes()),
            ssl: None,
            identity,
        },
        secret,
    )
}

/// A line-oriented SMTP client over a blocking socket.
pub struct Client {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr, header: Option<&[u8]>) -> Client {
        Self::try_connect(addr, header).expect("connect")
    }

    /// Connect and send the header; `None` when the server is not there.
    pub fn try_connect(addr: SocketAddr, header: Option<&[u8]>) -> Option<Client> {
        let s = TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut c = Client { s, buf: Vec::new() };
        if let Some(h) = header {
            c.s.write_all(h).ok()?;
        }
        Some(c)
    }

    /// A client on a stream the caller connected (e.g. from another
    /// source address); 10 s read timeout.
    pub fn from_stream(s: TcpStream) -> Client {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { s, buf: Vec::new() }
    }

    /// Connect, send the header, read the greeting.
    pub fn open(addr: SocketAddr, header: Option<&[u8]>) -> Client {
        let mut c = Self::connect(addr, header);
        let (code, _) = c.reply();
        assert_eq!(code, 220);
        c
    }

    pub fn send(&mut self, data: &str) {
        self.s.write_all(data.as_bytes()).unwrap();
    }

    pub fn send_bytes(&mut self, data: &[u8]) {
        self.s.write_all(data).unwrap();
    }

    /// Read one reply: (code, full text of all lines).
    pub fn reply(&mut self) -> (u16, String) {
        self.try_reply().expect("connection closed before a reply")
    }

    pub fn try_reply(&mut self) -> Option<(u16, String)> {
        let mut text = String::new();
        loop {
            while let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                text.push_str(&line);
                text.push('\n');
                if line.as_bytes().get(3) != Some(&b'-') {
                    return Some((line[..3].parse().unwrap(), text));
                }
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Send a command line and read its reply.
    pub fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(&format!("{line}\r\n"));
        self.reply()
    }

    /// True when the server closed the connection without sending anything.
    pub fn closed_silently(&mut self) -> bool {
        let mut b = [0u8; 64];
        match self.s.read(&mut b) {
            Ok(0) => true,
            // Closing with unread client bytes resets the connection.
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    }
}

pub fn b64(s: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

pub fn message(from: &str, to: &str, token: &str) -> String {
    format!("From: <{from}>\r\nTo: <{to}>\r\nSubject: {token}\r\nMessage-ID: <{token}@example.org>\r\n\r\nbody {token}\r\n")
}

/// Messages in `account`'s INBOX whose bytes contain `token`.
pub fn count_token(st: &frontdoor::mail::store::Store, account: &str, token: &str) -> usize {
    let Ok(msgs) = st.messages(account, "INBOX") else {
        return 0;
    };
    msgs.iter()
        .filter(|m| {
            let b = st.read(account, "INBOX", m.uid).unwrap();
            String::from_utf8_lossy(&b).contains(token)
        })
        .count()
}

pub fn read_file(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}
