//! The IMAP command parser: bytes in, one typed [`Command`] out.
//!
//! Pure and I/O-free. The session keeps the bytes it has read in a buffer
//! and calls [`parse_command`] on it after every read; the answer says what
//! to do next:
//!
//! * [`Parsed::Complete`]: a whole command; drop `consumed` bytes.
//! * [`Parsed::NeedMore`]: read more and call again with the grown buffer.
//! * [`Parsed::NeedLiteral`]: a literal's header is in, its data is not. For a
//!   synchronising literal (`{n}`) the server sends `+ ...` once per `at`
//!   offset; for a non-synchronising one (`{n+}`, LITERAL+, RFC 7888) it just
//!   reads on.
//! * [`Parsed::Bad`]: a syntax error; reply `tag BAD reason` (or `* BAD` when
//!   no tag could be read), drop `consumed` bytes and carry on.
//! * [`Parsed::Fatal`]: the stream can no longer be framed (a line longer than
//!   the limit with no end in sight, a non-synchronising literal over the
//!   limit, whose bytes are already on their way); reply `* BYE` and close.
//!
//! Grammar: RFC 3501 §9 with UIDPLUS (RFC 4315), MOVE (RFC 6851), ENABLE
//! (RFC 5161), ID (RFC 2971), NAMESPACE (RFC 2342), LITERAL+ (RFC 7888),
//! SPECIAL-USE / LIST-EXTENDED / LIST-STATUS (RFC 6154, 5258, 5819),
//! CONDSTORE (RFC 7162), METADATA (RFC 5464), QUOTA (RFC 9208), UNSELECT
//! (RFC 3691), IDLE (RFC 2177), SASL-IR (RFC 4959), COMPRESS (RFC 4978).
//!
//! Invariants: every size the client claims is checked against [`Limits`]
//! before anything is allocated for it, recursion (SEARCH parentheses, NOT,
//! OR) is bounded by `max_depth`, every list by `max_items`, and no input
//! makes a function here panic. Parsing restarts from the buffer's start on
//! each call, which is cheap because the parser never copies the APPEND
//! literal until the whole command is in.

//!
//! Layout: this file holds the entry point and the parser core (tokens,
//! atoms, strings, literals, flags, sequence sets, dates); [`Command`] and
//! the dispatch by command name are in `command.rs`, each command family's
//! arguments beside it (`search.rs`, `fetch.rs`, `store.rs`, `metadata.rs`),
//! and the AUTHENTICATE and IDLE continuation lines in `auth.rs`.

use super::sequence::SeqSet;
use super::types::{Date, Flag};

mod auth;
mod command;
mod fetch;
mod metadata;
mod search;
mod store;
#[cfg(test)]
mod tests;

pub use auth::{parse_auth_line, parse_idle_done, sasl_plain, AuthLine, IdleEnd};
pub use command::{Command, CommandBody, ListCommand, StatusItem};
pub use fetch::{FetchItem, Section, SectionText};
pub use metadata::MetadataDepth;
pub use search::SearchKey;
pub use store::StoreMode;

/// Hard limits on what one command may contain.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest line segment (between literals), CRLF included.
    pub max_line: usize,
    /// Largest literal anywhere but the APPEND message.
    pub max_literal: usize,
    /// Largest APPEND message literal.
    pub max_append: usize,
    /// Most bytes in one command, APPEND message not counted.
    pub max_command: usize,
    /// Most items in any list (flags, fetch items, search keys, ...).
    pub max_items: usize,
    /// Deepest nesting of SEARCH parentheses / NOT / OR.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // RFC 7162 §4 asks servers to take lines of at least 8192 octets.
            max_line: 64 * 1024,
            max_literal: 64 * 1024,
            max_append: 64 * 1024 * 1024,
            max_command: 1024 * 1024,
            max_items: 1000,
            max_depth: 32,
        }
    }
}

