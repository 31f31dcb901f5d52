//! The per-sender send limit of chatmail mode: `max_user_send_per_minute`
//! with bursts of `max_user_send_burst_size`, the quota filtermail enforces
//! with `governor` (`Quota::per_minute(rate).allow_burst(burst)`), as the
//! generic cell rate algorithm (GCRA, ITU-T I.371): one message costs an
//! emission interval `T = 60 s / rate`; a sender may be at most
//! `(burst - 1) * T` ahead of the clock, so `burst` messages pass at once
//! and then one every `T`.
//!
//! State is one instant per sender that sent within the last
//! `burst * T`; senders back at a full burst are forgotten (they are
//! indistinguishable from new ones), and at most [`MAX_SENDERS`] are held:
//! when the table is full of active senders, new senders are refused until
//! entries expire, so memory stays bounded under any load.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most senders tracked at once.
pub const MAX_SENDERS: usize = 100_000;

/// A keyed GCRA limiter, shared by all sessions of a listener.
#[derive(Debug)]
pub struct SendLimiter {
    /// Emission interval `T`.
    interval: Duration,
    /// Allowed advance `(burst - 1) * T`.
    tolerance: Duration,
    /// Theoretical arrival time of each sender's next message.
    tat: Mutex<HashMap<String, Instant>>,
    max_senders: usize,
}

impl SendLimiter {
    /// `per_minute` and `burst` are at least 1 (validated config).
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self::with_capacity(per_minute, burst, MAX_SENDERS)
    }

    fn with_capacity(per_minute: u32, burst: u32, max_senders: usize) -> Self {
        let interval = Duration::from_secs(60) / per_minute.max(1);
        Self {
            interval,
            tolerance: interval * (burst.max(1) - 1),
            tat: Mutex::new(HashMap::new()),
            max_senders,
        }
    }

    /// Count one message from `sender` at `now`: `Ok` if it may be sent,
    /// else `Err(wait)` with the time until it may.
    pub fn check_at(&self, sender: &str, now: Instant) -> Result<(), Duration> {
        let mut map = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let tat = map.get(sender).copied().unwrap_or(now).max(now);
        let earliest = tat.checked_sub(self.tolerance).unwrap_or(now);
        if earliest > now {
            return Err(earliest - now);
        }
        if !map.contains_key(sender) && map.len() >= self.max_senders {
            map.retain(|_, t| *t > now);
            if map.len() >= self.max_senders {
                return Err(self.interval);
            }
        }
        map.insert(sender.to_owned(), tat + self.interval);
        // Amortised cleanup: filtermail's `retain_recent` after each pass.
        if map.len() > 1024 && map.len().is_power_of_two() {
            map.retain(|_, t| *t > now);
        }
        Ok(())
    }

    /// [`Self::check_at`] now.
    pub fn check(&self, sender: &str) -> Result<(), Duration> {
        self.check_at(sender, Instant::now())
    }

    /// Senders currently tracked.
    pub fn tracked(&self) -> usize {
        self.tat.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let l = SendLimiter::new(60, 10);
        let t0 = Instant::now();
        for i in 0..10 {
            assert_eq!(l.check_at("a", t0), Ok(()), "message {i}");
        }
        // The 11th in the same instant waits one interval.
        assert_eq!(l.check_at("a", t0), Err(Duration::from_secs(1)));
        // Another sender is not affected.
        assert_eq!(l.check_at("b", t0), Ok(()));
        // One interval later exactly one more passes.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.check_at("a", t1), Ok(()));
        assert!(l.check_at("a", t1).is_err());
        // After a full burst's time the sender is back to a full burst.
        let t2 = t1 + Duration::from_secs(11);
        for _ in 0..10 {
            assert_eq!(l.check_at("a", t2), Ok(()));
        }
        assert!(l.check_at("a", t2).is_err());
    }

    #[test]
    fn burst_of_one() {
        let l = SendLimiter::new(2, 1);
        let t0 = Instant::now();
        assert_eq!(l.check_at("a", t0), Ok(()));
        assert_eq!(l.check_at("a", t0), Err(Duration::from_secs(30)));
        assert_eq!(
            l.check_at("a", t0 + Duration::from_secs(10)),
            Err(Duration::from_secs(20))
        );
        assert_eq!(l.check_at("a", t0 + Duration::from_secs(30)), Ok(()));
    }

    #[test]
    fn memory_is_bounded() {
        let l = SendLimiter::with_capacity(60, 10, 100);
        let t0 = Instant::now();
        for i in 0..100 {
            assert_eq!(l.check_at(&format!("s{i}"), t0), Ok(()));
        }
        // Full of active senders: a new one is refused, a known one is not.
        assert!(l.check_at("new", t0).is_err());
        assert_eq!(l.check_at("s1", t0), Ok(()));
        assert_eq!(l.tracked(), 100);
        // Once they are idle again their entries go and new senders pass.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(l.check_at("new", later), Ok(()));
        assert!(l.tracked() <= 2, "{}", l.tracked());
    }
}
