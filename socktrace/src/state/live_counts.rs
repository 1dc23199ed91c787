//! What the live state counts for the agent's metrics: transitions by old
//! and new state, handshakes by side and outcome, their retransmits and
//! durations (also per peer prefix asked for), TIME-WAIT entries, ends and
//! lifetimes. Pure: fed what the pipeline returns.
use std::{collections::BTreeMap, net::IpAddr};

use crate::{
    model::cidr::Cidr,
    model::tcp_state::TcpState,
    model::tuple::NetnsInode,
    state::handshake_tracker::{Handshake, Outcome, Retrying, Side},
    state::table::Transition,
    state::time_wait_tracker::{TimeWaitEnd, TimeWaitOutcome},
};

/// Upper bounds (seconds) of the handshake duration buckets: the fast
/// answers, then the kernel's SYN retransmit schedule (1, 3, 7, 15... s).
pub const HANDSHAKE_BOUNDS: [f64; 13] = [
    0.0005, 0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0, 127.0,
];

/// Upper bounds (seconds) of the TIME-WAIT lifetime buckets, around the
/// kernel's 60 s: a shorter life was reused or killed.
pub const TIME_WAIT_BOUNDS: [f64; 10] = [0.1, 1.0, 10.0, 30.0, 50.0, 59.0, 61.0, 65.0, 90.0, 300.0];

/// Counts of values at or below each bound, their sum and number.
#[derive(Clone, Debug, PartialEq)]
pub struct Buckets<const N: usize> {
    pub bounds: &'static [f64; N],
    /// Not cumulative: `at_most[i]` counts values in `(bounds[i-1], bounds[i]]`.
    pub at_most: [u64; N],
    pub sum: f64,
    pub count: u64,
}

