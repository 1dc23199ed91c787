//! Handshake accounting: every TCP handshake attempt, both sides, from its
//! first SYN (or SYN-ACK) to one outcome. Pure: decoded events and an
//! explicit `now` in, resolved attempts out.
//!
//! Client (active open), keyed by the socket's kernel address:
//! `CLOSE -> SYN_SENT` starts it, SYN retransmits are counted, and it ends
//! `established` (`-> ESTABLISHED`) or, on `SYN_SENT -> CLOSE`, by what the
//! kernel side read from the socket at that moment: a RST received first is
//! `refused`; `sk_err` `ETIMEDOUT` is `timeout`; any other `sk_err`, or with
//! none a soft ICMP error (`sk_err_soft`) the application saw through
//! `SO_ERROR`, is `unreachable` (ICMP port unreachable gives
//! `ECONNREFUSED` without a RST); no error at all means the application
//! closed first, `aborted`. A close before a local port was bound is
//! `no_local_port` (`EADDRNOTAVAIL`: the ephemeral range is exhausted).
//!
//! Why not `sock:inet_sk_error_report`: it carries no socket address, it
//! fires with error 0 (after `tcp_disconnect`, and when an ICMP error is
//! held back as a soft error), and a soft error never reaches it. The
//! socket's own error fields at the close are exact and arrive in the same
//! record.
//!
//! Server (passive open), keyed by the 4-tuple (IPv4-mapped addresses as
//! IPv4: a dual-stack listener's request is IPv4, its child IPv6): request
//! sockets emit no
//! state event, so a half-open connection is known from its SYN-ACK
//! retransmits and from the request sockets sock_diag lists (as
//! `ss state syn-recv` does). It ends `completed` when the child socket on
//! that tuple reaches `ESTABLISHED` (its `LISTEN -> SYN_RECV` birth carries
//! no remote address before Linux 6.15), or `expired` when a snapshot no
//! longer lists it. A snapshot is applied after the ring was drained past
//! the time it was taken, so completions since then are remembered and
//! //! their request sockets, still listed, are not taken for half-open ones.
//!
//! Namespaces: the tracepoints see every network namespace, sock_diag only
//! the one it runs in, so snapshots are taken per namespace and judge only
//! that namespace's attempts. An entry never confirmed by a snapshot of its
//! namespace and then missing from one is dropped and counted, not guessed
//! at; attempts of a namespace that is gone are dropped and counted too.

use crate::{
    host::sock_diag::DiagSocket,
    kernel::event::{SocketSignal, StateEvent, SynAckRetransmit},
    model::owner::Owner,
    model::tcp_state::TcpState,
    model::tuple::{NetnsInode, SocketTuple},
    state::table::{SocketTable, Transition},
    support::fast_hash::FastMap,
};

/// Which end of the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// Active open: this host sent the SYN.
    Client,
    /// Passive open: this host answered with a SYN-ACK.
    Server,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Established,
    Timeout,
    Refused,
    Unreachable,
    Aborted,
    NoLocalPort,
    Completed,
    Expired,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::Established,
        Outcome::Timeout,
        Outcome::Refused,
        Outcome::Unreachable,
        Outcome::Aborted,
        Outcome::NoLocalPort,
        Outcome::Completed,
        Outcome::Expired,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Established => "established",
            Outcome::Timeout => "timeout",
            Outcome::Refused => "refused",
            Outcome::Unreachable => "unreachable",
            Outcome::Aborted => "aborted",
            Outcome::NoLocalPort => "no_local_port",
            Outcome::Completed => "completed",
            Outcome::Expired => "expired",
        }
    }

    /// Position in [`Outcome::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The handshake got through.
    pub fn succeeded(self) -> bool {
        matches!(self, Outcome::Established | Outcome::Completed)
    }
}

