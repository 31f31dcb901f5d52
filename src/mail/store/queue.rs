//! The outbound queue: messages accepted for remote recipients, kept on
//! disk until every recipient is delivered, refused for good, or expired.
//!
//! Layout under `<data_dir>/store/queue/`:
//! - `<id>.msg`: one file per queued message, written once: a JSON envelope
//!   line (`from`, `rcpts`, `queued`) then the message bytes (already DKIM
//!   signed). Its presence is what "queued" means.
//! - `<id>.state`: the delivery state (per-recipient results, attempts, next
//!   attempt, last error), replaced atomically after an attempt that leaves
//!   recipients pending; absent until the first such attempt.
//! - `tmp/`: files are written here and renamed into place.
//! - `flush`: a request (from `frontdoor mail queue --flush`) to retry every
//!   entry now; the worker removes it when it has seen it.
//!
//! Invariants (the same fsync discipline as the journal and blobs):
//! - [`Queue::enqueue`] returns only once `<id>.msg` is fsynced, renamed and
//!   its directory fsynced, so a `250` sent after it survives kill -9 and
//!   power loss. A crash before leaves at most a file in `tmp/`, deleted at
//!   the next open (the client got no `250`).
//! - An entry whose recipients are all done is removed (unlink, directory
//!   fsync) right after the last peer reply. A crash between the peer's
//!   `250` and that removal being durable makes the message go out again
//!   at the next start: delivery is at least once, and that window (one
//!   unlink and one fsync) is the only place a duplicate can come from.
//! - A `.state` file is only ever replaced whole (tmp, fsync, rename,
//!   directory fsync); a missing or unreadable one means "nothing delivered
//!   yet", which again errs towards sending twice, never towards losing.
//! - Only message metadata lives in memory ([`Entry`]); the bytes are read
//!   from `<id>.msg` when an attempt needs them.
//!
//! The methods block (file I/O, fsync): async callers use `spawn_blocking`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::durable::fsync_dir;
use super::error::{Result, StoreError};

/// Where a recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RcptStatus {
    /// Not delivered yet: will be tried (again).
    Pending,
    /// The peer accepted it (`250`).
    Delivered,
    /// Refused for good, or the queue lifetime ran out; a DSN was made.
    Failed,
}

/// One recipient of a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rcpt {
    /// The address as given at RCPT.
    pub addr: String,
    /// Its status.
    pub status: RcptStatus,
    /// The last reply or error for it (empty when none yet).
    #[serde(default)]
    pub last: String,
}

/// The envelope line at the start of a `.msg` file.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    rcpts: Vec<String>,
    queued: i64,
}

/// The `.state` file.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    attempts: u32,
    next_attempt: i64,
    last_error: String,
    rcpts: Vec<Rcpt>,
}

/// A queued message's metadata (the bytes stay on disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Unique, sortable by queueing time.
    pub id: String,
    /// MAIL FROM (empty for a null sender).
    pub from: String,
    /// Every recipient with its status.
    pub rcpts: Vec<Rcpt>,
    /// When it was queued (Unix seconds).
    pub queued: i64,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// The earliest time of the next attempt (Unix seconds).
    pub next_attempt: i64,
    /// The last error, for `frontdoor mail queue`.
    pub last_error: String,
    /// Size of the message bytes.
    pub size: u64,
}

impl Entry {
    /// Recipients still to be delivered.
    pub fn pending(&self) -> impl Iterator<Item = &Rcpt> {
        self.rcpts
            .iter()
            .filter(|r| r.status == RcptStatus::Pending)
    }
}

/// The queue directory and the in-memory index of its entries.
#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    next: AtomicU64,
    entries: Mutex<BTreeMap<String, Entry>>,
}

fn corrupt(path: &Path, why: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("queue file {}: {why}", path.display()))
}

/// Read the envelope of a `.msg` file and the byte offset where the message starts.
fn read_envelope(path: &Path) -> Result<(Envelope, u64, u64)> {
    let f = File::open(path)?;
    let total = f.metadata()?.len();
    let mut r = io::BufReader::new(f.take(64 << 10));
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") {
        return Err(corrupt(path, "no envelope line"));
    }
    let env: Envelope = serde_json::from_slice(&line).map_err(|e| corrupt(path, e))?;
    let off = line.len() as u64;
    Ok((env, off, total.saturating_sub(off)))
}

fn read_state(path: &Path) -> Option<StateFile> {
    let b = fs::read(path).ok()?;
    serde_json::from_slice(&b).ok()
}

