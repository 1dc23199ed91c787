//! Decoding and validation of the kernel's ring-buffer records.
//!
//! A record is copied out of the ring buffer with `read_unaligned` into the
//! shared plain-integer struct (every bit pattern is a valid value of it),
//! then every field with a restricted domain is checked and turned into a
//! Rust type. Nothing is reinterpreted beyond that.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socktrace_ebpf::{
    AF_INET, AF_INET6, CONTEXT_PROCESS, CONTEXT_SOFTIRQ, RECORD_RESET_RECEIVED, RECORD_SIZE,
    RECORD_STATE, RECORD_SYN_RETRANSMIT, RECORD_SYNACK_RETRANSMIT, Record,
};

use crate::{
    model::owner::{Comm, Owner},
    model::tcp_state::TcpState,
    model::tuple::{NetnsInode, SocketTuple},
};

/// In which context the kernel ran the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskContext {
    /// A system call or other process context: the current task acts on the
    /// socket.
    Process,
    /// Softirq (packet receive, timers): the current task is whatever was
    /// interrupted.
    Softirq,
}

impl TaskContext {
    pub fn name(self) -> &'static str {
        match self {
            TaskContext::Process => "process",
            TaskContext::Softirq => "softirq",
        }
    }
}

/// One validated kernel record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    State(StateEvent),
    /// An active open retransmitted its SYN.
    SynRetransmit(SocketSignal),
    /// A half-open connection's SYN-ACK was retransmitted.
    SynAckRetransmit(SynAckRetransmit),
    /// A RST arrived on a socket.
    ResetReceived(SocketSignal),
}

impl Event {
    /// When it happened (CLOCK_MONOTONIC nanoseconds).
    pub fn ts_ns(&self) -> u64 {
        match self {
            Event::State(event) => event.ts_ns,
            Event::SynRetransmit(signal) | Event::ResetReceived(signal) => signal.ts_ns,
            Event::SynAckRetransmit(synack) => synack.ts_ns,
        }
    }

    /// The network namespace of the socket it is about.
    pub fn netns(&self) -> NetnsInode {
        match self {
            Event::State(event) => event.tuple.netns,
            Event::SynRetransmit(signal) | Event::ResetReceived(signal) => signal.tuple.netns,
            Event::SynAckRetransmit(synack) => synack.tuple.netns,
        }
    }
}

/// A validated TCP state transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateEvent {
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Kernel address of the socket: its identity while it lives.
    pub skaddr: u64,
    pub tuple: SocketTuple,
    pub old_state: TcpState,
    pub new_state: TcpState,
    /// The task current when the transition ran.
    pub task: Owner,
    pub context: TaskContext,
    /// For `SYN_SENT -> CLOSE`: the socket's `sk_err` (the connect's
    /// verdict) and `sk_err_soft` (an ICMP error held back), positive
    /// errnos; 0 when unset and for every other transition.
    pub error: u32,
    pub soft_error: u32,
}

/// Something that happened to a known socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketSignal {
    pub ts_ns: u64,
    pub skaddr: u64,
    pub tuple: SocketTuple,
}

/// A SYN-ACK retransmit of a request socket (no state event exists for
/// those; this is the only trace a half-open connection leaves).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynAckRetransmit {
    pub ts_ns: u64,
    /// The listener the request belongs to.
    pub listener: u64,
    /// Local: the address and port the SYN was sent to; remote: the client.
    pub tuple: SocketTuple,
    /// When the first SYN-ACK went out (CLOCK_MONOTONIC ns), if the kernel
    /// side could read it.
    pub first_synack_ns: Option<u64>,
}

/// Largest errno value the kernel reports (`MAX_ERRNO`).
const MAX_ERRNO: u64 = 4095;

/// Why a record was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {0} bytes, expected {RECORD_SIZE}")]
    Size(usize),
    #[error("unknown record kind {0}")]
    Kind(u8),
    #[error("unknown address family {0}")]
    Family(u16),
    #[error("unknown TCP state {0}")]
    State(u8),
    #[error("unknown task context {0}")]
    Context(u8),
    #[error("value {0} out of range for its record kind")]
    Value(u64),
}

impl TryFrom<&[u8]> for Event {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        if bytes.len() != RECORD_SIZE {
            return Err(DecodeError::Size(bytes.len()));
        }
        // SAFETY: the length is checked above; Record is plain old data
        // (fixed-width integers and byte arrays), valid for any bit pattern,
        // and read_unaligned makes no alignment assumption.
        let raw = unsafe { bytes.as_ptr().cast::<Record>().read_unaligned() };
        Event::try_from(&raw)
    }
}

impl TryFrom<&Record> for Event {
    type Error = DecodeError;

