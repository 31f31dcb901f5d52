//! TLS 1.3 record protection after the handshake (RFC 8446 §5), in place.
//!
//! rustls runs the handshake; once it is over, a TLS 1.3 connection is handed
//! to this module through rustls' kernel-connection API (the one meant for
//! kernel TLS): rustls keeps the key schedule and derives the next traffic
//! secret on a KeyUpdate, and records are sealed and opened here. Why: rustls'
//! record layer copies every record twice on the way out (into a fresh
//! allocation, then into the caller's buffer); here plaintext is copied once
//! into the encryption buffer and sealed where it lies, and records are
//! opened where they were read. The same split is what kernel TLS needs.
//!
//! What a client may send after the handshake, and what happens:
//! application data (handed on, empty records too); `close_notify` (end of
//! stream; anything after it is ignored); `user_canceled` (ignored); any other
//! alert (the connection fails with it); KeyUpdate (the receive key is
//! replaced, and when the client asks, a KeyUpdate of ours goes out before
//! our next data, never alone); any other handshake message, a change_cipher_spec or
//! plaintext record, an oversized or undecryptable record, inner plaintext
//! without a content type (fatal alert, then the connection ends). Our own
//! keys are updated before the cipher's confidentiality limit.
//!
//! Each of those is cheap to send and not free to receive (a KeyUpdate is a
//! key derivation, and none of them moves a byte, so none resets the idle
//! timer), so, as BoringSSL does (and rustls for KeyUpdates), only a few may come in a row
//! without application data between them: `MAX_KEY_UPDATES` KeyUpdates,
//! `MAX_EMPTY` empty records, `MAX_WARNINGS` user_canceled alerts. One more
//! is the fatal `unexpected_message` alert, then the connection ends.

use std::io;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::{ConnectionTrafficSecrets, SupportedCipherSuite};

const HEADER: usize = 5;
const TAG: usize = 16;
/// Largest plaintext in a record.
pub const MAX_PLAIN: usize = 1 << 14;
/// Largest ciphertext in a TLS 1.3 record (RFC 8446 §5.2).
const MAX_CIPHER: usize = MAX_PLAIN + 256;
/// Largest record, header included: all a partial record can hold.
pub const MAX_RECORD: usize = HEADER + MAX_CIPHER;
/// Where a record's content starts.
pub const CONTENT_AT: usize = HEADER;
/// What a record adds around its content: header, content type, tag.
pub const OVERHEAD: usize = HEADER + 1 + TAG;
/// Room for one full record sealed in place.
pub const SLOT: usize = MAX_PLAIN + OVERHEAD;

const APPLICATION_DATA: u8 = 23;
const HANDSHAKE: u8 = 22;
const ALERT: u8 = 21;
const KEY_UPDATE: u8 = 24;

/// KeyUpdates in a row without application data between them (rustls' and
/// BoringSSL's `kMaxKeyUpdates`).
pub const MAX_KEY_UPDATES: u8 = 32;
/// Empty application-data records in a row (BoringSSL's `kMaxEmptyRecords`;
/// rustls has no such limit on application data, as
/// `tests/record13_differential.rs` shows).
pub const MAX_EMPTY: u8 = 32;
/// Warning alerts (user_canceled, the only one TLS 1.3 keeps) in a row
/// (BoringSSL's `kMaxWarningAlerts`; rustls allows as many per connection).
pub const MAX_WARNINGS: u8 = 4;

/// Alert descriptions we send.
#[derive(Debug, Clone, Copy)]
pub enum Alert {
    CloseNotify = 0,
    UnexpectedMessage = 10,
    BadRecordMac = 20,
    RecordOverflow = 22,
    IllegalParameter = 47,
    DecodeError = 50,
}

/// A record-layer failure: the alert owed to the peer, and why.
#[derive(Debug)]
pub struct Fatal {
    pub alert: Option<Alert>,
    pub why: String,
}

impl Fatal {
    fn new(alert: Alert, why: impl Into<String>) -> Self {
        Fatal {
            alert: Some(alert),
            why: why.into(),
        }
    }

