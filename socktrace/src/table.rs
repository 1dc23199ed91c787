//! The live socket table: a pure state machine over decoded transitions.
//!
//! No aya, tokio or clock in here: time comes from the events (kernel
//! CLOCK_MONOTONIC) so recorded streams replay exactly.
//!
//! Identity: a socket the kernel reports is keyed by its `struct sock`
//! address while it lives; the kernel reuses addresses, so a `CLOSE` ends an
//! entry and a transition out of `CLOSE` always starts a new one. Sockets
//! seeded from sock_diag have no address yet: they wait, keyed by their
//! tuple, until their first transition names them.
//!
//! Owners: a transition in process context names the process acting on the
//! socket, and becomes its owner. A softirq transition never changes the
//! owner: the current task there is whatever the softirq interrupted. A
//! passive socket starts with its listener's owner.
use std::{collections::HashMap, net::SocketAddr};

use crate::{
    event::{StateEvent, TaskContext},
    owner::Owner,
    tcp_state::TcpState,
    tuple::{NetnsInode, SocketTuple},
};

/// socktrace's own socket number, unique for the agent's run.
pub type SocketId = u64;

/// Where the table learned of a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Born while traced: its whole life is known.
    Traced,
    /// Listed by sock_diag at start-up.
    Seeded,
    /// First seen mid-life in a transition (born before tracing, or its
    /// earlier events were lost).
    MidLife,
}

/// A socket the table tracks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackedSocket {
    pub id: SocketId,
    pub tuple: SocketTuple,
    pub state: TcpState,
    /// When it entered `state`; `None` when not seen (seeded, mid-life).
    pub state_since_ns: Option<u64>,
    /// When it was born; `None` unless [`Origin::Traced`].
    pub born_ns: Option<u64>,
    pub owner: Option<Owner>,
    pub origin: Origin,
    /// Nanoseconds spent in each state it has left (by [`TcpState::index`]),
    /// counting only stays whose start was seen.
    pub time_in_state_ns: [u64; 12],
    /// How its connection was opened, when its birth was seen.
    pub opening: Option<Opening>,
}

/// How a connection was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opening {
    /// connect(2): `CLOSE -> SYN_SENT`. Its local port is ephemeral unless
    /// bound.
    Active,
    /// Accepted by a listener: born `LISTEN -> SYN_RECV`.
    Passive,
}

/// A socket as sock_diag lists it, with its owner if one was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedSocket {
    pub tuple: SocketTuple,
    pub state: TcpState,
    pub kind: SeedKind,
    pub owner: Option<Owner>,
}

/// What kind of kernel object a listed socket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedKind {
    /// A full socket: its transitions reach the table.
    Full,
    /// A timewait socket (TIME-WAIT, or an orphan's FIN-WAIT-2): it has no
    /// transitions; the TIME-WAIT tracker follows it through sock_diag.
    TimeWait,
    /// A request socket (a half-open connection in SYN-RECV): no
    /// transitions either; the handshake tracker follows it.
    Request,
}

/// One transition, resolved against the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub id: SocketId,
    pub ts_ns: u64,
    pub tuple: SocketTuple,
    pub old_state: TcpState,
    pub new_state: TcpState,
    /// The socket's owner after this transition.
    pub owner: Option<Owner>,
    pub context: TaskContext,
    /// How long the socket was in `old_state`, when its entry was seen.
    pub old_state_ns: Option<u64>,
    /// Set when the transition ended the socket (`new_state` is `CLOSE`).
    pub ended: Option<Ended>,
}

/// What the table knew of a socket when it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended {
    /// Birth to `CLOSE`, when the birth was seen.
    pub lifetime_ns: Option<u64>,
    pub time_in_state_ns: [u64; 12],
    pub opening: Option<Opening>,
}

/// Anomalies the table absorbed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Transitions whose old state disagreed with the table (lost events
    /// or an address reused after a missed `CLOSE`).
    pub inconsistent: u64,
    /// Sockets first seen mid-life that sock_diag had not listed.
    pub mid_life: u64,
    /// Sockets dropped because their network namespace was gone (their
    /// `CLOSE` was never seen).
    pub torn_down: u64,
}