    fn try_from(raw: &Record) -> Result<Self, Self::Error> {
        let tuple = SocketTuple {
            netns: raw.netns,
            local: SocketAddr::new(ip(raw.family, &raw.saddr)?, raw.sport),
            remote: SocketAddr::new(ip(raw.family, &raw.daddr)?, raw.dport),
        };
        let context = match raw.task_context {
            CONTEXT_PROCESS => TaskContext::Process,
            CONTEXT_SOFTIRQ => TaskContext::Softirq,
            other => return Err(DecodeError::Context(other)),
        };
        let state = |n| TcpState::try_from(n).map_err(|_| DecodeError::State(n));
        let signal = SocketSignal {
            ts_ns: raw.ts_ns,
            skaddr: raw.skaddr,
            tuple,
        };
        match raw.kind {
            RECORD_STATE => Ok(Event::State(StateEvent {
                error: errno(raw.value as u32)?,
                soft_error: errno((raw.value >> 32) as u32)?,
                ts_ns: raw.ts_ns,
                skaddr: raw.skaddr,
                tuple,
                old_state: state(raw.oldstate)?,
                new_state: state(raw.newstate)?,
                task: Owner::new(raw.tgid, Comm::from_bytes(raw.comm)),
                context,
            })),
            RECORD_SYN_RETRANSMIT => match state(raw.oldstate)? {
                TcpState::SynSent => Ok(Event::SynRetransmit(signal)),
                _ => Err(DecodeError::State(raw.oldstate)),
            },
            RECORD_SYNACK_RETRANSMIT => Ok(Event::SynAckRetransmit(SynAckRetransmit {
                ts_ns: raw.ts_ns,
                listener: raw.skaddr,
                tuple,
                first_synack_ns: match raw.value {
                    0 => None,
                    us => Some(us.checked_mul(1000).ok_or(DecodeError::Value(us))?),
                },
            })),
            RECORD_RESET_RECEIVED => Ok(Event::ResetReceived(signal)),
            other => Err(DecodeError::Kind(other)),
        }
    }
}

/// An errno as the kernel side stores it: 0 (none) to [`MAX_ERRNO`].
fn errno(value: u32) -> Result<u32, DecodeError> {
    if u64::from(value) > MAX_ERRNO {
        return Err(DecodeError::Value(u64::from(value)));
    }
    Ok(value)
}

fn ip(family: u16, bytes: &[u8; 16]) -> Result<IpAddr, DecodeError> {
    match family {
        AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        AF_INET6 => Ok(IpAddr::V6(Ipv6Addr::from(*bytes))),
        other => Err(DecodeError::Family(other)),
    }
}

/// Records rejected by [`Event::try_from`], by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RejectCounts {
    pub size: u64,
    pub kind: u64,
    pub family: u64,
    pub state: u64,
    pub context: u64,
    pub value: u64,
}

impl RejectCounts {
    pub fn count(&mut self, error: DecodeError) {
        let slot = match error {
            DecodeError::Size(_) => &mut self.size,
            DecodeError::Kind(_) => &mut self.kind,
            DecodeError::Family(_) => &mut self.family,
            DecodeError::State(_) => &mut self.state,
            DecodeError::Context(_) => &mut self.context,
            DecodeError::Value(_) => &mut self.value,
        };
        *slot += 1;
    }

