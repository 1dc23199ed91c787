//! One connection of `probe` as socktrace's programs traced it: which
//! records are its, what each says, and the verdict. Pure: decoded events,
//! the pipeline they go through and explicit times in, steps out.
use std::net::SocketAddr;

use crate::{
    kernel::event::Event,
    model::tcp_state::TcpState,
    model::tuple::NetnsInode,
    state::handshake_tracker::{Handshake, Outcome},
    state::pipeline::{Applied, Pipeline},
};

/// How a connection ended, each with its exit status (`--help` lists them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Reachable,
    Refused,
    Timeout,
    Unreachable,
    NoLocalPort,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Reachable => "reachable",
            Verdict::Refused => "refused",
            Verdict::Timeout => "timeout",
            Verdict::Unreachable => "unreachable",
            Verdict::NoLocalPort => "no_local_port",
        }
    }

    pub fn exit_status(self) -> u8 {
        match self {
            Verdict::Reachable => 0,
            Verdict::Refused => 3,
            Verdict::Timeout => 4,
            Verdict::Unreachable => 5,
            Verdict::NoLocalPort => 6,
        }
    }
}

/// Something that happened to the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    /// The first SYN left (the kernel's `CLOSE -> SYN_SENT`), from `local`
    /// when the port was bound.
    SynSent { local: Option<SocketAddr> },
    /// The SYN went out again: the `count`th retransmit.
    SynRetransmit { count: u32 },
    /// The SYN-ACK came: the connection is established.
    Established,
    /// A RST came back.
    ResetReceived,
    /// The kernel ended the attempt with this error (an ICMP error, its
    /// own timeout, no local port).
    Failed {
        outcome: Outcome,
        errno: Option<u32>,
    },
    /// `connect()` failed before any SYN left (no route, for one).
    NotSent { errno: i32 },
    /// `--timeout` came first: the probe closed the socket.
    GaveUp { retransmits: u32 },
    /// The probe closed the connection it made (after `--tls`'s handshake).
    Closed,
}

/// A step and when it happened: nanoseconds from the first SYN, when that
/// was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub at_ns: Option<u64>,
    pub what: What,
}

/// Follows one connection through the records of every socket on the host.
#[derive(Debug)]
pub struct Watch {
    remote: SocketAddr,
    /// Its local address, as `getsockname` gave it after `connect()`.
    local: Option<SocketAddr>,
    /// The probing process and its network namespace.
    pid: u32,
    netns: NetnsInode,
    /// The socket's kernel address, once its first SYN was seen.
    socket: Option<u64>,
    first_syn_ns: Option<u64>,
    retransmits: u32,
    /// A RST came for it.
    reset: bool,
    handshake: Option<Handshake>,
    /// What ended it without a trace of the kernel's: `connect()`'s error
    /// before any SYN, or the probe's own timeout.
    not_sent: Option<i32>,
    gave_up: bool,
    /// `connect()`'s own answer, once it gave one: the verdict when the
    /// records that tell it were lost.
    connect_errno: Option<Option<i32>>,
}

impl Watch {
    pub fn new(remote: SocketAddr, local: Option<SocketAddr>, pid: u32, netns: NetnsInode) -> Self {
        Watch {
            remote,
            local,
            pid,
            netns,
            socket: None,
            first_syn_ns: None,
            retransmits: 0,
            reset: false,
            handshake: None,
            not_sent: None,
            gave_up: false,
            connect_errno: None,
        }
    }

    /// Whether `event` is about this connection: its first SYN is the
    /// probe's own `CLOSE -> SYN_SENT` to the remote, which names the socket
    /// the rest are about.
    pub fn concerns(&mut self, event: &Event) -> bool {
        if event.netns() != self.netns || self.handshake.is_some() {
            return false;
        }
        match (event, self.socket) {
            (Event::State(state), None) => {
                let ours = state.old_state == TcpState::Close
                    && state.new_state == TcpState::SynSent
                    && state.task.pid == self.pid
                    && same_endpoint(state.tuple.remote, self.remote);
                if ours {
                    self.socket = Some(state.skaddr);
                }
                ours
            }
            (Event::State(state), Some(socket)) => state.skaddr == socket,
            (Event::SynRetransmit(signal) | Event::ResetReceived(signal), Some(socket)) => {
                signal.skaddr == socket
            }
            _ => false,
        }
    }

