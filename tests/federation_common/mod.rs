//! The two-relay setup of the federation tests: dnsmasq publishing the
//! relays' MX, A and TXT records ([`start_dns`]), the test's certificate
//! authority ([`Ca`]), a relay running `frontdoor mail serve` ([`Relay`])
//! and a whole chatmail relay's configuration ([`chatmail_relay`]).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::logs::str_field;
use crate::common::{Launch, Process};
use crate::mail_common::{identity, proxy_header, Client, BIN, SECRET, SECRET_TEXT};

pub const A: &str = "_a.chat.test";
pub const B: &str = "_b.chat.test";

/// dnsmasq in the foreground, no upstream, no hosts file; killed on drop.
pub struct Dns(pub Child);

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free for both UDP and TCP (dnsmasq binds both), outside the
/// kernel's ephemeral range so that no outgoing connection takes it
/// between this check and dnsmasq's bind.
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let p = 20000 + (random_ms(0, 12000) as u16);
        let tcp = std::net::TcpListener::bind(("127.0.0.1", p));
        let udp = UdpSocket::bind(("127.0.0.1", p));
        if tcp.is_ok() && udp.is_ok() {
            return p;
        }
    }
    panic!("no free port for dnsmasq");
}

/// A DNS query for `name` of type `qtype` (RFC 1035 §4.1).
pub fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q
}

/// dnsmasq on 127.0.0.1:`port`: for each (domain, ip) an MX record naming
/// the domain itself and its A record; and the TXT records given.
pub fn start_dns(port: u16, hosts: &[(&str, &str)], txt: &[(String, String)]) -> Dns {
    start_dns_with(port, hosts, &[], txt)
}

/// [`start_dns`] with A records `addrs` (name, ip) that have no MX.
pub fn start_dns_with(
    port: u16,
    hosts: &[(&str, &str)],
    addrs: &[(&str, &str)],
    txt: &[(String, String)],
) -> Dns {
    let mut cmd = Command::new("dnsmasq");
    cmd.args([
        "--keep-in-foreground",
        "--no-daemon",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        "--pid-file=",
        "--user=root",
        &format!("--port={port}"),
    ]);
    for (d, ip) in hosts {
        cmd.arg(format!("--mx-host={d},{d},10"));
        cmd.arg(format!("--host-record={d},{ip}"));
    }
    for (name, ip) in addrs {
        cmd.arg(format!("--host-record={name},{ip}"));
    }
    for (name, value) in txt {
        let parts: Vec<String> = value
            .as_bytes()
            .chunks(250)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        cmd.arg(format!("--txt-record={name},{}", parts.join(",")));
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq is needed for this test (.ci/setup installs dnsmasq-base)");
    let dns = Dns(child);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let q = query(hosts[0].0, 15);
    let mut buf = [0u8; 4096];
    let mut dns = dns;
    for _ in 0..50 {
        if let Ok(Some(st)) = dns.0.try_wait() {
            panic!("dnsmasq exited ({st}) on port {port}");
        }
        let _ = sock.send_to(&q, ("127.0.0.1", port));
        if let Ok(n) = sock.recv(&mut buf) {
            if n > 12 && u16::from_be_bytes([buf[6], buf[7]]) > 0 {
                return dns;
            }
        }
    }
    panic!("dnsmasq did not answer");
}

/// The test's certificate authority.
pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: rcgen::KeyPair,
}

