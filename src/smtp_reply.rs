//! SMTP replies as a client reads them (RFC 5321 §4.2): the one pure parser
//! and the one reading loop, shared by the front door's XCLIENT prelude
//! (`frontdoor::xclient`), the bundled servers' smarthost client
//! (`mail::smtp::relay`) and the delivery worker's client
//! (`mail::delivery::client`).
//!
//! Invariants:
//! - [`parse_reply`] is pure, with an explicit "need more bytes" result
//!   ([`Parsed::Incomplete`]) and hard limits ([`MAX_LINE`], [`MAX_REPLY`]);
//! - every line of one reply carries the same code, and the fourth byte is
//!   `-` (more lines follow), a space, or the line end (the last line);
//! - [`read_reply`] reads exactly one reply and leaves any bytes after it in
//!   the caller's buffer, so the caller decides whether they are an error.
//!
//! Deadlines belong to the callers (one for the whole XCLIENT prelude, one
//! per step of a smarthost hand-over), which wrap [`read_reply`] in theirs.

#![warn(missing_docs)]

use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest reply line accepted, line end included (RFC 5321 §4.5.3.1.5 says
/// 512 octets; twice that leaves room for servers that stretch it).
pub const MAX_LINE: usize = 1024;
/// Longest multi-line reply accepted (an EHLO reply is a few hundred bytes).
pub const MAX_REPLY: usize = 8192;

/// One complete SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code (RFC 5321 §4.2.1).
    pub code: u16,
    /// The text of each line, without code, separator and line end.
    pub lines: Vec<String>,
    /// The reply exactly as received, line ends included.
    pub raw: Vec<u8>,
}

impl Reply {
    /// The code and the first line as sent, for error messages.
    pub fn summary(&self) -> String {
        let first = self.lines.first().map(String::as_str).unwrap_or("");
        format!("{} {}", self.code, first)
    }

    /// The code and every line's text joined by spaces, for error messages
    /// that carry the whole of what the server said.
    pub fn text(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" "))
    }
}

/// Result of feeding bytes to [`parse_reply`].
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole reply, and how many bytes of the input it used.
    Complete(Reply, usize),
    /// The reply is not finished yet: read more and call again.
    Incomplete,
}

/// Why bytes are not an SMTP reply. Always the server's fault: it spoke
/// broken SMTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// One line is longer than [`MAX_LINE`].
    #[error("reply line longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// The whole reply is longer than [`MAX_REPLY`].
    #[error("reply longer than {MAX_REPLY} bytes")]
    TooLong,
    /// A line does not start with three digits and a separator.
    #[error("not a reply line: {0:?}")]
    NotAReplyLine(String),
    /// A continuation line carries another code than the first line.
    #[error("reply code changed within one reply: {0:?}")]
    CodeChanged(String),
}

fn lossy(line: &[u8]) -> String {
    String::from_utf8_lossy(line).into_owned()
}

/// Parse one SMTP reply (RFC 5321 §4.2: `ddd-text` lines, then `ddd text`)
/// from the start of `buf`. Pure; the caller owns the buffer.
pub fn parse_reply(buf: &[u8]) -> Result<Parsed, ReplyError> {
    let mut pos = 0;
    let mut code: Option<u16> = None;
    let mut lines = Vec::new();
    loop {
        let rest = &buf[pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            if rest.len() > MAX_LINE {
                return Err(ReplyError::LineTooLong);
            }
            if buf.len() > MAX_REPLY {
                return Err(ReplyError::TooLong);
            }
            return Ok(Parsed::Incomplete);
        };
        if nl + 1 > MAX_LINE {
            return Err(ReplyError::LineTooLong);
        }
        let line = &rest[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += nl + 1;
        if pos > MAX_REPLY {
            return Err(ReplyError::TooLong);
        }
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Err(ReplyError::NotAReplyLine(lossy(line)));
        }
        let this_code = line[..3]
            .iter()
            .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
        if *code.get_or_insert(this_code) != this_code {
            return Err(ReplyError::CodeChanged(lossy(line)));
        }
        let (last, text) = match line.get(3) {
            None => (true, &[][..]),
            Some(b' ') => (true, &line[4..]),
            Some(b'-') => (false, &line[4..]),
            Some(_) => return Err(ReplyError::NotAReplyLine(lossy(line))),
        };
        lines.push(String::from_utf8_lossy(text).into_owned());
        if last {
            return Ok(Parsed::Complete(
                Reply {
                    code: this_code,
                    lines,
                    raw: buf[..pos].to_vec(),
                },
                pos,
            ));
        }
    }
}