/// A listener that passive sockets inherit their owner from.
#[derive(Clone, Debug)]
struct Listener {
    id: SocketId,
    local: SocketAddr,
    owner: Option<Owner>,
}

/// The live table. See the module documentation.
#[derive(Debug, Default)]
pub struct SocketTable {
    by_skaddr: HashMap<u64, TrackedSocket>,
    /// Seeded sockets not yet named by a transition. Several sockets can
    /// share a tuple (SO_REUSEPORT listeners).
    seeded: HashMap<SocketTuple, Vec<TrackedSocket>>,
    /// Listeners by namespace and local port.
    listeners: HashMap<(NetnsInode, u16), Vec<Listener>>,
    next_id: SocketId,
    stats: TableStats,
}

impl SocketTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the full sockets that existed before tracing began, and returns
    /// every listed socket as the table names it. Timewait and request
    /// sockets get an id but are left to their own trackers: no transition
    /// would ever end them here.
    pub fn seed(&mut self, sockets: impl IntoIterator<Item = SeedSocket>) -> Vec<TrackedSocket> {
        let mut listed = Vec::new();
        for seed in sockets {
            let socket = TrackedSocket {
                id: self.allocate_id(),
                tuple: seed.tuple,
                state: seed.state,
                state_since_ns: None,
                born_ns: None,
                owner: seed.owner,
                origin: Origin::Seeded,
                time_in_state_ns: [0; 12],
                opening: None,
            };
            if seed.kind == SeedKind::Full {
                if socket.state == TcpState::Listen {
                    self.add_listener(&socket);
                }
                self.seeded
                    .entry(seed.tuple)
                    .or_default()
                    .push(socket.clone());
            }
            listed.push(socket);
        }
        listed
    }

    /// Applies one transition and says what it meant.
    pub fn apply(&mut self, event: &StateEvent) -> Transition {
        let mut socket = self.take_socket(event);
        let old_state_ns = match socket.state_since_ns {
            Some(since) if socket.state == event.old_state => {
                let spent = event.ts_ns.saturating_sub(since);
                socket.time_in_state_ns[event.old_state.index()] += spent;
                Some(spent)
            }
            _ => None,
        };
        if event.tuple.local.port() != 0 {
            socket.tuple = event.tuple;
        } else {
            // Active open before the port is bound: keep what is known.
            socket.tuple.remote = event.tuple.remote;
        }
        socket.state = event.new_state;
        socket.state_since_ns = Some(event.ts_ns);
        if event.context == TaskContext::Process {
            socket.owner = Some(event.task.clone());
        }
        let ended = (event.new_state == TcpState::Close).then(|| Ended {
            lifetime_ns: socket.born_ns.map(|born| event.ts_ns.saturating_sub(born)),
            time_in_state_ns: socket.time_in_state_ns,
            opening: socket.opening,
        });
        let transition = Transition {
            id: socket.id,
            ts_ns: event.ts_ns,
            tuple: socket.tuple,
            old_state: event.old_state,
            new_state: event.new_state,
            owner: socket.owner.clone(),
            context: event.context,
            old_state_ns,
            ended,
        };
        if event.old_state == TcpState::Listen && event.new_state != TcpState::SynRecv {
            self.remove_listener(&socket.tuple, socket.id);
        }
        if event.new_state == TcpState::Listen {
            self.add_listener(&socket);
        }
        if event.new_state != TcpState::Close {
            self.by_skaddr.insert(event.skaddr, socket);
        }
        transition
    }

    /// Sockets tracked now, in no particular order.
    pub fn sockets(&self) -> impl Iterator<Item = &TrackedSocket> {
        self.by_skaddr
            .values()
            .chain(self.seeded.values().flatten())
    }

    /// The live socket the kernel knows at `skaddr`, if it was named by a
    /// transition.
    pub fn by_skaddr(&self, skaddr: u64) -> Option<&TrackedSocket> {
        self.by_skaddr.get(&skaddr)
    }

    /// Number of sockets tracked now.
    pub fn len(&self) -> usize {
        self.by_skaddr.len() + self.seeded.values().map(Vec::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> TableStats {
        self.stats
    }

    fn allocate_id(&mut self) -> SocketId {
        self.next_id += 1;
        self.next_id
    }

    /// The socket a transition applies to, out of the table: the known one,
    /// a seeded one it names, or a new entry.
    fn take_socket(&mut self, event: &StateEvent) -> TrackedSocket {
        let starts_life = event.old_state == TcpState::Close
            || (event.old_state == TcpState::Listen && event.new_state == TcpState::SynRecv);
        if let Some(known) = self.by_skaddr.remove(&event.skaddr) {
            if known.state == event.old_state {
                return known;
            }
            self.stats.inconsistent += 1;
            if !starts_life {
                return known;
            }
            // The address was reused after a CLOSE we did not see.
            if known.state == TcpState::Listen {
                self.remove_listener(&known.tuple, known.id);
            }
        }
        if starts_life {
            return self.born(event);
        }
        if let Some(seeded) = self.take_seeded(&event.tuple, event.old_state) {
            return seeded;
        }
        self.stats.mid_life += 1;
        TrackedSocket {
            id: self.allocate_id(),
            tuple: event.tuple,
            state: event.old_state,
            state_since_ns: None,
            born_ns: None,
            owner: None,
            origin: Origin::MidLife,
            time_in_state_ns: [0; 12],
            opening: None,
        }
    }

    fn born(&mut self, event: &StateEvent) -> TrackedSocket {
        let owner = if event.old_state == TcpState::Listen {
            self.listener_owner(event.tuple.netns, &event.tuple.local)
        } else {
            None
        };
        TrackedSocket {
            id: self.allocate_id(),
            tuple: event.tuple,
            state: event.old_state,
            state_since_ns: None,
            born_ns: Some(event.ts_ns),
            owner,
            origin: Origin::Traced,
            time_in_state_ns: [0; 12],
            opening: match (event.old_state, event.new_state) {
                (TcpState::Listen, _) => Some(Opening::Passive),
                (_, TcpState::SynSent) => Some(Opening::Active),
                _ => None,
            },
        }
    }

    fn take_seeded(&mut self, tuple: &SocketTuple, state: TcpState) -> Option<TrackedSocket> {
        let same_tuple = self.seeded.get_mut(tuple)?;
        let position = same_tuple.iter().position(|s| s.state == state)?;
        let socket = same_tuple.swap_remove(position);
        if same_tuple.is_empty() {
            self.seeded.remove(tuple);
        }
        Some(socket)
    }

    fn add_listener(&mut self, socket: &TrackedSocket) {
        self.listeners
            .entry((socket.tuple.netns, socket.tuple.local.port()))
            .or_default()
            .push(Listener {
                id: socket.id,
                local: socket.tuple.local,
                owner: socket.owner.clone(),
            });
    }

    fn remove_listener(&mut self, tuple: &SocketTuple, id: SocketId) {
        let key = (tuple.netns, tuple.local.port());
        if let Some(on_port) = self.listeners.get_mut(&key) {
            on_port.retain(|l| l.id != id);
            if on_port.is_empty() {
                self.listeners.remove(&key);
            }
        }
    }

    /// Drops every socket of a network namespace that is gone (counted in
    /// [`TableStats::torn_down`]): their `CLOSE` was lost, or the kernel
    /// purged them without a transition.
    pub fn tear_down(&mut self, netns: NetnsInode) {
        let before = self.len();
        self.by_skaddr
            .retain(|_, socket| socket.tuple.netns != netns);
        self.seeded.retain(|tuple, _| tuple.netns != netns);
        self.listeners
            .retain(|(listening_in, _), _| *listening_in != netns);
        self.stats.torn_down += (before - self.len()) as u64;
    }

    /// Owner of the listener that accepts on `local` in namespace `netns`:
    /// one bound to that very address first, else a wildcard one of the
    /// same family.
    pub fn listener_owner(&self, netns: NetnsInode, local: &SocketAddr) -> Option<Owner> {
        let on_port = self.listeners.get(&(netns, local.port()))?;
        let exact = on_port.iter().find(|l| l.local.ip() == local.ip());
        let wildcard = || {
            on_port
                .iter()
                .find(|l| l.local.ip().is_unspecified() && l.local.is_ipv4() == local.is_ipv4())
        };
        exact.or_else(wildcard).and_then(|l| l.owner.clone())
    }
}

#[cfg(test)]
mod tests;
