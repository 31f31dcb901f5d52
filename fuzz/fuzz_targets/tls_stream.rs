//! The client's TLS stream (`frontdoor::tls_stream`) as a state machine,
//! over an in-memory pipe of fuzzed capacity against a real rustls client
//! (TLS 1.3 with each suite `record13` protects, or TLS 1.2): fuzzed
//! interleavings of client data, client KeyUpdates, close_notify and junk,
//! bytes delivered in arbitrary pieces, server reads into buffers of any
//! size (partial reads), server writes under back-pressure, flushes and
//! shutdown. Checked at every step: what the server reads is a prefix of
//! what the client sent and what the client reads a prefix of what the
//! server wrote (nothing lost, duplicated or reordered); EOF only after the
//! client's close_notify and all data before it; a client that sends no
//! junk never sees an error; and at the end, with everything delivered,
//! both sides have all the other sent.
#![no_main]

#[path = "../common/tls_pair.rs"]
#[allow(dead_code)]
mod tls_pair;

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use frontdoor::frontdoor::tls_stream::{self, TlsStream};
use libfuzzer_sys::fuzz_target;
use rustls::ClientConnection;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

struct In<'a>(&'a [u8]);

impl In<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, r)) => {
                self.0 = r;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
}

fn pattern(n: usize, seed: usize) -> Vec<u8> {
    (0..n)
        .map(|i| ((i + seed) as u8).wrapping_mul(167).wrapping_add(13))
        .collect()
}

struct Client {
    tls: ClientConnection,
    io: DuplexStream,
    /// Ciphertext the client produced and the pipe has not taken yet.
    wire: Vec<u8>,
    sent: Vec<u8>,
    got: Vec<u8>,
    closed: bool,
    failed: bool,
    /// Ciphertext bytes read from the pipe (progress, for the stall check).
    raw_in: usize,
}

impl Client {
    fn produce(&mut self) {
        while self.tls.wants_write() {
            if self.tls.write_tls(&mut self.wire).is_err() {
                break;
            }
        }
    }

    /// Move up to `n` bytes of `wire` into the pipe.
    fn deliver(&mut self, cx: &mut Context<'_>, n: usize) {
        let n = n.min(self.wire.len());
        if n == 0 {
            return;
        }
        if let Poll::Ready(Ok(k)) = Pin::new(&mut self.io).poll_write(cx, &self.wire[..n]) {
            self.wire.drain(..k);
        }
    }

    /// Read what the server sent and decrypt it.
    fn read(&mut self, cx: &mut Context<'_>) {
        for _ in 0..64 {
            let mut buf = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut buf);
            match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => self.raw_in += rb.filled().len(),
                _ => return,
            }
            if self.failed {
                continue;
            }
            let mut r = rb.filled();
            while !r.is_empty() && !self.failed {
                match self.tls.read_tls(&mut r) {
                    // rustls takes nothing after the server's close_notify.
                    Ok(0) => panic!("{} bytes after the server's close_notify", r.len()),
                    Ok(_) if self.tls.process_new_packets().is_ok() => {}
                    _ => self.failed = true,
                }
                tls_pair::read_plain(&mut self.tls.reader(), &mut self.got);
            }
        }
    }
}

fn poll_read(
    s: &mut TlsStream<DuplexStream>,
    cx: &mut Context<'_>,
    cap: usize,
) -> Poll<std::io::Result<Vec<u8>>> {
    let mut buf = vec![0u8; cap];
    let mut rb = ReadBuf::new(&mut buf);
    match Pin::new(s).poll_read(cx, &mut rb) {
        Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().to_vec())),
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

