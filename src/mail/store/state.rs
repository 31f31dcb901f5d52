//! The in-memory state (accounts, mailboxes, UIDs, flags, MODSEQs) and the
//! journal operations that change it: the state is the replay of the
//! journal, and a live change is applied through the same [`State::apply`].

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::error::{Result, StoreError};
use super::types::{MailboxStatus, MessageMeta};
use super::{unix_now, DELIMITER};

/// One journal operation. Applied identically at replay and live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum Op {
    Create {
        account: String,
        mailbox: String,
        uidvalidity: u32,
        #[serde(default = "one")]
        uidnext: u32,
        #[serde(default = "one64")]
        modseq: u64,
        #[serde(default)]
        subscribed: bool,
    },
    Delete {
        account: String,
        mailbox: String,
    },
    Rename {
        account: String,
        from: String,
        to: String,
        uidvalidity: u32,
    },
    Append {
        account: String,
        mailbox: String,
        uid: u32,
        blob: u64,
        flags: Vec<String>,
        date: i64,
        size: u64,
        modseq: u64,
    },
    Flags {
        account: String,
        mailbox: String,
        uid: u32,
        flags: Vec<String>,
        modseq: u64,
    },
    Expunge {
        account: String,
        mailbox: String,
        uid: u32,
        modseq: u64,
    },
    Subscribe {
        account: String,
        mailbox: String,
        on: bool,
    },
    DropAccount {
        account: String,
    },
}

pub(super) fn one() -> u32 {
    1
}
pub(super) fn one64() -> u64 {
    1
}

#[derive(Debug, Clone)]
pub(super) struct Mailbox {
    pub(super) uidvalidity: u32,
    pub(super) uidnext: u32,
    pub(super) modseq: u64,
    pub(super) subscribed: bool,
    pub(super) messages: BTreeMap<u32, MessageMeta>,
}

impl Mailbox {
    pub(super) fn status(&self, name: &str) -> MailboxStatus {
        MailboxStatus {
            name: name.to_owned(),
            uidvalidity: self.uidvalidity,
            uidnext: self.uidnext,
            highestmodseq: self.modseq,
            exists: u32::try_from(self.messages.len()).unwrap_or(u32::MAX),
            unseen: u32::try_from(
                self.messages
                    .values()
                    .filter(|m| !m.flags.contains("\\Seen"))
                    .count(),
            )
            .unwrap_or(u32::MAX),
            subscribed: self.subscribed,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) accounts: BTreeMap<String, BTreeMap<String, Mailbox>>,
    pub(super) last_uidvalidity: u32,
    pub(super) blob_refs: HashMap<u64, u32>,
    pub(super) records: u64,
}

impl State {
    pub(super) fn mailbox(&self, account: &str, name: &str) -> Result<&Mailbox> {
        self.accounts
            .get(account)
            .and_then(|a| a.get(name))
            .ok_or_else(|| StoreError::NoSuchMailbox(name.to_owned()))
    }

    pub(super) fn unref(&mut self, blob: u64) -> bool {
        match self.blob_refs.get_mut(&blob) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => {
                self.blob_refs.remove(&blob);
                true
            }
        }
    }

