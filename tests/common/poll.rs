//! Waiting for a condition with a deadline: the one place tests pause.

use std::time::{Duration, Instant};

/// How often a condition is checked again.
pub const POLL_EVERY: Duration = Duration::from_millis(20);

/// Check `cond` until it holds or `within` has passed; true when it held.
pub fn poll_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        // sleep-ok: the interval of a poll bounded by `deadline`.
        std::thread::sleep(POLL_EVERY);
    }
}

/// [`poll_until`] for async tests (does not block the runtime's thread).
pub async fn poll_until_async(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        // sleep-ok: the interval of a poll bounded by `deadline`.
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// [`poll_until_async`] with an async condition (a connect, a scrape).
pub async fn poll_until_with<F, Fut>(within: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left.max(POLL_EVERY), cond())
            .await
            .unwrap_or(false)
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        // sleep-ok: the interval of a poll bounded by `deadline`.
        tokio::time::sleep(POLL_EVERY).await;
    }
}
