//! Record streams after a TLS 1.3 handshake, generated from fuzz bytes and
//! fed, in the same pieces, to `record13` and to rustls' own record layer
//! (a buffered `ServerConnection`). Each side has its own handshake, so the
//! same records (same inner plaintexts, headers, padding, mutations) are
//! sealed under each side's keys by the test's own sealer (`tls_pair::Dir`).
//! After every record both must have handed on the same plaintext, seen the
//! same close_notify, failed at the same record and sent the same alert,
//! and answered a KeyUpdate request the same way; what the server seals
//! must read back the same. Where the two are known to differ by design,
//! `known_difference` names the record class and why, and the comparison
//! ends there; any other difference is a failure.

use frontdoor::frontdoor::record13::Record13;
use rustls::server::ServerConnection;

use crate::tls_pair::{self, read_plain, read_server, write_all_tls, Dir, Event, SUITES};

/// Fuzz bytes read as a stream of small decisions (zeros once exhausted).
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.u8() as usize).min(max).min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a.to_vec()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One step of the client's side of the stream, or a send by the server.
#[derive(Debug, Clone)]
pub enum Op {
    /// A protected record: `inner` is the whole TLSInnerPlaintext.
    Rec {
        outer: u8,
        version: [u8; 2],
        inner: Vec<u8>,
        /// A length field other than the true one.
        len: Option<u16>,
        /// A ciphertext byte flipped after sealing.
        flip: Option<(u16, u8)>,
    },
    /// A well-formed KeyUpdate, after which the client's key changes.
    KeyUpdate(u8),
    /// Bytes sent as they are (no protection).
    Raw(Vec<u8>),
    /// The server seals this much application data.
    Send(usize),
}

/// Where the stream was when an op was generated (for `known_difference`).
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    /// KeyUpdates since the last application data record, this one included.
    pub key_updates: usize,
    /// Alerts of level warning so far, this one included.
    pub warnings: usize,
    /// Empty application data records in a row, this one included.
    pub empty: usize,
    /// Unprotected bytes (`Op::Raw`) were sent, this op or before: the
    /// records after them are not framed as they were sealed.
    pub raw: bool,
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Generate a stream: at most 48 ops, each delivered in 1 to 4 pieces.
/// One stream in two is tame: application data, KeyUpdates and sends
/// only, so that long well-behaved streams are compared too.
pub fn generate(inp: &mut Input<'_>) -> (usize, Vec<(Op, Ctx, Vec<usize>)>) {
    let first = inp.u8();
    let suite = first as usize % SUITES.len();
    let tame = first & 0x80 != 0;
    let mut ctx = Ctx::default();
    let mut ops = Vec::new();
    while !inp.is_empty() && ops.len() < 48 {
        let kind = match inp.u8() {
            k if tame => [0, 1, 2, 3, 4, 7, 8, 12][k as usize % 8],
            k => k,
        };
        let rec = |inner: Vec<u8>, inp: &mut Input<'_>| {
            let m = if tame { 0 } else { inp.u8() };
            let outer = if m & 0x1f == 1 { inp.u8() } else { 23 };
            let version = if m & 0xe0 == 0x20 && m & 0x1f == 0 {
                [inp.u8(), inp.u8()]
            } else {
                [3, 3]
            };
            let len = (m & 0x1f == 2).then(|| inp.u16());
            let flip = (m & 0x1f == 3).then(|| (inp.u16(), inp.u8() | 1));
            Op::Rec {
                outer,
                version,
                inner,
                len,
                flip,
            }
        };
        let op = match kind % 16 {
            // Application data, small, empty, or around the size limits.
            0..=4 => {
                let size = inp.u8();
                let mut content = match size % 8 {
                    0 => Vec::new(),
                    1 => pattern(16_384, size),
                    2 if !tame => pattern(16_385, size),
                    3 => pattern(16_383, size),
                    _ => inp.bytes(255),
                };
                if content.is_empty() {
                    ctx.empty += 1;
                } else {
                    ctx.key_updates = 0;
                    ctx.empty = 0;
                }
                content.push(23);
                let pad = match inp.u8() {
                    // Content, type and padding: at most 2^14+1 (RFC 8446 §5.4).
                    p if tame => (p as usize % 8).min(16_385 - content.len()),
                    p @ 0..=239 => (p % 8) as usize,
                    p => 16_384 - 8 + (p as usize - 240),
                };
                content.resize(content.len() + pad, 0);
                rec(content, inp)
            }
            // An alert of some level and description.
            5 | 6 => {
                let level = match inp.u8() % 4 {
                    0 | 1 => 1,
                    2 => 2,
                    _ => inp.u8(),
                };
                let desc = match inp.u8() % 4 {
                    0 | 1 => 0,
                    2 => 90,
                    _ => inp.u8(),
                };
                if level == 1 {
                    ctx.warnings += 1;
                }
                let mut body = vec![level, desc];
                if inp.u8().is_multiple_of(8) {
                    body = inp.bytes(4);
                }
                body.push(21);
                rec(body, inp)
            }
            7 | 8 => {
                ctx.key_updates += 1;
                Op::KeyUpdate(match inp.u8() % 4 {
                    0 | 1 => 0,
                    2 => 1,
                    _ if tame => 1,
                    _ => inp.u8(),
                })
            }
            // Handshake bytes other than one whole KeyUpdate.
            9 => {
                let mut body = inp.bytes(16);
                body.push(22);
                rec(body, inp)
            }
            // Inner plaintext of any bytes (no type, a strange type).
            10 => {
                let body = inp.bytes(32);
                rec(body, inp)
            }
            11 => {
                ctx.raw = true;
                Op::Raw(inp.bytes(64))
            }
            _ => {
                let n = match inp.u8() % 4 {
                    0 => 16_385,
                    _ => inp.u8() as usize,
                };
                Op::Send(n)
            }
        };
        let pieces = match inp.u8() % 4 {
            0 => vec![],
            n => (0..n).map(|_| inp.u16() as usize).collect(),
        };
        ops.push((op, ctx.clone(), pieces));
    }
    (suite, ops)
}

