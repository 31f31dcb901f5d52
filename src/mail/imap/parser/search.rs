//! SEARCH: the keys (RFC 3501 §6.4.4, RFC 7162 §3.1.5 MODSEQ) and their
//! grammar, recursion bounded by `max_depth`.

use super::{is_atom_char, syntax, CommandBody, P, R};
use crate::mail::imap::sequence::SeqSet;
use crate::mail::imap::types::Date;

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

impl P<'_> {
    pub(super) fn search(&mut self, uid: bool) -> R<CommandBody> {
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

    pub(super) fn search_key(&mut self, depth: usize) -> R<SearchKey> {
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
}