impl<const N: usize> Buckets<N> {
    pub const fn new(bounds: &'static [f64; N]) -> Self {
        Buckets {
            bounds,
            at_most: [0; N],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        if let Some(bucket) = self.bounds.iter().position(|&bound| value <= bound) {
            self.at_most[bucket] += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    /// `(bound, values above the previous bound and at most this one)`;
    /// the rest, above the last bound, is [`Buckets::count`] less these.
    pub fn pairs(&self) -> Vec<(f64, u64)> {
        self.bounds.iter().copied().zip(self.at_most).collect()
    }
}

/// Handshakes of one side.
#[derive(Clone, Debug, PartialEq)]
pub struct SideCounts {
    /// Resolved attempts by [`Outcome::index`].
    pub outcomes: [u64; Outcome::ALL.len()],
    /// SYN (client) or SYN-ACK (server) retransmits seen.
    pub retransmits: u64,
    /// First SYN (or SYN-ACK) to the outcome, when seen.
    pub seconds: Buckets<{ HANDSHAKE_BOUNDS.len() }>,
}

impl SideCounts {
    const fn new() -> Self {
        SideCounts {
            outcomes: [0; Outcome::ALL.len()],
            retransmits: 0,
            seconds: Buckets::new(&HANDSHAKE_BOUNDS),
        }
    }
}

/// See the module documentation.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveCounts {
    /// By the old state's then the new state's [`TcpState::index`].
    pub transitions: [[u64; TcpState::COUNT]; TcpState::COUNT],
    pub client: SideCounts,
    pub server: SideCounts,
    pub time_wait_entries: u64,
    /// By [`TimeWaitEnd::index`].
    pub time_wait_ends: [u64; TimeWaitEnd::ALL.len()],
    pub time_wait_seconds: Buckets<{ TIME_WAIT_BOUNDS.len() }>,
    /// Handshakes with remotes in each prefix asked for, client side then
    /// server side (a remote in two prefixes counts in both).
    pub peers: Vec<(Cidr, [SideCounts; 2])>,
    /// Handshake outcomes per network namespace, client side then server
    /// side, when asked for; a namespace's go with it.
    pub by_namespace: Option<BTreeMap<NetnsInode, [[u64; Outcome::ALL.len()]; 2]>>,
}

impl Default for LiveCounts {
    fn default() -> Self {
        LiveCounts {
            transitions: [[0; TcpState::COUNT]; TcpState::COUNT],
            client: SideCounts::new(),
            server: SideCounts::new(),
            time_wait_entries: 0,
            time_wait_ends: [0; TimeWaitEnd::ALL.len()],
            time_wait_seconds: Buckets::new(&TIME_WAIT_BOUNDS),
            peers: Vec::new(),
            by_namespace: None,
        }
    }
}

impl LiveCounts {
    pub fn side(&self, side: Side) -> &SideCounts {
        match side {
            Side::Client => &self.client,
            Side::Server => &self.server,
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut SideCounts {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    /// Counts the handshakes of remotes in each of `peers` apart too.
    pub fn count_peers(&mut self, peers: &[Cidr]) {
        self.peers = peers
            .iter()
            .map(|&peer| (peer, [SideCounts::new(), SideCounts::new()]))
            .collect();
    }

    /// Counts the handshake outcomes of each namespace apart too.
    pub fn count_namespaces(&mut self) {
        self.by_namespace = Some(BTreeMap::new());
    }

    /// `netns` is gone: its counts go with it.
    pub fn forget_namespace(&mut self, netns: NetnsInode) {
        if let Some(by_namespace) = &mut self.by_namespace {
            by_namespace.remove(&netns);
        }
    }

    /// The counts of each peer prefix holding `remote`, on `side`.
    fn peer_sides(&mut self, remote: IpAddr, side: Side) -> impl Iterator<Item = &mut SideCounts> {
        let index = side_index(side);
        self.peers
            .iter_mut()
            .filter(move |(peer, _)| peer.contains(remote))
            .map(move |(_, sides)| &mut sides[index])
    }

    /// Attempts of both sides that did not end established or completed.
    pub fn failed_handshakes(&self) -> u64 {
        Outcome::ALL
            .iter()
            .filter(|outcome| !outcome.succeeded())
            .map(|o| self.client.outcomes[o.index()] + self.server.outcomes[o.index()])
            .sum()
    }

    pub fn transition(&mut self, t: &Transition) {
        self.transitions[t.old_state.index()][t.new_state.index()] += 1;
    }

    pub fn handshake(&mut self, h: &Handshake) {
        let seconds = h.duration_ns().map(|ns| ns as f64 / 1e9);
        let count = |side: &mut SideCounts| {
            side.outcomes[h.outcome.index()] += 1;
            if let Some(seconds) = seconds {
                side.seconds.observe(seconds);
            }
        };
        count(self.side_mut(h.side));
        self.peer_sides(h.tuple.remote.ip(), h.side).for_each(count);
        if let Some(by_namespace) = &mut self.by_namespace {
            by_namespace.entry(h.tuple.netns).or_default()[side_index(h.side)]
                [h.outcome.index()] += 1;
        }
    }

    pub fn retransmit(&mut self, r: &Retrying) {
        self.side_mut(r.side).retransmits += 1;
        self.peer_sides(r.tuple.remote.ip(), r.side)
            .for_each(|side| side.retransmits += 1);
    }

    pub fn time_wait(&mut self, outcome: &TimeWaitOutcome) {
        self.time_wait_entries += outcome.entered.len() as u64;
        for ended in &outcome.ended {
            self.time_wait_ends[ended.end.index()] += 1;
            if let Some(ns) = ended.lifetime_ns() {
                self.time_wait_seconds.observe(ns as f64 / 1e9);
            }
        }
    }
}

/// Index of `side` in [`LiveCounts::peers`]' pairs.
pub fn side_index(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Server => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_each_value_once_and_add_up() {
        let mut buckets = Buckets::new(&[1.0, 5.0]);
        for value in [0.5, 1.0, 3.0, 9.0] {
            buckets.observe(value);
        }
        assert_eq!(buckets.pairs(), [(1.0, 2), (5.0, 1)]);
        assert_eq!(buckets.count, 4, "9 s is only in +Inf");
        assert_eq!(buckets.sum, 13.5);
    }
}
