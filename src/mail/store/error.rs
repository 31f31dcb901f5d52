//! The store's errors, each saying whose fault it was (which picks IMAP NO
//! or NO [SERVERBUG], SMTP 5xx or 4xx).

use std::io;
use std::path::PathBuf;

/// Store errors; `Io`/`Corrupt`/`Locked` are the server's fault, the rest the client's.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("mail store I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("mail store {0} is in use by another process")]
    Locked(PathBuf),
    #[error("mail store is corrupt: {0}")]
    Corrupt(String),
    #[error("no such mailbox {0:?}")]
    NoSuchMailbox(String),
    #[error("mailbox {0:?} already exists")]
    MailboxExists(String),
    #[error("INBOX cannot be deleted")]
    CannotDeleteInbox,
    #[error("bad mailbox name {0:?}")]
    BadName(String),
    #[error("no message with UID {0}")]
    NoSuchMessage(u32),
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