    pub fn total(&self) -> u64 {
        self.size + self.kind + self.family + self.state + self.context + self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socktrace_ebpf::TCP_SYN_SENT;

    fn record() -> Record {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        Record {
            kind: RECORD_STATE,
            task_context: CONTEXT_PROCESS,
            family: AF_INET,
            tgid: 42,
            ts_ns: 1_000,
            skaddr: 0xffff_8880_0000_1000,
            netns: 4026532281,
            sport: 0,
            dport: 443,
            saddr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            daddr: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            comm,
            oldstate: 7,
            newstate: 2,
            _pad16: 0,
            _pad32: 0,
            value: 0,
        }
    }

    fn bytes(raw: &Record) -> Vec<u8> {
        // The wire form, written field by field in the record's layout.
        let mut out = Vec::with_capacity(RECORD_SIZE);
        out.push(raw.kind);
        out.push(raw.task_context);
        out.extend_from_slice(&raw.family.to_ne_bytes());
        out.extend_from_slice(&raw.tgid.to_ne_bytes());
        out.extend_from_slice(&raw.ts_ns.to_ne_bytes());
        out.extend_from_slice(&raw.skaddr.to_ne_bytes());
        out.extend_from_slice(&raw.netns.to_ne_bytes());
        out.extend_from_slice(&raw.sport.to_ne_bytes());
        out.extend_from_slice(&raw.dport.to_ne_bytes());
        out.extend_from_slice(&raw.saddr);
        out.extend_from_slice(&raw.daddr);
        out.extend_from_slice(&raw.comm);
        out.push(raw.oldstate);
        out.push(raw.newstate);
        out.extend_from_slice(&raw._pad16.to_ne_bytes());
        out.extend_from_slice(&raw._pad32.to_ne_bytes());
        out.extend_from_slice(&raw.value.to_ne_bytes());
        out
    }

    fn decode(raw: &Record) -> Result<Event, DecodeError> {
        Event::try_from(bytes(raw).as_slice())
    }

    #[test]
    fn decodes_an_ipv4_transition_from_its_wire_bytes() {
        let Ok(Event::State(event)) = decode(&record()) else {
            panic!("not a state event");
        };
        assert_eq!(event.tuple.local, "10.0.0.1:0".parse().unwrap());
        assert_eq!(event.tuple.remote, "10.0.0.2:443".parse().unwrap());
        assert_eq!(event.old_state, TcpState::Close);
        assert_eq!(event.new_state, TcpState::SynSent);
        assert_eq!(event.task.pid, 42);
        assert_eq!(event.task.comm.to_text(), "curl");
        assert_eq!(event.context, TaskContext::Process);
        assert_eq!(event.skaddr, 0xffff_8880_0000_1000);
    }

    #[test]
    fn decodes_ipv6_and_softirq() {
        let mut raw = record();
        raw.family = AF_INET6;
        raw.saddr = "::1".parse::<Ipv6Addr>().unwrap().octets();
        raw.daddr = "2001:db8::2".parse::<Ipv6Addr>().unwrap().octets();
        raw.task_context = CONTEXT_SOFTIRQ;
        let Ok(Event::State(event)) = Event::try_from(&raw) else {
            panic!("not a state event");
        };
        assert_eq!(event.tuple.remote, "[2001:db8::2]:443".parse().unwrap());
        assert_eq!(event.context, TaskContext::Softirq);
    }

    #[test]
    fn a_failed_connect_carries_its_socket_errors() {
        let mut raw = record();
        (raw.oldstate, raw.newstate) = (2, 7);
        raw.value = 110 | 113 << 32;
        let Ok(Event::State(event)) = decode(&raw) else {
            panic!("not a state event");
        };
        assert_eq!((event.error, event.soft_error), (110, 113));
        raw.value = 1 << 63;
        assert_eq!(decode(&raw), Err(DecodeError::Value(1 << 31)));
    }

    #[test]
    fn decodes_the_handshake_kinds() {
        let mut raw = record();
        raw.sport = 40000;
        raw.kind = RECORD_SYN_RETRANSMIT;
        (raw.oldstate, raw.newstate) = (TCP_SYN_SENT as u8, TCP_SYN_SENT as u8);
        let Ok(Event::SynRetransmit(signal)) = decode(&raw) else {
            panic!("not a SYN retransmit");
        };
        assert_eq!(signal.tuple.local.port(), 40000);

        raw.kind = RECORD_SYNACK_RETRANSMIT;
        raw.value = 7;
        let Ok(Event::SynAckRetransmit(synack)) = decode(&raw) else {
            panic!("not a SYN-ACK retransmit");
        };
        assert_eq!(synack.first_synack_ns, Some(7_000));
        raw.value = 0;
        let Ok(Event::SynAckRetransmit(synack)) = decode(&raw) else {
            panic!("not a SYN-ACK retransmit");
        };
        assert_eq!(synack.first_synack_ns, None);

        raw.kind = RECORD_RESET_RECEIVED;
        assert!(matches!(decode(&raw), Ok(Event::ResetReceived(_))));
    }

    #[test]
    fn rejects_every_out_of_domain_field() {
        type Corrupt = fn(&mut Record);
        let cases: [(Corrupt, DecodeError); 8] = [
            (|r| r.kind = 9, DecodeError::Kind(9)),
            (|r| r.family = 1, DecodeError::Family(1)),
            (|r| r.oldstate = 0, DecodeError::State(0)),
            (|r| r.newstate = 200, DecodeError::State(200)),
            (|r| r.task_context = 0, DecodeError::Context(0)),
            (
                |r| (r.kind, r.oldstate) = (RECORD_SYN_RETRANSMIT, 1),
                DecodeError::State(1),
            ),
            (|r| r.value = 5000, DecodeError::Value(5000)),
            (
                |r| (r.kind, r.value) = (RECORD_SYNACK_RETRANSMIT, u64::MAX),
                DecodeError::Value(u64::MAX),
            ),
        ];
        let mut counts = RejectCounts::default();
        for (corrupt, expected) in cases {
            let mut raw = record();
            corrupt(&mut raw);
            let error = decode(&raw).unwrap_err();
            assert_eq!(error, expected);
            counts.count(error);
        }
        assert_eq!(counts.state, 3);
        assert_eq!(counts.value, 2);
        assert_eq!(counts.total(), 8);
    }

    #[test]
    fn rejects_short_and_long_records() {
        let wire = bytes(&record());
        assert_eq!(
            Event::try_from(&wire[..RECORD_SIZE - 1]),
            Err(DecodeError::Size(RECORD_SIZE - 1))
        );
        let mut long = wire.clone();
        long.push(0);
        assert_eq!(
            Event::try_from(long.as_slice()),
            Err(DecodeError::Size(RECORD_SIZE + 1))
        );
    }
}
