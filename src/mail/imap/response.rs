//! Response encoding (RFC 3501 §7, §9 `response`): status responses with
//! response codes, untagged data, FETCH items with ENVELOPE and
//! BODYSTRUCTURE, and the string quoting rules.
//!
//! Every function appends to a caller-owned `Vec<u8>` and every response
//! ends with CRLF. Strings are written quoted when that is safe (7-bit, no
//! CR/LF/NUL, not long) and as a literal otherwise, so no byte a message
//! contains can break the framing.

use std::io::Write as _;

use super::mime::{Address, Envelope, Part, PartKind};
use super::parser::{Section, SectionText, StatusItem};
use super::sequence::format_numbers;
use super::types::{DateTime, Flag};

/// Longest string written quoted; longer ones go as literals, which
/// clients read without scanning for escapes.
pub const MAX_QUOTED: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    Preauth,
    Bye,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
            Status::Preauth => "PREAUTH",
            Status::Bye => "BYE",
        }
    }
}

/// Response codes (RFC 3501 §7.1, RFC 4315, RFC 5530, RFC 7162, RFC 6154).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    Alert,
    Capability(Vec<String>),
    Parse,
    /// `allow_new` adds `\*` (clients may create keywords).
    PermanentFlags {
        flags: Vec<Flag>,
        allow_new: bool,
    },
    ReadOnly,
    ReadWrite,
    TryCreate,
    UidNext(u32),
    UidValidity(u32),
    Unseen(u32),
    AppendUid {
        uid_validity: u32,
        uids: Vec<u32>,
    },
    /// Source and destination UIDs in corresponding order.
    CopyUid {
        uid_validity: u32,
        source: Vec<u32>,
        dest: Vec<u32>,
    },
    UidNotSticky,
    HighestModSeq(u64),
    NoModSeq,
    /// CONDSTORE: messages that failed UNCHANGEDSINCE, already formatted.
    Modified(String),
    Closed,
    TooBig,
    Limit,
    OverQuota,
    AuthenticationFailed,
    AuthorizationFailed,
    Unavailable,
    Nonexistent,
    AlreadyExists,
    Cannot,
    ServerBug,
    ClientBug,
    Expunged,
    InUse,
    NoPerm,
    UseAttr,
    CompressionActive,
    Other(String),
}

impl Code {
    fn write(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        let simple = |out: &mut Vec<u8>, s: &str| out.extend_from_slice(s.as_bytes());
        match self {
            Code::Alert => simple(out, "ALERT"),
            Code::Capability(c) => {
                simple(out, "CAPABILITY");
                for cap in c {
                    out.push(b' ');
                    simple(out, cap);
                }
            }
            Code::Parse => simple(out, "PARSE"),
            Code::PermanentFlags { flags, allow_new } => {
                simple(out, "PERMANENTFLAGS ");
                write_flags_with(out, flags, *allow_new);
            }
            Code::ReadOnly => simple(out, "READ-ONLY"),
            Code::ReadWrite => simple(out, "READ-WRITE"),
            Code::TryCreate => simple(out, "TRYCREATE"),
            Code::UidNext(n) => {
                let _ = write!(out, "UIDNEXT {n}");
            }
            Code::UidValidity(n) => {
                let _ = write!(out, "UIDVALIDITY {n}");
            }
            Code::Unseen(n) => {
                let _ = write!(out, "UNSEEN {n}");
            }
            Code::AppendUid { uid_validity, uids } => {
                let _ = write!(out, "APPENDUID {uid_validity} {}", format_numbers(uids));
            }
            Code::CopyUid {
                uid_validity,
                source,
                dest,
            } => {
                let _ = write!(
                    out,
                    "COPYUID {uid_validity} {} {}",
                    format_numbers(source),
                    format_numbers(dest)
                );
            }
            Code::UidNotSticky => simple(out, "UIDNOTSTICKY"),
            Code::HighestModSeq(n) => {
                let _ = write!(out, "HIGHESTMODSEQ {n}");
            }
            Code::NoModSeq => simple(out, "NOMODSEQ"),
            Code::Modified(set) => {
                let _ = write!(out, "MODIFIED {set}");
            }
            Code::Closed => simple(out, "CLOSED"),
            Code::TooBig => simple(out, "TOOBIG"),
            Code::Limit => simple(out, "LIMIT"),
            Code::OverQuota => simple(out, "OVERQUOTA"),
            Code::AuthenticationFailed => simple(out, "AUTHENTICATIONFAILED"),
            Code::AuthorizationFailed => simple(out, "AUTHORIZATIONFAILED"),
            Code::Unavailable => simple(out, "UNAVAILABLE"),
            Code::Nonexistent => simple(out, "NONEXISTENT"),
            Code::AlreadyExists => simple(out, "ALREADYEXISTS"),
            Code::Cannot => simple(out, "CANNOT"),
            Code::ServerBug => simple(out, "SERVERBUG"),
            Code::ClientBug => simple(out, "CLIENTBUG"),
            Code::Expunged => simple(out, "EXPUNGED"),
            Code::InUse => simple(out, "INUSE"),
            Code::NoPerm => simple(out, "NOPERM"),
            Code::UseAttr => simple(out, "USEATTR"),
            Code::CompressionActive => simple(out, "COMPRESSIONACTIVE"),
            // Only printable text that cannot close the bracket early.
            Code::Other(s) => out.extend(
                s.bytes()
                    .filter(|&b| (0x20..0x7f).contains(&b) && b != b']'),
            ),
        }
        out.push(b']');
    }
}