    pub fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self.why)
    }
}

/// One direction's key and sequence number.
struct Keys {
    key: LessSafeKey,
    iv: [u8; 12],
    seq: u64,
}

impl Keys {
    fn new(seq: u64, secrets: ConnectionTrafficSecrets) -> Option<Keys> {
        let (alg, key, iv) = match &secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv)
            }
            #[allow(unreachable_patterns)]
            _ => return None,
        };
        let key = LessSafeKey::new(UnboundKey::new(alg, key.as_ref()).ok()?);
        let iv: [u8; 12] = iv.as_ref().try_into().ok()?;
        Some(Keys { key, iv, seq })
    }

    /// RFC 8446 §5.3: the IV XORed with the sequence number; then the next.
    fn next_nonce(&mut self) -> Nonce {
        let mut n = self.iv;
        for (d, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *d ^= s;
        }
        self.seq += 1;
        Nonce::assume_unique_for_key(n)
    }
}

/// The record layer of one TLS 1.3 connection after its handshake.
pub struct Record13 {
    kernel: KernelConnection<ServerConnectionData>,
    rx: Keys,
    tx: Keys,
    /// Records sealed under one key before ours is updated.
    tx_limit: u64,
    /// The client asked for a KeyUpdate of ours.
    owe_key_update: bool,
    /// The client's close_notify arrived: nothing after it counts.
    peer_closed: bool,
    /// Records since the last one carrying application data.
    idle: IdleRecords,
}

/// What came in since the client last sent a byte of application data.
#[derive(Default)]
struct IdleRecords {
    key_updates: u8,
    empty: u8,
    warnings: u8,
}

impl IdleRecords {
    /// Count one more of `what` against `max`; past it, the fatal alert.
    fn count(n: &mut u8, max: u8, what: &str) -> Result<(), Fatal> {
        if *n >= max {
            let why = format!("more than {max} {what} without application data between them");
            return Err(Fatal::new(Alert::UnexpectedMessage, why));
        }
        *n += 1;
        Ok(())
    }
}

/// The suites this module protects records for (the rest stay with rustls).
pub fn supported(suite: SupportedCipherSuite) -> bool {
    use rustls::CipherSuite as C;
    suite.tls13().is_some()
        && matches!(
            suite.suite(),
            C::TLS13_AES_128_GCM_SHA256
                | C::TLS13_AES_256_GCM_SHA384
                | C::TLS13_CHACHA20_POLY1305_SHA256
        )
}

impl Record13 {
    pub fn new(
        secrets: rustls::ExtractedSecrets,
        kernel: KernelConnection<ServerConnectionData>,
    ) -> Option<Record13> {
        let (tx_seq, tx) = secrets.tx;
        let (rx_seq, rx) = secrets.rx;
        let limit = match kernel.negotiated_cipher_suite() {
            SupportedCipherSuite::Tls13(s) => s.common.confidentiality_limit,
            _ => return None,
        };
        Some(Record13 {
            rx: Keys::new(rx_seq, rx)?,
            tx: Keys::new(tx_seq, tx)?,
            // Leave room for the KeyUpdate itself.
            tx_limit: limit.saturating_sub(16).max(1),
            kernel,
            owe_key_update: false,
            peer_closed: false,
            idle: IdleRecords::default(),
        })
    }

    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Whether `seal` will first send a KeyUpdate of ours.
    pub fn key_update_due(&self) -> bool {
        self.owe_key_update || self.tx.seq >= self.tx_limit
    }

