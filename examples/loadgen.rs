//! A load generator for TLS front doors (frontdoor, HAProxy, nginx) in front
//! of `echo_backend`: handshakes, bulk relay, idle connections, ping-pong.
//!
//! It speaks TLS 1.3 only, X25519 only, one cipher suite (AES-128-GCM by
//! default) and never resumes a session unless `--resume` says so (then
//! every connection resumes with a ticket of an earlier one, PSK with
//! X25519, as rustls and OpenSSL clients do), so every proxy under test
//! does the same work per connection. The server certificate is not verified: this
//! tool measures cost, not trust, and only talks to loopback. Every mode is
//! bounded in count and by `--deadline`.
//!
//! Each mode prints one line of `key=value` results on stdout, e.g.
//! `mode=handshake n=2000 errors=0 secs=1.93 per_sec=1036`.
//!
//! ```text
//! loadgen handshake --addr 127.0.0.1:8443 --count 2000 [--cert c.pem --key k.pem]
//! loadgen bulk      --addr 127.0.0.1:8443 --bytes 1073741824 --conns 2
//! loadgen idle      --addr 127.0.0.1:8443 --count 5000   # prints `ready`, holds until stdin closes
//! loadgen pingpong  --addr 127.0.0.1:8443 --rounds 5000 [--plain]
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Parser)]
#[command(about = "Load generator for TLS front doors in front of echo_backend")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Args, Clone)]
struct Common {
    /// Proxy (or backend, with --plain) address; loopback only.
    #[arg(long, global = true, default_value = "127.0.0.1:8443")]
    addr: SocketAddr,
    /// Plain TCP instead of TLS (to measure the backend directly).
    #[arg(long, global = true)]
    plain: bool,
    /// ALPN to offer (empty: none).
    #[arg(long, global = true, default_value = "imap")]
    alpn: String,
    /// SNI to send.
    #[arg(long, global = true, default_value = "localhost")]
    sni: String,
    /// Client certificate (PEM) to present.
    #[arg(long, global = true, requires = "key")]
    cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, global = true, requires = "cert")]
    key: Option<PathBuf>,
    /// TLS 1.3 suite: aes128, aes256, chacha20.
    #[arg(long, global = true, default_value = "aes128")]
    suite: String,
    /// Give up after this many seconds.
    #[arg(long, global = true, default_value_t = 300)]
    deadline: u64,
    /// With --plain: send a TLS ClientHello first and read its echo after
    /// the greeting, so that a proxy's TLS passthrough route (which reads
    /// the hello to choose) carries the connection without terminating it.
    #[arg(long, global = true, requires = "plain")]
    hello: bool,
    /// Resume TLS 1.3 sessions with the server's tickets (handshake mode
    /// counts how many did).
    #[arg(long, global = true)]
    resume: bool,
}

#[derive(Subcommand)]
enum Mode {
    /// N handshakes (full, or resumed with --resume), each reading the
    /// backend greeting.
    Handshake {
        #[arg(long, default_value_t = 1000)]
        count: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Send BYTES through CONNS connections and read the echo back.
    Bulk {
        #[arg(long, default_value_t = 1 << 30)]
        bytes: u64,
        #[arg(long, default_value_t = 1)]
        conns: usize,
        #[arg(long, default_value_t = 16 * 1024)]
        chunk: usize,
    },
    /// Open COUNT connections, read each greeting, print `ready`, hold them
    /// until stdin closes (or a line is read) or HOLD seconds pass.
    Idle {
        #[arg(long, default_value_t = 1000)]
        count: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 120)]
        hold: u64,
    },
    /// Small-message round trips on one connection; p50/p99 in µs.
    Pingpong {
        #[arg(long, default_value_t = 5000)]
        rounds: usize,
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value_t = 200)]
        warmup: usize,
    },
}

/// Accepts any server certificate: the benchmark measures cost on
/// loopback, and every proxy gets the same (absent) check.
#[derive(Debug)]
struct AnyServer(Vec<SignatureScheme>);

