//! Message structure from raw RFC 5322 bytes: the MIME part tree behind
//! BODY/BODYSTRUCTURE (RFC 3501 §7.4.2), the ENVELOPE fields, and
//! `BODY[section]` extraction (§6.4.5).
//!
//! Everything works on byte ranges into the stored message, so a part tree
//! costs a few hundred bytes per part whatever the message size. The parser
//! is tolerant, as a server must be with mail it did not write: bare LF line
//! ends, missing or unclosed boundaries, a header with no body, garbage in
//! parameters all give *some* structure, never an error or a panic. Nesting
//! (multipart in message/rfc822 in multipart ...) stops at [`MAX_DEPTH`]
//! and the whole tree at [`MAX_PARTS`]; deeper content is treated as an
//! opaque leaf. Encoded words (RFC 2047) are left as they are, which is what
//! IMAP asks for.

use std::borrow::Cow;
use std::ops::Range;

use super::parser::{Section, SectionText};

/// Deepest part nesting that is parsed; below it parts are leaves.
pub const MAX_DEPTH: usize = 32;
/// Most parts in one message tree.
pub const MAX_PARTS: usize = 2000;
/// Most addresses taken from one address header.
pub const MAX_ADDRESSES: usize = 1000;

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
    fn child(&self, n: u32) -> Option<&Part> {
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

/// Lines of `raw[range]`: (start, end without line break, next start).
fn lines(raw: &[u8], range: Range<usize>) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let end = range.end.min(raw.len());
    let mut pos = range.start.min(end);
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let start = pos;
        let rest = raw.get(start..end).unwrap_or_default();
        let (content_end, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let nl = start + i;
                let ce = if nl > start && raw.get(nl - 1) == Some(&b'\r') {
                    nl - 1
                } else {
                    nl
                };
                (ce, nl + 1)
            }
            None => (end, end),
        };
        pos = next;
        Some((start, content_end, next))
    })
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

/// The header fields of a raw header: (name, raw value with folding).
pub fn header_fields(header: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out: Vec<(&[u8], Range<usize>)> = Vec::new();
    for (start, end, next) in lines(header, 0..header.len()) {
        if start == end {
            break;
        }
        let line = header.get(start..end).unwrap_or_default();
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            if let Some(last) = out.last_mut() {
                last.1.end = next.min(header.len());
            }
            continue;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = line.get(..colon).unwrap_or_default();
            let name = trim(name);
            if !name.is_empty() {
                out.push((name, start + colon + 1..next.min(header.len())));
            }
        }
    }
    out.into_iter()
        .map(|(n, r)| (n, header.get(r).unwrap_or_default()))
        .collect()
}

/// Whole raw field lines (with folding and line ends) of a header.
fn field_ranges(header: &[u8]) -> Vec<(&[u8], Range<usize>)> {
    let mut out: Vec<(&[u8], Range<usize>)> = Vec::new();
    for (start, end, next) in lines(header, 0..header.len()) {
        if start == end {
            break;
        }
        let line = header.get(start..end).unwrap_or_default();
        let cont = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
        match out.last_mut() {
            Some(last) if cont => last.1.end = next,
            _ => {
                let name = line
                    .iter()
                    .position(|&b| b == b':')
                    .map_or(line, |c| &line[..c]);
                out.push((trim(name), start..next));
            }
        }
    }
    out
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |e| e + 1);
    b.get(s..e).unwrap_or_default()
}

/// Unfold a raw field value: line breaks removed, ends trimmed.
pub fn unfold(v: &[u8]) -> Vec<u8> {
    let out: Vec<u8> = v
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    trim(&out).to_vec()
}

/// The first field `name` (case-insensitive), unfolded.
pub fn header_value(header: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    header_fields(header)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| unfold(v))
}

