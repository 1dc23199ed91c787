//! Address prefixes (`10.0.0.0/8`, `2001:db8::/32`): filters and the
//! per-subnet summaries.
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

/// A network prefix. IPv4-mapped IPv6 addresses match IPv4 prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    network: IpAddr,
    len: u8,
}

impl Cidr {
    /// The prefix of length `len` that holds `addr` (host bits cleared).
    pub fn containing(addr: IpAddr, len: u8) -> Cidr {
        let addr = addr.to_canonical();
        let network = match addr {
            IpAddr::V4(v4) => {
                let len = len.min(32);
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let len = len.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        };
        Cidr {
            network,
            len: len.min(if network.is_ipv4() { 32 } else { 128 }),
        }
    }

    /// The subnet a peer is summarised under: /24 for IPv4, /64 for IPv6.
    pub fn subnet_of(addr: IpAddr) -> Cidr {
        let addr = addr.to_canonical();
        Cidr::containing(addr, if addr.is_ipv4() { 24 } else { 64 })
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        addr.is_ipv4() == self.network.is_ipv4() && Cidr::containing(addr, self.len) == *self
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

/// Why a prefix did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("`{0}` is not an IP address")]
    Address(String),
    #[error("prefix length `{0}` is not a number from 0 to {1}")]
    Length(String, u8),
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `10.1.2.0/24`, `2001:db8::/32`, or a bare address (a host).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, length) = match text.split_once('/') {
            Some((address, length)) => (address, Some(length)),
            None => (text, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| CidrError::Address(address.to_owned()))?;
        let address = address.to_canonical();
        let max = if address.is_ipv4() { 32 } else { 128 };
        let len = match length {
            None => max,
            Some(length) => length
                .parse::<u8>()
                .ok()
                .filter(|&len| len <= max)
                .ok_or_else(|| CidrError::Length(length.to_owned(), max))?,
        };
        Ok(Cidr::containing(address, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prefixes_and_hosts() {
        assert_eq!(
            "10.1.2.3/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            "10.1.2.3".parse::<Cidr>().unwrap().to_string(),
            "10.1.2.3/32"
        );
        assert_eq!(
            "2001:db8:1::5/32".parse::<Cidr>().unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(
            "0.0.0.0/0".parse::<Cidr>().unwrap().to_string(),
            "0.0.0.0/0"
        );
    }

    #[test]
    fn rejects_bad_addresses_and_lengths() {
        assert_eq!(
            "10.0.0.300/8".parse::<Cidr>(),
            Err(CidrError::Address("10.0.0.300".into()))
        );
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::Length("33".into(), 32))
        );
        assert!("::/129".parse::<Cidr>().is_err());
        assert!("10.0.0.0/x".parse::<Cidr>().is_err());
    }

    #[test]
    fn contains_matches_family_and_mapped_addresses() {
        let net: Cidr = "192.168.1.0/24".parse().unwrap();
        assert!(net.contains("192.168.1.77".parse().unwrap()));
        assert!(net.contains("::ffff:192.168.1.77".parse().unwrap()));
        assert!(!net.contains("192.168.2.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let everything: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn subnets_are_slash_24_and_slash_64() {
        assert_eq!(
            Cidr::subnet_of("10.9.8.7".parse().unwrap()).to_string(),
            "10.9.8.0/24"
        );
        assert_eq!(
            Cidr::subnet_of("2001:db8:1:2:3::4".parse().unwrap()).to_string(),
            "2001:db8:1:2::/64"
        );
    }
}