/// Build an entry from a `.msg` file and its `.state` file, if any.
fn load_entry(dir: &Path, id: &str) -> Result<Entry> {
    let (env, _, size) = read_envelope(&dir.join(format!("{id}.msg")))?;
    let mut e = Entry {
        id: id.to_owned(),
        from: env.from,
        rcpts: env
            .rcpts
            .into_iter()
            .map(|addr| Rcpt {
                addr,
                status: RcptStatus::Pending,
                last: String::new(),
            })
            .collect(),
        queued: env.queued,
        attempts: 0,
        next_attempt: env.queued,
        last_error: String::new(),
        size,
    };
    if let Some(st) = read_state(&dir.join(format!("{id}.state"))) {
        // Only recipients of the envelope count; a state naming others is
        // not this entry's and is ignored.
        if st.rcpts.len() == e.rcpts.len()
            && st.rcpts.iter().zip(&e.rcpts).all(|(a, b)| a.addr == b.addr)
        {
            e.rcpts = st.rcpts;
            e.attempts = st.attempts;
            e.next_attempt = st.next_attempt;
            e.last_error = st.last_error;
        }
    }
    Ok(e)
}

/// The ids of the `.msg` files in `dir`, sorted.
fn ids_in(dir: &Path) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for e in fs::read_dir(dir)? {
        let name = e?.file_name();
        if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".msg")) {
            ids.push(id.to_owned());
        }
    }
    ids.sort();
    Ok(ids)
}