    /// Takes one of its records through the pipeline and says what it was.
    pub fn observe(&mut self, event: Event, pipeline: &mut Pipeline) -> Option<Step> {
        let reset_ns = match &event {
            Event::ResetReceived(signal) => Some(signal.ts_ns),
            _ => None,
        };
        match pipeline.apply(&event) {
            Applied::Transition {
                transition,
                handshake,
                ..
            } => {
                if let Some(handshake) = handshake {
                    return self.ended(handshake);
                }
                (transition.old_state == TcpState::Close
                    && transition.new_state == TcpState::SynSent)
                    .then(|| {
                        self.first_syn_ns = Some(transition.ts_ns);
                        Step {
                            at_ns: Some(0),
                            what: What::SynSent { local: self.local },
                        }
                    })
            }
            Applied::Retrying(retrying) => {
                self.retransmits = retrying.retransmits;
                Some(Step {
                    at_ns: self.since_first_syn(retrying.at_ns),
                    what: What::SynRetransmit {
                        count: retrying.retransmits,
                    },
                })
            }
            Applied::Noted => reset_ns.map(|ts_ns| {
                self.reset = true;
                Step {
                    at_ns: self.since_first_syn(ts_ns),
                    what: What::ResetReceived,
                }
            }),
        }
    }

    /// The tracker resolved the attempt; a refusal was told by its RST, and
    /// the close after the probe gave up by [`Watch::gave_up`].
    ///
    /// A close the tracker calls aborted, after `connect()` failed, is the
    /// probe's own close of the failed socket: reading the error through
    /// `SO_ERROR` clears it (an ICMP error taken as a soft error while
    /// `connect()` held the socket, mostly), so the error is `connect()`'s.
    fn ended(&mut self, mut handshake: Handshake) -> Option<Step> {
        if handshake.outcome == Outcome::Aborted
            && !self.gave_up
            && let Some(Some(errno)) = self.connect_errno
        {
            handshake.outcome = outcome_of_error(errno, self.reset);
            handshake.errno = Some(errno as u32);
        }
        let at_ns = self.since_first_syn(handshake.ended_ns);
        let (outcome, errno) = (handshake.outcome, handshake.errno);
        self.retransmits = self.retransmits.max(handshake.retransmits_ns.len() as u32);
        self.handshake = Some(handshake);
        let what = match outcome {
            Outcome::Established => What::Established,
            Outcome::Refused | Outcome::Aborted => return None,
            _ => What::Failed { outcome, errno },
        };
        Some(Step { at_ns, what })
    }

    /// `connect()` answered: `None` connected, or the errno it failed with.
    pub fn connect_returned(&mut self, errno: Option<i32>) {
        self.connect_errno = Some(errno);
    }

    /// `connect()` failed and no record of the connection was seen: it
    /// failed before a SYN could leave (no route, for one).
    pub fn failed_unseen(&mut self) -> Option<Step> {
        let errno = self.connect_errno.flatten()?;
        if self.socket.is_some() {
            return None;
        }
        self.not_sent = Some(errno);
        Some(Step {
            at_ns: None,
            what: What::NotSent { errno },
        })
    }

    /// The probe's timeout came at `now_ns` (CLOCK_MONOTONIC).
    pub fn gave_up(&mut self, now_ns: u64) -> Step {
        self.gave_up = true;
        Step {
            at_ns: self.since_first_syn(now_ns),
            what: What::GaveUp {
                retransmits: self.retransmits,
            },
        }
    }

    /// The probe closed the connection at `now_ns` (CLOCK_MONOTONIC).
    pub fn closed(&self, now_ns: u64) -> Step {
        Step {
            at_ns: self.since_first_syn(now_ns),
            what: What::Closed,
        }
    }

