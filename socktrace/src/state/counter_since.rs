//! A kernel counter that every network namespace keeps for itself (a
//! `TcpExt` counter such as `TCPTimeWaitOverflow`), added up over the
//! namespaces followed, each counted from when it was first read. Pure:
//! readings in, a total out.
use std::collections::BTreeMap;

use crate::model::tuple::NetnsInode;

/// See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterSince {
    /// Per namespace followed now: the value first read and the latest.
    namespaces: BTreeMap<NetnsInode, (u64, u64)>,
    /// What namespaces now gone added while they were followed.
    gone: u64,
    /// Whether any namespace was ever read.
    read: bool,
}

impl CounterSince {
    pub fn new() -> Self {
        Self::default()
    }

    /// The value read in `netns` now; its first reading is its baseline.
    pub fn observe(&mut self, netns: NetnsInode, value: u64) {
        self.read = true;
        let (_, latest) = self.namespaces.entry(netns).or_insert((value, value));
        *latest = value;
    }

    /// `netns` is gone: what it added stays in the total.
    pub fn forget(&mut self, netns: NetnsInode) {
        if let Some((first, latest)) = self.namespaces.remove(&netns) {
            self.gone += latest.saturating_sub(first);
        }
    }

    /// What all namespaces added since each was first read; `None` before
    /// any could be read.
    pub fn total(&self) -> Option<u64> {
        self.read.then(|| {
            self.gone
                + self
                    .namespaces
                    .values()
                    .map(|(first, latest)| latest.saturating_sub(*first))
                    .sum::<u64>()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: NetnsInode = 4026531840;
    const CONTAINER: NetnsInode = 4026532281;

    #[test]
    fn unknown_until_read_then_counted_from_each_first_reading() {
        let mut counter = CounterSince::new();
        assert_eq!(counter.total(), None);
        counter.observe(HOST, 100);
        assert_eq!(counter.total(), Some(0), "what came before is not ours");
        counter.observe(HOST, 105);
        // A container followed later starts from its own first reading.
        counter.observe(CONTAINER, 7);
        counter.observe(CONTAINER, 10);
        assert_eq!(counter.total(), Some(5 + 3));
    }

    #[test]
    fn a_namespace_gone_keeps_its_share() {
        let mut counter = CounterSince::new();
        counter.observe(CONTAINER, 1);
        counter.observe(CONTAINER, 4);
        counter.observe(HOST, 0);
        counter.forget(CONTAINER);
        counter.observe(HOST, 2);
        assert_eq!(counter.total(), Some(3 + 2));
        // A namespace with the same inode later is a new one.
        counter.observe(CONTAINER, 50);
        assert_eq!(counter.total(), Some(5));
        counter.forget(HOST);
        counter.forget(HOST);
        assert_eq!(counter.total(), Some(5), "forgotten once");
    }
}
