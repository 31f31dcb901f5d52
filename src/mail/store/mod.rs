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

pub mod journal;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The hierarchy delimiter of mailbox names.
pub const DELIMITER: char = '/';

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

type Result<T> = std::result::Result<T, StoreError>;

/// One journal operation. Applied identically at replay and live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
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

fn one() -> u32 {
    1
}
fn one64() -> u64 {
    1
}

/// What IMAP needs to know about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub uid: u32,
    /// Flags as IMAP spells them (`\Seen`, `$Forwarded`, …), sorted.
    pub flags: BTreeSet<String>,
    /// Internal date, seconds since the Unix epoch.
    pub internal_date: i64,
    /// Size in bytes of the stored message.
    pub size: u64,
    /// MODSEQ of the last change to this message (RFC 7162).
    pub modseq: u64,
    blob: u64,
}

/// A mailbox's status (SELECT/STATUS/LIST data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxStatus {
    pub name: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highestmodseq: u64,
    pub exists: u32,
    pub unseen: u32,
    pub subscribed: bool,
}

/// How STORE changes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    Add,
    Remove,
    Replace,
}

/// Result of [`Store::store_flags`].
#[derive(Debug, Clone, Default)]
pub struct FlagsResult {
    /// Messages whose flags changed, with their new flags and MODSEQ.
    pub changed: Vec<MessageMeta>,
    /// UIDs not changed because their MODSEQ was above UNCHANGEDSINCE.
    pub modified: Vec<u32>,
}

/// Result of COPY/MOVE: the target's UIDVALIDITY and (source UID, new UID) pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyResult {
    pub uidvalidity: u32,
    pub pairs: Vec<(u32, u32)>,
}

#[derive(Debug, Clone)]
struct Mailbox {
    uidvalidity: u32,
    uidnext: u32,
    modseq: u64,
    subscribed: bool,
    messages: BTreeMap<u32, MessageMeta>,
}

