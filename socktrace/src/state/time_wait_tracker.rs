//! TIME-WAIT accounting: every timewait socket from the moment it takes
//! over a closed connection to the moment it is gone, and why it went.
//! Pure: decoded events, sock_diag listings and their times in; entries and
//! ends out.
//!
//! Entry: the kernel never reports a transition to `TIME_WAIT`. When a
//! connection closes actively, `tcp_time_wait()` hashes a separate timewait
//! socket on the same 4-tuple and the full socket goes `FIN_WAIT2 -> CLOSE`
//! (or `CLOSING -> CLOSE`). Those transitions, unless a RST was received
//! just before, are entries; each is confirmed by the next listing of
//! timewait sockets of its network namespace (the kernel may have refused
//! to create one, counted in `TcpExtTCPTimeWaitOverflow`). The tracepoints
//! see every namespace, sock_diag lists one: listings are per namespace and
//! judge only that namespace's sockets.
//!
//! A timewait socket has a substate: `TIME_WAIT`, or `FIN_WAIT2` while an
//! orphaned connection (the application closed it) still waits for the
//! peer's FIN; the peer's FIN turns it into `TIME_WAIT` and restarts its
//! timer. `ss -tan state time-wait` counts only the first.
//!
//! End: a confirmed socket is gone when two listings in a row no longer
//! show it (a kernel dump is no atomic snapshot: with churn it can skip a
//! socket), or when a new connection on its 4-tuple appears in the event
//! stream (a "claim"):
//! - `reused`: a new connection took its 4-tuple (`tcp_tw_reuse`, a bound
//!   port, or a new SYN accepted by a server's timewait socket), at the
//!   claim, or (when the claim comes later: a connect's port is seen only
//!   at `SYN_SENT -> ESTABLISHED`, a server child only at the final ACK)
//!   between the last listing that showed it and the first that did not;
//! - `expired`: gone once its timer, as last listed, was due (also when a
//!   claim came after that);
//! - `killed`: gone before its timer was due, with no claim (a RST
//!   received in TIME-WAIT);
//! - `teardown`: its network namespace was deleted before its timer was
//!   due (the kernel purges a namespace's timewait sockets as it goes).
//!
//! Between two listings only bounds are known: an end is reported as the
//! middle of the interval in which it happened, with that interval's half
//! width as its uncertainty.
use std::hash::BuildHasher;

use hashbrown::{HashTable, hash_table::Entry};

use crate::{
    host::sock_diag::DiagSocket,
    kernel::event::{SocketSignal, StateEvent},
    model::owner::Owner,
    model::tcp_state::TcpState,
    model::tuple::{NetnsInode, SocketTuple},
    state::table::{Opening, Transition},
    support::fast_hash::{FastMap, FastSet},
};

/// A socket gone less than this before its timer was due still counts as
/// expired: due times are taken from when the dump began, not from when it
/// reached that socket, and timers run on jiffies.
const DUE_TOLERANCE_NS: u64 = 100_000_000;

/// A RST received this long before a close no longer explains it.
const RESET_MEMORY_NS: u64 = 1_000_000_000;

/// How the tracker learned of a timewait socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeWaitOrigin {
    /// Its entry was traced.
    Traced,
    /// Listed by the first listing: it existed before tracing began.
    Existing,
    /// Listed later without an entry in the event stream (events lost).
    Unseen,
}

impl TimeWaitOrigin {
    pub fn name(self) -> &'static str {
        match self {
            TimeWaitOrigin::Traced => "traced",
            TimeWaitOrigin::Existing => "existing",
            TimeWaitOrigin::Unseen => "unseen",
        }
    }
}

/// One timewait socket the tracker follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeWaitSocket {
    pub tuple: SocketTuple,
    /// The connection's owner when it closed.
    pub owner: Option<Owner>,
    pub origin: TimeWaitOrigin,
    /// When the full socket closed into it, if traced.
    pub entered_ns: Option<u64>,
    /// The state the full socket left: `FIN_WAIT2` or `CLOSING`.
    pub entered_from: Option<TcpState>,
    /// How long the connection lived before, when its birth was seen.
    pub connection_ns: Option<u64>,
    /// How that connection was opened, when its birth was seen: only an
    /// active open holds an ephemeral port.
    pub opening: Option<Opening>,
    /// Its substate when last listed (`TIME_WAIT` or `FIN_WAIT2`); `None`
    /// until a listing shows it.
    pub substate: Option<TcpState>,
    /// When the last listing that showed it began.
    pub listed_ns: Option<u64>,
    /// When its timer is due, by that listing.
    pub due_ns: Option<u64>,
    /// When a new connection on its 4-tuple appeared since it was last
    /// listed.
    pub claimed_ns: Option<u64>,
    /// When the first listing that did not show it ended; it is gone if
    /// the next one does not show it either (or a claim comes first).
    pub missing_ns: Option<u64>,
    /// Its traced entry was reported as confirmed.
    announced: bool,
}

