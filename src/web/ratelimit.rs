//! The per-address rate of `POST /new` (`mail.chatmail.
//! new_account_rate_per_minute`): a leaky bucket per client address (IPv4,
//! or one IPv6 /64), `rate` deep, leaking one unit every `60 s / rate`. So
//! an address gets `rate` answers at once and then `rate` a minute.
//!
//! Invariant: the table is bounded ([`MAX_ADDRESSES`]); when full it
//! forgets drained entries first, then the lowest (see
//! [`crate::throttle::FailureTable`]), so memory stays fixed under a spray
//! of addresses.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::throttle::{AddrKey, FailureTable};

/// Most client addresses remembered.
pub const MAX_ADDRESSES: usize = 4096;

/// Answers per address and minute.
#[derive(Debug)]
pub struct NewAccountLimiter {
    rate: u32,
    table: Mutex<FailureTable<AddrKey>>,
}

impl NewAccountLimiter {
    /// `rate` answers per minute and address (at least one).
    pub fn new(rate: u32) -> Self {
        let rate = rate.max(1);
        Self {
            rate,
            table: Mutex::new(FailureTable::new(
                MAX_ADDRESSES,
                Duration::from_secs(60) / rate,
            )),
        }
    }

    /// Count one request from `ip` at `now`; `false` when the address is
    /// over its rate (the request is not counted then).
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let key = AddrKey::from(ip);
        let mut t = match self.table.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if t.level(&key, now) >= self.rate {
            return false;
        }
        t.add(&key, now, self.rate);
        true
    }

    /// Addresses remembered now.
    pub fn len(&self) -> usize {
        match self.table.lock() {
            Ok(g) => g.len(),
            Err(p) => p.into_inner().len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_then_refill() {
        let l = NewAccountLimiter::new(3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        assert!(l.allow(ip, t0));
        assert!(l.allow(ip, t0));
        assert!(l.allow(ip, t0));
        assert!(!l.allow(ip, t0));
        assert!(l.allow(other, t0));
        // One unit leaks every 20 s.
        assert!(!l.allow(ip, t0 + Duration::from_secs(19)));
        assert!(l.allow(ip, t0 + Duration::from_secs(20)));
        assert!(!l.allow(ip, t0 + Duration::from_secs(21)));
    }

    #[test]
    fn table_stays_bounded() {
        let l = NewAccountLimiter::new(10);
        let t0 = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 * 3) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(l.allow(ip, t0 + Duration::from_micros(u64::from(i))));
        }
        assert!(l.len() <= MAX_ADDRESSES);
    }
}
