//! Which UDP source an FTL media port accepts: only the control connection's IP (the PROXY
//! protocol client address when behind a balancer), with the source port latched from the first
//! valid packet so NACKs and ping echoes have somewhere to go. The driver owns the socket and
//! asks this filter; nothing here does IO.

use core::net::{IpAddr, SocketAddr};

/// Source-address policy for one stream's media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceFilter {
    pub allowed_ip: IpAddr,
    pub latched: Option<SocketAddr>,
}

impl SourceFilter {
    pub fn new(allowed_ip: IpAddr) -> Self {
        SourceFilter {
            allowed_ip,
            latched: None,
        }
    }

    /// Whether a datagram from `from` may be processed. Before latching any port of the allowed
    /// IP passes; afterwards only the latched address.
    pub fn accepts(&self, from: SocketAddr) -> bool {
        match self.latched {
            Some(latched) => latched == from,
            None => same_ip(from.ip(), self.allowed_ip),
        }
    }

    /// Latches `from` after a datagram from it parsed as valid media; no effect once latched.
    pub fn latch(&mut self, from: SocketAddr) {
        if self.latched.is_none() && same_ip(from.ip(), self.allowed_ip) {
            self.latched = Some(from);
        }
    }

    /// Where NACKs and ping echoes go, once known.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.latched
    }
}

/// IPv4 and its IPv4-mapped IPv6 form are the same source (dual-stack sockets report either).
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn latches_first_valid_source() {
        let mut f = SourceFilter::new("192.0.2.7".parse().unwrap());
        let a: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let b: SocketAddr = "192.0.2.7:5001".parse().unwrap();
        let other: SocketAddr = "198.51.100.1:5000".parse().unwrap();
        assert!(!f.accepts(other));
        assert!(f.accepts(a) && f.accepts(b));
        f.latch(other);
        assert_eq!(f.peer(), None);
        f.latch(a);
        assert!(f.accepts(a));
        assert!(!f.accepts(b));
        assert_eq!(f.peer(), Some(a));
    }

    #[test]
    fn mapped_ipv6_matches_ipv4() {
        let f = SourceFilter::new("192.0.2.7".parse().unwrap());
        assert!(f.accepts("[::ffff:192.0.2.7]:9".parse().unwrap()));
    }
}
