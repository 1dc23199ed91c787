//! Handshake attempts summed up per remote peer, per peer subnet (/24 or
//! /64) and per local listener: outcomes, retransmit distribution and
//! handshake latency. Peers and subnets are kept in bounded memory (a scan
//! or a spoofed SYN flood brings millions), listening ports exactly. Pure:
//! resolved attempts and listener counters in.
use std::{
    collections::{BTreeMap, HashMap},
    hash::Hash,
    net::{IpAddr, SocketAddr},
};

use crate::{
    model::cidr::Cidr,
    model::tuple::NetnsInode,
    state::counter_since::CounterSince,
    state::handshake_tracker::{Handshake, Outcome, Side},
    state::heavy_hitters::{HeavyHitters, Tally},
    state::latency_histogram::LatencyHistogram,
    state::top_list::TopList,
};

/// Retransmit counts are bucketed 0, 1, ... up to this one, which also
/// holds everything above it.
pub const RETRANSMIT_BUCKETS: usize = 7;

/// Remote peers, and remote subnets, kept per side: four times the most
/// rows `--top` shows. Past that, each new one takes the place of the one
/// with the fewest attempts, merged into the rest (see [`HeavyHitters`]).
pub const KEPT_PER_SIDE: usize = 4096;

/// The figures of one peer, subnet or listener.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Group {
    pub attempts: u64,
    /// By [`Outcome::index`].
    pub outcomes: [u64; Outcome::ALL.len()],
    /// Attempts by retransmit count, the last bucket holding "that many or
    /// more".
    pub retransmits: [u64; RETRANSMIT_BUCKETS],
    /// First SYN (or SYN-ACK) to success, for successes whose start was seen.
    pub latency: LatencyHistogram,
}

impl Group {
    fn record(&mut self, handshake: &Handshake) {
        self.attempts += 1;
        self.outcomes[handshake.outcome.index()] += 1;
        let bucket = (handshake.retransmits() as usize).min(RETRANSMIT_BUCKETS - 1);
        self.retransmits[bucket] += 1;
        if handshake.outcome.succeeded()
            && let Some(duration) = handshake.duration_ns()
        {
            self.latency.record_ns(duration);
        }
    }

    /// Attempts that did not get through.
    pub fn failed(&self) -> u64 {
        Outcome::ALL
            .iter()
            .filter(|o| !o.succeeded())
            .map(|o| self.outcomes[o.index()])
            .sum()
    }
}

impl Tally for Group {
    fn weight(&self) -> u64 {
        self.attempts
    }

    fn merge(&mut self, other: Group) {
        self.attempts += other.attempts;
        for (count, other) in self.outcomes.iter_mut().zip(other.outcomes) {
            *count += other;
        }
        for (count, other) in self.retransmits.iter_mut().zip(other.retransmits) {
            *count += other;
        }
        self.latency.merge(&other.latency);
    }
}

/// A peer's or a subnet's row in a summary list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupRow<'a, K> {
    pub side: Side,
    pub key: K,
    /// Its attempts since it was kept.
    pub group: &'a Group,
    /// At most this many of its attempts came before it was kept, counted
    /// in the merged rest: 0 unless the bound was reached.
    pub attempts_uncounted_max: u64,
}

/// What the bound merged of a list, both sides together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Merged {
    /// Peers (or subnets) merged into the rest; one merged, kept again and
    /// merged again counts twice.
    pub keys: u64,
    /// The attempts counted in the rest: in no row.
    pub attempts: u64,
}

/// A listening port's figures: its attempts and its accept queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListenerGroup {
    pub group: Group,
    /// Packets its listeners dropped since tracing began (`ss -m` `d`):
    /// SYNs and final ACKs refused with a full accept queue, and duplicate
    /// SYNs of connections already half-open.
    pub drops: u64,
    /// Longest accept queue a snapshot saw, and the queue's capacity (the
    /// `listen()` backlog): equal means connections were being refused.
    pub accept_queue_peak: u32,
    pub backlog: u32,
}

/// A listener as a sock_diag snapshot reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerSample {
    pub local: SocketAddr,
    /// Tells apart SO_REUSEPORT listeners on one address, and a listener
    /// from its restarted successor.
    pub inode: u32,
    pub drops: u32,
    pub accept_queue: u32,
    pub backlog: u32,
}

