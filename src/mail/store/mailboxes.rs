//! Accounts and mailboxes: create, delete, rename, subscribe, list, status
//! and usage.

use super::durable::Locked;
use super::error::{Result, StoreError};
use super::state::Op;
use super::types::MailboxStatus;
use super::{canonical_mailbox, check_name, Store, DELIMITER};

impl Store {
    pub(super) fn create_ops(g: &mut Locked, account: &str, name: &str, ops: &mut Vec<Op>) {
        let uidvalidity = g.state.next_uidvalidity();
        ops.push(Op::Create {
            account: account.to_owned(),
            mailbox: name.to_owned(),
            uidvalidity,
            uidnext: 1,
            modseq: 1,
            subscribed: name == "INBOX",
        });
    }

    /// Make sure `account` has an INBOX.
    pub fn ensure_account(&self, account: &str) -> Result<()> {
        let mut g = self.lock();
        if g.state.mailbox(account, "INBOX").is_ok() {
            return Ok(());
        }
        let mut ops = Vec::new();
        Self::create_ops(&mut g, account, "INBOX", &mut ops);
        self.commit(g, ops)
    }

    /// Accounts that have mail in the store.
    pub fn accounts(&self) -> Vec<String> {
        self.view(|st| st.accounts.keys().cloned().collect())
    }

    /// Delete an account's mailboxes and messages.
    pub fn drop_account(&self, account: &str) -> Result<()> {
        let g = self.lock();
        self.commit(
            g,
            vec![Op::DropAccount {
                account: account.to_owned(),
            }],
        )
    }

    /// All mailboxes of `account`, sorted by name.
    pub fn list_mailboxes(&self, account: &str) -> Vec<MailboxStatus> {
        self.view(|st| {
            st.accounts
                .get(account)
                .map(|a| a.iter().map(|(n, m)| m.status(n)).collect())
                .unwrap_or_default()
        })
    }

    /// Status of one mailbox.
    pub fn status(&self, account: &str, mailbox: &str) -> Result<MailboxStatus> {
        let name = canonical_mailbox(mailbox);
        self.view(|st| st.mailbox(account, &name).map(|m| m.status(&name)))
    }

    /// Create a mailbox (and missing parents, RFC 3501 6.3.3).
    pub fn create_mailbox(&self, account: &str, mailbox: &str) -> Result<()> {
        let name = canonical_mailbox(mailbox.trim_end_matches(DELIMITER));
        check_name(&name)?;
        let mut g = self.lock();
        if g.state.mailbox(account, &name).is_ok() {
            return Err(StoreError::MailboxExists(name));
        }
        let mut ops = Vec::new();
        if g.state.mailbox(account, "INBOX").is_err() && name != "INBOX" {
            Self::create_ops(&mut g, account, "INBOX", &mut ops);
        }
        let parts: Vec<&str> = name.split(DELIMITER).collect();
        for i in 1..=parts.len() {
            let n = parts[..i].join(&DELIMITER.to_string());
            if g.state.mailbox(account, &n).is_err() {
                Self::create_ops(&mut g, account, &n, &mut ops);
            }
        }
        self.commit(g, ops)
    }

    /// Delete a mailbox and its messages (not INBOX).
    pub fn delete_mailbox(&self, account: &str, mailbox: &str) -> Result<()> {
        let name = canonical_mailbox(mailbox);
        if name == "INBOX" {
            return Err(StoreError::CannotDeleteInbox);
        }
        let g = self.lock();
        g.state.mailbox(account, &name)?;
        self.commit(
            g,
            vec![Op::Delete {
                account: account.to_owned(),
                mailbox: name,
            }],
        )
    }

    /// Rename a mailbox with its children; renaming INBOX moves its messages.
    pub fn rename_mailbox(&self, account: &str, from: &str, to: &str) -> Result<()> {
        let from = canonical_mailbox(from);
        let to = canonical_mailbox(to);
        check_name(&to)?;
        let mut g = self.lock();
        g.state.mailbox(account, &from)?;
        if g.state.mailbox(account, &to).is_ok() {
            return Err(StoreError::MailboxExists(to));
        }
        let uidvalidity = g.state.next_uidvalidity();
        self.commit(
            g,
            vec![Op::Rename {
                account: account.to_owned(),
                from,
                to,
                uidvalidity,
            }],
        )
    }

    /// Mark a mailbox subscribed or not (LSUB).
    pub fn set_subscribed(&self, account: &str, mailbox: &str, on: bool) -> Result<()> {
        let name = canonical_mailbox(mailbox);
        let g = self.lock();
        g.state.mailbox(account, &name)?;
        self.commit(
            g,
            vec![Op::Subscribe {
                account: account.to_owned(),
                mailbox: name,
                on,
            }],
        )
    }

    /// Bytes stored for `account`, all mailboxes (what a quota counts).
    pub fn usage(&self, account: &str) -> u64 {
        self.view(|st| {
            st.accounts
                .get(account)
                .map(|mbs| {
                    mbs.values()
                        .flat_map(|m| m.messages.values())
                        .map(|m| m.size)
                        .sum()
                })
                .unwrap_or(0)
        })
    }
}
