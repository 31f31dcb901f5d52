//! systemd: sockets passed with `LISTEN_FDS` (socket activation, and the
//! sockets a `.socket` unit keeps across restarts) and readiness with
//! `sd_notify`. Outside systemd both do nothing.

use std::os::fd::OwnedFd;

use super::{Kind, Offer};

/// Keep the sockets systemd passed, keyed by their local address, for the
/// binds to take. Returns how many.
pub fn inherit_listen_fds() -> usize {
    let mut l = listenfd::ListenFd::from_env();
    let mut got = Vec::new();
    for i in 0..l.len() {
        if let Ok(Some(t)) = l.take_tcp_listener(i) {
            if let Ok(a) = t.local_addr() {
                got.push((offer(a.to_string()), OwnedFd::from(t)));
            }
        } else if let Ok(Some(u)) = l.take_unix_listener(i) {
            let path = u
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()));
            if let Some(p) = path {
                got.push((offer(format!("unix:{p}")), OwnedFd::from(u)));
            }
        } else {
            tracing::warn!(
                fd = 3 + i,
                "LISTEN_FDS: not a listening TCP or Unix socket; ignored"
            );
        }
    }
    let n = got.len();
    if n > 0 {
        tracing::info!(sockets = n, "sockets passed by systemd");
        super::inherit(got);
    }
    n
}

fn offer(addr: String) -> Offer {
    Offer {
        kind: Kind::Systemd,
        key: format!("systemd:{addr}"),
        addr,
    }
}

/// Tell systemd (if it is listening) that the service is ready.
pub fn ready() {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
}

/// Tell systemd that the service reloads.
pub fn reloading() {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
}

/// Tell systemd that the service stops.
pub fn stopping() {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
}
