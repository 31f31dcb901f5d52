//! The MIME part tree behind BODY/BODYSTRUCTURE (RFC 3501 §7.4.2, RFC 2045,
//! RFC 2046): parts as byte ranges into the message, bounded by
//! [`MAX_DEPTH`] and [`MAX_PARTS`].

use std::ops::Range;

use super::header::{lines, split_params, strip_comments};
use super::{header_value, MAX_DEPTH, MAX_PARTS};

/// One MIME part (the message itself is the root part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The part's header, including the blank line that ends it.
    pub header: Range<usize>,
    /// The part's body (for a multipart, everything after its header).
    pub body: Range<usize>,
    /// Media type and subtype as written (default `text`/`plain`).
    pub media_type: String,
    pub subtype: String,
    /// Content-Type parameters, names and values as written.
    pub params: Vec<(String, String)>,
    pub id: Option<String>,
    pub description: Option<String>,
    pub encoding: Option<String>,
    pub md5: Option<String>,
    /// Disposition type and its parameters.
    pub disposition: Option<(String, Vec<(String, String)>)>,
    pub language: Vec<String>,
    pub location: Option<String>,
    /// Body lines, reported for text/* and message/rfc822.
    pub lines: u64,
    pub kind: PartKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartKind {
    Single,
    Multipart(Vec<Part>),
    /// message/rfc822: the embedded message's root part.
    Message(Box<Part>),
}

impl Part {
    pub fn is_multipart(&self) -> bool {
        matches!(self.kind, PartKind::Multipart(_))
    }

    /// The `n`-th (1-based) subpart as section numbers see it.
    pub(super) fn child(&self, n: u32) -> Option<&Part> {
        let idx = usize::try_from(n).ok()?.checked_sub(1)?;
        match &self.kind {
            PartKind::Multipart(ch) => ch.get(idx),
            PartKind::Message(inner) => match &inner.kind {
                PartKind::Multipart(ch) => ch.get(idx),
                _ if idx == 0 => Some(inner),
                _ => None,
            },
            PartKind::Single if idx == 0 => Some(self),
            PartKind::Single => None,
        }
    }
}

/// Parse the structure of a whole message. Never fails.
pub fn parse(raw: &[u8]) -> Part {
    let mut budget = MAX_PARTS;
    parse_part(raw, 0..raw.len(), false, 0, &mut budget)
}

