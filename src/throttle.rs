//! Address-keyed failure throttling: the key a client address is counted
//! under ([`AddrKey`]: an IPv4 address, or the /64 of an IPv6 address) and a
//! bounded table of leaky-bucket levels ([`FailureTable`]). Pure: time is
//! passed in, nothing here sleeps or logs.
//!
//! Used by the front door's key-failure throttle (`auth`), the mail servers'
//! password throttle (`mail::login`) and the per-address connection cap.
//!
//! Invariants: one IPv6 /64 is one key (a host is handed a whole /64 and can
//! pick any address in it), and an IPv4-mapped IPv6 address counts as its
//! IPv4 address. A table never holds more than its capacity and never stops
//! counting when full: it forgets drained entries first, then the lowest
//! and oldest eighth, so a spray of one-off addresses cannot push out the
//! address that fails all the time, nor make new failures go uncounted.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// The unit a client address is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrKey {
    V4(Ipv4Addr),
    /// The upper 64 bits of an IPv6 address.
    V6Net([u8; 8]),
}

impl From<IpAddr> for AddrKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => AddrKey::V4(a),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => AddrKey::V4(v4),
                None => {
                    let o = a.octets();
                    let mut net = [0u8; 8];
                    net.copy_from_slice(&o[..8]);
                    AddrKey::V6Net(net)
                }
            },
        }
    }
}

impl fmt::Display for AddrKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrKey::V4(a) => write!(f, "{a}"),
            AddrKey::V6Net(n) => {
                let mut o = [0u8; 16];
                o[..8].copy_from_slice(n);
                write!(f, "{}/64", Ipv6Addr::from(o))
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    level: u32,
    /// When `level` was last brought up to date (the remainder of a
    /// partly leaked unit is kept by not moving this past `now`).
    at: Instant,
}

/// Leaky buckets by key: each event adds one, one unit leaks away every
/// `leak`. At most `capacity` keys are remembered.
#[derive(Debug)]
pub struct FailureTable<K> {
    map: HashMap<K, Entry>,
    capacity: usize,
    leak: Duration,
}

