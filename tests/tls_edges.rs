//! The client side of the TLS stream under conditions real networks and
//! real clients produce: ciphertext arriving a few bytes at a time, a TLS 1.3
//! KeyUpdate in the middle of a session, large transfers in odd write sizes
//! (every byte checked), TLS 1.2 and 1.3, and a close_notify that must reach
//! the backend as end of stream.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn start_frontdoor(dir: &std::path::Path, backend: SocketAddr) -> Frontdoor {
    let p = dir.join("f.yaml");
    std::fs::write(
        &p,
        format!(
            "listeners:\n  - bind: \"127.0.0.1:0\"\nroutes:\n  imap: {{ alpn: [imap], backend: \"{backend}\" }}\n"
        ),
    )
    .unwrap();
    Frontdoor::start(&p, 1)
}

/// A TCP relay to `to` that forwards the client's bytes `chunk` at a time
/// with a pause between, and the server's bytes as they come.
async fn dribbler(to: SocketAddr, chunk: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((c, _)) = l.accept().await else { return };
        let s = TcpStream::connect(to).await.unwrap();
        s.set_nodelay(true).unwrap();
        let (mut cr, mut cw) = c.into_split();
        let (mut sr, mut sw) = s.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut sr, &mut cw).await;
            let _ = cw.shutdown().await;
        });
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for (i, piece) in buf[..n].chunks(chunk).enumerate() {
                if sw.write_all(piece).await.is_err() {
                    return;
                }
                // A pause now and then, so the pieces arrive as separate
                // reads (the fragmentation is under test).
                if i % 8 == 7 {
                    // sleep-ok: the pause above.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        let _ = sw.shutdown().await;
    });
    addr
}

/// A deterministic byte pattern, so any loss, duplicate or reorder shows.
fn pattern(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Write `data` in varying sizes while reading the echo; return the echo.
async fn echo_through<S>(s: S, data: &[u8]) -> Vec<u8>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut r, mut w) = tokio::io::split(s);
    let send = data.to_vec();
    let writer = tokio::spawn(async move {
        let sizes = [1usize, 7, 300, 4096, 16_385, 65_536, 100_000];
        let (mut off, mut i) = (0, 0);
        while off < send.len() {
            let n = sizes[i % sizes.len()].min(send.len() - off);
            w.write_all(&send[off..off + n]).await.unwrap();
            off += n;
            i += 1;
        }
        w
    });
    let mut got = vec![0u8; data.len()];
    tokio::time::timeout(Duration::from_secs(60), r.read_exact(&mut got))
        .await
        .expect("echo within 60 s")
        .unwrap();
    let _ = writer.await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_and_data_survive_ciphertext_a_few_bytes_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let be = CaptureBackend::start("imap", Expect::V2).await;
    let fd = start_frontdoor(dir.path(), be.addr);
    for (chunk, version) in [(1, Tls::V13), (3, Tls::V12), (7, Tls::V13)] {
        let via = dribbler(fd.addrs[0], chunk).await;
        let mut s = connect_with(via, client_config(&["imap"], None, version), "localhost")
            .await
            .expect("handshake through a dribbling path");
        assert_eq!(read_line(&mut s).await.unwrap(), "imap ready\r\n");
        let data = pattern(3_000, chunk as u32);
        assert!(echo_through(s, &data).await == data, "chunk {chunk}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_update_mid_session_keeps_the_stream_intact() {
    let dir = tempfile::tempdir().unwrap();
    let be = CaptureBackend::start("imap", Expect::V2).await;
    let fd = start_frontdoor(dir.path(), be.addr);
    let mut s = connect(fd.addrs[0], &["imap"], "localhost").await.unwrap();
    assert_eq!(read_line(&mut s).await.unwrap(), "imap ready\r\n");
    for round in 0..5u8 {
        // The client's KeyUpdate asks the server to update its keys too.
        s.get_mut().1.refresh_traffic_keys().unwrap();
        let line = format!("a{round} NOOP after key update\r\n");
        s.write_all(line.as_bytes()).await.unwrap();
        assert_eq!(read_line(&mut s).await.unwrap(), line);
    }
    let data = pattern(300_000, 9);
    assert!(echo_through(s, &data).await == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transfers_in_odd_write_sizes_arrive_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let be = CaptureBackend::start("imap", Expect::V2).await;
    let fd = start_frontdoor(dir.path(), be.addr);
    for version in [Tls::V13, Tls::V12] {
        let mut s = connect_with(
            fd.addrs[0],
            client_config(&["imap"], None, version),
            "localhost",
        )
        .await
        .unwrap();
        assert_eq!(read_line(&mut s).await.unwrap(), "imap ready\r\n");
        let data = pattern(8 << 20, 3);
        assert!(echo_through(s, &data).await == data);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_notify_reaches_the_backend_as_end_of_stream() {
    let dir = tempfile::tempdir().unwrap();
    // A backend that reads to EOF, then answers with what it counted.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let baddr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all).await;
        // The PROXY v2 header is 16 bytes plus its length.
        let body = all.len() - 16 - u16::from_be_bytes([all[14], all[15]]) as usize;
        let _ = s.write_all(format!("got {body}\r\n").as_bytes()).await;
    });
    let fd = start_frontdoor(dir.path(), baddr);
    let mut s = connect(fd.addrs[0], &["imap"], "localhost").await.unwrap();
    s.write_all(&pattern(12_345, 1)).await.unwrap();
    // Half-close: close_notify, then keep reading the answer.
    s.shutdown().await.unwrap();
    let mut rest = String::new();
    tokio::time::timeout(T, s.read_to_string(&mut rest))
        .await
        .expect("answer after half-close")
        .ok();
    assert_eq!(rest, "got 12345\r\n");
}
