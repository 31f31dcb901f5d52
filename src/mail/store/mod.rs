//! The durable mail store shared by the SMTP and IMAP servers.
//!
//! Layout under `<data_dir>/store/`:
//! - `lock`: held with an exclusive OS lock by the one process that owns the store;
//! - `blobs/<id>`: message bytes, immutable once written, one file per delivered message;
//! - `tmp/`: where blobs are written before their rename into `blobs/`;
//! - `journal`: an append-only log of checksummed records ([`journal`]); each
//!   record is a batch of `Op`s applied atomically. The in-memory state
//!   (accounts, mailboxes, UIDs, flags, MODSEQs) is the replay of the journal.
//!
//! Invariants:
//! - Durability: a mutating call returns only after the message bytes (file
//!   fsynced, renamed, directory fsynced) and the journal record (fsynced) are
//!   on disk, so a `250`/`OK` sent after it survives kill -9 and power loss.
//! - Crash safety: a crash can leave an unreferenced blob or tmp file (deleted
//!   at the next open) and a torn last journal record (truncated at the next
//!   open); neither loses an acknowledged change. A batch (a delivery to several
//!   recipients, a MOVE) is one record, so it is all or nothing.
//! - Concurrency: one mutex orders all changes; reads see a consistent
//!   snapshot. Journal fsyncs are group commits done outside the mutex: a
//!   change is written and applied under the mutex, then its caller waits
//!   until an fsync covering it has finished before waking IDLE watchers and
//!   returning. Readers likewise wait until what they read is durable, so no
//!   client is ever shown a UID that a power loss could take back. After a
//!   failed fsync the store refuses all changes (restart to recover).
//! - The methods block (file I/O, fsync): async callers run them in
//!   `tokio::task::spawn_blocking`.
//! - UIDs only grow within a UIDVALIDITY; UIDVALIDITY values are never reused
//!   in one store, so a deleted and re-created mailbox gets a new one.
//!
//! Files, by concern: `durable` (open, compaction, the commit path and
//! blobs), `state` (the in-memory state and the journal ops that change
//! it), `mailboxes` and `messages` (the [`Store`] API on each), `types`
//! (the values handed out), `error` ([`StoreError`]), [`journal`] (the
//! record format).

#![warn(missing_docs)]

mod durable;
mod error;
pub mod journal;
mod mailboxes;
mod messages;
pub mod queue;
mod state;
mod types;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use error::StoreError;
pub use types::{CopyResult, FlagOp, FlagsResult, MailboxStatus, MessageMeta};

use durable::Inner;
use error::Result;
use state::State;

/// The hierarchy delimiter of mailbox names.
pub const DELIMITER: char = '/';

/// The mail store. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Canonical form of a mailbox name: `INBOX` in any case is `INBOX`.
pub fn canonical_mailbox(name: &str) -> String {
    let first = name.split(DELIMITER).next().unwrap_or("");
    if first.eq_ignore_ascii_case("INBOX") {
        format!("INBOX{}", &name[first.len()..])
    } else {
        name.to_owned()
    }
}

fn check_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > 255
        || name.starts_with(DELIMITER)
        || name.ends_with(DELIMITER)
        || name.contains("//")
        || name.chars().any(|c| c.is_control() || c == '*' || c == '%');
    if bad {
        Err(StoreError::BadName(name.to_owned()))
    } else {
        Ok(())
    }
}

impl Store {
    /// Read the state; returns only once everything read is durable.
    fn view<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let g = self.lock();
        let out = f(&g.state);
        let seq = g.written;
        drop(g);
        self.settle(seq);
        out
    }
}

#[cfg(test)]
mod tests;