    /// Open the whole records at the start of `buf` in place, handing each
    /// application-data payload to `sink`. Returns the bytes consumed (whole
    /// records; a partial one is left for more bytes).
    pub fn open(
        &mut self,
        buf: &mut [u8],
        sink: &mut dyn FnMut(&[u8]),
    ) -> (usize, Result<(), Fatal>) {
        let mut off = 0;
        while !self.peer_closed && buf.len() - off >= HEADER {
            let h = &buf[off..off + HEADER];
            let (typ, len) = (h[0], u16::from_be_bytes([h[3], h[4]]) as usize);
            if typ != APPLICATION_DATA {
                let why = format!("unprotected TLS record of type {typ} after the handshake");
                return (off, Err(Fatal::new(Alert::UnexpectedMessage, why)));
            }
            if len > MAX_CIPHER {
                return (
                    off,
                    Err(Fatal::new(Alert::RecordOverflow, "TLS record too long")),
                );
            }
            if len < TAG + 1 {
                return (
                    off,
                    Err(Fatal::new(Alert::DecodeError, "TLS record too short")),
                );
            }
            if buf.len() - off < HEADER + len {
                break;
            }
            let (head, body) = buf[off..off + HEADER + len].split_at_mut(HEADER);
            let aad = Aad::from(<[u8; HEADER]>::try_from(&*head).unwrap_or_default());
            let nonce = self.rx.next_nonce();
            let Ok(inner) = self.rx.key.open_in_place(nonce, aad, body) else {
                return (
                    off,
                    Err(Fatal::new(
                        Alert::BadRecordMac,
                        "TLS record failed to decrypt",
                    )),
                );
            };
            off += HEADER + len;
            // TLSInnerPlaintext: content, then the type, then zero padding.
            let Some(t) = inner.iter().rposition(|&b| b != 0) else {
                let why = "TLS record without a content type";
                return (off, Err(Fatal::new(Alert::UnexpectedMessage, why)));
            };
            let (content, typ) = (&inner[..t], inner[t]);
            // RFC 8446 §5.4: content, type and padding together.
            if inner.len() > MAX_PLAIN + 1 {
                return (
                    off,
                    Err(Fatal::new(Alert::RecordOverflow, "TLS plaintext too long")),
                );
            }
            let idle = &mut self.idle;
            let counted = match (typ, content) {
                (APPLICATION_DATA, []) => {
                    IdleRecords::count(&mut idle.empty, MAX_EMPTY, "empty TLS records")
                }
                (APPLICATION_DATA, _) => {
                    *idle = IdleRecords::default();
                    Ok(())
                }
                (ALERT, [_, 90]) => {
                    IdleRecords::count(&mut idle.warnings, MAX_WARNINGS, "TLS user_canceled alerts")
                }
                (HANDSHAKE, [KEY_UPDATE, ..]) => {
                    IdleRecords::count(&mut idle.key_updates, MAX_KEY_UPDATES, "TLS KeyUpdates")
                }
                _ => Ok(()),
            };
            if let Err(f) = counted {
                return (off, Err(f));
            }
            match typ {
                APPLICATION_DATA => sink(content),
                ALERT => match content {
                    [_, 0] => self.peer_closed = true,
                    [_, 90] => {} // user_canceled: close_notify follows
                    [_, d] => {
                        return (
                            off,
                            Err(Fatal {
                                alert: None,
                                why: format!("peer sent TLS alert {d}"),
                            }),
                        )
                    }
                    _ => {
                        return (
                            off,
                            Err(Fatal::new(Alert::DecodeError, "malformed TLS alert")),
                        )
                    }
                },
                HANDSHAKE => {
                    // The only handshake message a client may send now is
                    // KeyUpdate, alone in its record (a key change may not
                    // fall inside a record, RFC 8446 §5.1).
                    if let [KEY_UPDATE, 0, 0, 1, req] = *content {
                        if req > 1 {
                            let why = "KeyUpdate with an invalid request_update";
                            return (off, Err(Fatal::new(Alert::IllegalParameter, why)));
                        }
                        match self.kernel.update_rx_secret() {
                            Ok((seq, s)) => match Keys::new(seq, s) {
                                Some(k) => self.rx = k,
                                None => {
                                    return (
                                        off,
                                        Err(Fatal::new(
                                            Alert::IllegalParameter,
                                            "KeyUpdate failed",
                                        )),
                                    )
                                }
                            },
                            Err(e) => {
                                return (
                                    off,
                                    Err(Fatal::new(Alert::UnexpectedMessage, e.to_string())),
                                )
                            }
                        }
                        self.owe_key_update |= req == 1;
                    } else {
                        let why = match content.first() {
                            Some(t) => {
                                format!("unexpected TLS handshake message {t} after the handshake")
                            }
                            None => "empty TLS handshake record".to_string(),
                        };
                        return (off, Err(Fatal::new(Alert::UnexpectedMessage, why)));
                    }
                }
                t => {
                    let why = format!("unexpected TLS content type {t} after the handshake");
                    return (off, Err(Fatal::new(Alert::UnexpectedMessage, why)));
                }
            }
        }
        if self.peer_closed {
            // Nothing after close_notify is read.
            off = buf.len();
        }
        (off, Ok(()))
    }