impl<K: Hash + Eq + Clone> FailureTable<K> {
    /// `capacity` at least 8; `leak` more than zero.
    pub fn new(capacity: usize, leak: Duration) -> Self {
        Self {
            map: HashMap::new(),
            capacity: capacity.max(8),
            leak: leak.max(Duration::from_millis(1)),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn drain(e: &mut Entry, leak: Duration, now: Instant) {
        let elapsed = now.saturating_duration_since(e.at);
        let units = elapsed.as_nanos() / leak.as_nanos();
        if units == 0 {
            return;
        }
        if units >= u128::from(e.level) {
            e.level = 0;
            e.at = now;
        } else {
            e.level -= units as u32;
            // Whole units only: `units` < level ≤ u32::MAX.
            e.at += leak * units as u32;
        }
    }

    /// The current level of `key` (0 when unknown).
    pub fn level(&mut self, key: &K, now: Instant) -> u32 {
        let leak = self.leak;
        match self.map.get_mut(key) {
            Some(e) => {
                Self::drain(e, leak, now);
                let l = e.level;
                if l == 0 {
                    self.map.remove(key);
                }
                l
            }
            None => 0,
        }
    }

    /// Add one event for `key`, the level kept at most `max`; the new level.
    pub fn add(&mut self, key: &K, now: Instant, max: u32) -> u32 {
        let leak = self.leak;
        if let Some(e) = self.map.get_mut(key) {
            Self::drain(e, leak, now);
            e.level = e.level.saturating_add(1).min(max.max(1));
            return e.level;
        }
        if self.map.len() >= self.capacity {
            self.make_room(now);
        }
        self.map.insert(key.clone(), Entry { level: 1, at: now });
        1
    }

    /// Take one event back (an attempt counted up front that succeeded).
    pub fn sub(&mut self, key: &K, now: Instant) {
        let leak = self.leak;
        if let Some(e) = self.map.get_mut(key) {
            Self::drain(e, leak, now);
            e.level = e.level.saturating_sub(1);
            if e.level == 0 {
                self.map.remove(key);
            }
        }
    }

    /// Forget drained entries; if that is not enough, the eighth with the
    /// lowest levels (the oldest among equals). Amortised O(1) per insert.
    fn make_room(&mut self, now: Instant) {
        let leak = self.leak;
        self.map.retain(|_, e| {
            Self::drain(e, leak, now);
            e.level > 0
        });
        if self.map.len() < self.capacity {
            return;
        }
        let mut ranks: Vec<(u32, Instant)> = self.map.values().map(|e| (e.level, e.at)).collect();
        let k = (self.capacity / 8).max(1).min(ranks.len() - 1);
        let (_, cut, _) = ranks.select_nth_unstable(k);
        let cut = *cut;
        let mut left = k;
        self.map.retain(|_, e| {
            if left > 0 && (e.level, e.at) < cut {
                left -= 1;
                false
            } else {
                true
            }
        });
        // Ties at the cut: drop some of them too, so room is always made.
        if self.map.len() >= self.capacity {
            let mut left = self.map.len() + 1 - self.capacity;
            self.map.retain(|_, e| {
                if left > 0 && (e.level, e.at) == cut {
                    left -= 1;
                    false
                } else {
                    true
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let k = |s: &str| AddrKey::from(s.parse::<IpAddr>().unwrap());
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:192.0.2.7"), k("192.0.2.7"));
        assert_ne!(k("192.0.2.7"), k("192.0.2.8"));
        assert_eq!(k("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
        assert_eq!(k("::ffff:192.0.2.7").to_string(), "192.0.2.7");
    }

    #[test]
    fn levels_leak_one_unit_per_interval() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut t = FailureTable::new(100, s);
        for i in 1..=5 {
            assert_eq!(t.add(&"a", t0, 100), i);
        }
        assert_eq!(t.level(&"a", t0 + s / 2), 5);
        assert_eq!(t.level(&"a", t0 + s), 4);
        // The half unit leaked by 1.5 s is kept, not lost.
        assert_eq!(t.level(&"a", t0 + s * 3 / 2), 4);
        assert_eq!(t.level(&"a", t0 + s * 2), 3);
        t.sub(&"a", t0 + s * 2);
        assert_eq!(t.level(&"a", t0 + s * 2), 2);
        assert_eq!(t.level(&"a", t0 + s * 10), 0);
        assert!(t.is_empty(), "a drained entry is forgotten");
        assert_eq!(t.add(&"b", t0, 2), 1);
        assert_eq!(t.add(&"b", t0, 2), 2);
        assert_eq!(t.add(&"b", t0, 2), 2, "capped at max");
    }

    #[test]
    fn a_full_table_keeps_counting_and_keeps_the_worst_offender() {
        let t0 = Instant::now();
        let mut t = FailureTable::new(64, Duration::from_secs(600));
        for _ in 0..20 {
            t.add(&u32::MAX, t0, 1000);
        }
        // A spray of 10,000 one-off keys.
        for i in 0..10_000u32 {
            t.add(&i, t0 + Duration::from_millis(u64::from(i)), 1000);
            assert!(t.len() <= 64);
        }
        assert_eq!(t.level(&u32::MAX, t0 + Duration::from_secs(11)), 20);
        // The newest key is counted, and counts on.
        assert_eq!(t.level(&9_999, t0 + Duration::from_secs(11)), 1);
        assert_eq!(t.add(&9_999, t0 + Duration::from_secs(11), 1000), 2);
        // Every key at the same level and time: room is still made.
        let mut same = FailureTable::new(8, Duration::from_secs(600));
        for i in 0..100u32 {
            same.add(&i, t0, 10);
            assert!(same.len() <= 8);
            assert_eq!(same.level(&i, t0), 1);
        }
    }
}
