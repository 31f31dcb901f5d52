//! Evaluating a parsed SEARCH key against one message (RFC 3501 §6.4.4).
//!
//! Pure: the session hands in what it knows of the message ([`Message`])
//! and the mailbox ([`Mailbox`]); [`needs_text`] tells it whether the
//! message bytes are needed at all, so a flags-only search never reads the
//! store. String matches are case-insensitive substring matches on the raw
//! bytes (ASCII case folding; encoded words and transfer encodings are not
//! decoded), which is what a small server owes and what clients expect of
//! `HEADER Chat-Version ""` style probes. Recursion follows the parser's
//! depth limit, so it is bounded.

use super::mime;
use super::parser::SearchKey;
use super::types::{Date, DateTime, Flag};

/// What the session knows about one message.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub msn: u32,
    pub uid: u32,
    pub flags: &'a [Flag],
    /// INTERNALDATE, seconds since the epoch.
    pub internal_date: i64,
    pub size: u64,
    pub modseq: u64,
    /// The whole message; may be empty when [`needs_text`] said no.
    pub raw: &'a [u8],
}

/// What `*` means and what "now" is.
#[derive(Debug, Clone, Copy)]
pub struct Mailbox {
    /// Number of messages (`*` in a sequence set).
    pub count: u32,
    /// Largest UID in use (`*` in a UID set).
    pub max_uid: u32,
    /// Seconds since the epoch, for OLDER/YOUNGER.
    pub now: i64,
}

/// True when evaluating `key` needs the message bytes.
pub fn needs_text(key: &SearchKey) -> bool {
    use SearchKey as K;
    match key {
        K::Bcc(_)
        | K::Body(_)
        | K::Cc(_)
        | K::From(_)
        | K::Subject(_)
        | K::Text(_)
        | K::To(_)
        | K::Header(..)
        | K::SentBefore(_)
        | K::SentOn(_)
        | K::SentSince(_) => true,
        K::Not(k) => needs_text(k),
        K::Or(a, b) => needs_text(a) || needs_text(b),
        K::And(ks) => ks.iter().any(needs_text),
        _ => false,
    }
}

/// True when `key` uses MODSEQ (the SEARCH response then carries one).
pub fn uses_modseq(key: &SearchKey) -> bool {
    match key {
        SearchKey::ModSeq { .. } => true,
        SearchKey::Not(k) => uses_modseq(k),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        SearchKey::And(ks) => ks.iter().any(uses_modseq),
        _ => false,
    }
}

/// Does message `m` match `key`?
pub fn matches(key: &SearchKey, m: &Message<'_>, mb: &Mailbox) -> bool {
    use SearchKey as K;
    let has = |f: &Flag| m.flags.contains(f);
    let header = || {
        let root_end = header_end(m.raw);
        m.raw.get(..root_end).unwrap_or_default()
    };
    let field = |name: &[u8], needle: &[u8]| {
        mime::header_fields(header())
            .into_iter()
            .any(|(n, v)| n.eq_ignore_ascii_case(name) && contains_ci(&mime::unfold(v), needle))
    };
    let internal = || DateTime::from_unix_seconds(m.internal_date).date;
    let sent = || mime::header_value(header(), b"date").and_then(|d| parse_rfc5322_date(&d));
    match key {
        K::All => true,
        K::Answered => has(&Flag::Answered),
        K::Deleted => has(&Flag::Deleted),
        K::Draft => has(&Flag::Draft),
        K::Flagged => has(&Flag::Flagged),
        K::Recent => has(&Flag::Recent),
        K::Seen => has(&Flag::Seen),
        K::New => has(&Flag::Recent) && !has(&Flag::Seen),
        K::Old => !has(&Flag::Recent),
        K::Unanswered => !has(&Flag::Answered),
        K::Undeleted => !has(&Flag::Deleted),
        K::Undraft => !has(&Flag::Draft),
        K::Unflagged => !has(&Flag::Flagged),
        K::Unseen => !has(&Flag::Seen),
        K::Keyword(k) => m.flags.iter().any(|f| f.as_str().eq_ignore_ascii_case(k)),
        K::Unkeyword(k) => !m.flags.iter().any(|f| f.as_str().eq_ignore_ascii_case(k)),
        K::Bcc(s) => field(b"bcc", s),
        K::Cc(s) => field(b"cc", s),
        K::From(s) => field(b"from", s),
        K::Subject(s) => field(b"subject", s),
        K::To(s) => field(b"to", s),
        // §6.4.4: HEADER with an empty string matches every message that
        // has the field at all.
        K::Header(name, s) => field(name.as_bytes(), s),
        K::Body(s) => contains_ci(m.raw.get(header_end(m.raw)..).unwrap_or_default(), s),
        K::Text(s) => contains_ci(m.raw, s),
        K::Before(d) => internal() < *d,
        K::On(d) => internal() == *d,
        K::Since(d) => internal() >= *d,
        K::SentBefore(d) => sent().is_some_and(|s| s < *d),
        K::SentOn(d) => sent().is_some_and(|s| s == *d),
        K::SentSince(d) => sent().is_some_and(|s| s >= *d),
        K::Larger(n) => m.size > *n,
        K::Smaller(n) => m.size < *n,
        K::Older(secs) => m.internal_date <= mb.now.saturating_sub(i64::from(*secs)),
        K::Younger(secs) => m.internal_date >= mb.now.saturating_sub(i64::from(*secs)),
        K::Uid(set) => set.contains(m.uid, mb.max_uid),
        K::SequenceSet(set) => set.contains(m.msn, mb.count),
        K::Not(k) => !matches(k, m, mb),
        K::Or(a, b) => matches(a, m, mb) || matches(b, m, mb),
        K::And(ks) => ks.iter().all(|k| matches(k, m, mb)),
        K::ModSeq { modseq, .. } => m.modseq >= *modseq,
    }
}

