//! The live state behind `socktrace agent`, `ss` and `top`: the pipeline
//! with every tracker, and the counters the views turn into rates. Pure: decoded events,
//! sock_diag dumps and an explicit `now` in; overviews and listings out.
use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
};

use crate::{
    host::listing::NamespaceReading,
    host::sock_diag::DiagSocket,
    kernel::event::Event,
    model::cidr::Cidr,
    model::owner::Owner,
    model::port_range::PortRange,
    model::tcp_state::TcpState,
    model::tuple::{NetnsInode, SocketTuple},
    state::handshake_tracker::{InProgress, Side},
    state::listed_socket::ListedSocket,
    state::live_counts::LiveCounts,
    state::opening_window::{OpeningWindow, WINDOW_SECS},
    state::overview::{Overview, RemoteCount, Totals, remote_label},
    state::pipeline::{Applied, Pipeline, Trackers},
    state::table::{SocketTable, Transition},
    state::time_wait_summary::{PortPressure, PortsHeld},
    state::time_wait_tracker::ListingTime,
    state::{counter_since::CounterSince, top_list::TopList},
};

/// How many destinations the metrics name by the ephemeral ports their
/// TIME-WAIT sockets hold.
pub const PORT_PRESSURE_TOP: usize = 5;

/// How many remotes and subnets an overview names.
pub const TOP_REMOTES: usize = 20;

/// See the module documentation.
#[derive(Debug)]
pub struct LiveState {
    pipeline: Pipeline,
    /// Connections opened since the start (see [`LiveState::count_opening`]).
    new_connections: u64,
    counts: LiveCounts,
    opening: OpeningWindow,
    namespaces: NamespaceCounters,
}

/// The listeners on one port asked for (`--metrics-port`), over every
/// address and namespace, as the last listing found them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortListeners {
    /// Listening sockets on the port.
    pub listeners: u32,
    /// The fullest accept queue, and the largest backlog.
    pub accept_queue: u32,
    pub backlog: u32,
    /// SYNs and ACKs the listeners dropped since each was created
    /// (sock_diag's `SK_MEMINFO_DROPS`), added up.
    pub drops: u64,
}

impl PortListeners {
    /// Adds one listening socket's figures.
    pub fn add(&mut self, accept_queue: u32, backlog: u32, drops: u32) {
        self.listeners += 1;
        self.accept_queue = self.accept_queue.max(accept_queue);
        self.backlog = self.backlog.max(backlog);
        self.drops += u64::from(drops);
    }
}

/// The namespaces' readings, kept as counters since each was first read
/// and the latest settings.
#[derive(Debug, Default)]
struct NamespaceCounters {
    listen_overflows: CounterSince,
    listen_drops: CounterSince,
    time_wait_overflows: CounterSince,
    port_ranges: BTreeMap<NetnsInode, PortRange>,
    max_time_wait: BTreeMap<NetnsInode, u64>,
    /// By port, as the last listing found them.
    listeners: BTreeMap<u16, PortListeners>,
}

/// The live state summed over every namespace traced, for the metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveMetrics {
    /// Sockets in each state now, by [`TcpState::index`] (as
    /// [`Overview::states`]).
    pub states: [u64; TcpState::COUNT],
    /// How long the oldest socket in CLOSE-WAIT has been there, when one
    /// is and its entry was seen.
    pub close_wait_oldest_ns: Option<u64>,
    pub counts: LiveCounts,
    /// The namespaces' own counters since each was first read, `None`
    /// before any reading.
    pub listen_overflows: Option<u64>,
    pub listen_drops: Option<u64>,
    pub time_wait_overflows: Option<u64>,
    /// The highest share of `tcp_max_tw_buckets` that timewait sockets
    /// fill in any namespace whose limit was read.
    pub time_wait_buckets_used: Option<f64>,
    /// The destinations whose TIME-WAIT sockets hold the largest share of
    /// their namespace's ephemeral ports.
    pub port_pressure: TopList<PortPressure>,
    /// The listeners of the ports asked for, by port.
    pub listeners: BTreeMap<u16, PortListeners>,
    /// Sockets by state in each namespace, when asked for.
    pub states_by_namespace: Option<BTreeMap<NetnsInode, [u64; TcpState::COUNT]>>,
}