/// Human-readable text: printable ASCII only, so it cannot break a line.
fn write_text(out: &mut Vec<u8>, text: &str) {
    out.extend(
        text.bytes()
            .map(|b| if (0x20..0x7f).contains(&b) { b } else { b'?' }),
    );
}

fn status_line(out: &mut Vec<u8>, tag: &str, status: Status, code: Option<&Code>, text: &str) {
    out.extend_from_slice(tag.as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.as_str().as_bytes());
    if let Some(c) = code {
        out.push(b' ');
        c.write(out);
    }
    // `resp-text` needs text after a code; a lone space is ugly but legal.
    if !text.is_empty() || code.is_none() {
        out.push(b' ');
        write_text(out, text);
    }
    out.extend_from_slice(b"\r\n");
}

/// `tag OK [code] text`.
pub fn tagged(out: &mut Vec<u8>, tag: &str, status: Status, code: Option<&Code>, text: &str) {
    // A tag came from the parser (astring chars); still keep it printable.
    let tag: String = tag.chars().filter(|c| c.is_ascii_graphic()).collect();
    status_line(
        out,
        if tag.is_empty() { "*" } else { &tag },
        status,
        code,
        text,
    );
}

/// `* OK [code] text` (also BYE, PREAUTH, and `* BAD` for tagless errors).
pub fn untagged(out: &mut Vec<u8>, status: Status, code: Option<&Code>, text: &str) {
    status_line(out, "*", status, code, text);
}

/// `+ text`: the continuation request for a literal, AUTHENTICATE or IDLE.
pub fn continuation(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"+ ");
    write_text(out, text);
    out.extend_from_slice(b"\r\n");
}

