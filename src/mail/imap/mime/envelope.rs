//! ENVELOPE (RFC 3501 §7.4.2) and the RFC 5322 address lists in it, bounded
//! by [`MAX_ADDRESSES`].

use super::{header_fields, unfold, MAX_ADDRESSES};

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