fn parse_part(
    raw: &[u8],
    range: Range<usize>,
    digest: bool,
    depth: usize,
    budget: &mut usize,
) -> Part {
    *budget = budget.saturating_sub(1);
    let header_end = find_header_end(raw, range.clone());
    let header = range.start..header_end;
    let body = header_end..range.end;
    let hdr = raw.get(header.clone()).unwrap_or_default();

    let (mut media_type, mut subtype, mut params) = if digest {
        ("message".to_owned(), "rfc822".to_owned(), Vec::new())
    } else {
        (
            "text".to_owned(),
            "plain".to_owned(),
            vec![("charset".to_owned(), "us-ascii".to_owned())],
        )
    };
    if let Some(ct) = header_value(hdr, b"content-type") {
        let ct = String::from_utf8_lossy(&ct).into_owned();
        let (value, p) = split_params(&ct);
        if let Some((t, s)) = value.split_once('/') {
            let (t, s) = (t.trim(), s.trim());
            if !t.is_empty() && !s.is_empty() {
                media_type = t.to_owned();
                subtype = s.to_owned();
                params = p;
            }
        }
    }
    let text_header = |name: &[u8]| {
        header_value(hdr, name).map(|v| String::from_utf8_lossy(&v).trim().to_owned())
    };
    let disposition = text_header(b"content-disposition").and_then(|d| {
        let (value, p) = split_params(&d);
        (!value.is_empty()).then(|| (value.to_owned(), p))
    });
    let language = text_header(b"content-language")
        .map(|l| {
            l.split(',')
                .map(|s| strip_comments(s).trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let encoding =
        text_header(b"content-transfer-encoding").map(|e| strip_comments(&e).trim().to_owned());
    let body_bytes = raw.get(body.clone()).unwrap_or_default();

    let is =
        |a: &str, b: &str| media_type.eq_ignore_ascii_case(a) && subtype.eq_ignore_ascii_case(b);
    let opaque = encoding.as_deref().is_some_and(|e| {
        !(e.eq_ignore_ascii_case("7bit")
            || e.eq_ignore_ascii_case("8bit")
            || e.eq_ignore_ascii_case("binary"))
    });
    let room = depth < MAX_DEPTH && *budget > 0;
    let kind = if media_type.eq_ignore_ascii_case("multipart") && room {
        let boundary = params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("boundary"))
            .map(|(_, v)| v.as_bytes().to_vec())
            .filter(|b| !b.is_empty());
        let ranges = match boundary {
            Some(b) => split_multipart(raw, body.clone(), &b),
            None => Vec::new(),
        };
        let child_digest = subtype.eq_ignore_ascii_case("digest");
        let mut children = Vec::new();
        for r in ranges {
            if *budget == 0 {
                break;
            }
            children.push(parse_part(raw, r, child_digest, depth + 1, budget));
        }
        if children.is_empty() {
            // A multipart without usable boundaries: IMAP needs at least
            // one part, so the whole body becomes one text/plain part.
            children.push(parse_part_plain(raw, body.clone()));
        }
        PartKind::Multipart(children)
    } else if is("message", "rfc822") && !opaque && room {
        PartKind::Message(Box::new(parse_part(
            raw,
            body.clone(),
            false,
            depth + 1,
            budget,
        )))
    } else {
        PartKind::Single
    };
    let lines = if media_type.eq_ignore_ascii_case("text") || matches!(kind, PartKind::Message(_)) {
        count_lines(body_bytes)
    } else {
        0
    };
    Part {
        header,
        body,
        media_type,
        subtype,
        params,
        id: text_header(b"content-id"),
        description: text_header(b"content-description"),
        encoding,
        md5: text_header(b"content-md5"),
        disposition,
        language,
        location: text_header(b"content-location"),
        lines,
        kind,
    }
}

/// A headerless text/plain part covering `range`.
fn parse_part_plain(raw: &[u8], range: Range<usize>) -> Part {
    Part {
        header: range.start..range.start,
        body: range.clone(),
        media_type: "text".into(),
        subtype: "plain".into(),
        params: vec![("charset".into(), "us-ascii".into())],
        id: None,
        description: None,
        encoding: None,
        md5: None,
        disposition: None,
        language: Vec::new(),
        location: None,
        lines: count_lines(raw.get(range).unwrap_or_default()),
        kind: PartKind::Single,
    }
}

fn count_lines(b: &[u8]) -> u64 {
    let n = b.iter().filter(|&&c| c == b'\n').count() as u64;
    n + u64::from(b.last().is_some_and(|&c| c != b'\n'))
}

/// End of a message's header (after its blank line), or its length.
pub fn parse_header_end(raw: &[u8]) -> usize {
    find_header_end(raw, 0..raw.len())
}

/// End of the header (after its blank line), or the range end if none.
fn find_header_end(raw: &[u8], range: Range<usize>) -> usize {
    for (start, end, next) in lines(raw, range.clone()) {
        if start == end {
            return next;
        }
    }
    range.end
}

/// Body ranges of a multipart's parts: between delimiter lines
/// (`--boundary`), the CRLF before each delimiter belonging to it
/// (RFC 2046 §5.1.1). A missing close delimiter ends the last part at the
/// end of the body.
fn split_multipart(raw: &[u8], body: Range<usize>, boundary: &[u8]) -> Vec<Range<usize>> {
    let mut parts = Vec::new();
    let mut cur: Option<usize> = None;
    for (start, end, next) in lines(raw, body.clone()) {
        let line = raw.get(start..end).unwrap_or_default();
        let Some(rest) = line
            .strip_prefix(b"--")
            .and_then(|l| l.strip_prefix(boundary))
        else {
            continue;
        };
        let close = rest.starts_with(b"--");
        let tail = if close {
            rest.get(2..).unwrap_or_default()
        } else {
            rest
        };
        if !tail.iter().all(|b| matches!(b, b' ' | b'\t')) {
            continue;
        }
        if let Some(s) = cur {
            let mut e = start;
            if e > s && raw.get(e - 1) == Some(&b'\n') {
                e -= 1;
                if e > s && raw.get(e - 1) == Some(&b'\r') {
                    e -= 1;
                }
            }
            if parts.len() >= MAX_PARTS {
                return parts;
            }
            parts.push(s..e);
        }
        if close {
            return parts;
        }
        cur = Some(next.min(body.end));
    }
    if let Some(s) = cur {
        parts.push(s..body.end);
    }
    parts
}