fn strip_comments(s: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    let mut quoted = false;
    let mut esc = false;
    for c in s.chars() {
        if esc {
            esc = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' => {
                esc = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// `value; a=b; c="d e"` → (value, [(a, b), (c, d e)]). RFC 2231
/// continuations are kept as separate parameters, names as written.
fn split_params(s: &str) -> (&str, Vec<(String, String)>) {
    let (value, rest) = s.split_once(';').unwrap_or((s, ""));
    let value = value.trim();
    let mut params = Vec::new();
    let rest: Vec<char> = strip_comments(rest).chars().collect();
    let mut i = 0;
    while i < rest.len() && params.len() < 100 {
        while i < rest.len() && (rest[i].is_whitespace() || rest[i] == ';') {
            i += 1;
        }
        let ns = i;
        while i < rest.len() && rest[i] != '=' && rest[i] != ';' {
            i += 1;
        }
        let name: String = rest[ns..i].iter().collect::<String>().trim().to_owned();
        if i >= rest.len() || rest[i] == ';' {
            continue;
        }
        i += 1; // '='
        while i < rest.len() && rest[i].is_whitespace() {
            i += 1;
        }
        let mut val = String::new();
        if i < rest.len() && rest[i] == '"' {
            i += 1;
            while i < rest.len() && rest[i] != '"' {
                if rest[i] == '\\' && i + 1 < rest.len() {
                    i += 1;
                }
                val.push(rest[i]);
                i += 1;
            }
            i += 1;
            while i < rest.len() && rest[i] != ';' {
                i += 1;
            }
        } else {
            while i < rest.len() && rest[i] != ';' {
                val.push(rest[i]);
                i += 1;
            }
            val = val.trim().to_owned();
        }
        if !name.is_empty() {
            params.push((name, val));
        }
    }
    (value, params)
}

/// One ENVELOPE address (RFC 3501 §7.4.2). A group start has only
/// `mailbox` (the group name), a group end has nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Address {
    pub name: Option<Vec<u8>>,
    pub adl: Option<Vec<u8>>,
    pub mailbox: Option<Vec<u8>>,
    pub host: Option<Vec<u8>>,
}

/// The ENVELOPE of a message, values as in the header (unfolded).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    pub date: Option<Vec<u8>>,
    pub subject: Option<Vec<u8>>,
    pub from: Vec<Address>,
    pub sender: Vec<Address>,
    pub reply_to: Vec<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub bcc: Vec<Address>,
    pub in_reply_to: Option<Vec<u8>>,
    pub message_id: Option<Vec<u8>>,
}

impl Envelope {
    /// Build from a raw header (the message's or an embedded one's).
    pub fn from_header(header: &[u8]) -> Envelope {
        let fields = header_fields(header);
        let get = |name: &[u8]| {
            fields
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| unfold(v))
        };
        let addrs = |name: &[u8]| get(name).map(|v| parse_addresses(&v)).unwrap_or_default();
        let from = addrs(b"from");
        let mut sender = addrs(b"sender");
        let mut reply_to = addrs(b"reply-to");
        // §7.4.2: absent or empty Sender / Reply-To take From's value.
        if sender.is_empty() {
            sender = from.clone();
        }
        if reply_to.is_empty() {
            reply_to = from.clone();
        }
        Envelope {
            date: get(b"date"),
            subject: get(b"subject"),
            from,
            sender,
            reply_to,
            to: addrs(b"to"),
            cc: addrs(b"cc"),
            bcc: addrs(b"bcc"),
            in_reply_to: get(b"in-reply-to"),
            message_id: get(b"message-id"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(Vec<u8>),
    Quoted(Vec<u8>),
    Comment(Vec<u8>),
    Special(u8),
}

fn tokenize(v: &[u8]) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() && out.len() < MAX_ADDRESSES * 8 {
        let c = v[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'"' => {
                let mut s = Vec::new();
                i += 1;
                while i < v.len() && v[i] != b'"' {
                    if v[i] == b'\\' && i + 1 < v.len() {
                        i += 1;
                    }
                    s.push(v[i]);
                    i += 1;
                }
                i += 1;
                out.push(Tok::Quoted(s));
            }
            b'(' => {
                let mut depth = 0usize;
                let mut s = Vec::new();
                while i < v.len() {
                    match v[i] {
                        b'\\' if i + 1 < v.len() => {
                            i += 1;
                            s.push(v[i]);
                        }
                        b'(' => {
                            if depth > 0 {
                                s.push(b'(');
                            }
                            depth += 1;
                        }
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                            s.push(b')');
                        }
                        b => s.push(b),
                    }
                    i += 1;
                }
                out.push(Tok::Comment(s));
            }
            b'[' => {
                let s0 = i;
                while i < v.len() && v[i] != b']' {
                    i += 1;
                }
                i = (i + 1).min(v.len());
                out.push(Tok::Word(v[s0..i].to_vec()));
            }
            b'<' | b'>' | b',' | b':' | b';' | b'@' | b'.' => {
                out.push(Tok::Special(c));
                i += 1;
            }
            _ => {
                let s0 = i;
                while i < v.len() && !b" \t\r\n\"(<>,:;@.[".contains(&v[i]) {
                    i += 1;
                }
                out.push(Tok::Word(v[s0..i].to_vec()));
            }
        }
    }
    out
}

/// Parse an address list (RFC 5322 §3.4) with groups, tolerantly.
pub fn parse_addresses(v: &[u8]) -> Vec<Address> {
    let toks = tokenize(v);
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_group = false;
    while i < toks.len() && out.len() < MAX_ADDRESSES {
        // One item: up to ',' (outside <>), or ':' starting a group, or ';'.
        let start = i;
        let mut angle = false;
        while i < toks.len() {
            match toks[i] {
                Tok::Special(b'<') => angle = true,
                Tok::Special(b'>') => angle = false,
                Tok::Special(b',') if !angle => break,
                Tok::Special(b':') if !angle && !in_group => break,
                Tok::Special(b';') if !angle && in_group => break,
                _ => {}
            }
            i += 1;
        }
        let item = &toks[start..i];
        let sep = toks.get(i).cloned();
        i += 1;
        if sep == Some(Tok::Special(b':')) {
            out.push(Address {
                mailbox: Some(phrase(item)),
                ..Default::default()
            });
            in_group = true;
            continue;
        }
        if let Some(a) = parse_mailbox(item) {
            out.push(a);
        }
        if sep == Some(Tok::Special(b';')) && in_group {
            out.push(Address::default());
            in_group = false;
            // Skip a ',' after the group's ';'.
            if toks.get(i) == Some(&Tok::Special(b',')) {
                i += 1;
            }
        }
    }
    if in_group {
        out.push(Address::default());
    }
    out
}

fn phrase(toks: &[Tok]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in toks {
        let w: &[u8] = match t {
            Tok::Word(w) | Tok::Quoted(w) => w,
            Tok::Special(b'.') => {
                out.push(b'.');
                continue;
            }
            _ => continue,
        };
        if !out.is_empty() && out.last() != Some(&b'.') {
            out.push(b' ');
        }
        out.extend_from_slice(w);
    }
    out
}

fn parse_mailbox(item: &[Tok]) -> Option<Address> {
    if item.is_empty() {
        return None;
    }
    let lt = item.iter().position(|t| *t == Tok::Special(b'<'));
    let (name, spec): (Option<Vec<u8>>, &[Tok]) = match lt {
        Some(p) => {
            let gt = item
                .iter()
                .skip(p)
                .position(|t| *t == Tok::Special(b'>'))
                .map_or(item.len(), |g| p + g);
            let n = phrase(&item[..p]);
            (if n.is_empty() { None } else { Some(n) }, &item[p + 1..gt])
        }
        None => {
            let comment = item.iter().rev().find_map(|t| match t {
                Tok::Comment(c) if !c.is_empty() => Some(c.clone()),
                _ => None,
            });
            (comment, item)
        }
    };
    // Route: @a,@b:local@host
    let (adl, spec) = match spec.iter().position(|t| *t == Tok::Special(b':')) {
        Some(c) if spec.first() == Some(&Tok::Special(b'@')) => {
            let mut r = Vec::new();
            for t in &spec[..c] {
                match t {
                    Tok::Word(w) => r.extend_from_slice(w),
                    Tok::Special(s) => r.push(*s),
                    _ => {}
                }
            }
            (Some(r), &spec[c + 1..])
        }
        _ => (None, spec),
    };
    let spec: Vec<&Tok> = spec
        .iter()
        .filter(|t| !matches!(t, Tok::Comment(_)))
        .collect();
    let at = spec.iter().rposition(|t| **t == Tok::Special(b'@'));
    let join = |ts: &[&Tok]| {
        let mut out = Vec::new();
        for t in ts {
            match t {
                Tok::Word(w) | Tok::Quoted(w) => out.extend_from_slice(w),
                Tok::Special(b'.') => out.push(b'.'),
                _ => {}
            }
        }
        out
    };
    let (local, host) = match at {
        Some(a) => (join(&spec[..a]), join(&spec[a + 1..])),
        None => (join(&spec), Vec::new()),
    };
    if local.is_empty() && host.is_empty() && name.is_none() {
        return None;
    }
    // Dovecot's placeholders for the parts a broken address lacks, so a
    // client never mistakes it for group syntax (NIL host).
    Some(Address {
        name,
        adl,
        mailbox: Some(if local.is_empty() {
            b"MISSING_MAILBOX".to_vec()
        } else {
            local
        }),
        host: Some(if host.is_empty() {
            b"MISSING_DOMAIN".to_vec()
        } else {
            host
        }),
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::imap::parser::{parse_command, CommandBody, FetchItem, Limits, Parsed};
    use crate::mail::imap::response::{write_body, write_envelope};

    fn crlf(s: &str) -> Vec<u8> {
        s.replace('\n', "\r\n").into_bytes()
    }

    fn bodystructure(raw: &[u8]) -> String {
        let mut out = Vec::new();
        write_body(&mut out, raw, &parse(raw), true, 0);
        String::from_utf8(out).unwrap()
    }

    fn body(raw: &[u8]) -> String {
        let mut out = Vec::new();
        write_body(&mut out, raw, &parse(raw), false, 0);
        String::from_utf8(out).unwrap()
    }

    fn envelope(raw: &[u8]) -> String {
        let p = parse(raw);
        let mut out = Vec::new();
        write_envelope(&mut out, &Envelope::from_header(&raw[p.header]));
        String::from_utf8(out).unwrap()
    }

    /// `BODY[spec]` through the real parser, as text (None: no such part).
    fn sec(raw: &[u8], spec: &str) -> Option<String> {
        let cmd = format!("a FETCH 1 BODY[{spec}]\r\n");
        let Parsed::Complete { command, .. } = parse_command(cmd.as_bytes(), &Limits::default())
        else {
            panic!("bad section {spec}");
        };
        let CommandBody::Fetch { items, .. } = command.body else {
            panic!()
        };
        let FetchItem::BodySection { section: s, .. } = &items[0] else {
            panic!()
        };
        section(raw, &parse(raw), s).map(|b| String::from_utf8(b.into_owned()).unwrap())
    }

    #[test]
    fn plain_text_without_content_type() {
        let raw = crlf("From: Fred Foobar <foobar@Blurdybloop.COM>\nSubject: afternoon meeting\nTo: mooch@owatagu.siam.edu\nMessage-Id: <B27397-0100000@Blurdybloop.COM>\n\nHello Joe, do you think we can meet at 3:30 tomorrow?\n");
        assert_eq!(
            bodystructure(&raw),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 55 1 NIL NIL NIL NIL)"
        );
        assert_eq!(
            envelope(&raw),
            "(NIL \"afternoon meeting\" ((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.COM\")) \
((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.COM\")) ((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.COM\")) \
((NIL NIL \"mooch\" \"owatagu.siam.edu\")) NIL NIL NIL \"<B27397-0100000@Blurdybloop.COM>\")"
        );
        assert_eq!(
            sec(&raw, "1").as_deref(),
            Some("Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n")
        );
        assert_eq!(sec(&raw, "TEXT"), sec(&raw, "1"));
        assert_eq!(sec(&raw, "").map(|s| s.len()), Some(raw.len()));
        assert_eq!(
            sec(&raw, "HEADER.FIELDS (SUBJECT to)").as_deref(),
            Some("Subject: afternoon meeting\r\nTo: mooch@owatagu.siam.edu\r\n\r\n")
        );
        assert_eq!(
            sec(&raw, "HEADER.FIELDS.NOT (FROM SUBJECT TO)").as_deref(),
            Some("Message-Id: <B27397-0100000@Blurdybloop.COM>\r\n\r\n")
        );
        assert_eq!(sec(&raw, "HEADER.FIELDS (X-NONE)").as_deref(), Some("\r\n"));
        assert!(sec(&raw, "HEADER")
            .unwrap()
            .ends_with("Blurdybloop.COM>\r\n\r\n"));
        assert_eq!(sec(&raw, "2"), None);
        assert_eq!(sec(&raw, "1.HEADER"), None);
    }

    const ALTERNATIVE: &str = "From: Alice <alice@example.org>
To: bob@example.net
Subject: Hi
Date: Mon, 1 Jan 2024 10:00:00 +0000
Message-ID: <alt@example.org>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary=\"b1\"

--b1
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Hello Bob
--b1
Content-Type: text/html; charset=utf-8

<p>Hello Bob</p>
--b1--
";

    #[test]
    fn multipart_alternative() {
        let raw = crlf(ALTERNATIVE);
        assert_eq!(
            bodystructure(&raw),
            "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 9 1 NIL NIL NIL NIL)\
(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 16 1 NIL NIL NIL NIL) \
\"alternative\" (\"boundary\" \"b1\") NIL NIL NIL)"
        );
        assert_eq!(
            body(&raw),
            "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 9 1)\
(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 16 1) \"alternative\")"
        );
        assert_eq!(sec(&raw, "1").as_deref(), Some("Hello Bob"));
        assert_eq!(sec(&raw, "2").as_deref(), Some("<p>Hello Bob</p>"));
        assert_eq!(
            sec(&raw, "2.MIME").as_deref(),
            Some("Content-Type: text/html; charset=utf-8\r\n\r\n")
        );
        assert_eq!(sec(&raw, "3"), None);
        assert_eq!(
            envelope(&raw),
            "(\"Mon, 1 Jan 2024 10:00:00 +0000\" \"Hi\" ((\"Alice\" NIL \"alice\" \"example.org\")) \
((\"Alice\" NIL \"alice\" \"example.org\")) ((\"Alice\" NIL \"alice\" \"example.org\")) \
((NIL NIL \"bob\" \"example.net\")) NIL NIL NIL \"<alt@example.org>\")"
        );
    }

    #[test]
    fn multipart_mixed_with_attachment() {
        let raw = crlf("Subject: report\nContent-Type: multipart/mixed;\n boundary=\"XyZ\"\n\nThis is a multi-part message in MIME format.\n--XyZ\nContent-Type: text/plain; charset=\"us-ascii\"\n\nSee attached.\n--XyZ\nContent-Type: application/pdf; name=\"report.pdf\"\nContent-Disposition: attachment; filename=\"report.pdf\"\nContent-Transfer-Encoding: base64\nContent-Language: en, de\nContent-ID: <part2@x>\nContent-Location: http://x/r.pdf\n\nJVBERi0xLjQK\n--XyZ--\nepilogue\n");
        assert_eq!(
            bodystructure(&raw),
            "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 13 1 NIL NIL NIL NIL)\
(\"application\" \"pdf\" (\"name\" \"report.pdf\") \"<part2@x>\" NIL \"base64\" 12 NIL \
(\"attachment\" (\"filename\" \"report.pdf\")) (\"en\" \"de\") \"http://x/r.pdf\") \
\"mixed\" (\"boundary\" \"XyZ\") NIL NIL NIL)"
        );
        assert_eq!(sec(&raw, "2").as_deref(), Some("JVBERi0xLjQK"));
        assert!(sec(&raw, "TEXT")
            .unwrap()
            .starts_with("This is a multi-part"));
        assert!(sec(&raw, "TEXT").unwrap().ends_with("epilogue\r\n"));
        assert_eq!(
            sec(&raw, "1.MIME").as_deref(),
            Some("Content-Type: text/plain; charset=\"us-ascii\"\r\n\r\n")
        );
        assert_eq!(sec(&raw, "1.1").as_deref(), Some("See attached."));
    }

    /// The shape Delta Chat sends: Autocrypt header, PGP/MIME (RFC 3156).
    #[test]
    fn delta_chat_pgp_encrypted() {
        let raw = crlf("Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\n\tboundary=\"1867c0e4_6bbf7a1d_2\"\nAutocrypt: addr=alice@example.org; prefer-encrypt=mutual;\n\tkeydata=xjMEZQAAABYJKwYBBAHaRw8BAQdA\nChat-Version: 1.0\nSubject: [...]\nFrom: <alice@example.org>\nTo: <bob@example.net>\nDate: Tue, 02 Jan 2024 12:00:00 +0000\nMessage-ID: <Mr.abc123@example.org>\nMIME-Version: 1.0\n\n--1867c0e4_6bbf7a1d_2\nContent-Type: application/pgp-encrypted; charset=\"utf-8\"\nContent-Description: PGP/MIME version identification\nContent-Transfer-Encoding: 7bit\n\nVersion: 1\n\n--1867c0e4_6bbf7a1d_2\nContent-Type: application/octet-stream; name=\"encrypted.asc\";\n\tcharset=\"utf-8\"\nContent-Description: OpenPGP encrypted message\nContent-Disposition: inline; filename=\"encrypted.asc\";\nContent-Transfer-Encoding: 7bit\n\n-----BEGIN PGP MESSAGE-----\n\nwV4D5tq63hTeebASAQdA\n-----END PGP MESSAGE-----\n\n\n--1867c0e4_6bbf7a1d_2--\n");
        let armored = "-----BEGIN PGP MESSAGE-----\r\n\r\nwV4D5tq63hTeebASAQdA\r\n-----END PGP MESSAGE-----\r\n\r\n";
        assert_eq!(armored.len(), 82);
        assert_eq!(
            bodystructure(&raw),
            "((\"application\" \"pgp-encrypted\" (\"charset\" \"utf-8\") NIL \"PGP/MIME version identification\" \"7bit\" 12 NIL NIL NIL NIL)\
(\"application\" \"octet-stream\" (\"name\" \"encrypted.asc\" \"charset\" \"utf-8\") NIL \"OpenPGP encrypted message\" \"7bit\" 82 NIL \
(\"inline\" (\"filename\" \"encrypted.asc\")) NIL NIL) \
\"encrypted\" (\"protocol\" \"application/pgp-encrypted\" \"boundary\" \"1867c0e4_6bbf7a1d_2\") NIL NIL NIL)"
        );
        assert_eq!(sec(&raw, "2").as_deref(), Some(armored));
        assert_eq!(sec(&raw, "1").as_deref(), Some("Version: 1\r\n"));
        assert_eq!(
            envelope(&raw),
            "(\"Tue, 02 Jan 2024 12:00:00 +0000\" \"[...]\" ((NIL NIL \"alice\" \"example.org\")) \
((NIL NIL \"alice\" \"example.org\")) ((NIL NIL \"alice\" \"example.org\")) \
((NIL NIL \"bob\" \"example.net\")) NIL NIL NIL \"<Mr.abc123@example.org>\")"
        );
        // Delta Chat's prefetch: folded headers come back with their folding.
        assert_eq!(
            sec(&raw, "HEADER.FIELDS (MESSAGE-ID DATE FROM CHAT-VERSION AUTOCRYPT-SETUP-MESSAGE)").as_deref(),
            Some("Chat-Version: 1.0\r\nFrom: <alice@example.org>\r\nDate: Tue, 02 Jan 2024 12:00:00 +0000\r\nMessage-ID: <Mr.abc123@example.org>\r\n\r\n")
        );
        assert!(sec(&raw, "HEADER.FIELDS (AUTOCRYPT)")
            .unwrap()
            .contains("\r\n\tkeydata="));
    }

    #[test]
    fn message_rfc822_forward() {
        let inner = "From: Alice <alice@example.org>\r\nSubject: Hi\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\nthere";
        let raw = crlf("From: Carol <carol@example.com>\nTo: Dave <dave@example.com>\nSubject: Fwd: Hi\nContent-Type: multipart/mixed; boundary=\"fwd\"\n\n--fwd\nContent-Type: text/plain\n\nSee below.\n--fwd\nContent-Type: message/rfc822\nContent-Disposition: inline\n\nFrom: Alice <alice@example.org>\nSubject: Hi\nContent-Type: text/plain; charset=utf-8\n\nHello\nthere\n--fwd--\n");
        let alice = "(\"Alice\" NIL \"alice\" \"example.org\")";
        assert_eq!(
            bodystructure(&raw),
            format!(
                "((\"text\" \"plain\" NIL NIL NIL \"7BIT\" 10 1 NIL NIL NIL NIL)\
(\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" {} \
(NIL \"Hi\" ({alice}) ({alice}) ({alice}) NIL NIL NIL NIL NIL) \
(\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 12 2 NIL NIL NIL NIL) 6 \
NIL (\"inline\" NIL) NIL NIL) \"mixed\" (\"boundary\" \"fwd\") NIL NIL NIL)",
                inner.len()
            )
        );
        assert_eq!(sec(&raw, "2").as_deref(), Some(inner));
        assert_eq!(
            sec(&raw, "2.HEADER").as_deref(),
            Some("From: Alice <alice@example.org>\r\nSubject: Hi\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
        );
        assert_eq!(sec(&raw, "2.TEXT").as_deref(), Some("Hello\r\nthere"));
        assert_eq!(sec(&raw, "2.1").as_deref(), Some("Hello\r\nthere"));
        assert_eq!(
            sec(&raw, "2.HEADER.FIELDS (SUBJECT)").as_deref(),
            Some("Subject: Hi\r\n\r\n")
        );
        assert_eq!(
            sec(&raw, "2.MIME").as_deref(),
            Some("Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n")
        );
        assert_eq!(sec(&raw, "1.HEADER"), None);
        assert_eq!(sec(&raw, "2.2"), None);
        assert_eq!(sec(&raw, "3"), None);
    }

    #[test]
    fn broken_mime_is_tolerated() {
        // Bare LF, no close delimiter.
        let raw = b"Subject: x\nContent-Type: multipart/mixed; boundary=zz\n\n--zz\n\nbody1\n--zz\nContent-Type: text/html\n\n<b>\n";
        let p = parse(raw);
        let PartKind::Multipart(ch) = &p.kind else {
            panic!("{p:?}")
        };
        assert_eq!(ch.len(), 2);
        assert_eq!(&raw[ch[0].body.clone()], b"body1");
        assert_eq!(&raw[ch[1].body.clone()], b"<b>\n");
        assert_eq!(ch[1].subtype, "html");
        // No boundary parameter: one text/plain part with the whole body.
        let raw = crlf("Content-Type: multipart/mixed\n\nstuff\n");
        assert_eq!(
            bodystructure(&raw),
            "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 7 1 NIL NIL NIL NIL) \"mixed\" NIL NIL NIL NIL)"
        );
        // Boundary that never appears: same.
        let raw = crlf("Content-Type: multipart/mixed; boundary=nope\n\nstuff\n");
        assert!(bodystructure(&raw).starts_with("((\"text\" \"plain\""));
        // Header only, no blank line; and nothing at all.
        let raw = b"Subject: only a header";
        let p = parse(raw);
        assert_eq!((p.header.clone(), p.body.clone()), (0..22, 22..22));
        assert_eq!(sec(raw, "TEXT").as_deref(), Some(""));
        assert_eq!(
            bodystructure(b""),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)"
        );
        // Garbage content type and parameters.
        let raw = crlf("Content-Type: ;;;=; a=\"unterminated\nContent-Disposition: ;\n\nx");
        assert!(bodystructure(&raw).starts_with("(\"text\" \"plain\""));
        // message/rfc822 in base64 stays opaque.
        let raw = crlf(
            "Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nRnJvbTogeA==\n",
        );
        assert_eq!(parse(&raw).kind, PartKind::Single);
    }

    #[test]
    fn nesting_and_part_count_are_bounded() {
        // 200 nested message/rfc822: parsed to MAX_DEPTH, no stack overflow.
        let mut raw = Vec::new();
        for _ in 0..200 {
            raw.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        }
        raw.extend_from_slice(b"Subject: core\r\n\r\nbody");
        let p = parse(&raw);
        let mut depth = 0;
        let mut cur = &p;
        while let PartKind::Message(inner) = &cur.kind {
            depth += 1;
            cur = inner;
        }
        assert_eq!(depth, MAX_DEPTH);
        let mut out = Vec::new();
        write_body(&mut out, &raw, &p, true, 0);
        assert!(out.len() > 1000);
        // Nested multiparts likewise.
        let mut raw = Vec::new();
        for i in 0..100 {
            raw.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n")
                    .as_bytes(),
            );
        }
        let _ = bodystructure(&raw);
        // Many parts: capped.
        let mut raw = b"Content-Type: multipart/mixed; boundary=q\r\n\r\n".to_vec();
        for _ in 0..5000 {
            raw.extend_from_slice(b"--q\r\n\r\nx\r\n");
        }
        let PartKind::Multipart(ch) = parse(&raw).kind else {
            panic!()
        };
        assert!(ch.len() < MAX_PARTS);
    }

    #[test]
    fn addresses() {
        let a = |s: &str| {
            let mut out = Vec::new();
            let e = Envelope {
                to: parse_addresses(s.as_bytes()),
                ..Default::default()
            };
            write_envelope(&mut out, &e);
            let s = String::from_utf8(out).unwrap();
            s["(NIL NIL NIL NIL NIL ".len()..s.len() - " NIL NIL NIL NIL)".len()].to_owned()
        };
        assert_eq!(
            a("undisclosed-recipients:;"),
            "((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL))"
        );
        assert_eq!(
            a("A Group: a@b.c, \"C D\" <c@d.e>;, f@g.h"),
            "((NIL NIL \"A Group\" NIL)(NIL NIL \"a\" \"b.c\")(\"C D\" NIL \"c\" \"d.e\")(NIL NIL NIL NIL)(NIL NIL \"f\" \"g.h\"))"
        );
        assert_eq!(
            a("bob@example.net (Bob Smith)"),
            "((\"Bob Smith\" NIL \"bob\" \"example.net\"))"
        );
        assert_eq!(
            a("\"Last, First\" <first.last@example.com>"),
            "((\"Last, First\" NIL \"first.last\" \"example.com\"))"
        );
        assert_eq!(
            a("<@r1,@r2:user@host>"),
            "((NIL \"@r1,@r2\" \"user\" \"host\"))"
        );
        assert_eq!(
            a("=?utf-8?q?J=C3=B6rg?= <j@x.de>"),
            "((\"=?utf-8?q?J=C3=B6rg?=\" NIL \"j\" \"x.de\"))"
        );
        assert_eq!(a("broken"), "((NIL NIL \"broken\" \"MISSING_DOMAIN\"))");
        assert_eq!(a("a@[127.0.0.1]"), "((NIL NIL \"a\" \"[127.0.0.1]\"))");
        assert_eq!(a(""), "NIL");
        assert_eq!(a(",,,"), "NIL");
        assert_eq!(a("\"J\\\"r\" <x@y>"), "((\"J\\\"r\" NIL \"x\" \"y\"))");
        let many = "a@b, ".repeat(3000);
        assert_eq!(parse_addresses(many.as_bytes()).len(), MAX_ADDRESSES);
    }

    #[test]
    fn envelope_sender_reply_to_and_empty() {
        let raw =
            crlf("From: a@b\nSender: s@b\nReply-To:\nIn-Reply-To: <p@b>\nSubject:  spaced  \n\n");
        assert_eq!(
            envelope(&raw),
            "(NIL \"spaced\" ((NIL NIL \"a\" \"b\")) ((NIL NIL \"s\" \"b\")) ((NIL NIL \"a\" \"b\")) NIL NIL NIL \"<p@b>\" NIL)"
        );
        let raw = crlf("Subject: =?utf-8?B?8J+Ygg==?=\n\n");
        assert!(envelope(&raw).starts_with("(NIL \"=?utf-8?B?8J+Ygg==?=\" NIL NIL NIL"));
        let raw = "Subject: Grüße\r\n\r\n".as_bytes();
        assert!(envelope(raw).starts_with("(NIL {7}\r\nGrüße NIL"));
    }

    #[test]
    fn partial_clamps() {
        assert_eq!(partial(b"0123456789", 2, 3), b"234");
        assert_eq!(partial(b"0123456789", 8, 100), b"89");
        assert_eq!(partial(b"0123456789", 100, 1), b"");
        assert_eq!(partial(b"", u32::MAX, u32::MAX), b"");
    }
}
