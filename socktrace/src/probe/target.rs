//! What `probe` connects to: `HOST:PORT` as the user wrote it, and the
//! addresses it resolves to.
use std::{
    net::{IpAddr, SocketAddr},
    str::FromStr,
};

use anyhow::Context as _;

/// The most addresses of one name tried (a name can have hundreds).
pub const MAX_ADDRESSES: usize = 16;

/// `HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// A name or an address, without brackets.
    pub host: String,
    pub port: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("`{0}` is not HOST:PORT (an IPv6 address goes in brackets: [2001:db8::1]:443)")]
    NotHostPort(String),
    #[error("`{0}` is not a port (1 to 65535)")]
    Port(String),
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let not_host_port = || TargetError::NotHostPort(text.to_owned());
        let (host, port) = text.rsplit_once(':').ok_or_else(not_host_port)?;
        let host = match host.strip_prefix('[') {
            Some(inner) => {
                let inner = inner.strip_suffix(']').ok_or_else(not_host_port)?;
                inner
                    .parse::<std::net::Ipv6Addr>()
                    .map_err(|_| not_host_port())?;
                inner
            }
            // An IPv6 address without brackets: where its port starts is a guess.
            None if host.contains(':') || host.is_empty() => return Err(not_host_port()),
            None => host,
        };
        let port = match port.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(TargetError::Port(port.to_owned())),
        };
        Ok(Target {
            host: host.to_owned(),
            port,
        })
    }
}

/// Which address families to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Families {
    Both,
    V4,
    V6,
}

impl Families {
    fn admit(self, ip: IpAddr) -> bool {
        match self {
            Families::Both => true,
            Families::V4 => ip.is_ipv4(),
            Families::V6 => ip.is_ipv6(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Families::Both => "IP",
            Families::V4 => "IPv4",
            Families::V6 => "IPv6",
        }
    }
}

/// The addresses a target resolved to, in the resolver's order.
#[derive(Debug)]
pub struct Resolved {
    pub addresses: Vec<SocketAddr>,
    /// Addresses past [`MAX_ADDRESSES`], not tried.
    pub left_out: usize,
}

impl Target {
    /// The addresses to try: the address itself, or what the system's
    /// resolver (`/etc/hosts`, DNS) gives for the name.
    pub async fn resolve(&self, families: Families) -> anyhow::Result<Resolved> {
        let found: Vec<SocketAddr> = match self.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, self.port)],
            Err(_) => tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .with_context(|| format!("resolving {}", self.host))?
                .collect(),
        };
        Resolved::from_found(found, families)
            .with_context(|| format!("{} has no {} address", self.host, families.name()))
    }
}

impl Resolved {
    /// `found` of the admitted families, each once; `None` when none is.
    fn from_found(found: Vec<SocketAddr>, families: Families) -> Option<Resolved> {
        let mut addresses: Vec<SocketAddr> = Vec::new();
        for addr in found {
            if families.admit(addr.ip()) && !addresses.contains(&addr) {
                addresses.push(addr);
            }
        }
        if addresses.is_empty() {
            return None;
        }
        let left_out = addresses.len().saturating_sub(MAX_ADDRESSES);
        addresses.truncate(MAX_ADDRESSES);
        Some(Resolved {
            addresses,
            left_out,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: u16) -> Target {
        Target {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn names_and_addresses_of_both_families_parse() {
        assert_eq!("example.com:443".parse(), Ok(target("example.com", 443)));
        assert_eq!("10.0.0.5:8080".parse(), Ok(target("10.0.0.5", 8080)));
        assert_eq!("[2001:db8::1]:22".parse(), Ok(target("2001:db8::1", 22)));
        assert_eq!("[::1]:80".parse(), Ok(target("::1", 80)));
    }

    #[test]
    fn what_is_not_host_port_is_refused_with_the_reason() {
        for text in [
            "example.com",
            ":80",
            "2001:db8::1:80",
            "[2001:db8::1:80",
            "[nope]:80",
        ] {
            assert_eq!(
                text.parse::<Target>(),
                Err(TargetError::NotHostPort(text.to_owned())),
                "{text}"
            );
        }
        for (text, port) in [
            ("host:0", "0"),
            ("host:65536", "65536"),
            ("host:http", "http"),
        ] {
            assert_eq!(
                text.parse::<Target>(),
                Err(TargetError::Port(port.to_owned()))
            );
        }
    }

    #[test]
    fn families_filter_repeats_go_and_the_list_is_bounded() {
        let at = |text: &str| text.parse::<SocketAddr>().unwrap();
        let found = vec![at("10.0.0.1:80"), at("[2001:db8::1]:80"), at("10.0.0.1:80")];
        let both = Resolved::from_found(found.clone(), Families::Both).unwrap();
        assert_eq!(both.addresses, [at("10.0.0.1:80"), at("[2001:db8::1]:80")]);
        let v6 = Resolved::from_found(found.clone(), Families::V6).unwrap();
        assert_eq!(v6.addresses, [at("[2001:db8::1]:80")]);
        assert!(Resolved::from_found(vec![at("10.0.0.1:80")], Families::V6).is_none());
        let many = (1..=40u8)
            .map(|n| SocketAddr::from(([10, 0, 0, n], 80)))
            .collect();
        let bounded = Resolved::from_found(many, Families::V4).unwrap();
        assert_eq!(
            (bounded.addresses.len(), bounded.left_out),
            (MAX_ADDRESSES, 24)
        );
    }
}