/// The namespaces' own counts of refused connections (`nstat`'s
/// `TcpExtListenOverflows` and `TcpExtListenDrops`), since tracing began,
/// added up over the namespaces followed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenCounters {
    /// SYNs and final ACKs dropped because an accept queue was full.
    pub overflows: u64,
    /// Every drop by a listener, overflows included.
    pub drops: u64,
}

/// The summary. See the module documentation.
#[derive(Debug)]
pub struct HandshakeSummary {
    /// By side, [`Side::Client`] first: at most [`KEPT_PER_SIDE`] each.
    peers: [HeavyHitters<IpAddr, Group>; 2],
    subnets: [HeavyHitters<Cidr, Group>; 2],
    /// Server attempts by local port (a listener and its dual-stack twin
    /// are one service): exact, at most the 65,536 ports.
    listeners: BTreeMap<u16, ListenerGroup>,
    /// Each listener's drop counter at the last snapshot: the listeners
    /// the kernel lists now.
    drop_counters: HashMap<(SocketAddr, u32), u32>,
    /// [`ListenCounters`] of every namespace followed.
    listen_overflows: CounterSince,
    listen_drops: CounterSince,
}

impl Default for HandshakeSummary {
    fn default() -> Self {
        Self::new()
    }
}

impl HandshakeSummary {
    pub fn new() -> Self {
        HandshakeSummary {
            peers: [(); 2].map(|()| HeavyHitters::new(KEPT_PER_SIDE)),
            subnets: [(); 2].map(|()| HeavyHitters::new(KEPT_PER_SIDE)),
            listeners: BTreeMap::new(),
            drop_counters: HashMap::new(),
            listen_overflows: CounterSince::new(),
            listen_drops: CounterSince::new(),
        }
    }

    pub fn record(&mut self, handshake: &Handshake) {
        let peer = handshake.tuple.remote.ip().to_canonical();
        let side = side_index(handshake.side);
        self.peers[side].update(peer, |group| group.record(handshake));
        self.subnets[side].update(Cidr::subnet_of(peer), |group| group.record(handshake));
        if handshake.side == Side::Server {
            self.listeners
                .entry(handshake.tuple.local.port())
                .or_default()
                .group
                .record(handshake);
        }
    }

    /// The listeners as a snapshot lists them now. Drops count from each
    /// listener's first observation (drops before tracing are not news);
    /// listeners no longer listed are forgotten, their drops kept.
    pub fn observe_listeners(&mut self, listeners: &[ListenerSample]) {
        let mut counters = HashMap::with_capacity(listeners.len());
        for listener in listeners {
            let key = (listener.local, listener.inode);
            let previous = self.drop_counters.get(&key).copied();
            counters.insert(key, listener.drops);
            let new_drops = previous.map_or(0, |p| listener.drops.saturating_sub(p));
            let full = listener.accept_queue > 0 && listener.accept_queue >= listener.backlog;
            let port = listener.local.port();
            if new_drops == 0 && !full && !self.listeners.contains_key(&port) {
                continue;
            }
            let group = self.listeners.entry(port).or_default();
            group.drops += u64::from(new_drops);
            group.accept_queue_peak = group.accept_queue_peak.max(listener.accept_queue);
            group.backlog = group.backlog.max(listener.backlog);
        }
        self.drop_counters = counters;
    }

    /// The counters read in `netns` now.
    pub fn observe_listen_counters(&mut self, netns: NetnsInode, now: ListenCounters) {
        self.listen_overflows.observe(netns, now.overflows);
        self.listen_drops.observe(netns, now.drops);
    }

    /// `netns` is gone: what its counters added stays.
    pub fn forget_namespace(&mut self, netns: NetnsInode) {
        self.listen_overflows.forget(netns);
        self.listen_drops.forget(netns);
    }

    /// The listen overflows and drops since each namespace was first
    /// read.
    pub fn listen_counters(&self) -> ListenCounters {
        ListenCounters {
            overflows: self.listen_overflows.total().unwrap_or(0),
            drops: self.listen_drops.total().unwrap_or(0),
        }
    }

