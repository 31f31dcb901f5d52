//! Handing the listening sockets to a successor, so that a binary upgrade
//! refuses no connection.
//!
//! Every listening socket the process binds (front door, metrics, bundled
//! mail servers) is *offered* here under a key that names it by its
//! configuration (`frontdoor:127.0.0.1:443#0`, `metrics:…`, `mail:…`).
//! A successor started with `serve --takeover` asks the running instance
//! for them over the control socket ([`control`]); what it receives, or
//! what systemd passes with `LISTEN_FDS` ([`systemd`]), is *inherited*,
//! and binding an address first takes an inherited socket with its key
//! (or, from systemd, its local address) instead of binding anew. The
//! kernel's accept queue belongs to the socket, not the process, so a
//! connection that arrives while both processes hold it is accepted by
//! one of them and none is refused.
//!
//! The wire exchange on the control socket (a Unix stream socket, mode
//! 0600, only the same uid or root may use it):
//! - successor: `TAKEOVER 1\n`;
//! - running instance: one JSON line `{"pid":N,"sockets":[{"kind","key","addr"}…]}`
//!   sent in one `sendmsg` whose `SCM_RIGHTS` carry the sockets, in order;
//! - successor, once its listeners run: `READY\n`;
//! - running instance: `DRAINING\n`, then it stops accepting and drains
//!   (`timeouts.shutdown_grace`, connections closed spread over
//!   `timeouts.drain_spread`) and exits, which frees the mail store's lock
//!   for the successor's bundled servers.
//!
//! If the successor goes away before `READY`, the running instance logs it
//! and keeps serving (rollback).

pub mod client;
pub mod control;
pub mod fds;
pub mod systemd;

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// What kind of listener a socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A front-door listener.
    Frontdoor,
    /// The metrics listener.
    Metrics,
    /// A bundled mail server's listener.
    Mail,
    /// From systemd (`LISTEN_FDS`): matched by its local address.
    Systemd,
}

/// One listening socket as it is described on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub kind: Kind,
    /// The name the configuration gives it (see the module comment).
    pub key: String,
    /// Its local address (`ip:port`, or `unix:/path`).
    pub addr: String,
}

/// The description sent with the sockets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Offers {
    pub pid: u32,
    pub sockets: Vec<Offer>,
}

static OFFERED: Mutex<Vec<(Offer, OwnedFd)>> = Mutex::new(Vec::new());
static STORE_LOCK_WAIT: Mutex<Option<std::time::Duration>> = Mutex::new(None);

/// A predecessor holds the mail store until its drain ends: the bundled
/// servers wait up to `d` for its lock instead of failing at once.
pub fn wait_for_store_lock(d: std::time::Duration) {
    *lock(&STORE_LOCK_WAIT) = Some(d);
}

/// How long the bundled servers may wait for the store's lock (a
/// takeover), if at all.
pub fn store_lock_wait() -> Option<std::time::Duration> {
    *lock(&STORE_LOCK_WAIT)
}
static INHERITED: Mutex<Vec<(Offer, OwnedFd)>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Offer `socket` to a successor under `key` (replacing an older offer of
/// that key). A socket that cannot be duplicated is logged and not offered:
/// the successor then binds that address itself.
pub fn offer(kind: Kind, key: &str, addr: String, socket: &impl AsFd) {
    match socket.as_fd().try_clone_to_owned() {
        Ok(fd) => {
            let mut o = lock(&OFFERED);
            o.retain(|(x, _)| x.key != key);
            o.push((
                Offer {
                    kind,
                    key: key.to_owned(),
                    addr,
                },
                fd,
            ));
        }
        Err(e) => {
            tracing::warn!(key, error = %e, "cannot keep a copy of the listening socket for a successor")
        }
    }
}

/// Stop offering `key` (a reload removed that listener).
pub fn withdraw(key: &str) {
    lock(&OFFERED).retain(|(x, _)| x.key != key);
}

/// Stop offering anything: the process stops. The copies kept for a
/// successor close, so a listener whose accept loop ended refuses new
/// connections at once instead of queueing them for nobody (a successor
/// that took the sockets over has its own copies).
pub fn withdraw_all() {
    lock(&OFFERED).clear();
}

/// Take the inherited socket named `key`, or the one systemd passed for
/// local address `addr`.
fn take(key: &str, addr: Option<&str>) -> Option<OwnedFd> {
    let mut i = lock(&INHERITED);
    let pos = i.iter().position(|(o, _)| o.key == key).or_else(|| {
        let a = addr?;
        i.iter()
            .position(|(o, _)| o.kind == Kind::Systemd && o.addr == a)
    })?;
    let (o, fd) = i.remove(pos);
    tracing::info!(key, addr = %o.addr, "listening socket inherited");
    Some(fd)
}

/// An inherited TCP listener for `key` / local address `addr`, non-blocking.
pub fn take_tcp(key: &str, addr: SocketAddr) -> Option<std::net::TcpListener> {
    let fd = take(key, Some(&addr.to_string()))?;
    let l = std::net::TcpListener::from(fd);
    l.set_nonblocking(true).ok()?;
    Some(l)
}

/// An inherited Unix listener for `key` / socket path `path`, non-blocking.
pub fn take_unix(key: &str, path: &std::path::Path) -> Option<std::os::unix::net::UnixListener> {
    let fd = take(key, Some(&format!("unix:{}", path.display())))?;
    let l = std::os::unix::net::UnixListener::from(fd);
    l.set_nonblocking(true).ok()?;
    Some(l)
}

/// Keep sockets received from a predecessor or systemd for the binds to take.
pub fn inherit(sockets: Vec<(Offer, OwnedFd)>) {
    lock(&INHERITED).extend(sockets);
}

/// Whether inherited sockets are waiting (a takeover is under way).
pub fn inherited_left() -> Vec<String> {
    lock(&INHERITED)
        .iter()
        .map(|(o, _)| o.key.clone())
        .collect()
}

/// Drop inherited sockets no bind took (the new configuration has no such
/// listener): they close in this process, the predecessor closes its own.
pub fn drop_unclaimed() {
    for (o, _) in lock(&INHERITED).drain(..) {
        tracing::info!(key = %o.key, addr = %o.addr, "inherited socket not in this configuration: closed");
    }
}

/// The offered sockets: descriptions and borrowed descriptors, under the lock.
fn with_offered<R>(f: impl FnOnce(&[(Offer, OwnedFd)]) -> R) -> R {
    f(&lock(&OFFERED))
}

/// Key of a front-door listener: its configured address and its position
/// among the listeners configured with that address.
pub fn frontdoor_key(bind: SocketAddr, nth: usize) -> String {
    format!("frontdoor:{bind}#{nth}")
}
