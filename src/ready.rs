//! The readiness file (`--ready-file PATH`): one JSON document, written once
//! every listener of the process is bound and listening (a client that
//! connects from then on is served; the accept loops start right after),
//! that lists each listener with its actual address (the port the kernel
//! chose when the config says port 0, the socket path of a Unix listener).
//!
//! Supervisors and tests wait for the file to appear instead of reading the
//! log. It is written atomically (a temporary file in the same directory,
//! then `rename`), so a reader sees either no file or the whole document.
//!
//! ```json
//! {"pid":4242,"listeners":[
//!   {"kind":"frontdoor","name":"0","addr":"127.0.0.1:40123"},
//!   {"kind":"metrics","name":"metrics","addr":"127.0.0.1:40124"},
//!   {"kind":"mail","name":"imap","addr":"unix:/var/lib/frontdoor/imap.sock"}]}
//! ```

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::mail::MailServers;

/// What kind of listener an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A front door listener of `listeners:`; its name is its index there.
    Frontdoor,
    /// The Prometheus listener of `metrics.listen`.
    Metrics,
    /// A bundled mail server: `submission`, `lmtp`, `inbound` or `imap`.
    Mail,
}

/// One bound listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub kind: Kind,
    pub name: String,
    /// `ip:port`, or `unix:/path` for a Unix socket.
    pub addr: String,
}

/// The whole readiness document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// The process that wrote it.
    pub pid: u32,
    pub listeners: Vec<Entry>,
}

/// The readiness file could not be written (the operator's path is wrong).
#[derive(Debug, thiserror::Error)]
#[error("cannot write the ready file {}: {source}", .path.display())]
pub struct ReadyError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl Ready {
    pub fn new() -> Self {
        Self {
            pid: std::process::id(),
            listeners: Vec::new(),
        }
    }

    /// The front door's listeners, in `listeners:` order, and its metrics listener.
    pub fn frontdoor(&mut self, addrs: &[SocketAddr], metrics: Option<SocketAddr>) {
        for (i, a) in addrs.iter().enumerate() {
            self.push(Kind::Frontdoor, &i.to_string(), a.to_string());
        }
        if let Some(a) = metrics {
            self.push(Kind::Metrics, "metrics", a.to_string());
        }
    }

    /// The bundled mail servers that are listening.
    pub fn mail(&mut self, servers: &MailServers) {
        for (name, addr) in [
            ("submission", &servers.submission),
            ("lmtp", &servers.lmtp),
            ("inbound", &servers.inbound),
            ("imap", &servers.imap),
        ] {
            if let Some(a) = addr {
                self.push(Kind::Mail, name, a.to_string());
            }
        }
    }

    fn push(&mut self, kind: Kind, name: &str, addr: String) {
        self.listeners.push(Entry {
            kind,
            name: name.to_owned(),
            addr,
        });
    }

    /// Write the document to `path` atomically: `PATH.tmp` in the same
    /// directory first, then renamed over `path`.
    pub fn write(&self, path: &Path) -> Result<(), ReadyError> {
        let err = |source| ReadyError {
            path: path.to_owned(),
            source,
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let json = serde_json::to_vec(self).map_err(|e| err(e.into()))?;
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&json).map_err(err)?;
        f.write_all(b"\n").map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ready.json");
        let mut r = Ready::new();
        r.frontdoor(
            &["127.0.0.1:4431".parse().unwrap()],
            Some("127.0.0.1:9443".parse().unwrap()),
        );
        r.write(&p).unwrap();
        let back: Ready = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(!dir.path().join("ready.json.tmp").exists());
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(r#"{"kind":"frontdoor","name":"0","addr":"127.0.0.1:4431"}"#));
        assert!(text.contains(r#"{"kind":"metrics","name":"metrics","addr":"127.0.0.1:9443"}"#));
    }

    #[test]
    fn unwritable_path_is_an_error_naming_it() {
        let e = Ready::new()
            .write(Path::new("/nonexistent-dir/ready.json"))
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent-dir/ready.json"), "{e}");
    }
}
