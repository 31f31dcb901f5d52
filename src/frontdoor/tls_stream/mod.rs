//! The client's TLS stream: rustls' unbuffered server connection driven over
//! a tokio `TcpStream`, with no buffer that outlives the bytes it holds.
//!
//! Why not tokio-rustls: its buffered `ServerConnection` keeps a 4 KiB
//! receive buffer for the whole life of a connection (it never shrinks below
//! one 4 KiB read), so every idle IMAP IDLE session paid for it; and it reads
//! the socket a record at a time. Here ciphertext is read in 64 KiB chunks on
//! the stack and decrypted from there; the heap holds only what is still in
//! flight — a partial record (`incoming`), plaintext the reader has not taken
//! yet (`plain`), ciphertext the socket has not accepted yet (`outgoing`) —
//! and each of them is freed once it drains. An idle connection holds the
//! rustls connection state and nothing else (docs/performance.md).
//!
//! TLS 1.3, once the handshake is over: the records are handed to
//! `record13` (rustls keeps only the key schedule) at the first read or
//! write, and the relay moves bytes through `Pump` without its own buffer:
//! records opened where they were read go to the backend in one `writev`,
//! the backend's plaintext is read with one `readv` into the slots of the
//! records that carry it and sealed there. TLS 1.2 stays with rustls.
//!
//! Invariants: between calls, `incoming` never holds a complete record (every
//! record read is decrypted at once; the one exception, records that came in
//! the read that completed a TLS 1.3 handshake, is opened by `record13` at
//! the handover), so `process_tls_records` on it reaches
//! `WriteTraffic` whenever the handshake is done; bytes leave in the order
//! rustls produced them (`outgoing` is drained before anything new is
//! encrypted); a peer's close_notify is reported as EOF after every byte
//! before it, TCP EOF without close_notify as `UnexpectedEof` (as tokio-rustls
//! does). Errors carry the `rustls::Error` inside an `InvalidData` I/O error,
//! so `close::HandshakeFailure::classify` classifies them.

use std::io::{self};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, UnbufferedStatus,
};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::record13::{self, Alert, Record13};
use crate::tls::client_hello::{self, Peeked};