impl ServerCertVerifier for AnyServer {
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
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn client_config(c: &Common) -> Result<Arc<ClientConfig>, Error> {
    use rustls::crypto::ring as p;
    let mut provider = p::default_provider();
    provider.kx_groups = vec![p::kx_group::X25519];
    provider.cipher_suites = vec![match c.suite.as_str() {
        "aes128" => p::cipher_suite::TLS13_AES_128_GCM_SHA256,
        "aes256" => p::cipher_suite::TLS13_AES_256_GCM_SHA384,
        "chacha20" => p::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        s => return Err(format!("unknown suite {s:?}").into()),
    }];
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let b = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(schemes)));
    let mut cfg = match (&c.cert, &c.key) {
        (Some(cert), Some(key)) => {
            let certs =
                rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(cert)?))
                    .collect::<Result<Vec<_>, _>>()?;
            let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(
                &mut std::io::BufReader::new(std::fs::File::open(key)?),
            )?
            .ok_or("no private key in --key file")?;
            b.with_client_auth_cert(certs, key)?
        }
        _ => b.with_no_client_auth(),
    };
    cfg.resumption = if c.resume {
        Resumption::in_memory_sessions(256)
    } else {
        Resumption::disabled()
    };
    if !c.alpn.is_empty() {
        cfg.alpn_protocols = vec![c.alpn.as_bytes().to_vec()];
    }
    Ok(Arc::new(cfg))
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Dialer {
    addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Connections whose handshake resumed a session.
    resumed: std::sync::atomic::AtomicUsize,
    /// `--hello`: the ClientHello sent first on a plain connection.
    hello: Option<Vec<u8>>,
}

impl Dialer {
    fn new(c: &Common) -> Result<Self, Error> {
        if !c.addr.ip().is_loopback() {
            return Err("loadgen talks to loopback addresses only".into());
        }
        let tls = if c.plain {
            None
        } else {
            Some((
                TlsConnector::from(client_config(c)?),
                ServerName::try_from(c.sni.clone())?,
            ))
        };
        let hello = if c.hello {
            let mut conn = rustls::ClientConnection::new(
                client_config(c)?,
                ServerName::try_from(c.sni.clone())?,
            )?;
            let mut out = Vec::new();
            conn.write_tls(&mut out)?;
            Some(out)
        } else {
            None
        };
        Ok(Self {
            addr: c.addr,
            tls,
            resumed: Default::default(),
            hello,
        })
    }

    /// Connect, handshake, and read the one-line greeting.
    async fn open(&self) -> Result<tokio::io::BufReader<Box<dyn Io>>, Error> {
        let mut tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        if let Some(h) = &self.hello {
            tcp.write_all(h).await?;
        }
        let s: Box<dyn Io> = match &self.tls {
            Some((conn, name)) => {
                let tls = conn.connect(name.clone(), tcp).await?;
                if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                    self.resumed
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Box::new(tls)
            }
            None => Box::new(tcp),
        };
        // A small reader buffer: the greeting is one short line, and idle
        // mode holds thousands of these.
        let mut r = tokio::io::BufReader::with_capacity(256, s);
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line).await?;
        if !line.ends_with(b"\n") {
            return Err("connection closed before the greeting".into());
        }
        if let Some(h) = &self.hello {
            // The echo of the hello, so that nothing is left unread.
            let mut back = vec![0u8; h.len()];
            r.read_exact(&mut back).await?;
        }
        Ok(r)
    }
}

async fn handshake(d: Arc<Dialer>, count: usize, conc: usize) -> Result<String, Error> {
    let t0 = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conc.max(1) {
        let d = d.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut errors = 0usize;
            let mut first: Option<String> = None;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count {
                match d.open().await {
                    Ok(s) => drop(s),
                    Err(e) => {
                        errors += 1;
                        first.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            (errors, first)
        }));
    }
    let mut errors = 0;
    let mut first = None;
    for t in tasks {
        let (e, f) = t.await?;
        errors += e;
        if first.is_none() {
            first = f;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    if let Some(f) = first {
        eprintln!("loadgen: first error: {f}");
    }
    Ok(format!(
        "mode=handshake n={count} errors={errors} resumed={} secs={secs:.3} per_sec={:.0}",
        d.resumed.load(std::sync::atomic::Ordering::Relaxed),
        count as f64 / secs
    ))
}

async fn bulk(d: Arc<Dialer>, bytes: u64, conns: usize, chunk: usize) -> Result<String, Error> {
    let conns = conns.max(1);
    let per = bytes / conns as u64;
    let mut streams = Vec::new();
    for _ in 0..conns {
        streams.push(d.open().await?);
    }
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for s in streams {
        tasks.push(tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(s);
            let writer = async move {
                let buf = vec![0x5au8; chunk];
                let mut left = per;
                while left > 0 {
                    let n = left.min(chunk as u64) as usize;
                    w.write_all(&buf[..n]).await?;
                    left -= n as u64;
                }
                w.flush().await?;
                Ok::<_, std::io::Error>(w)
            };
            let reader = async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = 0u64;
                while got < per {
                    let n = r.read(&mut buf).await?;
                    if n == 0 {
                        return Err(std::io::Error::other("echo ended early"));
                    }
                    got += n as u64;
                }
                Ok(got)
            };
            let (w, got) = tokio::try_join!(writer, reader)?;
            drop(w);
            Ok::<_, std::io::Error>(got)
        }));
    }
    let mut total = 0u64;
    for t in tasks {
        total += t.await??;
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(format!(
        "mode=bulk sent={} echoed={total} secs={secs:.3} mib_per_sec={:.0}",
        per * conns as u64,
        (2 * total) as f64 / secs / (1 << 20) as f64
    ))
}

