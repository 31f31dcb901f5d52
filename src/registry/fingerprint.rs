//! Key fingerprints: SHA-256 over the DER SubjectPublicKeyInfo.
//!
//! The canonical written form is the RFC 7469 pin, `sha256:` + standard
//! padded base64, which is what
//! `openssl x509 -pubkey -noout -in c.pem | openssl pkey -pubin -outform der
//! | openssl dgst -sha256 -binary | base64` prints. On input the same 32
//! bytes are also accepted without the prefix, as unpadded base64url (the
//! form mox prints) and as 64 hex digits, so keys move over unchanged.
//! Output is always the canonical form.

use std::fmt;
use std::str::FromStr;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The SHA-256 of a DER SubjectPublicKeyInfo.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

/// Fingerprint of a DER SubjectPublicKeyInfo (no parsing: the bytes as given).
pub fn fingerprint_spki(spki_der: &[u8]) -> Fingerprint {
    Fingerprint(Sha256::digest(spki_der).into())
}

/// The prefix of the canonical form.
pub const PREFIX: &str = "sha256:";

/// What `FromStr` accepts, for error messages.
pub const ACCEPTED_FORMS: &str = "expected sha256: followed by standard base64 (44 characters, \
     as `frontdoor keys fingerprint` prints), the same without sha256:, \
     unpadded base64url (43 characters, as mox prints) or 64 hex digits";

impl Fingerprint {
    /// Lower-case hex, for logs and tools that want it.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", STANDARD.encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Why a fingerprint string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad fingerprint {input:?}: {reason}")]
pub struct FingerprintError {
    /// The input, cut to a readable length.
    pub input: String,
    pub reason: String,
}

/// Base64 of either alphabet (after mapping `-_` to `+/`), padding optional.
const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl FromStr for Fingerprint {
    type Err = FingerprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| {
            let mut input: String = s.chars().take(80).collect();
            if input.len() < s.len() {
                input.push('…');
            }
            FingerprintError { input, reason }
        };
        let t = s.trim();
        let body = match t.get(..PREFIX.len()) {
            Some(p) if p.eq_ignore_ascii_case(PREFIX) => &t[PREFIX.len()..],
            _ => t,
        };
        if body.len() == 64 && body.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut out = [0u8; 32];
            for (i, o) in out.iter_mut().enumerate() {
                let pair = &body[2 * i..2 * i + 2];
                *o = u8::from_str_radix(pair, 16).map_err(|_| err(ACCEPTED_FORMS.to_owned()))?;
            }
            return Ok(Fingerprint(out));
        }
        let is_b64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_');
        let unpadded = body.trim_end_matches('=');
        if unpadded.is_empty() || !unpadded.bytes().all(is_b64) || body.len() - unpadded.len() > 2 {
            return Err(err(ACCEPTED_FORMS.to_owned()));
        }
        let std_alphabet = unpadded.replace('-', "+").replace('_', "/");
        let bytes = LENIENT_STANDARD
            .decode(&std_alphabet)
            .map_err(|e| err(format!("not valid base64 ({e}); {ACCEPTED_FORMS}")))?;
        let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            err(format!(
                "decodes to {} bytes, a SHA-256 fingerprint is 32; {ACCEPTED_FORMS}",
                bytes.len()
            ))
        })?;
        Ok(Fingerprint(arr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const SAMPLE: [u8; 32] = [
        0xfb, 0xff, 0x00, 0x01, 0x02, 0x03, 0x3e, 0x3f, 0xf0, 0x0d, 0x10, 0x20, 0x30, 0x40, 0x50,
        0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0, 0xfe, 0xff, 0xfb, 0xef, 0xbe,
        0xad, 0xde,
    ];

    #[test]
    fn sha256_of_spki_bytes() {
        // SHA-256("abc"), a known vector.
        let f = fingerprint_spki(b"abc");
        assert_eq!(
            f.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            f.to_string(),
            "sha256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    #[test]
    fn every_accepted_form_parses_to_the_same_bytes() {
        let f = Fingerprint(SAMPLE);
        let canonical = f.to_string();
        assert!(canonical.starts_with("sha256:") && canonical.ends_with('='));
        let forms = [
            canonical.clone(),
            canonical["sha256:".len()..].to_owned(),
            URL_SAFE_NO_PAD.encode(SAMPLE),
            format!("sha256:{}", URL_SAFE_NO_PAD.encode(SAMPLE)),
            f.to_hex(),
            f.to_hex().to_uppercase(),
            format!("  {canonical} "),
        ];
        // The sample has bytes that encode to + / (and - _ in base64url).
        assert!(
            forms[2].contains('-') || forms[2].contains('_'),
            "{}",
            forms[2]
        );
        for s in &forms {
            assert_eq!(s.parse::<Fingerprint>().unwrap(), f, "{s}");
        }
    }

    #[test]
    fn bad_forms_say_what_is_accepted() {
        let e = "sha256:abc".parse::<Fingerprint>().unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("bad fingerprint \"sha256:abc\": decodes to 2 bytes, a SHA-256 fingerprint is 32; {ACCEPTED_FORMS}")
        );
        let e = "md5:00".parse::<Fingerprint>().unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("bad fingerprint \"md5:00\": {ACCEPTED_FORMS}")
        );
        for s in [
            "",
            "sha256:",
            "===",
            "a b",
            &"0".repeat(63),
            &"g".repeat(64),
            &"A".repeat(44),
        ] {
            assert!(s.parse::<Fingerprint>().is_err(), "{s:?} was accepted");
        }
        // 44 characters with non-zero trailing bits is not the encoding of 32 bytes.
        let mut c = Fingerprint(SAMPLE).to_string();
        c.replace_range(c.len() - 2..c.len() - 1, "B");
        assert!(c.parse::<Fingerprint>().is_err(), "{c}");
    }
}
