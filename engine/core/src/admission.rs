//! Connection admission: how many connections the machine holds in total and per source
//! address, against `--max-connections` and `--max-connections-per-ip`. One table for the
//! whole machine, asked once when a connection is accepted and told once when it closes;
//! never on the media path.
//!
//! IPv6 peers are counted per /64 (one subscriber's prefix), so a client cannot step around
//! the per-address limit by rotating through its own addresses.
//!
//! Must not: do I/O, read a clock, or log. It is not thread-safe by itself: the engine keeps
//! it behind a mutex taken only at accept and close.

use std::collections::HashMap;
use std::net::IpAddr;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The machine holds `--max-connections` already.
    Total,
    /// This address (or IPv6 /64) holds `--max-connections-per-ip` already.
    PerIp,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Total => "max_connections",
            Refusal::PerIp => "max_connections_per_ip",
        }
    }
}

/// The limits; 0 means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub total: usize,
    pub per_ip: usize,
}

/// The counts behind the limits.
#[derive(Debug, Default)]
pub struct Admission {
    limits: Limits,
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// The address a peer is counted under: itself for IPv4, its /64 for IPv6 (an IPv4-mapped
/// IPv6 address counts as the IPv4 address).
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(seg.into())
            }
        },
    }
}

impl Admission {
    pub fn new(limits: Limits) -> Admission {
        Admission {
            limits,
            ..Admission::default()
        }
    }

    /// Admits a connection from `ip`, counting it, or says why not (counting nothing).
    /// The per-address limit is checked first: a source over its own limit is told so even
    /// when the machine is full too (the reason an operator needs to see for a flood).
    pub fn admit(&mut self, ip: IpAddr) -> Result<(), Refusal> {
        let source = source_of(ip);
        if self.limits.per_ip != 0 {
            let n = self.by_source.get(&source).copied().unwrap_or(0);
            if n >= self.limits.per_ip {
                return Err(Refusal::PerIp);
            }
        }
        if self.limits.total != 0 && self.total >= self.limits.total {
            return Err(Refusal::Total);
        }
        self.total += 1;
        if self.limits.per_ip != 0 {
            *self.by_source.entry(source).or_insert(0) += 1;
        }
        Ok(())
    }

    /// A connection admitted from `ip` closed.
    pub fn release(&mut self, ip: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if self.limits.per_ip == 0 {
            return;
        }
        let source = source_of(ip);
        if let Some(n) = self.by_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.by_source.remove(&source);
            }
        }
    }

    /// Connections held now.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Sources with at least one connection (only tracked with a per-address limit).
    pub fn sources(&self) -> usize {
        self.by_source.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_ip_limit_counts_each_source_and_frees_on_release() {
        let mut a = Admission::new(Limits {
            total: 0,
            per_ip: 2,
        });
        assert_eq!(a.admit(ip("10.0.0.1")), Ok(()));
        assert_eq!(a.admit(ip("10.0.0.1")), Ok(()));
        assert_eq!(a.admit(ip("10.0.0.1")), Err(Refusal::PerIp));
        assert_eq!(
            a.admit(ip("10.0.0.2")),
            Ok(()),
            "another address is not limited"
        );
        assert_eq!(a.total(), 3, "a refusal counts nothing");
        a.release(ip("10.0.0.1"));
        assert_eq!(a.admit(ip("10.0.0.1")), Ok(()));
        for _ in 0..2 {
            a.release(ip("10.0.0.1"));
        }
        a.release(ip("10.0.0.2"));
        assert_eq!((a.total(), a.sources()), (0, 0), "nothing left behind");
    }

    #[test]
    fn total_limit_refuses_everyone_until_one_leaves() {
        let mut a = Admission::new(Limits {
            total: 2,
            per_ip: 0,
        });
        assert_eq!(a.admit(ip("10.0.0.1")), Ok(()));
        assert_eq!(a.admit(ip("10.0.0.2")), Ok(()));
        assert_eq!(a.admit(ip("10.0.0.3")), Err(Refusal::Total));
        a.release(ip("10.0.0.1"));
        assert_eq!(a.admit(ip("10.0.0.3")), Ok(()));
        assert_eq!(a.sources(), 0, "no table without a per-address limit");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let mut a = Admission::new(Limits {
            total: 0,
            per_ip: 1,
        });
        assert_eq!(a.admit(ip("2001:db8:1:2::1")), Ok(()));
        assert_eq!(
            a.admit(ip("2001:db8:1:2:ffff::9")),
            Err(Refusal::PerIp),
            "the same /64"
        );
        assert_eq!(a.admit(ip("2001:db8:1:3::1")), Ok(()), "another /64");
        assert_eq!(a.admit(ip("192.0.2.7")), Ok(()));
        assert_eq!(a.admit(ip("::ffff:192.0.2.7")), Err(Refusal::PerIp));
    }

    #[test]
    fn a_source_over_its_own_limit_is_told_so_when_the_machine_is_full_too() {
        let mut a = Admission::new(Limits {
            total: 2,
            per_ip: 1,
        });
        assert_eq!(a.admit(ip("10.0.0.1")), Ok(()));
        assert_eq!(a.admit(ip("10.0.0.2")), Ok(()));
        assert_eq!(a.admit(ip("10.0.0.1")), Err(Refusal::PerIp));
        assert_eq!(a.admit(ip("10.0.0.3")), Err(Refusal::Total));
    }

    #[test]
    fn unlimited_admits_everything() {
        let mut a = Admission::new(Limits::default());
        for _ in 0..10_000 {
            assert_eq!(a.admit(ip("10.0.0.1")), Ok(()));
        }
        assert_eq!(a.total(), 10_000);
    }
}