impl TimeWaitSocket {
    fn traced(t: &Transition, tuple: SocketTuple) -> Self {
        TimeWaitSocket {
            tuple,
            owner: t.owner.clone(),
            origin: TimeWaitOrigin::Traced,
            entered_ns: Some(t.ts_ns),
            entered_from: Some(t.old_state),
            connection_ns: t.ended.as_ref().and_then(|e| e.lifetime_ns),
            opening: t.ended.as_ref().and_then(|e| e.opening),
            substate: None,
            listed_ns: None,
            due_ns: None,
            claimed_ns: None,
            missing_ns: None,
            announced: false,
        }
    }

    /// Listed by sock_diag without a traced entry.
    fn listed(listed: &ListedTimeWait, origin: TimeWaitOrigin) -> Self {
        TimeWaitSocket {
            tuple: listed.tuple.canonical(),
            owner: None,
            origin,
            entered_ns: None,
            entered_from: None,
            connection_ns: None,
            opening: None,
            substate: None,
            listed_ns: None,
            due_ns: None,
            claimed_ns: None,
            missing_ns: None,
            announced: false,
        }
    }
}

/// Why a timewait socket is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeWaitEnd {
    Expired,
    Reused,
    Killed,
    Teardown,
}

impl TimeWaitEnd {
    pub const ALL: [TimeWaitEnd; 4] = [
        TimeWaitEnd::Expired,
        TimeWaitEnd::Reused,
        TimeWaitEnd::Killed,
        TimeWaitEnd::Teardown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TimeWaitEnd::Expired => "expired",
            TimeWaitEnd::Reused => "reused",
            TimeWaitEnd::Killed => "killed",
            TimeWaitEnd::Teardown => "teardown",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A timewait socket that is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndedTimeWait {
    pub socket: TimeWaitSocket,
    pub end: TimeWaitEnd,
    /// The earliest and latest moment it can have ended (equal when the
    /// end was in the event stream).
    pub ended_within_ns: (u64, u64),
}

impl EndedTimeWait {
    /// When it ended: the middle of [`EndedTimeWait::ended_within_ns`].
    pub fn ended_ns(&self) -> u64 {
        let (earliest, latest) = self.ended_within_ns;
        earliest + (latest - earliest) / 2
    }

    /// How far [`EndedTimeWait::ended_ns`] may be from the real end.
    pub fn uncertainty_ns(&self) -> u64 {
        let (earliest, latest) = self.ended_within_ns;
        (latest - earliest).div_ceil(2)
    }

    /// Entry to end, when the entry was traced.
    pub fn lifetime_ns(&self) -> Option<u64> {
        let entered = self.socket.entered_ns?;
        Some(self.ended_ns().saturating_sub(entered))
    }
}

/// When a listing's dump began and ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListingTime {
    pub began_ns: u64,
    pub ended_ns: u64,
}

/// A timewait socket as sock_diag lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListedTimeWait {
    pub tuple: SocketTuple,
    /// `TIME_WAIT` or `FIN_WAIT2`.
    pub substate: TcpState,
    /// Until its timer is due, from when the listing reached it.
    pub expires_ms: u32,
}

/// What a transition or a listing decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TimeWaitOutcome {
    /// Traced entries the listing confirmed (or a reuse proved).
    pub entered: Vec<TimeWaitSocket>,
    pub ended: Vec<EndedTimeWait>,
}

impl TimeWaitOutcome {
    /// Adds an end, after the entry it confirms if that was never reported.
    fn ended(&mut self, ended: EndedTimeWait) {
        if ended.socket.origin == TimeWaitOrigin::Traced && !ended.socket.announced {
            self.entered.push(ended.socket.clone());
        }
        self.ended.push(ended);
    }
}

