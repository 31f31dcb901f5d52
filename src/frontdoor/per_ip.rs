//! The per-address connection cap (`limits.per_ip_connections`): how many
//! connections each client address (IPv4, or one IPv6 /64:
//! [`AddrKey`]) has open, and the RAII slot a connection holds.
//!
//! Invariants: a count exists only while a slot for it is alive, so the table
//! never holds more entries than there are open connections; a slot is given
//! back on every path by its `Drop` (DESIGN §7.7), never by hand.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::throttle::AddrKey;

/// Open connections by client address.
#[derive(Debug)]
pub struct PerIp {
    limit: AtomicUsize,
    open: Mutex<HashMap<AddrKey, usize>>,
}

/// One open connection of an address; counted until dropped.
#[derive(Debug)]
pub struct IpSlot {
    owner: Arc<PerIp>,
    key: AddrKey,
}

impl PerIp {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: AtomicUsize::new(limit.max(1)),
            open: Mutex::new(HashMap::new()),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// A reloaded `limits.per_ip_connections`: counts stay, new
    /// connections meet the new limit.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit.max(1), Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AddrKey, usize>> {
        match self.open.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// A slot for one more connection from `ip`, or the address key that
    /// is at its limit.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<IpSlot, AddrKey> {
        let key = AddrKey::from(ip);
        let mut open = self.lock();
        let n = open.entry(key).or_insert(0);
        if *n >= self.limit() {
            return Err(key);
        }
        *n += 1;
        Ok(IpSlot {
            owner: self.clone(),
            key,
        })
    }

    /// Open connections of `ip`'s address key.
    pub fn open(&self, ip: IpAddr) -> usize {
        self.lock().get(&AddrKey::from(ip)).copied().unwrap_or(0)
    }

    /// Addresses with open connections.
    pub fn addresses(&self) -> usize {
        self.lock().len()
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.owner.lock();
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_per_address_and_per_64_and_slots_give_back() {
        let p = PerIp::new(2);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a1 = p.try_acquire(ip("192.0.2.1")).unwrap();
        let a2 = p.try_acquire(ip("192.0.2.1")).unwrap();
        assert!(p.try_acquire(ip("192.0.2.1")).is_err());
        let _b = p.try_acquire(ip("192.0.2.2")).unwrap();
        let v1 = p.try_acquire(ip("2001:db8::1")).unwrap();
        let _v2 = p.try_acquire(ip("2001:db8::2")).unwrap();
        assert_eq!(
            p.try_acquire(ip("2001:db8::ffff")).unwrap_err().to_string(),
            "2001:db8::/64"
        );
        assert!(p.try_acquire(ip("2001:db8:0:1::1")).is_ok());
        drop(a1);
        let _a3 = p.try_acquire(ip("192.0.2.1")).unwrap();
        drop(a2);
        drop(v1);
        assert_eq!(p.open(ip("192.0.2.1")), 1);
        assert_eq!(p.open(ip("2001:db8::7")), 1);
        drop(_a3);
        assert_eq!(p.open(ip("192.0.2.1")), 0);
        assert_eq!(p.addresses(), 2, "empty counts are removed");
    }
}
