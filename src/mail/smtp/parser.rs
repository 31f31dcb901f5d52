//! The SMTP/LMTP wire parser: line framing, commands, replies and the DATA
//! reader. Pure: bytes in, values out, no I/O, so every input a peer can
//! send is tested here and fuzzable.
//!
//! Limits: a command line is at most [`MAX_LINE`] bytes (RFC 5321 4.5.3.1.4
//! allows 512; AUTH initial responses need more); a longer line is skipped to
//! its end and reported once as [`Frame::TooLong`]. A command ending in a bare
//! LF is reported as [`Frame::BareLf`] (RFC 5321 2.3.8). In DATA only
//! `CRLF.CRLF` ends the message (a bare-LF dot line does not: that is what
//! SMTP smuggling uses), dots are unstuffed (4.5.2), and bytes beyond the size
//! limit are counted but not kept.

use std::fmt;

/// Longest accepted command line, CRLF included.
pub const MAX_LINE: usize = 4096;

/// One framed command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A line, CRLF stripped.
    Line(&'a [u8]),
    /// A line that ended in LF without CR.
    BareLf,
    /// A line longer than [`MAX_LINE`] (its bytes were dropped).
    TooLong,
}

/// Splits command lines; keeps the one bit of state an over-long line needs.
#[derive(Debug, Default)]
pub struct Framer {
    discarding: bool,
}

impl Framer {
    /// The next frame at the start of `buf` and how many bytes it used; `None`
    /// when more bytes are needed (after consuming the returned count, which
    /// is non-zero only while skipping an over-long line).
    pub fn next<'a>(&mut self, buf: &'a [u8]) -> (Option<Frame<'a>>, usize) {
        match buf.iter().position(|b| *b == b'\n') {
            Some(i) => {
                if self.discarding {
                    self.discarding = false;
                    return (Some(Frame::TooLong), i + 1);
                }
                if i + 1 > MAX_LINE {
                    return (Some(Frame::TooLong), i + 1);
                }
                if i == 0 || buf[i - 1] != b'\r' {
                    return (Some(Frame::BareLf), i + 1);
                }
                (Some(Frame::Line(&buf[..i - 1])), i + 1)
            }
            None if self.discarding => (None, buf.len()),
            None if buf.len() >= MAX_LINE => {
                self.discarding = true;
                (None, buf.len())
            }
            None => (None, 0),
        }
    }
}

/// An SMTP reply: code and text lines (the enhanced status code, when any,
/// starts the text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Self {
            code,
            lines: vec![text.into()],
        }
    }

    /// Wire form: `250-a\r\n250 b\r\n`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let n = self.lines.len();
        for (i, l) in self.lines.iter().enumerate() {
            let sep = if i + 1 < n { '-' } else { ' ' };
            out.extend_from_slice(format!("{}{}{}\r\n", self.code, sep, l).as_bytes());
        }
        if n == 0 {
            out.extend_from_slice(format!("{} \r\n", self.code).as_bytes());
        }
        out
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" / "))
    }
}

/// MAIL FROM parameters we understand (RFC 1870, 6152, 6531).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    pub smtputf8: bool,
    pub body_8bit: bool,
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Lhlo(String),
    /// Reverse path (empty for the null sender `<>`).
    Mail {
        from: String,
        params: MailParams,
    },
    Rcpt {
        to: String,
    },
    Data,
    Bdat,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    StartTls,
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
}

fn syntax(msg: &str) -> Reply {
    Reply::new(501, format!("5.5.4 Syntax error: {msg}"))
}

/// Parse a path `<local@domain>` (source routes dropped, RFC 5321 4.1.2).
/// Returns the address; `""` for `<>` when `allow_null`.
pub fn parse_path(s: &str, allow_null: bool) -> Result<String, Reply> {
    let s = s.trim();
    let inner = s
        .strip_prefix('<')
        .and_then(|x| x.strip_suffix('>'))
        .ok_or_else(|| syntax("address must be in angle brackets"))?;
    let inner = match inner.split_once(':') {
        Some((route, rest)) if route.starts_with('@') => rest,
        _ => inner,
    };
    if inner.is_empty() {
        return if allow_null {
            Ok(String::new())
        } else {
            Err(syntax("empty address"))
        };
    }
    let (local, domain) = inner
        .rsplit_once('@')
        .ok_or_else(|| syntax("address needs a domain"))?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && (local.starts_with('"') && local.ends_with('"') && local.len() >= 2
            || local.chars().all(|c| {
                !c.is_ascii() || c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c)
            }));
    let domain_ok = !domain.is_empty()
        && domain.len() <= 255
        && domain
            .chars()
            // `_` as in `_chat.localhost` (see `mail::config::valid_domain`).
            .all(|c| !c.is_ascii() || c.is_ascii_alphanumeric() || "-_.[]:".contains(c));
    if !local_ok || !domain_ok {
        return Err(syntax("bad address"));
    }
    Ok(inner.to_owned())
}

