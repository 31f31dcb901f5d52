//! The armored OpenPGP payload check of the chatmail encryption rule: is the
//! second part of a `multipart/encrypted` message (RFC 3156 §4) an ASCII
//! armored OpenPGP message (RFC 9580 §6) whose packets are only session key
//! packets followed by one encrypted data packet?
//!
//! Pure and total: any input gives `true` or `false`, never a panic, and the
//! work is linear in the input. The checks are the ones chatmail's filtermail
//! makes, so that a message one relay accepts every relay accepts:
//! - the armor starts with exactly `-----BEGIN PGP MESSAGE-----` CRLF and
//!   ends with `-----END PGP MESSAGE-----` (trailing CRLFs ignored);
//! - a `Version: ` armor header is refused on outgoing mail and skipped on
//!   incoming mail (other armor headers make the base64 invalid);
//! - everything after the last `=` (the CRC-24 line) is dropped, the rest
//!   must be strict base64 (RFC 4648 §4, padded);
//! - the packets, in OpenPGP (new) format only (RFC 9580 §4.2.1), are any
//!   number of PKESK (tag 1, §5.1) and SKESK (tag 3, §5.3) packets, then one
//!   SEIPD packet (tag 18, §5.13) ending exactly at the end of the data.

use base64::Engine;

/// RFC 9580 §5.1: Public-Key Encrypted Session Key packet.
pub const TAG_PKESK: u8 = 1;
/// RFC 9580 §5.3: Symmetric-Key Encrypted Session Key packet.
pub const TAG_SKESK: u8 = 3;
/// RFC 9580 §5.13: Symmetrically Encrypted and Integrity Protected Data packet.
pub const TAG_SEIPD: u8 = 18;

const BEGIN: &str = "-----BEGIN PGP MESSAGE-----\r\n";
const END: &str = "-----END PGP MESSAGE-----";
const VERSION_HEADER: &str = "Version: ";

/// Is `armored` (the decoded body of the `application/octet-stream` part)
/// an encrypted OpenPGP message as the rule requires? `outgoing` selects the
/// submission variant, which refuses a `Version:` armor header.
pub fn check_armored(armored: &str, outgoing: bool) -> bool {
    let Some(rest) = armored.strip_prefix(BEGIN) else {
        return false;
    };
    let Some(mut rest) = rest.trim_end_matches("\r\n").strip_suffix(END) else {
        return false;
    };
    if rest.starts_with(VERSION_HEADER) {
        if outgoing {
            return false;
        }
        if let Some((_, after)) = rest.split_once("\r\n") {
            rest = after;
        }
    }
    let mut rest = rest.trim_start_matches("\r\n");
    // The CRC-24 line (RFC 9580 §6.1) starts with `=`.
    if let Some((before, _)) = rest.rsplit_once('=') {
        rest = before;
    }
    let b64: Vec<u8> = rest
        .bytes()
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect();
    match base64::engine::general_purpose::STANDARD.decode(&b64) {
        Ok(packets) => check_packets(&packets),
        Err(_) => false,
    }
}

/// Are `data` OpenPGP packets of the shape PKESK/SKESK… then one SEIPD?
/// Truncated headers give `false`.
pub fn check_packets(data: &[u8]) -> bool {
    check_packets_inner(data).unwrap_or(false)
}