    /// Apply one op. Returns blobs no longer referenced and the touched mailbox.
    pub(super) fn apply(
        &mut self,
        op: Op,
        freed: &mut Vec<u64>,
        touched: &mut Vec<(String, String)>,
    ) {
        match op {
            Op::Create {
                account,
                mailbox,
                uidvalidity,
                uidnext,
                modseq,
                subscribed,
            } => {
                self.last_uidvalidity = self.last_uidvalidity.max(uidvalidity);
                touched.push((account.clone(), mailbox.clone()));
                self.accounts.entry(account).or_default().insert(
                    mailbox,
                    Mailbox {
                        uidvalidity,
                        uidnext,
                        modseq,
                        subscribed,
                        messages: BTreeMap::new(),
                    },
                );
            }
            Op::Delete { account, mailbox } => {
                if let Some(m) = self
                    .accounts
                    .get_mut(&account)
                    .and_then(|a| a.remove(&mailbox))
                {
                    for msg in m.messages.values() {
                        if self.unref(msg.blob) {
                            freed.push(msg.blob);
                        }
                    }
                }
                touched.push((account, mailbox));
            }
            Op::Rename {
                account,
                from,
                to,
                uidvalidity,
            } => {
                self.last_uidvalidity = self.last_uidvalidity.max(uidvalidity);
                let Some(acc) = self.accounts.get_mut(&account) else {
                    return;
                };
                if from == "INBOX" {
                    // RFC 3501 6.3.5: renaming INBOX moves its messages and leaves it empty.
                    if let Some(inbox) = acc.get_mut("INBOX") {
                        let messages = std::mem::take(&mut inbox.messages);
                        inbox.modseq += 1;
                        acc.insert(
                            to.clone(),
                            Mailbox {
                                uidvalidity,
                                uidnext: messages.keys().next_back().map_or(1, |u| u + 1),
                                modseq: 1,
                                subscribed: false,
                                messages,
                            },
                        );
                    }
                } else {
                    let prefix = format!("{from}{DELIMITER}");
                    let names: Vec<String> = acc
                        .keys()
                        .filter(|k| **k == from || k.starts_with(&prefix))
                        .cloned()
                        .collect();
                    for n in names {
                        if let Some(m) = acc.remove(&n) {
                            let new = format!("{to}{}", &n[from.len()..]);
                            touched.push((account.clone(), n));
                            acc.insert(new, m);
                        }
                    }
                }
                touched.push((account.clone(), from));
                touched.push((account, to));
            }
            Op::Append {
                account,
                mailbox,
                uid,
                blob,
                flags,
                date,
                size,
                modseq,
            } => {
                if let Some(m) = self
                    .accounts
                    .get_mut(&account)
                    .and_then(|a| a.get_mut(&mailbox))
                {
                    m.uidnext = m.uidnext.max(uid.saturating_add(1));
                    m.modseq = m.modseq.max(modseq);
                    m.messages.insert(
                        uid,
                        MessageMeta {
                            uid,
                            flags: flags.into_iter().collect(),
                            internal_date: date,
                            size,
                            modseq,
                            blob,
                        },
                    );
                    *self.blob_refs.entry(blob).or_insert(0) += 1;
                }
                touched.push((account, mailbox));
            }
            Op::Flags {
                account,
                mailbox,
                uid,
                flags,
                modseq,
            } => {
                if let Some(m) = self
                    .accounts
                    .get_mut(&account)
                    .and_then(|a| a.get_mut(&mailbox))
                {
                    m.modseq = m.modseq.max(modseq);
                    if let Some(msg) = m.messages.get_mut(&uid) {
                        msg.flags = flags.into_iter().collect();
                        msg.modseq = modseq;
                    }
                }
                touched.push((account, mailbox));
            }
            Op::Expunge {
                account,
                mailbox,
                uid,
                modseq,
            } => {
                let mut gone = None;
                if let Some(m) = self
                    .accounts
                    .get_mut(&account)
                    .and_then(|a| a.get_mut(&mailbox))
                {
                    m.modseq = m.modseq.max(modseq);
                    gone = m.messages.remove(&uid).map(|x| x.blob);
                }
                if let Some(b) = gone {
                    if self.unref(b) {
                        freed.push(b);
                    }
                }
                touched.push((account, mailbox));
            }
            Op::Subscribe {
                account,
                mailbox,
                on,
            } => {
                if let Some(m) = self
                    .accounts
                    .get_mut(&account)
                    .and_then(|a| a.get_mut(&mailbox))
                {
                    m.subscribed = on;
                }
            }
            Op::DropAccount { account } => {
                if let Some(acc) = self.accounts.remove(&account) {
                    for (name, m) in acc {
                        for msg in m.messages.values() {
                            if self.unref(msg.blob) {
                                freed.push(msg.blob);
                            }
                        }
                        touched.push((account.clone(), name));
                    }
                }
            }
        }
    }

    pub(super) fn next_uidvalidity(&mut self) -> u32 {
        let now = u32::try_from(unix_now()).unwrap_or(u32::MAX);
        let v = now.max(self.last_uidvalidity.saturating_add(1)).max(1);
        self.last_uidvalidity = v;
        v
    }

    /// The snapshot of the whole state as ops (for compaction).
    pub(super) fn snapshot(&self) -> Vec<Op> {
        let mut ops = Vec::new();
        for (account, mbs) in &self.accounts {
            for (name, m) in mbs {
                ops.push(Op::Create {
                    account: account.clone(),
                    mailbox: name.clone(),
                    uidvalidity: m.uidvalidity,
                    uidnext: m.uidnext,
                    modseq: m.modseq,
                    subscribed: m.subscribed,
                });
                for msg in m.messages.values() {
                    ops.push(Op::Append {
                        account: account.clone(),
                        mailbox: name.clone(),
                        uid: msg.uid,
                        blob: msg.blob,
                        flags: msg.flags.iter().cloned().collect(),
                        date: msg.internal_date,
                        size: msg.size,
                        modseq: msg.modseq,
                    });
                }
            }
        }
        ops
    }
}