impl LiveState {
    /// Starts from a table seeded with the sockets that existed.
    pub fn new(table: SocketTable) -> Self {
        LiveState {
            pipeline: Pipeline::new(table, Trackers::ALL),
            new_connections: 0,
            counts: LiveCounts::default(),
            opening: OpeningWindow::new(),
            namespaces: NamespaceCounters::default(),
        }
    }

    /// Counts the handshakes of remotes in each of `peers` apart too.
    pub fn count_peers(&mut self, peers: &[Cidr]) {
        self.counts.count_peers(peers);
    }

    /// Counts sockets and handshakes of each namespace apart too.
    pub fn count_namespaces(&mut self) {
        self.counts.count_namespaces();
    }

    /// The listeners of the ports asked for, as a listing found them.
    pub fn observe_listeners(&mut self, listeners: BTreeMap<u16, PortListeners>) {
        self.namespaces.listeners = listeners;
    }

    /// What `netns`'s own counters and settings read now.
    pub fn observe_namespace(&mut self, netns: NetnsInode, reading: &NamespaceReading) {
        let counters = &mut self.namespaces;
        for (counter, value) in [
            (&mut counters.listen_overflows, reading.listen_overflows),
            (&mut counters.listen_drops, reading.listen_drops),
            (
                &mut counters.time_wait_overflows,
                reading.time_wait_overflows,
            ),
        ] {
            if let Some(value) = value {
                counter.observe(netns, value);
            }
        }
        match reading.port_range {
            Some(range) => counters.port_ranges.insert(netns, range),
            None => counters.port_ranges.remove(&netns),
        };
        match reading.max_time_wait {
            Some(max) => counters.max_time_wait.insert(netns, max),
            None => counters.max_time_wait.remove(&netns),
        };
    }

    /// One decoded record.
    pub fn event(&mut self, event: &Event) {
        match &self.pipeline.apply(event) {
            Applied::Transition {
                transition,
                handshake,
                time_wait,
            } => {
                self.counts.transition(transition);
                if let Some(handshake) = handshake {
                    self.counts.handshake(handshake);
                }
                self.counts.time_wait(time_wait);
                self.count_opening(transition);
            }
            Applied::Retrying(retrying) => self.counts.retransmit(retrying),
            Applied::Noted => {}
        }
    }

    /// One namespace's request and timewait sockets, dumped during `time`
    /// and applied once the records before it were handled.
    pub fn reconcile(&mut self, netns: NetnsInode, sockets: &[DiagSocket], time: ListingTime) {
        let reconciled = self.pipeline.on_listing(netns, sockets, time);
        for expired in &reconciled.expired {
            self.counts.handshake(expired);
        }
        self.counts.time_wait(&reconciled.time_wait);
    }

    /// After every drain and the listing it was for.
    pub fn settled(&mut self) {
        self.pipeline.settled();
    }

    /// Namespace `netns` is gone, found so at `now_ns`.
    pub fn tear_down(&mut self, netns: NetnsInode, now_ns: u64) {
        self.pipeline.tear_down(netns, now_ns);
        let counters = &mut self.namespaces;
        counters.listen_overflows.forget(netns);
        counters.listen_drops.forget(netns);
        counters.time_wait_overflows.forget(netns);
        counters.port_ranges.remove(&netns);
        counters.max_time_wait.remove(&netns);
        self.counts.forget_namespace(netns);
    }

