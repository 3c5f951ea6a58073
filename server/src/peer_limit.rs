//! Connections per client address, for every front end that accepts TCP (HTTP, RTSP, RTMP):
//! one address cannot take every connection slot with idle, half-open or slow sockets, so
//! clients elsewhere are still served whatever it does (docs/security.md, "Limits").

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Default cap on the connections one address may hold open at once, per front end.
pub const DEFAULT_PER_IP: usize = 256;

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
    /// IPv6 addresses count as the IPv4 address they carry.
    pub fn try_acquire(self: &Arc<PerIp>, ip: IpAddr) -> Option<IpSlot> {
        let ip = ip.to_canonical();
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
        open.get(&ip.to_canonical()).copied().unwrap_or(0)
    }

    pub fn max(&self) -> usize {
        self.max
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
}
