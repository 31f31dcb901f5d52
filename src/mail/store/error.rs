//! The store's errors, each saying whose fault it was (which picks IMAP NO
//! or NO [SERVERBUG], SMTP 5xx or 4xx).

use std::io;
use std::path::PathBuf;

/// Store errors; `Io`/`Corrupt`/`Locked` are the server's fault, the rest the client's.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed (the server's fault).
    #[error("mail store I/O error: {0}")]
    Io(#[from] io::Error),
    /// Another process holds the store's lock (the operator's to sort out).
    #[error("mail store {0} is in use by another process")]
    Locked(PathBuf),
    /// The journal or a blob does not read back as written (the server's fault).
    #[error("mail store is corrupt: {0}")]
    Corrupt(String),
    /// The client named a mailbox that does not exist.
    #[error("no such mailbox {0:?}")]
    NoSuchMailbox(String),
    /// The client would create or rename onto an existing mailbox.
    #[error("mailbox {0:?} already exists")]
    MailboxExists(String),
    /// The client would delete INBOX.
    #[error("INBOX cannot be deleted")]
    CannotDeleteInbox,
    /// The client sent a mailbox name the store does not take.
    #[error("bad mailbox name {0:?}")]
    BadName(String),
    /// The client named a UID the mailbox does not hold.
    #[error("no message with UID {0}")]
    NoSuchMessage(u32),
    /// The mailbox has used every UID of its UIDVALIDITY.
    #[error("mailbox is full (UID space exhausted)")]
    UidsExhausted,
}

impl StoreError {
    /// True when the request was wrong (IMAP NO, SMTP 5xx), false when the
    /// server failed (IMAP NO \[SERVERBUG\], SMTP 4xx).
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            StoreError::Io(_) | StoreError::Locked(_) | StoreError::Corrupt(_)
        )
    }
}

pub(super) type Result<T> = std::result::Result<T, StoreError>;
