//! TLS 1.3 records after the handshake, as clients see them: KeyUpdate from
//! a real OpenSSL client (answered when asked, before the next data), every
//! TLS 1.3 cipher suite (and TLS 1.2) relaying large transfers exactly,
//! hostile or broken records after the handshake (each refused with the
//! right alert and a log line, the process and other clients unharmed),
//! sequence numbers carried across the handover from the handshake (data
//! pipelined with the client's Finished, a record split at the handover,
//! thousands of tiny records, a KeyUpdate in the same flight, resumed
//! sessions), close_notify in both directions, and records sealed by hand
//! with the connection's own keys (padding, empty records, bad inner
//! content types, malformed alerts and KeyUpdates; KeyUpdates under keys
//! derived from the key log's traffic secrets), with the limits on records
//! that carry no data (a flood of KeyUpdates, empty records or
//! user_canceled alerts ends the connection; as many as allowed with data
//! between them do not; none of them resets the idle timer).

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rustls::{AlertDescription, SupportedCipherSuite};
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

/// The close line whose reason names `why`, waited for (bounded).
async fn close_for(fd: &Frontdoor, why: &str) -> serde_json::Value {
    fd.wait_event(T, |e| is_close(e) && str_field(e, "reason").contains(why))
        .await
        .unwrap_or_else(|| panic!("no close line with {why:?}:\n{}", fd.logs()))
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
        let sizes = [
            1usize, 7, 300, 4096, 16_383, 16_384, 16_385, 65_536, 100_000,
        ];
        let (mut off, mut i) = (0, 0);
        while off < send.len() {
            let n = sizes[i % sizes.len()].min(send.len() - off);
            w.write_all(&send[off..off + n]).await.unwrap();
            off += n;
            i += 1;
        }
        w.flush().await.unwrap();
        w
    });
    let mut got = vec![0u8; data.len()];
    tokio::time::timeout(Duration::from_secs(60), r.read_exact(&mut got))
        .await
        .expect("echo within 60 s")
        .unwrap();
    writer.await.unwrap();
    got
}

/// A TLS 1.3 client offering only `suite`.
fn suite_config(suite: SupportedCipherSuite) -> Arc<rustls::ClientConfig> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![suite];
    let versions: &[&rustls::SupportedProtocolVersion] = if suite.tls13().is_some() {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS12]
    };
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"imap".to_vec()];
    Arc::new(cfg)
}

/// Connect, check the backend's greeting, and check the echo of one line.
async fn good_connection(addr: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut s = connect(addr, &["imap"], "localhost").await.unwrap();
    assert_eq!(read_line(&mut s).await.unwrap(), "imap ready\r\n");
    assert_echoes(&mut s, "a1 NOOP\r\n").await;
    s
}