/// How many timewait sockets are tracked now, by substate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeWaitCounts {
    /// Listed in `TIME_WAIT` (what `ss -tan state time-wait` counts).
    pub time_wait: u64,
    /// Listed in `FIN_WAIT2`: orphans still waiting for the peer's FIN.
    pub fin_wait2: u64,
    /// Entered since the last listing began.
    pub unlisted: u64,
}

impl TimeWaitCounts {
    pub fn add(&mut self, socket: &TimeWaitSocket) {
        match socket.substate {
            Some(TcpState::FinWait2) => self.fin_wait2 += 1,
            Some(_) => self.time_wait += 1,
            None => self.unlisted += 1,
        }
    }
}

/// What the tracker could not account for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeWaitStats {
    /// Entries no listing of their namespace ever showed: refused by the
    /// kernel (`TCPTimeWaitOverflow`), or their namespace was gone before
    /// it could be listed.
    pub never_listed: u64,
    /// Timewait sockets listed without a traced entry after the first
    /// listing (entries lost).
    pub unseen: u64,
    /// Entries on a 4-tuple still tracked with no new connection seen on
    /// it in between (events lost).
    pub replaced: u64,
    /// Sockets a listing skipped and the next one showed again.
    pub relisted: u64,
}

/// The timewait sockets among a dump's `sockets` (a dump that asked for
/// TIME-WAIT and FIN-WAIT-2 also gets full FIN-WAIT-2 sockets).
pub fn listed_time_wait(sockets: &[DiagSocket]) -> Vec<ListedTimeWait> {
    sockets
        .iter()
        .filter(|s| s.is_timewait())
        .map(|s| ListedTimeWait {
            tuple: s.tuple,
            substate: s.state,
            expires_ms: s.timer.expires_ms(),
        })
        .collect()
}

/// The timewait sockets being followed. See the module documentation.
#[derive(Debug, Default)]
pub struct TimeWaitTracker {
    /// The kernel's timewait sockets (at most `tcp_max_tw_buckets` per
    /// namespace) and the entries the next listing confirms or drops.
    sockets: TimeWaitSockets,
    /// Sockets (by kernel address) that received a RST, and when: those of
    /// the last [`RESET_MEMORY_NS`] before a listing.
    resets: FastMap<u64, u64>,
    /// Namespaces listed at least once: their first listing shows what
    /// existed before.
    listed_namespaces: FastSet<NetnsInode>,
    stats: TimeWaitStats,
}

