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
//!
//! Layout: the table holds a socket per connection on the host, so a
//! socket's bytes are most of the agent's memory. Each is a compact
//! `Entry` of 136 bytes (addresses without `SocketAddr`'s padding, times
//! in state as `f32`, an owner shared with the process's other sockets) in
//! a slab, a `Vec` whose freed slots are reused; the two indexes, by
//! `struct sock` address and, for seeded sockets, by tuple, hold only 4-byte
//! slot numbers. A transition updates its entry in place: only a `CLOSE`
//! takes it out of the index and frees its slot. That is 153 bytes per
//! socket at a million (with the slab's spare capacity and the index),
//! where a `HashMap` of [`TrackedSocket`]s took 556 and moved each 256-byte
//! socket out and back in on every transition. Callers get
//! [`TrackedSocket`]s, built when asked for.
use std::{
    hash::BuildHasher,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    ops::{Index, IndexMut},
    sync::Arc,
};

use hashbrown::HashTable;

use crate::{
    kernel::event::{StateEvent, TaskContext},
    model::owner::Owner,
    model::tcp_state::TcpState,
    model::tuple::{NetnsInode, SocketTuple},
    support::fast_hash::{FastMap, FastSet},
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

/// A socket the table tracks, as the table shows it: a copy, built when
/// asked for.
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
    /// counting only stays whose start was seen. Kept as `f32`: exact up to
    /// 16.7 ms, and each stay added beyond rounds it by at most 6e-8 of it.
    pub time_in_state_ns: [u64; TcpState::COUNT],
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
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeedSocket {
    pub tuple: SocketTuple,
    pub state: TcpState,
    pub kind: SeedKind,
    pub owner: Option<Owner>,
}

/// What kind of kernel object a listed socket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// As [`TrackedSocket::time_in_state_ns`].
    pub time_in_state_ns: [u64; TcpState::COUNT],
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

impl TableStats {
    /// A lower bound of the transitions that never reached the table: one
    /// for each that did not start in the state the last one left its
    /// socket in, and one for each socket first seen mid-life.
    pub fn transitions_missed(&self) -> u64 {
        self.inconsistent + self.mid_life
    }
}

/// A listener that passive sockets inherit their owner from.
#[derive(Clone, Debug)]
struct Listener {
    id: SocketId,
    local: SocketAddr,
    /// Shared with the listener's entry and every socket it accepts.
    owner: Option<Arc<Owner>>,
}

/// A socket as the table keeps it: what [`TrackedSocket`] shows, in 136
/// bytes where [`TrackedSocket`] takes 256.
#[derive(Debug)]
struct Entry {
    /// The kernel's `struct sock` address; 0 while seeded (not yet named).
    skaddr: u64,
    id: SocketId,
    /// When it entered `state`.
    state_since: KernelTime,
    born: KernelTime,
    /// Shared with the owner's other sockets (see [`Owners`]).
    owner: Option<Arc<Owner>>,
    netns: NetnsInode,
    local: Endpoint,
    remote: Endpoint,
    state: TcpState,
    origin: Origin,
    opening: Option<Opening>,
    /// Nanoseconds per state, as `f32`: half the bytes of `u64`, and its 24
    /// bits of mantissa keep totals up to 16.7 ms exact and round larger
    /// ones by at most 6e-8 of them per stay added (60 ns in a second, a
    /// second in six months). [`Transition::old_state_ns`] stays exact.
    time_in_state_ns: [f32; TcpState::COUNT],
}

const _: () = assert!(size_of::<Entry>() <= 136);

impl Entry {
    /// A socket in `state` whose birth and entry into `state` were not seen.
    fn new(
        skaddr: u64,
        id: SocketId,
        tuple: &SocketTuple,
        state: TcpState,
        origin: Origin,
    ) -> Self {
        Entry {
            skaddr,
            id,
            state_since: KernelTime::UNKNOWN,
            born: KernelTime::UNKNOWN,
            owner: None,
            netns: tuple.netns,
            local: tuple.local.into(),
            remote: tuple.remote.into(),
            state,
            origin,
            opening: None,
            time_in_state_ns: [0.0; TcpState::COUNT],
        }
    }

    fn tuple(&self) -> SocketTuple {
        SocketTuple {
            netns: self.netns,
            local: self.local.into(),
            remote: self.remote.into(),
        }
    }

    fn set_tuple(&mut self, tuple: &SocketTuple) {
        self.netns = tuple.netns;
        self.local = tuple.local.into();
        self.remote = tuple.remote.into();
    }

    /// Adds a stay of `spent_ns` in `state`, rounding once.
    fn add_time(&mut self, state: TcpState, spent_ns: u64) {
        let total = &mut self.time_in_state_ns[state.index()];
        *total = (*total as u64).saturating_add(spent_ns) as f32;
    }

    fn time_in_state_ns(&self) -> [u64; TcpState::COUNT] {
        self.time_in_state_ns.map(|ns| ns as u64)
    }

    fn view(&self) -> TrackedSocket {
        TrackedSocket {
            id: self.id,
            tuple: self.tuple(),
            state: self.state,
            state_since_ns: self.state_since.get(),
            born_ns: self.born.get(),
            owner: self.owner.as_deref().cloned(),
            origin: self.origin,
            time_in_state_ns: self.time_in_state_ns(),
            opening: self.opening,
        }
    }
}

/// A kernel CLOCK_MONOTONIC time, or unknown, in 8 bytes where
/// `Option<u64>` takes 16. `u64::MAX` stands for unknown: the clock would
/// reach it after 584 years of uptime.
#[derive(Clone, Copy, Debug)]
struct KernelTime(u64);

impl KernelTime {
    const UNKNOWN: KernelTime = KernelTime(u64::MAX);

    fn get(self) -> Option<u64> {
        (self.0 != u64::MAX).then_some(self.0)
    }
}

/// A socket address in 20 bytes where `SocketAddr` takes 32: an IPv6
/// address's flow info and scope id are left out, as socktrace never sets
/// them, so an address comes back as it went in (IPv4 as IPv4, IPv4-mapped
/// IPv6 as IPv6).
#[derive(Clone, Copy, Debug)]
struct Endpoint {
    /// An IPv4 address in its first 4 bytes.
    ip: [u8; 16],
    port: u16,
    is_ipv6: bool,
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        let (ip, is_ipv6) = match addr.ip() {
            IpAddr::V4(v4) => {
                let mut ip = [0; 16];
                ip[..4].copy_from_slice(&v4.octets());
                (ip, false)
            }
            IpAddr::V6(v6) => (v6.octets(), true),
        };
        Endpoint {
            ip,
            port: addr.port(),
            is_ipv6,
        }
    }
}

