//! The control socket of a running instance: where a successor started
//! with `serve --takeover` asks for the listening sockets (the exchange is
//! in the [`super`] module comment).
//!
//! The socket file is created with mode 0600 and a connection is served
//! only when its peer runs as this process's uid or as root: whoever gets
//! the sockets gets the ports. One takeover at a time; bounded in time at
//! every step.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use super::fds;

/// How long a successor may take from asking to `READY` (loading
/// certificates, binding what it did not inherit).
pub const READY_WITHIN: Duration = Duration::from_secs(120);
/// How long the first line may take.
const ASK_WITHIN: Duration = Duration::from_secs(5);

/// Why the control socket is not served. Never fatal: the instance serves
/// on, it only cannot hand over.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Another instance answers on that path.
    #[error("{}: another instance is running with this control socket", .0.display())]
    InUse(PathBuf),
    /// The socket could not be made.
    #[error("{}: {source}", .path.display())]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Bind the control socket at `path`. A socket file nobody answers on is
/// stale and replaced; one an instance answers on is refused, unless
/// `replace` (this process has taken over from that instance).
pub async fn bind(path: &Path, replace: bool) -> Result<UnixListener, ControlError> {
    let err = |source| ControlError::Bind {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir).map_err(err)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
        }
    }
    if std::fs::symlink_metadata(path).is_ok() {
        let alive = tokio::time::timeout(Duration::from_secs(1), UnixStream::connect(path))
            .await
            .is_ok_and(|r| r.is_ok());
        if alive && !replace {
            return Err(ControlError::InUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    // Made under a tight umask would be racy across threads; made, then
    // narrowed before anyone is served.
    let l = UnixListener::bind(path).map_err(err)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(l)
}

/// Serve the control socket until `shutdown`. A successful takeover fires
/// `handed_over`: the caller stops accepting and drains.
pub async fn serve(
    listener: UnixListener,
    shutdown: CancellationToken,
    handed_over: CancellationToken,
) {
    let busy = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
    loop {
        let conn = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = listener.accept() => c,
        };
        let stream = match conn {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "control socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !peer_allowed(&stream) {
            continue;
        }
        let Ok(permit) = busy.clone().try_acquire_owned() else {
            tracing::warn!("control socket: a takeover is already under way; refused another");
            continue;
        };
        let handed_over = handed_over.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match one(&stream).await {
                Ok(Some(())) => handed_over.cancel(),
                // Closed before asking: another instance checking whether
                // this socket is alive (see `bind`).
                Ok(None) => tracing::debug!("control socket: closed without a request"),
                Err(why) => tracing::warn!(reason = %why, "takeover aborted: still serving"),
            }
        });
    }
}

fn peer_allowed(s: &UnixStream) -> bool {
    let me = crate::mail::peer::own_uid();
    match s.peer_cred() {
        Ok(c) if c.uid() == 0 || Some(c.uid()) == me => true,
        Ok(c) => {
            tracing::warn!(uid = c.uid(), "control socket: peer of another uid refused");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "control socket: peer credentials unreadable; refused");
            false
        }
    }
}

/// One takeover: the ask, the sockets, the successor's `READY`.
async fn one(s: &UnixStream) -> Result<Option<()>, String> {
    let asked = tokio::time::timeout(ASK_WITHIN, fds::recv_line(s))
        .await
        .map_err(|_| "no request within 5 s".to_owned())?;
    let ask = match asked {
        Ok((ask, _)) => ask,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(format!("reading the request: {e}")),
    };
    if ask != b"TAKEOVER 1" {
        return Err(format!(
            "unknown request {}",
            crate::log_safe::Escaped(&String::from_utf8_lossy(&ask))
        ));
    }
    let pid = s.peer_cred().ok().and_then(|c| c.pid());
    // Sent outside the lock: duplicates of the offered sockets, each
    // described in the same order.
    let (doc, dup) = super::with_offered(|offered| {
        let mut doc = super::Offers {
            pid: std::process::id(),
            sockets: Vec::new(),
        };
        let mut dup = Vec::new();
        for (o, fd) in offered {
            if let Ok(fd) = fd.try_clone() {
                doc.sockets.push(o.clone());
                dup.push(fd);
            }
        }
        (doc, dup)
    });
    let mut line = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
    line.push(b'\n');
    tracing::info!(
        successor = pid,
        sockets = dup.len(),
        "takeover asked: handing the listening sockets over"
    );
    use std::os::fd::AsFd;
    let borrowed: Vec<_> = dup.iter().map(|fd| fd.as_fd()).collect();
    fds::send(s, &line, &borrowed)
        .await
        .map_err(|e| format!("sending the sockets: {e}"))?;
    drop(dup);
    let (ready, _) = tokio::time::timeout(READY_WITHIN, fds::recv_line(s))
        .await
        .map_err(|_| format!("the successor was not ready within {READY_WITHIN:?}"))?
        .map_err(|e| format!("the successor went away before it was ready ({e})"))?;
    if ready != b"READY" {
        return Err("the successor did not say READY".to_owned());
    }
    tracing::info!(
        successor = pid,
        "successor ready: no longer accepting; draining"
    );
    let _ = fds::send(s, b"DRAINING\n", &[]).await;
    Ok(Some(()))
}
