//! The successor's side of a takeover (`serve --takeover`): ask the
//! running instance for its listening sockets, keep them for the binds to
//! take, and say `READY` once this process serves.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixStream;

use super::{fds, Offers};

/// Why the sockets could not be taken over. The new process then exits
/// without binding anything, and the running instance serves on.
#[derive(Debug, thiserror::Error)]
pub enum TakeoverError {
    /// No instance answers on the control socket.
    #[error("--takeover: no running instance answers on {}: {source}", .path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The exchange failed.
    #[error("--takeover: {0}")]
    Exchange(String),
}

/// A predecessor that handed its sockets over and waits for `READY`.
#[derive(Debug)]
pub struct Predecessor {
    stream: UnixStream,
    /// Its process id.
    pub pid: u32,
}

/// Ask the instance on `path` for its sockets; they are kept for the
/// binds ([`super::take_tcp`], [`super::take_unix`]).
pub async fn take_over(path: &Path) -> Result<Predecessor, TakeoverError> {
    let stream = tokio::time::timeout(Duration::from_secs(5), UnixStream::connect(path))
        .await
        .map_err(|_| TakeoverError::Exchange(format!("{}: no answer within 5 s", path.display())))?
        .map_err(|source| TakeoverError::Connect {
            path: path.to_owned(),
            source,
        })?;
    let x = |e: std::io::Error| TakeoverError::Exchange(e.to_string());
    fds::send(&stream, b"TAKEOVER 1\n", &[]).await.map_err(x)?;
    let (line, got) = tokio::time::timeout(Duration::from_secs(10), fds::recv_line(&stream))
        .await
        .map_err(|_| TakeoverError::Exchange("no sockets within 10 s".into()))?
        .map_err(x)?;
    let offers: Offers = serde_json::from_slice(&line)
        .map_err(|e| TakeoverError::Exchange(format!("bad description: {e}")))?;
    if offers.sockets.len() != got.len() {
        return Err(TakeoverError::Exchange(format!(
            "{} sockets described, {} received",
            offers.sockets.len(),
            got.len()
        )));
    }
    tracing::info!(
        predecessor = offers.pid,
        sockets = got.len(),
        "took the listening sockets over"
    );
    super::inherit(offers.sockets.into_iter().zip(got).collect());
    Ok(Predecessor {
        stream,
        pid: offers.pid,
    })
}

impl Predecessor {
    /// This process serves: the predecessor stops accepting and drains.
    pub async fn ready(self) -> Result<(), TakeoverError> {
        let x = |e: std::io::Error| TakeoverError::Exchange(e.to_string());
        fds::send(&self.stream, b"READY\n", &[]).await.map_err(x)?;
        let (ack, _) = tokio::time::timeout(Duration::from_secs(10), fds::recv_line(&self.stream))
            .await
            .map_err(|_| TakeoverError::Exchange("no DRAINING within 10 s".into()))?
            .map_err(x)?;
        if ack != b"DRAINING" {
            return Err(TakeoverError::Exchange(
                "the predecessor did not confirm".into(),
            ));
        }
        tracing::info!(predecessor = self.pid, "the predecessor drains");
        Ok(())
    }
}
