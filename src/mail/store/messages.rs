//! Messages: delivery and APPEND, reading, flags, expunge and expiry, COPY
//! and MOVE, and the change notifications IDLE waits on.

use std::collections::HashMap;
use std::fs::{self};
use std::io::{self};

use tokio::sync::watch;

use super::durable::blob_name;
use super::durable::Locked;
use super::error::{Result, StoreError};
use super::state::Op;
use super::types::{CopyResult, FlagOp, FlagsResult, MessageMeta};
use super::{canonical_mailbox, unix_now, Store};

impl Store {
    /// The messages of a mailbox, by ascending UID (sequence number = index + 1).
    pub fn messages(&self, account: &str, mailbox: &str) -> Result<Vec<MessageMeta>> {
        let name = canonical_mailbox(mailbox);
        self.view(|st| {
            Ok(st
                .mailbox(account, &name)?
                .messages
                .values()
                .cloned()
                .collect())
        })
    }

    /// The raw bytes of one message.
    pub fn read(&self, account: &str, mailbox: &str, uid: u32) -> Result<Vec<u8>> {
        let name = canonical_mailbox(mailbox);
        let blob = self.view(|st| {
            st.mailbox(account, &name)?
                .messages
                .get(&uid)
                .map(|m| m.blob)
                .ok_or(StoreError::NoSuchMessage(uid))
        })?;
        // Blobs are immutable and deleted only after their last reference is
        // gone, so reading outside the lock is safe unless the message is
        // expunged meanwhile (then: NoSuchMessage).
        fs::read(self.inner.dir.join("blobs").join(blob_name(blob))).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::NoSuchMessage(uid)
            } else {
                e.into()
            }
        })
    }

    /// APPEND: store `bytes` durably in `mailbox`; returns (UIDVALIDITY, UID).
    pub fn append(
        &self,
        account: &str,
        mailbox: &str,
        bytes: &[u8],
        flags: &[String],
        internal_date: Option<i64>,
    ) -> Result<(u32, u32)> {
        let name = canonical_mailbox(mailbox);
        self.lock().state.mailbox(account, &name)?;
        let blob = self.write_blob(bytes)?;
        let g = self.lock();
        let m = g.state.mailbox(account, &name)?;
        let (uidvalidity, uid) = (m.uidvalidity, m.uidnext);
        if uid == u32::MAX {
            return Err(StoreError::UidsExhausted);
        }
        let modseq = m.modseq + 1;
        self.commit(
            g,
            vec![Op::Append {
                account: account.to_owned(),
                mailbox: name,
                uid,
                blob,
                flags: flags.to_vec(),
                date: internal_date.unwrap_or_else(unix_now),
                size: bytes.len() as u64,
                modseq,
            }],
        )?;
        Ok((uidvalidity, uid))
    }

    /// Local delivery: store `bytes` in the INBOX of every account in
    /// `accounts` (creating missing INBOXes), all or none, in one durable
    /// record. Returns each recipient's new UID.
    pub fn deliver(&self, accounts: &[String], bytes: &[u8]) -> Result<Vec<u32>> {
        if accounts.is_empty() {
            return Ok(Vec::new());
        }
        let blob = self.write_blob(bytes)?;
        let mut g = self.lock();
        let mut ops = Vec::new();
        let mut uids = Vec::new();
        // Several recipients may be the same account: each gets its own UID.
        let mut next: HashMap<&str, (u32, u64)> = HashMap::new();
        for account in accounts {
            if !next.contains_key(account.as_str()) {
                let (uidnext, modseq) = match g.state.mailbox(account, "INBOX") {
                    Ok(m) => (m.uidnext, m.modseq),
                    Err(_) => {
                        Self::create_ops(&mut g, account, "INBOX", &mut ops);
                        (1, 1)
                    }
                };
                next.insert(account, (uidnext, modseq));
            }
            let Some(e) = next.get_mut(account.as_str()) else {
                continue;
            };
            if e.0 == u32::MAX {
                return Err(StoreError::UidsExhausted);
            }
            e.1 += 1;
            ops.push(Op::Append {
                account: account.clone(),
                mailbox: "INBOX".into(),
                uid: e.0,
                blob,
                flags: Vec::new(),
                date: unix_now(),
                size: bytes.len() as u64,
                modseq: e.1,
            });
            uids.push(e.0);
            e.0 += 1;
        }
        self.commit(g, ops)?;
        Ok(uids)
    }

    /// STORE: change flags of `uids` (missing UIDs are skipped). With
    /// `unchanged_since` (CONDSTORE), messages with a higher MODSEQ are left
    /// alone and listed in `modified`.
    pub fn store_flags(
        &self,
        account: &str,
        mailbox: &str,
        uids: &[u32],
        op: FlagOp,
        flags: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<FlagsResult> {
        let name = canonical_mailbox(mailbox);
        let g = self.lock();
        let m = g.state.mailbox(account, &name)?;
        let mut modseq = m.modseq;
        let mut ops = Vec::new();
        let mut res = FlagsResult::default();
        let mut changed_uids = Vec::new();
        for uid in uids {
            let Some(msg) = m.messages.get(uid) else {
                continue;
            };
            if unchanged_since.is_some_and(|u| msg.modseq > u) {
                res.modified.push(*uid);
                continue;
            }
            let mut new = msg.flags.clone();
            match op {
                FlagOp::Add => new.extend(flags.iter().cloned()),
                FlagOp::Remove => {
                    for f in flags {
                        new.remove(f);
                    }
                }
                FlagOp::Replace => new = flags.iter().cloned().collect(),
            }
            if new == msg.flags {
                continue;
            }
            modseq += 1;
            ops.push(Op::Flags {
                account: account.to_owned(),
                mailbox: name.clone(),
                uid: *uid,
                flags: new.into_iter().collect(),
                modseq,
            });
            changed_uids.push(*uid);
        }
        res.changed = self.commit_with(g, ops, |st| {
            st.mailbox(account, &name)
                .map(|m| {
                    changed_uids
                        .iter()
                        .filter_map(|u| m.messages.get(u).cloned())
                        .collect()
                })
                .unwrap_or_default()
        })?;
        Ok(res)
    }

    /// EXPUNGE: remove messages flagged `\Deleted` (only those in `uids` when
    /// given, as UID EXPUNGE does). Returns the removed UIDs, ascending.
    pub fn expunge(&self, account: &str, mailbox: &str, uids: Option<&[u32]>) -> Result<Vec<u32>> {
        let name = canonical_mailbox(mailbox);
        let g = self.lock();
        let m = g.state.mailbox(account, &name)?;
        let mut modseq = m.modseq;
        let gone: Vec<u32> = m
            .messages
            .values()
            .filter(|x| x.flags.contains("\\Deleted"))
            .filter(|x| uids.is_none_or(|u| u.contains(&x.uid)))
            .map(|x| x.uid)
            .collect();
        let ops = gone
            .iter()
            .map(|uid| {
                modseq += 1;
                Op::Expunge {
                    account: account.to_owned(),
                    mailbox: name.clone(),
                    uid: *uid,
                    modseq,
                }
            })
            .collect();
        self.commit(g, ops)?;
        Ok(gone)
    }

    /// Remove every message whose internal date is before `cutoff` (seconds
    /// since the epoch), whatever its flags, in all accounts and mailboxes:
    /// chatmail-style retention. One durable record per mailbox; open
    /// sessions see ordinary expunges. Returns how many were removed.
    pub fn expire(&self, cutoff: i64) -> Result<usize> {
        let targets: Vec<(String, String)> = self.view(|st| {
            st.accounts
                .iter()
                .flat_map(|(a, mbs)| {
                    mbs.iter()
                        .filter(|(_, m)| m.messages.values().any(|x| x.internal_date < cutoff))
                        .map(move |(n, _)| (a.clone(), n.clone()))
                })
                .collect()
        });
        let mut removed = 0;
        for (account, name) in targets {
            let g = self.lock();
            // The mailbox may have changed (or gone) since the scan.
            let Ok(m) = g.state.mailbox(&account, &name) else {
                continue;
            };
            let mut modseq = m.modseq;
            let ops: Vec<Op> = m
                .messages
                .values()
                .filter(|x| x.internal_date < cutoff)
                .map(|x| {
                    modseq += 1;
                    Op::Expunge {
                        account: account.clone(),
                        mailbox: name.clone(),
                        uid: x.uid,
                        modseq,
                    }
                })
                .collect();
            removed += ops.len();
            self.commit(g, ops)?;
        }
        Ok(removed)
    }

    pub(super) fn copy_ops(
        g: &mut Locked,
        account: &str,
        from: &str,
        uids: &[u32],
        to: &str,
        remove: bool,
    ) -> Result<(Vec<Op>, CopyResult)> {
        let src = g.state.mailbox(account, from)?.clone();
        let dst = g.state.mailbox(account, to)?;
        let mut res = CopyResult {
            uidvalidity: dst.uidvalidity,
            pairs: Vec::new(),
        };
        let (mut uid, mut dmod) = (dst.uidnext, dst.modseq);
        let mut smod = src.modseq;
        let mut ops = Vec::new();
        for u in uids {
            let Some(msg) = src.messages.get(u) else {
                continue;
            };
            if uid == u32::MAX {
                return Err(StoreError::UidsExhausted);
            }
            dmod += 1;
            ops.push(Op::Append {
                account: account.to_owned(),
                mailbox: to.to_owned(),
                uid,
                blob: msg.blob,
                flags: msg.flags.iter().cloned().collect(),
                date: msg.internal_date,
                size: msg.size,
                modseq: dmod,
            });
            if remove {
                smod += 1;
                ops.push(Op::Expunge {
                    account: account.to_owned(),
                    mailbox: from.to_owned(),
                    uid: *u,
                    modseq: smod,
                });
            }
            res.pairs.push((*u, uid));
            uid += 1;
        }
        Ok((ops, res))
    }

    /// COPY `uids` from `from` to `to` (message files are shared, not duplicated).
    pub fn copy(&self, account: &str, from: &str, uids: &[u32], to: &str) -> Result<CopyResult> {
        let (from, to) = (canonical_mailbox(from), canonical_mailbox(to));
        let mut g = self.lock();
        let (ops, res) = Self::copy_ops(&mut g, account, &from, uids, &to, false)?;
        self.commit(g, ops)?;
        Ok(res)
    }

    /// MOVE (RFC 6851): copy and expunge in one atomic record.
    pub fn move_messages(
        &self,
        account: &str,
        from: &str,
        uids: &[u32],
        to: &str,
    ) -> Result<CopyResult> {
        let (from, to) = (canonical_mailbox(from), canonical_mailbox(to));
        if from == to {
            return Err(StoreError::BadName(to));
        }
        let mut g = self.lock();
        let (ops, res) = Self::copy_ops(&mut g, account, &from, uids, &to, true)?;
        self.commit(g, ops)?;
        Ok(res)
    }

    /// A receiver that changes (to the mailbox's HIGHESTMODSEQ) after every
    /// change to `account`/`mailbox`: new message, flags, expunge. IDLE
    /// sessions wait on `changed()`.
    pub fn subscribe(&self, account: &str, mailbox: &str) -> watch::Receiver<u64> {
        let name = canonical_mailbox(mailbox);
        let current = self.view(|st| st.mailbox(account, &name).map(|m| m.modseq).unwrap_or(0));
        let mut w = self
            .inner
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Forget senders nobody listens to any more, so the map stays small.
        w.retain(|_, tx| tx.receiver_count() > 0);
        w.entry((account.to_owned(), name))
            .or_insert_with(|| watch::channel(current).0)
            .subscribe()
    }
}