/// Why record13 and rustls may part ways at this op, if they may.
pub fn known_difference(op: &Op, ctx: &Ctx) -> Option<&'static str> {
    match op {
        Op::Raw(_) => Some(
            "unprotected bytes after the handshake: record13 refuses any record that is not \
             application_data at once, rustls frames and classifies them first (a \
             change_cipher_spec, an unknown type or version, an empty record)",
        ),
        // Raw bytes that leave a partial header behind shift the framing of
        // every later record, so each later header is read from the wrong
        // bytes; no later record can authenticate, and the two refuse the
        // stream by the rules above (fuzz/findings/README.md has the case).
        _ if ctx.raw => Some(
            "a record after unprotected bytes: the header is read shifted by them, so its \
             legacy_record_version is arbitrary (a lone 0x17 before `17 03 03` gives \
             0x1703): record13 ignores the version (RFC 8446 §5.1) and waits for the \
             length it read, rustls refuses versions outside 0x03XX with decode_error",
        ),
        Op::Rec { version, .. } if *version != [3, 3] => Some(
            "legacy_record_version other than 0x0303: record13 ignores it (RFC 8446 §5.1) \
             and authenticates the header as received (§5.2); rustls refuses versions \
             outside 0x03XX and authenticates 0x0303 in place of the rest, so such a \
             record fails its MAC there",
        ),
        Op::Rec { outer, .. } if *outer != 23 => Some(
            "outer content type other than application_data: record13 refuses it as \
             unexpected_message, rustls as a decode or framing error",
        ),
        Op::Rec {
            len: Some(l),
            inner,
            ..
        } if usize::from(*l) != inner.len() + 16 => Some(
            "a wrong record length: record13 checks it against TLS 1.3's limits (too short for \
             a tag: decode_error, over 2^14+256: record_overflow) before waiting for the body; \
             rustls waits for up to 2^14+2048 bytes and fails at decryption",
        ),
        Op::Rec { inner, .. } if inner.len() + 16 >= 18_432 => Some(
            "a record of 2^14+2048 bytes or more: RFC 8446 §5.2 requires record_overflow \
             (record13 sends it); rustls refuses the header with decode_error",
        ),
        Op::Rec { inner, .. } => {
            let mut body = inner.clone();
            while body.last() == Some(&0) {
                body.pop();
            }
            match (body.pop(), &body[..]) {
                (Some(23), []) if ctx.empty > 32 => Some(
                    "more than 32 empty application data records in a row: record13 refuses \
                     the 33rd with unexpected_message (BoringSSL's limit); rustls accepts them",
                ),
                (Some(21), [1, 0]) => None,
                (Some(21), [1, 90]) if ctx.warnings <= 4 => None,
                (Some(21), [2, d]) if *d != 90 => None,
                (Some(21), _) => Some(
                    "an alert of a level other than fatal (other than close_notify and \
                     user_canceled as warnings), a fatal user_canceled, more than 4 \
                     warnings, or a malformed alert: RFC 8446 §6 treats every alert but \
                     close_notify/user_canceled as an error regardless of level (record13 \
                     does, closing without an answer); rustls answers warnings with \
                     decode_error or illegal_parameter and limits them to 4",
                ),
                (Some(t), _) if !(20..=23).contains(&t) => Some(
                    "an inner content type TLS 1.3 does not define: RFC 8446 §5 requires \
                     unexpected_message (record13 sends it); rustls sends decode_error",
                ),
                (None, _) => Some(
                    "an inner plaintext with no content type: RFC 8446 §5.4 requires an \
                     unexpected_message alert (record13 sends it); rustls closes without one",
                ),
                (Some(22), _) => Some(
                    "handshake bytes other than one whole KeyUpdate alone in its record: \
                     record13 refuses them at once as unexpected_message; rustls joins \
                     fragments across records and answers a malformed message with \
                     decode_error",
                ),
                _ => None,
            }
        }
        // The count comes first in both: a 33rd KeyUpdate is refused for
        // being one too many whatever its request_update says.
        Op::KeyUpdate(_) if ctx.key_updates > 32 => Some(
            "more than 32 KeyUpdates without application data between them: both refuse \
             the 33rd, record13 with unexpected_message, rustls without an alert",
        ),
        Op::KeyUpdate(r) if *r > 1 => None,
        _ => None,
    }
}

