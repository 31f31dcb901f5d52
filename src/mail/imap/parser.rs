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

use base64::Engine as _;

use super::sequence::SeqSet;
use super::types::{Date, DateTime, Flag};

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

/// One tagged client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub tag: String,
    pub body: CommandBody,
}

/// The command and its arguments. Mailbox names are UTF-8 as sent (the
/// client's modified UTF-7 is kept as is); `INBOX` in any case becomes
/// `INBOX` (RFC 3501 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    Capability,
    Noop,
    Logout,
    StartTls,
    /// `initial` is the decoded SASL-IR initial response (`=` is empty).
    Authenticate {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    Login {
        user: Vec<u8>,
        password: Vec<u8>,
    },
    Select {
        mailbox: String,
        condstore: bool,
    },
    Examine {
        mailbox: String,
        condstore: bool,
    },
    /// `special_use` from RFC 6154 `CREATE name (USE (\Sent))`.
    Create {
        mailbox: String,
        special_use: Vec<String>,
    },
    Delete {
        mailbox: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Subscribe {
        mailbox: String,
    },
    Unsubscribe {
        mailbox: String,
    },
    List(ListCommand),
    Lsub {
        reference: String,
        pattern: String,
    },
    Status {
        mailbox: String,
        items: Vec<StatusItem>,
    },
    Append {
        mailbox: String,
        flags: Vec<Flag>,
        date: Option<DateTime>,
        message: Vec<u8>,
    },
    Check,
    Close,
    Unselect,
    Expunge,
    /// UID EXPUNGE (RFC 4315 §2.1).
    UidExpunge {
        set: SeqSet,
    },
    Search {
        uid: bool,
        charset: Option<String>,
        criteria: SearchKey,
    },
    Fetch {
        uid: bool,
        set: SeqSet,
        items: Vec<FetchItem>,
        changed_since: Option<u64>,
    },
    Store {
        uid: bool,
        set: SeqSet,
        unchanged_since: Option<u64>,
        mode: StoreMode,
        silent: bool,
        flags: Vec<Flag>,
    },
    Copy {
        uid: bool,
        set: SeqSet,
        mailbox: String,
    },
    Move {
        uid: bool,
        set: SeqSet,
        mailbox: String,
    },
    Idle,
    Enable {
        capabilities: Vec<String>,
    },
    /// `None` for `ID NIL`.
    Id {
        params: Option<Vec<(String, Option<String>)>>,
    },
    Namespace,
    GetMetadata {
        mailbox: String,
        max_size: Option<u64>,
        depth: MetadataDepth,
        entries: Vec<String>,
    },
    /// A `None` value removes the entry.
    SetMetadata {
        mailbox: String,
        entries: Vec<(String, Option<Vec<u8>>)>,
    },
    GetQuotaRoot {
        mailbox: String,
    },
    GetQuota {
        root: String,
    },
    Compress {
        mechanism: String,
    },
}

/// LIST with RFC 5258 selection and return options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListCommand {
    pub reference: String,
    pub patterns: Vec<String>,
    /// Upper-cased selection options (`SUBSCRIBED`, `SPECIAL-USE`, ...).
    pub select: Vec<String>,
    /// Upper-cased return options other than STATUS.
    pub returns: Vec<String>,
    /// RFC 5819 `RETURN (STATUS (...))`.
    pub return_status: Option<Vec<StatusItem>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    HighestModSeq,
    Size,
}

impl StatusItem {
    pub fn name(self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::Recent => "RECENT",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
            StatusItem::Size => "SIZE",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Replace,
    Add,
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataDepth {
    Zero,
    One,
    Infinity,
}

/// A SEARCH key (RFC 3501 §6.4.4, RFC 7162 §3.1.5 MODSEQ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    All,
    Answered,
    Deleted,
    Draft,
    Flagged,
    New,
    Old,
    Recent,
    Seen,
    Unanswered,
    Undeleted,
    Undraft,
    Unflagged,
    Unseen,
    Bcc(Vec<u8>),
    Body(Vec<u8>),
    Cc(Vec<u8>),
    From(Vec<u8>),
    Subject(Vec<u8>),
    Text(Vec<u8>),
    To(Vec<u8>),
    Header(String, Vec<u8>),
    Keyword(String),
    Unkeyword(String),
    Before(Date),
    On(Date),
    Since(Date),
    SentBefore(Date),
    SentOn(Date),
    SentSince(Date),
    Larger(u64),
    Smaller(u64),
    /// RFC 5032 WITHIN: seconds.
    Older(u32),
    Younger(u32),
    Uid(SeqSet),
    SequenceSet(SeqSet),
    Not(Box<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    /// Keys in a list or parentheses: all must match.
    And(Vec<SearchKey>),
    /// `entry` is the optional `"/flags/\\Seen" all` pair, kept as written.
    ModSeq {
        entry: Option<(String, String)>,
        modseq: u64,
    },
}

/// A FETCH data item, macros already expanded (RFC 3501 §6.4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchItem {
    Envelope,
    Flags,
    InternalDate,
    Rfc822,
    Rfc822Header,
    Rfc822Size,
    Rfc822Text,
    /// `BODY` without a section: the non-extensible BODYSTRUCTURE.
    Body,
    BodyStructure,
    Uid,
    ModSeq,
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<(u32, u32)>,
    },
}

/// `BODY[section]`: a part path (`1.2`) and what of it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    Header,
    /// Field names as the client wrote them (responses echo them).
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    Mime,
}

/// A line the client sends after `+` during AUTHENTICATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthLine {
    /// The decoded response.
    Response {
        data: Vec<u8>,
        consumed: usize,
    },
    /// `*`: the client cancels (RFC 3501 §6.2.2); reply `tag BAD`.
    Cancel {
        consumed: usize,
    },
    NeedMore,
    /// Not base64; reply `tag BAD` and drop `consumed` bytes.
    Bad {
        consumed: usize,
    },
    /// Longer than `max_line` without an end.
    Fatal,
}

/// Parse one AUTHENTICATE continuation line at the start of `buf`.
pub fn parse_auth_line(buf: &[u8], limits: &Limits) -> AuthLine {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > limits.max_line {
            AuthLine::Fatal
        } else {
            AuthLine::NeedMore
        };
    };
    let consumed = nl + 1;
    if consumed > limits.max_line {
        return AuthLine::Bad { consumed };
    }
    let line = strip_cr(&buf[..nl]);
    if line == b"*" {
        return AuthLine::Cancel { consumed };
    }
    match base64::engine::general_purpose::STANDARD.decode(line) {
        Ok(data) => AuthLine::Response { data, consumed },
        Err(_) => AuthLine::Bad { consumed },
    }
}

/// What the client sent while the server was idling (RFC 2177).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleEnd {
    /// `DONE`: send the tagged OK for IDLE.
    Done {
        consumed: usize,
    },
    NeedMore,
    /// Anything else: reply `tag BAD`, end IDLE, drop `consumed` bytes.
    Bad {
        consumed: usize,
    },
    Fatal,
}

/// Look for the `DONE` line that ends IDLE.
pub fn parse_idle_done(buf: &[u8], limits: &Limits) -> IdleEnd {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > limits.max_line {
            IdleEnd::Fatal
        } else {
            IdleEnd::NeedMore
        };
    };
    if strip_cr(&buf[..nl]).eq_ignore_ascii_case(b"DONE") {
        IdleEnd::Done { consumed: nl + 1 }
    } else {
        IdleEnd::Bad { consumed: nl + 1 }
    }
}

