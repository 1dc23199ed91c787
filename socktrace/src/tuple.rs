//! A TCP socket's addresses: local and remote endpoint.
use std::net::SocketAddr;

/// Local and remote endpoint of a TCP socket. A listener's remote endpoint is
/// the unspecified address with port 0, as `ss` prints `0.0.0.0:*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SocketTuple {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl SocketTuple {
    /// `"ipv4"` or `"ipv6"`, as socktrace's JSON names families.
    pub fn family_name(&self) -> &'static str {
        if self.local.is_ipv4() { "ipv4" } else { "ipv6" }
    }
}