    /// Whether nothing more is to come: the tracker resolved the attempt,
    /// or no SYN ever left.
    pub fn done(&self) -> bool {
        self.handshake.is_some() || self.not_sent.is_some()
    }

    /// Its local address, when a port was bound.
    pub fn local(&self) -> Option<SocketAddr> {
        self.local
    }

    pub fn retransmits(&self) -> u32 {
        self.retransmits
    }

    /// First SYN to SYN-ACK, for a connection that got through.
    pub fn handshake_ns(&self) -> Option<u64> {
        let handshake = self.handshake.as_ref()?;
        if handshake.outcome != Outcome::Established {
            return None;
        }
        handshake.ended_ns.checked_sub(handshake.started_ns?)
    }

    /// The errno the attempt failed with, as the kernel or `connect()` said.
    pub fn errno(&self) -> Option<u32> {
        self.handshake
            .as_ref()
            .and_then(|h| h.errno)
            .or_else(|| self.connect_errno.flatten().map(|e| e as u32))
    }

    /// How the connection ended: as the kernel's records tell it, or, when
    /// they were lost, as `connect()` said.
    pub fn verdict(&self) -> Verdict {
        if self.gave_up {
            return Verdict::Timeout;
        }
        match self.handshake.as_ref().map(|h| h.outcome) {
            Some(Outcome::Established) => Verdict::Reachable,
            Some(Outcome::Refused) => Verdict::Refused,
            Some(Outcome::Timeout) => Verdict::Timeout,
            Some(Outcome::NoLocalPort) => Verdict::NoLocalPort,
            Some(Outcome::Unreachable) => Verdict::Unreachable,
            // The records were lost: `connect()` tells, and a refusal is
            // taken for a RST's, the common case.
            _ => match self.connect_errno.flatten() {
                None => Verdict::Reachable,
                Some(errno) => match outcome_of_error(errno, errno == libc::ECONNREFUSED) {
                    Outcome::Refused => Verdict::Refused,
                    Outcome::Timeout => Verdict::Timeout,
                    Outcome::NoLocalPort => Verdict::NoLocalPort,
                    _ => Verdict::Unreachable,
                },
            },
        }
    }

    fn since_first_syn(&self, ts_ns: u64) -> Option<u64> {
        Some(ts_ns.saturating_sub(self.first_syn_ns?))
    }
}

/// How a connect that failed with `errno` ended, as the handshake tracker
/// decides from the socket's own error: refused only after a RST.
fn outcome_of_error(errno: i32, reset: bool) -> Outcome {
    match errno {
        _ if reset => Outcome::Refused,
        libc::ETIMEDOUT => Outcome::Timeout,
        libc::EADDRNOTAVAIL => Outcome::NoLocalPort,
        _ => Outcome::Unreachable,
    }
}

/// The same address and port; an IPv4-mapped address is its IPv4 one.
fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

/// What an error a connection attempt ended with says, in words: for most,
/// the ICMP error the kernel turned into it.
pub fn error_kind(errno: u32) -> &'static str {
    match errno as i32 {
        // Linux answers a closed port with a RST; an ICMP port unreachable
        // (a firewall's REJECT) becomes the same error without one.
        libc::ECONNREFUSED => "ICMP port unreachable",
        libc::EHOSTUNREACH => "ICMP host unreachable or administratively prohibited",
        libc::ENETUNREACH => "ICMP network unreachable",
        libc::EHOSTDOWN => "ICMP host unknown",
        libc::ENONET => "ICMP host isolated",
        libc::ENOPROTOOPT => "ICMP protocol unreachable",
        libc::EACCES | libc::EPERM => "administratively prohibited",
        libc::ETIMEDOUT => "no answer: the kernel gave up (net.ipv4.tcp_syn_retries)",
        libc::EADDRNOTAVAIL => "no local port free (net.ipv4.ip_local_port_range)",
        _ => "error",
    }
}

#[cfg(test)]
mod tests;
