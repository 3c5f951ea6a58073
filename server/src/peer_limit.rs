//! Connections per client address, counted by every [`Listener`](crate::listener::Listener)
//! (HTTP, RTMP, RTSP, MySQL): one address cannot take every connection slot with idle,
//! half-open or slow sockets, so clients elsewhere are still served whatever it does
//! (docs/security.md, "Limits").
//!
//! An IPv6 client counts by its /64: one host is usually given a whole /64 and can pick any
//! address in it, so counting single IPv6 addresses would give it an unbounded share.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// Counts open connections per address. Cheap to share: one per listener.
#[derive(Debug)]
pub struct PerIp {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; its address's count drops with it.
#[derive(Debug)]
pub struct IpSlot {
    limiter: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    pub fn new(max: usize) -> Arc<PerIp> {
        Arc::new(PerIp {
            max: max.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a connection from `ip`, unless that address holds `max` already. IPv4-mapped
    /// IPv6 addresses count as the IPv4 address they carry; other IPv6 addresses as their /64.
    pub fn try_acquire(self: &Arc<PerIp>, ip: IpAddr) -> Option<IpSlot> {
        let ip = counted_as(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            limiter: self.clone(),
            ip,
        })
    }

    /// Connections open from `ip` now.
    pub fn open(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&counted_as(ip)).copied().unwrap_or(0)
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

/// The key `ip` is counted under: the IPv4 address, or the IPv6 /64 (low 64 bits cleared).
fn counted_as(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_each_address_and_frees_on_drop() {
        let limiter = PerIp::new(2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let s1 = limiter.try_acquire(a).expect("first");
        let _s2 = limiter.try_acquire(mapped).expect("second, same address");
        assert!(limiter.try_acquire(a).is_none(), "third from one address");
        assert!(limiter.try_acquire(b).is_some(), "another address is not affected");
        drop(s1);
        assert_eq!(limiter.open(a), 1);
        assert!(limiter.try_acquire(a).is_some());
    }

    #[test]
    fn an_ipv6_host_counts_by_its_64() {
        let limiter = PerIp::new(2);
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _a = limiter.try_acquire(one).expect("first");
        let _b = limiter.try_acquire(same_64).expect("second in the /64");
        assert!(
            limiter.try_acquire("2001:db8:1:2::99".parse().unwrap()).is_none(),
            "third in the /64"
        );
        assert_eq!(limiter.open(same_64), 2);
        assert!(limiter.try_acquire(other_64).is_some(), "the next /64 is not affected");
    }
}
