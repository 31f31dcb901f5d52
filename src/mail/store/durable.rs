//! Durability: opening the store (lock, journal replay, orphan cleanup),
//! compaction, and the commit path every change takes: write and apply the
//! journal record under the state mutex, then wait for a group-commit fsync
//! that covers it; message bytes go to blobs fsynced before their record.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::watch;

use super::error::{Result, StoreError};
use super::journal;
use super::state::{Op, State};
use super::Store;

pub(super) struct Locked {
    pub(super) state: State,
    pub(super) journal: File,
    /// Another handle on `journal`, for fsync outside the state lock.
    pub(super) journal_sync: Arc<File>,
    /// Sequence number of the last record written (not necessarily durable).
    pub(super) written: u64,
}

/// Group commit: which written records are known durable, and whether a
/// thread is fsyncing the journal for everyone right now.
#[derive(Default)]
pub(super) struct SyncState {
    pub(super) durable: u64,
    pub(super) syncing: bool,
    pub(super) failed: bool,
}

pub(super) struct Inner {
    pub(super) dir: PathBuf,
    pub(super) locked: Mutex<Locked>,
    pub(super) sync: Mutex<SyncState>,
    pub(super) synced: Condvar,
    pub(super) next_blob: AtomicU64,
    pub(super) watchers: Mutex<HashMap<(String, String), watch::Sender<u64>>>,
    pub(super) _lock: File,
}

pub(super) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub(super) fn blob_name(id: u64) -> String {
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

    pub(super) fn lock(&self) -> MutexGuard<'_, Locked> {
        // A panic while holding the lock cannot leave the state half-applied
        // (apply runs after the journal write), so a poisoned lock is usable.
        self.inner.locked.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn sync_lock(&self) -> MutexGuard<'_, SyncState> {
        self.inner.sync.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait until journal record `seq` is durable, fsyncing the journal
    /// ourselves when no other thread is (group commit: one fsync covers
    /// every record written before it started).
    pub(super) fn wait_durable(&self, seq: u64) -> Result<()> {
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
    pub(super) fn settle(&self, seq: u64) {
        let _ = self.wait_durable(seq);
    }

    /// Write and apply one batch under the state lock, release the lock,
    /// then wait for the batch to be durable before waking IDLE watchers
    /// and returning. `after` reads the state right after the batch.
    pub(super) fn commit_with<T>(
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

    pub(super) fn commit(&self, g: MutexGuard<'_, Locked>, ops: Vec<Op>) -> Result<()> {
        self.commit_with(g, ops, |_| ())
    }

    /// Write `bytes` as a new durable blob; returns its id.
    pub(super) fn write_blob(&self, bytes: &[u8]) -> Result<u64> {
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
}
