//! The mail store and account registry as the session handlers see them:
//! async methods that run the blocking work (fsync, file reads, the accounts
//! file) on tokio's blocking pool, so no handler calls `spawn_blocking`
//! itself and no store call stalls the async worker threads.

use tokio::sync::watch;

use crate::mail::accounts::Accounts;
use crate::mail::login::LoginError;
use crate::mail::store::{
    CopyResult, FlagOp, FlagsResult, MailboxStatus, MessageMeta, Store, StoreError,
};

/// Async view of [`Store`] and [`Accounts`] for one session.
#[derive(Clone)]
pub(super) struct AsyncStore {
    store: Store,
    accounts: Accounts,
}

/// Run blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(StoreError::Io(std::io::Error::other(e.to_string()))))
}

impl AsyncStore {
    pub(super) fn new(store: Store, accounts: Accounts) -> Self {
        Self { store, accounts }
    }

    /// The account `address` names, if any; a failed lookup is
    /// [`LoginError::Account`], a lost task [`LoginError::Gone`].
    pub(super) async fn account_for(&self, address: &str) -> Result<Option<String>, LoginError> {
        let (accounts, a) = (self.accounts.clone(), address.to_owned());
        match tokio::task::spawn_blocking(move || accounts.account_for(&a)).await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(e)) => Err(LoginError::Account(e)),
            Err(_) => Err(LoginError::Gone),
        }
    }

    pub(super) async fn ensure_account(&self, account: &str) -> Result<(), StoreError> {
        let (st, a) = (self.store.clone(), account.to_owned());
        blocking(move || st.ensure_account(&a)).await
    }

    pub(super) async fn list_mailboxes(
        &self,
        account: &str,
    ) -> Result<Vec<MailboxStatus>, StoreError> {
        let (st, a) = (self.store.clone(), account.to_owned());
        blocking(move || Ok(st.list_mailboxes(&a))).await
    }

    pub(super) async fn status(
        &self,
        account: &str,
        mailbox: &str,
    ) -> Result<MailboxStatus, StoreError> {
        let (st, a, m) = (self.store.clone(), account.to_owned(), mailbox.to_owned());
        blocking(move || st.status(&a, &m)).await
    }

    /// STATUS and the message list in one trip to the blocking pool.
    pub(super) async fn status_and_messages(
        &self,
        account: &str,
        mailbox: &str,
    ) -> Result<(MailboxStatus, Vec<MessageMeta>), StoreError> {
        let (st, a, m) = (self.store.clone(), account.to_owned(), mailbox.to_owned());
        blocking(move || Ok((st.status(&a, &m)?, st.messages(&a, &m)?))).await
    }

    pub(super) async fn messages(
        &self,
        account: &str,
        mailbox: &str,
    ) -> Result<Vec<MessageMeta>, StoreError> {
        let (st, a, m) = (self.store.clone(), account.to_owned(), mailbox.to_owned());
        blocking(move || st.messages(&a, &m)).await
    }

    pub(super) async fn read(
        &self,
        account: &str,
        mailbox: &str,
        uid: u32,
    ) -> Result<Vec<u8>, StoreError> {
        let (st, a, m) = (self.store.clone(), account.to_owned(), mailbox.to_owned());
        blocking(move || st.read(&a, &m, uid)).await
    }

    pub(super) async fn create_mailbox(
        &self,
        account: &str,
        mailbox: &str,
    ) -> Result<(), StoreError> {
        let (st, a, m) = (self.store.clone(), account.to_owned(), mailbox.to_owned());
        blocking(move || st.create_mailbox(&a, &m)).await
    }

    pub(super) async fn delete_mailbox(
        &self,
        account: &str,
        mailbox: &str,
    ) -> Result<(), StoreError> {
        let (st, a, m) = (self.store.clone(), account.to_owned(), mailbox.to_owned());
        blocking(move || st.delete_mailbox(&a, &m)).await
    }

    pub(super) async fn rename_mailbox(
        &self,
        account: &str,
        from: &str,
        to: &str,
    ) -> Result<(), StoreError> {
        let (st, a, f, t) = (
            self.store.clone(),
            account.to_owned(),
            from.to_owned(),
            to.to_owned(),
        );
        blocking(move || st.rename_mailbox(&a, &f, &t)).await
    }

    pub(super) async fn set_subscribed(
        &self,
        account: &str,
        mailbox: &str,
        on: bool,
    ) -> Result<(), StoreError> {
        let (st, a, m) = (self.store.clone(), account.to_owned(), mailbox.to_owned());
        blocking(move || st.set_subscribed(&a, &m, on)).await
    }

    /// Bytes stored for `account`; 0 when the store cannot say.
    pub(super) async fn usage(&self, account: &str) -> u64 {
        let (st, a) = (self.store.clone(), account.to_owned());
        blocking(move || Ok(st.usage(&a))).await.unwrap_or(0)
    }

    /// APPEND: (UIDVALIDITY, UID) of the new message.
    pub(super) async fn append(
        &self,
        account: &str,
        mailbox: &str,
        message: Vec<u8>,
        flags: Vec<String>,
        date: Option<i64>,
    ) -> Result<(u32, u32), StoreError> {
        let (st, a, m) = (self.store.clone(), account.to_owned(), mailbox.to_owned());
        blocking(move || st.append(&a, &m, &message, &flags, date)).await
    }

    pub(super) async fn store_flags(
        &self,
        account: &str,
        mailbox: &str,
        uids: Vec<u32>,
        op: FlagOp,
        flags: Vec<String>,
        unchanged_since: Option<u64>,
    ) -> Result<FlagsResult, StoreError> {
        let (st, a, m) = (self.store.clone(), account.to_owned(), mailbox.to_owned());
        blocking(move || st.store_flags(&a, &m, &uids, op, &flags, unchanged_since)).await
    }

    pub(super) async fn expunge(
        &self,
        account: &str,
        mailbox: &str,
        uids: Option<Vec<u32>>,
    ) -> Result<Vec<u32>, StoreError> {
        let (st, a, m) = (self.store.clone(), account.to_owned(), mailbox.to_owned());
        blocking(move || st.expunge(&a, &m, uids.as_deref())).await
    }

    /// COPY, or MOVE when `remove`.
    pub(super) async fn copy(
        &self,
        account: &str,
        from: &str,
        uids: Vec<u32>,
        to: &str,
        remove: bool,
    ) -> Result<CopyResult, StoreError> {
        let (st, a, f, t) = (
            self.store.clone(),
            account.to_owned(),
            from.to_owned(),
            to.to_owned(),
        );
        blocking(move || {
            if remove {
                st.move_messages(&a, &f, &uids, &t)
            } else {
                st.copy(&a, &f, &uids, &t)
            }
        })
        .await
    }

    /// Change notifications for one mailbox (IDLE).
    pub(super) async fn subscribe(
        &self,
        account: &str,
        mailbox: &str,
    ) -> Result<watch::Receiver<u64>, StoreError> {
        let (st, a, m) = (self.store.clone(), account.to_owned(), mailbox.to_owned());
        blocking(move || Ok(st.subscribe(&a, &m))).await
    }
}