/// What one side did with the stream so far.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub plain: Vec<u8>,
    pub closed: bool,
    pub failed: bool,
    /// What the server sent (KeyUpdates, its own data, its alert).
    pub events: Vec<Event>,
}

/// The outcome of one stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The two agreed on every op (`events`: what the server sent).
    Agreed {
        ops: usize,
        failed: bool,
        closed: bool,
        events: Vec<Event>,
    },
    /// They agreed up to op `at`, of a class where they differ by design.
    Known { at: usize, why: &'static str },
}

struct Client {
    tx: Dir,
    rx: Dir,
}

impl Client {
    fn new(suite: rustls::CipherSuite, log: &tls_pair::Secrets) -> Client {
        Client {
            tx: Dir::new(suite, log.get("CLIENT_TRAFFIC_SECRET_0")),
            rx: Dir::new(suite, log.get("SERVER_TRAFFIC_SECRET_0")),
        }
    }

    fn encode(&mut self, op: &Op) -> Vec<u8> {
        let mut out = Vec::new();
        match op {
            Op::Rec {
                outer,
                version,
                inner,
                len,
                flip,
            } => {
                let l = len.unwrap_or((inner.len() + 16).min(65_535) as u16);
                let header = [*outer, version[0], version[1], (l >> 8) as u8, l as u8];
                self.tx.seal(header, inner, &mut out);
                if let Some((at, x)) = flip {
                    let n = out.len();
                    out[5 + usize::from(*at) % (n - 5)] ^= *x;
                }
            }
            Op::KeyUpdate(r) => {
                let inner = [24, 0, 0, 1, *r, 22];
                let l = (inner.len() + 16) as u16;
                self.tx
                    .seal([23, 3, 3, (l >> 8) as u8, l as u8], &inner, &mut out);
                self.tx.update();
            }
            Op::Raw(b) => out.extend_from_slice(b),
            Op::Send(_) => {}
        }
        out
    }
}

/// Split `bytes` at the given points (taken modulo its length).
fn pieces<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