    /// The `top` busiest remote peers of each side, clients first.
    pub fn peers(&self, top: usize) -> TopList<GroupRow<'_, IpAddr>> {
        busiest_per_side(&self.peers, top)
    }

    /// The `top` busiest remote subnets of each side, clients first.
    pub fn subnets(&self, top: usize) -> TopList<GroupRow<'_, Cidr>> {
        busiest_per_side(&self.subnets, top)
    }

    /// The peers merged beyond [`KEPT_PER_SIDE`].
    pub fn peers_merged(&self) -> Merged {
        merged(&self.peers)
    }

    /// The subnets merged beyond [`KEPT_PER_SIDE`].
    pub fn subnets_merged(&self) -> Merged {
        merged(&self.subnets)
    }

    /// The `top` busiest local listening ports: most attempts and drops
    /// together first, then by port.
    pub fn listeners(&self, top: usize) -> TopList<(u16, &ListenerGroup)> {
        let listeners = self.listeners.iter().map(|(port, group)| (*port, group));
        TopList::first_by(listeners.collect(), top, |(a_port, a), (b_port, b)| {
            (b.group.attempts + b.drops)
                .cmp(&(a.group.attempts + a.drops))
                .then(a_port.cmp(b_port))
        })
    }
}

/// Where a side's groups are in the per-side arrays.
fn side_index(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Server => 1,
    }
}

/// The `top` groups with the most attempts of each side (ties by key),
/// clients first.
fn busiest_per_side<K: Copy + Ord + Hash>(
    groups: &[HeavyHitters<K, Group>; 2],
    top: usize,
) -> TopList<GroupRow<'_, K>> {
    [Side::Client, Side::Server]
        .into_iter()
        .map(|side| {
            let busiest = groups[side_index(side)].top(top);
            TopList {
                rows: busiest
                    .rows
                    .into_iter()
                    .map(|row| GroupRow {
                        side,
                        key: row.key,
                        group: row.value,
                        attempts_uncounted_max: row.uncounted_max,
                    })
                    .collect(),
                omitted: busiest.omitted,
            }
        })
        .fold(TopList::default(), TopList::chain)
}

