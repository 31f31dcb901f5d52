//! Mailbox commands of the authenticated state: SELECT / EXAMINE (the
//! move into the selected state), CREATE, DELETE, RENAME, SUBSCRIBE /
//! UNSUBSCRIBE, LIST / LSUB (with LIST-EXTENDED, LIST-STATUS and
//! SPECIAL-USE) and STATUS.

use tokio::io::{AsyncRead, AsyncWrite};

use super::reply::{ok, ok_code, store_err, Reply};
use super::state::Selected;
use super::Session;
use crate::mail::imap::parser::{ListCommand, StatusItem};
use crate::mail::imap::response::{self, Code, Status};
use crate::mail::imap::types::Flag;
use crate::mail::store;

/// RFC 6154 attribute implied by a mailbox name.
fn special_use(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "sent" | "sent messages" | "sent items" => Some("\\Sent"),
        "trash" | "deleted messages" | "deleted items" => Some("\\Trash"),
        "drafts" => Some("\\Drafts"),
        "junk" | "spam" => Some("\\Junk"),
        "archive" => Some("\\Archive"),
        _ => None,
    }
}

/// LIST pattern match (RFC 3501 §6.3.8): `*` matches anything, `%`
/// anything but the delimiter. Dynamic programming, so no pattern can make
/// it take more than `pattern × name` steps.
fn wildmatch(pat: &[u8], name: &[u8]) -> bool {
    let delim = store::DELIMITER as u8;
    // prev[j]: pattern prefix so far matches name[..j].
    let mut prev = vec![false; name.len() + 1];
    prev[0] = true;
    for &p in pat {
        let mut cur = vec![false; name.len() + 1];
        match p {
            b'*' | b'%' => {
                let mut any = false;
                for j in 0..=name.len() {
                    any |= prev[j];
                    cur[j] = any;
                    if p == b'%' && j < name.len() && name[j] == delim {
                        // `%` cannot span the delimiter: restart after it.
                        any = false;
                    }
                }
            }
            _ => {
                for j in 1..=name.len() {
                    cur[j] = prev[j - 1] && name[j - 1] == p;
                }
            }
        }
        prev = cur;
    }
    prev[name.len()]
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn select(
        &mut self,
        account: &str,
        mailbox: &str,
        condstore: bool,
        read_only: bool,
    ) -> Reply {
        // RFC 3501 §6.3.1: a failed SELECT leaves no mailbox selected.
        self.state.deselect();
        if condstore {
            self.condstore = true;
        }
        let res = self.store.status_and_messages(account, mailbox).await;
        let (status, msgs) = match res {
            Ok(x) => x,
            Err(e) => return store_err(e),
        };
        let system = [
            Flag::Answered,
            Flag::Flagged,
            Flag::Deleted,
            Flag::Seen,
            Flag::Draft,
        ];
        response::flags(&mut self.out, &system);
        let pf = Code::PermanentFlags {
            flags: if read_only {
                Vec::new()
            } else {
                system.to_vec()
            },
            allow_new: !read_only,
        };
        response::untagged(&mut self.out, Status::Ok, Some(&pf), "flags permitted");
        response::exists(&mut self.out, u32::try_from(msgs.len()).unwrap_or(u32::MAX));
        response::recent(&mut self.out, 0);
        if let Some(i) = msgs.iter().position(|m| !m.flags.contains("\\Seen")) {
            let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
            response::untagged(
                &mut self.out,
                Status::Ok,
                Some(&Code::Unseen(n)),
                "first unseen",
            );
        }
        response::untagged(
            &mut self.out,
            Status::Ok,
            Some(&Code::UidValidity(status.uidvalidity)),
            "UIDs valid",
        );
        response::untagged(
            &mut self.out,
            Status::Ok,
            Some(&Code::UidNext(status.uidnext)),
            "predicted next UID",
        );
        response::untagged(
            &mut self.out,
            Status::Ok,
            Some(&Code::HighestModSeq(status.highestmodseq)),
            "highest",
        );
        self.state.select(Selected {
            name: status.name.clone(),
            read_only,
            msgs: msgs.iter().map(|m| (m.uid, m.modseq)).collect(),
        });
        if read_only {
            ok_code(Code::ReadOnly, "EXAMINE completed")
        } else {
            ok_code(Code::ReadWrite, "SELECT completed")
        }
    }

    pub(super) async fn list(&mut self, account: &str, l: ListCommand, lsub: bool) -> Reply {
        let boxes = match self.store.list_mailboxes(account).await {
            Ok(b) => b,
            Err(e) => return store_err(e),
        };
        let only_subscribed = l.select.iter().any(|s| s == "SUBSCRIBED");
        let only_special = l.select.iter().any(|s| s == "SPECIAL-USE");
        let ret_subscribed = l.returns.iter().any(|s| s == "SUBSCRIBED") || only_subscribed;
        let ret_special = !lsub;
        if l.patterns.len() == 1 && l.patterns[0].is_empty() {
            // RFC 3501 §6.3.8: the delimiter and root.
            response::list(
                &mut self.out,
                lsub,
                &["\\Noselect"],
                Some(store::DELIMITER),
                "",
            );
            return ok("LIST completed");
        }
        let pats: Vec<String> = l
            .patterns
            .iter()
            .map(|p| store::canonical_mailbox(&format!("{}{}", l.reference, p)))
            .collect();
        let prefix_of = |n: &str| format!("{n}{}", store::DELIMITER);
        for b in &boxes {
            if !pats
                .iter()
                .any(|p| wildmatch(p.as_bytes(), b.name.as_bytes()))
            {
                continue;
            }
            if only_subscribed && !b.subscribed {
                continue;
            }
            let su = special_use(&b.name);
            if only_special && su.is_none() {
                continue;
            }
            let pre = prefix_of(&b.name);
            let children = boxes.iter().any(|c| c.name.starts_with(&pre));
            let mut attrs = vec![if children {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            }];
            if ret_subscribed && b.subscribed && !lsub {
                attrs.push("\\Subscribed");
            }
            if let (true, Some(su)) = (ret_special, su) {
                attrs.push(su);
            }
            response::list(&mut self.out, lsub, &attrs, Some(store::DELIMITER), &b.name);
            if let Some(items) = &l.return_status {
                let vals = self.status_values(account, &b.name, items, b).await;
                response::status(&mut self.out, &b.name, &vals);
            }
        }
        ok(if lsub {
            "LSUB completed"
        } else {
            "LIST completed"
        })
    }

    pub(super) async fn subscribe(&mut self, account: &str, mailbox: &str, on: bool) -> Reply {
        match self.store.set_subscribed(account, mailbox, on).await {
            Ok(()) => ok(if on {
                "SUBSCRIBE completed"
            } else {
                "UNSUBSCRIBE completed"
            }),
            Err(e) => store_err(e),
        }
    }

    async fn status_values(
        &self,
        account: &str,
        name: &str,
        items: &[StatusItem],
        st: &store::MailboxStatus,
    ) -> Vec<(StatusItem, u64)> {
        let mut size = 0;
        if items.contains(&StatusItem::Size) {
            if let Ok(msgs) = self.store.messages(account, name).await {
                size = msgs.iter().map(|m| m.size).sum();
            }
        }
        items
            .iter()
            .map(|i| {
                let v = match i {
                    StatusItem::Messages => u64::from(st.exists),
                    StatusItem::Recent => 0,
                    StatusItem::UidNext => u64::from(st.uidnext),
                    StatusItem::UidValidity => u64::from(st.uidvalidity),
                    StatusItem::Unseen => u64::from(st.unseen),
                    StatusItem::HighestModSeq => st.highestmodseq,
                    StatusItem::Size => size,
                };
                (*i, v)
            })
            .collect()
    }

    pub(super) async fn status(
        &mut self,
        account: &str,
        mailbox: &str,
        items: &[StatusItem],
    ) -> Reply {
        let st = match self.store.status(account, mailbox).await {
            Ok(st) => st,
            Err(e) => return store_err(e),
        };
        let vals = self.status_values(account, &st.name, items, &st).await;
        response::status(&mut self.out, &st.name, &vals);
        ok("STATUS completed")
    }

    pub(super) async fn create(&mut self, account: &str, mailbox: &str) -> Reply {
        match self.store.create_mailbox(account, mailbox).await {
            Ok(()) => ok("CREATE completed"),
            Err(e) => store_err(e),
        }
    }

    pub(super) async fn delete(&mut self, account: &str, mailbox: &str) -> Reply {
        match self.store.delete_mailbox(account, mailbox).await {
            Ok(()) => ok("DELETE completed"),
            Err(e) => store_err(e),
        }
    }

    pub(super) async fn rename(&mut self, account: &str, from: &str, to: &str) -> Reply {
        match self.store.rename_mailbox(account, from, to).await {
            Ok(()) => ok("RENAME completed"),
            Err(e) => store_err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildmatch_rfc3501() {
        assert!(wildmatch(b"*", b"INBOX"));
        assert!(wildmatch(b"*", b"a/b/c"));
        assert!(wildmatch(b"%", b"INBOX"));
        assert!(!wildmatch(b"%", b"a/b"));
        assert!(wildmatch(b"a/%", b"a/b"));
        assert!(!wildmatch(b"a/%", b"a/b/c"));
        assert!(wildmatch(b"a/*", b"a/b/c"));
        assert!(wildmatch(b"INBOX", b"INBOX"));
        assert!(!wildmatch(b"INBOX", b"INBOX/x"));
        assert!(wildmatch(b"%/x", b"INBOX/x"));
        assert!(!wildmatch(b"", b"INBOX"));
        assert!(wildmatch(b"*x*", b"abxcd"));
    }
}