impl TimeWaitTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// A RST arrived on a full socket: its coming close is no entry.
    pub fn on_reset(&mut self, reset: &SocketSignal) {
        self.resets.insert(reset.skaddr, reset.ts_ns);
    }

    /// One transition, after the socket table applied it. Something ends
    /// only when a new entry takes the 4-tuple of a timewait socket before
    /// a listing showed it gone.
    pub fn on_transition(&mut self, event: &StateEvent, t: &Transition) -> TimeWaitOutcome {
        let reset = if t.new_state == TcpState::Close {
            self.resets.remove(&event.skaddr)
        } else {
            None
        };
        let mut outcome = TimeWaitOutcome::default();
        if t.tuple.local.port() == 0 {
            return outcome;
        }
        let enters = t.new_state == TcpState::Close
            && matches!(t.old_state, TcpState::FinWait2 | TcpState::Closing)
            && reset.is_none();
        // A connection being opened on a timewait socket's 4-tuple took it
        // over (the next listing tells whether it really did). A birth with
        // the tuple is the latest attempt to take it (a bound connect that
        // failed with EADDRNOTAVAIL may come before); without one, the
        // connection's first transition with its port (after a `CLOSE ->
        // SYN_SENT` before the port was chosen) is. The closing transitions
        // of the connection the timewait socket replaced are neither, nor
        // is any transition of an established connection: those are not
        // looked up at all, the bulk of a churn's transitions.
        if !enters {
            let birth = matches!(t.old_state, TcpState::Close | TcpState::Listen);
            let first_sight = matches!(t.old_state, TcpState::SynSent | TcpState::SynRecv);
            if !(birth || first_sight) {
                return outcome;
            }
            let tuple = t.tuple.canonical();
            let Some(socket) = self.sockets.get_mut(&tuple) else {
                return outcome;
            };
            if socket.entered_ns.is_some_and(|entered| t.ts_ns < entered)
                || !(birth || (first_sight && socket.claimed_ns.is_none()))
            {
                return outcome;
            }
            socket.claimed_ns = Some(t.ts_ns);
            if socket.missing_ns.is_some() {
                // Already missing from a listing: this claim says why.
                let socket = self.remove(&tuple);
                outcome.ended(claimed_end(socket, t.ts_ns));
            }
            return outcome;
        }
        let tuple = t.tuple.canonical();
        let entry = TimeWaitSocket::traced(t, tuple);
        match self.sockets.entry(&tuple) {
            Entry::Vacant(vacant) => {
                vacant.insert(entry);
            }
            Entry::Occupied(mut occupied) => {
                let known = occupied.get_mut();
                if known.entered_ns.is_none() && known.claimed_ns.is_none() {
                    // Listed before its entry was handled: the same socket.
                    if known.origin == TimeWaitOrigin::Unseen {
                        self.stats.unseen -= 1;
                    }
                    known.origin = TimeWaitOrigin::Traced;
                    known.owner = entry.owner;
                    known.entered_ns = entry.entered_ns;
                    known.entered_from = entry.entered_from;
                    known.connection_ns = entry.connection_ns;
                    known.opening = entry.opening;
                    return outcome;
                }
                let claimed = known.claimed_ns.unwrap_or_else(|| {
                    self.stats.replaced += 1;
                    t.ts_ns
                });
                let old = std::mem::replace(occupied.get_mut(), entry);
                outcome.ended(claimed_end(old, claimed));
            }
        }
        outcome
    }

    /// A listing of every timewait socket of namespace `netns`, applied
    /// once the events before it began were handled.
    pub fn on_listing(
        &mut self,
        netns: NetnsInode,
        listed: &[ListedTimeWait],
        time: ListingTime,
    ) -> TimeWaitOutcome {
        let ListingTime { began_ns, ended_ns } = time;
        let first = self.listed_namespaces.insert(netns);
        self.resets
            .retain(|_, &mut at| at.saturating_add(RESET_MEMORY_NS) >= began_ns);
        let mut outcome = TimeWaitOutcome::default();
        for listing in listed {
            let tuple = listing.tuple.canonical();
            let socket = self
                .sockets
                .entry(&tuple)
                .or_insert_with(|| {
                    let origin = if first {
                        TimeWaitOrigin::Existing
                    } else {
                        self.stats.unseen += 1;
                        TimeWaitOrigin::Unseen
                    };
                    TimeWaitSocket::listed(listing, origin)
                })
                .into_mut();
            if socket.origin == TimeWaitOrigin::Traced && !socket.announced {
                socket.announced = true;
                outcome.entered.push(socket.clone());
            }
            if socket.missing_ns.take().is_some() {
                self.stats.relisted += 1;
            }
            socket.listed_ns = Some(began_ns);
            socket.substate = Some(listing.substate);
            socket.due_ns = Some(began_ns + u64::from(listing.expires_ms) * 1_000_000);
            // A connection that claimed the tuple but left it in place
            // failed to take it over (EADDRNOTAVAIL).
            if socket.claimed_ns.is_some_and(|claimed| claimed < began_ns) {
                socket.claimed_ns = None;
            }
        }
        let mut unlisted: Vec<SocketTuple> = self
            .sockets
            .iter()
            .filter(|s| {
                s.tuple.netns == netns
                    && s.listed_ns != Some(began_ns)
                    && s.entered_ns.is_none_or(|e| e < began_ns)
            })
            .map(|s| s.tuple)
            .collect();
        // Ends in the order of their tuples, not of the hash table: the same
        // listing gives the same lines in every run and every replay.
        unlisted.sort_unstable();
        for tuple in unlisted {
            let socket = self.sockets.get_mut(&tuple).expect("listed above");
            let ended = match (socket.claimed_ns, socket.listed_ns, socket.missing_ns) {
                (Some(claimed), _, _) => claimed_end(self.remove(&tuple), claimed),
                // Never listed, and no claim proves it existed: refused
                // by the kernel.
                (None, None, _) => {
                    self.remove(&tuple);
                    self.stats.never_listed += 1;
                    continue;
                }
                (None, Some(_), None) => {
                    socket.missing_ns = Some(ended_ns);
                    continue;
                }
                (None, Some(_), Some(missing)) => timer_end(self.remove(&tuple), missing),
            };
            outcome.ended(ended);
        }
        outcome
    }

    /// Namespace `netns` is gone, found so at `now_ns`: the kernel purged
    /// its timewait sockets. Each one ends `teardown`, unless its timer was
    /// due first.
    pub fn tear_down(&mut self, netns: NetnsInode, now_ns: u64) -> TimeWaitOutcome {
        self.listed_namespaces.remove(&netns);
        let mut in_namespace: Vec<SocketTuple> = self
            .sockets
            .iter()
            .filter(|s| s.tuple.netns == netns)
            .map(|s| s.tuple)
            .collect();
        in_namespace.sort_unstable();
        let mut outcome = TimeWaitOutcome::default();
        for tuple in in_namespace {
            let socket = self.remove(&tuple);
            if socket.listed_ns.is_none() {
                self.stats.never_listed += 1;
                continue;
            }
            let gone_by = socket.missing_ns.unwrap_or(now_ns);
            let mut ended = timer_end(socket, gone_by);
            if ended.end == TimeWaitEnd::Killed {
                ended.end = TimeWaitEnd::Teardown;
            }
            outcome.ended(ended);
        }
        outcome
    }

    fn remove(&mut self, tuple: &SocketTuple) -> TimeWaitSocket {
        self.sockets.remove(tuple).expect("a tracked tuple")
    }

    /// The timewait sockets that exist now (as far as the last listing
    /// knows), in no particular order.
    pub fn sockets(&self) -> impl Iterator<Item = &TimeWaitSocket> {
        self.sockets.iter().filter(|s| s.missing_ns.is_none())
    }

    pub fn stats(&self) -> TimeWaitStats {
        self.stats
    }
}

