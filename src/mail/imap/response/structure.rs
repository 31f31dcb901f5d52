//! ENVELOPE and BODYSTRUCTURE (RFC 3501 §7.4.2) written from what
//! [`mime`](crate::mail::imap::mime) derived from a message.

use std::io::Write as _;

use super::{write_nstring, write_string};
use crate::mail::imap::mime::{self, Address, Envelope, Part, PartKind};

fn write_addresses(out: &mut Vec<u8>, addrs: &[Address]) {
    if addrs.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in addrs {
        out.push(b'(');
        write_nstring(out, a.name.as_deref());
        out.push(b' ');
        write_nstring(out, a.adl.as_deref());
        out.push(b' ');
        write_nstring(out, a.mailbox.as_deref());
        out.push(b' ');
        write_nstring(out, a.host.as_deref());
        out.push(b')');
    }
    out.push(b')');
}

/// ENVELOPE (RFC 3501 §7.4.2).
pub fn write_envelope(out: &mut Vec<u8>, e: &Envelope) {
    out.push(b'(');
    write_nstring(out, e.date.as_deref());
    out.push(b' ');
    write_nstring(out, e.subject.as_deref());
    for list in [&e.from, &e.sender, &e.reply_to, &e.to, &e.cc, &e.bcc] {
        out.push(b' ');
        write_addresses(out, list);
    }
    out.push(b' ');
    write_nstring(out, e.in_reply_to.as_deref());
    out.push(b' ');
    write_nstring(out, e.message_id.as_deref());
    out.push(b')');
}

fn write_params(out: &mut Vec<u8>, params: &[(String, String)]) {
    if params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        write_string(out, k.as_bytes());
        out.push(b' ');
        write_string(out, v.as_bytes());
    }
    out.push(b')');
}

fn write_opt(out: &mut Vec<u8>, s: Option<&String>) {
    write_nstring(out, s.map(|s| s.as_bytes()));
}

/// BODY / BODYSTRUCTURE of a part (RFC 3501 §7.4.2 `body`). `depth` only
/// guards against a part tree deeper than the parser makes.
pub fn write_body(out: &mut Vec<u8>, raw: &[u8], p: &Part, extended: bool, depth: usize) {
    out.push(b'(');
    match &p.kind {
        PartKind::Multipart(children) if depth < mime::MAX_DEPTH + 1 => {
            for c in children {
                write_body(out, raw, c, extended, depth + 1);
            }
            out.push(b' ');
            write_string(out, p.subtype.as_bytes());
            if extended {
                out.push(b' ');
                write_params(out, &p.params);
                write_ext_common(out, p);
            }
        }
        _ => {
            write_string(out, p.media_type.as_bytes());
            out.push(b' ');
            write_string(out, p.subtype.as_bytes());
            out.push(b' ');
            write_params(out, &p.params);
            out.push(b' ');
            write_opt(out, p.id.as_ref());
            out.push(b' ');
            write_opt(out, p.description.as_ref());
            out.push(b' ');
            write_string(out, p.encoding.as_deref().unwrap_or("7BIT").as_bytes());
            let _ = write!(out, " {}", p.body.len());
            if let PartKind::Message(inner) = &p.kind {
                out.push(b' ');
                let hdr = raw.get(inner.header.clone()).unwrap_or_default();
                write_envelope(out, &Envelope::from_header(hdr));
                out.push(b' ');
                write_body(out, raw, inner, extended, depth + 1);
                let _ = write!(out, " {}", p.lines);
            } else if p.media_type.eq_ignore_ascii_case("text") {
                let _ = write!(out, " {}", p.lines);
            }
            if extended {
                out.push(b' ');
                write_opt(out, p.md5.as_ref());
                write_ext_common(out, p);
            }
        }
    }
    out.push(b')');
}

/// Disposition, language, location: the extension data both kinds share.
fn write_ext_common(out: &mut Vec<u8>, p: &Part) {
    out.push(b' ');
    match &p.disposition {
        Some((d, params)) => {
            out.push(b'(');
            write_string(out, d.as_bytes());
            out.push(b' ');
            write_params(out, params);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    match p.language.as_slice() {
        [] => out.extend_from_slice(b"NIL"),
        [one] => write_string(out, one.as_bytes()),
        many => {
            out.push(b'(');
            for (i, l) in many.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                write_string(out, l.as_bytes());
            }
            out.push(b')');
        }
    }
    out.push(b' ');
    write_opt(out, p.location.as_ref());
}