/// `+ base64`: an AUTHENTICATE challenge.
pub fn continuation_base64(out: &mut Vec<u8>, data: &[u8]) {
    use base64::Engine as _;
    out.extend_from_slice(b"+ ");
    out.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(data)
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
}

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
        PartKind::Multipart(children) if depth < super::mime::MAX_DEPTH + 1 => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::imap::mime;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    /// The responses RFC 3501 §7 and §6 show, byte for byte (mailbox names
    /// we always quote, which the grammar allows).
    #[test]
    fn rfc3501_status_responses() {
        assert_eq!(
            s(|o| untagged(
                o,
                Status::Ok,
                Some(&Code::Unseen(17)),
                "Message 17 is the first unseen message"
            )),
            "* OK [UNSEEN 17] Message 17 is the first unseen message\r\n"
        );
        let pf = Code::PermanentFlags {
            flags: vec![Flag::Deleted, Flag::Seen],
            allow_new: true,
        };
        assert_eq!(
            s(|o| untagged(o, Status::Ok, Some(&pf), "Limited")),
            "* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n"
        );
        assert_eq!(
            s(|o| untagged(
                o,
                Status::Ok,
                Some(&Code::UidValidity(3857529045)),
                "UIDs valid"
            )),
            "* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
        );
        assert_eq!(
            s(|o| tagged(
                o,
                "A142",
                Status::Ok,
                Some(&Code::ReadWrite),
                "SELECT completed"
            )),
            "A142 OK [READ-WRITE] SELECT completed\r\n"
        );
        assert_eq!(
            s(|o| tagged(
                o,
                "A932",
                Status::Ok,
                Some(&Code::ReadOnly),
                "EXAMINE completed"
            )),
            "A932 OK [READ-ONLY] EXAMINE completed\r\n"
        );
        assert_eq!(
            s(|o| tagged(o, "A003", Status::No, Some(&Code::TryCreate), "")),
            "A003 NO [TRYCREATE]\r\n"
        );
        assert_eq!(
            s(|o| tagged(o, "a001", Status::No, None, "bad\r\ninjected")),
            "a001 NO bad??injected\r\n"
        );
        assert_eq!(
            s(|o| untagged(o, Status::Bye, None, "IMAP4rev1 Server logging out")),
            "* BYE IMAP4rev1 Server logging out\r\n"
        );
        assert_eq!(
            s(|o| untagged(
                o,
                Status::Preauth,
                None,
                "IMAP4rev1 server logged in as Smith"
            )),
            "* PREAUTH IMAP4rev1 server logged in as Smith\r\n"
        );
        assert_eq!(
            s(|o| untagged(o, Status::Bad, None, "Empty command line")),
            "* BAD Empty command line\r\n"
        );
        assert_eq!(
            s(|o| continuation(o, "Ready for additional command text")),
            "+ Ready for additional command text\r\n"
        );
        assert_eq!(s(|o| continuation_base64(o, b"")), "+ \r\n");
        assert_eq!(
            s(|o| untagged(
                o,
                Status::Ok,
                Some(&Code::Capability(vec!["IMAP4rev1".into(), "IDLE".into()])),
                "ready"
            )),
            "* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n"
        );
        assert_eq!(
            s(|o| untagged(o, Status::Ok, Some(&Code::Other("X]Y".into())), "t")),
            "* OK [XY] t\r\n"
        );
    }

    #[test]
    fn rfc3501_data_responses() {
        assert_eq!(
            s(|o| capability(
                o,
                &["IMAP4rev1", "STARTTLS", "AUTH=GSSAPI", "LOGINDISABLED"]
            )),
            "* CAPABILITY IMAP4rev1 STARTTLS AUTH=GSSAPI LOGINDISABLED\r\n"
        );
        assert_eq!(
            s(|o| flags(
                o,
                &[
                    Flag::Answered,
                    Flag::Flagged,
                    Flag::Deleted,
                    Flag::Seen,
                    Flag::Draft
                ]
            )),
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
        );
        assert_eq!(s(|o| exists(o, 172)), "* 172 EXISTS\r\n");
        assert_eq!(s(|o| recent(o, 1)), "* 1 RECENT\r\n");
        assert_eq!(s(|o| expunge(o, 44)), "* 44 EXPUNGE\r\n");
        assert_eq!(s(|o| search(o, &[2, 3, 6], None)), "* SEARCH 2 3 6\r\n");
        assert_eq!(s(|o| search(o, &[], Some(5))), "* SEARCH\r\n");
        assert_eq!(
            s(|o| search(o, &[2, 5], Some(917162500))),
            "* SEARCH 2 5 (MODSEQ 917162500)\r\n"
        );
        assert_eq!(
            s(|o| list(o, false, &["\\Noselect"], Some('/'), "~/Mail/foo")),
            "* LIST (\\Noselect) \"/\" \"~/Mail/foo\"\r\n"
        );
        assert_eq!(
            s(|o| list(o, true, &[], Some('.'), "#news.comp.mail.mime")),
            "* LSUB () \".\" \"#news.comp.mail.mime\"\r\n"
        );
        assert_eq!(
            s(|o| list(o, false, &["\\HasNoChildren", "\\Sent"], Some('\\'), "Sent")),
            "* LIST (\\HasNoChildren \\Sent) \"\\\\\" \"Sent\"\r\n"
        );
        assert_eq!(
            s(|o| list(o, false, &["\\Noselect"], None, "")),
            "* LIST (\\Noselect) NIL \"\"\r\n"
        );
        assert_eq!(
            s(|o| status(
                o,
                "blurdybloop",
                &[(StatusItem::Messages, 231), (StatusItem::UidNext, 44292)]
            )),
            "* STATUS \"blurdybloop\" (MESSAGES 231 UIDNEXT 44292)\r\n"
        );
        assert_eq!(s(|o| enabled(o, &["CONDSTORE"])), "* ENABLED CONDSTORE\r\n");
        assert_eq!(
            s(|o| id(o, Some(&[("name", "frontdoor")]))),
            "* ID (\"name\" \"frontdoor\")\r\n"
        );
        assert_eq!(s(|o| id(o, None)), "* ID NIL\r\n");
        assert_eq!(
            s(|o| namespace(o, "", '/')),
            "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n"
        );
        assert_eq!(
            s(|o| metadata(
                o,
                "",
                &[("/shared/comment", Some(b"hi")), ("/shared/admin", None)]
            )),
            "* METADATA \"\" (/shared/comment {2}\r\nhi /shared/admin NIL)\r\n"
        );
        assert_eq!(
            s(|o| quota_root(o, "INBOX", &[""])),
            "* QUOTAROOT \"INBOX\" \"\"\r\n"
        );
        assert_eq!(
            s(|o| quota(o, "", &[("STORAGE", 10, 512)])),
            "* QUOTA \"\" (STORAGE 10 512)\r\n"
        );
    }

    /// §6.3.1 SELECT, §6.4.6 STORE, §6.4.8 UID FETCH and §6.2.2
    /// AUTHENTICATE answers, byte for byte.
    #[test]
    fn rfc3501_section6_sample_answers() {
        let got = s(|o| {
            exists(o, 172);
            recent(o, 1);
            untagged(
                o,
                Status::Ok,
                Some(&Code::Unseen(12)),
                "Message 12 is first unseen",
            );
            untagged(
                o,
                Status::Ok,
                Some(&Code::UidValidity(3857529045)),
                "UIDs valid",
            );
            untagged(
                o,
                Status::Ok,
                Some(&Code::UidNext(4392)),
                "Predicted next UID",
            );
            flags(
                o,
                &[
                    Flag::Answered,
                    Flag::Flagged,
                    Flag::Deleted,
                    Flag::Seen,
                    Flag::Draft,
                ],
            );
            let pf = Code::PermanentFlags {
                flags: vec![Flag::Deleted, Flag::Seen],
                allow_new: true,
            };
            untagged(o, Status::Ok, Some(&pf), "Limited");
            tagged(
                o,
                "A142",
                Status::Ok,
                Some(&Code::ReadWrite),
                "SELECT completed",
            );
        });
        assert_eq!(
            got,
            "* 172 EXISTS\r\n* 1 RECENT\r\n* OK [UNSEEN 12] Message 12 is first unseen\r\n\
* OK [UIDVALIDITY 3857529045] UIDs valid\r\n* OK [UIDNEXT 4392] Predicted next UID\r\n\
* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\nA142 OK [READ-WRITE] SELECT completed\r\n"
        );
        assert_eq!(
            s(|o| fetch(o, 2, &[FetchData::Flags(&[Flag::Deleted, Flag::Seen])])),
            "* 2 FETCH (FLAGS (\\Deleted \\Seen))\r\n"
        );
        assert_eq!(
            s(|o| fetch(
                o,
                23,
                &[FetchData::Flags(&[Flag::Seen]), FetchData::Uid(4827313)]
            )),
            "* 23 FETCH (FLAGS (\\Seen) UID 4827313)\r\n"
        );
        use base64::Engine as _;
        let challenge = "YDMGCSqGSIb3EgECAgIBAAD/////6jcyG4GE3KkTzBeBiVHeceP2CWY0SR0fAQAgAAQEBAQ=";
        let data = base64::engine::general_purpose::STANDARD
            .decode(challenge)
            .unwrap();
        assert_eq!(
            s(|o| continuation_base64(o, &data)),
            format!("+ {challenge}\r\n")
        );
        assert_eq!(
            s(|o| tagged(
                o,
                "A001",
                Status::Ok,
                None,
                "GSSAPI authentication successful"
            )),
            "A001 OK GSSAPI authentication successful\r\n"
        );
    }

    #[test]
    fn uidplus_and_condstore_codes() {
        let c = Code::AppendUid {
            uid_validity: 38505,
            uids: vec![3955],
        };
        assert_eq!(
            s(|o| tagged(o, "A003", Status::Ok, Some(&c), "APPEND completed")),
            "A003 OK [APPENDUID 38505 3955] APPEND completed\r\n"
        );
        let c = Code::CopyUid {
            uid_validity: 38505,
            source: vec![304, 319, 320],
            dest: vec![3956, 3957, 3958],
        };
        assert_eq!(
            s(|o| tagged(o, "A004", Status::Ok, Some(&c), "Done")),
            "A004 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n"
        );
        assert_eq!(
            s(|o| untagged(
                o,
                Status::Ok,
                Some(&Code::HighestModSeq(715194045007)),
                "Highest"
            )),
            "* OK [HIGHESTMODSEQ 715194045007] Highest\r\n"
        );
        assert_eq!(
            s(|o| untagged(o, Status::Ok, Some(&Code::NoModSeq), "No")),
            "* OK [NOMODSEQ] No\r\n"
        );
        assert_eq!(
            s(|o| tagged(
                o,
                "d105",
                Status::Ok,
                Some(&Code::Modified("7,9".into())),
                "x"
            )),
            "d105 OK [MODIFIED 7,9] x\r\n"
        );
        assert_eq!(
            s(|o| untagged(
                o,
                Status::Ok,
                Some(&Code::UidNext(4392)),
                "Predicted next UID"
            )),
            "* OK [UIDNEXT 4392] Predicted next UID\r\n"
        );
    }

    #[test]
    fn string_quoting() {
        assert_eq!(s(|o| write_string(o, b"plain")), "\"plain\"");
        assert_eq!(s(|o| write_string(o, b"a\"b\\c")), "\"a\\\"b\\\\c\"");
        assert_eq!(
            s(|o| write_string(o, b"two\r\nlines")),
            "{10}\r\ntwo\r\nlines"
        );
        assert_eq!(s(|o| write_string(o, "Grüße".as_bytes())), "{7}\r\nGrüße");
        let long = "x".repeat(MAX_QUOTED + 1);
        assert!(s(|o| write_string(o, long.as_bytes())).starts_with("{1025}\r\n"));
        assert_eq!(s(|o| write_nstring(o, None)), "NIL");
        assert_eq!(s(|o| write_astring(o, b"INBOX")), "INBOX");
        assert_eq!(s(|o| write_astring(o, b"nil")), "\"nil\"");
        assert_eq!(s(|o| write_astring(o, b"a b")), "\"a b\"");
        assert_eq!(s(|o| write_astring(o, b"")), "\"\"");
    }

    #[test]
    fn fetch_items() {
        assert_eq!(
            s(|o| fetch(
                o,
                23,
                &[
                    FetchData::Flags(&[Flag::Seen]),
                    FetchData::Rfc822Size(44827)
                ]
            )),
            "* 23 FETCH (FLAGS (\\Seen) RFC822.SIZE 44827)\r\n"
        );
        let sec = Section {
            part: vec![],
            text: Some(SectionText::HeaderFields(vec![
                "DATE".into(),
                "FROM".into(),
            ])),
        };
        let hdr = b"Date: x\r\n\r\n";
        assert_eq!(
            s(|o| fetch(
                o,
                2,
                &[
                    FetchData::Uid(7),
                    FetchData::BodySection {
                        section: &sec,
                        origin: None,
                        data: Some(hdr)
                    }
                ]
            )),
            "* 2 FETCH (UID 7 BODY[HEADER.FIELDS (DATE FROM)] {11}\r\nDate: x\r\n\r\n)\r\n"
        );
        let sec = Section {
            part: vec![1, 2],
            text: Some(SectionText::Mime),
        };
        assert_eq!(
            s(|o| fetch(
                o,
                1,
                &[FetchData::BodySection {
                    section: &sec,
                    origin: Some(0),
                    data: None
                }]
            )),
            "* 1 FETCH (BODY[1.2.MIME]<0> NIL)\r\n"
        );
        let sec = Section {
            part: vec![3],
            text: None,
        };
        assert_eq!(
            s(|o| fetch(
                o,
                1,
                &[
                    FetchData::BodySection {
                        section: &sec,
                        origin: None,
                        data: Some(b"")
                    },
                    FetchData::ModSeq(624140003)
                ]
            )),
            "* 1 FETCH (BODY[3] {0}\r\n MODSEQ (624140003))\r\n"
        );
        let dt = DateTime::parse(b"17-Jul-1996 02:44:25 -0700").unwrap();
        assert_eq!(
            s(|o| fetch(o, 3, &[FetchData::InternalDate(dt), FetchData::Rfc822Header(b"A: b\r\n\r\n")])),
            "* 3 FETCH (INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.HEADER {8}\r\nA: b\r\n\r\n)\r\n"
        );
    }

    /// RFC 3501 §8's `a003 fetch 12 full` answer, rebuilt from a message
    /// with that header and a 92-line, 3028-octet text body. The sample
    /// is wrapped for display; as §9 `env-cc = "(" 1*address ")"` says,
    /// addresses follow each other with no space between them.
    #[test]
    fn rfc3501_section8_fetch_full() {
        let header = "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n\
From: Terry Gray <gray@cac.washington.edu>\r\n\
Subject: IMAP4rev1 WG mtg summary and minutes\r\n\
To: imap@cac.washington.edu\r\n\
cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n\
Message-Id: <B27397-0100000@cac.washington.edu>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\
\r\n";
        let mut body = String::new();
        for _ in 0..91 {
            body.push_str(&"y".repeat(31));
            body.push_str("\r\n");
        }
        body.push_str(&"z".repeat(3028 - body.len() - 2));
        body.push_str("\r\n");
        assert_eq!(body.len(), 3028);
        let raw = format!("{header}{body}");
        let raw = raw.as_bytes();
        let part = mime::parse(raw);
        let env = mime::Envelope::from_header(&raw[part.header.clone()]);
        let dt = DateTime::parse(b"17-Jul-1996 02:44:25 -0700").unwrap();
        let got = s(|o| {
            fetch(
                o,
                12,
                &[
                    FetchData::Flags(&[Flag::Seen]),
                    FetchData::InternalDate(dt),
                    FetchData::Rfc822Size(4286),
                    FetchData::Envelope(&env),
                    FetchData::Body { raw, part: &part },
                ],
            )
        });
        let want = "* 12 FETCH (FLAGS (\\Seen) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" \
RFC822.SIZE 4286 ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \
\"IMAP4rev1 WG mtg summary and minutes\" \
((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
((NIL NIL \"imap\" \"cac.washington.edu\")) \
((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")\
(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) NIL NIL \
\"<B27397-0100000@cac.washington.edu>\") \
BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3028 92))\r\n";
        assert_eq!(got, want);
    }
}