impl From<Endpoint> for SocketAddr {
    fn from(endpoint: Endpoint) -> Self {
        let ip = if endpoint.is_ipv6 {
            IpAddr::V6(Ipv6Addr::from(endpoint.ip))
        } else {
            let [a, b, c, d, ..] = endpoint.ip;
            IpAddr::V4(Ipv4Addr::new(a, b, c, d))
        };
        SocketAddr::new(ip, endpoint.port)
    }
}

/// Entries by slot number, and the vacant slots to reuse first. A vacant
/// slot is in no index; its entry is overwritten when the slot is reused.
#[derive(Debug, Default)]
struct Slab {
    entries: Vec<Entry>,
    vacant: Vec<u32>,
}

impl Slab {
    fn insert(&mut self, entry: Entry) -> u32 {
        if let Some(slot) = self.vacant.pop() {
            self[slot] = entry;
            return slot;
        }
        let slot = u32::try_from(self.entries.len()).expect("fewer than 2^32 sockets");
        self.entries.push(entry);
        slot
    }

    /// Frees `slot`, which no index holds any more. Its owner goes now, so
    /// that the interner can let go of owners nobody references.
    fn free(&mut self, slot: u32) {
        self[slot].owner = None;
        self.vacant.push(slot);
    }
}

impl Index<u32> for Slab {
    type Output = Entry;

    fn index(&self, slot: u32) -> &Entry {
        &self.entries[slot as usize]
    }
}

impl IndexMut<u32> for Slab {
    fn index_mut(&mut self, slot: u32) -> &mut Entry {
        &mut self.entries[slot as usize]
    }
}

/// One shared copy of each owner: most sockets belong to a handful of
/// processes. Owners no socket references any more are swept whenever the
/// set has doubled since the last sweep (and holds at least
/// [`Owners::SWEEP_FROM`]): it stays within twice the live owners, at O(1)
/// amortised per owner.
#[derive(Debug)]
struct Owners {
    interned: FastSet<Arc<Owner>>,
    /// The size at which the next sweep happens.
    sweep_at: usize,
}

