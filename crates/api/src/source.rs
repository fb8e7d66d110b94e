//! Where a connection comes from, as the limits count it: an IPv4 address,
//! or an IPv6 address's /64 (one subscriber's allocation: an attacker
//! holding a /64 has 2^64 addresses but one source here). IPv4-mapped IPv6
//! addresses count as the IPv4 address they carry.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

/// A source address as the limits count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    Source(IpAddr::V6(Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    )))
                }
            },
        }
    }

    /// The source of a request served by [`crate::serve_limited`] or the
    /// peer listener (which record the connection's address); `None` for a
    /// request that came by neither (an in-process call).
    pub fn of_request(ext: &axum::http::Extensions) -> Option<Source> {
        ext.get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| Source::of(c.0.ip()))
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

/// How many of something (connections, handshakes) each source holds at
/// once, each within `per_source`. Entries go when their count does, so
/// the map holds only sources with something open.
#[derive(Clone)]
pub struct PerSource {
    per_source: usize,
    held: Arc<Mutex<HashMap<Source, usize>>>,
}

/// One held slot; dropping it gives the slot back.
pub struct Held {
    source: Source,
    held: Arc<Mutex<HashMap<Source, usize>>>,
}

impl PerSource {
    pub fn new(per_source: usize) -> Self {
        PerSource {
            per_source: per_source.max(1),
            held: Arc::default(),
        }
    }

    /// A slot for `source`, or `None` if it holds `per_source` already.
    pub fn take(&self, source: Source) -> Option<Held> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(source).or_insert(0);
        if *n >= self.per_source {
            return None;
        }
        *n += 1;
        Some(Held {
            source,
            held: self.held.clone(),
        })
    }

    /// Sources holding at least one slot.
    pub fn sources(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_ipv6_source_is_its_slash_64_and_a_mapped_ipv4_its_address() {
        let a = Source::of("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = Source::of("2001:db8:1:2:ffff:1:2:3".parse().unwrap());
        let c = Source::of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        let mapped = Source::of("::ffff:192.0.2.7".parse().unwrap());
        assert_eq!(mapped, Source::of("192.0.2.7".parse().unwrap()));
        assert_eq!(mapped.to_string(), "192.0.2.7");
    }

    #[test]
    fn each_source_holds_at_most_its_share_and_gets_slots_back() {
        let limit = PerSource::new(2);
        let (a, b) = (
            Source::of("192.0.2.1".parse().unwrap()),
            Source::of("192.0.2.2".parse().unwrap()),
        );
        let a1 = limit.take(a).unwrap();
        let _a2 = limit.take(a).unwrap();
        assert!(limit.take(a).is_none(), "a third slot for one source");
        let _b1 = limit.take(b).expect("another source is not held up");
        drop(a1);
        assert!(limit.take(a).is_some(), "a slot given back is free again");
        drop(_b1);
        assert_eq!(limit.sources(), 1, "a source holding nothing is forgotten");
    }
}