impl Ca {
    pub fn new() -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "federation test CA");
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A server certificate for `names`, PEM files `<stem>.crt/.key` in `dir`.
    pub fn issue(&self, dir: &Path, stem: &str, names: &[&str]) {
        let key = rcgen::KeyPair::generate().unwrap();
        let p =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        std::fs::write(dir.join(format!("{stem}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.cert.pem()).unwrap();
    }
}

/// One relay: `frontdoor mail serve` with submission (PROXY header, as
/// behind the front door), the MX on `ip:25` with a certificate from the
/// CA, direct delivery, DKIM verification.
pub struct Relay {
    pub domain: &'static str,
    pub dir: tempfile::TempDir,
    pub process: Option<Process>,
    pub submission: SocketAddr,
}

impl Relay {
    pub fn new(domain: &'static str, ip: &str, dns_port: u16, ca: &Ca, queue: &str) -> Relay {
        Self::with_delivery(
            domain,
            ip,
            dns_port,
            ca,
            queue,
            "{ direct: true, ca_file: ca.pem }",
        )
    }

    /// [`Relay::new`] with `delivery` as its `mail.delivery` section.
    pub fn with_delivery(
        domain: &'static str,
        ip: &str,
        dns_port: u16,
        ca: &Ca,
        queue: &str,
        delivery: &str,
    ) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("secret"), format!("{SECRET_TEXT}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
        ca.write(&p.join("ca.pem"));
        ca.issue(p, "mx", &[domain]);
        let yaml = format!(
            "client_auth:\n  registry: keys.yaml\n  identity_secret: secret\n\
             tls:\n  certificates:\n    - cert: mx.crt\n      key: mx.key\n\
             mail:\n  domains: [\"{domain}\"]\n  hostname: \"{domain}\"\n  data_dir: data\n\
             \x20 submission: {{ listen: \"127.0.0.1:0\" }}\n\
             \x20 inbound: {{ listen: \"{ip}:25\" }}\n\
             \x20 dns: {{ resolvers: [\"127.0.0.1:{dns_port}\"] }}\n\
             \x20 dkim: {{ verify: true }}\n\
             \x20 delivery: {delivery}\n\
             \x20 queue: {queue}\n"
        );
        std::fs::write(p.join("frontdoor.yaml"), yaml).unwrap();
        let r = Relay {
            domain,
            dir,
            process: None,
            submission: "0.0.0.0:0".parse().unwrap(),
        };
        for user in ["alice", "bob"] {
            let mut c = Command::new(BIN)
                .args(["accounts", "add", &format!("{user}@{domain}"), "--config"])
                .arg(r.config())
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(b"a-password\n").unwrap();
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{out:?}");
        }
        r
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("frontdoor.yaml")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The DKIM TXT records of this relay (keys made before its first start).
    pub fn txt(&self) -> Vec<(String, String)> {
        let s = frontdoor::mail::dkim::Signer::load_or_generate(&self.data(), "dkim").unwrap();
        vec![
            (
                format!("dkim-ed._domainkey.{}", self.domain),
                s.txt_ed25519.clone(),
            ),
            (
                format!("dkim._domainkey.{}", self.domain),
                s.txt_rsa.clone(),
            ),
        ]
    }

    pub fn start(&mut self) {
        let p = Launch::new(["mail", "serve", "--config"])
            .arg(self.config())
            .start();
        self.submission = p.mail("submission").unwrap().tcp();
        self.process = Some(p);
    }

    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .map(|p| p.log.text())
            .unwrap_or_default()
    }

    /// Events of the running process whose message is `msg`.
    pub fn events(&self, msg: &str) -> Vec<serde_json::Value> {
        self.process
            .as_ref()
            .map(|p| {
                p.log
                    .events()
                    .into_iter()
                    .filter(|e| str_field(e, "message") == msg)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `frontdoor mail queue [--flush]`: its stdout.
    pub fn queue_cli(&self, flush: bool) -> String {
        let mut c = Command::new(BIN);
        c.args(["mail", "queue", "--config"]).arg(self.config());
        if flush {
            c.arg("--flush");
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// `frontdoor mail dkim ARGS --config …`: its output.
    pub fn dkim_cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(["mail", "dkim"])
            .args(args)
            .arg("--config")
            .arg(self.config())
            .output()
            .unwrap()
    }

    /// How many entries `frontdoor mail queue` lists.
    pub fn queued(&self) -> usize {
        let out = self.queue_cli(false);
        out.lines()
            .find_map(|l| l.strip_suffix(" queued"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {out}"))
    }

    /// Submit one message from `from` (an account here) to `to`; the reply
    /// code after the data (`None` when the connection broke).
    pub fn submit(&self, from: &str, to: &str, msg_id: &str) -> Option<u16> {
        let header = proxy_header(Some(identity(from)), Some(SECRET));
        let mut c = Client::try_connect(self.submission, Some(&header))?;
        c.try_reply()?;
        c.send("EHLO client\r\n");
        c.try_reply()?;
        c.send(&format!("MAIL FROM:<{from}>\r\n"));
        if c.try_reply()?.0 != 250 {
            return None;
        }
        c.send(&format!("RCPT TO:<{to}>\r\n"));
        let (code, text) = c.try_reply()?;
        assert_eq!(code, 250, "RCPT {to}: {text}");
        c.send("DATA\r\n");
        c.try_reply()?;
        let body = format!(
            "From: <{from}>\r\nTo: <{to}>\r\nSubject: test\r\nMessage-ID: <{msg_id}>\r\n\r\nbody of {msg_id}\r\n.\r\n"
        );
        if c.s.write_all(body.as_bytes()).is_err() {
            return None;
        }
        let code = c.try_reply()?.0;
        c.send("QUIT\r\n");
        Some(code)
    }

    /// Submit `body` (a whole message, CRLF line ends) from `from` to `to`;
    /// the reply code after the data.
    pub fn submit_body(&self, from: &str, to: &str, body: &str) -> Option<u16> {
        let header = proxy_header(Some(identity(from)), Some(SECRET));
        let mut c = Client::try_connect(self.submission, Some(&header))?;
        c.try_reply()?;
        c.send("EHLO client\r\n");
        c.try_reply()?;
        c.send(&format!("MAIL FROM:<{from}>\r\n"));
        c.try_reply()?;
        c.send(&format!("RCPT TO:<{to}>\r\n"));
        let (code, text) = c.try_reply()?;
        assert_eq!(code, 250, "RCPT {to}: {text}");
        c.send("DATA\r\n");
        c.try_reply()?;
        let mut data = body.replace("\r\n.", "\r\n..");
        data.push_str(".\r\n");
        c.s.write_all(data.as_bytes()).ok()?;
        let code = c.try_reply()?.0;
        c.send("QUIT\r\n");
        Some(code)
    }

    /// Stop the relay and read every INBOX message of `account`.
    pub fn stop_and_read(&mut self, account: &str) -> Vec<String> {
        self.kill();
        let st = frontdoor::mail::store::Store::open(&self.data()).unwrap();
        st.messages(account, "INBOX")
            .unwrap_or_default()
            .iter()
            .map(|m| {
                String::from_utf8_lossy(&st.read(account, "INBOX", m.uid).unwrap()).into_owned()
            })
            .collect()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Two relays on `ip_a`/`ip_b` and their DNS server.
pub fn pair(ip_a: &str, ip_b: &str, queue: &str) -> (Dns, Relay, Relay) {
    let ca = Ca::new();
    let port = free_port();
    let a = Relay::new(A, ip_a, port, &ca, queue);
    let b = Relay::new(B, ip_b, port, &ca, queue);
    let mut txt = a.txt();
    txt.extend(b.txt());
    let dns = start_dns(port, &[(A, ip_a), (B, ip_b)], &txt);
    (dns, a, b)
}

pub fn message_ids(msgs: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for t in msgs {
        if let Some(id) = t.lines().find_map(|l| l.strip_prefix("Message-ID: ")) {
            *m.entry(id.trim().to_owned()).or_insert(0) += 1;
        }
    }
    m
}

pub fn random_ms(lo: u64, hi: u64) -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    lo + u64::from_le_bytes(b) % (hi - lo)
}

/// A whole chatmail relay (`frontdoor serve`): the front door on `ip:443`
/// (IMAP, SMTP and the web side by ALPN, as Delta Chat expects), the MX on
/// `ip:25`, a certificate from the CA for the domain and its `mta-sts.`
/// name, direct delivery (chatmail mode's default) trusting the CA.
pub fn chatmail_relay(domain: &str, ip: &str, dns_port: u16, ca: &Ca) -> tempfile::TempDir {
    chatmail_relay_for(
        domain,
        ip,
        dns_port,
        ca,
        &[domain, &format!("mta-sts.{domain}")],
    )
}

/// [`chatmail_relay`] with a certificate for `names` only.
pub fn chatmail_relay_for(
    domain: &str,
    ip: &str,
    dns_port: u16,
    ca: &Ca,
    names: &[&str],
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    ca.write(&p.join("ca.pem"));
    ca.issue(p, "relay", names);
    std::fs::write(p.join("keys.yaml"), "keys:\n").unwrap();
    let yaml = format!(
        r#"listeners:
  - bind: "{ip}:443"
    default_route: web
tls:
  certificates:
    - cert: relay.crt
      key: relay.key
routes:
  imap: {{ alpn: [imap], backend: "unix:imap.sock" }}
  smtp: {{ alpn: [smtp], backend: "unix:submission.sock" }}
  web: {{ alpn: ["http/1.1"], backend: "builtin:chatmail", proxy_protocol: none }}
client_auth:
  registry: keys.yaml
  unknown_key: anonymous
metrics: {{ listen: "127.0.0.1:0" }}
mail:
  domains: ["{domain}"]
  hostname: "{domain}"
  data_dir: data
  imap: {{ listen: "unix:imap.sock" }}
  submission: {{ listen: "unix:submission.sock" }}
  inbound: {{ listen: "{ip}:25" }}
  dns: {{ resolvers: ["127.0.0.1:{dns_port}"] }}
  delivery: {{ ca_file: ca.pem }}
  queue: {{ retry: 1s, max_retry: 2s }}
  chatmail: {{}}
"#
    );
    std::fs::write(p.join("frontdoor.yaml"), yaml).unwrap();
    dir
}

pub fn dkim_txt(data: &Path, domain: &str) -> Vec<(String, String)> {
    let s = frontdoor::mail::dkim::Signer::load_or_generate(data, "dkim").unwrap();
    vec![
        (
            format!("dkim-ed._domainkey.{domain}"),
            s.txt_ed25519.clone(),
        ),
        (format!("dkim._domainkey.{domain}"), s.txt_rsa.clone()),
    ]
}

/// A message that passes chatmail's encryption rule (RFC 3156
/// `multipart/encrypted`, an OpenPGP message made with GnuPG for the
/// chatmail tests), CRLF line ends.
pub fn encrypted(from: &str, to: &str, msg_id: &str) -> String {
    let armor = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/chatmail/encrypted-newformat.asc"
    ))
    .unwrap();
    let text = format!(
        "From: <{from}>\nTo: <{to}>\nSubject: [...]\nDate: Wed, 02 Dec 2026 03:00:00 +0000\n\
         Message-ID: <{msg_id}>\nChat-Version: 1.0\nMIME-Version: 1.0\n\
         Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\n\
         \tboundary=\"XyZ\"\n\n\n--XyZ\nContent-Description: PGP/MIME version identification\n\
         Content-Type: application/pgp-encrypted\n\nVersion: 1\n\n\n--XyZ\n\
         Content-Description: OpenPGP encrypted message\n\
         Content-Disposition: inline; filename=\"encrypted.asc\";\n\
         Content-Type: application/octet-stream; name=\"encrypted.asc\"\n\n{}\n\n--XyZ--\n",
        armor.trim_end()
    );
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// `frontdoor accounts add ADDRESS --config CONFIG` with a password.
pub fn add_account(config: &Path, address: &str) {
    let mut c = Command::new(BIN)
        .args(["accounts", "add", address, "--config"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(b"a-password\n").unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// A whole relay made by [`chatmail_relay`] in `dir`, started
/// (`frontdoor serve`).
pub fn serve_relay(dir: &Path) -> Process {
    Launch::new(["serve", "--config"])
        .arg(dir.join("frontdoor.yaml"))
        .start()
}

/// The events of `p` whose message is `msg`.
pub fn events(p: &Process, msg: &str) -> Vec<serde_json::Value> {
    p.log
        .events()
        .into_iter()
        .filter(|e| str_field(e, "message") == msg)
        .collect()
}