/// What [`parse_command`] found at the start of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Complete {
        command: Command,
        consumed: usize,
    },
    NeedMore,
    /// `at` is the offset of the literal's first data byte in the buffer.
    NeedLiteral {
        size: usize,
        sync: bool,
        at: usize,
    },
    Bad {
        tag: Option<String>,
        reason: String,
        consumed: usize,
    },
    Fatal {
        tag: Option<String>,
        reason: String,
    },
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Parse the command at the start of `buf`; see the module doc.
pub fn parse_command(buf: &[u8], limits: &Limits) -> Parsed {
    let mut p = P {
        buf,
        pos: 0,
        lim: limits,
        items: 0,
        tag: None,
    };
    match p.command() {
        Ok(command) => Parsed::Complete {
            command,
            consumed: p.pos,
        },
        Err(Stop::More) => Parsed::NeedMore,
        Err(Stop::Literal { size, sync, at }) => Parsed::NeedLiteral { size, sync, at },
        Err(Stop::Syntax(reason)) => match skip_command(buf, p.pos, limits) {
            Skip::To(consumed) => Parsed::Bad {
                tag: p.tag,
                reason,
                consumed,
            },
            Skip::More => Parsed::NeedMore,
            Skip::Fatal(reason) => Parsed::Fatal { tag: p.tag, reason },
        },
        Err(Stop::TooBig { sync: true, size }) => {
            // The literal's header line ends here (its CRLF is consumed);
            // the client waits for a `+` that will not come.
            let reason = format!("[TOOBIG] literal of {size} octets is over the limit");
            Parsed::Bad {
                tag: p.tag,
                reason,
                consumed: p.pos,
            }
        }
        Err(Stop::TooBig { sync: false, size }) => Parsed::Fatal {
            tag: p.tag,
            reason: format!("non-synchronizing literal of {size} octets is over the limit"),
        },
        Err(Stop::Fatal(reason)) => Parsed::Fatal { tag: p.tag, reason },
    }
}

enum Skip {
    To(usize),
    More,
    Fatal(String),
}

fn skip_line(buf: &[u8], from: usize, lim: &Limits) -> Skip {
    let rest = buf.get(from..).unwrap_or_default();
    match rest.iter().position(|&b| b == b'\n') {
        Some(i) => Skip::To(from + i + 1),
        None if rest.len() > lim.max_line => Skip::Fatal("line too long".into()),
        None => Skip::More,
    }
}

/// After a syntax error at `from`, find the end of the command: the end of
/// the line, plus any non-synchronising literals the client sends on
/// without waiting (and the lines after them). A synchronising literal
/// ends the command: the client waits for a `+` that will not come.
fn skip_command(buf: &[u8], mut from: usize, lim: &Limits) -> Skip {
    for _ in 0..lim.max_items {
        let end = match skip_line(buf, from, lim) {
            Skip::To(e) => e,
            other => return other,
        };
        let line = strip_cr(buf.get(from..end.saturating_sub(1)).unwrap_or_default());
        match trailing_literal(line) {
            Some((n, false)) => {
                if n > lim.max_append {
                    return Skip::Fatal("non-synchronizing literal over the limit".into());
                }
                from = end.saturating_add(n);
                if from > buf.len() {
                    return Skip::More;
                }
            }
            _ => return Skip::To(end),
        }
    }
    Skip::Fatal("too many literals".into())
}

/// `{123}` or `{123+}` at the end of a line: (size, sync).
fn trailing_literal(line: &[u8]) -> Option<(usize, bool)> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let mut digits = inner.get(open + 1..)?;
    let sync = match digits.strip_suffix(b"+") {
        Some(d) => {
            digits = d;
            false
        }
        None => true,
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |a, &d| a * 10 + u64::from(d - b'0'));
    Some((usize::try_from(n).ok()?, sync))
}

enum Stop {
    More,
    Literal { size: usize, sync: bool, at: usize },
    Syntax(String),
    TooBig { sync: bool, size: usize },
    Fatal(String),
}

type R<T> = Result<T, Stop>;

/// RFC 2971 §3.3 limits on the ID command's parameter list.
const ID_MAX_PAIRS: usize = 30;
const ID_MAX_FIELD: usize = 30;
const ID_MAX_VALUE: usize = 1024;

