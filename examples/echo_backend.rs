//! A greeting + echo backend for benchmarks and manual tests.
//!
//! Each listener reads the PROXY header its mode names (`v2`, `v1` or
//! `none`), writes `bench ready\r\n`, then echoes every byte back until the
//! peer half-closes. It runs on one thread (a current-thread runtime) so
//! that it stays out of the way of the proxy under test.
//!
//! ```text
//! cargo run --release --example echo_backend -- v2=127.0.0.1:7001 v1=127.0.0.1:7002 none=127.0.0.1:7003
//! ```
//!
//! Port 0 picks a free port; each listener prints `listening mode=M addr=A`
//! on stdout once bound.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest PROXY header accepted: v1 is at most 107 bytes, v2 is 16 + a
/// 16-bit length; anything larger here is a misconfigured sender.
const MAX_V2: usize = 4096;
/// Echo buffer; the bulk benchmark moves whole TLS records (16 KiB) at a time.
const BUF: usize = 64 * 1024;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug)]
enum Mode {
    V2,
    V1,
    None,
}

fn parse_arg(a: &str) -> Result<(Mode, SocketAddr), String> {
    let (m, addr) = a
        .split_once('=')
        .ok_or_else(|| format!("expected MODE=ADDR, got {a:?}"))?;
    let mode = match m {
        "v2" => Mode::V2,
        "v1" => Mode::V1,
        "none" => Mode::None,
        _ => return Err(format!("unknown mode {m:?} (v2, v1, none)")),
    };
    let addr = addr.parse().map_err(|e| format!("{addr:?}: {e}"))?;
    Ok((mode, addr))
}

async fn read_header(s: &mut TcpStream, mode: Mode) -> std::io::Result<()> {
    match mode {
        Mode::None => Ok(()),
        Mode::V2 => {
            let mut h = [0u8; 16];
            s.read_exact(&mut h).await?;
            if &h[..12] != b"\r\n\r\n\0\r\nQUIT\n" {
                return Err(std::io::Error::other("not a PROXY v2 header"));
            }
            let len = usize::from(u16::from_be_bytes([h[14], h[15]]));
            if len > MAX_V2 {
                return Err(std::io::Error::other("PROXY v2 header too long"));
            }
            let mut rest = vec![0u8; len];
            s.read_exact(&mut rest).await?;
            Ok(())
        }
        Mode::V1 => {
            let mut b = [0u8; 1];
            let mut prev = 0u8;
            for _ in 0..108 {
                s.read_exact(&mut b).await?;
                if prev == b'\r' && b[0] == b'\n' {
                    return Ok(());
                }
                prev = b[0];
            }
            Err(std::io::Error::other("PROXY v1 header too long"))
        }
    }
}

async fn serve(mut s: TcpStream, mode: Mode) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut s, mode))
        .await
        .map_err(|_| std::io::Error::other("PROXY header timeout"))??;
    s.write_all(b"bench ready\r\n").await?;
    // The buffer is allocated on first data, so idle connections cost little.
    s.readable().await?;
    let mut buf = vec![0u8; BUF];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            s.shutdown().await?;
            return Ok(());
        }
        s.write_all(&buf[..n]).await?;
    }
}

async fn run(args: Vec<(Mode, SocketAddr)>) -> std::io::Result<()> {
    let mut tasks = Vec::new();
    for (mode, addr) in args {
        let l = TcpListener::bind(addr).await?;
        println!("listening mode={mode:?} addr={}", l.local_addr()?);
        tasks.push(tokio::spawn(async move {
            loop {
                match l.accept().await {
                    Ok((s, _)) => {
                        tokio::spawn(async move {
                            let _ = serve(s, mode).await;
                        });
                    }
                    // EMFILE and friends: back off instead of spinning.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let mut args = Vec::new();
    for a in std::env::args().skip(1) {
        match parse_arg(&a) {
            Ok(x) => args.push(x),
            Err(e) => {
                eprintln!("echo_backend: {e}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    if args.is_empty() {
        eprintln!("usage: echo_backend MODE=ADDR... (MODE: v2, v1, none)");
        return std::process::ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("echo_backend: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo_backend: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
