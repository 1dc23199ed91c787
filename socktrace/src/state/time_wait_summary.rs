//! The TIME-WAIT summary: how many timewait sockets there are, how fast
//! they come and go, how long they live, who holds them, and how close each
//! destination is to running out of ephemeral ports. Pure: ends and the
//! tracker's sockets in, a report out.
use std::{
    collections::{BTreeMap, HashMap},
    hash::Hash,
    net::{IpAddr, SocketAddr},
};

use crate::{
    model::owner::{ContainerLabel, Owner},
    model::port_range::PortRange,
    model::tuple::NetnsInode,
    state::close_wait_watch::CloseWaitCounts,
    state::latency_histogram::LatencyHistogram,
    state::table::Opening,
    state::time_wait_tracker::{EndedTimeWait, TimeWaitCounts, TimeWaitEnd, TimeWaitSocket},
    state::top_list::TopList,
};

/// What the summary reports besides the tracker's sockets: read from the
/// namespaces, the CLOSE-WAIT watch and the listing schedule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Each namespace's own `ip_local_port_range` (a container may narrow
    /// or move it), for the namespaces it could be read in.
    pub port_ranges: BTreeMap<NetnsInode, PortRange>,
    /// `TcpExtTCPTimeWaitOverflow` since tracing began: timewait sockets the
    /// kernel refused to create (`tcp_max_tw_buckets` reached).
    pub overflows: Option<u64>,
    pub close_wait: CloseWaitCounts,
    /// How often timewait sockets are listed now: the resolution of the
    /// expiries and kills.
    pub listing_interval_ns: u64,
}

/// Timewait sockets held towards one destination from one local address
/// with ephemeral ports: connect(2) to that destination fails with
/// `EADDRNOTAVAIL` once they fill the range (unless `tcp_tw_reuse` lets a
/// new connection take one over). Connections known to have been accepted
/// are left out; those whose opening predates tracing count when their
/// local port is in the range.
#[derive(Clone, Debug, PartialEq)]
pub struct PortPressure {
    /// Ports are per namespace: the same addresses in two namespaces are
    /// two destinations, each against its namespace's range.
    pub netns: NetnsInode,
    pub local: IpAddr,
    pub remote: SocketAddr,
    pub time_wait: u64,
    pub ephemeral_ports: u32,
}

impl PortPressure {
    /// Share of the range held, 0 to 1.
    pub fn ratio(&self) -> f64 {
        self.time_wait as f64 / f64::from(self.ephemeral_ports)
    }
}

/// Ephemeral ports held by timewait sockets, per destination: what
/// [`PortPressure`] ranks. As many entries as the sockets added.
#[derive(Debug)]
pub struct PortsHeld<'a> {
    port_ranges: &'a BTreeMap<NetnsInode, PortRange>,
    destinations: HashMap<(NetnsInode, IpAddr, SocketAddr), u64>,
}

impl<'a> PortsHeld<'a> {
    /// Against each namespace's own range.
    pub fn new(port_ranges: &'a BTreeMap<NetnsInode, PortRange>) -> Self {
        PortsHeld {
            port_ranges,
            destinations: HashMap::new(),
        }
    }

    pub fn add(&mut self, socket: &TimeWaitSocket) {
        let tuple = &socket.tuple;
        // A passive open's local port is its listener's, even when that
        // lies in the ephemeral range.
        if socket.opening != Some(Opening::Passive)
            && let Some(range) = self.port_ranges.get(&tuple.netns)
            && range.contains(tuple.local.port())
        {
            *self
                .destinations
                .entry((tuple.netns, tuple.local.ip(), tuple.remote))
                .or_insert(0) += 1;
        }
    }

    /// The `top` destinations by share of their range held, most first
    /// (ties in a stable order).
    pub fn top(self, top: usize) -> TopList<PortPressure> {
        let port_ranges = self.port_ranges;
        let pressure: Vec<PortPressure> = self
            .destinations
            .into_iter()
            .filter_map(|((netns, local, remote), time_wait)| {
                Some(PortPressure {
                    netns,
                    local,
                    remote,
                    time_wait,
                    ephemeral_ports: port_ranges.get(&netns)?.size(),
                })
            })
            .collect();
        TopList::first_by(pressure, top, |a, b| {
            b.ratio()
                .total_cmp(&a.ratio())
                .then_with(|| (a.netns, a.local, a.remote).cmp(&(b.netns, b.local, b.remote)))
        })
    }
}