impl Mailbox {
    fn status(&self, name: &str) -> MailboxStatus {
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
struct State {
    accounts: BTreeMap<String, BTreeMap<String, Mailbox>>,
    last_uidvalidity: u32,
    blob_refs: HashMap<u64, u32>,
    records: u64,
}

impl State {
    fn mailbox(&self, account: &str, name: &str) -> Result<&Mailbox> {
        self.accounts
            .get(account)
            .and_then(|a| a.get(name))
            .ok_or_else(|| StoreError::NoSuchMailbox(name.to_owned()))
    }

    fn unref(&mut self, blob: u64) -> bool {
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
    fn apply(&mut self, op: Op, freed: &mut Vec<u64>, touched: &mut Vec<(String, String)>) {
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

    fn next_uidvalidity(&mut self) -> u32 {
        let now = u32::try_from(unix_now()).unwrap_or(u32::MAX);
        let v = now.max(self.last_uidvalidity.saturating_add(1)).max(1);
        self.last_uidvalidity = v;
        v
    }

    /// The snapshot of the whole state as ops (for compaction).
    fn snapshot(&self) -> Vec<Op> {
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

struct Locked {
    state: State,
    journal: File,
    /// Another handle on `journal`, for fsync outside the state lock.
    journal_sync: Arc<File>,
    /// Sequence number of the last record written (not necessarily durable).
    written: u64,
}

/// Group commit: which written records are known durable, and whether a
/// thread is fsyncing the journal for everyone right now.
#[derive(Default)]
struct SyncState {
    durable: u64,
    syncing: bool,
    failed: bool,
}

struct Inner {
    dir: PathBuf,
    locked: Mutex<Locked>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    next_blob: AtomicU64,
    watchers: Mutex<HashMap<(String, String), watch::Sender<u64>>>,
    _lock: File,
}

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

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
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

fn blob_name(id: u64) -> String {
    format!("{id:016x}")
}

impl Store {
    /// Open (creating if needed) the store under `data_dir/store`, taking its
    /// exclusive lock, replaying the journal (a torn tail is cut off) and
    /// deleting blobs no record refers to.
    pub fn open(data_dir: &Path) -> Result<Store> {
        let dir = data_dir.join("store");
        fs::create_dir_all(dir.join("blobs"))?;
        fs::create_dir_all(dir.join("tmp"))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StoreError::Locked(dir)),
            Err(fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        let jpath = dir.join("journal");
        let mut journal = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&jpath)?;
        let mut buf = Vec::new();
        journal.read_to_end(&mut buf)?;
        let (records, end) = journal::read_records(&buf);
        let mut state = State::default();
        let (mut freed, mut touched) = (Vec::new(), Vec::new());
        for rec in &records {
            let ops: Vec<Op> = serde_json::from_slice(rec)
                .map_err(|e| StoreError::Corrupt(format!("journal record: {e}")))?;
            for op in ops {
                state.apply(op, &mut freed, &mut touched);
            }
            state.records += 1;
        }
        if end < buf.len() {
            tracing::warn!(
                dropped = buf.len() - end,
                "mail store journal: cutting off a torn last record (an unacknowledged change)"
            );
            journal.set_len(end as u64)?;
            journal.sync_all()?;
        }
        drop(buf);
        fsync_dir(&dir)?;

        // Blobs: delete those no record refers to (written before a crash
        // that came before their record), and everything in tmp/.
        let mut max_blob = state.blob_refs.keys().copied().max().unwrap_or(0);
        for e in fs::read_dir(dir.join("blobs"))? {
            let e = e?;
            let name = e.file_name();
            let id = name.to_str().and_then(|s| u64::from_str_radix(s, 16).ok());
            match id {
                Some(id) if state.blob_refs.contains_key(&id) => {}
                Some(id) => {
                    max_blob = max_blob.max(id);
                    fs::remove_file(e.path())?;
                }
                None => fs::remove_file(e.path())?,
            }
        }
        for e in fs::read_dir(dir.join("tmp"))? {
            let _ = fs::remove_file(e?.path());
        }
        // Every referenced blob must exist: a missing one is real corruption.
        for id in state.blob_refs.keys() {
            if !dir.join("blobs").join(blob_name(*id)).exists() {
                return Err(StoreError::Corrupt(format!(
                    "message file {} is missing",
                    blob_name(*id)
                )));
            }
        }

        let store_records = state.records;
        let live: u64 = state
            .accounts
            .values()
            .flat_map(|a| a.values())
            .map(|m| m.messages.len() as u64 + 1)
            .sum();
        let store = Store {
            inner: Arc::new(Inner {
                dir,
                locked: Mutex::new(Locked {
                    state,
                    journal_sync: Arc::new(journal.try_clone()?),
                    journal,
                    written: 0,
                }),
                sync: Mutex::new(SyncState::default()),
                synced: Condvar::new(),
                next_blob: AtomicU64::new(max_blob + 1),
                watchers: Mutex::new(HashMap::new()),
                _lock: lock,
            }),
        };
        if store_records > 2 * live + 1000 {
            store.compact()?;
        }
        Ok(store)
    }

    /// Rewrite the journal as a snapshot of the current state (atomic
    /// replace: write, fsync, rename, fsync directory).
    pub fn compact(&self) -> Result<()> {
        let mut g = self.lock();
        let tmp = self.inner.dir.join("journal.tmp");
        let mut f = File::create(&tmp)?;
        let ops = g.state.snapshot();
        let mut out = io::BufWriter::new(&mut f);
        // One record per mailbox or message keeps records small.
        for op in ops {
            let payload =
                serde_json::to_vec(&[op]).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.write_all(&journal::frame(&payload))?;
        }
        out.flush()?;
        drop(out);
        f.sync_all()?;
        let jpath = self.inner.dir.join("journal");
        fs::rename(&tmp, &jpath)?;
        fsync_dir(&self.inner.dir)?;
        g.journal = OpenOptions::new().read(true).append(true).open(&jpath)?;
        g.journal_sync = Arc::new(g.journal.try_clone()?);
        // Everything written so far is in the fsynced snapshot.
        let written = g.written;
        drop(g);
        let mut s = self.sync_lock();
        s.durable = s.durable.max(written);
        self.inner.synced.notify_all();
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Locked> {
        // A panic while holding the lock cannot leave the state half-applied
        // (apply runs after the journal write), so a poisoned lock is usable.
        self.inner.locked.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sync_lock(&self) -> MutexGuard<'_, SyncState> {
        self.inner.sync.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait until journal record `seq` is durable, fsyncing the journal
    /// ourselves when no other thread is (group commit: one fsync covers
    /// every record written before it started).
    fn wait_durable(&self, seq: u64) -> Result<()> {
        let mut s = self.sync_lock();
        loop {
            if s.failed {
                return Err(StoreError::Io(io::Error::other(
                    "an earlier journal fsync failed; restart to recover from the journal",
                )));
            }
            if s.durable >= seq {
                return Ok(());
            }
            if s.syncing {
                s = self.inner.synced.wait(s).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            s.syncing = true;
            drop(s);
            let (file, target) = {
                let g = self.lock();
                (g.journal_sync.clone(), g.written)
            };
            let r = file.sync_data();
            s = self.sync_lock();
            s.syncing = false;
            match r {
                Ok(()) => s.durable = s.durable.max(target),
                Err(e) => {
                    // After a failed fsync the kernel may have dropped the
                    // dirty pages: nothing written since the last good sync
                    // can be trusted, so refuse all further changes.
                    tracing::error!("mail store journal fsync failed: {e}");
                    s.failed = true;
                }
            }
            self.inner.synced.notify_all();
        }
    }

    /// Make sure everything a reader is about to see is durable, so that no
    /// client is ever shown a UID that a power loss could take back.
    fn settle(&self, seq: u64) {
        let _ = self.wait_durable(seq);
    }

    /// Write and apply one batch under the state lock, release the lock,
    /// then wait for the batch to be durable before waking IDLE watchers
    /// and returning. `after` reads the state right after the batch.
    fn commit_with<T>(
        &self,
        mut g: MutexGuard<'_, Locked>,
        ops: Vec<Op>,
        after: impl FnOnce(&State) -> T,
    ) -> Result<T> {
        if ops.is_empty() {
            let out = after(&g.state);
            let seq = g.written;
            drop(g);
            self.settle(seq);
            return Ok(out);
        }
        if self.sync_lock().failed {
            return Err(StoreError::Io(io::Error::other(
                "mail store is read-only after an fsync failure",
            )));
        }
        let payload = serde_json::to_vec(&ops).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let rec = journal::frame(&payload);
        let before = g.journal.metadata().map(|m| m.len()).ok();
        if let Err(e) = g.journal.write_all(&rec) {
            // Leave no partial record behind for the next append to follow.
            if let Some(len) = before {
                let _ = g.journal.set_len(len);
            }
            return Err(e.into());
        }
        g.written += 1;
        let seq = g.written;
        let (mut freed, mut touched) = (Vec::new(), Vec::new());
        for op in ops {
            g.state.apply(op, &mut freed, &mut touched);
        }
        g.state.records += 1;
        touched.sort();
        touched.dedup();
        let modseqs: Vec<((String, String), u64)> = touched
            .into_iter()
            .map(|(a, m)| {
                let v = g.state.mailbox(&a, &m).map(|x| x.modseq).unwrap_or(0);
                ((a, m), v)
            })
            .collect();
        let out = after(&g.state);
        drop(g);
        self.wait_durable(seq)?;
        for b in freed {
            // A leftover file is harmless: the next open deletes it.
            let _ = fs::remove_file(self.inner.dir.join("blobs").join(blob_name(b)));
        }
        let watchers = self
            .inner
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (key, v) in modseqs {
            if let Some(tx) = watchers.get(&key) {
                tx.send_if_modified(|cur| {
                    let changed = v > *cur;
                    *cur = (*cur).max(v);
                    changed
                });
            }
        }
        Ok(out)
    }

    fn commit(&self, g: MutexGuard<'_, Locked>, ops: Vec<Op>) -> Result<()> {
        self.commit_with(g, ops, |_| ())
    }

    /// Write `bytes` as a new durable blob; returns its id.
    fn write_blob(&self, bytes: &[u8]) -> Result<u64> {
        let id = self.inner.next_blob.fetch_add(1, Ordering::SeqCst);
        let name = blob_name(id);
        let tmp = self.inner.dir.join("tmp").join(&name);
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        let blobs = self.inner.dir.join("blobs");
        fs::rename(&tmp, blobs.join(&name))?;
        fsync_dir(&blobs)?;
        Ok(id)
    }

    fn create_ops(g: &mut Locked, account: &str, name: &str, ops: &mut Vec<Op>) {
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

    /// Read the state; returns only once everything read is durable.
    fn view<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let g = self.lock();
        let out = f(&g.state);
        let seq = g.written;
        drop(g);
        self.settle(seq);
        out
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

    fn copy_ops(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn expire_removes_only_old_messages_everywhere_and_counts_usage() {
        let d = tempfile::tempdir().unwrap();
        let st = Store::open(d.path()).unwrap();
        st.deliver(&s(&["a@x", "b@x"]), b"new").unwrap();
        st.create_mailbox("a@x", "Archive").unwrap();
        let now = unix_now();
        st.append("a@x", "Archive", b"old one", &[], Some(now - 100))
            .unwrap();
        st.append("a@x", "INBOX", b"old two", &s(&["\\Seen"]), Some(now - 50))
            .unwrap();
        assert_eq!(st.usage("a@x"), 3 + 7 + 7);
        assert_eq!(st.expire(now - 10).unwrap(), 2);
        let left: Vec<Vec<u8>> = ["INBOX", "Archive"]
            .iter()
            .flat_map(|m| {
                st.messages("a@x", m)
                    .unwrap()
                    .into_iter()
                    .map(|x| st.read("a@x", m, x.uid).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(left, vec![b"new".to_vec()]);
        assert_eq!(st.usage("a@x"), 3);
        assert_eq!(st.messages("b@x", "INBOX").unwrap().len(), 1);
        assert_eq!(st.expire(now - 10).unwrap(), 0);
        // Durable: still gone after a reopen.
        drop(st);
        let st = Store::open(d.path()).unwrap();
        assert_eq!(st.usage("a@x"), 3);
    }

    #[test]
    fn deliver_read_flags_expunge_survive_reopen() {
        let d = tempfile::tempdir().unwrap();
        let st = Store::open(d.path()).unwrap();
        let uids = st
            .deliver(&s(&["a@x", "b@x"]), b"Subject: hi\r\n\r\nbody\r\n")
            .unwrap();
        assert_eq!(uids, vec![1, 1]);
        st.deliver(&s(&["a@x"]), b"two").unwrap();
        assert_eq!(st.read("a@x", "inbox", 2).unwrap(), b"two");
        let r = st
            .store_flags("a@x", "INBOX", &[1], FlagOp::Add, &s(&["\\Deleted"]), None)
            .unwrap();
        assert_eq!(r.changed.len(), 1);
        assert_eq!(st.expunge("a@x", "INBOX", None).unwrap(), vec![1]);
        let before = st.status("a@x", "INBOX").unwrap();
        drop(st);
        let st = Store::open(d.path()).unwrap();
        assert_eq!(st.status("a@x", "INBOX").unwrap(), before);
        assert_eq!(before.exists, 1);
        assert_eq!(before.uidnext, 3);
        // b's copy shares the blob and must outlive a's expunge.
        assert_eq!(
            st.read("b@x", "INBOX", 1).unwrap(),
            b"Subject: hi\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn second_open_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let _st = Store::open(d.path()).unwrap();
        assert!(matches!(Store::open(d.path()), Err(StoreError::Locked(_))));
    }

    #[test]
    fn torn_journal_tail_is_cut_and_store_works() {
        let d = tempfile::tempdir().unwrap();
        {
            let st = Store::open(d.path()).unwrap();
            st.deliver(&s(&["a@x"]), b"one").unwrap();
        }
        let j = d.path().join("store/journal");
        let mut f = OpenOptions::new().append(true).open(&j).unwrap();
        f.write_all(&journal::frame(b"[{\"op\":\"delete\"")[..9])
            .unwrap();
        drop(f);
        let st = Store::open(d.path()).unwrap();
        assert_eq!(st.messages("a@x", "INBOX").unwrap().len(), 1);
        st.deliver(&s(&["a@x"]), b"two").unwrap();
        drop(st);
        let st = Store::open(d.path()).unwrap();
        assert_eq!(st.messages("a@x", "INBOX").unwrap().len(), 2);
    }

    #[test]
    fn mailboxes_copy_move_rename_uidvalidity() {
        let d = tempfile::tempdir().unwrap();
        let st = Store::open(d.path()).unwrap();
        st.ensure_account("a").unwrap();
        st.create_mailbox("a", "Archive/2024").unwrap();
        assert!(matches!(
            st.create_mailbox("a", "Archive"),
            Err(StoreError::MailboxExists(_))
        ));
        let (v, uid) = st
            .append("a", "INBOX", b"m", &s(&["\\Seen"]), Some(5))
            .unwrap();
        assert_eq!(uid, 1);
        let c = st.copy("a", "INBOX", &[1], "Archive").unwrap();
        assert_eq!(c.pairs, vec![(1, 1)]);
        let m = st
            .move_messages("a", "INBOX", &[1], "Archive/2024")
            .unwrap();
        assert_eq!(m.pairs, vec![(1, 1)]);
        assert_eq!(st.status("a", "INBOX").unwrap().exists, 0);
        st.rename_mailbox("a", "Archive", "Old").unwrap();
        let names: Vec<String> = st.list_mailboxes("a").into_iter().map(|m| m.name).collect();
        assert_eq!(names, s(&["INBOX", "Old", "Old/2024"]));
        assert_eq!(st.read("a", "Old/2024", 1).unwrap(), b"m");
        st.delete_mailbox("a", "Old").unwrap();
        st.create_mailbox("a", "Old").unwrap();
        assert_ne!(st.status("a", "Old").unwrap().uidvalidity, v);
        assert!(matches!(
            st.delete_mailbox("a", "inbox"),
            Err(StoreError::CannotDeleteInbox)
        ));
    }

    #[test]
    fn unchanged_since_and_notification() {
        let d = tempfile::tempdir().unwrap();
        let st = Store::open(d.path()).unwrap();
        st.ensure_account("a").unwrap();
        let mut rx = st.subscribe("a", "INBOX");
        st.deliver(&s(&["a"]), b"x").unwrap();
        assert!(rx.has_changed().unwrap());
        let seen = *rx.borrow_and_update();
        let r = st
            .store_flags(
                "a",
                "INBOX",
                &[1],
                FlagOp::Add,
                &s(&["\\Seen"]),
                Some(seen - 1),
            )
            .unwrap();
        assert_eq!(r.modified, vec![1]);
        assert!(r.changed.is_empty());
        assert!(!rx.has_changed().unwrap());
    }

    #[test]
    fn concurrent_deliveries_get_distinct_uids() {
        let d = tempfile::tempdir().unwrap();
        let st = Store::open(d.path()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let st = st.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        st.deliver(&s(&["a"]), format!("{t}-{i}").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let msgs = st.messages("a", "INBOX").unwrap();
        let uids: Vec<u32> = msgs.iter().map(|m| m.uid).collect();
        assert_eq!(uids, (1..=100).collect::<Vec<u32>>());
        let mut bodies: Vec<Vec<u8>> = uids
            .iter()
            .map(|u| st.read("a", "INBOX", *u).unwrap())
            .collect();
        bodies.sort();
        bodies.dedup();
        assert_eq!(bodies.len(), 100);
    }

    #[test]
    fn compaction_keeps_state() {
        let d = tempfile::tempdir().unwrap();
        let st = Store::open(d.path()).unwrap();
        st.deliver(&s(&["a"]), b"x").unwrap();
        for _ in 0..5 {
            st.store_flags("a", "INBOX", &[1], FlagOp::Add, &s(&["\\Seen"]), None)
                .unwrap();
            st.store_flags("a", "INBOX", &[1], FlagOp::Remove, &s(&["\\Seen"]), None)
                .unwrap();
        }
        let before = st.status("a", "INBOX").unwrap();
        st.compact().unwrap();
        drop(st);
        let st = Store::open(d.path()).unwrap();
        assert_eq!(st.status("a", "INBOX").unwrap(), before);
    }
}
