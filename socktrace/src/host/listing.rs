//! What the host is read for at a listing: sock_diag dumps of the states a
//! view follows and each namespace's own counters and settings, with when,
//! and when the next listing is due. The loop takes listings; a recording
//! keeps them; a replay hands them back.
use serde::{Deserialize, Serialize};

use crate::{
    host::namespaces::{Followed, FollowedDumps, NamespaceDump, Namespaces},
    host::netstat::TcpExt,
    host::sock_diag::DumpRequest,
    model::port_range::PortRange,
    model::tuple::NetnsInode,
    support::clock::monotonic_now_ns,
};

/// The shortest time between two listings.
pub const LISTING_EVERY_NS: u64 = 1_000_000_000;

/// Listings are at least this many times their cost (the dump, mostly the
/// kernel walking its hash table, and applying it) apart, so that they take
/// at most 2 % of a CPU: with many timewait sockets they come every few
/// seconds instead of every second. Expiries and kills are known to within
/// half the interval; reuses stay exact.
const LISTING_COST_FACTOR: u64 = 50;

/// What one network namespace's own counters and settings said; `None`
/// for what could not be read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceReading {
    /// `TcpExtListenOverflows`, `TcpExtListenDrops`,
    /// `TcpExtTCPTimeWaitOverflow`.
    pub listen_overflows: Option<u64>,
    pub listen_drops: Option<u64>,
    pub time_wait_overflows: Option<u64>,
    /// `net.ipv4.ip_local_port_range`.
    pub port_range: Option<PortRange>,
    /// `net.ipv4.tcp_max_tw_buckets`.
    pub max_time_wait: Option<u64>,
}

impl NamespaceReading {
    /// The calling thread's namespace's (run it in each with
    /// [`Followed::in_each`]).
    pub fn read_here() -> NamespaceReading {
        let tcp_ext = TcpExt::read_here();
        let sysctl =
            |name: &str| std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).ok();
        NamespaceReading {
            listen_overflows: tcp_ext.get("ListenOverflows"),
            listen_drops: tcp_ext.get("ListenDrops"),
            time_wait_overflows: tcp_ext.get("TCPTimeWaitOverflow"),
            port_range: sysctl("ip_local_port_range").and_then(|text| PortRange::parse(&text)),
            max_time_wait: sysctl("tcp_max_tw_buckets").and_then(|text| text.trim().parse().ok()),
        }
    }
}

/// One listing of every namespace followed that could be listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostListing {
    /// When the dumps began and ended (CLOCK_MONOTONIC).
    pub began_ns: u64,
    pub ended_ns: u64,
    pub dumps: Vec<NamespaceDump>,
    pub readings: Vec<(NetnsInode, NamespaceReading)>,
    /// How far apart listings are now (see [`ListingSchedule`]): the
    /// resolution of what listings tell.
    pub interval_ns: u64,
    /// What the listing before cost, its dumps and applying them.
    pub previous_cost_ns: Option<u64>,
}

/// A listing taken away from the [`Namespaces`], which
/// [`TakenListing::into_listing`] hands what it found.
#[derive(Debug)]
pub struct TakenListing {
    began_ns: u64,
    ended_ns: u64,
    dumps: FollowedDumps,
    readings: Vec<(NetnsInode, NamespaceReading)>,
    interval_ns: u64,
    previous_cost_ns: Option<u64>,
}

impl TakenListing {
    /// Dumps `request` and reads the counters in each namespace `followed`.
    /// Needs no access to the event loop's state, so that the ring can go
    /// on being drained meanwhile.
    pub fn take(followed: &Followed, request: &DumpRequest, schedule: &ListingSchedule) -> Self {
        let began_ns = monotonic_now_ns();
        let dumps = followed.dump_each(request);
        let readings = followed.in_each(NamespaceReading::read_here);
        TakenListing {
            began_ns,
            ended_ns: monotonic_now_ns(),
            dumps,
            readings,
            interval_ns: schedule.interval_ns,
            previous_cost_ns: schedule.last_cost_ns,
        }
    }

    /// The listing, its failures told to `namespaces`.
    pub fn into_listing(self, namespaces: &mut Namespaces) -> HostListing {
        HostListing {
            began_ns: self.began_ns,
            ended_ns: self.ended_ns,
            dumps: namespaces.periodic_listing(self.dumps, self.began_ns),
            readings: self.readings,
            interval_ns: self.interval_ns,
            previous_cost_ns: self.previous_cost_ns,
        }
    }
}