fn syntax<T>(msg: impl Into<String>) -> R<T> {
    Err(Stop::Syntax(msg.into()))
}

fn is_atom_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

fn is_list_char(b: u8) -> bool {
    is_atom_char(b) || matches!(b, b'%' | b'*' | b']')
}

struct P<'a> {
    buf: &'a [u8],
    pos: usize,
    lim: &'a Limits,
    items: usize,
    tag: Option<String>,
}

impl P<'_> {
    fn peek(&self) -> R<u8> {
        self.buf.get(self.pos).copied().ok_or(Stop::More)
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.buf.get(self.pos) == Some(&b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8, what: &str) -> R<()> {
        if self.eat(b) {
            Ok(())
        } else if self.pos >= self.buf.len() {
            Err(Stop::More)
        } else {
            syntax(format!("expected {what}"))
        }
    }

    fn sp(&mut self) -> R<()> {
        self.expect(b' ', "space")
    }

    fn crlf(&mut self) -> R<()> {
        // A bare LF is taken as a line end too: some clients and test
        // tools send it, and it cannot be confused with anything else.
        self.eat(b'\r');
        self.expect(b'\n', "end of line")
    }

    /// Make sure the line starting at `pos` is complete and short enough.
    fn check_line(&self) -> R<()> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) if i + 1 > self.lim.max_line => syntax("line too long"),
            Some(_) if self.pos > self.lim.max_command => syntax("command too long"),
            Some(_) => Ok(()),
            None if rest.len() > self.lim.max_line => Err(Stop::Fatal("line too long".into())),
            None => Err(Stop::More),
        }
    }

    fn count(&mut self) -> R<()> {
        self.items += 1;
        if self.items > self.lim.max_items {
            return syntax("too many items");
        }
        Ok(())
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &[u8] {
        let start = self.pos;
        while self.buf.get(self.pos).is_some_and(|&b| f(b)) {
            self.pos += 1;
        }
        self.buf.get(start..self.pos).unwrap_or_default()
    }

    fn atom(&mut self) -> R<String> {
        let a = self.take_while(is_atom_char);
        if a.is_empty() {
            return if self.pos >= self.buf.len() {
                Err(Stop::More)
            } else {
                syntax("expected atom")
            };
        }
        Ok(String::from_utf8_lossy(a).into_owned())
    }

    fn keyword(&mut self) -> R<String> {
        Ok(self.atom()?.to_ascii_uppercase())
    }

    fn number64(&mut self) -> R<u64> {
        let d = self.take_while(|b| b.is_ascii_digit());
        if d.is_empty() {
            return syntax("expected number");
        }
        if d.len() > 19 {
            return syntax("number too large");
        }
        Ok(d.iter().fold(0u64, |a, &x| a * 10 + u64::from(x - b'0')))
    }

    fn number(&mut self) -> R<u32> {
        u32::try_from(self.number64()?).or_else(|_| syntax("number too large"))
    }

    fn quoted(&mut self) -> R<Vec<u8>> {
        self.expect(b'"', "quote")?;
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => {
                    self.pos += 1;
                    match self.peek()? {
                        c @ (b'"' | b'\\') => out.push(c),
                        _ => return syntax("bad escape in quoted string"),
                    }
                }
                b'\r' | b'\n' | 0 => return syntax("unterminated quoted string"),
                c => out.push(c),
            }
            self.pos += 1;
        }
    }

    /// `{n}` / `{n+}` CRLF and n octets; returns the data's range.
    fn literal(&mut self, max: usize) -> R<std::ops::Range<usize>> {
        self.expect(b'{', "literal")?;
        let size = self.number64()?;
        let sync = !self.eat(b'+');
        self.expect(b'}', "}")?;
        self.crlf()?;
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > max {
            return Err(Stop::TooBig { sync, size });
        }
        let at = self.pos;
        let end = at.saturating_add(size);
        if end > self.buf.len() {
            return Err(Stop::Literal { size, sync, at });
        }
        self.pos = end;
        self.check_line()?;
        Ok(at..end)
    }

    fn string(&mut self) -> R<Vec<u8>> {
        match self.peek()? {
            b'"' => self.quoted(),
            b'{' => {
                let max = self.lim.max_literal.min(self.lim.max_command);
                let r = self.literal(max)?;
                Ok(self.buf.get(r).unwrap_or_default().to_vec())
            }
            _ => syntax("expected string"),
        }
    }

    fn astring(&mut self) -> R<Vec<u8>> {
        match self.peek()? {
            b'"' | b'{' => self.string(),
            _ => {
                let a = self.take_while(is_astring_char);
                if a.is_empty() {
                    return syntax("expected astring");
                }
                Ok(a.to_vec())
            }
        }
    }

    fn astring_utf8(&mut self) -> R<String> {
        String::from_utf8(self.astring()?).or_else(|_| syntax("not UTF-8"))
    }

    fn nstring(&mut self) -> R<Option<Vec<u8>>> {
        if self.peek_nil() {
            self.pos += 3;
            return Ok(None);
        }
        self.string().map(Some)
    }

    fn peek_nil(&self) -> bool {
        let next = self.buf.get(self.pos..self.pos + 3);
        next.is_some_and(|n| n.eq_ignore_ascii_case(b"NIL"))
            && !self.buf.get(self.pos + 3).is_some_and(|&b| is_atom_char(b))
    }

    fn mailbox(&mut self) -> R<String> {
        let m = self.astring_utf8()?;
        Ok(if m.eq_ignore_ascii_case("INBOX") {
            "INBOX".into()
        } else {
            m
        })
    }

    fn list_mailbox(&mut self) -> R<String> {
        match self.peek()? {
            b'"' | b'{' => String::from_utf8(self.string()?).or_else(|_| syntax("not UTF-8")),
            _ => {
                let a = self.take_while(is_list_char);
                if a.is_empty() {
                    return syntax("expected mailbox pattern");
                }
                Ok(String::from_utf8_lossy(a).into_owned())
            }
        }
    }

    fn flag(&mut self) -> R<Flag> {
        let backslash = self.eat(b'\\');
        if backslash && self.eat(b'*') {
            return Ok(Flag::Extension("\\*".into()));
        }
        let a = self.atom()?;
        Ok(Flag::from_atom(&if backslash {
            format!("\\{a}")
        } else {
            a
        }))
    }

    /// `(` item *(SP item) `)`, possibly empty.
    fn paren_list<T>(&mut self, mut item: impl FnMut(&mut Self) -> R<T>) -> R<Vec<T>> {
        self.expect(b'(', "(")?;
        let mut out = Vec::new();
        if self.eat(b')') {
            return Ok(out);
        }
        loop {
            self.count()?;
            out.push(item(self)?);
            if self.eat(b')') {
                return Ok(out);
            }
            self.sp()?;
        }
    }

    fn flag_list(&mut self) -> R<Vec<Flag>> {
        self.paren_list(|p| p.flag())
    }

    fn seq_set(&mut self) -> R<SeqSet> {
        let s = self.take_while(|b| b.is_ascii_digit() || matches!(b, b':' | b',' | b'*'));
        if s.is_empty() {
            return syntax("expected sequence set");
        }
        SeqSet::parse(s).or_else(|e| syntax(e.to_string()))
    }

    fn date(&mut self) -> R<Date> {
        let raw = if self.peek()? == b'"' {
            self.quoted()?
        } else {
            self.take_while(|b| b.is_ascii_alphanumeric() || b == b'-')
                .to_vec()
        };
        Date::parse(&raw).map_or_else(|| syntax("bad date"), Ok)
    }

    fn tag(&mut self) -> R<String> {
        let t = self.take_while(|b| is_astring_char(b) && b != b'+');
        if t.is_empty() {
            return syntax("missing tag");
        }
        Ok(String::from_utf8_lossy(t).into_owned())
    }
}
