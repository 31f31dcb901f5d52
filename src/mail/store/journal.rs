//! The store's append-only journal: framing and torn-tail recovery.
//!
//! A record is `len: u32 LE | check: 8 bytes | payload: len bytes`, where
//! `check` is the first 8 bytes of SHA-256 over `len` and the payload. Records
//! are only ever appended; a crash can leave at most one partial record at the
//! end, which [`read_records`] detects (short or failing the check) and
//! reports so the caller truncates it. Pure over byte slices: no I/O here.

use sha2::{Digest, Sha256};

/// Largest payload accepted when reading back (a record holds a batch of
/// small operations, never message bytes).
pub const MAX_RECORD: usize = 64 << 20;

const HEADER: usize = 12;

fn check(len: [u8; 4], payload: &[u8]) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(len);
    h.update(payload);
    let d = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

/// Frame `payload` as one record.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&len);
    out.extend_from_slice(&check(len, payload));
    out.extend_from_slice(payload);
    out
}

/// All whole, valid records from the start of `buf`, and the offset where
/// valid data ends (equal to `buf.len()` for a clean journal).
pub fn read_records(buf: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = Vec::new();
    let mut off = 0;
    while buf.len() - off >= HEADER {
        let len_b = [buf[off], buf[off + 1], buf[off + 2], buf[off + 3]];
        let len = u32::from_le_bytes(len_b) as usize;
        if len > MAX_RECORD || buf.len() - off - HEADER < len {
            break;
        }
        let payload = &buf[off + HEADER..off + HEADER + len];
        if buf[off + 4..off + HEADER] != check(len_b, payload) {
            break;
        }
        out.push(payload);
        off += HEADER + len;
    }
    (out, off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_tail() {
        let mut j = frame(b"one");
        j.extend(frame(b"two"));
        let whole = j.len();
        j.extend(&frame(b"three")[..7]);
        let (recs, end) = read_records(&j);
        assert_eq!(recs, vec![&b"one"[..], &b"two"[..]]);
        assert_eq!(end, whole);
    }

    #[test]
    fn flipped_byte_stops_reading() {
        let mut j = frame(b"one");
        let first = j.len();
        j.extend(frame(b"two"));
        let n = j.len();
        j[n - 1] ^= 1;
        let (recs, end) = read_records(&j);
        assert_eq!(recs.len(), 1);
        assert_eq!(end, first);
    }
}
