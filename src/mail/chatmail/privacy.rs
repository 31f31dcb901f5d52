//! Header cleanup of chatmail mode, as a chatmail relay's Postfix does it
//! (cmdeploy's `submission_header_cleanup` for mail its users submit,
//! `lmtp_header_cleanup` for every copy it stores):
//! - submitted mail loses `Received:` (the client's IP address and EHLO
//!   name), `X-Originating-IP:`, `X-Mailer:` and `User-Agent:`, and its
//!   `Subject:` becomes `[...]` (Delta Chat puts the real subject inside the
//!   encrypted part), before it is stored or relayed;
//! - a stored copy loses `Received:`, `DKIM-Signature:` and
//!   `Authentication-Results:`.
//!
//! Only the top-level header section is touched (Postfix runs with
//! `disable_mime_input_processing = yes`): it ends at the first empty line;
//! the body is copied byte for byte. A field is its first line plus its
//! continuation lines (RFC 5322 §2.2.3), removed or replaced whole. Names
//! match without case, with optional blanks before the colon.

/// Fields removed from submitted mail.
pub const SUBMISSION_DROP: &[&str] = &["Received", "X-Originating-IP", "X-Mailer", "User-Agent"];
/// Fields removed from stored copies.
pub const STORED_DROP: &[&str] = &["Received", "DKIM-Signature", "Authentication-Results"];
/// What `Subject:` becomes on submitted mail.
pub const SUBJECT_REPLACEMENT: &str = "Subject: [...]\r\n";

/// The field name of a header line, if it starts a field.
fn field_name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|b| *b == b':')?;
    let name = line.get(..colon)?;
    let trimmed = name.trim_ascii_end();
    (!trimmed.is_empty() && trimmed.iter().all(|b| b.is_ascii_graphic())).then_some(trimmed)
}

fn is_one_of(name: &[u8], list: &[&str]) -> bool {
    list.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(name))
}

/// Rewrite the header section of `msg`: fields named in `drop` are removed,
/// a `Subject:` is replaced by [`SUBJECT_REPLACEMENT`] when `subject` is set.
fn rewrite(msg: &[u8], drop: &[&str], subject: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len());
    let mut pos = 0;
    // What to do with continuation lines of the current field.
    let mut skipping = false;
    while pos < msg.len() {
        let end = msg
            .get(pos..)
            .and_then(|r| r.iter().position(|b| *b == b'\n'))
            .map_or(msg.len(), |i| pos + i + 1);
        let line = msg.get(pos..end).unwrap_or_default();
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() {
            // End of the header section: the rest is body.
            out.extend_from_slice(msg.get(pos..).unwrap_or_default());
            return out;
        }
        if matches!(content.first(), Some(b' ' | b'\t')) {
            if !skipping {
                out.extend_from_slice(line);
            }
        } else {
            match field_name(content) {
                Some(n) if is_one_of(n, drop) => skipping = true,
                Some(n) if subject && n.eq_ignore_ascii_case(b"Subject") => {
                    out.extend_from_slice(SUBJECT_REPLACEMENT.as_bytes());
                    skipping = true;
                }
                _ => {
                    skipping = false;
                    out.extend_from_slice(line);
                }
            }
        }
        pos = end;
    }
    out
}

/// The copy of a submitted message that is stored or relayed.
pub fn clean_submission(msg: &[u8]) -> Vec<u8> {
    rewrite(msg, SUBMISSION_DROP, true)
}

/// The copy of a message that is stored for a local account.
pub fn clean_stored(msg: &[u8]) -> Vec<u8> {
    rewrite(msg, STORED_DROP, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submission_cleanup() {
        let m = b"Received: from laptop ([192.0.2.7])\r\n\tby relay; Mon, 1 Jan 2024\r\n\
From: a@b.org\r\nX-Mailer: Mutt 2.2\r\nuser-agent : Thunderbird\r\n\
Subject: secret plans\r\n continued\r\nX-Originating-IP: [192.0.2.7]\r\n\
Chat-Version: 1.0\r\n\r\nSubject: in the body stays\r\nReceived: so does this\r\n";
        let c = clean_submission(m);
        assert_eq!(
            c,
            b"From: a@b.org\r\nSubject: [...]\r\nChat-Version: 1.0\r\n\r\n\
Subject: in the body stays\r\nReceived: so does this\r\n"
                .to_vec()
        );
    }

    #[test]
    fn stored_cleanup_keeps_subject() {
        let m = b"DKIM-Signature: v=1; a=rsa-sha256;\r\n b=abc\r\nReceived: x\r\n\
Authentication-Results: mx; dkim=pass\r\nSubject: [...]\r\nX-Mailer: kept\r\n\r\nbody";
        assert_eq!(
            clean_stored(m),
            b"Subject: [...]\r\nX-Mailer: kept\r\n\r\nbody".to_vec()
        );
    }

    #[test]
    fn edges() {
        // No body, no final newline, only headers to drop.
        assert_eq!(clean_submission(b"Received: x"), b"".to_vec());
        assert_eq!(clean_submission(b""), b"".to_vec());
        // A header-looking name with spaces inside is not a field name match.
        assert_eq!(
            clean_submission(b"X Mailer: y\r\n\r\n"),
            b"X Mailer: y\r\n\r\n".to_vec()
        );
        // Leading continuation line (malformed) is kept.
        assert_eq!(clean_submission(b" x\r\n\r\n"), b" x\r\n\r\n".to_vec());
    }
}
