//! The registry in force for a running server.
//!
//! `RegistryHandle` holds the current `Arc<Registry>` in a
//! `tokio::sync::watch` channel: handshakes read `current()`, connection
//! tasks may `subscribe()` to learn of removals. A reload replaces the
//! registry only when the new file is fully valid; otherwise the last good
//! registry stays in force and every problem is logged with its `file:line`.
//!
//! The watcher polls the path every 500 ms: `stat` (following symlinks)
//! gives (device, inode, size, mtime, ctime, mode), which changes when an
//! editor or `frontdoor keys` renames a new file into place, when the file
//! is written in place, when a symlink is pointed elsewhere, or when its
//! permissions change. Only when that signature changes (or every 10 s, to
//! catch an in-place write within one timestamp tick) is the file read,
//! and it is parsed only when its SHA-256 differs from the last content
//! tried. Polling a path needs no platform watcher and sees through every
//! kind of replacement; a file that vanishes or becomes unreadable leaves
//! the last good registry in force.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::{read_registry_file, Registry};
use crate::diagnostics::Problems;

/// How often the watcher looks at the file.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Every this many polls the file is read even if its metadata is unchanged.
const FORCE_READ_EVERY: u32 = 20;

/// A live, reloadable registry. Cheap to clone; clones share the registry.
#[derive(Clone)]
pub struct RegistryHandle {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    tx: watch::Sender<Arc<Registry>>,
    /// SHA-256 of the content last parsed (good or bad), to skip re-parsing
    /// and re-logging the same content.
    last_tried: Mutex<Option<[u8; 32]>>,
    /// The file's signature when it was first read: the watcher starts from
    /// it, so a change between `open` and `spawn_watcher` is not missed.
    first_seen: Seen,
    /// Reloads put in force, and refused (the last good registry kept).
    reloads_ok: std::sync::atomic::AtomicU64,
    reloads_failed: std::sync::atomic::AtomicU64,
}

impl RegistryHandle {
    /// Load `path`; it must be valid (a server must not start with a
    /// broken registry).
    pub fn open(path: &Path) -> Result<Self, Problems> {
        let first_seen = look(path);
        let bytes = read_registry_file(path).map_err(|f| Problems(vec![f.problem]))?;
        let reg = Registry::parse_bytes(path, &bytes)?;
        tracing::info!(registry = %path.display(), keys = reg.len(), "registry loaded, {} keys", reg.len());
        let (tx, _) = watch::channel(Arc::new(reg));
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                tx,
                last_tried: Mutex::new(Some(Sha256::digest(&bytes).into())),
                first_seen,
                reloads_ok: Default::default(),
                reloads_failed: Default::default(),
            }),
        })
    }

    /// A handle on a fixed registry that no file backs (tests, examples).
    pub fn fixed(path: &Path, registry: Registry) -> Self {
        let (tx, _) = watch::channel(Arc::new(registry));
        Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                tx,
                last_tried: Mutex::new(None),
                first_seen: Seen::Error(std::io::ErrorKind::NotFound),
                reloads_ok: Default::default(),
                reloads_failed: Default::default(),
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The registry in force now.
    pub fn current(&self) -> Arc<Registry> {
        self.inner.tx.borrow().clone()
    }

    /// A receiver that sees every registry put in force from now on.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Registry>> {
        self.inner.tx.subscribe()
    }

    /// Re-read the file now (SIGHUP). On error the last good registry stays
    /// in force, each problem is logged, and the problems are returned.
    pub fn reload(&self) -> Result<(), Problems> {
        match read_registry_file(&self.inner.path) {
            Ok(bytes) => self.inner.apply(&bytes, true),
            Err(f) => {
                let p = Problems(vec![f.problem]);
                self.inner.log_kept(&p);
                Err(p)
            }
        }
    }

    /// (reloads put in force, reloads refused) since start.
    pub fn reload_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.inner.reloads_ok.load(Relaxed),
            self.inner.reloads_failed.load(Relaxed),
        )
    }

    /// Watch the file and reload within about a second of a change. The
    /// task ends when the last handle is dropped. Call it inside a tokio
    /// runtime (it spawns a task).
    pub fn spawn_watcher(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        let path = self.inner.path.clone();
        let seen = self.inner.first_seen.clone();
        tokio::spawn(watch_loop(weak, path, seen))
    }
}

