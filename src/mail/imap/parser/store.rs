//! STORE: how flags change (replace, add, remove), `.SILENT` and the
//! UNCHANGEDSINCE modifier (RFC 3501 §6.4.6, RFC 7162 §3.1.3).

use super::{syntax, CommandBody, P, R};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Replace,
    Add,
    Remove,
}

impl P<'_> {
    pub(super) fn store(&mut self, uid: bool) -> R<CommandBody> {
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
}
