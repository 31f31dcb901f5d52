//! Response encoding (RFC 3501 §7, §9 `response`): status responses with
//! response codes, untagged data, FETCH items with ENVELOPE and
//! BODYSTRUCTURE, and the string quoting rules.
//!
//! Every function appends to a caller-owned `Vec<u8>` and every response
//! ends with CRLF. Strings are written quoted when that is safe (7-bit, no
//! CR/LF/NUL, not long) and as a literal otherwise, so no byte a message
//! contains can break the framing.
//!
//! Layout: this file holds the encoding primitives (strings, literals,
//! mailbox names, flag lists); status responses and their codes are in
//! `status.rs`, the other untagged data (CAPABILITY, LIST, STATUS, SEARCH,
//! METADATA, QUOTA, ...) in `data.rs`, FETCH in `fetch.rs` and ENVELOPE and
//! BODYSTRUCTURE in `structure.rs`.

use std::io::Write as _;

use super::types::Flag;

mod data;
mod fetch;
mod status;
mod structure;
#[cfg(test)]
mod tests;

pub use data::{
    capability, enabled, exists, expunge, flags, id, list, metadata, namespace, quota, quota_root,
    recent, search, status,
};
pub use fetch::{fetch, write_section, FetchData};
pub use status::{continuation, continuation_base64, tagged, untagged, Code, Status};
pub use structure::{write_body, write_envelope};

/// Longest string written quoted; longer ones go as literals, which
/// clients read without scanning for escapes.
pub const MAX_QUOTED: usize = 1024;

fn write_flags_with(out: &mut Vec<u8>, flags: &[Flag], star: bool) {
    out.push(b'(');
    for (i, f) in flags.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(f.as_str().as_bytes());
    }
    if star {
        if !flags.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(b"\\*");
    }
    out.push(b')');
}

fn quotable(s: &[u8]) -> bool {
    s.len() <= MAX_QUOTED
        && s.iter()
            .all(|&b| b != 0 && b != b'\r' && b != b'\n' && b < 0x80)
}

/// A `string`: quoted when safe, else a literal (RFC 3501 §4.3).
pub fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    if quotable(s) {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        write_literal(out, s);
    }
}

/// `{n}` CRLF and the bytes.
pub fn write_literal(out: &mut Vec<u8>, s: &[u8]) {
    let _ = write!(out, "{{{}}}\r\n", s.len());
    out.extend_from_slice(s);
}

pub fn write_nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => write_string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// An `astring`: a bare atom when it is one (and not `NIL`), else a string.
pub fn write_astring(out: &mut Vec<u8>, s: &[u8]) {
    let atom = !s.is_empty()
        && !s.eq_ignore_ascii_case(b"NIL")
        && s.iter().all(|&b| {
            b > 0x20 && b < 0x7f && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\')
        });
    if atom {
        out.extend_from_slice(s);
    } else {
        write_string(out, s);
    }
}

/// Mailbox names are always quoted (or literal), as most servers do.
fn write_mailbox(out: &mut Vec<u8>, name: &str) {
    write_string(out, name.as_bytes());
}