impl Inner {
    /// Parse `bytes` and put them in force if valid. With `force` false,
    /// content identical to the last content tried is skipped.
    fn apply(&self, bytes: &[u8], force: bool) -> Result<(), Problems> {
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        {
            let mut last = self.last_tried.lock().unwrap_or_else(|e| e.into_inner());
            if !force && *last == Some(hash) {
                return Ok(());
            }
            *last = Some(hash);
        }
        match Registry::parse_bytes(&self.path, bytes) {
            Ok(reg) => {
                tracing::info!(registry = %self.path.display(), keys = reg.len(), "registry reloaded, {} keys", reg.len());
                self.tx.send_replace(Arc::new(reg));
                self.reloads_ok
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Err(p) => {
                self.log_kept(&p);
                Err(p)
            }
        }
    }

    fn log_kept(&self, problems: &Problems) {
        self.reloads_failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let kept = self.tx.borrow().len();
        for p in &problems.0 {
            tracing::warn!(
                registry = %self.path.display(),
                kept,
                problem = %p,
                "registry not reloaded, keeping the last good one ({kept} keys): {p}"
            );
        }
    }
}

/// What `stat` says about the file, enough to notice any replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    File {
        dev: u64,
        ino: u64,
        size: u64,
        mtime: (i64, i64),
        ctime: (i64, i64),
        mode: u32,
    },
    Error(std::io::ErrorKind),
}

fn look(path: &Path) -> Seen {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => Seen::File {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            mode: m.mode(),
        },
        Err(e) => Seen::Error(e.kind()),
    }
}

