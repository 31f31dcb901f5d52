//! `BODY[section]` extraction (RFC 3501 §6.4.5) and `<origin.size>`
//! partials.

use std::borrow::Cow;
use std::ops::Range;

use super::header::field_ranges;
use super::{Part, PartKind};
use crate::mail::imap::parser::{Section, SectionText};

/// The bytes `BODY[section]` names, or `None` if the message has no such
/// part (the session then returns NIL or an empty string, as it likes).
pub fn section<'a>(raw: &'a [u8], root: &Part, sec: &Section) -> Option<Cow<'a, [u8]>> {
    let mut cur = root;
    for &n in &sec.part {
        cur = cur.child(n)?;
    }
    let get = |r: &Range<usize>| raw.get(r.clone()).map(Cow::Borrowed);
    // HEADER/TEXT of a part address the message inside a message/rfc822.
    let msg = if sec.part.is_empty() {
        Some(root)
    } else {
        match &cur.kind {
            PartKind::Message(inner) => Some(&**inner),
            _ => None,
        }
    };
    match &sec.text {
        None if sec.part.is_empty() => Some(Cow::Borrowed(raw)),
        None => get(&cur.body),
        Some(SectionText::Mime) => get(&cur.header),
        Some(SectionText::Header) => get(&msg?.header),
        Some(SectionText::Text) => get(&msg?.body),
        Some(SectionText::HeaderFields(names)) => {
            Some(Cow::Owned(filter_header(raw, &msg?.header, names, true)))
        }
        Some(SectionText::HeaderFieldsNot(names)) => {
            Some(Cow::Owned(filter_header(raw, &msg?.header, names, false)))
        }
    }
}

fn filter_header(raw: &[u8], header: &Range<usize>, names: &[String], keep: bool) -> Vec<u8> {
    let hdr = raw.get(header.clone()).unwrap_or_default();
    let mut out = Vec::new();
    for (name, r) in field_ranges(hdr) {
        let listed = names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(name));
        if listed == keep {
            let field = hdr.get(r).unwrap_or_default();
            out.extend_from_slice(field);
            if !field.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// `<start.len>` of `data` (RFC 3501 §6.4.5): clamped, never out of range.
pub fn partial(data: &[u8], start: u32, len: u32) -> &[u8] {
    let s = usize::try_from(start).unwrap_or(usize::MAX).min(data.len());
    let e = s
        .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
        .min(data.len());
    data.get(s..e).unwrap_or_default()
}
