//! The FETCH response (RFC 3501 §7.4.2): its data items and the echo of a
//! `BODY[section]<origin>` name.

use std::io::Write as _;

use super::{write_astring, write_body, write_envelope, write_flags_with, write_literal};
use crate::mail::imap::mime::{Envelope, Part};
use crate::mail::imap::parser::{Section, SectionText};
use crate::mail::imap::types::{DateTime, Flag};

/// One FETCH data item to send.
#[derive(Debug, Clone)]
pub enum FetchData<'a> {
    Uid(u32),
    Flags(&'a [Flag]),
    InternalDate(DateTime),
    Rfc822Size(u64),
    ModSeq(u64),
    Envelope(&'a Envelope),
    /// BODYSTRUCTURE of `part` inside the stored bytes `raw`.
    BodyStructure {
        raw: &'a [u8],
        part: &'a Part,
    },
    /// BODY (no extension data).
    Body {
        raw: &'a [u8],
        part: &'a Part,
    },
    /// `BODY[section]<origin> data`; `None` data is NIL.
    BodySection {
        section: &'a Section,
        origin: Option<u32>,
        data: Option<&'a [u8]>,
    },
    Rfc822(&'a [u8]),
    Rfc822Header(&'a [u8]),
    Rfc822Text(&'a [u8]),
}

/// `* 12 FETCH (...)`.
pub fn fetch(out: &mut Vec<u8>, msn: u32, items: &[FetchData<'_>]) {
    let _ = write!(out, "* {msn} FETCH (");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        write_fetch_item(out, item);
    }
    out.extend_from_slice(b")\r\n");
}

fn write_fetch_item(out: &mut Vec<u8>, item: &FetchData<'_>) {
    match item {
        FetchData::Uid(u) => {
            let _ = write!(out, "UID {u}");
        }
        FetchData::Flags(f) => {
            out.extend_from_slice(b"FLAGS ");
            write_flags_with(out, f, false);
        }
        FetchData::InternalDate(d) => {
            let _ = write!(out, "INTERNALDATE {d}");
        }
        FetchData::Rfc822Size(n) => {
            let _ = write!(out, "RFC822.SIZE {n}");
        }
        FetchData::ModSeq(m) => {
            let _ = write!(out, "MODSEQ ({m})");
        }
        FetchData::Envelope(e) => {
            out.extend_from_slice(b"ENVELOPE ");
            write_envelope(out, e);
        }
        FetchData::BodyStructure { raw, part } => {
            out.extend_from_slice(b"BODYSTRUCTURE ");
            write_body(out, raw, part, true, 0);
        }
        FetchData::Body { raw, part } => {
            out.extend_from_slice(b"BODY ");
            write_body(out, raw, part, false, 0);
        }
        FetchData::BodySection {
            section,
            origin,
            data,
        } => {
            out.extend_from_slice(b"BODY[");
            write_section(out, section);
            out.push(b']');
            if let Some(o) = origin {
                let _ = write!(out, "<{o}>");
            }
            out.push(b' ');
            write_nstring_literal(out, *data);
        }
        FetchData::Rfc822(d) => {
            out.extend_from_slice(b"RFC822 ");
            write_literal(out, d);
        }
        FetchData::Rfc822Header(d) => {
            out.extend_from_slice(b"RFC822.HEADER ");
            write_literal(out, d);
        }
        FetchData::Rfc822Text(d) => {
            out.extend_from_slice(b"RFC822.TEXT ");
            write_literal(out, d);
        }
    }
}

/// Message data always goes as a literal: it has CRLFs and is often big.
fn write_nstring_literal(out: &mut Vec<u8>, d: Option<&[u8]>) {
    match d {
        Some(d) => write_literal(out, d),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// The section spec as the response echoes it: `1.2.HEADER.FIELDS (A B)`.
pub fn write_section(out: &mut Vec<u8>, s: &Section) {
    for (i, p) in s.part.iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        let _ = write!(out, "{p}");
    }
    let Some(text) = &s.text else { return };
    if !s.part.is_empty() {
        out.push(b'.');
    }
    let names = |out: &mut Vec<u8>, kw: &str, names: &[String]| {
        out.extend_from_slice(kw.as_bytes());
        out.extend_from_slice(b" (");
        for (i, n) in names.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            write_astring(out, n.as_bytes());
        }
        out.push(b')');
    };
    match text {
        SectionText::Header => out.extend_from_slice(b"HEADER"),
        SectionText::Text => out.extend_from_slice(b"TEXT"),
        SectionText::Mime => out.extend_from_slice(b"MIME"),
        SectionText::HeaderFields(n) => names(out, "HEADER.FIELDS", n),
        SectionText::HeaderFieldsNot(n) => names(out, "HEADER.FIELDS.NOT", n),
    }
}
