//! The test kit every integration test uses: the real `frontdoor` binary
//! launched with a ready file and a deadline ([`launch`]), its JSON log
//! read as events ([`logs`]), polling with a deadline instead of sleeping
//! ([`poll`]), certificates and client keys made at test time ([`certs`]),
//! capture backends ([`capture`]), TLS clients ([`tls`]) and a DNS
//! server with the records a test gives ([`dns`]).
//!
//! The names below (`Frontdoor`, `CaptureBackend`, `connect`, `write_cert`,
//! `field`, …) are the kit's stable surface; the files hold the details.
#![allow(dead_code, unused_imports)]

pub mod capture;
pub mod certs;
pub mod dns;
pub mod launch;
pub mod logs;
pub mod poll;
pub mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use capture::{CaptureBackend, Captured, Expect};
pub use certs::{make_key, write_cert, ClientCert, Key};
pub use launch::{Launch, MailAddr, Process, BIN};
pub use logs::{at, closed_with, is_close, no_panic, num_field, str_field, Log};
pub use poll::{poll_until, poll_until_async, poll_until_with};
pub use tls::{client_config, connect, connect_with, read_line, AnyServerCert, Tls};

/// The deadline of one step of a test (a handshake, a reply, a log event).
pub const T: Duration = Duration::from_secs(10);

/// The real binary running `serve` on a config file; killed on drop.
pub struct Frontdoor {
    pub process: Process,
    /// Its front door listeners, in `listeners:` order (from the ready file).
    pub addrs: Vec<SocketAddr>,
    /// Its stderr, one JSON event a line.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl std::ops::Deref for Frontdoor {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.process
    }
}

impl std::ops::DerefMut for Frontdoor {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}

impl Frontdoor {
    pub fn bin() -> &'static str {
        BIN
    }

    /// `serve --config CONFIG`, ready with at least `listeners` front door listeners.
    pub fn start(config: &Path, listeners: usize) -> Self {
        Self::launch(Launch::new(["serve", "--config"]).arg(config), listeners)
    }

    /// [`Frontdoor::start`] with the binary run by `cmd` (e.g. `setpriv …
    /// BIN` to run it under another uid); `serve --config CONFIG` is added.
    pub fn start_command(mut cmd: Command, config: &Path, listeners: usize) -> Self {
        cmd.args(["serve", "--config"]).arg(config);
        Self::launch(Launch::command(cmd), listeners)
    }

    /// Start `launch` and wait for its ready file.
    pub fn launch(launch: Launch, listeners: usize) -> Self {
        let process = launch.start();
        let addrs = process.frontdoor_addrs();
        assert!(
            addrs.len() >= listeners,
            "ready with {} front door listeners, {listeners} expected: {:?}",
            addrs.len(),
            process.ready
        );
        let log = process.log.lines.clone();
        Self {
            process,
            addrs,
            log,
        }
    }

    /// The raw log (JSON lines), for failure messages.
    pub fn logs(&self) -> String {
        self.process.log.text()
    }

    /// The JSON log, read as events.
    pub fn events(&self) -> &Log {
        &self.process.log
    }

    /// Wait (bounded) for an event `pred` accepts.
    pub async fn wait_event(
        &self,
        within: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        self.process.log.wait_event(within, pred).await
    }

    /// Events so far that `pred` accepts.
    pub fn count(&self, pred: impl Fn(&serde_json::Value) -> bool) -> usize {
        self.process.log.count(pred)
    }

    /// Wait until the log, rendered as text, contains `needle` (bounded).
    /// Kept for older tests: new ones check fields with [`Frontdoor::wait_event`].
    pub async fn wait_log(&self, needle: &str, within: Duration) -> bool {
        poll_until_async(within, || self.process.log.rendered().contains(needle)).await
    }
}

/// `key=value` from a text log line.
pub fn field(line: &str, key: &str) -> Option<String> {
    let pat = format!("{key}=");
    let i = line.find(&pat)? + pat.len();
    let rest = &line[i..];
    let v = if let Some(r) = rest.strip_prefix('"') {
        r.split('"').next()?
    } else {
        rest.split_whitespace().next()?
    };
    Some(v.to_string())
}
