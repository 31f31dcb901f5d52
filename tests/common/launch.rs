//! Launching the real `frontdoor` binary: every long-running command is
//! started with `--log-format json --ready-file PATH`, and the launcher
//! waits (bounded) for the ready file, which lists each listener with its
//! real address. No test learns a port from the log.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use frontdoor::ready::{Kind, Ready};

use super::logs::Log;
use super::poll::poll_until;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_frontdoor");

/// How long a process may take to become ready (a loaded 2-core machine
/// builds TLS configs and opens stores slowly).
pub const READY_WITHIN: Duration = Duration::from_secs(30);

/// A command about to be launched.
pub struct Launch {
    cmd: Command,
    within: Duration,
    log_format: &'static str,
}

impl Launch {
    /// `frontdoor ARGS…`.
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        Self::command(cmd)
    }

    /// A command of the caller's that runs the binary (e.g. `setpriv … BIN
    /// serve --config C`); the logging and readiness flags are added.
    pub fn command(mut cmd: Command) -> Self {
        if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
            // Info is what tests read; a caller asks for more with `env`.
            cmd.env("RUST_LOG", "info");
        }
        Self {
            cmd,
            within: READY_WITHIN,
            log_format: "json",
        }
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(a);
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<OsStr>) -> Self {
        self.cmd.env(k, v);
        self
    }

    pub fn current_dir(mut self, d: &Path) -> Self {
        self.cmd.current_dir(d);
        self
    }

    /// Log as text instead of JSON: only for tests of the text format itself.
    pub fn text_log(mut self) -> Self {
        self.log_format = "text";
        self
    }

    /// Wait at most `d` for the ready file.
    pub fn within(mut self, d: Duration) -> Self {
        self.within = d;
        self
    }

    /// Spawn, and wait until the ready file appears; panics with the log
    /// when the process exits first or the deadline passes.
    pub fn start(mut self) -> Process {
        let dir = tempfile::tempdir().unwrap();
        // Writable by a binary the caller runs under another uid (`setpriv`),
        // sticky like /tmp.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let ready_path = dir.path().join("ready.json");
        let mut child = self
            .cmd
            .arg("--log-format")
            .arg(self.log_format)
            .arg("--ready-file")
            .arg(&ready_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Log::collect(child.stderr.take().unwrap());
        let mut exited = None;
        let ready = poll_until(self.within, || {
            if let Ok(Some(st)) = child.try_wait() {
                exited = Some(st);
                return true;
            }
            ready_path.exists()
        });
        if let Some(st) = exited {
            // Let the reader thread take the last lines.
            poll_until(Duration::from_secs(2), || !log.text().is_empty());
            panic!(
                "frontdoor exited before it was ready ({st}); log:\n{}",
                log.text()
            );
        }
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "frontdoor was not ready within {:?}; log:\n{}",
                self.within,
                log.text()
            );
        }
        let ready: Ready = serde_json::from_slice(&std::fs::read(&ready_path).unwrap())
            .unwrap_or_else(|e| panic!("ready file: {e}"));
        assert_eq!(ready.pid, child.id(), "the ready file is this process's");
        Process {
            child,
            ready,
            log,
            ready_path,
            _ready_dir: dir,
        }
    }
}

/// A running process; killed on drop.
pub struct Process {
    pub child: Child,
    pub ready: Ready,
    pub log: Log,
    ready_path: PathBuf,
    _ready_dir: tempfile::TempDir,
}

impl Process {
    /// Where the process wrote its ready file.
    pub fn ready_file(&self) -> &Path {
        &self.ready_path
    }

    /// The front door's listeners, in `listeners:` order.
    pub fn frontdoor_addrs(&self) -> Vec<SocketAddr> {
        addrs_of(&self.ready, Kind::Frontdoor)
    }

    /// The metrics listener, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        addrs_of(&self.ready, Kind::Metrics).first().copied()
    }

    /// A bundled mail server's address as the ready file gives it
    /// (`ip:port` or `unix:/path`).
    pub fn mail(&self, name: &str) -> Option<MailAddr> {
        self.ready
            .listeners
            .iter()
            .find(|e| e.kind == Kind::Mail && e.name == name)
            .map(|e| MailAddr::parse(&e.addr))
    }

    /// Send signal `sig` (e.g. `HUP`, `TERM`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Stop the process (SIGKILL) and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A mail listener's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl MailAddr {
    fn parse(s: &str) -> Self {
        match s.strip_prefix("unix:") {
            Some(p) => MailAddr::Unix(PathBuf::from(p)),
            None => MailAddr::Tcp(s.parse().unwrap()),
        }
    }

    /// The TCP address; panics for a Unix socket.
    pub fn tcp(&self) -> SocketAddr {
        match self {
            MailAddr::Tcp(a) => *a,
            MailAddr::Unix(p) => panic!("{} is a Unix socket", p.display()),
        }
    }
}

fn addrs_of(ready: &Ready, kind: Kind) -> Vec<SocketAddr> {
    ready
        .listeners
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.addr.parse().unwrap())
        .collect()
}