/// One summary.
#[derive(Clone, Debug, PartialEq)]
pub struct TimeWaitReport {
    /// Since the previous report (or the start).
    pub interval_ns: u64,
    pub counts: TimeWaitCounts,
    /// Entries confirmed and ends in the interval.
    pub entered: u64,
    pub ended: u64,
    /// Ends since the start, by [`TimeWaitEnd::index`].
    pub ends: [u64; TimeWaitEnd::ALL.len()],
    /// Lifetimes of the ended sockets whose entry was traced, since the
    /// start, in milliseconds.
    pub lifetime_p50_ms: Option<f64>,
    pub lifetime_p99_ms: Option<f64>,
    pub lifetime_max_ms: Option<f64>,
    /// Timewait sockets (either substate) held per local port, per remote
    /// endpoint, per owner, per container or service: the `top` most.
    pub top_local_ports: TopList<(u16, u64)>,
    pub top_remotes: TopList<(SocketAddr, u64)>,
    pub top_owners: TopList<(Option<Owner>, u64)>,
    pub top_containers: TopList<(ContainerLabel, u64)>,
    /// The `top` destinations by share of the ephemeral range held.
    pub port_pressure: TopList<PortPressure>,
    pub observed: Observed,
}

impl TimeWaitReport {
    pub fn entered_per_second(&self) -> f64 {
        per_second(self.entered, self.interval_ns)
    }

    pub fn ended_per_second(&self) -> f64 {
        per_second(self.ended, self.interval_ns)
    }
}

fn per_second(count: u64, interval_ns: u64) -> f64 {
    if interval_ns == 0 {
        return 0.0;
    }
    count as f64 * 1e9 / interval_ns as f64
}

/// Running totals between reports.
#[derive(Clone, Debug)]
pub struct TimeWaitSummary {
    lifetimes: LatencyHistogram,
    max_lifetime_ns: Option<u64>,
    ends: [u64; TimeWaitEnd::ALL.len()],
    entered: u64,
    ended: u64,
    interval_began_ns: u64,
}

impl TimeWaitSummary {
    pub fn new(now_ns: u64) -> Self {
        TimeWaitSummary {
            lifetimes: LatencyHistogram::default(),
            max_lifetime_ns: None,
            ends: [0; TimeWaitEnd::ALL.len()],
            entered: 0,
            ended: 0,
            interval_began_ns: now_ns,
        }
    }

    pub fn record_entered(&mut self) {
        self.entered += 1;
    }

    pub fn record_ended(&mut self, ended: &EndedTimeWait) {
        self.ended += 1;
        self.ends[ended.end.index()] += 1;
        if let Some(lifetime) = ended.lifetime_ns() {
            self.lifetimes.record_ns(lifetime);
            self.max_lifetime_ns = self.max_lifetime_ns.max(Some(lifetime));
        }
    }

    /// The report at `now_ns` over `sockets` (the tracker's, filtered), and
    /// the start of a new interval.
    pub fn report<'a>(
        &mut self,
        now_ns: u64,
        sockets: impl Iterator<Item = &'a TimeWaitSocket>,
        observed: Observed,
        top: usize,
    ) -> TimeWaitReport {
        let mut counts = TimeWaitCounts::default();
        // Each as many as `sockets`: the kernel's timewait sockets.
        let mut local_ports = HashMap::new();
        let mut remotes = HashMap::new();
        let mut owners = HashMap::new();
        let mut containers = HashMap::new();
        let mut held = PortsHeld::new(&observed.port_ranges);
        for socket in sockets {
            counts.add(socket);
            let tuple = &socket.tuple;
            *local_ports.entry(tuple.local.port()).or_insert(0) += 1;
            *remotes.entry(tuple.remote).or_insert(0) += 1;
            *owners.entry(socket.owner.clone()).or_insert(0) += 1;
            if let Some(label) = socket.owner.as_ref().and_then(|o| o.container.clone()) {
                *containers.entry(label).or_insert(0) += 1;
            }
            held.add(socket);
        }
        let port_pressure = held.top(top);
        let report = TimeWaitReport {
            interval_ns: now_ns.saturating_sub(self.interval_began_ns),
            counts,
            entered: self.entered,
            ended: self.ended,
            ends: self.ends,
            lifetime_p50_ms: self.lifetimes.quantile_ms(0.5),
            lifetime_p99_ms: self.lifetimes.quantile_ms(0.99),
            lifetime_max_ms: self.max_lifetime_ns.map(|ns| ns as f64 / 1e6),
            top_local_ports: most(local_ports, top),
            top_remotes: most(remotes, top),
            top_owners: most(owners, top),
            top_containers: most(containers, top),
            port_pressure,
            observed,
        };
        self.entered = 0;
        self.ended = 0;
        self.interval_began_ns = now_ns;
        report
    }
}

