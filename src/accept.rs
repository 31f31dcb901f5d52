//! The one accept loop: every listener of the process (the front door's, the
//! metrics endpoint's, the bundled mail servers') accepts through [`run`],
//! with one back-off on accept errors and one rate-limited log of them.
//!
//! Invariants:
//! - an accept error that says the process or the system is out of a
//!   resource (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) leaves the listener
//!   readable, so retrying at once would spin a core: the loop sleeps,
//!   10 ms at first and doubling up to 1 s ([`Backoff`]), and the first
//!   accepted connection resets the wait;
//! - any other accept error concerns one connection (`ECONNABORTED`, a
//!   firewall's `EPERM`) and the loop accepts again at once;
//! - every error is logged as `accept failed`, at most once a second per
//!   listener, with the count of those swallowed since ([`RateLimitedLog`]);
//! - the loop ends when its stop token fires, also during a back-off; what
//!   happens to an accepted connection (limits, spawning) is the caller's.

#![warn(missing_docs)]

use std::fmt::Display;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

/// A bound socket that hands out connections.
pub trait Listen: Send + Sync {
    /// An accepted connection.
    type Conn: Send;
    /// Where it comes from.
    type Addr: Send;
    /// Wait for the next connection.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Conn, Self::Addr)>> + Send;
}

impl Listen for tokio::net::TcpListener {
    type Conn = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    fn accept(&self) -> impl Future<Output = io::Result<(Self::Conn, Self::Addr)>> + Send {
        tokio::net::TcpListener::accept(self)
    }
}

/// Logs at most once per interval, counting what it swallowed.
#[derive(Debug)]
pub struct RateLimitedLog {
    last: AtomicU64,
    suppressed: AtomicU64,
    interval_ms: u64,
}

impl RateLimitedLog {
    /// At most one line per `interval_ms` milliseconds.
    pub const fn new(interval_ms: u64) -> Self {
        Self {
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            interval_ms,
        }
    }

    /// `Some(n)` when the caller should log now (n = events swallowed since).
    pub fn allow(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let last = self.last.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= self.interval_ms
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// The wait after accept errors that mean "out of a resource". Pure: it
/// says how long to wait, the loop does the waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    /// The first wait.
    pub const FIRST: Duration = Duration::from_millis(10);
    /// The longest wait.
    pub const MAX: Duration = Duration::from_secs(1);

    /// A back-off that has not waited yet.
    pub const fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// A connection was accepted: the next error waits [`Backoff::FIRST`].
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// How long to wait after `e`: `None` for an error of one connection
    /// (accept again at once), else the current wait, doubling the next.
    pub fn after(&mut self, e: &io::Error) -> Option<Duration> {
        if !is_resource_error(e) {
            return None;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(wait)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// `ENFILE`, `EMFILE`, `ENOBUFS`, `ENOMEM` (Linux numbers): the process or
/// the system is out of descriptors or memory, not one connection at fault.
pub fn is_resource_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12))
}

/// Accept on `listener` until `stop` fires, handing each connection to
/// `on_accept`; `name` is the `listener` field of the log lines. Errors
/// are logged and waited out as the module comment says.
pub async fn run<L, F>(name: impl Display, listener: &L, stop: &CancellationToken, mut on_accept: F)
where
    L: Listen,
    F: FnMut(L::Conn, L::Addr),
{
    let log = RateLimitedLog::new(1000);
    let mut backoff = Backoff::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((conn, addr)) => {
                backoff.reset();
                on_accept(conn, addr);
            }
            Err(e) => {
                let wait = backoff.after(&e);
                if let Some(n) = log.allow() {
                    tracing::warn!(
                        listener = %name,
                        error = %e,
                        suppressed = n,
                        backoff_ms = wait.map_or(0, |w| w.as_millis() as u64),
                        "accept failed"
                    );
                }
                if let Some(wait) = wait {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn backoff_doubles_to_a_second_and_resets() {
        let mut b = Backoff::new();
        let emfile = io::Error::from_raw_os_error(24);
        let waits: Vec<_> = (0..9).map(|_| b.after(&emfile).unwrap()).collect();
        assert_eq!(
            waits.iter().map(Duration::as_millis).collect::<Vec<_>>(),
            [10, 20, 40, 80, 160, 320, 640, 1000, 1000]
        );
        // ECONNABORTED concerns one connection: no wait, the wait is kept.
        assert_eq!(b.after(&io::Error::from_raw_os_error(103)), None);
        assert_eq!(b.after(&emfile), Some(Backoff::MAX));
        b.reset();
        assert_eq!(b.after(&emfile), Some(Backoff::FIRST));
        for errno in [12, 23, 24, 105] {
            assert!(is_resource_error(&io::Error::from_raw_os_error(errno)));
        }
        assert!(!is_resource_error(&io::Error::other("x")));
    }

    #[test]
    fn rate_limited_log_counts_what_it_swallows() {
        let log = RateLimitedLog::new(60_000);
        assert_eq!(log.allow(), Some(0));
        assert_eq!(log.allow(), None);
        assert_eq!(log.allow(), None);
        let zero = RateLimitedLog::new(0);
        assert_eq!(zero.allow(), Some(0));
    }

    /// A listener whose accepts come from a script.
    struct Scripted(Mutex<Vec<io::Result<(u32, ())>>>);

    impl Listen for Scripted {
        type Conn = u32;
        type Addr = ();
        fn accept(&self) -> impl Future<Output = io::Result<(u32, ())>> + Send {
            let next = self.0.lock().unwrap().pop();
            async move {
                match next {
                    Some(r) => r,
                    None => std::future::pending().await,
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_waited_out_and_the_loop_stops_on_its_token() {
        // Popped from the end: EMFILE, EMFILE, ECONNABORTED, then 7, then 8.
        let script = vec![
            Ok((8, ())),
            Ok((7, ())),
            Err(io::Error::from_raw_os_error(103)),
            Err(io::Error::from_raw_os_error(24)),
            Err(io::Error::from_raw_os_error(24)),
        ];
        let l = Scripted(Mutex::new(script));
        let stop = CancellationToken::new();
        let start = tokio::time::Instant::now();
        let mut got = Vec::new();
        let stopper = stop.clone();
        let run_it = run("test", &l, &stop, |c, ()| {
            got.push((c, start.elapsed()));
            if c == 8 {
                stopper.cancel();
            }
        });
        tokio::time::timeout(Duration::from_secs(5), run_it)
            .await
            .unwrap();
        // Two resource errors: 10 ms then 20 ms of waiting; the aborted
        // connection costs none.
        assert_eq!(
            got,
            [
                (7, Duration::from_millis(30)),
                (8, Duration::from_millis(30))
            ]
        );
    }
}
