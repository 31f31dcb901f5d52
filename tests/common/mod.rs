//! Shared test support: certificates made at test time, capture backends,
//! the real `frontdoor` binary as a child process, and TLS clients.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

pub const T: Duration = Duration::from_secs(10);

/// A self-signed server certificate for `names`, written as PEM files in `dir`.
pub fn write_cert(dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let ck =
        rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let c = dir.join(format!("{stem}.crt"));
    let k = dir.join(format!("{stem}.key"));
    std::fs::write(&c, ck.cert.pem()).unwrap();
    std::fs::write(&k, ck.key_pair.serialize_pem()).unwrap();
    (c, k)
}

/// What a capture backend saw on one connection.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The PROXY header bytes exactly as received (empty for `none`).
    pub header: Vec<u8>,
    pub peer: SocketAddr,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Expect {
    V2,
    V1,
    None,
}

/// A backend that reads the PROXY header, greets with `<name> ready\r\n`,
/// then echoes every byte back. It records each header it received.
pub struct CaptureBackend {
    pub addr: SocketAddr,
    pub name: &'static str,
    pub seen: Arc<Mutex<Vec<Captured>>>,
}

impl CaptureBackend {
    pub async fn start(name: &'static str, expect: Expect) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, peer)) = l.accept().await else {
                    return;
                };
                let seen = s2.clone();
                tokio::spawn(async move {
                    let header = match read_header(&mut s, expect).await {
                        Some(h) => h,
                        None => return,
                    };
                    seen.lock().unwrap().push(Captured { header, peer });
                    if s.write_all(format!("{name} ready\r\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        Self { addr, name, seen }
    }

    pub fn headers(&self) -> Vec<Captured> {
        self.seen.lock().unwrap().clone()
    }
}

async fn read_header(s: &mut TcpStream, expect: Expect) -> Option<Vec<u8>> {
    match expect {
        Expect::None => Some(Vec::new()),
        Expect::V2 => {
            let mut h = vec![0u8; 16];
            s.read_exact(&mut h).await.ok()?;
            let len = u16::from_be_bytes([h[14], h[15]]) as usize;
            let mut rest = vec![0u8; len];
            s.read_exact(&mut rest).await.ok()?;
            h.extend_from_slice(&rest);
            Some(h)
        }
        Expect::V1 => {
            let mut h = Vec::new();
            let mut b = [0u8; 1];
            while !h.ends_with(b"\r\n") && h.len() < 108 {
                s.read_exact(&mut b).await.ok()?;
                h.push(b[0]);
            }
            Some(h)
        }
    }
}

/// The real binary, running `serve` on a config file; killed on drop.
pub struct Frontdoor {
    pub child: Child,
    pub addrs: Vec<SocketAddr>,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Frontdoor {
    pub fn bin() -> &'static str {
        env!("CARGO_BIN_EXE_frontdoor")
    }

    /// Start with `config`, wait until each of `listeners` listeners is up.
    pub fn start(config: &Path, listeners: usize) -> Self {
        Self::start_command(Command::new(Self::bin()), config, listeners)
    }

    /// [`Frontdoor::start`] with the binary run by `cmd` (e.g. `setpriv …
    /// BIN` to run it under another uid); `serve --config CONFIG` is added.
    pub fn start_command(mut cmd: Command, config: &Path, listeners: usize) -> Self {
        let mut child = cmd
            .args(["serve", "--config"])
            .arg(config)
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
                // The front door's own listeners (not the metrics or mail ones).
                if line.contains("frontdoor::frontdoor: listening ") {
                    if let Some(a) = field(&line, "addr") {
                        let _ = tx.send(a);
                    }
                }
                l2.lock().unwrap().push(line);
            }
        });
        let mut addrs = Vec::new();
        let deadline = Instant::now() + T;
        while addrs.len() < listeners {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(a) => addrs.push(a.parse().unwrap()),
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "frontdoor did not start; log:\n{}",
                        log.lock().unwrap().join("\n")
                    );
                }
            }
        }
        Self { child, addrs, log }
    }

    pub fn logs(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Wait until the log contains `needle` (bounded).
    pub async fn wait_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.logs().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Frontdoor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `key=value` from a text log line.
pub fn field(line: &str, key: &str) -> Option<String> {
    let pat = format!("{key}=");
    let i = line.find(&pat)? + pat.len();
    let rest = &line[i..];
    let v = if let Some(r) = rest.strip_prefix('"') {
        r.split('"').next()?
    } else {
        rest.split_whitespace().next()?
    };
    Some(v.to_string())
}

/// Accepts any server certificate: these tests are about the front door, not PKI.
#[derive(Debug)]
pub struct AnyServerCert;

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client identity: certificate chain and key.
pub struct ClientCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for ClientCert {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    V12,
    V13,
}

pub fn client_config(
    alpn: &[&str],
    cert: Option<ClientCert>,
    version: Tls,
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match version {
        Tls::V12 => &[&rustls::version::TLS12],
        Tls::V13 => &[&rustls::version::TLS13],
    };
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert));
    let mut cfg = match cert {
        Some(c) => b.with_client_auth_cert(c.chain, c.key).unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Arc::new(cfg)
}

/// TLS 1.3 connect with ALPN and SNI.
pub async fn connect(
    addr: SocketAddr,
    alpn: &[&str],
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    connect_with(addr, client_config(alpn, None, Tls::V13), sni).await
}

pub async fn connect_with(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let c = tokio_rustls::TlsConnector::from(cfg);
    let name = ServerName::try_from(sni.to_string()).unwrap();
    tokio::time::timeout(T, c.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))?
}

/// Read one CRLF-terminated line (bounded by time and size).
pub async fn read_line<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> std::io::Result<String> {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    tokio::time::timeout(T, async {
        while !out.ends_with(b"\n") && out.len() < 4096 {
            let n = s.read(&mut b).await?;
            if n == 0 {
                break;
            }
            out.push(b[0]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no line within timeout"))??;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