/// A resolved attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    pub side: Side,
    pub tuple: SocketTuple,
    /// The connecting process (client) or the listener's (server).
    pub owner: Option<Owner>,
    pub outcome: Outcome,
    /// The error the kernel reported, for failed client attempts.
    pub errno: Option<u32>,
    /// First SYN (client) or first SYN-ACK (server), when seen.
    pub started_ns: Option<u64>,
    pub ended_ns: u64,
    /// When each SYN or SYN-ACK retransmit went out.
    pub retransmits_ns: Vec<u64>,
    /// The kernel's own count of SYN-ACK retransmits when it exceeds what
    /// was seen (some happened before tracing began).
    pub kernel_retransmits: Option<u32>,
}

impl Handshake {
    /// First SYN (or SYN-ACK) to the outcome.
    pub fn duration_ns(&self) -> Option<u64> {
        self.started_ns
            .map(|start| self.ended_ns.saturating_sub(start))
    }

    /// Retransmit times as offsets from the first SYN (or SYN-ACK).
    pub fn retransmit_offsets_ns(&self) -> Option<Vec<u64>> {
        let start = self.started_ns?;
        Some(
            self.retransmits_ns
                .iter()
                .map(|&at| at.saturating_sub(start))
                .collect(),
        )
    }

    /// Retransmits, counting the kernel's figure when it knows more.
    pub fn retransmits(&self) -> u32 {
        let seen = self.retransmits_ns.len() as u32;
        self.kernel_retransmits
            .map_or(seen, |kernel| kernel.max(seen))
    }
}

/// An attempt still in progress that just retransmitted, as `ss -o` shows
/// `timer:(on,...,N)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retrying {
    pub side: Side,
    pub tuple: SocketTuple,
    pub owner: Option<Owner>,
    pub at_ns: u64,
    /// Retransmits so far, this one included.
    pub retransmits: u32,
    /// Since the first SYN (or SYN-ACK), when seen.
    pub elapsed_ns: Option<u64>,
}

/// A request socket as a sock_diag snapshot lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestSocket {
    pub tuple: SocketTuple,
    /// SYN-ACK retransmits so far (`idiag_retrans`).
    pub retransmits: u32,
    /// The owner of the listener it belongs to.
    pub owner: Option<Owner>,
}

/// Attempts the tracker gave up on without an outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandshakeStats {
    /// Client attempts whose end was not seen (lost events): their socket
    /// went on past the handshake, or its address was reused.
    pub client_ends_missed: u64,
    /// Half-open connections seen only in SYN-ACK retransmits that no
    /// snapshot of their namespace ever listed.
    pub server_unlisted: u64,
    /// Attempts in progress when their network namespace was gone.
    pub torn_down: u64,
}

#[derive(Clone, Debug)]
struct ClientAttempt {
    tuple: SocketTuple,
    owner: Option<Owner>,
    started_ns: Option<u64>,
    retransmits_ns: Vec<u64>,
    reset: bool,
}

#[derive(Clone, Debug)]
struct HalfOpen {
    owner: Option<Owner>,
    started_ns: Option<u64>,
    retransmits_ns: Vec<u64>,
    kernel_retransmits: Option<u32>,
    /// Listed by a snapshot at least once: it lives in this namespace.
    confirmed: bool,
    /// Time of the latest event about it.
    last_event_ns: u64,
}

/// An attempt in progress, as the live views show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InProgress {
    pub side: Side,
    /// With IPv4-mapped addresses written as IPv4.
    pub tuple: SocketTuple,
    /// Its first SYN (or SYN-ACK), when seen.
    pub started_ns: Option<u64>,
    /// SYN (or SYN-ACK) retransmits seen so far.
    pub retransmits: u32,
    pub owner: Option<Owner>,
}

/// The request sockets (half-open connections) among a dump's `sockets`,
/// with the owner of the listener each one came to.
pub fn request_sockets(sockets: &[DiagSocket], table: &SocketTable) -> Vec<RequestSocket> {
    sockets
        .iter()
        // Request sockets have no inode; a full socket in SYN_RECV (a Fast
        // Open child) is not a half-open connection.
        .filter(|s| s.state == TcpState::SynRecv && s.inode == 0)
        .map(|s| RequestSocket {
            tuple: s.tuple,
            retransmits: u32::from(s.retransmits()),
            owner: table.listener_owner(s.tuple.netns, &s.tuple.local),
        })
        .collect()
}