    /// Counts and top remotes as of `now_ns`, over the namespaces
    /// `selected` accepts. `lost_events` is the kernel's count.
    pub fn overview(
        &mut self,
        now_ns: u64,
        selected: impl Fn(NetnsInode) -> bool,
        lost_events: u64,
    ) -> Overview {
        let mut states = [0u64; TcpState::COUNT];
        // As many as the sockets tracked: bounded by the kernel's sockets.
        let mut remotes: HashMap<IpAddr, u64> = HashMap::new();
        self.each_socket(|state, tuple, _| {
            if !selected(tuple.netns) {
                return;
            }
            states[state.index()] += 1;
            if state != TcpState::Listen && !tuple.remote.ip().is_unspecified() {
                *remotes.entry(tuple.remote.ip().to_canonical()).or_default() += 1;
            }
        });
        let mut subnets: HashMap<Cidr, u64> = HashMap::new();
        for (&addr, &count) in &remotes {
            *subnets.entry(Cidr::subnet_of(addr)).or_default() += count;
        }
        Overview {
            at_ns: now_ns,
            states,
            totals: Totals {
                new_connections: self.new_connections,
                handshake_failures: self.counts.failed_handshakes(),
                time_wait_entries: self.counts.time_wait_entries,
                lost_events,
            },
            top_remotes: top(remotes, remote_label),
            top_subnets: top(subnets, |subnet| subnet.to_string()),
            top_opening_subnets: self
                .opening
                .top(now_ns, TOP_REMOTES)
                .into_iter()
                .map(|(subnet, count)| RemoteCount {
                    remote: subnet.to_string(),
                    count,
                })
                .collect(),
            window_secs: WINDOW_SECS,
            opening_subnets_merged: self.opening.merged(),
        }
    }

    /// Sockets by state and the counts since start, over every namespace,
    /// as of `now_ns`.
    pub fn metrics(&self, now_ns: u64) -> LiveMetrics {
        let mut states = [0u64; TcpState::COUNT];
        let mut close_wait_since: Option<u64> = None;
        let mut states_by_namespace = self
            .counts
            .by_namespace
            .as_ref()
            .map(|_| BTreeMap::<NetnsInode, [u64; TcpState::COUNT]>::new());
        self.each_socket(|state, tuple, since| {
            states[state.index()] += 1;
            if let Some(by_namespace) = &mut states_by_namespace {
                by_namespace
                    .entry(tuple.netns)
                    .or_insert([0; TcpState::COUNT])[state.index()] += 1;
            }
            if state == TcpState::CloseWait
                && let Some(since) = since
            {
                close_wait_since = Some(close_wait_since.map_or(since, |s| s.min(since)));
            }
        });
        let counters = &self.namespaces;
        let mut held = PortsHeld::new(&counters.port_ranges);
        let mut time_wait_by_netns: BTreeMap<NetnsInode, u64> = BTreeMap::new();
        for socket in self.pipeline.time_wait().sockets() {
            held.add(socket);
            *time_wait_by_netns.entry(socket.tuple.netns).or_default() += 1;
        }
        let time_wait_buckets_used = counters
            .max_time_wait
            .iter()
            .filter(|&(_, &max)| max > 0)
            .map(|(netns, &max)| {
                time_wait_by_netns.get(netns).copied().unwrap_or(0) as f64 / max as f64
            })
            .reduce(f64::max);
        LiveMetrics {
            states,
            close_wait_oldest_ns: close_wait_since.map(|since| now_ns.saturating_sub(since)),
            counts: self.counts.clone(),
            listen_overflows: counters.listen_overflows.total(),
            listen_drops: counters.listen_drops.total(),
            time_wait_overflows: counters.time_wait_overflows.total(),
            time_wait_buckets_used,
            port_pressure: held.top(PORT_PRESSURE_TOP),
            listeners: counters.listeners.clone(),
            states_by_namespace,
        }
    }