/// The `top` keys with the highest counts, highest first; ties in key
/// order so that reports are stable.
fn most<K: Hash + Eq + Ord>(counts: HashMap<K, u64>, top: usize) -> TopList<(K, u64)> {
    TopList::first_by(counts.into_iter().collect(), top, |a, b| {
        b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        kernel::event::{StateEvent, TaskContext},
        model::owner::Comm,
        model::tcp_state::TcpState,
        model::tuple::{SocketTuple, TEST_NETNS, elsewhere},
        state::table::SocketTable,
        state::time_wait_tracker::{ListedTimeWait, ListingTime, TimeWaitTracker},
    };

    const S: u64 = 1_000_000_000;

    /// A listing that takes no time.
    fn at(ns: u64) -> ListingTime {
        ListingTime {
            began_ns: ns,
            ended_ns: ns,
        }
    }

    fn owner(pid: u32, comm: &str) -> Owner {
        Owner {
            pid,
            comm: Comm::from_text(comm),
            container: None,
        }
    }

    /// A tracker holding one confirmed timewait socket per `(local,
    /// remote, owner)`, entered at 1 s and listed at 2 s.
    fn tracker(sockets: &[(&str, &str, Owner)]) -> TimeWaitTracker {
        let sockets: Vec<_> = sockets
            .iter()
            .map(|(local, remote, owner)| (TEST_NETNS, *local, *remote, owner.clone()))
            .collect();
        tracker_in(&sockets)
    }

    /// As [`tracker`], each socket in its namespace.
    fn tracker_in(sockets: &[(NetnsInode, &str, &str, Owner)]) -> TimeWaitTracker {
        let mut table = SocketTable::new();
        let mut tracker = TimeWaitTracker::new();
        let mut listed: BTreeMap<NetnsInode, Vec<ListedTimeWait>> = sockets
            .iter()
            .map(|(netns, ..)| (*netns, Vec::new()))
            .collect();
        for &netns in listed.keys() {
            tracker.on_listing(netns, &[], at(0));
        }
        for (i, (netns, local, remote, owner)) in sockets.iter().enumerate() {
            let tuple = SocketTuple {
                netns: *netns,
                local: local.parse().unwrap(),
                remote: remote.parse().unwrap(),
            };
            for (old, new, context) in [
                (
                    TcpState::Established,
                    TcpState::FinWait1,
                    TaskContext::Process,
                ),
                (TcpState::FinWait1, TcpState::FinWait2, TaskContext::Softirq),
                (TcpState::FinWait2, TcpState::Close, TaskContext::Softirq),
            ] {
                let event = StateEvent {
                    ts_ns: S,
                    skaddr: 0x1000 + i as u64,
                    tuple,
                    old_state: old,
                    new_state: new,
                    task: owner.clone(),
                    context,
                    error: 0,
                    soft_error: 0,
                };
                tracker.on_transition(&event, &table.apply(&event));
            }
            listed.entry(*netns).or_default().push(ListedTimeWait {
                tuple,
                substate: TcpState::TimeWait,
                expires_ms: 59_000,
            });
        }
        for (netns, listed) in &listed {
            tracker.on_listing(*netns, listed, at(2 * S));
        }
        tracker
    }

    /// Each namespace's own range: `TEST_NETNS` keeps 100 ports, the other
    /// 1000.
    fn two_ranges() -> Observed {
        Observed {
            port_ranges: [
                (TEST_NETNS, PortRange::parse("40000 40099").unwrap()),
                (elsewhere_netns(), PortRange::parse("40000 40999").unwrap()),
            ]
            .into(),
            ..Default::default()
        }
    }

    fn elsewhere_netns() -> NetnsInode {
        elsewhere(SocketTuple {
            netns: TEST_NETNS,
            local: "0.0.0.0:0".parse().unwrap(),
            remote: "0.0.0.0:0".parse().unwrap(),
        })
        .netns
    }

    #[test]
    fn each_namespace_holds_its_own_ports_against_its_own_range() {
        let curl = owner(10, "curl");
        // The same addresses in two namespaces: two destinations.
        let tracker = tracker_in(&[
            (TEST_NETNS, "10.0.0.1:40001", "10.0.0.9:443", curl.clone()),
            (TEST_NETNS, "10.0.0.1:40002", "10.0.0.9:443", curl.clone()),
            (
                elsewhere_netns(),
                "10.0.0.1:40001",
                "10.0.0.9:443",
                curl.clone(),
            ),
            (
                elsewhere_netns(),
                "10.0.0.1:40500",
                "10.0.0.9:443",
                curl.clone(),
            ),
            (
                elsewhere_netns(),
                "10.0.0.1:40600",
                "10.0.0.9:443",
                curl.clone(),
            ),
        ]);
        let report = TimeWaitSummary::new(0).report(3 * S, tracker.sockets(), two_ranges(), 5);
        let rows: Vec<_> = report
            .port_pressure
            .rows
            .iter()
            .map(|p| (p.netns, p.time_wait, p.ephemeral_ports))
            .collect();
        // 2 of 100 before 3 of 1000: by share held, not by count.
        assert_eq!(rows, [(TEST_NETNS, 2, 100), (elsewhere_netns(), 3, 1000)]);

        // A namespace whose range could not be read counts no pressure.
        let only_one = Observed {
            port_ranges: [(TEST_NETNS, PortRange::parse("40000 40099").unwrap())].into(),
            ..Default::default()
        };
        let report = TimeWaitSummary::new(0).report(3 * S, tracker.sockets(), only_one, 5);
        assert_eq!(report.port_pressure.rows.len(), 1);
        assert_eq!(report.port_pressure.rows[0].netns, TEST_NETNS);
    }

    #[test]
    fn the_port_range_sysctl_parses() {
        let range = PortRange::parse("32768\t60999\n").unwrap();
        assert_eq!(range.size(), 28232);
        assert!(range.contains(32768) && range.contains(60999) && !range.contains(22));
        assert_eq!(PortRange::parse("5 4"), None);
        assert_eq!(PortRange::parse("1 2 3"), None);
        assert_eq!(PortRange::parse("x"), None);
    }

    #[test]
    fn producers_are_ranked_by_timewait_sockets_held() {
        let docker = ContainerLabel::new("docker:3f2a9c1b7d4e");
        let curl = Owner {
            container: Some(docker.clone()),
            ..owner(10, "curl")
        };
        let nginx = owner(20, "nginx");
        let tracker = tracker(&[
            ("10.0.0.1:40001", "10.0.0.9:443", curl.clone()),
            ("10.0.0.1:40002", "10.0.0.9:443", curl.clone()),
            ("10.0.0.1:40003", "10.0.0.8:80", curl.clone()),
            ("10.0.0.1:80", "10.0.0.7:50000", nginx.clone()),
        ]);
        let mut summary = TimeWaitSummary::new(0);
        let observed = Observed {
            port_ranges: [(TEST_NETNS, PortRange::parse("40000 40099").unwrap())].into(),
            ..Default::default()
        };
        let report = summary.report(10 * S, tracker.sockets(), observed, 2);
        assert_eq!(report.counts.time_wait, 4);
        assert_eq!(report.top_owners.rows, [(Some(curl), 3), (Some(nginx), 1)]);
        assert_eq!(
            report.top_containers.rows,
            [(docker, 3)],
            "only labelled owners are counted by container"
        );
        assert_eq!(
            report.top_remotes.rows,
            [
                ("10.0.0.9:443".parse().unwrap(), 2),
                ("10.0.0.7:50000".parse().unwrap(), 1)
            ]
        );
        assert_eq!(
            report.top_local_ports.rows,
            [(80, 1), (40001, 1)],
            "ties by port"
        );
        assert_eq!(report.top_local_ports.omitted, 2, "40002 and 40003");
        assert_eq!(report.top_remotes.omitted, 1);
        assert_eq!(report.top_owners.omitted, 0);
        // The server's timewait socket holds no ephemeral port.
        let pressure = &report.port_pressure.rows;
        assert_eq!(pressure.len(), 2);
        assert_eq!(pressure[0].remote, "10.0.0.9:443".parse().unwrap());
        assert_eq!(
            (pressure[0].time_wait, pressure[0].ephemeral_ports),
            (2, 100)
        );
        assert!((pressure[0].ratio() - 0.02).abs() < 1e-9);
    }

    #[test]
    fn an_accepted_connection_holds_no_ephemeral_port_even_in_the_range() {
        let mut table = SocketTable::new();
        let mut tracker = TimeWaitTracker::new();
        tracker.on_listing(TEST_NETNS, &[], at(0));
        // A server listening on port 40050, inside the ephemeral range,
        // accepts a connection and closes it first.
        let tuple = SocketTuple {
            netns: TEST_NETNS,
            local: "10.0.0.1:40050".parse().unwrap(),
            remote: "10.0.0.9:50000".parse().unwrap(),
        };
        for (old, new) in [
            (TcpState::Listen, TcpState::SynRecv),
            (TcpState::SynRecv, TcpState::Established),
            (TcpState::Established, TcpState::FinWait1),
            (TcpState::FinWait1, TcpState::FinWait2),
            (TcpState::FinWait2, TcpState::Close),
        ] {
            let event = StateEvent {
                ts_ns: S,
                skaddr: 0x2000,
                tuple,
                old_state: old,
                new_state: new,
                task: owner(20, "nginx"),
                context: TaskContext::Softirq,
                error: 0,
                soft_error: 0,
            };
            tracker.on_transition(&event, &table.apply(&event));
        }
        let listed = [ListedTimeWait {
            tuple,
            substate: TcpState::TimeWait,
            expires_ms: 59_000,
        }];
        tracker.on_listing(TEST_NETNS, &listed, at(2 * S));
        let observed = Observed {
            port_ranges: [(TEST_NETNS, PortRange::parse("40000 40099").unwrap())].into(),
            ..Default::default()
        };
        let report = TimeWaitSummary::new(0).report(3 * S, tracker.sockets(), observed, 5);
        assert_eq!(report.counts.time_wait, 1);
        assert!(
            report.port_pressure.rows.is_empty(),
            "{:?}",
            report.port_pressure
        );
    }

    #[test]
    fn rates_cover_the_interval_and_lifetimes_the_whole_run() {
        let mut tracker = tracker(&[("10.0.0.1:40001", "10.0.0.9:443", owner(1, "a"))]);
        let mut summary = TimeWaitSummary::new(0);
        summary.record_entered();
        tracker.on_listing(TEST_NETNS, &[], at(62 * S));
        let outcome = tracker.on_listing(TEST_NETNS, &[], at(63 * S));
        summary.record_ended(&outcome.ended[0]);
        let report = summary.report(2 * S, tracker.sockets(), Observed::default(), 5);
        assert_eq!((report.entered, report.ended), (1, 1));
        assert_eq!(report.entered_per_second(), 0.5);
        assert_eq!(report.ends, [1, 0, 0, 0]);
        let max = report.lifetime_max_ms.unwrap();
        assert_eq!(max, 60_500.0, "1 s entry, ended between 61 and 62 s");
        let p50 = report.lifetime_p50_ms.unwrap();
        assert!((p50 - max).abs() / max < 0.02, "{p50}");
        assert!(report.port_pressure.rows.is_empty(), "no port range known");
        let next = summary.report(4 * S, tracker.sockets(), Observed::default(), 5);
        assert_eq!((next.entered, next.ended, next.interval_ns), (0, 0, 2 * S));
        assert_eq!(next.ends, [1, 0, 0, 0], "ends accumulate");
    }
}
