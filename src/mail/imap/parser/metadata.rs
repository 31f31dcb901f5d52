//! GETMETADATA's options and depth (RFC 5464 §4.2); SETMETADATA's entry
//! list is read in the command dispatch.

use super::{is_atom_char, syntax, CommandBody, P, R};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataDepth {
    Zero,
    One,
    Infinity,
}

impl P<'_> {
    pub(super) fn getmetadata(&mut self) -> R<CommandBody> {
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

    pub(super) fn is_metadata_options(&self) -> bool {
        let rest = self.buf.get(self.pos + 1..).unwrap_or_default();
        let word: Vec<u8> = rest
            .iter()
            .take_while(|&&b| is_atom_char(b))
            .copied()
            .collect();
        word.eq_ignore_ascii_case(b"MAXSIZE") || word.eq_ignore_ascii_case(b"DEPTH")
    }
}