    /// Every socket the trackers hold, with its state and, for full
    /// sockets, when it entered that state: full sockets from the table,
    /// TIME-WAIT sockets (and orphans in FIN-WAIT-2) from the TIME-WAIT
    /// tracker, half-open connections in SYN-RECV from the handshake
    /// tracker.
    fn each_socket(&self, mut visit: impl FnMut(TcpState, &SocketTuple, Option<u64>)) {
        for socket in self.pipeline.table().sockets() {
            visit(socket.state, &socket.tuple, socket.state_since_ns);
        }
        for socket in self.pipeline.time_wait().sockets() {
            visit(
                socket.substate.unwrap_or(TcpState::TimeWait),
                &socket.tuple,
                None,
            );
        }
        for attempt in self.pipeline.handshakes().in_progress() {
            if attempt.side == Side::Server {
                visit(TcpState::SynRecv, &attempt.tuple, None);
            }
        }
    }

    /// The sockets of a full dump (every state) of one or more namespaces,
    /// taken at `now_ns`, with what the tracer knows of each. `owners`
    /// (socket inode to process, from /proc) fills in owners the tracer
    /// never saw act.
    pub fn listing(
        &self,
        dumped: &[DiagSocket],
        now_ns: u64,
        owners: &HashMap<u32, Owner>,
    ) -> Vec<ListedSocket> {
        let (full, unbound) = self.table_index();
        let time_wait: HashMap<SocketTuple, Known> = self
            .pipeline
            .time_wait()
            .sockets()
            .map(|s| (s.tuple.canonical(), (s.entered_ns, s.owner.clone())))
            .collect();
        let attempts: HashMap<(Side, SocketTuple), InProgress> = self
            .pipeline
            .handshakes()
            .in_progress()
            .map(|a| ((a.side, a.tuple), a))
            .collect();
        let age = |since: Option<u64>| since.map(|since| now_ns.saturating_sub(since));
        dumped
            .iter()
            .map(|socket| {
                let tuple = socket.tuple.canonical();
                let mut listed = ListedSocket {
                    netns: socket.tuple.netns,
                    state: socket.state,
                    local: socket.tuple.local,
                    remote: socket.tuple.remote,
                    v6only: socket.v6only,
                    recv_queue: Some(socket.recv_queue),
                    send_queue: Some(socket.send_queue),
                    timer: Some(socket.timer),
                    owner: None,
                    in_state_ns: None,
                    retries: None,
                };
                if socket.is_timewait() {
                    if let Some((entered, owner)) = time_wait.get(&tuple) {
                        let entered = *entered;
                        listed.in_state_ns = age(entered);
                        listed.owner = owner.clone();
                    }
                } else if socket.state == TcpState::SynRecv && socket.inode == 0 {
                    listed.owner = self
                        .pipeline
                        .table()
                        .listener_owner(tuple.netns, &socket.tuple.local);
                    let attempt = attempts.get(&(Side::Server, tuple));
                    listed.in_state_ns = age(attempt.and_then(|a| a.started_ns));
                    listed.retries = Some(retries(socket, attempt));
                } else {
                    if let Some((since, owner)) = full.get(&(tuple, socket.state)) {
                        let since = *since;
                        listed.in_state_ns = age(since);
                        listed.owner = owner.clone();
                    }
                    if socket.state == TcpState::SynSent {
                        // The table learns a connect's local port at its
                        // next transition (the port is chosen after
                        // `CLOSE -> SYN_SENT`); the attempt has it from its
                        // first retransmit. Before either, the connect is
                        // known by its addresses alone.
                        let attempt = attempts.get(&(Side::Client, tuple));
                        if let Some(attempt) = attempt.filter(|_| listed.in_state_ns.is_none()) {
                            listed.in_state_ns = age(attempt.started_ns);
                            listed.owner = listed.owner.take().or_else(|| attempt.owner.clone());
                        }
                        if listed.in_state_ns.is_none()
                            && let Some((since, owner)) =
                                unbound_connect(&unbound, &tuple, owners.get(&socket.inode))
                        {
                            listed.in_state_ns = age(since);
                            listed.owner = listed.owner.take().or(owner);
                        }
                        listed.retries = Some(retries(socket, attempt));
                    }
                    if listed.owner.is_none() {
                        listed.owner = owners.get(&socket.inode).cloned();
                    }
                }
                listed
            })
            .collect()
    }