async fn assert_echoes(s: &mut tokio_rustls::client::TlsStream<TcpStream>, line: &str) {
    s.write_all(line.as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    assert_eq!(read_line(s).await.unwrap(), line);
}

// ---------------------------------------------------------------------------
// 1. KeyUpdate from a real OpenSSL client.

const SERVER_KEY_UPDATE: &str = "<<< TLS 1.3, Handshake [length 0005], KeyUpdate";

/// `openssl s_client` in its interactive mode: a line `K` or `k` on its
/// standard input is a command (KeyUpdate with or without
/// update_requested). OpenSSL 3.0 only reads commands without `-ign_eof`
/// (and without `-quiet`, which implies it), so standard input stays open
/// for the whole session. `-msg` prints each protocol message it receives
/// (`<<<`) next to the data, in order.
struct SClient {
    _child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
}

impl SClient {
    async fn start(addr: SocketAddr, extra: &[&str]) -> SClient {
        let mut child = tokio::process::Command::new("openssl")
            .args(["s_client", "-tls1_3", "-alpn", "imap", "-servername"])
            .args(["localhost", "-msg", "-connect", &addr.to_string()])
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("`openssl` must be installed for this test (Debian package openssl)");
        let stdin = child.stdin.take().unwrap();
        let collect = |mut from: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
            let buf = Arc::new(Mutex::new(Vec::new()));
            let b2 = buf.clone();
            tokio::spawn(async move {
                let mut chunk = vec![0u8; 64 * 1024];
                while let Ok(n) = from.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    b2.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            });
            buf
        };
        let out = collect(Box::new(child.stdout.take().unwrap()));
        let err = collect(Box::new(child.stderr.take().unwrap()));
        SClient {
            _child: child,
            stdin,
            out,
            err,
        }
    }

    fn out(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    fn err(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }

    async fn send(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Wait until standard output holds `needle` at or after byte `from`;
    /// returns the offset just past it.
    async fn wait_out(&self, needle: &str, from: usize) -> usize {
        let deadline = Instant::now() + T;
        loop {
            let out = self.out();
            if let Some(i) = out.get(from..).and_then(|o| o.find(needle)) {
                return from + i + needle.len();
            }
            assert!(
                Instant::now() < deadline,
                "openssl did not print {needle:?} within {T:?}\nstdout:\n{out}\nstderr:\n{}",
                self.err()
            );
            // sleep-ok: the interval of a poll bounded by `deadline`.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait until standard error holds `needle` `n` times.
    async fn wait_err_count(&self, needle: &str, n: usize) {
        let deadline = Instant::now() + T;
        while self.err().matches(needle).count() < n {
            assert!(
                Instant::now() < deadline,
                "openssl did not print {needle:?} {n} times within {T:?}\nstderr:\n{}",
                self.err()
            );
            // sleep-ok: the interval of a poll bounded by `deadline`.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Data lines must not start with an s_client command letter (Q, R, K, k).
fn data_line(round: usize, tag: &str, len: usize) -> String {
    let fill: String = pattern(len, round as u32 + 11)
        .iter()
        .map(|b| char::from(b"0123456789abcdef"[(b & 15) as usize]))
        .collect();
    format!("ping {round} {tag} {fill}\r\n")
}

/// Drive one s_client session: a line, then `rounds` times the command
/// `cmd` followed by a line, then a few longer lines; every echo checked.
/// Returns s_client's standard output.
async fn openssl_key_updates(addr: SocketAddr, suite: &str, cmd: &str, rounds: usize) -> String {
    let mut c = SClient::start(addr, &["-ciphersuites", suite]).await;
    let mut pos = c.wait_out("imap ready\r\n", 0).await;
    assert!(
        c.out().contains(&format!("Cipher is {suite}")),
        "negotiated suite is not {suite}:\n{}",
        c.out()
    );
    let line = data_line(0, "before any key update", 40);
    c.send(&line).await;
    pos = c.wait_out(&line, pos).await;
    for r in 1..=rounds {
        c.send(&format!("{cmd}\n")).await;
        c.wait_err_count("KEYUPDATE", r).await;
        let line = data_line(r, "after key update", 40 + r * 50);
        c.send(&line).await;
        let end = c.wait_out(&line, pos).await;
        if cmd == "K" {
            // RFC 8446 §4.6.3: asked to, the server sends its KeyUpdate
            // (update_not_requested) before its next application data.
            let before = &c.out()[..end];
            let answers = before.matches(SERVER_KEY_UPDATE).count();
            assert!(
                answers >= r,
                "round {r}: {answers} KeyUpdates from the server before the echo\n{before}"
            );
            let last = before.rfind(SERVER_KEY_UPDATE).unwrap();
            let body = before[last + SERVER_KEY_UPDATE.len()..]
                .lines()
                .nth(1)
                .unwrap_or_default();
            assert_eq!(body.trim(), "18 00 00 01 00", "{before}");
        }
        pos = end;
    }
    // After the key updates: longer lines, each its own record both ways.
    for r in 0..8 {
        let line = data_line(100 + r, "after all key updates", 1000 + r * 500);
        c.send(&line).await;
        pos = c.wait_out(&line, pos).await;
    }
    assert!(
        !c.err().contains("alert") && !c.out().contains("alert"),
        "openssl saw an alert:\n{}\n{}",
        c.out(),
        c.err()
    );
    c.out()
}

const SUITES: [&str; 3] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_key_update_requested_is_answered_before_the_next_data() {
    let dir = tempfile::tempdir().unwrap();
    let be = CaptureBackend::start("imap", Expect::V2).await;
    let fd = start_frontdoor(dir.path(), be.addr);
    for suite in SUITES {
        openssl_key_updates(fd.addrs[0], suite, "K", 3).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_key_update_not_requested_keeps_the_stream_intact() {
    let dir = tempfile::tempdir().unwrap();
    let be = CaptureBackend::start("imap", Expect::V2).await;
    let fd = start_frontdoor(dir.path(), be.addr);
    for suite in SUITES {
        openssl_key_updates(fd.addrs[0], suite, "k", 3).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_padded_records_are_read() {
    // TLS 1.3 hides record lengths with zero padding after the content
    // type (RFC 8446 §5.4); OpenSSL pads when asked.
    let dir = tempfile::tempdir().unwrap();
    let be = CaptureBackend::start("imap", Expect::V2).await;
    let fd = start_frontdoor(dir.path(), be.addr);
    let mut c = SClient::start(fd.addrs[0], &["-record_padding", "4096"]).await;
    let mut pos = c.wait_out("imap ready\r\n", 0).await;
    for r in 0..6 {
        let line = data_line(r, "padded", 10 + r * 900);
        c.send(&line).await;
        pos = c.wait_out(&line, pos).await;
    }
}

// ---------------------------------------------------------------------------
// 2. Every suite relays large transfers exactly.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tls13_suite_relays_a_mebibyte_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let be = CaptureBackend::start("imap", Expect::V2).await;
    let fd = start_frontdoor(dir.path(), be.addr);
    let suites = [
        rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
        rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
        rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    for (i, suite) in suites.into_iter().enumerate() {
        let mut s = connect_with(fd.addrs[0], suite_config(suite), "localhost")
            .await
            .unwrap();
        assert_eq!(
            s.get_ref().1.negotiated_cipher_suite().map(|s| s.suite()),
            Some(suite.suite())
        );
        assert_eq!(read_line(&mut s).await.unwrap(), "imap ready\r\n");
        let data = pattern(1 << 20, i as u32 + 1);
        let got = echo_through(s, &data).await;
        assert!(got == data, "{:?}: echo differs", suite.suite());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_still_relays_a_mebibyte_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let be = CaptureBackend::start("imap", Expect::V2).await;
    let fd = start_frontdoor(dir.path(), be.addr);
    let mut s = connect_with(
        fd.addrs[0],
        client_config(&["imap"], None, Tls::V12),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(read_line(&mut s).await.unwrap(), "imap ready\r\n");
    let data = pattern(1 << 20, 42);
    assert!(echo_through(s, &data).await == data);
}

// ---------------------------------------------------------------------------
// 3. Hostile or broken input after the handshake.

/// After a completed handshake (and one echoed line, so the server is past
/// its handover), `bytes(conn)` is written straight to the socket. The
/// client must then read the fatal `alert` and the end of the connection,
/// the log must say `why`, and the process and another client, connected
/// before and after, must be unharmed.
async fn hostile(
    bytes: impl FnOnce(&mut rustls::ClientConnection) -> Vec<u8>,
    alert: AlertDescription,
    why: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let be = CaptureBackend::start("imap", Expect::V2).await;
    let mut fd = start_frontdoor(dir.path(), be.addr);
    let mut bystander = good_connection(fd.addrs[0]).await;
    let mut s = good_connection(fd.addrs[0]).await;
    let raw = bytes(s.get_mut().1);
    s.get_mut().0.write_all(&raw).await.unwrap();
    let mut rest = Vec::new();
    let r = tokio::time::timeout(T, s.read_to_end(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("connection still open {T:?} after the bad input ({why})"));
    let e = r.expect_err("a fatal alert, not a clean close");
    let got = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    assert_eq!(
        got,
        Some(&rustls::Error::AlertReceived(alert)),
        "client error: {e}"
    );
    assert!(rest.is_empty(), "data after bad input: {rest:?}");
    close_for(&fd, why).await;
    assert!(fd.child.try_wait().unwrap().is_none(), "frontdoor exited");
    assert_echoes(&mut bystander, "b1 NOOP still here\r\n").await;
    let mut fresh = good_connection(fd.addrs[0]).await;
    assert_echoes(&mut fresh, "c1 NOOP after the bad client\r\n").await;
}

/// One application-data record sealed by the client's rustls, not sent.
fn sealed(conn: &mut rustls::ClientConnection, data: &[u8]) -> Vec<u8> {
    conn.writer().write_all(data).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    assert_eq!(out[0], 23);
    assert_eq!(
        u16::from_be_bytes([out[3], out[4]]) as usize,
        out.len() - 5,
        "one record"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_the_handshake_is_refused() {
    hostile(
        |_| b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        AlertDescription::UnexpectedMessage,
        "unprotected TLS record of type 71",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_ciphertext_is_refused() {
    hostile(
        |c| {
            let mut r = sealed(c, b"x1 NOOP\r\n");
            r[8] ^= 0x01;
            r
        },
        AlertDescription::BadRecordMac,
        "TLS record failed to decrypt",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_tag_is_refused() {
    hostile(
        |c| {
            let mut r = sealed(c, b"x1 NOOP\r\n");
            let last = r.len() - 1;
            r[last] ^= 0x80;
            r
        },
        AlertDescription::BadRecordMac,
        "TLS record failed to decrypt",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_record_header_is_refused() {
    // The header is the AEAD's additional data: a changed version field
    // must fail authentication even though nothing reads it.
    hostile(
        |c| {
            let mut r = sealed(c, b"x1 NOOP\r\n");
            r[2] = 0x01;
            r
        },
        AlertDescription::BadRecordMac,
        "TLS record failed to decrypt",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_record_is_refused() {
    // The same record twice: the second is opened with the next sequence
    // number, so it must not authenticate.
    hostile(
        |c| {
            let r = sealed(c, b"x1 NOOP\r\n");
            [r.clone(), r].concat()
        },
        AlertDescription::BadRecordMac,
        "TLS record failed to decrypt",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_fatal_alert_after_the_handshake_is_refused() {
    hostile(
        |_| vec![21, 3, 3, 0, 2, 2, 40],
        AlertDescription::UnexpectedMessage,
        "unprotected TLS record of type 21",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_close_notify_after_the_handshake_is_refused() {
    // An unauthenticated close_notify would let anyone on the path
    // truncate the stream as if the client had ended it.
    hostile(
        |_| vec![21, 3, 3, 0, 2, 1, 0],
        AlertDescription::UnexpectedMessage,
        "unprotected TLS record of type 21",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_announcing_more_than_16640_bytes_is_refused_at_once() {
    // Only the header is sent: refused from the length alone, without
    // waiting for a body that never comes.
    hostile(
        |_| vec![23, 3, 3, 0x41, 0x01],
        AlertDescription::RecordOverflow,
        "TLS record too long",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_of_exactly_16640_bytes_is_read_then_fails_authentication() {
    // 2^14 + 256 is the largest allowed: read whole, then refused because
    // it does not decrypt, not for its length.
    hostile(
        |_| {
            let mut r = vec![23, 3, 3, 0x41, 0x00];
            r.extend_from_slice(&pattern(16_640, 5));
            r
        },
        AlertDescription::BadRecordMac,
        "TLS record failed to decrypt",
    )
    .await;
}

// ---------------------------------------------------------------------------
// 4. Sequence numbers across the handover from the handshake.

/// A blocking rustls client that queues `early` before the handshake, so
/// that it leaves in the same flight as the client's Finished. With
/// `split`, that flight is sent in two parts, cut inside the first data
/// record, so the server finishes its handshake holding half a record.
/// Then `tiny` records of one to three bytes are sent in one burst. Returns
/// everything echoed, greeting included, once `want` bytes arrived.
const KU_LINE: &[u8] = b"after the key update\r\n";

fn pipelined(
    addr: SocketAddr,
    early: &[u8],
    pieces: &[usize],
    split: bool,
    key_update: bool,
    tiny: &[Vec<u8>],
    want: usize,
) -> Vec<u8> {
    let cfg = client_config(&["imap"], None, Tls::V13);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut c = rustls::ClientConnection::new(cfg, name).unwrap();
    c.set_buffer_limit(None);
    // Each write queued before the handshake becomes its own record.
    let (mut off, mut i) = (0, 0);
    while off < early.len() {
        let n = pieces[i % pieces.len()].min(early.len() - off);
        c.writer().write_all(&early[off..off + n]).unwrap();
        off += n;
        i += 1;
    }
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(T)).unwrap();
    tcp.set_nodelay(true).unwrap();
    let flush = |c: &mut rustls::ClientConnection, tcp: &mut std::net::TcpStream| {
        let mut out = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut out).unwrap();
        }
        tcp.write_all(&out).unwrap();
    };
    flush(&mut c, &mut tcp);
    for _ in 0..100 {
        if !c.is_handshaking() {
            break;
        }
        let n = c.read_tls(&mut tcp).expect("server's handshake flight");
        assert!(n > 0, "server closed during the handshake");
        c.process_new_packets().unwrap();
        if c.is_handshaking() {
            flush(&mut c, &mut tcp);
        }
    }
    assert!(!c.is_handshaking());
    // The final flight: Finished, then the early data as application data.
    let mut flight = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut flight).unwrap();
    }
    assert!(flight.len() > early.len(), "early data in the final flight");
    if key_update {
        // In the same flight: a KeyUpdate asking for the server's, and a
        // record under the new key.
        c.refresh_traffic_keys().unwrap();
        c.writer().write_all(KU_LINE).unwrap();
        while c.wants_write() {
            c.write_tls(&mut flight).unwrap();
        }
    }
    let mut parts = vec![flight.clone()];
    if split {
        // Offsets of the records; the first protected one is Finished.
        let mut starts = Vec::new();
        let mut off = 0;
        while off + 5 <= flight.len() {
            starts.push((flight[off], off));
            off += 5 + u16::from_be_bytes([flight[off + 3], flight[off + 4]]) as usize;
        }
        let data_rec = starts.iter().filter(|(t, _)| *t == 23).nth(1).unwrap().1;
        let cut = data_rec + 10;
        parts = vec![flight[..cut].to_vec(), flight[cut..].to_vec()];
    }
    let mut burst = Vec::new();
    for t in tiny {
        c.writer().write_all(t).unwrap();
        while c.wants_write() {
            c.write_tls(&mut burst).unwrap();
        }
    }
    parts.push(burst);
    // Written from another thread while this one reads the echo, so that
    // neither side waits on the other's full buffers.
    let mut w = tcp.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                // sleep-ok: spaces the parts so that the server reads them
                // apart; the split delivery is what is under test.
                std::thread::sleep(Duration::from_millis(100));
            }
            w.write_all(p).unwrap();
        }
    });
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < want {
        assert!(
            Instant::now() < deadline,
            "echo: {} of {want} bytes",
            got.len()
        );
        match c.read_tls(&mut tcp) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => panic!("reading the echo: {e}"),
        }
        c.process_new_packets().unwrap();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match c.reader().read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("reading the echo: {e}"),
            }
        }
    }
    writer.join().unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_pipelined_with_finished_and_thousands_of_tiny_records_arrive_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let be = CaptureBackend::start("imap", Expect::V2).await;
    let fd = start_frontdoor(dir.path(), be.addr);
    for (early_len, pieces) in PIPELINED {
        for split in [false, true] {
            pipelined_case(fd.addrs[0], early_len, pieces, split, false)
                .await
                .unwrap();
        }
    }
}

/// Early data: one small record; many small records, all inside the
/// server's last handshake read (so its rustls opens them and the
/// sequence number handed over is well past zero); several records'
/// worth, beyond that read.
const PIPELINED: [(usize, &[usize]); 3] = [
    (100, &[100]),
    (5_000, &[1, 17, 100, 250]),
    (200_000, &[1, 300, 16_384, 20_000, 5]),
];

async fn pipelined_case(
    addr: SocketAddr,
    early_len: usize,
    pieces: &[usize],
    split: bool,
    ku: bool,
) -> Result<(), String> {
    let case = format!("early {early_len}, split {split}, key update {ku}");
    let early = pattern(early_len, early_len as u32 + split as u32);
    let bytes = pattern(10_000, 77);
    let tiny: Vec<Vec<u8>> = (0..4000)
        .map(|i| {
            let n = 1 + i % 3;
            bytes[i * 2..i * 2 + n].to_vec()
        })
        .collect();
    let mut want = b"imap ready\r\n".to_vec();
    want.extend_from_slice(&early);
    if ku {
        want.extend_from_slice(KU_LINE);
    }
    for t in &tiny {
        want.extend_from_slice(t);
    }
    let n = want.len();
    let pieces = pieces.to_vec();
    let got =
        tokio::task::spawn_blocking(move || pipelined(addr, &early, &pieces, split, ku, &tiny, n))
            .await
            .map_err(|e| format!("{case}: client failed: {e}"))?;
    if got != want {
        return Err(format!(
            "{case}: echo differs ({} of {} bytes)",
            got.len(),
            want.len()
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_update_in_the_same_flight_as_finished_is_answered() {
    // A client that asks for a KeyUpdate at once: KeyUpdate and data under
    // its new key travel with its Finished. When they arrive in the same
    // read, the server's rustls answers the KeyUpdate (its answer is
    // queued, its sending key already replaced) before the records are
    // handed over; the answer must still go out before the next data.
    let dir = tempfile::tempdir().unwrap();
    let be = CaptureBackend::start("imap", Expect::V2).await;
    let fd = start_frontdoor(dir.path(), be.addr);
    let mut failed = Vec::new();
    for (early_len, pieces) in PIPELINED {
        for split in [false, true] {
            if let Err(e) = pipelined_case(fd.addrs[0], early_len, pieces, split, true).await {
                failed.push(e);
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{}\nlog:\n{}",
        failed.join("\n"),
        fd.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_tiny_records_each_echoed_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let be = CaptureBackend::start("imap", Expect::V2).await;
    let fd = start_frontdoor(dir.path(), be.addr);
    let mut s = connect(fd.addrs[0], &["imap"], "localhost").await.unwrap();
    // Written at once after the handshake, before the greeting arrives.
    s.write_all(b"0").await.unwrap();
    s.flush().await.unwrap();
    let mut greet = [0u8; 13];
    tokio::time::timeout(T, s.read_exact(&mut greet))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&greet, b"imap ready\r\n0");
    let bytes = pattern(3 * 3000, 99);
    let started = Instant::now();
    let mut off = 0;
    for i in 0..3000 {
        if i % 500 == 499 {
            // A KeyUpdate (update_requested) now and then: sequence
            // numbers start again under the new keys, both ways.
            s.get_mut().1.refresh_traffic_keys().unwrap();
        }
        let n = 1 + i % 3;
        let piece = &bytes[off..off + n];
        off += n;
        s.write_all(piece).await.unwrap();
        s.flush().await.unwrap();
        let mut back = vec![0u8; n];
        tokio::time::timeout(T, s.read_exact(&mut back))
            .await
            .unwrap_or_else(|_| panic!("record {i}: no echo within {T:?}"))
            .unwrap();
        assert_eq!(back, piece, "record {i}");
        assert!(started.elapsed() < Duration::from_secs(60), "too slow");
    }
}

// ---------------------------------------------------------------------------
// 5. close_notify in both directions.

/// A backend that skips the PROXY header, reads to EOF, reports the bytes
/// read on `tx`, answers `got N`, then closes.
async fn counting_backend() -> (SocketAddr, tokio::sync::oneshot::Receiver<Vec<u8>>) {
    let (addr, _, rx) = watching_backend().await;
    (addr, rx)
}

/// [`counting_backend`] that also shows what it has so far, as it comes.
async fn watching_backend() -> (
    SocketAddr,
    tokio::sync::watch::Receiver<Vec<u8>>,
    tokio::sync::oneshot::Receiver<Vec<u8>>,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (wtx, wrx) = tokio::sync::watch::channel(Vec::new());
    tokio::spawn(async move {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        let mut h = [0u8; 16];
        s.read_exact(&mut h).await.unwrap();
        let mut skip = vec![0u8; u16::from_be_bytes([h[14], h[15]]) as usize];
        s.read_exact(&mut skip).await.unwrap();
        let mut all = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            wtx.send_replace(all.clone());
        }
        let _ = s
            .write_all(format!("got {}\r\n", all.len()).as_bytes())
            .await;
        let _ = tx.send(all);
        let _ = s.shutdown().await;
    });
    (addr, wrx, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_notify_is_end_of_stream_for_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let (baddr, seen) = counting_backend().await;
    let fd = start_frontdoor(dir.path(), baddr);
    let mut s = connect(fd.addrs[0], &["imap"], "localhost").await.unwrap();
    let data = pattern(50_000, 8);
    s.write_all(&data).await.unwrap();
    // close_notify, the write half only: the answer still comes back.
    s.shutdown().await.unwrap();
    let got = tokio::time::timeout(T, seen)
        .await
        .expect("the backend saw EOF")
        .unwrap();
    assert!(got == data, "backend got {} bytes", got.len());
    let mut rest = Vec::new();
    let r = tokio::time::timeout(T, s.read_to_end(&mut rest))
        .await
        .expect("the server's close within the timeout");
    r.expect("a close_notify from the server, not a bare TCP close");
    assert_eq!(rest, b"got 50000\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_updates_asked_for_while_the_server_is_silent_do_not_fail_the_client() {
    // A client that asks for a KeyUpdate with each of 40 writes while the
    // backend says nothing: the server's answers wait for its next data
    // (RFC 8446 §4.6.3). Sent one per request, 40 KeyUpdates without data
    // would arrive, and rustls gives up after 32 (TooManyKeyUpdateRequests).
    let dir = tempfile::tempdir().unwrap();
    let (baddr, mut progress, seen) = watching_backend().await;
    let fd = start_frontdoor(dir.path(), baddr);
    let mut s = connect(fd.addrs[0], &["imap"], "localhost").await.unwrap();
    let mut sent = Vec::new();
    for r in 0..40 {
        s.get_mut().1.refresh_traffic_keys().unwrap();
        let line = format!("line {r} after a key update\r\n");
        s.write_all(line.as_bytes()).await.unwrap();
        s.flush().await.unwrap();
        sent.extend_from_slice(line.as_bytes());
        // The server has opened the KeyUpdate and the data behind it.
        let n = sent.len();
        tokio::time::timeout(T, progress.wait_for(|b| b.len() >= n))
            .await
            .unwrap_or_else(|_| panic!("round {r}: the backend did not get the line"))
            .unwrap();
    }
    s.shutdown().await.unwrap();
    let got = tokio::time::timeout(T, seen).await.unwrap().unwrap();
    assert!(got == sent, "backend got {} bytes", got.len());
    let mut rest = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut rest))
        .await
        .expect("the server's answer within the timeout")
        .expect("the client accepts what the server sent");
    assert_eq!(rest, format!("got {}\r\n", sent.len()).as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_after_close_notify_are_ignored() {
    // RFC 8446 §6.1: data received after a closure alert is ignored.
    let dir = tempfile::tempdir().unwrap();
    let (baddr, mut progress, seen) = watching_backend().await;
    let fd = start_frontdoor(dir.path(), baddr);
    let mut s = connect(fd.addrs[0], &["imap"], "localhost").await.unwrap();
    s.write_all(b"before\r\n").await.unwrap();
    s.flush().await.unwrap();
    // The backend has the first line: the server has read application
    // data, so a TLS 1.3 connection is in its own record layer now (the
    // close line below proves it was).
    tokio::time::timeout(T, progress.wait_for(|b| b.len() >= b"before\r\n".len()))
        .await
        .expect("the backend got the first line")
        .unwrap();
    let c = s.get_mut().1;
    let mut raw = sealed(c, b"last\r\n");
    c.send_close_notify();
    while c.wants_write() {
        c.write_tls(&mut raw).unwrap();
    }
    let after = sealed(c, b"after close_notify\r\n");
    raw.extend_from_slice(&after);
    s.get_mut().0.write_all(&raw).await.unwrap();
    let got = tokio::time::timeout(T, seen)
        .await
        .expect("the backend saw EOF")
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&got), "before\r\nlast\r\n");
    // Not rustls: the records after close_notify reached record13.
    let close = fd
        .wait_event(T, is_close)
        .await
        .unwrap_or_else(|| panic!("no close line:\n{}", fd.logs()));
    assert_eq!(str_field(&close, "records"), "record13", "{close}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_close_reaches_the_client_as_close_notify() {
    let dir = tempfile::tempdir().unwrap();
    // A backend that says goodbye and closes while the client still reads.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let baddr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        let mut h = [0u8; 16];
        s.read_exact(&mut h).await.unwrap();
        let mut skip = vec![0u8; u16::from_be_bytes([h[14], h[15]]) as usize];
        s.read_exact(&mut skip).await.unwrap();
        let mut line = [0u8; 8];
        s.read_exact(&mut line).await.unwrap();
        let _ = s.write_all(b"* BYE ").await;
        let _ = s.write_all(&line).await;
        let _ = s.shutdown().await;
        // Keep the read half open: the client has not closed.
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink).await;
    });
    let fd = start_frontdoor(dir.path(), baddr);
    let mut s = connect(fd.addrs[0], &["imap"], "localhost").await.unwrap();
    s.write_all(b"a LOGOUT").await.unwrap();
    s.flush().await.unwrap();
    let mut got = Vec::new();
    let r = tokio::time::timeout(T, s.read_to_end(&mut got))
        .await
        .expect("the server's close within the timeout");
    // tokio-rustls reports a TCP close without close_notify as
    // UnexpectedEof; a proper close_notify is Ok (a read of 0).
    r.expect("a close_notify from the server, not a bare TCP close");
    assert_eq!(got, b"* BYE a LOGOUT");
}

// ---------------------------------------------------------------------------
// Records built by hand with the connection's own keys: what no ordinary
// client sends, but the record layer must still get right.

/// One direction's AEAD key and sequence number (RFC 8446 §5.3), and its
/// traffic secret when the key log gave it (for KeyUpdates, §7.2).
struct HandKeys {
    key: ring::aead::LessSafeKey,
    iv: [u8; 12],
    seq: u64,
    aead: &'static ring::aead::Algorithm,
    hkdf: ring::hkdf::Algorithm,
    secret: Option<Vec<u8>>,
}

impl HandKeys {
    fn new((seq, s): (u64, rustls::ConnectionTrafficSecrets)) -> HandKeys {
        use ring::{aead, hkdf};
        use rustls::ConnectionTrafficSecrets as S;
        let (alg, hash, key, iv) = match &s {
            S::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, hkdf::HKDF_SHA256, key, iv),
            S::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, hkdf::HKDF_SHA384, key, iv),
            S::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, hkdf::HKDF_SHA256, key, iv)
            }
            _ => panic!("unexpected suite"),
        };
        HandKeys {
            key: aead::LessSafeKey::new(aead::UnboundKey::new(alg, key.as_ref()).unwrap()),
            iv: iv.as_ref().try_into().unwrap(),
            seq,
            aead: alg,
            hkdf: hash,
            secret: None,
        }
    }

    /// Take the traffic secret these keys were derived from (checked).
    fn with_secret(mut self, secret: Vec<u8>) -> HandKeys {
        let iv = expand_label(self.hkdf, &secret, "iv", 12);
        assert_eq!(iv, self.iv, "the key log's secret is not this key's");
        self.secret = Some(secret);
        self
    }

    /// RFC 8446 §7.2: the next traffic secret, its key and IV, sequence 0.
    fn update(&mut self) {
        let old = self
            .secret
            .as_ref()
            .expect("a traffic secret from the key log");
        let hash_len = self.hkdf.hmac_algorithm().digest_algorithm().output_len();
        let next = expand_label(self.hkdf, old, "traffic upd", hash_len);
        let key = expand_label(self.hkdf, &next, "key", self.aead.key_len());
        self.key =
            ring::aead::LessSafeKey::new(ring::aead::UnboundKey::new(self.aead, &key).unwrap());
        self.iv = expand_label(self.hkdf, &next, "iv", 12).try_into().unwrap();
        self.seq = 0;
        self.secret = Some(next);
    }

    fn nonce(&mut self) -> ring::aead::Nonce {
        let mut n = self.iv;
        for (d, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *d ^= s;
        }
        self.seq += 1;
        ring::aead::Nonce::assume_unique_for_key(n)
    }
}

/// HKDF-Expand-Label with an empty context (RFC 8446 §7.1).
fn expand_label(alg: ring::hkdf::Algorithm, secret: &[u8], label: &str, len: usize) -> Vec<u8> {
    struct Len(usize);
    impl ring::hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let label = format!("tls13 {label}");
    let out_len = (len as u16).to_be_bytes();
    let info: [&[u8]; 4] = [&out_len, &[label.len() as u8], label.as_bytes(), &[0]];
    let prk = ring::hkdf::Prk::new_less_safe(alg, secret);
    let mut out = vec![0u8; len];
    prk.expand(&info, Len(len)).unwrap().fill(&mut out).unwrap();
    out
}

/// The traffic secrets a client's key log was given (SSLKEYLOGFILE labels).
#[derive(Debug, Default)]
struct KeyLog(Mutex<Vec<(String, Vec<u8>)>>);

impl rustls::KeyLog for KeyLog {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        self.0
            .lock()
            .unwrap()
            .push((label.to_string(), secret.to_vec()));
    }
}

impl KeyLog {
    fn get(&self, label: &str) -> Vec<u8> {
        let all = self.0.lock().unwrap();
        let found = all.iter().rev().find(|(l, _)| l == label);
        found.map(|(_, s)| s.clone()).expect(label)
    }
}

/// A TLS 1.3 connection through the front door whose records the test
/// seals and opens itself, after a rustls handshake and one echoed line.
struct Hand {
    tcp: TcpStream,
    tx: HandKeys,
    rx: HandKeys,
    inbuf: Vec<u8>,
}

impl Hand {
    async fn connect(addr: SocketAddr) -> Hand {
        let mut cfg = (*client_config(&["imap"], None, Tls::V13)).clone();
        cfg.enable_secret_extraction = true;
        let log = Arc::new(KeyLog::default());
        cfg.key_log = log.clone();
        let mut s = connect_with(addr, Arc::new(cfg), "localhost")
            .await
            .unwrap();
        assert_eq!(read_line(&mut s).await.unwrap(), "imap ready\r\n");
        assert_echoes(&mut s, "h1 NOOP\r\n").await;
        let (tcp, conn) = s.into_inner();
        let secrets = conn.dangerous_extract_secrets().unwrap();
        Hand {
            tcp,
            tx: HandKeys::new(secrets.tx).with_secret(log.get("CLIENT_TRAFFIC_SECRET_0")),
            rx: HandKeys::new(secrets.rx).with_secret(log.get("SERVER_TRAFFIC_SECRET_0")),
            inbuf: Vec::new(),
        }
    }

    /// `n` KeyUpdates, each sealed under the key the one before it
    /// replaced, each asking for the server's (`requested`) or not.
    fn key_updates(&mut self, n: usize, requested: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.extend_from_slice(&self.seal(&inner(&[24, 0, 0, 1, requested as u8], 22, 0)));
            self.tx.update();
        }
        out
    }

    /// Seal `inner` (TLSInnerPlaintext: content, type, padding) as one
    /// record.
    fn seal(&mut self, inner: &[u8]) -> Vec<u8> {
        let len = inner.len() + 16;
        let head = [23, 3, 3, (len >> 8) as u8, len as u8];
        let mut body = inner.to_vec();
        let nonce = self.tx.nonce();
        self.tx
            .key
            .seal_in_place_append_tag(nonce, ring::aead::Aad::from(head), &mut body)
            .unwrap();
        [head.to_vec(), body].concat()
    }

    async fn send(&mut self, inners: &[Vec<u8>]) {
        let mut out = Vec::new();
        for i in inners {
            out.extend_from_slice(&self.seal(i));
        }
        self.tcp.write_all(&out).await.unwrap();
    }

    /// The next record from the server: its inner type and content, or
    /// None at EOF. Bounded by `T`.
    async fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            if self.inbuf.len() >= 5 {
                let len = u16::from_be_bytes([self.inbuf[3], self.inbuf[4]]) as usize;
                if self.inbuf.len() >= 5 + len {
                    let rec: Vec<u8> = self.inbuf.drain(..5 + len).collect();
                    assert_eq!(rec[0], 23, "server record type");
                    let head: [u8; 5] = rec[..5].try_into().unwrap();
                    let mut body = rec[5..].to_vec();
                    let nonce = self.rx.nonce();
                    let inner = self
                        .rx
                        .key
                        .open_in_place(nonce, ring::aead::Aad::from(head), &mut body)
                        .expect("server record decrypts");
                    let t = inner.iter().rposition(|&b| b != 0).unwrap();
                    if inner[t] == 22 && inner[..t] == [24, 0, 0, 1, 0] {
                        // The server's KeyUpdate: its next records use new keys.
                        self.rx.update();
                        continue;
                    }
                    return Some((inner[t], inner[..t].to_vec()));
                }
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let n = tokio::time::timeout_at(deadline, self.tcp.read(&mut chunk))
                .await
                .expect("a server record within the timeout")
                .unwrap_or(0);
            if n == 0 {
                assert!(self.inbuf.is_empty(), "EOF inside a record");
                return None;
            }
            self.inbuf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Application data from the server until `n` bytes arrived.
    async fn data(&mut self, n: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < n {
            match self.next().await {
                Some((23, d)) => got.extend_from_slice(&d),
                other => panic!("expected data, got {other:?} after {got:?}"),
            }
        }
        got
    }

    /// The server's fatal alert, then the end of the connection.
    async fn alert(&mut self) -> u8 {
        let a = match self.next().await {
            Some((21, a)) => a,
            Some((23, d)) => panic!("records accepted: {} bytes echoed, no alert", d.len()),
            other => panic!("expected an alert, got {other:?}"),
        };
        assert_eq!(a.len(), 2, "alert {a:?}");
        assert_eq!(a[0], 2, "fatal level");
        assert!(
            self.next().await.is_none(),
            "connection ends after the alert"
        );
        a[1]
    }
}

fn inner(content: &[u8], typ: u8, padding: usize) -> Vec<u8> {
    [content, &[typ], &vec![0u8; padding]].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusual_but_valid_records_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let be = CaptureBackend::start("imap", Expect::V2).await;
    let fd = start_frontdoor(dir.path(), be.addr);
    let mut h = Hand::connect(fd.addrs[0]).await;
    // Empty application data, content ending in zero bytes (the content
    // type, not the last non-zero byte of the data, ends it), padding, a
    // record of exactly 2^14 bytes of content, user_canceled (a warning).
    let full = pattern(1 << 14, 21);
    let records = [
        inner(b"", 23, 0),
        inner(b"e1\r\n", 23, 0),
        inner(b"", 23, 500),
        inner(b"z\0\0", 23, 0),
        inner(b"p1\r\n", 23, 1000),
        inner(&full, 23, 0),
        inner(&[1, 90], 21, 0),
        inner(b"last\r\n", 23, 0),
    ];
    h.send(&records).await;
    let want = [&b"e1\r\nz\0\0p1\r\n"[..], &full, b"last\r\n"].concat();
    let got = h.data(want.len()).await;
    assert!(got == want, "echo differs");
    // And a clean close: our close_notify, the backend's EOF, theirs.
    h.send(&[inner(&[1, 0], 21, 0)]).await;
    match h.next().await {
        Some((21, a)) => assert_eq!(a, [1, 0], "close_notify"),
        other => panic!("expected close_notify, got {other:?}"),
    }
    assert!(h.next().await.is_none());
}

/// A connection that sends `records` after the handshake must get `alert`
/// (RFC 8446 numbering) back, with `why` in the log; others are unharmed.
async fn refused(records: Vec<Vec<u8>>, alert: u8, why: &str) {
    let dir = tempfile::tempdir().unwrap();
    let be = CaptureBackend::start("imap", Expect::V2).await;
    let mut fd = start_frontdoor(dir.path(), be.addr);
    let mut bystander = good_connection(fd.addrs[0]).await;
    let mut h = Hand::connect(fd.addrs[0]).await;
    h.send(&records).await;
    assert_eq!(h.alert().await, alert, "alert for {why:?}");
    close_for(&fd, why).await;
    assert!(fd.child.try_wait().unwrap().is_none(), "frontdoor exited");
    assert_echoes(&mut bystander, "b1 NOOP still here\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_over_16384_bytes_is_record_overflow() {
    refused(
        vec![inner(&pattern((1 << 14) + 1, 3), 23, 0)],
        22,
        "TLS plaintext too long",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inner_plaintext_over_16385_bytes_with_padding_is_record_overflow() {
    // RFC 8446 §5.4: padding does not lift the limit; the whole
    // TLSInnerPlaintext (content, type, padding) is at most 2^14 + 1 bytes.
    refused(
        vec![inner(&pattern(1 << 14, 4), 23, 100)],
        22,
        "TLS plaintext too long",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inner_plaintext_without_a_content_type_is_refused() {
    refused(vec![vec![0u8; 40]], 10, "TLS record without a content type").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_change_cipher_spec_is_refused() {
    refused(
        vec![inner(&[1], 20, 0)],
        10,
        "unexpected TLS content type 20",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_message_other_than_key_update_is_refused() {
    // A ClientHello (renegotiation does not exist in TLS 1.3).
    refused(
        vec![inner(&[1, 0, 0, 2, 3, 3], 22, 0)],
        10,
        "unexpected TLS handshake message 1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_update_with_an_invalid_request_is_illegal_parameter() {
    refused(
        vec![inner(&[24, 0, 0, 1, 2], 22, 0)],
        47,
        "KeyUpdate with an invalid request_update",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_alert_is_decode_error() {
    refused(vec![inner(&[2, 40, 0], 21, 0)], 50, "malformed TLS alert").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_shorter_than_a_tag_is_decode_error() {
    let dir = tempfile::tempdir().unwrap();
    let be = CaptureBackend::start("imap", Expect::V2).await;
    let fd = start_frontdoor(dir.path(), be.addr);
    let mut h = Hand::connect(fd.addrs[0]).await;
    let mut r = vec![23, 3, 3, 0, 16];
    r.extend_from_slice(&[7u8; 16]);
    h.tcp.write_all(&r).await.unwrap();
    assert_eq!(h.alert().await, 50);
    close_for(&fd, "TLS record too short").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_alert_from_the_client_ends_the_connection_with_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let be = CaptureBackend::start("imap", Expect::V2).await;
    let mut fd = start_frontdoor(dir.path(), be.addr);
    let mut bystander = good_connection(fd.addrs[0]).await;
    let mut h = Hand::connect(fd.addrs[0]).await;
    // handshake_failure, fatal: no answer is owed, the connection ends.
    h.send(&[inner(&[2, 40], 21, 0)]).await;
    assert!(h.next().await.is_none(), "nothing after the client's alert");
    close_for(&fd, "peer sent TLS alert 40").await;
    assert!(fd.child.try_wait().unwrap().is_none(), "frontdoor exited");
    assert_echoes(&mut bystander, "b1 NOOP still here\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_updates_in_the_middle_of_a_large_download() {
    // The server is busy sending when the client asks for KeyUpdates: its
    // answer must fall between two of its records, never inside the
    // stream of records already sealed, and the client's own new keys must
    // be taken up while the download goes on.
    const DOWN: usize = 8 << 20;
    let dir = tempfile::tempdir().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let baddr = l.local_addr().unwrap();
    let (tx, up) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        let mut h = [0u8; 16];
        s.read_exact(&mut h).await.unwrap();
        let mut skip = vec![0u8; u16::from_be_bytes([h[14], h[15]]) as usize];
        s.read_exact(&mut skip).await.unwrap();
        let (mut r, mut w) = s.into_split();
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            let _ = r.read_to_end(&mut all).await;
            let _ = tx.send(all);
        });
        let _ = w.write_all(&pattern(DOWN, 31)).await;
        // The write half stays open until the client is done.
        let _ = reader.await;
        drop(w);
    });
    let fd = start_frontdoor(dir.path(), baddr);
    let mut s = connect(fd.addrs[0], &["imap"], "localhost").await.unwrap();
    let mut got = vec![0u8; DOWN];
    let mut sent = Vec::new();
    let mut off = 0;
    let mut round = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while off < DOWN {
        assert!(Instant::now() < deadline, "download: {off} of {DOWN} bytes");
        let n = tokio::time::timeout(T, s.read(&mut got[off..(off + 16_384).min(DOWN)]))
            .await
            .expect("download stalled")
            .unwrap_or_else(|e| {
                panic!("{e} after {off} bytes, {round} key updates\n{}", fd.logs())
            });
        assert!(n > 0, "EOF after {off} bytes");
        off += n;
        if off >= (round + 1) * (DOWN / 16) {
            round += 1;
            s.get_mut().1.refresh_traffic_keys().unwrap();
            let line = format!("u{round} under new keys\r\n");
            s.write_all(line.as_bytes()).await.unwrap();
            s.flush().await.unwrap();
            sent.extend_from_slice(line.as_bytes());
        }
    }
    assert!(got == pattern(DOWN, 31), "download differs");
    assert!(round >= 15, "{round} key updates");
    s.shutdown().await.unwrap();
    let up = tokio::time::timeout(T, up).await.unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&up), String::from_utf8_lossy(&sent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_update_requested_after_the_server_closed_is_not_answered() {
    // The backend sends a response and closes, so the server sends its
    // close_notify; the client reads it all, then asks for a KeyUpdate
    // (legal: its own direction is still open) and sends a last line. The
    // server may send nothing after its close_notify (its socket's write
    // half is shut), so it must not answer, and the line must still reach
    // the backend.
    const DOWN: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let baddr = l.local_addr().unwrap();
    let (tx, up) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        let mut h = [0u8; 16];
        s.read_exact(&mut h).await.unwrap();
        let mut skip = vec![0u8; u16::from_be_bytes([h[14], h[15]]) as usize];
        s.read_exact(&mut skip).await.unwrap();
        let _ = s.write_all(&pattern(DOWN, 32)).await;
        let _ = s.shutdown().await;
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all).await;
        let _ = tx.send(all);
    });
    let fd = start_frontdoor(dir.path(), baddr);
    let mut s = connect(fd.addrs[0], &["imap"], "localhost").await.unwrap();
    let mut got = Vec::new();
    let r = tokio::time::timeout(T, s.read_to_end(&mut got))
        .await
        .expect("the response within the timeout");
    let n = got.len();
    r.unwrap_or_else(|e| panic!("{e} after {n} of {DOWN} bytes"));
    // The server's close_notify has arrived; the client's direction is
    // still open: a KeyUpdate asking for the server's, then a last line.
    s.get_mut().1.refresh_traffic_keys().unwrap();
    s.write_all(b"a LOGOUT\r\n").await.unwrap();
    s.flush().await.unwrap();
    assert!(got == pattern(DOWN, 32), "download differs ({n} bytes)");
    s.shutdown().await.unwrap();
    let up = tokio::time::timeout(T, up).await.unwrap().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&up),
        "a LOGOUT\r\n",
        "the backend did not get the last line; log:\n{}",
        fd.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_session_relays_exactly() {
    // A resumed handshake derives its traffic keys from the ticket's PSK:
    // the records after it are the same layer's, with other keys.
    let dir = tempfile::tempdir().unwrap();
    let be = CaptureBackend::start("imap", Expect::V2).await;
    let fd = start_frontdoor(dir.path(), be.addr);
    let cfg = client_config(&["imap"], None, Tls::V13);
    for (i, kind) in [rustls::HandshakeKind::Full, rustls::HandshakeKind::Resumed]
        .into_iter()
        .enumerate()
    {
        let mut s = connect_with(fd.addrs[0], cfg.clone(), "localhost")
            .await
            .unwrap();
        assert_eq!(s.get_ref().1.handshake_kind(), Some(kind));
        assert_eq!(read_line(&mut s).await.unwrap(), "imap ready\r\n");
        let data = pattern(300_000, 50 + i as u32);
        // The greeting has brought the tickets: the next connection can
        // resume.
        let got = echo_through(s, &data).await;
        assert!(got == data, "{kind:?}: echo differs");
    }
}

// ---------------------------------------------------------------------------
// Records that carry no data: a few in a row, as rustls and BoringSSL allow
// (32 KeyUpdates, 32 empty records, 4 user_canceled alerts), then the fatal
// unexpected_message alert.

/// After the handshake, `flood(conn)` is written without waiting for the
/// server to read it all (it ends the connection first). The client must
/// read unexpected_message and the end of the connection, the close line
/// must say `why`, and the process and other clients must be unharmed.
async fn flooded(flood: impl FnOnce(&mut Hand) -> Vec<u8>, why: &str) {
    let dir = tempfile::tempdir().unwrap();
    let be = CaptureBackend::start("imap", Expect::V2).await;
    let mut fd = start_frontdoor(dir.path(), be.addr);
    let mut bystander = good_connection(fd.addrs[0]).await;
    let mut h = Hand::connect(fd.addrs[0]).await;
    let bytes = flood(&mut h);
    let _ = h.tcp.write_all(&bytes).await;
    assert_eq!(h.alert().await, 10, "unexpected_message for {why:?}");
    close_for(&fd, why).await;
    let closed = fd.count(|e| is_close(e) && str_field(e, "reason").contains(why));
    assert_eq!(closed, 1, "close lines with {why:?}");
    assert!(fd.child.try_wait().unwrap().is_none(), "frontdoor exited");
    assert_echoes(&mut bystander, "b1 NOOP still here\r\n").await;
    let mut fresh = good_connection(fd.addrs[0]).await;
    assert_echoes(&mut fresh, "c1 NOOP after the flood\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_key_updates_without_data_end_the_connection() {
    // Each asks for the server's KeyUpdate too: the costlier kind.
    flooded(
        |h| h.key_updates(2000, true),
        "more than 32 TLS KeyUpdates without application data between them",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_empty_records_end_the_connection() {
    flooded(
        |h| {
            (0..2000)
                .flat_map(|i| h.seal(&inner(b"", 23, i % 3)))
                .collect()
        },
        "more than 32 empty TLS records without application data between them",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifth_user_canceled_in_a_row_ends_the_connection() {
    flooded(
        |h| {
            (0..5)
                .flat_map(|_| h.seal(&inner(&[1, 90], 21, 0)))
                .collect()
        },
        "more than 4 TLS user_canceled alerts without application data between them",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_many_as_allowed_with_data_between_them_are_relayed() {
    // Up to each limit, then a byte of data, again and again: the counts
    // start over at each data record, and every line is echoed.
    let dir = tempfile::tempdir().unwrap();
    let be = CaptureBackend::start("imap", Expect::V2).await;
    let fd = start_frontdoor(dir.path(), be.addr);
    let mut h = Hand::connect(fd.addrs[0]).await;
    for round in 0..8 {
        let mut out = h.key_updates(32, round % 2 == 0);
        for i in 0..32 {
            out.extend_from_slice(&h.seal(&inner(b"", 23, i % 2)));
        }
        for _ in 0..4 {
            out.extend_from_slice(&h.seal(&inner(&[1, 90], 21, 0)));
        }
        let line = format!("r{round} after 32 KeyUpdates, 32 empty records, 4 user_canceled\r\n");
        out.extend_from_slice(&h.seal(&inner(line.as_bytes(), 23, 0)));
        h.tcp.write_all(&out).await.unwrap();
        let got = h.data(line.len()).await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            line,
            "round {round}\n{}",
            fd.logs()
        );
    }
    // Still a healthy connection: a clean close both ways.
    let bye = h.seal(&inner(&[1, 0], 21, 0));
    h.tcp.write_all(&bye).await.unwrap();
    match h.next().await {
        Some((21, a)) => assert_eq!(a, [1, 0], "close_notify"),
        other => panic!("expected close_notify, got {other:?}\n{}", fd.logs()),
    }
    assert!(h.next().await.is_none());
    // A clean close: no limit on records without data was hit.
    let close = fd
        .wait_event(T, is_close)
        .await
        .unwrap_or_else(|| panic!("no close line:\n{}", fd.logs()));
    assert_eq!(str_field(&close, "reason_code"), "closed", "{close}");
    assert!(
        !str_field(&close, "reason").contains("without application data"),
        "{close}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_without_data_do_not_reset_the_idle_timer() {
    // idle 1 s; a KeyUpdate every 100 ms (fewer than 32 before the timer
    // fires): the connection still ends at the idle timeout, not 100 ms
    // after the last of them.
    let dir = tempfile::tempdir().unwrap();
    let be = CaptureBackend::start("imap", Expect::V2).await;
    let p = dir.path().join("f.yaml");
    std::fs::write(
        &p,
        format!(
            "listeners:\n  - bind: \"127.0.0.1:0\"\nroutes:\n  imap: {{ alpn: [imap], backend: \"{}\" }}\ntimeouts: {{ idle: 1s }}\n",
            be.addr
        ),
    )
    .unwrap();
    let fd = Frontdoor::start(&p, 1);
    let mut h = Hand::connect(fd.addrs[0]).await;
    let started = Instant::now();
    let mut sent = 0;
    let mut chunk = vec![0u8; 4096];
    for _ in 0..30 {
        let ku = h.key_updates(1, false);
        h.tcp.write_all(&ku).await.unwrap();
        sent += 1;
        match tokio::time::timeout(Duration::from_millis(100), h.tcp.read(&mut chunk)).await {
            Err(_) => {}
            Ok(Ok(n)) => {
                h.inbuf.extend_from_slice(&chunk[..n]);
                break;
            }
            Ok(Err(e)) => panic!("{e}"),
        }
    }
    let closed_after = started.elapsed();
    assert!(
        sent < 25,
        "still open after {sent} KeyUpdates over {closed_after:?}\n{}",
        fd.logs()
    );
    match h.next().await {
        Some((21, a)) => assert_eq!(a, [1, 0], "close_notify"),
        other => panic!("expected close_notify, got {other:?}"),
    }
    assert!(h.next().await.is_none());
    assert!(
        closed_after >= Duration::from_millis(900),
        "closed after {closed_after:?}"
    );
    assert!(
        fd.wait_event(T, |e| closed_with(e, "idle_timeout"))
            .await
            .is_some(),
        "{}",
        fd.logs()
    );
}
