//! A TCP socket's addresses: its network namespace, local and remote
//! endpoint.
use std::{
    hash::{Hash, Hasher},
    net::{IpAddr, SocketAddr},
};

/// A network namespace's inode number, as `ls -l /proc/PID/ns/net` and
/// `lsns` show it.
pub type NetnsInode = u32;

/// The namespace unit tests put their sockets in.
#[cfg(test)]
pub const TEST_NETNS: NetnsInode = 4026531840;

/// `tuple` in a namespace other than [`TEST_NETNS`], for unit tests.
#[cfg(test)]
pub fn elsewhere(tuple: SocketTuple) -> SocketTuple {
    SocketTuple {
        netns: TEST_NETNS + 1,
        ..tuple
    }
}

/// Where a TCP socket lives: its network namespace and its local and remote
/// endpoints. Two namespaces can hold sockets with the same endpoints; they
/// are different sockets. A listener's remote endpoint is the unspecified
/// address with port 0, as `ss` prints `0.0.0.0:*`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct SocketTuple {
    pub netns: NetnsInode,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// In three words where the derived hash takes a dozen writes (address
/// kind, each octet array with its length, flow label and scope): the
/// trackers hash a tuple on most transitions. Tuples that differ only in
/// an IPv6 flow label or scope collide, which equality still tells apart.
impl Hash for SocketTuple {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let bits = |addr: &SocketAddr| match addr.ip() {
            IpAddr::V4(ip) => u128::from(ip.to_bits()),
            IpAddr::V6(ip) => ip.to_bits(),
        };
        state.write_u64(
            u64::from(self.netns) << 32
                | u64::from(self.local.port()) << 16
                | u64::from(self.remote.port()),
        );
        state.write_u128(bits(&self.local));
        state.write_u128(bits(&self.remote));
    }
}

impl SocketTuple {
    /// `"ipv4"` or `"ipv6"`, as socktrace's JSON names families.
    pub fn family_name(&self) -> &'static str {
        if self.local.is_ipv4() { "ipv4" } else { "ipv6" }
    }
}

impl SocketTuple {
    /// The same tuple with IPv4-mapped IPv6 addresses written as IPv4: a
    /// dual-stack listener's request socket is IPv4 while its child socket
    /// is IPv6 with mapped addresses.
    pub fn canonical(&self) -> SocketTuple {
        if self.local.is_ipv4() && self.remote.is_ipv4() {
            return *self;
        }
        let canonical = |addr: SocketAddr| SocketAddr::new(addr.ip().to_canonical(), addr.port());
        SocketTuple {
            netns: self.netns,
            local: canonical(self.local),
            remote: canonical(self.remote),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv6_becomes_ipv4_and_plain_ipv6_stays() {
        let mapped = SocketTuple {
            netns: TEST_NETNS,
            local: "[::ffff:127.0.0.1]:80".parse().unwrap(),
            remote: "[::ffff:10.0.0.2]:4000".parse().unwrap(),
        };
        assert_eq!(mapped.canonical().local, "127.0.0.1:80".parse().unwrap());
        assert_eq!(mapped.canonical().remote, "10.0.0.2:4000".parse().unwrap());
        let v6 = SocketTuple {
            netns: TEST_NETNS,
            local: "[::1]:80".parse().unwrap(),
            remote: "[2001:db8::1]:4000".parse().unwrap(),
        };
        assert_eq!(v6.canonical(), v6);
    }
}