fn check_packets_inner(data: &[u8]) -> Option<bool> {
    let at = |i: usize| data.get(i).copied();
    let mut i = 0usize;
    while i < data.len() {
        let first = at(i)?;
        // New format only: bit 7 set, bit 6 set (RFC 9580 §4.2).
        if first & 0xC0 != 0xC0 {
            return Some(false);
        }
        let tag = first & 0x3F;
        i += 1;
        // Partial body lengths (§4.2.1.4): each chunk is skipped whole, as
        // filtermail does, up to the final length octets.
        while let Some(b @ 224..=254) = at(i) {
            i = i.checked_add(1 + (1usize << (b & 0x1F)))?;
        }
        let b = at(i)?;
        let body_len = match b {
            0..=191 => {
                i += 1;
                usize::from(b)
            }
            192..=223 => {
                let second = at(i + 1)?;
                i += 2;
                ((usize::from(b) - 192) << 8) + usize::from(second) + 192
            }
            255 => {
                let mut n = 0usize;
                for k in 1..=4 {
                    n = (n << 8) | usize::from(at(i + k)?);
                }
                i += 5;
                n
            }
            // 224..=254 were consumed by the loop above.
            _ => return Some(false),
        };
        i = i.checked_add(body_len)?;
        if i == data.len() {
            return Some(tag == TAG_SEIPD);
        }
        if tag != TAG_PKESK && tag != TAG_SKESK {
            return Some(false);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn armor(packets: &[u8], version: bool) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(packets);
        let mut s = String::from(BEGIN);
        if version {
            s.push_str("Version: 1\r\n");
        }
        s.push_str("\r\n");
        for chunk in b64.as_bytes().chunks(64) {
            s.push_str(std::str::from_utf8(chunk).unwrap());
            s.push_str("\r\n");
        }
        s.push_str("=abcd\r\n");
        s.push_str(END);
        s.push_str("\r\n");
        s
    }

    /// One new-format packet with a one-octet length.
    fn packet(tag: u8, len: usize) -> Vec<u8> {
        assert!(len < 192);
        let mut p = vec![0xC0 | tag, len as u8];
        p.extend(std::iter::repeat_n(0x55, len));
        p
    }

    #[test]
    fn pkesk_then_seipd() {
        let mut m = packet(TAG_PKESK, 78);
        m.extend(packet(TAG_PKESK, 78));
        m.extend(packet(TAG_SEIPD, 100));
        assert!(check_packets(&m));
        assert!(check_armored(&armor(&m, false), true));
        assert!(check_armored(&armor(&m, false), false));
        // A Version header: refused outgoing, skipped incoming.
        assert!(!check_armored(&armor(&m, true), true));
        assert!(check_armored(&armor(&m, true), false));
    }

    #[test]
    fn skesk_and_long_lengths() {
        // Two-octet length: 192..8383.
        let mut m = packet(TAG_SKESK, 30);
        m.extend([0xC0 | TAG_SEIPD, 192 + 1, 8]); // (1 << 8) + 8 + 192 = 456
        m.extend(std::iter::repeat_n(0, 456));
        assert!(check_packets(&m));
        // Five-octet length.
        let mut m = packet(TAG_PKESK, 10);
        m.extend([0xC0 | TAG_SEIPD, 255, 0, 0, 0x01, 0x00]);
        m.extend(std::iter::repeat_n(0, 256));
        assert!(check_packets(&m));
        // Partial lengths: a 2^4-octet chunk, then the final 3 octets.
        let mut m = packet(TAG_PKESK, 10);
        m.extend([0xC0 | TAG_SEIPD, 224 + 4]);
        m.extend(std::iter::repeat_n(0, 16));
        m.extend([3, 0, 0, 0]);
        assert!(check_packets(&m));
    }

    #[test]
    fn wrong_shapes() {
        // A literal data packet (tag 11) alone: cleartext in disguise.
        assert!(!check_packets(&packet(11, 20)));
        // SEIPD not last.
        let mut m = packet(TAG_SEIPD, 20);
        m.extend(packet(TAG_PKESK, 20));
        assert!(!check_packets(&m));
        // A signature (tag 2) before the data.
        let mut m = packet(2, 20);
        m.extend(packet(TAG_SEIPD, 20));
        assert!(!check_packets(&m));
        // Old-format header (bit 6 clear).
        assert!(!check_packets(&[0x80 | (TAG_SEIPD << 2), 1, 0]));
        // Length beyond the data, truncated headers, empty input.
        assert!(!check_packets(&[0xC0 | TAG_SEIPD, 50, 0]));
        assert!(!check_packets(&[0xC0 | TAG_SEIPD]));
        assert!(!check_packets(&[0xC0 | TAG_SEIPD, 255, 0, 0]));
        assert!(!check_packets(&[0xC0 | TAG_SEIPD, 200]));
        assert!(!check_packets(&[]));
        // Only session keys.
        assert!(!check_packets(&packet(TAG_PKESK, 20)));
    }

    #[test]
    fn armor_edges() {
        let m = [packet(TAG_PKESK, 12), packet(TAG_SEIPD, 40)].concat();
        let good = armor(&m, false);
        assert!(check_armored(&good, true));
        // LF-only armor, missing begin or end lines, text instead of base64.
        assert!(!check_armored(&good.replace("\r\n", "\n"), true));
        assert!(!check_armored(END, true));
        assert!(!check_armored(BEGIN, true));
        let text = format!("{BEGIN}\r\nDefinitely not base64 encoded.\r\n{END}");
        assert!(!check_armored(&text, false));
        // Base64 of something that is not OpenPGP.
        let prose = base64::engine::general_purpose::STANDARD.encode(b"Hello, world! ...");
        assert!(!check_armored(
            &format!("{BEGIN}\r\n{prose}\r\n{END}"),
            false
        ));
        // Trailing blank lines after the end line are fine.
        assert!(check_armored(&format!("{good}\r\n\r\n"), true));
    }

    #[test]
    fn gpg_made_message() {
        // `gpg --armor --encrypt` to a generated ed25519/cv25519 key (GnuPG
        // 2.2). GnuPG frames its PKESK with an old-format header, which the
        // rule refuses as filtermail does; the same packets re-framed in the
        // new format (tests/chatmail_common/reframe.py), as Delta Chat
        // writes them, pass.
        let gpg =
            include_str!("../../../tests/data/chatmail/encrypted-gpg.asc").replace('\n', "\r\n");
        assert!(!check_armored(&gpg, false));
        let new = include_str!("../../../tests/data/chatmail/encrypted-newformat.asc")
            .replace('\n', "\r\n");
        assert!(check_armored(&new, false));
        assert!(check_armored(&new, true));
    }
}