impl Default for Owners {
    fn default() -> Self {
        Owners {
            interned: FastSet::default(),
            sweep_at: Self::SWEEP_FROM,
        }
    }
}

impl Owners {
    const SWEEP_FROM: usize = 1024;

    fn intern(&mut self, owner: &Owner) -> Arc<Owner> {
        if let Some(shared) = self.interned.get(owner) {
            return Arc::clone(shared);
        }
        let shared = Arc::new(owner.clone());
        self.interned.insert(Arc::clone(&shared));
        if self.interned.len() >= self.sweep_at {
            self.interned.retain(|o| Arc::strong_count(o) > 1);
            self.sweep_at = (2 * self.interned.len()).max(Self::SWEEP_FROM);
        }
        shared
    }
}

/// The hash of a `struct sock` address: murmur3's 64-bit finalizer, which
/// spreads every bit of it over the whole hash (addresses differ in their
/// middle bits; hashbrown takes its control bytes from the top 7). Unkeyed:
/// the kernel picks addresses, not a peer. SipHash cost a fifth of `apply`.
fn skaddr_hash(skaddr: u64) -> u64 {
    let mut h = skaddr;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The live table. See the module documentation.
#[derive(Debug, Default)]
pub struct SocketTable {
    slab: Slab,
    /// Sockets named by a transition, by `struct sock` address.
    by_skaddr: HashTable<u32>,
    /// Seeded sockets not yet named by a transition, by tuple. Several
    /// sockets can share a tuple (SO_REUSEPORT listeners).
    seeded: HashTable<u32>,
    /// When the listing that seeded the table ended (CLOCK_MONOTONIC): a
    /// transition from before it may already show in a seeded socket's
    /// state, or be of a socket that closed before the listing.
    seeded_until_ns: u64,
    tuple_hasher: foldhash::fast::RandomState,
    owners: Owners,
    /// Listeners by namespace and local port.
    listeners: FastMap<(NetnsInode, u16), Vec<Listener>>,
    next_id: SocketId,
    stats: TableStats,
}

impl SocketTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the full sockets that existed before tracing began, listed by a
    /// listing that ended at `listed_until_ns`, and returns every listed
    /// socket as the table names it. Timewait and request sockets get an
    /// id but are left to their own trackers: no transition would ever end
    /// them here.
    pub fn seed(
        &mut self,
        sockets: impl IntoIterator<Item = SeedSocket>,
        listed_until_ns: u64,
    ) -> Vec<TrackedSocket> {
        self.seeded_until_ns = listed_until_ns;
        let mut listed = Vec::new();
        for seed in sockets {
            let mut entry = Entry::new(
                0,
                self.allocate_id(),
                &seed.tuple,
                seed.state,
                Origin::Seeded,
            );
            listed.push(TrackedSocket {
                owner: seed.owner.clone(),
                ..entry.view()
            });
            if seed.kind == SeedKind::Full {
                entry.owner = seed.owner.as_ref().map(|o| self.owners.intern(o));
                if seed.state == TcpState::Listen {
                    self.add_listener(&seed.tuple, entry.id, entry.owner.clone());
                }
                let slot = self.slab.insert(entry);
                let (slab, hasher) = (&self.slab, &self.tuple_hasher);
                self.seeded
                    .insert_unique(hasher.hash_one(seed.tuple), slot, |&s| {
                        hasher.hash_one(slab[s].tuple())
                    });
            }
        }
        listed
    }

    /// Applies one transition and says what it meant.
    pub fn apply(&mut self, event: &StateEvent) -> Transition {
        let slot = self.slot_for(event);
        let tuple = if event.tuple.local.port() != 0 {
            event.tuple
        } else {
            // Active open before the port is bound: keep what is known.
            SocketTuple {
                remote: event.tuple.remote,
                ..self.slab[slot].tuple()
            }
        };
        self.drop_listed_copy(event, slot, &tuple);
        let entry = &mut self.slab[slot];
        let old_state_ns = match entry.state_since.get() {
            Some(since) if entry.state == event.old_state => {
                let spent = event.ts_ns.saturating_sub(since);
                entry.add_time(event.old_state, spent);
                Some(spent)
            }
            _ => None,
        };
        entry.set_tuple(&tuple);
        entry.state = event.new_state;
        entry.state_since = KernelTime(event.ts_ns);
        // Most transitions in process context come from the owner again.
        if event.context == TaskContext::Process && entry.owner.as_deref() != Some(&event.task) {
            entry.owner = Some(self.owners.intern(&event.task));
        }
        let id = entry.id;
        let owner = entry.owner.as_deref().cloned();
        let ended = (event.new_state == TcpState::Close).then(|| Ended {
            lifetime_ns: entry
                .born
                .get()
                .map(|born| event.ts_ns.saturating_sub(born)),
            time_in_state_ns: entry.time_in_state_ns(),
            opening: entry.opening,
        });
        if event.old_state == TcpState::Listen && event.new_state != TcpState::SynRecv {
            self.remove_listener(&tuple, id);
        }
        if event.new_state == TcpState::Listen {
            let shared_owner = self.slab[slot].owner.clone();
            self.add_listener(&tuple, id, shared_owner);
        }
        if event.new_state == TcpState::Close {
            self.end(slot);
        }
        Transition {
            id,
            ts_ns: event.ts_ns,
            tuple,
            old_state: event.old_state,
            new_state: event.new_state,
            owner,
            context: event.context,
            old_state_ns,
            ended,
        }
    }

    /// Sockets tracked now, in no particular order.
    pub fn sockets(&self) -> impl Iterator<Item = TrackedSocket> + '_ {
        self.by_skaddr
            .iter()
            .chain(self.seeded.iter())
            .map(|&slot| self.slab[slot].view())
    }

    /// The live socket the kernel knows at `skaddr`, if it was named by a
    /// transition.
    pub fn by_skaddr(&self, skaddr: u64) -> Option<TrackedSocket> {
        self.find(skaddr).map(|slot| self.slab[slot].view())
    }

    /// Number of sockets tracked now.
    pub fn len(&self) -> usize {
        self.by_skaddr.len() + self.seeded.len()
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

    /// The slot of the socket named `skaddr`.
    fn find(&self, skaddr: u64) -> Option<u32> {
        self.by_skaddr
            .find(skaddr_hash(skaddr), |&slot| {
                self.slab[slot].skaddr == skaddr
            })
            .copied()
    }

    /// The slot of the socket a transition applies to, indexed by the
    /// event's address: the known one, a seeded one it names, or a new
    /// entry.
    fn slot_for(&mut self, event: &StateEvent) -> u32 {
        let starts_life = event.old_state == TcpState::Close
            || (event.old_state == TcpState::Listen && event.new_state == TcpState::SynRecv);
        if let Some(slot) = self.find(event.skaddr) {
            let known = &self.slab[slot];
            if known.state == event.old_state {
                return slot;
            }
            self.stats.inconsistent += 1;
            if !starts_life {
                return slot;
            }
            // The address was reused after a CLOSE we did not see: the new
            // life takes over the slot.
            if known.state == TcpState::Listen {
                let (tuple, id) = (known.tuple(), known.id);
                self.remove_listener(&tuple, id);
            }
            let born = self.born(event);
            self.slab[slot] = born;
            return slot;
        }
        let slot = if starts_life {
            let born = self.born(event);
            self.slab.insert(born)
        } else if let Some(seeded) = self
            .take_seeded(&event.tuple, Some(event.old_state))
            .or_else(|| {
                // The programs were attached before the listing: a transition
                // the ring held from before it ended may already show in the
                // state the socket was listed in.
                (event.ts_ns < self.seeded_until_ns)
                    .then(|| self.take_seeded(&event.tuple, None))
                    .flatten()
            })
        {
            self.slab[seeded].skaddr = event.skaddr;
            seeded
        } else {
            // From before the listing ended, a socket the listing did not
            // show had closed by then: its life began before tracing, and
            // no transition of it was missed.
            if event.ts_ns >= self.seeded_until_ns {
                self.stats.mid_life += 1;
            }
            let id = self.allocate_id();
            let entry = Entry::new(
                event.skaddr,
                id,
                &event.tuple,
                event.old_state,
                Origin::MidLife,
            );
            self.slab.insert(entry)
        };
        let slab = &self.slab;
        self.by_skaddr
            .insert_unique(skaddr_hash(event.skaddr), slot, |&s| {
                skaddr_hash(slab[s].skaddr)
            });
        slot
    }

    /// A named socket's `CLOSE`: out of the index, its slot freed.
    fn end(&mut self, slot: u32) {
        self.by_skaddr
            .find_entry(skaddr_hash(self.slab[slot].skaddr), |&s| s == slot)
            .expect("a named socket is indexed by its address")
            .remove();
        self.slab.free(slot);
    }

    fn born(&mut self, event: &StateEvent) -> Entry {
        let owner = if event.old_state == TcpState::Listen {
            self.listener(event.tuple.netns, &event.tuple.local)
                .and_then(|l| l.owner.clone())
        } else {
            None
        };
        let id = self.allocate_id();
        Entry {
            born: KernelTime(event.ts_ns),
            owner,
            opening: match (event.old_state, event.new_state) {
                (TcpState::Listen, _) => Some(Opening::Passive),
                (_, TcpState::SynSent) => Some(Opening::Active),
                _ => None,
            },
            ..Entry::new(
                event.skaddr,
                id,
                &event.tuple,
                event.old_state,
                Origin::Traced,
            )
        }
    }

    /// A socket whose transitions from before the start listing ended name
    /// it by address (born after the programs were attached) may be in the
    /// listing too: that copy goes, lending its owner if none was traced.
    /// Only a connection's tuple is looked for: a listener's remote port is
    /// 0, and so is a child's birth's on kernels before 6.15.
    fn drop_listed_copy(&mut self, event: &StateEvent, slot: u32, tuple: &SocketTuple) {
        if event.ts_ns >= self.seeded_until_ns
            || tuple.local.port() == 0
            || tuple.remote.port() == 0
            || self.seeded.is_empty()
        {
            return;
        }
        let Some(copy) = self.take_seeded(tuple, None) else {
            return;
        };
        let listed_owner = self.slab[copy].owner.take();
        let entry = &mut self.slab[slot];
        if entry.owner.is_none() {
            entry.owner = listed_owner;
        }
        self.slab.free(copy);
    }

    /// Takes a seeded socket with `tuple` (in `state`, or in any state)
    /// out of the seeded index, for a transition to name; its slot stays
    /// in use.
    fn take_seeded(&mut self, tuple: &SocketTuple, state: Option<TcpState>) -> Option<u32> {
        let slab = &self.slab;
        let found = self
            .seeded
            .find_entry(self.tuple_hasher.hash_one(tuple), |&slot| {
                state.is_none_or(|state| slab[slot].state == state) && slab[slot].tuple() == *tuple
            })
            .ok()?;
        Some(found.remove().0)
    }

    fn add_listener(&mut self, tuple: &SocketTuple, id: SocketId, owner: Option<Arc<Owner>>) {
        self.listeners
            .entry((tuple.netns, tuple.local.port()))
            .or_default()
            .push(Listener {
                id,
                local: tuple.local,
                owner,
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
        let slab = &mut self.slab;
        let mut keep = |&mut slot: &mut u32| {
            let gone = slab[slot].netns == netns;
            if gone {
                slab.free(slot);
            }
            !gone
        };
        self.by_skaddr.retain(&mut keep);
        self.seeded.retain(keep);
        self.listeners
            .retain(|(listening_in, _), _| *listening_in != netns);
        self.stats.torn_down += (before - self.len()) as u64;
    }

    /// Owner of the listener that accepts on `local` in namespace `netns`:
    /// one bound to that very address first, else a wildcard one of the
    /// same family.
    pub fn listener_owner(&self, netns: NetnsInode, local: &SocketAddr) -> Option<Owner> {
        self.listener(netns, local)
            .and_then(|l| l.owner.as_deref().cloned())
    }

    /// The listener that accepts on `local` in namespace `netns`, as
    /// [`SocketTable::listener_owner`] chooses it.
    fn listener(&self, netns: NetnsInode, local: &SocketAddr) -> Option<&Listener> {
        let on_port = self.listeners.get(&(netns, local.port()))?;
        let exact = on_port.iter().find(|l| l.local.ip() == local.ip());
        let wildcard = || {
            on_port
                .iter()
                .find(|l| l.local.ip().is_unspecified() && l.local.is_ipv4() == local.is_ipv4())
        };
        exact.or_else(wildcard)
    }
}

#[cfg(test)]
mod tests;