/// Ciphertext read per `read` call: four full records, about what the
/// relay's chunk (`relay::CHUNK`) takes as plaintext. 128 KiB here and in the
/// relay cut the relay's CPU by a further ~7% but more than doubled the
/// memory a client that stops reading costs (buffers of that size are
/// beyond the allocator's pooled sizes; tests/adversarial.rs bounds it).
const READ_CHUNK: usize = 64 * 1024;
/// Plaintext encrypted per `write` call (the caller sees a short write).
const WRITE_CHUNK: usize = super::relay::CHUNK;
thread_local! {
    /// Encryption space, one per worker thread: records are encrypted here
    /// and written to the socket from here, so a connection copies to its
    /// own `outgoing` only what the socket did not take. It only grows (to
    /// one `WRITE_CHUNK` of records), so it is zeroed once, not per write:
    /// against a per-connection buffer, zeroed and allocated again after
    /// each flush, this cut the relay's userland instructions per byte by 9%
    /// (callgrind, docs/performance.md).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Unsent ciphertext up to this size is sent together with the next write.
const COALESCE: usize = 4096;
/// A partial record plus a handshake message joined across records cannot
/// legitimately need more (rustls caps handshake messages at 64 KiB).
const MAX_INCOMING: usize = 128 * 1024;

/// What a TLS stream runs over: a TCP socket in production, an in-memory
/// pipe (`tokio::io::DuplexStream`) in the fuzz target of the state machine.
pub trait Transport: AsyncRead + AsyncWrite + Unpin {
    /// Write what can be written without waiting (a last alert on the way
    /// out); `WouldBlock` when nothing can.
    fn try_write_now(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match Pin::new(self).poll_write(&mut cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Transport for TcpStream {
    fn try_write_now(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.try_write(buf)
    }
}

impl Transport for tokio::io::DuplexStream {}

/// An outer TLS connection carrying a tunnel (`client_io`).
impl<T: Transport> Transport for TlsStream<T> {}

pub struct TlsStream<T = super::client_io::ClientIo> {
    tcp: T,
    /// rustls, for the handshake; TLS 1.2 also for the records after it.
    conn: Option<UnbufferedServerConnection>,
    /// TLS 1.3 after the handshake: records sealed and opened in place
    /// (`record13`), rustls keeping only the key schedule.
    own: Option<Box<Record13>>,
    /// Ciphertext received and not yet processed: at most a partial record.
    incoming: Vec<u8>,
    /// Plaintext decrypted and not yet read.
    plain: Vec<u8>,
    plain_off: usize,
    /// Ciphertext produced and not yet written.
    outgoing: Vec<u8>,
    out_off: usize,
    peer_closed: bool,
    close_sent: bool,
    sni: Option<String>,
}

fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn general(what: &str) -> io::Error {
    tls_err(rustls::Error::General(what.into()))
}

/// What processing stopped at.
enum Step {
    /// The handshake needs more bytes from the peer.
    NeedRead,
    /// Handshake done, no whole record left: application data may flow.
    Traffic,
}

/// Append a handshake record (or alert) rustls wants sent to `out`.
fn encode_into(
    e: &mut EncodeTlsData<'_, ServerConnectionData>,
    out: &mut Vec<u8>,
) -> Result<(), io::Error> {
    let need = match e.encode(&mut []) {
        Ok(_) => return Ok(()),
        Err(EncodeError::InsufficientSize(s)) => s.required_size,
        Err(_) => return Err(general("TLS record encoded twice")),
    };
    let start = out.len();
    out.resize(start + need, 0);
    match e.encode(&mut out[start..]) {
        Ok(n) => {
            out.truncate(start + n);
            Ok(())
        }
        Err(_) => {
            out.truncate(start);
            Err(general("TLS record does not fit its buffer"))
        }
    }
}

/// Run rustls over `buf` until it needs more bytes or application data may
/// be written; decrypted application data goes to `sink`. Returns how many
/// bytes of `buf` were consumed (also on error: the caller drops them).
fn process(
    conn: &mut UnbufferedServerConnection,
    buf: &mut [u8],
    outgoing: &mut Vec<u8>,
    peer_closed: &mut bool,
    sink: &mut dyn FnMut(&[u8]),
) -> (usize, Result<Step, io::Error>) {
    let mut off = 0;
    loop {
        if handover_ready(conn) {
            // A finished TLS 1.3 handshake with its tickets encoded: the
            // records after it are `record13`'s (a KeyUpdate rustls
            // answered here would be lost in the handover: rustls queues
            // its answer where the handover does not look).
            return (off, Ok(Step::Traffic));
        }
        let UnbufferedStatus { discard, state } = conn.process_tls_records(&mut buf[off..]);
        let step = match state {
            Err(e) => return (off + discard, Err(tls_err(e))),
            Ok(ConnectionState::ReadTraffic(mut r)) => {
                while let Some(rec) = r.next_record() {
                    match rec {
                        Ok(rec) => sink(rec.payload),
                        Err(e) => return (off + discard, Err(tls_err(e))),
                    }
                }
                None
            }
            Ok(ConnectionState::EncodeTlsData(mut e)) => {
                if let Err(e) = encode_into(&mut e, outgoing) {
                    return (off + discard, Err(e));
                }
                None
            }
            // Written in order: `outgoing` is drained before new records.
            Ok(ConnectionState::TransmitTlsData(t)) => {
                t.done();
                None
            }
            Ok(ConnectionState::PeerClosed) => {
                *peer_closed = true;
                None
            }
            Ok(ConnectionState::Closed) => {
                *peer_closed = true;
                Some(Step::Traffic)
            }
            Ok(ConnectionState::BlockedHandshake) => Some(Step::NeedRead),
            Ok(ConnectionState::WriteTraffic(_)) => Some(Step::Traffic),
            Ok(_) => return (off + discard, Err(general("unexpected TLS state"))),
        };
        off += discard;
        if let Some(s) = step {
            return (off, Ok(s));
        }
    }
}

/// A TLS 1.3 connection whose handshake is over, with nothing of rustls'
/// left to send and a suite `record13` protects: its records go there.
fn handover_ready(c: &UnbufferedServerConnection) -> bool {
    !c.is_handshaking()
        && !c.wants_write()
        && c.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
        && c.negotiated_cipher_suite().is_some_and(record13::supported)
}

/// Complete a server handshake on `tcp`. The caller bounds it in time.
pub async fn accept<T: Transport>(tcp: T, config: Arc<ServerConfig>) -> io::Result<TlsStream<T>> {
    let conn = UnbufferedServerConnection::new(config).map_err(tls_err)?;
    let mut s = TlsStream {
        tcp,
        conn: Some(conn),
        own: None,
        incoming: Vec::new(),
        plain: Vec::new(),
        plain_off: 0,
        outgoing: Vec::new(),
        out_off: 0,
        peer_closed: false,
        close_sent: false,
        sni: None,
    };
    std::future::poll_fn(|cx| s.poll_handshake(cx)).await?;
    Ok(s)
}

impl<T: Transport> TlsStream<T> {
    /// The rustls connection: ALPN, peer certificates, version, cipher.
    /// Available until application data first flows (a TLS 1.3 connection
    /// then hands its records to `record13`).
    pub fn conn(&self) -> Option<&UnbufferedServerConnection> {
        self.conn.as_ref()
    }

    /// Who carries this connection's records now: `record13` once a TLS 1.3
    /// connection was handed over, else `rustls` (the close line says which).
    pub fn record_layer(&self) -> &'static str {
        if self.own.is_some() {
            "record13"
        } else {
            "rustls"
        }
    }

    /// Once the handshake is over and nothing of rustls' is left to send,
    /// hand a TLS 1.3 connection's records over to `record13`.
    fn switch_to_own(&mut self) -> io::Result<()> {
        let eligible = match &self.conn {
            None => return Ok(()),
            Some(c) => handover_ready(c),
        };
        if !eligible {
            return Ok(());
        }
        let Some(c) = self.conn.take() else {
            return Ok(());
        };
        let (secrets, kernel) = c.dangerous_into_kernel_connection().map_err(tls_err)?;
        let mut own = Record13::new(secrets, kernel)
            .ok_or_else(|| general("TLS 1.3 keys of an unsupported kind"))?;
        // Records that followed the client's Finished in the same read were
        // left to us (see `process`): open them now.
        let mut incoming = std::mem::take(&mut self.incoming);
        let plain = &mut self.plain;
        let (used, r) = own.open(&mut incoming, &mut |p| plain.extend_from_slice(p));
        self.peer_closed |= own.peer_closed();
        incoming.drain(..used.min(incoming.len()));
        if !incoming.is_empty() {
            self.incoming = incoming;
        }
        self.own = Some(Box::new(own));
        if let Err(f) = r {
            self.send_own_alert(f.alert);
            return Err(f.into_io());
        }
        // A KeyUpdate asked for in that flight is owed: `seal` sends it
        // before our next data.
        Ok(())
    }

    /// Hand plaintext left from an earlier read to `buf`; false if none.
    fn take_plain(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.plain_off >= self.plain.len() {
            return false;
        }
        let k = buf.remaining().min(self.plain.len() - self.plain_off);
        buf.put_slice(&self.plain[self.plain_off..self.plain_off + k]);
        self.consume_plain(k);
        true
    }

    /// `k` bytes of `plain` were handed on; the buffer is freed once empty.
    fn consume_plain(&mut self, k: usize) {
        self.plain_off += k;
        if self.plain_off >= self.plain.len() {
            self.plain = Vec::new();
            self.plain_off = 0;
        }
    }

    /// The rustls connection, while it has the records.
    fn rustls(
        conn: &mut Option<UnbufferedServerConnection>,
    ) -> io::Result<&mut UnbufferedServerConnection> {
        conn.as_mut()
            .ok_or_else(|| general("TLS connection state lost"))
    }

    /// Put plaintext already read back in front of what comes next: the
    /// first bytes a connection was sniffed by (`conn`, CONNECT) are read
    /// again by whoever serves it.
    pub fn unread(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut plain = Vec::with_capacity(bytes.len() + self.plain.len() - self.plain_off);
        plain.extend_from_slice(bytes);
        plain.extend_from_slice(&self.plain[self.plain_off..]);
        self.plain = plain;
        self.plain_off = 0;
    }

    /// The server name the client asked for, as rustls saw it; handed
    /// over once, so that a long-lived connection keeps one copy.
    pub fn take_server_name(&mut self) -> Option<String> {
        self.sni.take()
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut hello_done = false;
        loop {
            ready!(self.poll_drain_out(cx))?;
            let Self {
                conn,
                incoming,
                outgoing,
                plain,
                peer_closed,
                ..
            } = self;
            let conn = Self::rustls(conn)?;
            let (used, r) = process(conn, incoming, outgoing, peer_closed, &mut |p| {
                plain.extend_from_slice(p)
            });
            let (handshaking, version) = (conn.is_handshaking(), conn.protocol_version());
            incoming.drain(..used);
            let step = match r {
                Err(e) => {
                    self.send_alert();
                    return Poll::Ready(Err(e));
                }
                Ok(step) => step,
            };
            let done = matches!(step, Step::Traffic) && !handshaking;
            // TLS 1.3: all that can be left to send are session tickets;
            // they go out with the first application data (one write less
            // per connection). TLS 1.2: the server's Finished must go first,
            // the client waits for it.
            if done
                && (self.outgoing.is_empty() || version == Some(rustls::ProtocolVersion::TLSv1_3))
            {
                self.incoming.shrink_to_fit();
                return Poll::Ready(Ok(()));
            }
            if !self.outgoing.is_empty() {
                continue;
            }
            // rustls has not decided a version until it has the whole
            // ClientHello: until then, a much smaller bound.
            let limit = match version {
                None => client_hello::MAX_HELLO_BYTES,
                Some(_) => MAX_INCOMING,
            };
            if self.incoming.len() >= limit {
                return Poll::Ready(Err(general(match version {
                    None => "ClientHello too large or never completed",
                    Some(_) => "handshake message too large",
                })));
            }
            let mut stack = [MaybeUninit::<u8>::uninit(); 16 * 1024];
            let room = (limit - self.incoming.len()).min(stack.len());
            let mut rb = ReadBuf::uninit(&mut stack[..room]);
            ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "tls handshake eof",
                )));
            }
            // Exact: what a stalled client holds is what it sent.
            self.incoming.reserve_exact(rb.filled().len());
            self.incoming.extend_from_slice(rb.filled());
            if !hello_done && self.sni.is_none() {
                // The SNI as rustls will see it (its unbuffered connection
                // does not hand it back), checked as rustls checks it
                // (`client_hello::server_name`); rustls validates the rest.
                match client_hello::peek(&self.incoming) {
                    Ok(Peeked::Hello(h)) => {
                        self.sni = h.sni;
                        hello_done = true;
                    }
                    Ok(Peeked::NeedMore) => {}
                    Err(_) => hello_done = true,
                }
            }
        }
    }

    /// After a fatal error: collect the alert rustls queued and try once,
    /// without waiting, to send it (the peer learns why). rustls is handed
    /// the same unprocessed bytes as before (its contract: discard, then
    /// pass the rest), never an arbitrary slice, and only while something is
    /// queued, so that those bytes are not processed a second time.
    fn send_alert(&mut self) {
        let Self {
            conn,
            incoming,
            outgoing,
            ..
        } = self;
        // Only while an alert is queued: a call with nothing queued would
        // run the deframer over the offending bytes again.
        let Some(conn) = conn.as_mut() else {
            return;
        };
        for _ in 0..4 {
            if !conn.wants_write() {
                break;
            }
            let UnbufferedStatus { discard, state } = conn.process_tls_records(incoming);
            let ok = match state {
                Ok(ConnectionState::EncodeTlsData(mut e)) => encode_into(&mut e, outgoing).is_ok(),
                _ => false,
            };
            incoming.drain(..discard.min(incoming.len()));
            if !ok {
                break;
            }
        }
        self.try_send_out();
    }

    /// `record13`'s fatal alert, sent once without waiting.
    fn send_own_alert(&mut self, alert: Option<Alert>) {
        // After our close_notify nothing more is sent, not even a fatal
        // alert: the client stops reading at the close_notify.
        if let (Some(own), Some(a), false) = (self.own.as_mut(), alert, self.close_sent) {
            let _ = own.seal_alert(a, &mut self.outgoing);
        }
        self.try_send_out();
        self.close_sent = true;
    }

    fn try_send_out(&mut self) {
        while self.out_off < self.outgoing.len() {
            match self.tcp.try_write_now(&self.outgoing[self.out_off..]) {
                Ok(n) if n > 0 => self.out_off += n,
                _ => break,
            }
        }
    }

    /// Write out `outgoing`; keeps its capacity for the next write.
    fn poll_drain_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_off < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.outgoing[self.out_off..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_off += n;
        }
        self.outgoing.clear();
        self.out_off = 0;
        Poll::Ready(Ok(()))
    }

    /// Reach the `WriteTraffic` state and let `f` encrypt: appended to
    /// `outgoing`, or with `scratch`, at its start (it only ever grows, so
    /// it is zeroed once). Returns the bytes encrypted.
    fn encrypt_with(
        &mut self,
        f: impl Fn(
            &mut rustls::unbuffered::WriteTraffic<'_, ServerConnectionData>,
            &mut [u8],
        ) -> Result<usize, EncryptError>,
        mut scratch: Option<&mut Vec<u8>>,
    ) -> io::Result<usize> {
        for _ in 0..16 {
            let Self {
                conn,
                incoming,
                outgoing,
                plain,
                peer_closed,
                ..
            } = self;
            let conn = Self::rustls(conn)?;
            let UnbufferedStatus { discard, state } = conn.process_tls_records(incoming);
            let mut done = None;
            match state {
                Ok(ConnectionState::WriteTraffic(mut w)) => {
                    let need = match f(&mut w, &mut []) {
                        Ok(_) => 0,
                        Err(EncryptError::InsufficientSize(s)) => s.required_size,
                        Err(e) => return Err(io::Error::other(e)),
                    };
                    let n = if let Some(buf) = scratch.as_deref_mut() {
                        if buf.len() < need {
                            buf.resize(need, 0);
                        }
                        f(&mut w, &mut buf[..]).map_err(io::Error::other)?
                    } else {
                        let start = outgoing.len();
                        outgoing.resize(start + need, 0);
                        match f(&mut w, &mut outgoing[start..]) {
                            Ok(n) => {
                                outgoing.truncate(start + n);
                                n
                            }
                            Err(e) => {
                                outgoing.truncate(start);
                                return Err(io::Error::other(e));
                            }
                        }
                    };
                    done = Some(n);
                }
                Ok(ConnectionState::EncodeTlsData(mut e)) => encode_into(&mut e, outgoing)?,
                Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
                Ok(ConnectionState::PeerClosed) => *peer_closed = true,
                Ok(ConnectionState::ReadTraffic(mut r)) => {
                    while let Some(rec) = r.next_record() {
                        plain.extend_from_slice(rec.map_err(tls_err)?.payload);
                    }
                }
                Ok(ConnectionState::Closed) => return Err(io::ErrorKind::BrokenPipe.into()),
                Ok(_) => return Err(general("TLS connection cannot send yet")),
                Err(e) => return Err(tls_err(e)),
            }
            incoming.drain(..discard);
            if let Some(n) = done {
                return Ok(n);
            }
        }
        Err(general("TLS connection did not reach the traffic state"))
    }
}

