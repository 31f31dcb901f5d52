//! Message commands of the selected state, but FETCH and STORE: COPY and
//! MOVE, EXPUNGE and UID EXPUNGE, SEARCH, CLOSE; APPEND (authenticated
//! state); and the lookups they share (the messages a set names, the
//! mailbox's current message list).

use tokio::io::{AsyncRead, AsyncWrite};

use super::reply::{bad, flag_strings, no, ok, ok_code, store_err, to_flags, Reply};
use super::state::find;
use super::Session;
use crate::mail::imap::parser::SearchKey;
use crate::mail::imap::response::{self, Code, Status};
use crate::mail::imap::search;
use crate::mail::imap::sequence::SeqSet;
use crate::mail::imap::types::{DateTime, Flag};
use crate::mail::store::{self, MessageMeta, StoreError};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// The (MSN, UID) pairs a set names, or a BAD reply.
    pub(super) fn targets(&self, uid: bool, set: &SeqSet) -> Result<Vec<(u32, u32)>, Reply> {
        let Some(sel) = self.state.selected() else {
            return Err(bad("no mailbox selected"));
        };
        sel.targets(uid, set).map_err(|e| bad(&e.0))
    }

    /// The name of the selected mailbox ("" when none is).
    pub(super) fn sel_name(&self) -> String {
        self.state
            .selected()
            .map(|s| s.name.clone())
            .unwrap_or_default()
    }

    /// The selected mailbox's messages as the store has them now.
    pub(super) async fn fresh(&self, account: &str) -> Result<Vec<MessageMeta>, StoreError> {
        self.store.messages(account, &self.sel_name()).await
    }

    pub(super) async fn append(
        &mut self,
        account: &str,
        mailbox: &str,
        flags: &[Flag],
        date: Option<DateTime>,
        message: Vec<u8>,
    ) -> Reply {
        if !self.quota_allows(account, message.len() as u64).await {
            return no(Some(Code::OverQuota), "mailbox full: over quota");
        }
        let flags = flag_strings(flags);
        let date = date.map(|d| d.unix_seconds());
        match self
            .store
            .append(account, mailbox, message, flags, date)
            .await
        {
            Ok((v, uid)) => ok_code(
                Code::AppendUid {
                    uid_validity: v,
                    uids: vec![uid],
                },
                "APPEND completed",
            ),
            Err(StoreError::NoSuchMailbox(_)) => no(Some(Code::TryCreate), "no such mailbox"),
            Err(e) => store_err(e),
        }
    }

    /// CLOSE: back to the authenticated state, expunging silently unless
    /// the mailbox was examined.
    pub(super) async fn close(&mut self, account: &str) -> Reply {
        if let Some(sel) = self.state.deselect() {
            if !sel.read_only {
                // A failed silent expunge still closes the mailbox.
                let _ = self.store.expunge(account, &sel.name, None).await;
            }
        }
        ok("CLOSE completed")
    }

    pub(super) async fn expunge(&mut self, account: &str, set: Option<SeqSet>) -> Reply {
        let Some(sel) = self.state.selected() else {
            return bad("no mailbox selected");
        };
        if sel.read_only {
            return no(Some(Code::ReadOnly), "mailbox is read-only");
        }
        let uids = set.map(|s| s.uids(&sel.uids()));
        let name = sel.name.clone();
        match self.store.expunge(account, &name, uids).await {
            // The EXPUNGE responses come from the sync that follows.
            Ok(_) => ok("EXPUNGE completed"),
            Err(e) => store_err(e),
        }
    }

    pub(super) async fn search(
        &mut self,
        account: &str,
        uid: bool,
        charset: Option<String>,
        key: &SearchKey,
    ) -> Reply {
        if let Some(c) = &charset {
            if !c.eq_ignore_ascii_case("UTF-8") && !c.eq_ignore_ascii_case("US-ASCII") {
                return no(
                    Some(Code::Other("BADCHARSET (US-ASCII UTF-8)".into())),
                    "unsupported charset",
                );
            }
        }
        let fresh = match self.fresh(account).await {
            Ok(f) => f,
            Err(e) => return store_err(e),
        };
        let Some(sel) = self.state.selected() else {
            return bad("no mailbox selected");
        };
        let needs_text = search::needs_text(key);
        let mb = search::Mailbox {
            count: u32::try_from(sel.msgs.len()).unwrap_or(u32::MAX),
            max_uid: sel.msgs.last().map(|m| m.0).unwrap_or(0),
            now: store::unix_now(),
        };
        let snapshot = sel.msgs.clone();
        let name = sel.name.clone();
        let mut found = Vec::new();
        let mut max_modseq = 0;
        for (i, (u, _)) in snapshot.iter().enumerate() {
            let Some(m) = find(&fresh, *u) else {
                continue;
            };
            let raw = if needs_text {
                match self.store.read(account, &name, *u).await {
                    Ok(r) => r,
                    Err(_) => continue,
                }
            } else {
                Vec::new()
            };
            let flags = to_flags(&m.flags);
            let msn = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let msg = search::Message {
                msn,
                uid: m.uid,
                flags: &flags,
                internal_date: m.internal_date,
                size: m.size,
                modseq: m.modseq,
                raw: &raw,
            };
            if search::matches(key, &msg, &mb) {
                found.push(if uid { m.uid } else { msn });
                max_modseq = max_modseq.max(m.modseq);
            }
        }
        let modseq = search::uses_modseq(key).then_some(max_modseq);
        response::search(&mut self.out, &found, modseq);
        ok("SEARCH completed")
    }

    pub(super) async fn copy(
        &mut self,
        account: &str,
        uid: bool,
        set: &SeqSet,
        to: &str,
        remove: bool,
    ) -> Reply {
        let targets = match self.targets(uid, set) {
            Ok(t) => t,
            Err(r) => return r,
        };
        if remove && self.state.selected().is_none_or(|s| s.read_only) {
            return no(Some(Code::ReadOnly), "mailbox is read-only");
        }
        let uids: Vec<u32> = targets.iter().map(|t| t.1).collect();
        if !remove && self.ctx.cfg.quota.is_some() {
            let mut u = uids.clone();
            u.sort_unstable();
            let adding = self
                .fresh(account)
                .await
                .map(|msgs| {
                    msgs.iter()
                        .filter(|m| u.binary_search(&m.uid).is_ok())
                        .map(|m| m.size)
                        .sum::<u64>()
                })
                .unwrap_or(0);
            if !self.quota_allows(account, adding).await {
                return no(Some(Code::OverQuota), "mailbox full: over quota");
            }
        }
        let res = self
            .store
            .copy(account, &self.sel_name(), uids, to, remove)
            .await;
        let res = match res {
            Ok(r) => r,
            Err(StoreError::NoSuchMailbox(_)) => {
                return no(Some(Code::TryCreate), "no such target mailbox")
            }
            Err(e) => return store_err(e),
        };
        let verb = if remove { "MOVE" } else { "COPY" };
        if res.pairs.is_empty() {
            return ok(&format!("{verb} completed"));
        }
        let code = Code::CopyUid {
            uid_validity: res.uidvalidity,
            source: res.pairs.iter().map(|p| p.0).collect(),
            dest: res.pairs.iter().map(|p| p.1).collect(),
        };
        if remove {
            // RFC 6851 §4.3: COPYUID in an untagged OK before the EXPUNGEs.
            response::untagged(&mut self.out, Status::Ok, Some(&code), "moved");
            self.sync(true).await;
            ok("MOVE completed")
        } else {
            ok_code(code, "COPY completed")
        }
    }
}