/// The EHLO/HELO/LHLO argument: one word (RFC 5321 §4.1.1.1: a Domain or
/// an address-literal, UTF-8 under SMTPUTF8) no longer than a domain may be
/// (255 bytes), holding no space, control character, line separator or
/// invisible formatting character. Lenient beyond that, as mail servers
/// are with the names real clients send (`my_pc`, `[IPv6:::1]`); strict
/// where it matters: the name goes into Received headers and log lines.
fn helo_name_ok(name: &str) -> bool {
    name.len() <= 255
        && !name
            .chars()
            .any(|c| c.is_whitespace() || crate::log_safe::needs_escape(c))
}

/// Parse one command line (CRLF already stripped).
pub fn parse_command(line: &[u8]) -> Result<Command, Reply> {
    let line = std::str::from_utf8(line)
        .map_err(|_| Reply::new(500, "5.5.2 Command line is not valid UTF-8"))?;
    if line.bytes().any(|b| b == 0 || b == b'\r' || b == b'\n') {
        return Err(Reply::new(500, "5.5.2 Control characters in command"));
    }
    let (verb, rest) = match line.split_once(' ') {
        Some((v, r)) => (v, r),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    let arg = rest.trim();
    let no_arg = |c: Command| {
        if arg.is_empty() {
            Ok(c)
        } else {
            Err(syntax("no argument expected"))
        }
    };
    match verb.as_str() {
        "EHLO" | "HELO" | "LHLO" => {
            if arg.is_empty() {
                return Err(syntax("a domain or address literal is required"));
            }
            if !helo_name_ok(arg) {
                return Err(syntax(
                    "the name must be one domain or address literal, at most 255 bytes",
                ));
            }
            let d = arg.to_owned();
            Ok(match verb.as_str() {
                "EHLO" => Command::Ehlo(d),
                "HELO" => Command::Helo(d),
                _ => Command::Lhlo(d),
            })
        }
        "MAIL" => {
            let Some(r) = strip_prefix_ci(arg, "FROM:") else {
                return Err(syntax("expected MAIL FROM:<address>"));
            };
            let r = r.trim_start();
            let (path, params) = split_path(r);
            let from = parse_path(path, true)?;
            let mut p = MailParams::default();
            for param in params.split_ascii_whitespace() {
                let (k, v) = match param.split_once('=') {
                    Some((k, v)) => (k.to_ascii_uppercase(), Some(v)),
                    None => (param.to_ascii_uppercase(), None),
                };
                match (k.as_str(), v) {
                    ("SIZE", Some(v)) => {
                        p.size = Some(v.parse().map_err(|_| syntax("SIZE needs a number"))?)
                    }
                    ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => p.body_8bit = true,
                    ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => {}
                    ("SMTPUTF8", None) => p.smtputf8 = true,
                    // RFC 4954 5: AUTH= is accepted and ignored.
                    ("AUTH", Some(_)) => {}
                    _ => {
                        return Err(Reply::new(
                            555,
                            format!("5.5.4 Unsupported parameter {param}"),
                        ))
                    }
                }
            }
            Ok(Command::Mail { from, params: p })
        }
        "RCPT" => {
            let Some(r) = strip_prefix_ci(arg, "TO:") else {
                return Err(syntax("expected RCPT TO:<address>"));
            };
            let (path, params) = split_path(r.trim_start());
            if !params.trim().is_empty() {
                return Err(Reply::new(555, "5.5.4 RCPT parameters are not supported"));
            }
            let to = parse_path(path, false)?;
            Ok(Command::Rcpt { to })
        }
        "DATA" => no_arg(Command::Data),
        "BDAT" => Ok(Command::Bdat),
        "RSET" => no_arg(Command::Rset),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_arg(Command::Quit),
        "VRFY" => Ok(Command::Vrfy),
        "HELP" => Ok(Command::Help),
        "STARTTLS" => no_arg(Command::StartTls),
        "AUTH" => {
            let mut it = arg.split_ascii_whitespace();
            let mechanism = it
                .next()
                .ok_or_else(|| syntax("AUTH needs a mechanism"))?
                .to_ascii_uppercase();
            let initial = it.next().map(str::to_owned);
            if it.next().is_some() {
                return Err(syntax("too many AUTH arguments"));
            }
            Ok(Command::Auth { mechanism, initial })
        }
        _ => Err(Reply::new(500, "5.5.2 Command not recognized")),
    }
}

fn strip_prefix_ci<'a>(s: &'a str, p: &str) -> Option<&'a str> {
    if s.len() >= p.len() && s.is_char_boundary(p.len()) && s[..p.len()].eq_ignore_ascii_case(p) {
        Some(&s[p.len()..])
    } else {
        None
    }
}