/// The tracker. See the module documentation.
#[derive(Debug, Default)]
pub struct HandshakeTracker {
    /// By `struct sock` address: the kernel's sockets in SYN-SENT (one
    /// whose end was lost goes at the socket's next transition, or when its
    /// address is reused).
    clients: FastMap<u64, ClientAttempt>,
    /// The kernel's request sockets (each listener's backlog at most): one
    /// its namespace's next listing misses is dropped.
    half_open: FastMap<SocketTuple, HalfOpen>,
    /// Server completions since the last settle, by canonical tuple: a
    /// snapshot taken before one may still list its request socket. Each
    /// namespace's listing forgets its own, and a settle all (see
    /// [`HandshakeTracker::settled`]), so this holds one drain's worth.
    recent_completions: FastMap<SocketTuple, u64>,
    stats: HandshakeStats,
}

impl HandshakeTracker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> HandshakeStats {
        self.stats
    }

    /// Attempts in progress: client attempts, then half-open connections.
    pub fn pending(&self) -> usize {
        self.clients.len() + self.half_open.len()
    }

    /// Half-open connections (server attempts) in progress.
    pub fn half_open(&self) -> usize {
        self.half_open.len()
    }

    /// Every attempt in progress, both sides, in no particular order.
    pub fn in_progress(&self) -> impl Iterator<Item = InProgress> + '_ {
        let clients = self.clients.values().map(|a| InProgress {
            side: Side::Client,
            tuple: a.tuple.canonical(),
            started_ns: a.started_ns,
            retransmits: a.retransmits_ns.len() as u32,
            owner: a.owner.clone(),
        });
        let servers = self.half_open.iter().map(|(tuple, h)| InProgress {
            side: Side::Server,
            tuple: *tuple,
            started_ns: h.started_ns,
            retransmits: h.retransmits_ns.len() as u32,
            owner: h.owner.clone(),
        });
        clients.chain(servers)
    }

    /// A state transition, after the socket table applied it (`t`).
    pub fn on_transition(&mut self, event: &StateEvent, t: &Transition) -> Option<Handshake> {
        let skaddr = event.skaddr;
        match (t.old_state, t.new_state) {
            (TcpState::Close, TcpState::SynSent) => {
                if self.clients.remove(&skaddr).is_some() {
                    self.stats.client_ends_missed += 1;
                }
                self.clients.insert(
                    skaddr,
                    ClientAttempt {
                        tuple: t.tuple,
                        owner: t.owner.clone(),
                        started_ns: Some(t.ts_ns),
                        retransmits_ns: Vec::new(),
                        reset: false,
                    },
                );
                None
            }
            (_, TcpState::Established) => match self.clients.remove(&skaddr) {
                Some(attempt) => Some(client_outcome(attempt, t, Outcome::Established, None)),
                None if t.old_state == TcpState::SynRecv => Some(self.completed(t)),
                None => None,
            },
            (TcpState::SynSent | TcpState::SynRecv, TcpState::Close) => {
                let attempt = self.clients.remove(&skaddr)?;
                let (outcome, errno) = failed_connect(&attempt, event);
                Some(client_outcome(attempt, t, outcome, errno))
            }
            // Simultaneous open: still a handshake.
            (TcpState::SynSent, _) => {
                if let Some(attempt) = self.clients.get_mut(&skaddr) {
                    attempt.tuple = t.tuple;
                    attempt.owner = t.owner.clone().or(attempt.owner.take());
                }
                None
            }
            // Past the handshake: an attempt still held lost its end.
            _ => {
                if self.clients.remove(&skaddr).is_some() {
                    self.stats.client_ends_missed += 1;
                }
                None
            }
        }
    }

    /// A SYN retransmit. `owner` is the socket's, from the table, for an
    /// attempt that began before tracing did.
    pub fn on_syn_retransmit(&mut self, signal: &SocketSignal, owner: Option<Owner>) -> Retrying {
        let attempt = self
            .clients
            .entry(signal.skaddr)
            .or_insert_with(|| ClientAttempt {
                tuple: signal.tuple,
                owner,
                started_ns: None,
                retransmits_ns: Vec::new(),
                reset: false,
            });
        attempt.tuple = signal.tuple;
        attempt.retransmits_ns.push(signal.ts_ns);
        Retrying {
            side: Side::Client,
            tuple: attempt.tuple,
            owner: attempt.owner.clone(),
            at_ns: signal.ts_ns,
            retransmits: attempt.retransmits_ns.len() as u32,
            elapsed_ns: attempt.started_ns.map(|s| signal.ts_ns.saturating_sub(s)),
        }
    }

    /// A SYN-ACK retransmit; `owner` is the listener's.
    pub fn on_synack_retransmit(
        &mut self,
        event: &SynAckRetransmit,
        owner: Option<Owner>,
    ) -> Retrying {
        let half_open = self
            .half_open
            .entry(event.tuple.canonical())
            .or_insert_with(|| HalfOpen {
                owner: owner.clone(),
                started_ns: None,
                retransmits_ns: Vec::new(),
                kernel_retransmits: None,
                confirmed: false,
                last_event_ns: event.ts_ns,
            });
        half_open.started_ns = half_open.started_ns.or(event.first_synack_ns);
        half_open.owner = half_open.owner.take().or(owner);
        half_open.retransmits_ns.push(event.ts_ns);
        half_open.last_event_ns = event.ts_ns;
        Retrying {
            side: Side::Server,
            tuple: event.tuple,
            owner: half_open.owner.clone(),
            at_ns: event.ts_ns,
            retransmits: half_open.retransmits_ns.len() as u32,
            elapsed_ns: half_open.started_ns.map(|s| event.ts_ns.saturating_sub(s)),
        }
    }

    /// A RST arrived on a socket: a client attempt it hits is refused.
    pub fn on_reset(&mut self, signal: &SocketSignal) {
        if let Some(attempt) = self.clients.get_mut(&signal.skaddr) {
            attempt.reset = true;
        }
    }

    /// The request sockets of namespace `netns`, listed at `taken_ns`
    /// (applied once the ring was drained past that time). Lists new half-open
    /// connections, confirms known ones and decides the missing ones of
    /// that namespace.
    pub fn on_request_snapshot(
        &mut self,
        netns: NetnsInode,
        listed: &[RequestSocket],
        taken_ns: u64,
    ) -> Vec<Handshake> {
        let mut present = std::collections::HashSet::with_capacity(listed.len());
        for request in listed {
            // One that completed before the dump began was gone from it:
            // a request on its tuple now is a new connection.
            if self
                .recent_completions
                .get(&request.tuple.canonical())
                .is_some_and(|&completed_ns| completed_ns >= taken_ns)
            {
                continue;
            }
            present.insert(request.tuple.canonical());
            let half_open = self
                .half_open
                .entry(request.tuple.canonical())
                .or_insert_with(|| HalfOpen {
                    owner: request.owner.clone(),
                    started_ns: None,
                    retransmits_ns: Vec::new(),
                    kernel_retransmits: None,
                    confirmed: false,
                    last_event_ns: taken_ns,
                });
            half_open.confirmed = true;
            half_open.owner = half_open.owner.take().or(request.owner.clone());
            half_open.kernel_retransmits = Some(request.retransmits);
        }
        let mut gone: Vec<SocketTuple> = self
            .half_open
            .iter()
            .filter(|(tuple, h)| {
                tuple.netns == netns && !present.contains(*tuple) && h.last_event_ns < taken_ns
            })
            .map(|(tuple, _)| *tuple)
            .collect();
        // In the order of their tuples, not of the hash table (see the
        // TIME-WAIT tracker).
        gone.sort_unstable();
        self.recent_completions
            .retain(|tuple, completed_ns| tuple.netns != netns || *completed_ns >= taken_ns);
        let mut expired = Vec::new();
        for tuple in gone {
            let Some(half_open) = self.half_open.remove(&tuple) else {
                continue;
            };
            if !half_open.confirmed {
                self.stats.server_unlisted += 1;
                continue;
            }
            expired.push(Handshake {
                side: Side::Server,
                tuple,
                owner: half_open.owner.clone(),
                outcome: Outcome::Expired,
                errno: None,
                started_ns: half_open.started_ns,
                ended_ns: taken_ns,
                retransmits_ns: half_open.retransmits_ns,
                kernel_retransmits: half_open.kernel_retransmits,
            });
        }
        expired
    }

    /// The records drained so far and the listing they were drained for
    /// (if any) were applied: every later listing begins after the
    /// completions seen so far, so none of them can hide in one.
    pub fn settled(&mut self) {
        self.recent_completions.clear();
    }

    /// Namespace `netns` is gone: its attempts in progress are dropped and
    /// counted (its sockets, which hold it while they live, cannot be
    /// handshaking; what is left is what lost events left behind).
    pub fn tear_down(&mut self, netns: NetnsInode) {
        let before = self.pending();
        self.clients
            .retain(|_, attempt| attempt.tuple.netns != netns);
        self.half_open.retain(|tuple, _| tuple.netns != netns);
        self.recent_completions
            .retain(|tuple, _| tuple.netns != netns);
        self.stats.torn_down += (before - self.pending()) as u64;
    }

    /// A passive child socket on `t.tuple` is established: its handshake
    /// completed, whether or not it was ever seen half-open.
    fn completed(&mut self, t: &Transition) -> Handshake {
        let tuple = t.tuple.canonical();
        self.recent_completions.insert(tuple, t.ts_ns);
        let half_open = self.half_open.remove(&tuple);
        let (started_ns, retransmits_ns, kernel_retransmits, owner) = match half_open {
            Some(h) => (
                h.started_ns,
                h.retransmits_ns,
                h.kernel_retransmits,
                h.owner.clone().or(t.owner.clone()),
            ),
            None => (None, Vec::new(), None, t.owner.clone()),
        };
        Handshake {
            side: Side::Server,
            tuple: t.tuple,
            owner,
            outcome: Outcome::Completed,
            errno: None,
            started_ns,
            ended_ns: t.ts_ns,
            retransmits_ns,
            kernel_retransmits,
        }
    }
}