/// Every entry in the queue of `data_dir`, read from the files (for
/// `frontdoor mail queue` while the server runs: a file that goes away
/// while being read is skipped).
pub fn list_dir(data_dir: &Path) -> Result<Vec<Entry>> {
    let dir = queue_dir(data_dir);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for id in ids_in(&dir)? {
        match load_entry(&dir, &id) {
            Ok(e) => out.push(e),
            Err(StoreError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Ask the running server to retry every entry now.
pub fn request_flush(data_dir: &Path) -> Result<PathBuf> {
    let dir = queue_dir(data_dir);
    fs::create_dir_all(&dir)?;
    let path = dir.join("flush");
    File::create(&path)?;
    Ok(path)
}

/// `<data_dir>/store/queue`.
pub fn queue_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("store").join("queue")
}

fn write_atomic(dir: &Path, name: &str, parts: &[&[u8]]) -> Result<()> {
    let tmp = dir.join("tmp").join(name);
    let mut f = File::create(&tmp)?;
    for p in parts {
        f.write_all(p)?;
    }
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(name))?;
    fsync_dir(dir)?;
    Ok(())
}

impl Queue {
    /// Open the queue of `data_dir` (the caller owns the store's lock):
    /// read every entry, delete leftovers in `tmp/` and `.state` files
    /// without their message.
    pub fn open(data_dir: &Path) -> Result<Queue> {
        let dir = queue_dir(data_dir);
        fs::create_dir_all(dir.join("tmp"))?;
        for e in fs::read_dir(dir.join("tmp"))? {
            let _ = fs::remove_file(e?.path());
        }
        let ids = ids_in(&dir)?;
        let mut entries = BTreeMap::new();
        for id in &ids {
            match load_entry(&dir, id) {
                Ok(e) => {
                    entries.insert(id.clone(), e);
                }
                // A message file that does not read back is kept for the
                // operator, and not sent.
                Err(e) => {
                    tracing::error!(id = %id, error = %e, "queue: unreadable entry left in place")
                }
            }
        }
        for e in fs::read_dir(&dir)? {
            let name = e?.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".state")) {
                if !ids.iter().any(|i| i == id) {
                    let _ = fs::remove_file(dir.join(&name));
                }
            }
        }
        Ok(Queue {
            dir,
            next: AtomicU64::new(0),
            entries: Mutex::new(entries),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn new_id(&self) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let n = self.next.fetch_add(1, Ordering::Relaxed) & 0xffff;
        format!("{nanos:016x}{n:04x}")
    }

    /// Queue `msg` from `from` to `rcpts`, durably; returns the new entry.
    pub fn enqueue(&self, from: &str, rcpts: &[String], msg: &[u8]) -> Result<Entry> {
        let queued = super::unix_now();
        let env = Envelope {
            from: from.to_owned(),
            rcpts: rcpts.to_vec(),
            queued,
        };
        let mut line = serde_json::to_vec(&env).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        line.push(b'\n');
        let id = self.new_id();
        write_atomic(&self.dir, &format!("{id}.msg"), &[&line, msg])?;
        let e = Entry {
            id: id.clone(),
            from: env.from,
            rcpts: env
                .rcpts
                .into_iter()
                .map(|addr| Rcpt {
                    addr,
                    status: RcptStatus::Pending,
                    last: String::new(),
                })
                .collect(),
            queued,
            attempts: 0,
            next_attempt: queued,
            last_error: String::new(),
            size: msg.len() as u64,
        };
        self.lock().insert(id, e.clone());
        Ok(e)
    }

    /// The message bytes of entry `id`.
    pub fn message(&self, id: &str) -> Result<Vec<u8>> {
        let path = self.dir.join(format!("{id}.msg"));
        let (_, off, _) = read_envelope(&path)?;
        let mut f = File::open(&path)?;
        io::Seek::seek(&mut f, io::SeekFrom::Start(off))?;
        let mut out = Vec::new();
        f.read_to_end(&mut out)?;
        Ok(out)
    }

    /// A copy of every entry, oldest first.
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().values().cloned().collect()
    }

    /// A copy of entry `id`.
    pub fn get(&self, id: &str) -> Option<Entry> {
        self.lock().get(id).cloned()
    }

    /// Entries in the queue.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record the outcome of an attempt at entry `id`: `results` sets the
    /// status (and last reply) of the named recipients; `retry`, when some
    /// stay pending, is the next attempt's time and error. When no
    /// recipient is pending any more the entry is removed; otherwise its
    /// `.state` file is replaced. Durable on return. Returns the entry as
    /// it now stands.
    pub fn record(
        &self,
        id: &str,
        results: &[(String, RcptStatus, String)],
        retry: Option<(i64, String)>,
    ) -> Result<Option<Entry>> {
        let updated = {
            let mut g = self.lock();
            let Some(e) = g.get_mut(id) else {
                return Ok(None);
            };
            for (addr, status, last) in results {
                for r in e.rcpts.iter_mut().filter(|r| &r.addr == addr) {
                    if r.status == RcptStatus::Pending {
                        r.status = *status;
                        r.last.clone_from(last);
                    }
                }
            }
            if let Some((next, err)) = retry {
                e.attempts = e.attempts.saturating_add(1);
                e.next_attempt = next;
                e.last_error = err;
            }
            e.clone()
        };
        if updated.pending().next().is_none() {
            let msg = self.dir.join(format!("{id}.msg"));
            fs::remove_file(&msg)?;
            let _ = fs::remove_file(self.dir.join(format!("{id}.state")));
            fsync_dir(&self.dir)?;
            self.lock().remove(id);
        } else {
            let st = StateFile {
                attempts: updated.attempts,
                next_attempt: updated.next_attempt,
                last_error: updated.last_error.clone(),
                rcpts: updated.rcpts.clone(),
            };
            let b = serde_json::to_vec(&st).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            write_atomic(&self.dir, &format!("{id}.state"), &[&b])?;
        }
        Ok(Some(updated))
    }

    /// Make every entry due now (a flush).
    pub fn make_all_due(&self, now: i64) {
        for e in self.lock().values_mut() {
            e.next_attempt = e.next_attempt.min(now);
        }
    }

    /// True (once) when a flush was requested through the `flush` file.
    pub fn take_flush_request(&self) -> bool {
        fs::remove_file(self.dir.join("flush")).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enqueue_record_and_reopen() {
        let d = tempfile::tempdir().unwrap();
        let q = Queue::open(d.path()).unwrap();
        let rcpts = vec!["a@x.example".to_string(), "b@y.example".to_string()];
        let e = q
            .enqueue("me@here", &rcpts, b"Subject: t\r\n\r\nbody\r\n")
            .unwrap();
        assert_eq!(q.message(&e.id).unwrap(), b"Subject: t\r\n\r\nbody\r\n");
        let got = q
            .record(
                &e.id,
                &[("a@x.example".into(), RcptStatus::Delivered, "250 ok".into())],
                Some((123, "b: 451 later".into())),
            )
            .unwrap()
            .unwrap();
        assert_eq!(got.attempts, 1);
        drop(q);
        // A crash leftover in tmp/ and an orphan state file go at open.
        let dir = queue_dir(d.path());
        fs::write(dir.join("tmp/x"), b"junk").unwrap();
        fs::write(dir.join("ffff.state"), b"{}").unwrap();
        let q = Queue::open(d.path()).unwrap();
        assert!(!dir.join("tmp/x").exists());
        assert!(!dir.join("ffff.state").exists());
        let back = q.get(&e.id).unwrap();
        assert_eq!(back, got);
        assert_eq!(list_dir(d.path()).unwrap(), vec![got]);
        let done = q
            .record(
                &e.id,
                &[("b@y.example".into(), RcptStatus::Failed, "550 no".into())],
                None,
            )
            .unwrap()
            .unwrap();
        assert!(done.pending().next().is_none());
        assert!(q.is_empty());
        assert!(list_dir(d.path()).unwrap().is_empty());
        assert!(!dir.join(format!("{}.msg", e.id)).exists());
    }

    #[test]
    fn flush_request_is_seen_once() {
        let d = tempfile::tempdir().unwrap();
        let q = Queue::open(d.path()).unwrap();
        assert!(!q.take_flush_request());
        request_flush(d.path()).unwrap();
        assert!(q.take_flush_request());
        assert!(!q.take_flush_request());
    }
}
