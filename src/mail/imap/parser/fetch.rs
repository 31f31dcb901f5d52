//! FETCH: the data items (macros expanded), `BODY[section]<partial>` and
//! the CHANGEDSINCE modifier (RFC 3501 §6.4.5, RFC 7162).

use super::{syntax, CommandBody, P, R};

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

impl P<'_> {
    pub(super) fn fetch(&mut self, uid: bool) -> R<CommandBody> {
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
    pub(super) fn fetch_att(&mut self) -> R<Vec<FetchItem>> {
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

    pub(super) fn section(&mut self) -> R<Section> {
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
}
