//! The lines a client sends outside a command: an AUTHENTICATE response
//! after `+` and the `DONE` that ends IDLE, and the SASL PLAIN split.

use base64::Engine as _;

use super::{strip_cr, Limits};

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