impl HostListing {
    /// What a dump of `request`, narrower than this listing's, would have
    /// listed: the sockets in its states, memory figures only if it asks.
    pub fn narrowed(&self, request: &DumpRequest) -> HostListing {
        HostListing {
            dumps: self
                .dumps
                .iter()
                .map(|dump| NamespaceDump {
                    netns: dump.netns,
                    sockets: dump
                        .sockets
                        .iter()
                        .filter(|socket| request.lists(socket.state))
                        .map(|socket| {
                            let mut socket = socket.clone();
                            if !request.has_memory() {
                                socket.drops = None;
                            }
                            socket
                        })
                        .collect(),
                })
                .collect(),
            ..self.clone()
        }
    }
}

/// When listings are due: at most every [`LISTING_EVERY_NS`], and at least
/// [`LISTING_COST_FACTOR`] times what the last one cost apart. Pure.
#[derive(Clone, Debug)]
pub struct ListingSchedule {
    next_ns: u64,
    interval_ns: u64,
    last_cost_ns: Option<u64>,
}

impl Default for ListingSchedule {
    fn default() -> Self {
        ListingSchedule {
            next_ns: 0,
            interval_ns: LISTING_EVERY_NS,
            last_cost_ns: None,
        }
    }
}

impl ListingSchedule {
    pub fn due(&self, now_ns: u64) -> bool {
        now_ns >= self.next_ns
    }

    /// A listing begun at `began_ns` cost `cost_ns`, dumps and applying.
    pub fn done(&mut self, began_ns: u64, cost_ns: u64) {
        self.interval_ns = (cost_ns * LISTING_COST_FACTOR).max(LISTING_EVERY_NS);
        self.next_ns = began_ns + self.interval_ns;
        self.last_cost_ns = Some(cost_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        host::sock_diag::{DiagSocket, DiagTimer},
        model::tcp_state::TcpState,
        model::tuple::{SocketTuple, TEST_NETNS},
    };

    const S: u64 = 1_000_000_000;

    #[test]
    fn listings_come_every_second_or_fifty_times_their_cost_apart() {
        let mut schedule = ListingSchedule::default();
        assert!(schedule.due(0));
        schedule.done(10 * S, 2_000_000);
        assert!(!schedule.due(10 * S + S - 1) && schedule.due(11 * S));
        schedule.done(11 * S, 100_000_000);
        assert_eq!(schedule.interval_ns, 5 * S);
        assert!(!schedule.due(15 * S) && schedule.due(16 * S));
        assert_eq!(schedule.last_cost_ns, Some(100_000_000));
    }

    fn socket(state: TcpState, port: u16) -> DiagSocket {
        DiagSocket {
            tuple: SocketTuple {
                netns: TEST_NETNS,
                local: SocketAddr::from(([127, 0, 0, 1], port)),
                remote: SocketAddr::from(([127, 0, 0, 1], 40000)),
            },
            state,
            timer: DiagTimer::Off,
            inode: 0,
            uid: 0,
            recv_queue: 0,
            send_queue: 0,
            drops: Some(3),
            v6only: false,
        }
    }

    use std::net::SocketAddr;

    #[test]
    fn a_narrower_request_sees_its_states_only_and_memory_only_if_asked() {
        let listing = HostListing {
            began_ns: 1,
            ended_ns: 2,
            dumps: vec![NamespaceDump {
                netns: TEST_NETNS,
                sockets: vec![
                    socket(TcpState::Listen, 80),
                    socket(TcpState::TimeWait, 81),
                    socket(TcpState::SynRecv, 82),
                ],
            }],
            readings: vec![(TEST_NETNS, NamespaceReading::default())],
            interval_ns: S,
            previous_cost_ns: None,
        };
        let narrowed = listing.narrowed(&DumpRequest::states(&[TcpState::TimeWait]));
        let ports: Vec<u16> = narrowed.dumps[0]
            .sockets
            .iter()
            .map(|s| s.tuple.local.port())
            .collect();
        assert_eq!(ports, [81]);
        assert_eq!(narrowed.dumps[0].sockets[0].drops, None);
        assert_eq!(narrowed.readings, listing.readings);
        let with_memory = listing
            .narrowed(&DumpRequest::states(&[TcpState::Listen, TcpState::SynRecv]).with_memory());
        assert_eq!(with_memory.dumps[0].sockets.len(), 2);
        assert_eq!(with_memory.dumps[0].sockets[0].drops, Some(3));
    }
}