/// Split a SASL PLAIN response (RFC 4616) into authzid, authcid, password.
pub fn sasl_plain(data: &[u8]) -> Option<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let mut it = data.split(|&b| b == 0);
    let (z, c, p) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || c.is_empty() {
        return None;
    }
    Some((z.to_vec(), c.to_vec(), p.to_vec()))
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

    fn command(&mut self) -> R<Command> {
        self.check_line()?;
        let tag = self.tag()?;
        self.tag = Some(tag.clone());
        self.sp()?;
        let name = self.keyword()?;
        let body = self.body(&name)?;
        self.crlf()?;
        Ok(Command { tag, body })
    }

    fn body(&mut self, name: &str) -> R<CommandBody> {
        use CommandBody as C;
        Ok(match name {
            "CAPABILITY" => C::Capability,
            "NOOP" => C::Noop,
            "LOGOUT" => C::Logout,
            "STARTTLS" => C::StartTls,
            "CHECK" => C::Check,
            "CLOSE" => C::Close,
            "UNSELECT" => C::Unselect,
            "EXPUNGE" => C::Expunge,
            "IDLE" => C::Idle,
            "NAMESPACE" => C::Namespace,
            "AUTHENTICATE" => {
                self.sp()?;
                let mechanism = self.keyword()?;
                let initial = if self.eat(b' ') {
                    let raw = self.take_while(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
                    if raw == b"=" {
                        Some(Vec::new())
                    } else {
                        match base64::engine::general_purpose::STANDARD.decode(raw) {
                            Ok(d) if !raw.is_empty() => Some(d),
                            _ => return syntax("bad initial response"),
                        }
                    }
                } else {
                    None
                };
                C::Authenticate { mechanism, initial }
            }
            "LOGIN" => {
                self.sp()?;
                let user = self.astring()?;
                self.sp()?;
                let password = self.astring()?;
                C::Login { user, password }
            }
            "SELECT" | "EXAMINE" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                let mut condstore = false;
                if self.eat(b' ') {
                    for param in self.paren_list(|p| p.keyword())? {
                        match param.as_str() {
                            "CONDSTORE" => condstore = true,
                            _ => return syntax(format!("unsupported select parameter {param}")),
                        }
                    }
                }
                if name == "SELECT" {
                    C::Select { mailbox, condstore }
                } else {
                    C::Examine { mailbox, condstore }
                }
            }
            "CREATE" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                let mut special_use = Vec::new();
                if self.eat(b' ') {
                    self.expect(b'(', "(")?;
                    if self.keyword()? != "USE" {
                        return syntax("unsupported CREATE parameter");
                    }
                    self.sp()?;
                    special_use = self.paren_list(|p| {
                        p.expect(b'\\', "\\")?;
                        Ok(format!("\\{}", p.atom()?))
                    })?;
                    self.expect(b')', ")")?;
                }
                C::Create {
                    mailbox,
                    special_use,
                }
            }
            "DELETE" | "SUBSCRIBE" | "UNSUBSCRIBE" | "GETQUOTAROOT" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                match name {
                    "DELETE" => C::Delete { mailbox },
                    "SUBSCRIBE" => C::Subscribe { mailbox },
                    "UNSUBSCRIBE" => C::Unsubscribe { mailbox },
                    _ => C::GetQuotaRoot { mailbox },
                }
            }
            "GETQUOTA" => {
                self.sp()?;
                C::GetQuota {
                    root: self.astring_utf8()?,
                }
            }
            "RENAME" => {
                self.sp()?;
                let from = self.mailbox()?;
                self.sp()?;
                let to = self.mailbox()?;
                C::Rename { from, to }
            }
            "LIST" => C::List(self.list()?),
            "LSUB" => {
                self.sp()?;
                let reference = self.mailbox()?;
                self.sp()?;
                let pattern = self.list_mailbox()?;
                C::Lsub { reference, pattern }
            }
            "STATUS" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                self.sp()?;
                let items = self.status_items()?;
                C::Status { mailbox, items }
            }
            "APPEND" => self.append()?,
            "SEARCH" => self.search(false)?,
            "FETCH" => self.fetch(false)?,
            "STORE" => self.store(false)?,
            "COPY" | "MOVE" => self.copy_move(name, false)?,
            "UID" => {
                self.sp()?;
                let sub = self.keyword()?;
                match sub.as_str() {
                    "SEARCH" => self.search(true)?,
                    "FETCH" => self.fetch(true)?,
                    "STORE" => self.store(true)?,
                    "COPY" | "MOVE" => self.copy_move(&sub, true)?,
                    "EXPUNGE" => {
                        self.sp()?;
                        C::UidExpunge {
                            set: self.seq_set()?,
                        }
                    }
                    _ => return syntax(format!("unknown UID command {sub}")),
                }
            }
            "ENABLE" => {
                let mut capabilities = Vec::new();
                while self.eat(b' ') {
                    self.count()?;
                    capabilities.push(self.keyword()?);
                }
                if capabilities.is_empty() {
                    return syntax("ENABLE needs a capability");
                }
                C::Enable { capabilities }
            }
            "ID" => {
                self.sp()?;
                if self.peek_nil() {
                    self.pos += 3;
                    C::Id { params: None }
                } else {
                    let mut params = Vec::new();
                    self.expect(b'(', "(")?;
                    if !self.eat(b')') {
                        loop {
                            self.count()?;
                            // RFC 2971 §3.3: at most 30 pairs, fields of at
                            // most 30 octets, values of at most 1024.
                            if params.len() == ID_MAX_PAIRS {
                                return syntax("ID: more than 30 field-value pairs");
                            }
                            let k = self.string()?;
                            self.sp()?;
                            let v = self.nstring()?;
                            if k.len() > ID_MAX_FIELD
                                || v.as_ref().is_some_and(|v| v.len() > ID_MAX_VALUE)
                            {
                                return syntax("ID: field over 30 or value over 1024 octets");
                            }
                            let k = String::from_utf8_lossy(&k).into_owned();
                            let v = v.map(|v| String::from_utf8_lossy(&v).into_owned());
                            params.push((k, v));
                            if self.eat(b')') {
                                break;
                            }
                            self.sp()?;
                        }
                    }
                    C::Id {
                        params: Some(params),
                    }
                }
            }
            "GETMETADATA" => self.getmetadata()?,
            "SETMETADATA" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                self.sp()?;
                self.expect(b'(', "(")?;
                let mut entries = Vec::new();
                loop {
                    self.count()?;
                    let entry = self.astring_utf8()?;
                    self.sp()?;
                    let value = self.nstring()?;
                    entries.push((entry, value));
                    if self.eat(b')') {
                        break;
                    }
                    self.sp()?;
                    // `(/private/devicetoken "1111" )`: a space before the
                    // closing parenthesis, as chatmail's clients send it and
                    // Dovecot accepts.
                    if self.eat(b')') {
                        break;
                    }
                }
                C::SetMetadata { mailbox, entries }
            }
            "COMPRESS" => {
                self.sp()?;
                C::Compress {
                    mechanism: self.keyword()?,
                }
            }
            _ => return syntax(format!("unknown command {name}")),
        })
    }

    fn status_items(&mut self) -> R<Vec<StatusItem>> {
        self.paren_list(|p| {
            Ok(match p.keyword()?.as_str() {
                "MESSAGES" => StatusItem::Messages,
                "RECENT" => StatusItem::Recent,
                "UIDNEXT" => StatusItem::UidNext,
                "UIDVALIDITY" => StatusItem::UidValidity,
                "UNSEEN" => StatusItem::Unseen,
                "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
                "SIZE" => StatusItem::Size,
                other => return syntax(format!("unknown status item {other}")),
            })
        })
    }

    fn list(&mut self) -> R<ListCommand> {
        let mut cmd = ListCommand::default();
        self.sp()?;
        if self.peek()? == b'(' {
            cmd.select = self.paren_list(|p| p.keyword())?;
            self.sp()?;
        }
        cmd.reference = self.mailbox()?;
        self.sp()?;
        if self.peek()? == b'(' {
            cmd.patterns = self.paren_list(|p| p.list_mailbox())?;
        } else {
            cmd.patterns.push(self.list_mailbox()?);
        }
        if self.eat(b' ') {
            if self.keyword()? != "RETURN" {
                return syntax("expected RETURN");
            }
            self.sp()?;
            let mut status = None;
            let returns = self.paren_list(|p| {
                let k = p.keyword()?;
                if k == "STATUS" {
                    p.sp()?;
                    status = Some(p.status_items()?);
                }
                Ok(k)
            })?;
            cmd.returns = returns.into_iter().filter(|k| k != "STATUS").collect();
            cmd.return_status = status;
        }
        Ok(cmd)
    }

    fn append(&mut self) -> R<CommandBody> {
        self.sp()?;
        let mailbox = self.mailbox()?;
        self.sp()?;
        let mut flags = Vec::new();
        let mut date = None;
        if self.peek()? == b'(' {
            flags = self.flag_list()?;
            self.sp()?;
        }
        if self.peek()? == b'"' {
            let raw = self.quoted()?;
            date = Some(DateTime::parse(&raw).map_or_else(|| syntax("bad date-time"), Ok)?);
            self.sp()?;
        }
        let r = self.literal(self.lim.max_append)?;
        let message = self.buf.get(r).unwrap_or_default().to_vec();
        Ok(CommandBody::Append {
            mailbox,
            flags,
            date,
            message,
        })
    }

    fn search(&mut self, uid: bool) -> R<CommandBody> {
        self.sp()?;
        let mut charset = None;
        let save = self.pos;
        if self
            .take_while(is_atom_char)
            .eq_ignore_ascii_case(b"CHARSET")
            && self.eat(b' ')
        {
            charset = Some(self.astring_utf8()?.to_ascii_uppercase());
            self.sp()?;
        } else {
            self.pos = save;
        }
        let mut keys = vec![self.search_key(0)?];
        while self.eat(b' ') {
            self.count()?;
            keys.push(self.search_key(0)?);
        }
        let criteria = if keys.len() == 1 {
            keys.remove(0)
        } else {
            SearchKey::And(keys)
        };
        Ok(CommandBody::Search {
            uid,
            charset,
            criteria,
        })
    }

    fn search_key(&mut self, depth: usize) -> R<SearchKey> {
        use SearchKey as K;
        if depth > self.lim.max_depth {
            return syntax("search too deeply nested");
        }
        self.count()?;
        let c = self.peek()?;
        if c == b'(' {
            self.pos += 1;
            let mut keys = vec![self.search_key(depth + 1)?];
            while self.eat(b' ') {
                keys.push(self.search_key(depth + 1)?);
            }
            self.expect(b')', ")")?;
            return Ok(K::And(keys));
        }
        if c.is_ascii_digit() || c == b'*' {
            return Ok(K::SequenceSet(self.seq_set()?));
        }
        let k = self.keyword()?;
        Ok(match k.as_str() {
            "ALL" => K::All,
            "ANSWERED" => K::Answered,
            "DELETED" => K::Deleted,
            "DRAFT" => K::Draft,
            "FLAGGED" => K::Flagged,
            "NEW" => K::New,
            "OLD" => K::Old,
            "RECENT" => K::Recent,
            "SEEN" => K::Seen,
            "UNANSWERED" => K::Unanswered,
            "UNDELETED" => K::Undeleted,
            "UNDRAFT" => K::Undraft,
            "UNFLAGGED" => K::Unflagged,
            "UNSEEN" => K::Unseen,
            "BCC" | "BODY" | "CC" | "FROM" | "SUBJECT" | "TEXT" | "TO" => {
                self.sp()?;
                let s = self.astring()?;
                match k.as_str() {
                    "BCC" => K::Bcc(s),
                    "BODY" => K::Body(s),
                    "CC" => K::Cc(s),
                    "FROM" => K::From(s),
                    "SUBJECT" => K::Subject(s),
                    "TEXT" => K::Text(s),
                    _ => K::To(s),
                }
            }
            "BEFORE" | "ON" | "SINCE" | "SENTBEFORE" | "SENTON" | "SENTSINCE" => {
                self.sp()?;
                let d = self.date()?;
                match k.as_str() {
                    "BEFORE" => K::Before(d),
                    "ON" => K::On(d),
                    "SINCE" => K::Since(d),
                    "SENTBEFORE" => K::SentBefore(d),
                    "SENTON" => K::SentOn(d),
                    _ => K::SentSince(d),
                }
            }
            "HEADER" => {
                self.sp()?;
                let name = self.astring_utf8()?;
                self.sp()?;
                K::Header(name, self.astring()?)
            }
            "KEYWORD" | "UNKEYWORD" => {
                self.sp()?;
                let a = self.atom()?;
                if k == "KEYWORD" {
                    K::Keyword(a)
                } else {
                    K::Unkeyword(a)
                }
            }
            "LARGER" | "SMALLER" => {
                self.sp()?;
                let n = self.number64()?;
                if k == "LARGER" {
                    K::Larger(n)
                } else {
                    K::Smaller(n)
                }
            }
            "OLDER" | "YOUNGER" => {
                self.sp()?;
                let n = self.number()?;
                if k == "OLDER" {
                    K::Older(n)
                } else {
                    K::Younger(n)
                }
            }
            "NOT" => {
                self.sp()?;
                K::Not(Box::new(self.search_key(depth + 1)?))
            }
            "OR" => {
                self.sp()?;
                let a = self.search_key(depth + 1)?;
                self.sp()?;
                let b = self.search_key(depth + 1)?;
                K::Or(Box::new(a), Box::new(b))
            }
            "UID" => {
                self.sp()?;
                K::Uid(self.seq_set()?)
            }
            "MODSEQ" => {
                self.sp()?;
                let mut entry = None;
                if self.peek()? == b'"' {
                    let name = String::from_utf8_lossy(&self.quoted()?).into_owned();
                    self.sp()?;
                    let kind = self.keyword()?;
                    if !matches!(kind.as_str(), "PRIV" | "SHARED" | "ALL") {
                        return syntax("bad MODSEQ entry type");
                    }
                    entry = Some((name, kind.to_ascii_lowercase()));
                    self.sp()?;
                }
                K::ModSeq {
                    entry,
                    modseq: self.number64()?,
                }
            }
            other => return syntax(format!("unknown search key {other}")),
        })
    }

    fn fetch(&mut self, uid: bool) -> R<CommandBody> {
        self.sp()?;
        let set = self.seq_set()?;
        self.sp()?;
        let mut items = Vec::new();
        if self.peek()? == b'(' {
            for list in self.paren_list(|p| p.fetch_att())? {
                items.extend(list);
            }
        } else {
            items = self.fetch_att()?;
        }
        let mut changed_since = None;
        if self.eat(b' ') {
            self.expect(b'(', "(")?;
            if self.keyword()? != "CHANGEDSINCE" {
                return syntax("unsupported FETCH modifier");
            }
            self.sp()?;
            changed_since = Some(self.number64()?);
            self.expect(b')', ")")?;
        }
        Ok(CommandBody::Fetch {
            uid,
            set,
            items,
            changed_since,
        })
    }

    /// One fetch-att; a macro gives several.
    fn fetch_att(&mut self) -> R<Vec<FetchItem>> {
        use FetchItem as F;
        let name = self.take_while(|b| b.is_ascii_alphanumeric() || b == b'.');
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        Ok(match name.as_str() {
            "ALL" => vec![F::Flags, F::InternalDate, F::Rfc822Size, F::Envelope],
            "FAST" => vec![F::Flags, F::InternalDate, F::Rfc822Size],
            "FULL" => vec![
                F::Flags,
                F::InternalDate,
                F::Rfc822Size,
                F::Envelope,
                F::Body,
            ],
            "ENVELOPE" => vec![F::Envelope],
            "FLAGS" => vec![F::Flags],
            "INTERNALDATE" => vec![F::InternalDate],
            "RFC822" => vec![F::Rfc822],
            "RFC822.HEADER" => vec![F::Rfc822Header],
            "RFC822.SIZE" => vec![F::Rfc822Size],
            "RFC822.TEXT" => vec![F::Rfc822Text],
            "BODYSTRUCTURE" => vec![F::BodyStructure],
            "UID" => vec![F::Uid],
            "MODSEQ" => vec![F::ModSeq],
            "BODY" | "BODY.PEEK" => {
                let peek = name == "BODY.PEEK";
                if self.buf.get(self.pos) != Some(&b'[') {
                    if peek {
                        return syntax("BODY.PEEK needs a section");
                    }
                    return Ok(vec![F::Body]);
                }
                let section = self.section()?;
                let mut partial = None;
                if self.eat(b'<') {
                    let start = self.number()?;
                    self.expect(b'.', ".")?;
                    let len = self.number()?;
                    if len == 0 {
                        return syntax("partial length must not be zero");
                    }
                    self.expect(b'>', ">")?;
                    partial = Some((start, len));
                }
                vec![F::BodySection {
                    peek,
                    section,
                    partial,
                }]
            }
            "" => return syntax("expected fetch item"),
            other => return syntax(format!("unknown fetch item {other}")),
        })
    }

    fn section(&mut self) -> R<Section> {
        self.expect(b'[', "[")?;
        let spec = self.take_while(|b| b.is_ascii_alphanumeric() || b == b'.');
        let spec = String::from_utf8_lossy(spec).to_ascii_uppercase();
        let mut part = Vec::new();
        let mut rest: &str = &spec;
        while !rest.is_empty() {
            let (head, tail) = rest.split_once('.').unwrap_or((rest, ""));
            if !head.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
                break;
            }
            let n: u32 = head.parse().or_else(|_| syntax("bad section part"))?;
            if n == 0 || head.starts_with('0') {
                return syntax("bad section part");
            }
            if part.len() >= self.lim.max_depth {
                return syntax("section too deep");
            }
            part.push(n);
            if tail.is_empty() && rest.ends_with('.') {
                return syntax("bad section");
            }
            rest = tail;
        }
        let text = match rest {
            "" => None,
            "HEADER" => Some(SectionText::Header),
            "TEXT" => Some(SectionText::Text),
            "MIME" if !part.is_empty() => Some(SectionText::Mime),
            "HEADER.FIELDS" | "HEADER.FIELDS.NOT" => {
                self.sp()?;
                let names = self.paren_list(|p| p.astring_utf8())?;
                if names.is_empty() {
                    return syntax("empty header list");
                }
                if rest == "HEADER.FIELDS" {
                    Some(SectionText::HeaderFields(names))
                } else {
                    Some(SectionText::HeaderFieldsNot(names))
                }
            }
            other => return syntax(format!("bad section {other}")),
        };
        self.expect(b']', "]")?;
        Ok(Section { part, text })
    }

    fn store(&mut self, uid: bool) -> R<CommandBody> {
        self.sp()?;
        let set = self.seq_set()?;
        self.sp()?;
        let mut unchanged_since = None;
        if self.peek()? == b'(' {
            self.pos += 1;
            if self.keyword()? != "UNCHANGEDSINCE" {
                return syntax("unsupported STORE modifier");
            }
            self.sp()?;
            unchanged_since = Some(self.number64()?);
            self.expect(b')', ")")?;
            self.sp()?;
        }
        let mode = if self.eat(b'+') {
            StoreMode::Add
        } else if self.eat(b'-') {
            StoreMode::Remove
        } else {
            StoreMode::Replace
        };
        let silent = match self.keyword()?.as_str() {
            "FLAGS" => false,
            "FLAGS.SILENT" => true,
            _ => return syntax("expected FLAGS"),
        };
        self.sp()?;
        let flags = if self.peek()? == b'(' {
            self.flag_list()?
        } else {
            let mut f = vec![self.flag()?];
            while self.eat(b' ') {
                self.count()?;
                f.push(self.flag()?);
            }
            f
        };
        Ok(CommandBody::Store {
            uid,
            set,
            unchanged_since,
            mode,
            silent,
            flags,
        })
    }

    fn copy_move(&mut self, name: &str, uid: bool) -> R<CommandBody> {
        self.sp()?;
        let set = self.seq_set()?;
        self.sp()?;
        let mailbox = self.mailbox()?;
        Ok(if name == "COPY" {
            CommandBody::Copy { uid, set, mailbox }
        } else {
            CommandBody::Move { uid, set, mailbox }
        })
    }

    fn getmetadata(&mut self) -> R<CommandBody> {
        self.sp()?;
        let mut max_size = None;
        let mut depth = MetadataDepth::Zero;
        // Options come before the mailbox (RFC 5464 §4.2); some clients
        // put them after it, which Cyrus and Dovecot accept too.
        let mut options = |p: &mut Self| -> R<()> {
            p.expect(b'(', "(")?;
            loop {
                p.count()?;
                match p.keyword()?.as_str() {
                    "MAXSIZE" => {
                        p.sp()?;
                        max_size = Some(p.number64()?);
                    }
                    "DEPTH" => {
                        p.sp()?;
                        depth = match p.keyword()?.as_str() {
                            "0" => MetadataDepth::Zero,
                            "1" => MetadataDepth::One,
                            "INFINITY" => MetadataDepth::Infinity,
                            _ => return syntax("bad DEPTH"),
                        };
                    }
                    other => return syntax(format!("unknown GETMETADATA option {other}")),
                }
                if p.eat(b')') {
                    return Ok(());
                }
                p.sp()?;
            }
        };
        if self.peek()? == b'(' {
            options(self)?;
            self.sp()?;
        }
        let mailbox = self.mailbox()?;
        self.sp()?;
        if self.peek()? == b'(' && self.is_metadata_options() {
            options(self)?;
            self.sp()?;
        }
        let entries = if self.peek()? == b'(' {
            self.paren_list(|p| p.astring_utf8())?
        } else {
            vec![self.astring_utf8()?]
        };
        if entries.is_empty() {
            return syntax("no metadata entries");
        }
        Ok(CommandBody::GetMetadata {
            mailbox,
            max_size,
            depth,
            entries,
        })
    }

    fn is_metadata_options(&self) -> bool {
        let rest = self.buf.get(self.pos + 1..).unwrap_or_default();
        let word: Vec<u8> = rest
            .iter()
            .take_while(|&&b| is_atom_char(b))
            .copied()
            .collect();
        word.eq_ignore_ascii_case(b"MAXSIZE") || word.eq_ignore_ascii_case(b"DEPTH")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::imap::sequence::SeqNum;
    use CommandBody as C;

    fn lim() -> Limits {
        Limits::default()
    }

    /// Parse a whole command; it must be complete and use every byte.
    fn cmd(s: &str) -> Command {
        match parse_command(s.as_bytes(), &lim()) {
            Parsed::Complete { command, consumed } => {
                assert_eq!(consumed, s.len(), "{s:?}");
                command
            }
            other => panic!("{s:?}: {other:?}"),
        }
    }

    fn body(s: &str) -> CommandBody {
        cmd(s).body
    }

    fn set(s: &str) -> SeqSet {
        SeqSet::parse(s.as_bytes()).unwrap()
    }

    fn bad(s: &str) -> (Option<String>, String, usize) {
        match parse_command(s.as_bytes(), &lim()) {
            Parsed::Bad {
                tag,
                reason,
                consumed,
            } => (tag, reason, consumed),
            other => panic!("{s:?}: {other:?}"),
        }
    }

    #[test]
    fn rfc3501_any_and_nonauth_state_examples() {
        // §6.1.1 .. §6.2.3
        assert_eq!(
            cmd("a002 CAPABILITY\r\n"),
            Command {
                tag: "a002".into(),
                body: C::Capability
            }
        );
        assert_eq!(body("a002 NOOP\r\n"), C::Noop);
        assert_eq!(body("A023 LOGOUT\r\n"), C::Logout);
        assert_eq!(body("a002 STARTTLS\r\n"), C::StartTls);
        assert_eq!(
            body("A001 AUTHENTICATE GSSAPI\r\n"),
            C::Authenticate {
                mechanism: "GSSAPI".into(),
                initial: None
            }
        );
        assert_eq!(
            body("a001 LOGIN SMITH SESAME\r\n"),
            C::Login {
                user: b"SMITH".to_vec(),
                password: b"SESAME".to_vec()
            }
        );
    }

    #[test]
    fn rfc3501_authenticated_state_examples() {
        assert_eq!(
            body("A142 SELECT INBOX\r\n"),
            C::Select {
                mailbox: "INBOX".into(),
                condstore: false
            }
        );
        assert_eq!(
            body("A932 EXAMINE blurdybloop\r\n"),
            C::Examine {
                mailbox: "blurdybloop".into(),
                condstore: false
            }
        );
        assert_eq!(
            body("A003 CREATE owatagusiam/\r\n"),
            C::Create {
                mailbox: "owatagusiam/".into(),
                special_use: vec![]
            }
        );
        assert_eq!(
            body("A004 CREATE owatagusiam/blurdybloop\r\n"),
            C::Create {
                mailbox: "owatagusiam/blurdybloop".into(),
                special_use: vec![]
            }
        );
        assert_eq!(
            body("A683 DELETE blurdybloop\r\n"),
            C::Delete {
                mailbox: "blurdybloop".into()
            }
        );
        assert_eq!(
            body("A685 DELETE foo/bar\r\n"),
            C::Delete {
                mailbox: "foo/bar".into()
            }
        );
        assert_eq!(
            body("A683 RENAME blurdybloop sarasoop\r\n"),
            C::Rename {
                from: "blurdybloop".into(),
                to: "sarasoop".into()
            }
        );
        assert_eq!(
            body("A002 SUBSCRIBE #news.comp.mail.mime\r\n"),
            C::Subscribe {
                mailbox: "#news.comp.mail.mime".into()
            }
        );
        assert_eq!(
            body("A002 UNSUBSCRIBE #news.comp.mail.mime\r\n"),
            C::Unsubscribe {
                mailbox: "#news.comp.mail.mime".into()
            }
        );
        let list = |r: &str, p: &str| {
            C::List(ListCommand {
                reference: r.into(),
                patterns: vec![p.into()],
                ..Default::default()
            })
        };
        assert_eq!(body("A682 LIST \"\" *\r\n"), list("", "*"));
        assert_eq!(body("A101 LIST \"\" \"\"\r\n"), list("", ""));
        assert_eq!(
            body("A102 LIST #news.comp.mail.misc \"\"\r\n"),
            list("#news.comp.mail.misc", "")
        );
        assert_eq!(
            body("A103 LIST /usr/staff/jones \"\"\r\n"),
            list("/usr/staff/jones", "")
        );
        assert_eq!(body("A202 LIST ~/Mail/ %\r\n"), list("~/Mail/", "%"));
        assert_eq!(
            body("A002 LSUB \"#news.\" \"comp.mail.*\"\r\n"),
            C::Lsub {
                reference: "#news.".into(),
                pattern: "comp.mail.*".into()
            }
        );
        assert_eq!(
            body("A003 LSUB \"#news.\" comp.%\r\n"),
            C::Lsub {
                reference: "#news.".into(),
                pattern: "comp.%".into()
            }
        );
        assert_eq!(
            body("A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n"),
            C::Status {
                mailbox: "blurdybloop".into(),
                items: vec![StatusItem::UidNext, StatusItem::Messages]
            }
        );
    }

    const RFC_APPEND_MSG: &str = "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n\
From: Fred Foobar <foobar@Blurdybloop.COM>\r\n\
Subject: afternoon meeting\r\n\
To: mooch@owatagu.siam.edu\r\n\
Message-Id: <B27397-0100000@Blurdybloop.COM>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\
\r\n\
Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n";

    #[test]
    fn rfc3501_append_example_with_sync_literal() {
        assert_eq!(RFC_APPEND_MSG.len(), 310);
        let first = "A003 APPEND saved-messages (\\Seen) {310}\r\n";
        // Only the command line: the server must send a continuation.
        assert_eq!(
            parse_command(first.as_bytes(), &lim()),
            Parsed::NeedLiteral {
                size: 310,
                sync: true,
                at: first.len()
            }
        );
        // Part of the literal: same answer, same offset (send `+` only once).
        let partial = format!("{first}{}", &RFC_APPEND_MSG[..100]);
        assert_eq!(
            parse_command(partial.as_bytes(), &lim()),
            Parsed::NeedLiteral {
                size: 310,
                sync: true,
                at: first.len()
            }
        );
        // All of the literal but not the final CRLF.
        let nocrlf = format!("{first}{RFC_APPEND_MSG}");
        assert_eq!(parse_command(nocrlf.as_bytes(), &lim()), Parsed::NeedMore);
        let full = format!("{first}{RFC_APPEND_MSG}\r\nA004 NOOP\r\n");
        match parse_command(full.as_bytes(), &lim()) {
            Parsed::Complete { command, consumed } => {
                assert_eq!(consumed, full.len() - "A004 NOOP\r\n".len());
                assert_eq!(
                    command.body,
                    C::Append {
                        mailbox: "saved-messages".into(),
                        flags: vec![Flag::Seen],
                        date: None,
                        message: RFC_APPEND_MSG.as_bytes().to_vec(),
                    }
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn append_with_date_and_nonsync_literal() {
        let s =
            "a APPEND INBOX (\\Seen $Forwarded) \"17-Jul-1996 02:44:25 -0700\" {5+}\r\nhello\r\n";
        assert_eq!(
            body(s),
            C::Append {
                mailbox: "INBOX".into(),
                flags: vec![Flag::Seen, Flag::Keyword("$Forwarded".into())],
                date: DateTime::parse(b"17-Jul-1996 02:44:25 -0700"),
                message: b"hello".to_vec(),
            }
        );
        let head = "a APPEND INBOX {5+}\r\n";
        assert_eq!(
            parse_command(format!("{head}he").as_bytes(), &lim()),
            Parsed::NeedLiteral {
                size: 5,
                sync: false,
                at: head.len()
            }
        );
    }

    #[test]
    fn rfc3501_selected_state_examples() {
        assert_eq!(body("FXXZ CHECK\r\n"), C::Check);
        assert_eq!(body("A341 CLOSE\r\n"), C::Close);
        assert_eq!(body("A202 EXPUNGE\r\n"), C::Expunge);
        assert_eq!(
            body("A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n"),
            C::Search {
                uid: false,
                charset: None,
                criteria: SearchKey::And(vec![
                    SearchKey::Flagged,
                    SearchKey::Since(Date::new(1994, 2, 1).unwrap()),
                    SearchKey::Not(Box::new(SearchKey::From(b"Smith".to_vec()))),
                ]),
            }
        );
        assert_eq!(
            body("A283 SEARCH TEXT \"string not in mailbox\"\r\n"),
            C::Search {
                uid: false,
                charset: None,
                criteria: SearchKey::Text(b"string not in mailbox".to_vec()),
            }
        );
        let head = "A284 SEARCH CHARSET UTF-8 TEXT {6}\r\n";
        assert_eq!(
            parse_command(head.as_bytes(), &lim()),
            Parsed::NeedLiteral {
                size: 6,
                sync: true,
                at: head.len()
            }
        );
        let full = format!("{head}XXXXXX\r\n");
        assert_eq!(
            body(&full),
            C::Search {
                uid: false,
                charset: Some("UTF-8".into()),
                criteria: SearchKey::Text(b"XXXXXX".to_vec()),
            }
        );
        assert_eq!(
            body("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n"),
            C::Fetch {
                uid: false,
                set: set("2:4"),
                items: vec![
                    FetchItem::Flags,
                    FetchItem::BodySection {
                        peek: false,
                        section: Section {
                            part: vec![],
                            text: Some(SectionText::HeaderFields(vec![
                                "DATE".into(),
                                "FROM".into()
                            ])),
                        },
                        partial: None,
                    },
                ],
                changed_since: None,
            }
        );
        assert_eq!(
            body("A003 STORE 2:4 +FLAGS (\\Deleted)\r\n"),
            C::Store {
                uid: false,
                set: set("2:4"),
                unchanged_since: None,
                mode: StoreMode::Add,
                silent: false,
                flags: vec![Flag::Deleted],
            }
        );
        assert_eq!(
            body("A003 COPY 2:4 MEETING\r\n"),
            C::Copy {
                uid: false,
                set: set("2:4"),
                mailbox: "MEETING".into()
            }
        );
        assert_eq!(
            body("A999 UID FETCH 4827313:4828442 FLAGS\r\n"),
            C::Fetch {
                uid: true,
                set: set("4827313:4828442"),
                items: vec![FetchItem::Flags],
                changed_since: None,
            }
        );
        // §6.5.1: an unknown command is a BAD, with the tag.
        let (tag, _, consumed) = bad("A442 XPIG-LATIN\r\n");
        assert_eq!((tag.as_deref(), consumed), (Some("A442"), 17));
    }

    #[test]
    fn rfc3501_section8_sample_session() {
        assert_eq!(
            body("a001 login mrc secret\r\n"),
            C::Login {
                user: b"mrc".to_vec(),
                password: b"secret".to_vec()
            }
        );
        assert_eq!(
            body("a002 select inbox\r\n"),
            C::Select {
                mailbox: "INBOX".into(),
                condstore: false
            }
        );
        use FetchItem as F;
        assert_eq!(
            body("a003 fetch 12 full\r\n"),
            C::Fetch {
                uid: false,
                set: set("12"),
                items: vec![
                    F::Flags,
                    F::InternalDate,
                    F::Rfc822Size,
                    F::Envelope,
                    F::Body
                ],
                changed_since: None,
            }
        );
        assert_eq!(
            body("a004 fetch 12 body[header]\r\n"),
            C::Fetch {
                uid: false,
                set: set("12"),
                items: vec![F::BodySection {
                    peek: false,
                    section: Section {
                        part: vec![],
                        text: Some(SectionText::Header)
                    },
                    partial: None,
                }],
                changed_since: None,
            }
        );
        assert_eq!(
            body("a005 store 12 +flags \\deleted\r\n"),
            C::Store {
                uid: false,
                set: set("12"),
                unchanged_since: None,
                mode: StoreMode::Add,
                silent: false,
                flags: vec![Flag::Deleted],
            }
        );
        assert_eq!(body("a006 logout\r\n"), C::Logout);
    }

    /// The exact commands Delta Chat core sends (docs/imap.md lists them).
    #[test]
    fn delta_chat_commands() {
        assert_eq!(
            body("A1 LOGIN \"alice@example.org\" \"p\\\"w\\\\d\"\r\n"),
            C::Login {
                user: b"alice@example.org".to_vec(),
                password: b"p\"w\\d".to_vec()
            }
        );
        assert_eq!(
            body("A2 ID (\"name\" \"Delta Chat\")\r\n"),
            C::Id {
                params: Some(vec![("name".into(), Some("Delta Chat".into()))])
            }
        );
        assert_eq!(body("A3 ID NIL\r\n"), C::Id { params: None });
        // RFC 2971 §3.3 limits: 30 pairs, 30-octet fields, 1024-octet values.
        let pairs = |n: usize| {
            (0..n)
                .map(|i| format!("\"f{i}\" \"v\""))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let id = |p: String| format!("A6 ID ({p})\r\n");
        assert!(matches!(body(&id(pairs(30))), C::Id { params: Some(p) } if p.len() == 30));
        assert!(bad(&id(pairs(31))).1.contains("30 field-value pairs"));
        let field = "f".repeat(30);
        assert!(matches!(
            body(&id(format!("\"{field}\" NIL"))),
            C::Id { .. }
        ));
        assert!(bad(&id(format!("\"{field}x\" NIL")))
            .1
            .contains("ID: field"));
        let value = format!("{{1025+}}\r\n{}", "v".repeat(1025));
        assert!(bad(&id(format!("\"name\" {value}")))
            .1
            .contains("value over 1024"));
        assert_eq!(
            body("A4 SELECT \"INBOX\" (CONDSTORE)\r\n"),
            C::Select {
                mailbox: "INBOX".into(),
                condstore: true
            }
        );
        assert_eq!(
            body("A5 LIST \"\" \"*\"\r\n"),
            C::List(ListCommand {
                reference: "".into(),
                patterns: vec!["*".into()],
                ..Default::default()
            })
        );
        assert_eq!(
            body("A6 EXAMINE \"DeltaChat\"\r\n"),
            C::Examine {
                mailbox: "DeltaChat".into(),
                condstore: false
            }
        );
        assert_eq!(
            body("A7 STATUS \"INBOX\" (UIDNEXT)\r\n"),
            C::Status {
                mailbox: "INBOX".into(),
                items: vec![StatusItem::UidNext]
            }
        );
        let prefetch = "A8 UID FETCH 1:500 (UID INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE X-MICROSOFT-ORIGINAL-MESSAGE-ID FROM CHAT-VERSION CHAT-IS-POST-MESSAGE AUTO-SUBMITTED AUTOCRYPT-SETUP-MESSAGE)])\r\n";
        match body(prefetch) {
            C::Fetch {
                uid: true, items, ..
            } => {
                assert_eq!(items.len(), 4);
                assert_eq!(
                    items[..3],
                    [
                        FetchItem::Uid,
                        FetchItem::InternalDate,
                        FetchItem::Rfc822Size
                    ]
                );
                match &items[3] {
                    FetchItem::BodySection {
                        peek: true,
                        section,
                        partial: None,
                    } => {
                        assert!(section.part.is_empty());
                        match &section.text {
                            Some(SectionText::HeaderFields(f)) => {
                                assert_eq!(f.len(), 8);
                                assert_eq!(f[0], "MESSAGE-ID");
                            }
                            other => panic!("{other:?}"),
                        }
                    }
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            body("A9 UID FETCH 7,9:12 (FLAGS BODY.PEEK[])\r\n"),
            C::Fetch {
                uid: true,
                set: set("7,9:12"),
                items: vec![
                    FetchItem::Flags,
                    FetchItem::BodySection {
                        peek: true,
                        section: Section::default(),
                        partial: None
                    }
                ],
                changed_since: None,
            }
        );
        assert_eq!(
            body("A10 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1234)\r\n"),
            C::Fetch {
                uid: true,
                set: set("1:*"),
                items: vec![FetchItem::Flags],
                changed_since: Some(1234)
            }
        );
        assert_eq!(
            body("A11 UID STORE 3:5,9 +FLAGS (\\Seen)\r\n"),
            C::Store {
                uid: true,
                set: set("3:5,9"),
                unchanged_since: None,
                mode: StoreMode::Add,
                silent: false,
                flags: vec![Flag::Seen],
            }
        );
        assert_eq!(
            body("A12 UID MOVE 3:5 \"DeltaChat\"\r\n"),
            C::Move {
                uid: true,
                set: set("3:5"),
                mailbox: "DeltaChat".into()
            }
        );
        assert_eq!(
            body("A13 UID COPY 3:5 \"DeltaChat\"\r\n"),
            C::Copy {
                uid: true,
                set: set("3:5"),
                mailbox: "DeltaChat".into()
            }
        );
        assert_eq!(body("A14 IDLE\r\n"), C::Idle);
        assert_eq!(
            body("A15 GETQUOTAROOT \"INBOX\"\r\n"),
            C::GetQuotaRoot {
                mailbox: "INBOX".into()
            }
        );
        assert_eq!(
            body("A16 GETMETADATA \"\" (/shared/comment /shared/admin /shared/vendor/deltachat/irohrelay /shared/vendor/deltachat/turn)\r\n"),
            C::GetMetadata {
                mailbox: "".into(),
                max_size: None,
                depth: MetadataDepth::Zero,
                entries: vec![
                    "/shared/comment".into(),
                    "/shared/admin".into(),
                    "/shared/vendor/deltachat/irohrelay".into(),
                    "/shared/vendor/deltachat/turn".into(),
                ],
            }
        );
        // Older async-imap writes the options first.
        assert_eq!(
            body("A16 GETMETADATA (DEPTH 0) \"\" (/shared/comment)\r\n"),
            C::GetMetadata {
                mailbox: "".into(),
                max_size: None,
                depth: MetadataDepth::Zero,
                entries: vec!["/shared/comment".into()],
            }
        );
        let token = "-----BEGIN PGP MESSAGE-----";
        let s = format!(
            "A17 SETMETADATA \"INBOX\" (/private/devicetoken {{{}+}}\r\n{token})\r\n",
            token.len()
        );
        assert_eq!(
            body(&s),
            C::SetMetadata {
                mailbox: "INBOX".into(),
                entries: vec![(
                    "/private/devicetoken".into(),
                    Some(token.as_bytes().to_vec())
                )],
            }
        );
        assert_eq!(
            body("A18 COMPRESS DEFLATE\r\n"),
            C::Compress {
                mechanism: "DEFLATE".into()
            }
        );
        assert_eq!(body("A19 CLOSE\r\n"), C::Close);
        assert_eq!(body("A20 LOGOUT\r\n"), C::Logout);
    }

    #[test]
    fn extensions() {
        assert_eq!(
            body("a UID EXPUNGE 3000:3002\r\n"),
            C::UidExpunge {
                set: set("3000:3002")
            }
        );
        assert_eq!(
            body("a MOVE 1:3 Trash\r\n"),
            C::Move {
                uid: false,
                set: set("1:3"),
                mailbox: "Trash".into()
            }
        );
        assert_eq!(
            body("a ENABLE CONDSTORE utf8=accept\r\n"),
            C::Enable {
                capabilities: vec!["CONDSTORE".into(), "UTF8=ACCEPT".into()]
            }
        );
        assert_eq!(body("a NAMESPACE\r\n"), C::Namespace);
        assert_eq!(body("a UNSELECT\r\n"), C::Unselect);
        assert_eq!(
            body("a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
            C::Authenticate {
                mechanism: "PLAIN".into(),
                initial: Some(b"\0alice\0secret".to_vec())
            }
        );
        assert_eq!(
            body("a AUTHENTICATE EXTERNAL =\r\n"),
            C::Authenticate {
                mechanism: "EXTERNAL".into(),
                initial: Some(vec![])
            }
        );
        assert_eq!(
            body("a CREATE Sent (USE (\\Sent))\r\n"),
            C::Create {
                mailbox: "Sent".into(),
                special_use: vec!["\\Sent".into()]
            }
        );
        assert_eq!(
            body("a LIST (SPECIAL-USE) \"\" (INBOX %) RETURN (SUBSCRIBED STATUS (MESSAGES UNSEEN))\r\n"),
            C::List(ListCommand {
                reference: "".into(),
                patterns: vec!["INBOX".into(), "%".into()],
                select: vec!["SPECIAL-USE".into()],
                returns: vec!["SUBSCRIBED".into()],
                return_status: Some(vec![StatusItem::Messages, StatusItem::Unseen]),
            })
        );
        assert_eq!(
            body("a LIST \"\" \"*\" RETURN (SPECIAL-USE)\r\n"),
            C::List(ListCommand {
                reference: "".into(),
                patterns: vec!["*".into()],
                returns: vec!["SPECIAL-USE".into()],
                ..Default::default()
            })
        );
        assert_eq!(
            body("a STORE 1 (UNCHANGEDSINCE 12345) -FLAGS.SILENT (\\Seen $Label1)\r\n"),
            C::Store {
                uid: false,
                set: set("1"),
                unchanged_since: Some(12345),
                mode: StoreMode::Remove,
                silent: true,
                flags: vec![Flag::Seen, Flag::Keyword("$Label1".into())],
            }
        );
        assert_eq!(
            body("a STORE 1 FLAGS ()\r\n"),
            C::Store {
                uid: false,
                set: set("1"),
                unchanged_since: None,
                mode: StoreMode::Replace,
                silent: false,
                flags: vec![],
            }
        );
        assert_eq!(
            body("a GETMETADATA (DEPTH infinity MAXSIZE 1024) INBOX /private/comment\r\n"),
            C::GetMetadata {
                mailbox: "INBOX".into(),
                max_size: Some(1024),
                depth: MetadataDepth::Infinity,
                entries: vec!["/private/comment".into()],
            }
        );
        assert_eq!(
            body("a GETMETADATA INBOX (MAXSIZE 10) (/a /b)\r\n"),
            C::GetMetadata {
                mailbox: "INBOX".into(),
                max_size: Some(10),
                depth: MetadataDepth::Zero,
                entries: vec!["/a".into(), "/b".into()],
            }
        );
        assert_eq!(
            body("a SETMETADATA INBOX (/private/comment NIL)\r\n"),
            C::SetMetadata {
                mailbox: "INBOX".into(),
                entries: vec![("/private/comment".into(), None)]
            }
        );
        assert_eq!(body("a GETQUOTA \"\"\r\n"), C::GetQuota { root: "".into() });
    }

    #[test]
    fn search_grammar() {
        use SearchKey as K;
        let crit = |s: &str| match body(s) {
            C::Search { criteria, .. } => criteria,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            crit("a UID SEARCH OR (SEEN UNDELETED) NOT UID 1:5 HEADER Chat-Version \"\"\r\n"),
            K::And(vec![
                K::Or(
                    Box::new(K::And(vec![K::Seen, K::Undeleted])),
                    Box::new(K::Not(Box::new(K::Uid(set("1:5"))))),
                ),
                K::Header("Chat-Version".into(), vec![]),
            ])
        );
        assert_eq!(
            crit("a SEARCH 2,4:* LARGER 100 SMALLER 5000 SENTON \"3-Mar-2024\" KEYWORD $Junk\r\n"),
            K::And(vec![
                K::SequenceSet(set("2,4:*")),
                K::Larger(100),
                K::Smaller(5000),
                K::SentOn(Date::new(2024, 3, 3).unwrap()),
                K::Keyword("$Junk".into()),
            ])
        );
        assert_eq!(
            crit("a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338\r\n"),
            K::ModSeq {
                entry: Some(("/flags/\\draft".into(), "all".into())),
                modseq: 620162338
            }
        );
        assert_eq!(
            crit("a SEARCH MODSEQ 5\r\n"),
            K::ModSeq {
                entry: None,
                modseq: 5
            }
        );
        assert_eq!(crit("a SEARCH YOUNGER 3600\r\n"), K::Younger(3600));
        let deep = format!("a SEARCH {}ALL{}\r\n", "(".repeat(40), ")".repeat(40));
        assert!(bad(&deep).1.contains("deeply"));
        let nots = format!("a SEARCH {}ALL\r\n", "NOT ".repeat(40));
        assert!(bad(&nots).1.contains("deeply"));
        assert!(bad("a SEARCH SINCE 30-Feb-2024\r\n").1.contains("date"));
    }

    #[test]
    fn fetch_sections_and_partials() {
        let items = |s: &str| match body(s) {
            C::Fetch { items, .. } => items,
            other => panic!("{other:?}"),
        };
        let sec = |part: Vec<u32>, text: Option<SectionText>, partial| FetchItem::BodySection {
            peek: false,
            section: Section { part, text },
            partial,
        };
        assert_eq!(
            items("a FETCH 1 (BODY[1.2.MIME] BODY[3.HEADER]<0.100> BODY[TEXT] BODY[2] BODYSTRUCTURE BODY ENVELOPE RFC822.HEADER RFC822.TEXT RFC822 MODSEQ)\r\n"),
            vec![
                sec(vec![1, 2], Some(SectionText::Mime), None),
                sec(vec![3], Some(SectionText::Header), Some((0, 100))),
                sec(vec![], Some(SectionText::Text), None),
                sec(vec![2], None, None),
                FetchItem::BodyStructure,
                FetchItem::Body,
                FetchItem::Envelope,
                FetchItem::Rfc822Header,
                FetchItem::Rfc822Text,
                FetchItem::Rfc822,
                FetchItem::ModSeq,
            ]
        );
        assert_eq!(
            items("a FETCH 1 BODY.PEEK[1.HEADER.FIELDS.NOT (Received \"X-Y\")]\r\n"),
            vec![FetchItem::BodySection {
                peek: true,
                section: Section {
                    part: vec![1],
                    text: Some(SectionText::HeaderFieldsNot(vec![
                        "Received".into(),
                        "X-Y".into()
                    ])),
                },
                partial: None,
            }]
        );
        assert_eq!(items("a FETCH 1 fast\r\n").len(), 3);
        assert_eq!(items("a FETCH 1 ALL\r\n").len(), 4);
        for b in [
            "a FETCH 1 BODY[MIME]\r\n",
            "a FETCH 1 BODY[0]\r\n",
            "a FETCH 1 BODY[1.]\r\n",
            "a FETCH 1 BODY[HEADER.FIELDS ()]\r\n",
            "a FETCH 1 BODY[]<1.0>\r\n",
            "a FETCH 1 BODY.PEEK\r\n",
            "a FETCH 1 (FLAGS\r\n",
            "a FETCH 0 FLAGS\r\n",
            "a FETCH 1 FLAGS (CHANGEDSINCE x)\r\n",
        ] {
            assert_eq!(bad(b).0.as_deref(), Some("a"), "{b}");
        }
    }

    #[test]
    fn literals_split_across_reads() {
        let full = b"x LOGIN {5}\r\nalice {6+}\r\nsecret\r\n";
        let mut acked = Vec::new();
        let mut result = None;
        for n in 0..=full.len() {
            match parse_command(&full[..n], &lim()) {
                Parsed::NeedMore => {}
                Parsed::NeedLiteral { size, sync, at } => {
                    if sync && !acked.contains(&at) {
                        acked.push(at);
                    }
                    assert!(size == 5 || size == 6);
                }
                Parsed::Complete { command, consumed } => {
                    assert_eq!(n, full.len());
                    assert_eq!(consumed, full.len());
                    result = Some(command);
                }
                other => panic!("{n}: {other:?}"),
            }
        }
        // One continuation, for the synchronising literal only.
        assert_eq!(acked, vec![13]);
        assert_eq!(
            result.unwrap().body,
            C::Login {
                user: b"alice".to_vec(),
                password: b"secret".to_vec()
            }
        );
    }

    #[test]
    fn bad_and_need_more_paths() {
        assert_eq!(parse_command(b"", &lim()), Parsed::NeedMore);
        assert_eq!(parse_command(b"a001 NOO", &lim()), Parsed::NeedMore);
        assert_eq!(parse_command(b"a001 NOOP\r", &lim()), Parsed::NeedMore);
        // Bare LF accepted as a line end.
        assert!(matches!(
            parse_command(b"a NOOP\n", &lim()),
            Parsed::Complete { consumed: 7, .. }
        ));
        // No tag.
        assert_eq!(bad("\r\n"), (None, "missing tag".into(), 2));
        assert_eq!(bad("+ NOOP\r\n").0, None);
        // Syntax error drops exactly the bad line; the next command survives.
        let two = b"a1 FETCH x\r\na2 NOOP\r\n";
        match parse_command(two, &lim()) {
            Parsed::Bad { tag, consumed, .. } => {
                assert_eq!(tag.as_deref(), Some("a1"));
                assert_eq!(consumed, 12);
                assert!(matches!(
                    parse_command(&two[consumed..], &lim()),
                    Parsed::Complete {
                        command: Command { body: C::Noop, .. },
                        ..
                    }
                ));
            }
            other => panic!("{other:?}"),
        }
        // Error before a non-synchronising literal: its data is skipped too.
        let s = b"a1 FOO {3+}\r\nabc more\r\na2 NOOP\r\n";
        match parse_command(s, &lim()) {
            Parsed::Bad { consumed, .. } => assert_eq!(&s[consumed..], b"a2 NOOP\r\n"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_command(b"a1 FOO {3+}\r\nab", &lim()),
            Parsed::NeedMore
        );
        // Error before a synchronising literal: the client waits, so stop there.
        assert_eq!(bad("a1 FOO {3}\r\n").2, 12);
        // Trailing garbage.
        assert_eq!(bad("a NOOP x\r\n").0.as_deref(), Some("a"));
        assert_eq!(bad("a SELECT\r\n").0.as_deref(), Some("a"));
        assert_eq!(bad("a LOGIN \"unterminated\r\n").2, 23);
        assert_eq!(bad("a LOGIN \"bad\\escape\" x\r\n").0.as_deref(), Some("a"));
    }

    #[test]
    fn limits_hold() {
        let small = Limits {
            max_line: 64,
            max_literal: 10,
            max_append: 100,
            max_items: 5,
            ..Limits::default()
        };
        // A line too long with no end: fatal, nothing buffered forever.
        let long = vec![b'a'; 100];
        assert!(matches!(parse_command(&long, &small), Parsed::Fatal { .. }));
        // A complete but too long line: BAD, skipped.
        let mut l = b"a NOOP ".to_vec();
        l.extend(vec![b'x'; 80]);
        l.extend(b"\r\n");
        assert!(
            matches!(parse_command(&l, &small), Parsed::Bad { consumed, .. } if consumed == l.len())
        );
        // A sync literal over the limit: BAD [TOOBIG] before any data comes.
        match parse_command(b"a LOGIN {11}\r\n", &small) {
            Parsed::Bad {
                tag,
                reason,
                consumed,
            } => {
                assert_eq!(tag.as_deref(), Some("a"));
                assert!(reason.starts_with("[TOOBIG]"));
                assert_eq!(consumed, 14);
            }
            other => panic!("{other:?}"),
        }
        // APPEND has its own, larger limit.
        assert!(matches!(
            parse_command(b"a APPEND x {100}\r\n", &small),
            Parsed::NeedLiteral { size: 100, .. }
        ));
        assert!(matches!(
            parse_command(b"a APPEND x {101}\r\n", &small),
            Parsed::Bad { .. }
        ));
        // A non-sync literal over the limit: the bytes are coming anyway.
        assert!(matches!(
            parse_command(b"a APPEND x {101+}\r\n", &small),
            Parsed::Fatal { .. }
        ));
        // A claimed 2^63 literal is refused, nothing allocated.
        assert!(matches!(
            parse_command(b"a APPEND x {9223372036854775807}\r\n", &lim()),
            Parsed::Bad { .. }
        ));
        assert!(bad("a APPEND x {99999999999999999999}\r\n")
            .1
            .contains("number"));
        // Item counts.
        assert!(matches!(
            parse_command(b"a STORE 1 FLAGS (a b c d e f)\r\n", &small),
            Parsed::Bad { reason, .. } if reason.contains("too many")
        ));
    }

    #[test]
    fn auth_and_idle_lines() {
        assert_eq!(parse_auth_line(b"AGEAYg==", &lim()), AuthLine::NeedMore);
        assert_eq!(
            parse_auth_line(b"AGEAYg==\r\nrest", &lim()),
            AuthLine::Response {
                data: b"\0a\0b".to_vec(),
                consumed: 10
            }
        );
        assert_eq!(
            parse_auth_line(b"\r\n", &lim()),
            AuthLine::Response {
                data: vec![],
                consumed: 2
            }
        );
        assert_eq!(
            parse_auth_line(b"*\r\n", &lim()),
            AuthLine::Cancel { consumed: 3 }
        );
        assert_eq!(
            parse_auth_line(b"!!\r\n", &lim()),
            AuthLine::Bad { consumed: 4 }
        );
        assert_eq!(
            sasl_plain(b"\0alice@example.org\0pw"),
            Some((vec![], b"alice@example.org".to_vec(), b"pw".to_vec()))
        );
        assert_eq!(sasl_plain(b"alice\0pw"), None);
        assert_eq!(parse_idle_done(b"DON", &lim()), IdleEnd::NeedMore);
        assert_eq!(
            parse_idle_done(b"done\r\n", &lim()),
            IdleEnd::Done { consumed: 6 }
        );
        assert_eq!(
            parse_idle_done(b"a NOOP\r\n", &lim()),
            IdleEnd::Bad { consumed: 8 }
        );
    }

    #[test]
    fn seq_star_forms() {
        match body("a UID FETCH * UID\r\n") {
            C::Fetch { set, .. } => assert_eq!(set.ranges, vec![(SeqNum::Star, SeqNum::Star)]),
            other => panic!("{other:?}"),
        }
    }
}