async fn idle(d: Arc<Dialer>, count: usize, conc: usize, hold: u64) -> Result<String, Error> {
    let t0 = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..conc.max(1) {
        let d = d.clone();
        let tx = tx.clone();
        let next = next.clone();
        tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count {
                if tx
                    .send(d.open().await.map_err(|e| e.to_string()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut held = Vec::with_capacity(count);
    let mut errors = 0usize;
    while let Some(r) = rx.recv().await {
        match r {
            Ok(s) => held.push(s),
            Err(e) => {
                if errors == 0 {
                    eprintln!("loadgen: first error: {e}");
                }
                errors += 1;
            }
        }
    }
    println!(
        "ready n={} errors={errors} secs={:.3}",
        held.len(),
        t0.elapsed().as_secs_f64()
    );
    let mut line = String::new();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let _ = tokio::time::timeout(Duration::from_secs(hold), stdin.read_line(&mut line)).await;
    // Check the connections are still alive: each must echo one byte.
    let mut dead = 0usize;
    for s in held.iter_mut() {
        let ok = async {
            s.write_all(b"x").await?;
            s.flush().await?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await?;
            Ok::<_, std::io::Error>(())
        };
        if !matches!(
            tokio::time::timeout(Duration::from_secs(5), ok).await,
            Ok(Ok(()))
        ) {
            dead += 1;
        }
    }
    Ok(format!(
        "mode=idle n={} errors={errors} dead_after_hold={dead}",
        held.len()
    ))
}

async fn pingpong(
    d: Arc<Dialer>,
    rounds: usize,
    size: usize,
    warmup: usize,
) -> Result<String, Error> {
    let mut s = d.open().await?;
    let msg = vec![b'p'; size.max(1)];
    let mut back = vec![0u8; msg.len()];
    let mut lat = Vec::with_capacity(rounds);
    for i in 0..warmup + rounds {
        let t = Instant::now();
        s.write_all(&msg).await?;
        s.flush().await?;
        s.read_exact(&mut back).await?;
        if i >= warmup {
            lat.push(t.elapsed().as_nanos() as u64);
        }
    }
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i] as f64 / 1000.0
    };
    Ok(format!(
        "mode=pingpong n={} size={} p50_us={:.1} p99_us={:.1} max_us={:.1}",
        lat.len(),
        msg.len(),
        pct(0.50),
        pct(0.99),
        pct(1.0)
    ))
}

async fn run(cli: Cli) -> Result<String, Error> {
    let d = Arc::new(Dialer::new(&cli.common)?);
    match cli.mode {
        Mode::Handshake { count, concurrency } => handshake(d, count, concurrency).await,
        Mode::Bulk {
            bytes,
            conns,
            chunk,
        } => bulk(d, bytes, conns, chunk.max(1)).await,
        Mode::Idle {
            count,
            concurrency,
            hold,
        } => idle(d, count, concurrency, hold).await,
        Mode::Pingpong {
            rounds,
            size,
            warmup,
        } => {
            if rounds == 0 {
                return Err("--rounds must be at least 1".into());
            }
            pingpong(d, rounds, size, warmup).await
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let deadline = Duration::from_secs(cli.common.deadline);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match rt.block_on(async { tokio::time::timeout(deadline, run(cli)).await }) {
        Ok(Ok(line)) => {
            println!("{line}");
            if line.contains(" errors=0") || !line.contains(" errors=") {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(1)
            }
        }
        Ok(Err(e)) => {
            eprintln!("loadgen: {e}");
            std::process::ExitCode::from(1)
        }
        Err(_) => {
            eprintln!("loadgen: deadline of {}s passed", deadline.as_secs());
            std::process::ExitCode::from(1)
        }
    }
}