/// `<path> params` → (`<path>`, `params`); the path may contain quoted spaces.
fn split_path(s: &str) -> (&str, &str) {
    match s.find('>') {
        Some(i) => (&s[..=i], &s[i + 1..]),
        None => (s, ""),
    }
}

/// The state of a message being received after `354`.
#[derive(Debug)]
pub struct DataReader {
    max: usize,
    data: Vec<u8>,
    /// Bytes seen (after unstuffing), including those beyond `max`.
    pub total: usize,
    at_line_start: bool,
    prev_cr: bool,
    /// A line in the message ended in a bare LF.
    pub bare_lf: bool,
}

/// Outcome of [`DataReader::feed`].
#[derive(Debug, PartialEq, Eq)]
pub enum DataStatus {
    /// Everything given was consumed (or must be kept): read more.
    NeedMore,
    /// The end-of-data line was seen.
    Done,
}

impl DataReader {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            data: Vec::new(),
            total: 0,
            at_line_start: true,
            prev_cr: false,
            bare_lf: false,
        }
    }

    /// More than the size limit arrived.
    pub fn too_big(&self) -> bool {
        self.total > self.max
    }

    /// The message received so far (complete once `Done`).
    pub fn into_message(self) -> Vec<u8> {
        self.data
    }

    fn push(&mut self, b: &[u8]) {
        if b.is_empty() {
            return;
        }
        self.total = self.total.saturating_add(b.len());
        if self.total <= self.max {
            self.data.extend_from_slice(b);
        }
        self.prev_cr = b.last() == Some(&b'\r');
    }

    /// Consume from `buf`; returns the status and the number of bytes used.
    pub fn feed(&mut self, buf: &[u8]) -> (DataStatus, usize) {
        let mut off = 0;
        while off < buf.len() {
            let rest = &buf[off..];
            if self.at_line_start {
                if rest.starts_with(b".\r\n") {
                    return (DataStatus::Done, off + 3);
                }
                if b".\r\n".starts_with(rest) {
                    // "." or ".\r": cannot tell yet.
                    return (DataStatus::NeedMore, off);
                }
                if rest[0] == b'.' {
                    // Dot-unstuffing (RFC 5321 4.5.2).
                    off += 1;
                    self.at_line_start = false;
                    self.prev_cr = false;
                    continue;
                }
            }
            match rest.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    let cr_before = if i == 0 {
                        self.prev_cr
                    } else {
                        rest[i - 1] == b'\r'
                    };
                    if !cr_before {
                        self.bare_lf = true;
                    }
                    self.push(&rest[..=i]);
                    self.at_line_start = true;
                    self.prev_cr = false;
                    off += i + 1;
                }
                None => {
                    self.push(rest);
                    self.at_line_start = false;
                    off = buf.len();
                }
            }
        }
        (DataStatus::NeedMore, off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        let mut f = Framer::default();
        assert_eq!(f.next(b"NOOP\r\nQU"), (Some(Frame::Line(b"NOOP")), 6));
        assert_eq!(f.next(b"QU"), (None, 0));
        assert_eq!(f.next(b"NOOP\n"), (Some(Frame::BareLf), 5));
        let long = vec![b'A'; MAX_LINE + 10];
        assert_eq!(f.next(&long), (None, long.len()));
        assert_eq!(f.next(b"AAAA\r\nNOOP\r\n"), (Some(Frame::TooLong), 6));
        assert_eq!(f.next(b"NOOP\r\n"), (Some(Frame::Line(b"NOOP")), 6));
    }

    #[test]
    fn commands() {
        assert_eq!(
            parse_command(b"MAIL FROM:<a@b.org> SIZE=100 BODY=8BITMIME SMTPUTF8").unwrap(),
            Command::Mail {
                from: "a@b.org".into(),
                params: MailParams {
                    size: Some(100),
                    smtputf8: true,
                    body_8bit: true
                }
            }
        );
        assert_eq!(
            parse_command(b"mail from: <>").unwrap(),
            Command::Mail {
                from: String::new(),
                params: MailParams::default()
            }
        );
        assert_eq!(
            parse_command(b"RCPT TO:<@relay.org:x@y.org>").unwrap(),
            Command::Rcpt {
                to: "x@y.org".into()
            }
        );
        assert_eq!(parse_command(b"RCPT TO:<>").unwrap_err().code, 501);
        assert_eq!(parse_command(b"RCPT TO:x@y").unwrap_err().code, 501);
        assert_eq!(
            parse_command(b"MAIL FROM:<a@b> FOO=1").unwrap_err().code,
            555
        );
        assert_eq!(parse_command(b"XYZZY").unwrap_err().code, 500);
        assert_eq!(parse_command(b"DATA x").unwrap_err().code, 501);
        assert_eq!(parse_command(b"\xff\xfe").unwrap_err().code, 500);
        assert_eq!(
            parse_command(b"AUTH plain AGEAYg==").unwrap(),
            Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGEAYg==".into())
            }
        );
        assert_eq!(parse_command(b"EHLO").unwrap_err().code, 501);
    }

    #[test]
    fn helo_names_are_one_printable_word() {
        for ok in [
            "mail.example.org",
            "[192.0.2.1]",
            "[IPv6:2001:db8::1]",
            "my_pc",
            "DESKTOP-AB12CD",
            "bücher.example",
        ] {
            let line = format!("EHLO {ok}");
            assert_eq!(
                parse_command(line.as_bytes()),
                Ok(Command::Ehlo(ok.into())),
                "{ok}"
            );
        }
        let long = format!("EHLO {}", "a".repeat(256));
        for bad in [
            "EHLO a.example FORGED",
            "HELO a.example\x1b[2J",
            "EHLO a.example\tx",
            "LHLO a\u{2028}b",
            "EHLO a\u{85}b",
            "HELO \u{202e}gro.elpmaxe",
            long.as_str(),
        ] {
            let e = parse_command(bad.as_bytes()).unwrap_err();
            assert_eq!(e.code, 501, "{bad:?}");
        }
    }

    #[test]
    fn data_unstuffing_and_end() {
        let mut d = DataReader::new(1000);
        let input = b"Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n";
        assert_eq!(d.feed(input), (DataStatus::Done, input.len() - 6));
        assert!(!d.bare_lf);
        assert_eq!(d.into_message(), b"Subject: x\r\n\r\n.dot\r\n");
    }

    #[test]
    fn data_split_anywhere_gives_same_result() {
        let input = b"a\r\n..b\r\n.c\r\n\r\n.\r\n";
        for cut in 0..input.len() {
            let mut d = DataReader::new(1000);
            let (s, n) = d.feed(&input[..cut]);
            assert_eq!(s, DataStatus::NeedMore);
            let (s2, _) = d.feed(&input[n..]);
            assert_eq!(s2, DataStatus::Done, "cut {cut}");
            assert_eq!(d.into_message(), b"a\r\n.b\r\nc\r\n\r\n", "cut {cut}");
        }
    }

    #[test]
    fn bare_lf_dot_does_not_end_data_and_is_flagged() {
        let mut d = DataReader::new(1000);
        let (s, _) = d.feed(b"a\n.\nMAIL FROM:<x@y>\r\n");
        assert_eq!(s, DataStatus::NeedMore);
        assert!(d.bare_lf);
        let (s, _) = d.feed(b".\r\n");
        assert_eq!(s, DataStatus::Done);
    }

    #[test]
    fn oversize_is_counted_not_kept() {
        let mut d = DataReader::new(10);
        let (s, _) = d.feed(b"0123456789abcdef\r\n.\r\n");
        assert_eq!(s, DataStatus::Done);
        assert!(d.too_big());
        assert!(d.into_message().is_empty());
    }

    /// Random bytes (biased towards SMTP's own characters) through every
    /// parser entry point: no panic, and every call makes progress or asks
    /// for more.
    #[test]
    fn random_input_never_panics() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        const ALPHABET: &[u8] = b"\r\n.:<>@ =MAILFROMRCPTDATAUTH\x00\xff\xc3";
        for _ in 0..3000 {
            let len = (next() % 300) as usize;
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 4 == 0 {
                        r as u8
                    } else {
                        ALPHABET[(r >> 8) as usize % ALPHABET.len()]
                    }
                })
                .collect();
            let mut f = Framer::default();
            let mut off = 0;
            for _ in 0..=buf.len() {
                let (frame, used) = f.next(&buf[off..]);
                if let Some(Frame::Line(l)) = frame {
                    let _ = parse_command(l);
                }
                off += used;
                if frame.is_none() {
                    break;
                }
            }
            let _ = parse_command(&buf);
            let mut d = DataReader::new(100);
            let (_, used) = d.feed(&buf);
            assert!(used <= buf.len());
            let _ = crate::smtp_reply::parse_reply(&buf);
        }
    }

    #[test]
    fn replies() {
        let r = Reply {
            code: 250,
            lines: vec!["a".into(), "b".into()],
        };
        assert_eq!(r.to_bytes(), b"250-a\r\n250 b\r\n");
        // What the server writes, the one reply client reads back.
        let crate::smtp_reply::Parsed::Complete(back, 14) =
            crate::smtp_reply::parse_reply(&r.to_bytes()).unwrap()
        else {
            panic!("not one complete reply")
        };
        assert_eq!((back.code, back.lines), (r.code, r.lines));
    }
}