impl<T: Transport> TlsStream<T> {
    /// `poll_read` for a TLS 1.3 connection after the handshake: ciphertext
    /// is read into the stack behind the partial record left from the last
    /// read, records are opened there and their plaintext goes straight to
    /// the caller; only a partial record (at most one) and plaintext the
    /// caller had no room for are kept on the heap.
    fn poll_read_own(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let start = buf.filled().len();
        loop {
            if self.take_plain(buf) {
                return Poll::Ready(Ok(()));
            }
            if self.peer_closed || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            // Room for a whole `READ_CHUNK` behind the partial record, so
            // that a partial record never shortens a read (fewer reads).
            let mut stack = [MaybeUninit::<u8>::uninit(); READ_CHUNK + record13::MAX_RECORD];
            let kept = self.incoming.len().min(record13::MAX_RECORD);
            let mut rb = ReadBuf::uninit(&mut stack[..kept + READ_CHUNK]);
            rb.put_slice(&self.incoming[..kept]);
            ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut rb))?;
            if rb.filled().len() == kept {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed connection without sending TLS close_notify",
                )));
            }
            let TlsStream {
                own,
                incoming,
                plain,
                ..
            } = self;
            let Some(own) = own.as_mut() else {
                return Poll::Ready(Err(general("TLS connection state lost")));
            };
            let mut sink = |p: &[u8]| {
                let k = p.len().min(buf.remaining());
                buf.put_slice(&p[..k]);
                plain.extend_from_slice(&p[k..]);
            };
            let data = rb.filled_mut();
            let (used, r) = own.open(data, &mut sink);
            let left = &data[used.min(data.len())..];
            if left.is_empty() {
                *incoming = Vec::new();
            } else {
                incoming.clear();
                incoming.extend_from_slice(left);
            }
            self.peer_closed = own.peer_closed();
            if let Err(f) = r {
                self.incoming = Vec::new();
                self.send_own_alert(f.alert);
                return Poll::Ready(Err(f.into_io()));
            }
            // A KeyUpdate the client asked for goes out before our next
            // data (RFC 8446 §4.6.3), as rustls sends it, never on its own:
            // a client counts the KeyUpdates that come without data (rustls
            // allows 32), so answering each request at once would fail a
            // client that updates its keys while we are silent.
            if !self.outgoing.is_empty() {
                if let Poll::Ready(Err(e)) = self.poll_drain_out(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            if buf.filled().len() > start || !self.plain.is_empty() || self.peer_closed {
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// `poll_write`'s sealing for a TLS 1.3 connection after the handshake.
    fn write_own(&mut self, cx: &mut Context<'_>, data: &[u8]) -> io::Result<()> {
        let Some(own) = self.own.as_mut() else {
            return Err(general("TLS connection state lost"));
        };
        if !self.outgoing.is_empty() {
            // Bytes are waiting (session tickets, a KeyUpdate): keep the order.
            return own.seal(data, &mut self.outgoing);
        }
        SCRATCH.with(|cell| -> io::Result<()> {
            let Ok(mut scratch) = cell.try_borrow_mut() else {
                return own.seal(data, &mut self.outgoing);
            };
            scratch.clear();
            own.seal(data, &mut scratch)?;
            let n = scratch.len();
            let mut off = 0;
            while off < n {
                match Pin::new(&mut self.tcp).poll_write(cx, &scratch[off..n]) {
                    Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                    Poll::Ready(Ok(k)) => off += k,
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => break,
                }
            }
            self.outgoing.extend_from_slice(&scratch[off..n]);
            if scratch.capacity() > 2 * WRITE_CHUNK {
                *scratch = Vec::new();
            }
            Ok(())
        })
    }
}

impl<T: Transport> AsyncRead for TlsStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let start = buf.filled().len();
        this.switch_to_own()?;
        if this.own.is_some() {
            return this.poll_read_own(cx, buf);
        }
        loop {
            if this.take_plain(buf) {
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            // Left uninitialised: `ReadBuf` tracks what the socket filled.
            let mut stack = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut rb = ReadBuf::uninit(&mut stack);
            ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed connection without sending TLS close_notify",
                )));
            }
            let TlsStream {
                conn,
                incoming,
                outgoing,
                plain,
                peer_closed,
                ..
            } = this;
            let mut sink = |p: &[u8]| {
                let k = p.len().min(buf.remaining());
                buf.put_slice(&p[..k]);
                plain.extend_from_slice(&p[k..]);
            };
            let conn = Self::rustls(conn)?;
            let r = if incoming.is_empty() {
                // The common case: decrypt straight from the stack.
                let data = rb.filled_mut();
                let (used, r) = process(conn, data, outgoing, peer_closed, &mut sink);
                incoming.extend_from_slice(&data[used.min(n)..]);
                r
            } else {
                incoming.extend_from_slice(rb.filled());
                let (used, r) = process(conn, incoming, outgoing, peer_closed, &mut sink);
                incoming.drain(..used.min(incoming.len()));
                if incoming.is_empty() {
                    *incoming = Vec::new();
                }
                r
            };
            if !this.outgoing.is_empty() {
                // A key update answer or an alert: send what the socket takes.
                if let Poll::Ready(Err(e)) = this.poll_drain_out(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            if let Err(e) = r {
                this.send_alert();
                return Poll::Ready(Err(e));
            }
            if this.incoming.len() > MAX_INCOMING {
                return Poll::Ready(Err(general("TLS record buffer overflow")));
            }
            if buf.filled().len() > start || !this.plain.is_empty() || this.peer_closed {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<T: Transport> AsyncWrite for TlsStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // A little left over (session tickets) goes out in the same write;
        // more is back-pressure: wait until the socket takes it.
        if this.outgoing.len() - this.out_off > COALESCE {
            ready!(this.poll_drain_out(cx))?;
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.close_sent {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let data = &data[..data.len().min(WRITE_CHUNK)];
        this.switch_to_own()?;
        if this.own.is_some() {
            this.write_own(cx, data)?;
            if !this.outgoing.is_empty() {
                if let Poll::Ready(Err(e)) = this.poll_drain_out(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            return Poll::Ready(Ok(data.len()));
        }
        let encrypt = |w: &mut rustls::unbuffered::WriteTraffic<'_, ServerConnectionData>,
                       out: &mut [u8]| w.encrypt(data, out);
        if !this.outgoing.is_empty() {
            // Bytes are waiting (session tickets): append, keep the order.
            this.encrypt_with(encrypt, None)?;
        } else {
            SCRATCH.with(|cell| -> io::Result<()> {
                let Ok(mut scratch) = cell.try_borrow_mut() else {
                    this.encrypt_with(encrypt, None)?;
                    return Ok(());
                };
                let n = this.encrypt_with(encrypt, Some(&mut scratch))?;
                let mut off = 0;
                // rustls may have queued a record of its own (a key
                // update) in `outgoing`: then ours goes after it.
                while off < n && this.outgoing.is_empty() {
                    match Pin::new(&mut this.tcp).poll_write(cx, &scratch[off..n]) {
                        Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                        Poll::Ready(Ok(k)) => off += k,
                        Poll::Ready(Err(e)) => return Err(e),
                        Poll::Pending => break,
                    }
                }
                this.outgoing.extend_from_slice(&scratch[off..n]);
                Ok(())
            })?;
        }
        // Accepted once encrypted; what the socket does not take now is
        // written before anything else (back-pressure at the next call).
        if !this.outgoing.is_empty() {
            if let Poll::Ready(Err(e)) = this.poll_drain_out(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain_out(cx))?;
        // Nothing in flight: give the buffer back.
        this.outgoing = Vec::new();
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            ready!(this.poll_drain_out(cx))?;
            this.close_sent = true;
            if let Some(own) = this.own.as_mut() {
                own.seal_alert(Alert::CloseNotify, &mut this.outgoing)?;
            } else {
                this.encrypt_with(|w, out| w.queue_close_notify(out), None)?;
            }
        }
        ready!(this.poll_drain_out(cx))?;
        this.outgoing = Vec::new();
        match ready!(Pin::new(&mut this.tcp).poll_shutdown(cx)) {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
            r => Poll::Ready(r),
        }
    }
}

mod pump;