    /// Seal one record of `typ` holding `content` (at most `MAX_PLAIN`
    /// bytes), appended to `out`: the only copy of the plaintext.
    fn seal_one(&mut self, typ: u8, content: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let start = out.len();
        let len = content.len() + 1 + TAG;
        out.extend_from_slice(&[APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8]);
        out.extend_from_slice(content);
        out.push(typ);
        let aad = Aad::from([APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8]);
        let nonce = self.tx.next_nonce();
        let tag = self
            .tx
            .key
            .seal_in_place_separate_tag(nonce, aad, &mut out[start + HEADER..])
            .map_err(|_| io::Error::other("TLS record sealing failed"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Seal in place an application-data record whose content, `len` bytes
    /// (at most `MAX_PLAIN`), was read into `slot[CONTENT_AT..]`: header,
    /// content type and tag are written around it. Returns the record's
    /// length. The caller sends a due KeyUpdate first (`key_update_due`).
    pub fn seal_slot(&mut self, slot: &mut [u8], len: usize) -> io::Result<usize> {
        let total = len + OVERHEAD;
        if len > MAX_PLAIN || slot.len() < total {
            return Err(io::Error::other("TLS record slot too small"));
        }
        let clen = len + 1 + TAG;
        let header = [APPLICATION_DATA, 3, 3, (clen >> 8) as u8, clen as u8];
        slot[..HEADER].copy_from_slice(&header);
        slot[HEADER + len] = APPLICATION_DATA;
        let nonce = self.tx.next_nonce();
        let tag = self
            .tx
            .key
            .seal_in_place_separate_tag(
                nonce,
                Aad::from(header),
                &mut slot[HEADER..HEADER + len + 1],
            )
            .map_err(|_| io::Error::other("TLS record sealing failed"))?;
        slot[HEADER + len + 1..total].copy_from_slice(tag.as_ref());
        Ok(total)
    }

    /// Our KeyUpdate when one is due (asked for, or the key's limit near).
    pub fn seal_due_key_update(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if self.key_update_due() {
            self.key_update(out)?;
        }
        Ok(())
    }

    /// Our KeyUpdate (update_not_requested), then the new key.
    fn key_update(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.seal_one(HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0], out)?;
        let (seq, s) = self
            .kernel
            .update_tx_secret()
            .map_err(|e| io::Error::other(format!("TLS key update: {e}")))?;
        self.tx = Keys::new(seq, s).ok_or_else(|| io::Error::other("TLS key update: bad keys"))?;
        self.owe_key_update = false;
        Ok(())
    }

    /// Seal `data` as application-data records appended to `out`, after a
    /// KeyUpdate of ours when one is owed or the key's limit is near.
    pub fn seal(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        out.reserve(data.len() + data.len().div_ceil(MAX_PLAIN).max(1) * (HEADER + 1 + TAG));
        for chunk in data.chunks(MAX_PLAIN) {
            if self.key_update_due() {
                self.key_update(out)?;
            }
            self.seal_one(APPLICATION_DATA, chunk, out)?;
        }
        Ok(())
    }

    /// An alert record (close_notify or a fatal one).
    pub fn seal_alert(&mut self, alert: Alert, out: &mut Vec<u8>) -> io::Result<()> {
        let level = if matches!(alert, Alert::CloseNotify) {
            1
        } else {
            2
        };
        self.seal_one(ALERT, &[level, alert as u8], out)
    }
}
