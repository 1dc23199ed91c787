//! The kernel's TCP extension counters (`/proc/net/netstat`, what
//! `nstat` and `netstat -s` read) of one network namespace.
use std::collections::HashMap;

/// The counters of the reading thread's namespace (`/proc/net` follows the
/// process's main thread, which may be in another one).
const NETSTAT: &str = "/proc/thread-self/net/netstat";

/// The `TcpExt` counters by name (`ListenOverflows`, `ListenDrops`...).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpExt(HashMap<String, u64>);

impl TcpExt {
    /// Reads the counters of the calling thread's namespace (run it in one
    /// with [`Followed::in_each`]); empty when they cannot be read.
    ///
    /// [`Followed::in_each`]: crate::host::namespaces::Followed::in_each
    pub fn read_here() -> TcpExt {
        std::fs::read_to_string(NETSTAT)
            .map(|text| Self::parse(&text))
            .unwrap_or_default()
    }

    /// Parses the file's `TcpExt:` header line and the value line after it.
    pub fn parse(text: &str) -> TcpExt {
        let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
        let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
            return TcpExt::default();
        };
        let counters = names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
            .filter_map(|(name, value)| Some((name.to_owned(), value.parse().ok()?)))
            .collect();
        TcpExt(counters)
    }

    pub fn get(&self, name: &str) -> Option<u64> {
        self.0.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\n\
TcpExt: 0 12 13\n\
IpExt: InNoRoutes InTruncatedPkts\n\
IpExt: 0 0\n";

    #[test]
    fn parses_tcpext_only() {
        let counters = TcpExt::parse(SAMPLE);
        assert_eq!(counters.get("ListenOverflows"), Some(12));
        assert_eq!(counters.get("ListenDrops"), Some(13));
        assert_eq!(counters.get("InNoRoutes"), None, "IpExt is not TcpExt");
        assert_eq!(TcpExt::parse("garbage"), TcpExt::default());
    }

    #[test]
    fn this_namespace_has_listen_counters() {
        let counters = TcpExt::read_here();
        assert!(counters.get("ListenOverflows").is_some(), "{counters:?}");
    }
}
