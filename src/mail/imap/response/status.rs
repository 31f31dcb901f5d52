//! Status responses (RFC 3501 §7.1): OK, NO, BAD, PREAUTH, BYE, tagged and
//! untagged, with their response codes, and the `+` continuation.

use std::io::Write as _;

use super::write_flags_with;
use crate::mail::imap::sequence::format_numbers;
use crate::mail::imap::types::Flag;

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