fn header_end(raw: &[u8]) -> usize {
    mime::parse_header_end(raw)
}

/// ASCII case-insensitive substring test; an empty needle always matches.
fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The calendar day of an RFC 5322 `Date:` (`Mon, 1 Jan 2024 10:00:00
/// +0000`), in the message's own zone as §6.4.4 asks.
pub fn parse_rfc5322_date(v: &[u8]) -> Option<Date> {
    let s = std::str::from_utf8(v).ok()?;
    let s = s.split_once(',').map_or(s, |(_, rest)| rest);
    let mut it = s.split_whitespace();
    let day: u8 = it.next()?.parse().ok()?;
    let month = super::types::month_from_name(it.next()?)?;
    let y: u16 = it.next()?.parse().ok()?;
    // RFC 5322 §4.3 obsolete two-digit years.
    let year = match y {
        0..=49 => y + 2000,
        50..=999 => y + 1900,
        _ => y,
    };
    Date::new(year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::imap::parser::{parse_command, CommandBody, Limits, Parsed};

    fn key(s: &str) -> SearchKey {
        let cmd = format!("a SEARCH {s}\r\n");
        match parse_command(cmd.as_bytes(), &Limits::default()) {
            Parsed::Complete { command: c, .. } => match c.body {
                CommandBody::Search { criteria, .. } => criteria,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    const RAW: &[u8] = b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: Lunch plans\r\nDate: Mon, 1 Jan 2024 23:30:00 -0500\r\nChat-Version: 1.0\r\n\r\nLet us meet at noon.\r\n";

    fn msg<'a>(flags: &'a [Flag]) -> Message<'a> {
        Message {
            msn: 3,
            uid: 42,
            flags,
            internal_date: 1_704_200_000, // 2024-01-02 12:53:20 UTC
            size: RAW.len() as u64,
            modseq: 7,
            raw: RAW,
        }
    }

    const MB: Mailbox = Mailbox {
        count: 5,
        max_uid: 50,
        now: 1_704_200_000 + 600,
    };

    fn yes(s: &str, flags: &[Flag]) -> bool {
        matches(&key(s), &msg(flags), &MB)
    }

    #[test]
    fn flags_and_sets() {
        let seen = [Flag::Seen];
        assert!(yes("SEEN", &seen));
        assert!(!yes("UNSEEN", &seen));
        assert!(yes("UNSEEN UNDELETED", &[]));
        assert!(yes("NEW", &[Flag::Recent]));
        assert!(!yes("NEW", &[Flag::Recent, Flag::Seen]));
        assert!(yes("OLD", &seen));
        assert!(yes("KEYWORD $label", &[Flag::Keyword("$Label".into())]));
        assert!(yes("UNKEYWORD $label", &seen));
        assert!(yes("3", &[]));
        assert!(!yes("4:*", &[]));
        assert!(yes("UID 40:*", &[]));
        assert!(!yes("UID 43:45", &[]));
        assert!(yes("OR SEEN FLAGGED", &[Flag::Flagged]));
        assert!(yes("NOT (SEEN DELETED)", &seen));
        assert!(yes("MODSEQ 7", &[]));
        assert!(!yes("MODSEQ 8", &[]));
    }

    #[test]
    fn header_text_and_dates() {
        assert!(yes("FROM alice", &[]));
        assert!(yes("FROM ALICE@EXAMPLE", &[]));
        assert!(!yes("FROM bob", &[]));
        assert!(yes("TO bob", &[]));
        assert!(yes("SUBJECT lunch", &[]));
        assert!(yes("HEADER Chat-Version \"\"", &[]));
        assert!(!yes("HEADER Autocrypt-Setup-Message \"\"", &[]));
        assert!(yes("BODY noon", &[]));
        assert!(!yes("BODY lunch", &[]));
        assert!(yes("TEXT lunch", &[]));
        assert!(!yes("CC x", &[]));
        // Sent date is the Date: header's own day (1 Jan, -0500).
        assert!(yes("SENTON 1-Jan-2024", &[]));
        assert!(yes("SENTBEFORE 2-Jan-2024", &[]));
        assert!(!yes("SENTSINCE 2-Jan-2024", &[]));
        // Internal date: 2 Jan 2024 (UTC).
        assert!(yes("ON 2-Jan-2024", &[]));
        assert!(yes("SINCE 2-Jan-2024 BEFORE 3-Jan-2024", &[]));
        assert!(yes("LARGER 10 SMALLER 1000", &[]));
        assert!(yes("YOUNGER 3600", &[]));
        assert!(!yes("OLDER 3600", &[]));
    }

    #[test]
    fn what_is_needed() {
        assert!(!needs_text(&key("UNSEEN UID 1:*")));
        assert!(needs_text(&key("OR SEEN HEADER X y")));
        assert!(uses_modseq(&key("NOT MODSEQ 3")));
        assert!(!uses_modseq(&key("ALL")));
        assert_eq!(
            parse_rfc5322_date(b"1 Feb 94 00:00 GMT"),
            Date::new(1994, 2, 1)
        );
        assert_eq!(parse_rfc5322_date(b"garbage"), None);
    }
}
