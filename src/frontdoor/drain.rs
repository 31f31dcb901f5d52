//! The drain of a process that stops (SIGTERM, or a successor took over):
//! when it starts, and when each open connection is closed.
//!
//! A relay with thousands of IMAP IDLE sessions must not drop them all in
//! one second, or all their clients reconnect in the same second. So each
//! connection, when the drain starts, picks its own moment uniformly at
//! random in `[0, spread)` and closes then (or earlier, on its own); what
//! is left at the end of `timeouts.shutdown_grace` is closed by the front
//! door's `force_close`. The spread is `timeouts.drain_spread`, by default
//! the whole grace period (as HAProxy's `close-spread-time` defaults to its
//! `hard-stop-after`); `0s` turns it off.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// When the drain started and over how long connections close.
#[derive(Debug, Default)]
pub struct Drain {
    started: CancellationToken,
    spread: std::sync::atomic::AtomicU64,
}

impl Drain {
    /// Start draining: open connections close spread over `spread`.
    pub fn start(&self, spread: Duration) {
        let ms = u64::try_from(spread.as_millis()).unwrap_or(u64::MAX);
        self.spread.store(ms, std::sync::atomic::Ordering::Relaxed);
        self.started.cancel();
    }

    /// Whether the drain has started.
    pub fn started(&self) -> bool {
        self.started.is_cancelled()
    }

    /// Resolves when this connection's moment to close has come: the drain
    /// started, and then its own random share of the spread went by. With
    /// no spread (`drain_spread: 0s`) it never comes: connections close
    /// when they end or at the end of the grace period.
    pub async fn my_turn(&self) {
        self.started.cancelled().await;
        let ms = self.spread.load(std::sync::atomic::Ordering::Relaxed);
        if ms == 0 {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(jitter(ms)).await;
    }
}

/// A uniformly random moment in `[0, ms)` milliseconds (microsecond steps).
fn jitter(ms: u64) -> Duration {
    let mut b = [0u8; 8];
    // A failing system RNG only loses the spread, never the close.
    if getrandom::fill(&mut b).is_err() {
        return Duration::ZERO;
    }
    let us = ms.saturating_mul(1000).max(1);
    Duration::from_micros(u64::from_le_bytes(b) % us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_the_spread_and_spreads() {
        let mut seen = [0usize; 10];
        for _ in 0..10_000 {
            let d = jitter(1000);
            assert!(d < Duration::from_secs(1));
            seen[(d.as_millis() / 100) as usize] += 1;
        }
        // Each tenth of the spread gets about a thousand: none is empty or
        // holds most of them.
        for n in seen {
            assert!((700..1300).contains(&n), "{seen:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn turn_comes_only_after_the_start() {
        let d = std::sync::Arc::new(Drain::default());
        let d2 = d.clone();
        let t = tokio::spawn(async move { d2.my_turn().await });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!t.is_finished());
        d.start(Duration::from_secs(2));
        tokio::time::timeout(Duration::from_secs(2), t)
            .await
            .expect("closed within the spread")
            .unwrap();
    }
}