fn run(inp: &mut In<'_>) {
    let mode = inp.u8();
    let suites = [
        tls_pair::SUITES[0],
        tls_pair::SUITES[1],
        tls_pair::SUITES[2],
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ];
    let suite = suites[mode as usize % 4];
    let tls12 = mode % 4 == 3;
    let capacity = 64 + (inp.u16() as usize % 32_768);
    let (c_io, s_io) = tokio::io::duplex(capacity);
    let mut cfg = (*tls_pair::server_config(true)).clone();
    cfg.send_tls13_tickets = usize::from(mode >> 4 & 3);
    let (tls, _log) = tls_pair::new_client(suite);
    let mut c = Client {
        tls,
        io: c_io,
        wire: Vec::new(),
        sent: Vec::new(),
        got: Vec::new(),
        closed: false,
        failed: false,
        raw_in: 0,
    };
    let mut cx = Context::from_waker(Waker::noop());

    // The handshake: rustls' client against `tls_stream::accept`.
    let mut accept = Box::pin(tls_stream::accept(s_io, std::sync::Arc::new(cfg)));
    let mut server = None;
    for _ in 0..64 {
        c.produce();
        c.deliver(&mut cx, usize::MAX);
        if let Poll::Ready(r) = accept.as_mut().poll(&mut cx) {
            server = Some(r.expect("handshake with a well-behaved client failed"));
            break;
        }
        c.read(&mut cx);
    }
    let mut s = server.expect("handshake did not finish");
    // The client takes the server's last flight (TLS 1.2: its Finished);
    // before that, rustls would send a close_notify ahead of data it holds.
    for _ in 0..64 {
        if !c.tls.is_handshaking() {
            break;
        }
        c.read(&mut cx);
    }
    assert!(!c.tls.is_handshaking(), "client handshake did not finish");
    assert_eq!(
        s.conn().and_then(|k| k.protocol_version()),
        Some(if tls12 {
            rustls::ProtocolVersion::TLSv1_2
        } else {
            rustls::ProtocolVersion::TLSv1_3
        })
    );

    let mut server_got = Vec::new();
    let mut server_sent: Vec<u8> = Vec::new();
    let mut junk = false;
    let mut key_updates = 0;
    let mut server_eof = false;
    let mut server_failed = false;
    let mut shut = false;

    let check = |c: &Client, server_got: &[u8], server_sent: &[u8]| {
        assert!(
            c.sent.starts_with(server_got),
            "server read bytes the client did not send"
        );
        assert!(
            server_sent.starts_with(&c.got),
            "client read bytes the server did not write"
        );
    };

    for step in 0..96 {
        if inp.0.is_empty() {
            break;
        }
        let op = inp.u8() % 12;
        match op {
            0 | 1 if !c.closed => {
                let d = pattern(inp.u16() as usize % 40_000, step);
                if c.tls.writer().write_all(&d).is_ok() {
                    c.sent.extend_from_slice(&d);
                    if !d.is_empty() {
                        key_updates = 0;
                    }
                }
                c.produce();
            }
            2 if !c.closed && !tls12 => {
                let _ = c.tls.refresh_traffic_keys();
                c.produce();
                // More than 32 in a row without data are refused, as rustls
                // and BoringSSL refuse them (record13::MAX_KEY_UPDATES).
                key_updates += 1;
                junk |= key_updates > 32;
            }
            3 if inp.u8() % 4 == 0 => {
                c.tls.send_close_notify();
                c.closed = true;
                c.produce();
            }
            4 if inp.u8() % 8 == 0 => {
                // Junk in the stream: the server must fail cleanly.
                let n = inp.u8() as usize % 32;
                let at = inp.u16() as usize % (c.wire.len() + 1);
                let bytes: Vec<u8> = (0..n).map(|_| inp.u8()).collect();
                let tail = c.wire.split_off(at);
                c.wire.extend(bytes);
                c.wire.extend(tail);
                junk = true;
            }
            5 | 6 => {
                let n = inp.u16() as usize;
                c.deliver(&mut cx, n);
            }
            7 | 8 if !server_failed => {
                let cap = 1 + inp.u16() as usize % 20_000;
                match poll_read(&mut s, &mut cx, cap) {
                    Poll::Ready(Ok(d)) if d.is_empty() => {
                        assert!(junk || c.closed, "EOF without close_notify");
                        if !junk {
                            assert_eq!(server_got, c.sent, "EOF before all the data");
                        }
                        server_eof = true;
                    }
                    Poll::Ready(Ok(d)) => {
                        assert!(!server_eof, "data after EOF");
                        server_got.extend_from_slice(&d);
                    }
                    Poll::Ready(Err(e)) => {
                        assert!(junk, "server read failed on a well-behaved client: {e}");
                        server_failed = true;
                    }
                    Poll::Pending => {}
                }
            }
            9 if !shut && !server_failed => {
                let d = pattern(inp.u16() as usize % 40_000, step + 7);
                match Pin::new(&mut s).poll_write(&mut cx, &d) {
                    Poll::Ready(Ok(k)) => {
                        assert!(k <= d.len());
                        server_sent.extend_from_slice(&d[..k]);
                    }
                    Poll::Ready(Err(e)) => assert!(junk, "server write failed: {e}"),
                    Poll::Pending => {}
                }
            }
            10 if !server_failed => {
                if inp.u8() % 4 == 0 {
                    // Once begun (even if still Pending), writes are refused.
                    shut = true;
                    if let Poll::Ready(r) = Pin::new(&mut s).poll_shutdown(&mut cx) {
                        assert!(junk || r.is_ok(), "shutdown failed: {r:?}");
                    }
                } else if let Poll::Ready(Err(e)) = Pin::new(&mut s).poll_flush(&mut cx) {
                    assert!(junk, "flush failed: {e}");
                }
            }
            _ => c.read(&mut cx),
        }
        assert!(junk || !c.failed, "the client failed without junk");
        check(&c, &server_got, &server_sent);
    }

    if junk {
        return;
    }
    // Settle: deliver everything both ways; all data must arrive. Bounded
    // by progress: 16 rounds in a row that move no byte mean a stall.
    let mut idle = 0;
    for _ in 0..1_000_000 {
        let before = (c.wire.len(), server_got.len(), c.raw_in, server_eof);
        c.produce();
        c.deliver(&mut cx, usize::MAX);
        if !server_failed && !server_eof {
            let r = poll_read(&mut s, &mut cx, 65_536);
            match r {
                Poll::Ready(Ok(d)) if d.is_empty() => {
                    assert!(c.closed, "EOF without close_notify");
                    server_eof = true;
                }
                Poll::Ready(Ok(d)) => server_got.extend_from_slice(&d),
                Poll::Ready(Err(e)) => panic!("server read failed on a well-behaved client: {e}"),
                Poll::Pending => {}
            }
        }
        let flushed = matches!(Pin::new(&mut s).poll_flush(&mut cx), Poll::Ready(Ok(())));
        c.read(&mut cx);
        check(&c, &server_got, &server_sent);
        if flushed && c.wire.is_empty() && server_got == c.sent && c.got == server_sent {
            break;
        }
        if before == (c.wire.len(), server_got.len(), c.raw_in, server_eof) {
            idle += 1;
            if idle == 16 {
                break;
            }
        } else {
            idle = 0;
        }
    }
    assert!(!c.failed, "the client failed");
    assert_eq!(
        server_got.len(),
        c.sent.len(),
        "the server did not get all the data"
    );
    assert_eq!(
        c.got.len(),
        server_sent.len(),
        "the client did not get all the data"
    );
}

fuzz_target!(|data: &[u8]| {
    run(&mut In(data));
});