/// Why [`read_reply`] did not return a reply.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The connection failed (the network's or the server's fault).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The server closed the connection before its reply was complete.
    #[error("connection closed")]
    Closed,
    /// The server sent something that is not an SMTP reply.
    #[error("malformed SMTP reply: {0}")]
    Malformed(#[from] ReplyError),
}

/// Read exactly one reply from `stream`, using `buf` for bytes read but not
/// yet parsed: bytes after the reply stay in `buf` for the next call (or for
/// the caller to refuse).
pub async fn read_reply<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<Reply, ReadError> {
    let mut chunk = [0u8; 1024];
    loop {
        if let Parsed::Complete(reply, used) = parse_reply(buf)? {
            buf.drain(..used);
            return Ok(reply);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn limits_and_incomplete() {
        assert_eq!(parse_reply(b"220 hel").unwrap(), Parsed::Incomplete);
        assert_eq!(
            parse_reply(b"250-a\r\n250-b\r\n").unwrap(),
            Parsed::Incomplete
        );
        let Parsed::Complete(r, used) = parse_reply(b"250-a\r\n250 b\r\nXX").unwrap() else {
            panic!("incomplete")
        };
        assert_eq!((r.code, used), (250, 14));
        assert_eq!(r.lines, vec!["a", "b"]);
        assert_eq!(r.raw, b"250-a\r\n250 b\r\n");
        assert_eq!(r.summary(), "250 a");
        assert_eq!(r.text(), "250 a b");
        assert_eq!(
            parse_reply(b"250-a\r\n251 b\r\n"),
            Err(ReplyError::CodeChanged("251 b".into()))
        );
        assert_eq!(
            parse_reply(b"25x ok\r\n"),
            Err(ReplyError::NotAReplyLine("25x ok".into()))
        );
        assert_eq!(
            parse_reply(b"250_ok\r\n"),
            Err(ReplyError::NotAReplyLine("250_ok".into()))
        );
        assert_eq!(
            parse_reply(&vec![b'2'; MAX_LINE + 1]),
            Err(ReplyError::LineTooLong)
        );
        let many = b"250-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n".repeat(200);
        assert_eq!(parse_reply(&many), Err(ReplyError::TooLong));
        // A bare code line is a complete last line; a bare LF ends a line too.
        assert!(matches!(
            parse_reply(b"220\r\n").unwrap(),
            Parsed::Complete(_, 5)
        ));
        assert!(matches!(
            parse_reply(b"220 hi\n").unwrap(),
            Parsed::Complete(_, 7)
        ));
    }

    #[tokio::test]
    async fn reads_one_reply_in_pieces_and_keeps_the_rest() {
        let (mut ours, mut theirs) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for piece in [&b"250-mx.exa"[..], b"mple.org\r\n250", b" OK\r\n354 go\r\n"] {
                theirs.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            theirs
        });
        let mut buf = Vec::new();
        let r = read_reply(&mut ours, &mut buf).await.unwrap();
        assert_eq!(
            (r.code, r.lines.clone()),
            (250, vec!["mx.example.org".into(), "OK".into()])
        );
        let theirs = writer.await.unwrap();
        let r = read_reply(&mut ours, &mut buf).await.unwrap();
        assert_eq!(r.raw, b"354 go\r\n");
        assert!(buf.is_empty());
        drop(theirs);
        assert!(matches!(
            read_reply(&mut ours, &mut buf).await,
            Err(ReadError::Closed)
        ));
    }
}