    /// The table's full sockets by canonical tuple and state (when they
    /// entered it, if seen, and their owner), and apart the connects it
    /// knows only from `CLOSE -> SYN_SENT`, before the kernel chose their
    /// local port: by namespace, local address and remote.
    fn table_index(&self) -> (HashMap<(SocketTuple, TcpState), Known>, UnboundConnects) {
        let mut full = HashMap::new();
        let mut unbound = UnboundConnects::new();
        for socket in self.pipeline.table().sockets() {
            let tuple = socket.tuple.canonical();
            let known = (socket.state_since_ns, socket.owner);
            if socket.state == TcpState::SynSent && tuple.local.port() == 0 {
                unbound
                    .entry((tuple.netns, tuple.local.ip(), tuple.remote))
                    .or_default()
                    .push(known.clone());
            }
            full.insert((tuple, socket.state), known);
        }
        (full, unbound)
    }

    /// A connection opens at `connect()` (`CLOSE -> SYN_SENT`) or, accepted,
    /// when its handshake completes (`SYN_RECV -> ESTABLISHED`): before
    /// Linux 6.15 a passive birth carries no remote address.
    fn count_opening(&mut self, t: &Transition) {
        let opens = matches!(
            (t.old_state, t.new_state),
            (TcpState::Close, TcpState::SynSent) | (TcpState::SynRecv, TcpState::Established)
        );
        let remote: SocketAddr = t.tuple.remote;
        if opens && !remote.ip().is_unspecified() {
            self.new_connections += 1;
            self.opening.record(t.ts_ns, Cidr::subnet_of(remote.ip()));
        }
    }
}

/// What the table knows of a socket: when it entered its state, its owner.
type Known = (Option<u64>, Option<Owner>);

/// Connects before their local port, by namespace, local address and
/// remote.
type UnboundConnects = HashMap<(NetnsInode, IpAddr, SocketAddr), Vec<Known>>;

/// The connect the table knows without its port that a dumped SYN-SENT
/// socket (canonical `tuple`, owned by `dumped_owner` per /proc) is: the
/// only one between its addresses, or the only one of its owner. `None`
/// when several could be it: when each began is then unknown.
fn unbound_connect(
    unbound: &UnboundConnects,
    tuple: &SocketTuple,
    dumped_owner: Option<&Owner>,
) -> Option<Known> {
    let candidates = unbound.get(&(tuple.netns, tuple.local.ip(), tuple.remote))?;
    if let [only] = candidates.as_slice() {
        return Some(only.clone());
    }
    let pid = dumped_owner?.pid;
    let mut same_owner = candidates
        .iter()
        .filter(|(_, owner)| owner.as_ref().map(|o| o.pid) == Some(pid));
    match (same_owner.next(), same_owner.next()) {
        (Some(only), None) => Some(only.clone()),
        _ => None,
    }
}

/// Retransmits of a handshake in progress so far: the kernel's count, or
/// the tracer's if it saw more (the kernel's may have been read before the
/// last one).
fn retries(socket: &DiagSocket, attempt: Option<&InProgress>) -> u32 {
    let seen = attempt.map_or(0, |a| a.retransmits);
    u32::from(socket.retransmits()).max(seen)
}

/// The [`TOP_REMOTES`] largest counts, most first (ties by label).
fn top<K>(counts: HashMap<K, u64>, label: impl Fn(K) -> String) -> Vec<RemoteCount> {
    let mut all: Vec<RemoteCount> = counts
        .into_iter()
        .map(|(key, count)| RemoteCount {
            remote: label(key),
            count,
        })
        .collect();
    all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.remote.cmp(&b.remote)));
    all.truncate(TOP_REMOTES);
    all
}

mod known;
#[cfg(test)]
mod tests;