async fn watch_loop(weak: Weak<Inner>, path: PathBuf, mut seen: Seen) {
    let mut ticks: u32 = 0;
    let mut interval = tokio::time::interval(POLL_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        ticks = ticks.wrapping_add(1);
        let now = look(&path);
        let changed = now != seen;
        if !changed && !ticks.is_multiple_of(FORCE_READ_EVERY) {
            continue;
        }
        seen = now;
        // File I/O off the async threads: the file is at most 1 MiB, but a
        // slow disk must not stall handshakes.
        let p = path.clone();
        let read = match tokio::task::spawn_blocking(move || read_registry_file(&p)).await {
            Ok(r) => r,
            Err(_) => continue,
        };
        match read {
            Ok(bytes) => {
                let _ = inner.apply(&bytes, false);
            }
            // Report an unreadable or vanished file once per change of state.
            Err(f) if changed => inner.log_kept(&Problems(vec![f.problem])),
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Fingerprint;

    fn entry(name: &str, byte: u8) -> String {
        format!(
            "  - name: {name}\n    fingerprint: \"{}\"\n    account: a\n    login: a@example.org\n",
            Fingerprint([byte; 32])
        )
    }

    /// A log sink for a test subscriber.
    #[derive(Clone, Default)]
    struct LogBuf(Arc<Mutex<Vec<u8>>>);

    impl LogBuf {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    impl std::io::Write for LogBuf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
        type Writer = LogBuf;
        fn make_writer(&'a self) -> LogBuf {
            self.clone()
        }
    }

    /// Wait (bounded) until the handle's registry has `n` keys.
    async fn wait_len(h: &RegistryHandle, n: usize) -> bool {
        for _ in 0..60 {
            if h.current().len() == n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    fn replace(path: &Path, text: &str) {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[tokio::test]
    async fn reload_keeps_last_good_registry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.yaml");
        std::fs::write(&path, format!("keys:\n{}", entry("one", 1))).unwrap();
        let h = RegistryHandle::open(&path).unwrap();
        let mut rx = h.subscribe();
        assert_eq!(h.current().len(), 1);

        std::fs::write(
            &path,
            format!("keys:\n{}{}", entry("one", 1), entry("two", 2)),
        )
        .unwrap();
        h.reload().unwrap();
        assert_eq!(h.current().len(), 2);
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().len(), 2);

        // A broken edit: duplicate fingerprint on line 11.
        std::fs::write(
            &path,
            format!(
                "keys:\n{}{}{}",
                entry("one", 1),
                entry("two", 2),
                entry("three", 2)
            ),
        )
        .unwrap();
        let log = LogBuf::default();
        let sub = tracing_subscriber::fmt()
            .with_writer(log.clone())
            .with_ansi(false)
            .finish();
        let e = {
            let _g = tracing::subscriber::set_default(sub);
            h.reload().unwrap_err()
        };
        // The log names the file and line of each problem.
        let logged = log.text();
        assert!(
            logged.contains(&format!(
                "registry not reloaded, keeping the last good one (2 keys): {}:11: keys[2].fingerprint: the same key",
                path.display()
            )),
            "{logged}"
        );
        assert!(logged.contains("WARN"), "{logged}");
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(e.0[0].line, Some(11), "{e}");
        assert_eq!(h.current().len(), 2);
        assert!(h.current().by_name("two").is_some());
        assert!(!rx.has_changed().unwrap());

        // Gone or unreadable: still the last good one.
        std::fs::remove_file(&path).unwrap();
        assert!(h.reload().is_err());
        assert_eq!(h.current().len(), 2);
    }

    #[tokio::test]
    async fn edits_by_the_cli_are_picked_up() {
        use crate::registry::{add_entry, remove_entry, KeyEntry};
        let dir = tempfile::tempdir().unwrap();
        // A registry in a symlinked location: edits go to the target, the
        // server watches the link.
        let real = dir.path().join("real.yaml");
        std::fs::write(&real, "# hand-written\nkeys: []\n").unwrap();
        let path = dir.path().join("keys.yaml");
        std::os::unix::fs::symlink(&real, &path).unwrap();
        let h = RegistryHandle::open(&path).unwrap();
        let _task = h.spawn_watcher();
        let e = |name: &str, b: u8| KeyEntry {
            name: name.into(),
            fingerprint: Fingerprint([b; 32]),
            account: "a".into(),
            login: "a@example.org".into(),
            imap_preauth: true,
            added_by: None,
            added_at: None,
        };
        add_entry(&path, &e("one", 1)).unwrap();
        assert!(wait_len(&h, 1).await);
        add_entry(&path, &e("two", 2)).unwrap();
        assert!(wait_len(&h, 2).await);
        assert_eq!(
            h.current().lookup(&Fingerprint([2; 32])).unwrap().name,
            "two"
        );
        remove_entry(&path, "one").unwrap();
        assert!(wait_len(&h, 1).await);
        assert!(h.current().lookup(&Fingerprint([1; 32])).is_none());
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[tokio::test]
    async fn open_refuses_a_broken_registry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.yaml");
        std::fs::write(&path, "keys:\n  - name: x\n").unwrap();
        let e = RegistryHandle::open(&path).err().unwrap();
        assert_eq!(e.to_string(), format!("{}:2: keys[0]: missing field `fingerprint`\n{}:2: keys[0]: missing field `account`\n{}:2: keys[0]: missing field `login`", path.display(), path.display(), path.display()));
    }

    #[tokio::test]
    async fn watcher_follows_renames_symlinks_and_keeps_last_good() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.yaml");
        std::fs::write(&path, format!("keys:\n{}", entry("one", 1))).unwrap();
        let h = RegistryHandle::open(&path).unwrap();
        let task = h.spawn_watcher();

        // Replaced by rename, as editors and `keys add` do.
        replace(
            &path,
            &format!("keys:\n{}{}", entry("one", 1), entry("two", 2)),
        );
        assert!(wait_len(&h, 2).await, "rename not picked up");

        // Broken: the last good registry stays.
        replace(&path, "keys:\n  - name: [\n");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(h.current().len(), 2);

        // Truncated in place: an empty file is a valid empty registry.
        std::fs::write(&path, "").unwrap();
        assert!(wait_len(&h, 0).await, "truncation not picked up");

        // Replaced by a symlink to another file.
        let other = dir.path().join("other.yaml");
        std::fs::write(
            &other,
            format!("keys:\n{}{}{}", entry("a", 7), entry("b", 8), entry("c", 9)),
        )
        .unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&other, &path).unwrap();
        assert!(wait_len(&h, 3).await, "symlink not picked up");

        // Made world-writable: refused, last good kept.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o666)).unwrap();
        std::fs::write(&other, format!("keys:\n{}", entry("a", 7))).unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(h.current().len(), 3);
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(wait_len(&h, 1).await, "permission fix not picked up");

        // The watcher ends with the last handle.
        drop(h);
        tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .unwrap()
            .unwrap();
    }
}