/// Run one generated stream through both record layers and compare.
pub fn differential(suite_ix: usize, ops: &[(Op, Ctx, Vec<usize>)]) -> Verdict {
    let suite = SUITES[suite_ix];
    let (_ca, log_a, sa) = tls_pair::pair_unbuffered(suite);
    let (_cb, log_b, mut sb): (_, _, ServerConnection) = tls_pair::pair_buffered(suite);
    let (secrets, kernel) = sa
        .dangerous_into_kernel_connection()
        .expect("kernel connection");
    let mut r13 = Record13::new(secrets, kernel).expect("record13");
    let (mut ka, mut kb) = (Client::new(suite, &log_a), Client::new(suite, &log_b));
    let (mut a, mut b) = (Seen::default(), Seen::default());
    let mut pending = Vec::new();

    for (i, (op, ctx, cuts)) in ops.iter().enumerate() {
        if let Op::Send(n) = op {
            let data = pattern(*n, i as u8);
            let mut out = Vec::new();
            r13.seal(&data, &mut out).expect("record13 seal");
            read_server(&mut ka.rx, &out, &mut a.events);
            std::io::Write::write_all(&mut sb.writer(), &data).expect("rustls write");
            let mut out = Vec::new();
            write_all_tls(&mut sb, &mut out);
            read_server(&mut kb.rx, &out, &mut b.events);
        } else {
            let (wa, wb) = (ka.encode(op), kb.encode(op));
            assert_eq!(wa.len(), wb.len());
            // record13, fed the way tls_stream feeds it.
            for p in pieces(&wa, cuts) {
                pending.extend_from_slice(p);
                let plain = &mut a.plain;
                let (used, r) = r13.open(&mut pending, &mut |d| plain.extend_from_slice(d));
                pending.drain(..used.min(pending.len()));
                a.closed = r13.peer_closed();
                if let Err(f) = r {
                    a.failed = true;
                    let mut out = Vec::new();
                    if let Some(alert) = f.alert {
                        r13.seal_alert(alert, &mut out).expect("alert");
                    }
                    read_server(&mut ka.rx, &out, &mut a.events);
                    break;
                }
            }
            // rustls, the same pieces.
            'pieces: for p in pieces(&wb, cuts) {
                let mut r = p;
                while !r.is_empty() {
                    if sb.read_tls(&mut r).is_err() {
                        break;
                    }
                    let res = sb.process_new_packets();
                    b.closed |= read_plain(&mut sb.reader(), &mut b.plain);
                    let mut out = Vec::new();
                    write_all_tls(&mut sb, &mut out);
                    read_server(&mut kb.rx, &out, &mut b.events);
                    if res.is_err() {
                        b.failed = true;
                        break 'pieces;
                    }
                }
            }
        }
        if !same(&a, &b) {
            if let Some(why) = known_difference(op, ctx) {
                if std::env::var_os("RECORDS_DEBUG").is_some() {
                    eprintln!(
                        "known at {i}: record13 {} / rustls {}",
                        summary(&a),
                        summary(&b)
                    );
                }
                return Verdict::Known { at: i, why };
            }
            panic!(
                "record13 and rustls differ at op {i} ({}, {ctx:?}):\n record13: {}\n rustls:   {}",
                describe(op),
                summary(&a),
                summary(&b)
            );
        }
        if a.failed || a.closed {
            return Verdict::Agreed {
                ops: i + 1,
                failed: a.failed,
                closed: a.closed,
                events: a.events,
            };
        }
    }
    Verdict::Agreed {
        ops: ops.len(),
        failed: false,
        closed: false,
        events: a.events,
    }
}

/// The server's records up to when they were sent: a KeyUpdate a client
/// asked for goes out before the next data from both (tls_stream, like
/// rustls, never sends one on its own), and several requests before that
/// data may be answered by one KeyUpdate or several (RFC 8446 §4.6.3
/// allows both). So runs of KeyUpdates count as one, and
/// those no data follows are not compared; the client following each
/// KeyUpdate still checks that the keys changed when they said so.
fn normalized(events: &[Event]) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    let mut ku = None;
    for e in events {
        match e {
            Event::KeyUpdate(r) => ku = Some(Event::KeyUpdate(*r)),
            Event::Alert(..) => {
                ku = None;
                out.push(e.clone());
            }
            e => {
                out.extend(ku.take());
                out.push(e.clone());
            }
        }
    }
    out
}

fn same(a: &Seen, b: &Seen) -> bool {
    (&a.plain, a.closed, a.failed) == (&b.plain, b.closed, b.failed)
        && normalized(&a.events) == normalized(&b.events)
}

/// An op without its bulk: the first and last bytes of a long inner.
fn describe(op: &Op) -> String {
    match op {
        Op::Rec {
            outer,
            version,
            inner,
            len,
            flip,
        } if inner.len() > 24 => format!(
            "Rec {{ outer: {outer}, version: {version:?}, inner: {} bytes {:?}..{:?}, len: {len:?}, flip: {flip:?} }}",
            inner.len(),
            &inner[..8],
            &inner[inner.len() - 8..]
        ),
        op => format!("{op:?}"),
    }
}

fn summary(s: &Seen) -> String {
    let events: Vec<String> = s
        .events
        .iter()
        .map(|e| match e {
            Event::Data(d) => format!("data({})", d.len()),
            e => format!("{e:?}"),
        })
        .collect();
    format!(
        "plain {} bytes, closed {}, failed {}, sent [{}]",
        s.plain.len(),
        s.closed,
        s.failed,
        events.join(", ")
    )
}