fn merged<K: Copy + Ord + Hash>(groups: &[HeavyHitters<K, Group>; 2]) -> Merged {
    groups.iter().fold(Merged::default(), |sum, side| Merged {
        keys: sum.keys + side.merged(),
        attempts: sum.attempts + side.rest().attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tuple::{SocketTuple, TEST_NETNS};

    fn attempt(side: Side, local: &str, remote: &str, outcome: Outcome, rtx: usize) -> Handshake {
        Handshake {
            side,
            tuple: SocketTuple {
                netns: TEST_NETNS,
                local: local.parse().unwrap(),
                remote: remote.parse().unwrap(),
            },
            owner: None,
            outcome,
            errno: None,
            started_ns: Some(0),
            ended_ns: 1_000_000 + rtx as u64 * 1_000_000_000,
            retransmits_ns: (1..=rtx as u64).map(|i| i * 1_000_000_000).collect(),
            kernel_retransmits: None,
        }
    }

    #[test]
    fn peers_and_subnets_count_outcomes_retries_and_latency() {
        let mut summary = HandshakeSummary::new();
        for host in 1..=3 {
            let remote = format!("10.0.7.{host}:443");
            summary.record(&attempt(
                Side::Client,
                "10.0.0.1:40000",
                &remote,
                Outcome::Established,
                0,
            ));
        }
        summary.record(&attempt(
            Side::Client,
            "10.0.0.1:40001",
            "10.0.7.1:443",
            Outcome::Established,
            1,
        ));
        summary.record(&attempt(
            Side::Client,
            "10.0.0.1:40002",
            "10.0.7.1:443",
            Outcome::Timeout,
            9,
        ));
        summary.record(&attempt(
            Side::Client,
            "10.0.0.1:40003",
            "192.0.2.9:80",
            Outcome::Refused,
            0,
        ));

        let peers = summary.peers(10).rows;
        let GroupRow {
            side,
            key: busiest,
            group,
            attempts_uncounted_max,
        } = peers[0];
        assert_eq!((side, busiest), (Side::Client, "10.0.7.1".parse().unwrap()));
        assert_eq!(attempts_uncounted_max, 0, "no bound reached");
        assert_eq!(group.attempts, 3);
        assert_eq!(group.outcomes[Outcome::Established.index()], 2);
        assert_eq!(group.outcomes[Outcome::Timeout.index()], 1);
        assert_eq!(group.failed(), 1);
        assert_eq!(group.retransmits, [1, 1, 0, 0, 0, 0, 1]);
        assert_eq!(group.latency.count(), 2, "only successes have a latency");

        let subnets = summary.subnets(10).rows;
        assert_eq!(subnets[0].key.to_string(), "10.0.7.0/24");
        assert_eq!(subnets[0].group.attempts, 5);
        assert_eq!(subnets[1].key.to_string(), "192.0.2.0/24");
        assert_eq!(
            summary.listeners(10).rows.len(),
            0,
            "clients have no listener"
        );
        let top = summary.peers(1);
        assert_eq!(top.rows.len(), 1);
        assert_eq!(top.rows[0].key, busiest);
        assert_eq!(top.omitted, 3);
        assert_eq!(summary.peers_merged(), Merged::default());
    }

    #[test]
    fn server_attempts_group_by_listening_port_across_families() {
        let mut summary = HandshakeSummary::new();
        summary.record(&attempt(
            Side::Server,
            "127.0.0.1:8080",
            "127.0.0.1:5000",
            Outcome::Completed,
            0,
        ));
        summary.record(&attempt(
            Side::Server,
            "[::1]:8080",
            "[::1]:5001",
            Outcome::Expired,
            2,
        ));
        let listeners = summary.listeners(10).rows;
        assert_eq!(listeners.len(), 1);
        let (port, listener) = listeners[0];
        assert_eq!(port, 8080);
        assert_eq!(listener.group.attempts, 2);
        assert_eq!(listener.group.outcomes[Outcome::Expired.index()], 1);
        assert_eq!(listener.group.retransmits[2], 1);
    }

    #[test]
    fn listener_drops_count_from_first_sight() {
        let mut summary = HandshakeSummary::new();
        let v4: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let v6: SocketAddr = "[::]:8080".parse().unwrap();
        let sample = |local, inode, drops, accept_queue| ListenerSample {
            local,
            inode,
            drops,
            accept_queue,
            backlog: 128,
        };
        summary.observe_listeners(&[sample(v4, 1, 40, 3)]);
        assert_eq!(
            summary.listeners(10).rows.len(),
            0,
            "old drops are not news"
        );
        summary.observe_listeners(&[sample(v4, 1, 45, 128), sample(v6, 2, 7, 0)]);
        summary.observe_listeners(&[sample(v4, 1, 47, 9), sample(v6, 2, 9, 0)]);
        // The v4 listener restarts: its successor's counter starts at 0.
        summary.observe_listeners(&[sample(v4, 3, 0, 0), sample(v6, 2, 9, 0)]);
        summary.observe_listeners(&[sample(v4, 3, 1, 0), sample(v6, 2, 9, 0)]);
        let (port, listener) = summary.listeners(10).rows[0];
        assert_eq!(port, 8080);
        assert_eq!(listener.drops, 5 + 2 + 2 + 1);
        assert_eq!((listener.accept_queue_peak, listener.backlog), (128, 128));
        assert_eq!(listener.group.attempts, 0);
    }

    #[test]
    fn namespace_listen_counters_count_from_first_sight() {
        let mut summary = HandshakeSummary::new();
        assert_eq!(summary.listen_counters(), ListenCounters::default());
        let counters = |overflows, drops| ListenCounters { overflows, drops };
        summary.observe_listen_counters(TEST_NETNS, counters(12, 13));
        summary.observe_listen_counters(TEST_NETNS, counters(20, 25));
        assert_eq!(summary.listen_counters(), counters(8, 12));
        // Another namespace adds its own, from its own first reading, and
        // keeps them once gone.
        let other = TEST_NETNS + 1;
        summary.observe_listen_counters(other, counters(100, 100));
        summary.observe_listen_counters(other, counters(101, 103));
        summary.forget_namespace(other);
        assert_eq!(summary.listen_counters(), counters(9, 15));
    }
}
