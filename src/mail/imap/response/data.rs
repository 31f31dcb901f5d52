//! Untagged data responses other than FETCH (RFC 3501 §7.2-7.4 and the
//! extensions): CAPABILITY, ENABLED, FLAGS, EXISTS, RECENT, EXPUNGE, SEARCH,
//! LIST/LSUB, STATUS, ID, NAMESPACE, METADATA and QUOTA.

use std::io::Write as _;

use super::{write_astring, write_flags_with, write_mailbox, write_string};
use crate::mail::imap::parser::StatusItem;
use crate::mail::imap::types::Flag;

pub fn capability(out: &mut Vec<u8>, caps: &[&str]) {
    out.extend_from_slice(b"* CAPABILITY");
    for c in caps {
        out.push(b' ');
        out.extend_from_slice(c.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

pub fn enabled(out: &mut Vec<u8>, caps: &[&str]) {
    out.extend_from_slice(b"* ENABLED");
    for c in caps {
        out.push(b' ');
        out.extend_from_slice(c.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}
/// `* FLAGS (...)`.
pub fn flags(out: &mut Vec<u8>, flags: &[Flag]) {
    out.extend_from_slice(b"* FLAGS ");
    write_flags_with(out, flags, false);
    out.extend_from_slice(b"\r\n");
}

pub fn exists(out: &mut Vec<u8>, n: u32) {
    let _ = write!(out, "* {n} EXISTS\r\n");
}

pub fn recent(out: &mut Vec<u8>, n: u32) {
    let _ = write!(out, "* {n} RECENT\r\n");
}

pub fn expunge(out: &mut Vec<u8>, msn: u32) {
    let _ = write!(out, "* {msn} EXPUNGE\r\n");
}

/// `* SEARCH 2 3 6`, with CONDSTORE's `(MODSEQ n)` when asked.
pub fn search(out: &mut Vec<u8>, nums: &[u32], modseq: Option<u64>) {
    out.extend_from_slice(b"* SEARCH");
    for n in nums {
        let _ = write!(out, " {n}");
    }
    if let (Some(m), false) = (modseq, nums.is_empty()) {
        let _ = write!(out, " (MODSEQ {m})");
    }
    out.extend_from_slice(b"\r\n");
}

/// `* LIST (\HasNoChildren \Sent) "/" "Sent"` (or LSUB with `lsub`).
/// Attributes include special-use ones (RFC 6154) as the session decides.
pub fn list(out: &mut Vec<u8>, lsub: bool, attrs: &[&str], delimiter: Option<char>, name: &str) {
    out.extend_from_slice(if lsub { b"* LSUB (" } else { b"* LIST (" });
    for (i, a) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(a.as_bytes());
    }
    out.extend_from_slice(b") ");
    match delimiter {
        Some(d @ ('"' | '\\')) => {
            let _ = write!(out, "\"\\{d}\"");
        }
        Some(d) => {
            let _ = write!(out, "\"{d}\"");
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    write_mailbox(out, name);
    out.extend_from_slice(b"\r\n");
}

/// `* STATUS "name" (MESSAGES 231 UIDNEXT 44292)`.
pub fn status(out: &mut Vec<u8>, mailbox: &str, items: &[(StatusItem, u64)]) {
    out.extend_from_slice(b"* STATUS ");
    write_mailbox(out, mailbox);
    out.extend_from_slice(b" (");
    for (i, (item, v)) in items.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        let _ = write!(out, "{} {v}", item.name());
    }
    out.extend_from_slice(b")\r\n");
}

/// `* ID (...)` or `* ID NIL`.
pub fn id(out: &mut Vec<u8>, params: Option<&[(&str, &str)]>) {
    out.extend_from_slice(b"* ID ");
    match params {
        None => out.extend_from_slice(b"NIL"),
        Some(p) => {
            out.push(b'(');
            for (i, (k, v)) in p.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                write_string(out, k.as_bytes());
                out.push(b' ');
                write_string(out, v.as_bytes());
            }
            out.push(b')');
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// `* NAMESPACE (("" "/")) NIL NIL`: one personal namespace.
pub fn namespace(out: &mut Vec<u8>, prefix: &str, delimiter: char) {
    out.extend_from_slice(b"* NAMESPACE ((");
    write_string(out, prefix.as_bytes());
    let _ = write!(out, " \"{delimiter}\")) NIL NIL\r\n");
}

/// `* METADATA "INBOX" (/private/comment {5}\r\nvalue)`: values as
/// literals, as Dovecot sends them (chatmail's clients and tests read the
/// value from the line after the `*` line); absent values `NIL`.
pub fn metadata(out: &mut Vec<u8>, mailbox: &str, entries: &[(&str, Option<&[u8]>)]) {
    out.extend_from_slice(b"* METADATA ");
    write_mailbox(out, mailbox);
    out.extend_from_slice(b" (");
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        write_astring(out, k.as_bytes());
        out.push(b' ');
        match v {
            Some(v) => {
                let _ = write!(out, "{{{}}}\r\n", v.len());
                out.extend_from_slice(v);
            }
            None => out.extend_from_slice(b"NIL"),
        }
    }
    out.extend_from_slice(b")\r\n");
}

/// `* QUOTAROOT "INBOX" ""` and `* QUOTA "" (STORAGE 10 512)`.
pub fn quota_root(out: &mut Vec<u8>, mailbox: &str, roots: &[&str]) {
    out.extend_from_slice(b"* QUOTAROOT ");
    write_mailbox(out, mailbox);
    for r in roots {
        out.push(b' ');
        write_astring(out, r.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Resources as (name, usage, limit), e.g. ("STORAGE", kib, kib).
pub fn quota(out: &mut Vec<u8>, root: &str, resources: &[(&str, u64, u64)]) {
    out.extend_from_slice(b"* QUOTA ");
    write_astring(out, root.as_bytes());
    out.extend_from_slice(b" (");
    for (i, (n, u, l)) in resources.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        let _ = write!(out, "{n} {u} {l}");
    }
    out.extend_from_slice(b")\r\n");
}