/// The followed timewait sockets, by canonical tuple (a v4-mapped IPv6
/// socket's entry and listing name the same socket), which each entry
/// holds as its `tuple`: a map would store it again as the key.
#[derive(Debug, Default)]
struct TimeWaitSockets {
    table: HashTable<TimeWaitSocket>,
    hasher: foldhash::fast::RandomState,
}

impl TimeWaitSockets {
    fn get_mut(&mut self, tuple: &SocketTuple) -> Option<&mut TimeWaitSocket> {
        self.table
            .find_mut(self.hasher.hash_one(tuple), |s| s.tuple == *tuple)
    }

    fn entry(&mut self, tuple: &SocketTuple) -> Entry<'_, TimeWaitSocket> {
        let hasher = &self.hasher;
        self.table.entry(
            hasher.hash_one(tuple),
            |s| s.tuple == *tuple,
            |s| hasher.hash_one(s.tuple),
        )
    }

    fn remove(&mut self, tuple: &SocketTuple) -> Option<TimeWaitSocket> {
        self.table
            .find_entry(self.hasher.hash_one(tuple), |s| s.tuple == *tuple)
            .ok()
            .map(|entry| entry.remove().0)
    }

    fn iter(&self) -> impl Iterator<Item = &TimeWaitSocket> {
        self.table.iter()
    }
}

/// The end of a socket a new connection claimed at `claimed_ns`: reused
/// then, unless its timer was due first. Missing from a listing already,
/// it ended before that listing ended, after the last one that showed it.
fn claimed_end(socket: TimeWaitSocket, claimed_ns: u64) -> EndedTimeWait {
    let latest = socket.missing_ns.map_or(claimed_ns, |m| m.min(claimed_ns));
    let listed = socket.listed_ns.unwrap_or(latest).min(latest);
    if let Some(due) = socket.due_ns
        && due <= latest + DUE_TOLERANCE_NS
    {
        return EndedTimeWait {
            socket,
            end: TimeWaitEnd::Expired,
            ended_within_ns: (due.clamp(listed, latest), latest),
        };
    }
    let earliest = if socket.missing_ns.is_some() {
        listed
    } else {
        latest
    };
    EndedTimeWait {
        socket,
        end: TimeWaitEnd::Reused,
        ended_within_ns: (earliest, latest),
    }
}

/// The end of a socket two listings missed, the first ending at
/// `missing_ns`, with no claim: its timer's, or a kill before it.
fn timer_end(socket: TimeWaitSocket, missing_ns: u64) -> EndedTimeWait {
    let listed = socket.listed_ns.unwrap_or(missing_ns).min(missing_ns);
    let due = socket.due_ns.unwrap_or(listed);
    let (end, earliest) = if due <= missing_ns + DUE_TOLERANCE_NS {
        (TimeWaitEnd::Expired, due.clamp(listed, missing_ns))
    } else {
        (TimeWaitEnd::Killed, listed)
    };
    EndedTimeWait {
        socket,
        end,
        ended_within_ns: (earliest, missing_ns),
    }
}

#[cfg(test)]
mod tests;