/// The verdict of a client attempt closed in `SYN_SENT`. See the module
/// documentation.
fn failed_connect(attempt: &ClientAttempt, close: &StateEvent) -> (Outcome, Option<u32>) {
    let timed_out = libc::ETIMEDOUT as u32;
    if attempt.reset {
        (Outcome::Refused, Some(libc::ECONNREFUSED as u32))
    } else if close.tuple.local.port() == 0 {
        (Outcome::NoLocalPort, Some(libc::EADDRNOTAVAIL as u32))
    } else if close.error == timed_out {
        (Outcome::Timeout, Some(timed_out))
    } else if close.error != 0 {
        (Outcome::Unreachable, Some(close.error))
    } else if close.soft_error != 0 {
        (Outcome::Unreachable, Some(close.soft_error))
    } else {
        (Outcome::Aborted, None)
    }
}

fn client_outcome(
    attempt: ClientAttempt,
    t: &Transition,
    outcome: Outcome,
    errno: Option<u32>,
) -> Handshake {
    Handshake {
        side: Side::Client,
        tuple: t.tuple,
        owner: attempt.owner.clone().or(t.owner.clone()),
        outcome,
        errno,
        started_ns: attempt.started_ns,
        ended_ns: t.ts_ns,
        retransmits_ns: attempt.retransmits_ns,
        kernel_retransmits: None,
    }
}

#[cfg(test)]
mod tests;
