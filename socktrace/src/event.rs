//! Decoding and validation of the kernel's ring-buffer records.
//!
//! A record is copied out of the ring buffer with `read_unaligned` into the
//! shared plain-integer struct (every bit pattern is a valid value of it),
//! then every field with a restricted domain is checked and turned into a
//! Rust type. Nothing is reinterpreted beyond that.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socktrace_ebpf::{
    AF_INET, AF_INET6, CONTEXT_PROCESS, CONTEXT_SOFTIRQ, RECORD_STATE, STATE_RECORD_SIZE,
    StateRecord,
};

use crate::{
    owner::{Comm, Owner},
    tcp_state::TcpState,
    tuple::SocketTuple,
};

/// In which context the kernel ran the transition.
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

/// A validated TCP state transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

/// Why a record was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {0} bytes, expected {STATE_RECORD_SIZE}")]
    Size(usize),
    #[error("unknown record kind {0}")]
    Kind(u8),
    #[error("unknown address family {0}")]
    Family(u16),
    #[error("unknown TCP state {0}")]
    State(u8),
    #[error("unknown task context {0}")]
    Context(u8),
}

impl TryFrom<&[u8]> for StateEvent {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        if bytes.len() != STATE_RECORD_SIZE {
            return Err(DecodeError::Size(bytes.len()));
        }
        // SAFETY: the length is checked above; StateRecord is plain old data
        // (fixed-width integers and byte arrays), valid for any bit pattern,
        // and read_unaligned makes no alignment assumption.
        let raw = unsafe { bytes.as_ptr().cast::<StateRecord>().read_unaligned() };
        StateEvent::try_from(&raw)
    }
}

impl TryFrom<&StateRecord> for StateEvent {
    type Error = DecodeError;

    fn try_from(raw: &StateRecord) -> Result<Self, Self::Error> {
        if raw.kind != RECORD_STATE {
            return Err(DecodeError::Kind(raw.kind));
        }
        let local = ip(raw.family, &raw.saddr)?;
        let remote = ip(raw.family, &raw.daddr)?;
        let state = |n| TcpState::try_from(n).map_err(|_| DecodeError::State(n));
        let context = match raw.task_context {
            CONTEXT_PROCESS => TaskContext::Process,
            CONTEXT_SOFTIRQ => TaskContext::Softirq,
            other => return Err(DecodeError::Context(other)),
        };
        Ok(StateEvent {
            ts_ns: raw.ts_ns,
            skaddr: raw.skaddr,
            tuple: SocketTuple {
                local: SocketAddr::new(local, raw.sport),
                remote: SocketAddr::new(remote, raw.dport),
            },
            old_state: state(raw.oldstate)?,
            new_state: state(raw.newstate)?,
            task: Owner {
                pid: raw.tgid,
                comm: Comm::from_bytes(raw.comm),
            },
            context,
        })
    }
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

/// Records rejected by [`StateEvent::try_from`], by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RejectCounts {
    pub size: u64,
    pub kind: u64,
    pub family: u64,
    pub state: u64,
    pub context: u64,
}

impl RejectCounts {
    pub fn count(&mut self, error: DecodeError) {
        let slot = match error {
            DecodeError::Size(_) => &mut self.size,
            DecodeError::Kind(_) => &mut self.kind,
            DecodeError::Family(_) => &mut self.family,
            DecodeError::State(_) => &mut self.state,
            DecodeError::Context(_) => &mut self.context,
        };
        *slot += 1;
    }

    pub fn total(&self) -> u64 {
        self.size + self.kind + self.family + self.state + self.context
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> StateRecord {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        StateRecord {
            kind: RECORD_STATE,
            task_context: CONTEXT_PROCESS,
            family: AF_INET,
            tgid: 42,
            ts_ns: 1_000,
            skaddr: 0xffff_8880_0000_1000,
            tid: 43,
            sport: 0,
            dport: 443,
            saddr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            daddr: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            comm,
            oldstate: 7,
            newstate: 2,
            _pad: [0; 6],
        }
    }

    fn bytes(raw: &StateRecord) -> Vec<u8> {
        // The wire form, written field by field in the record's layout.
        let mut out = Vec::with_capacity(STATE_RECORD_SIZE);
        out.push(raw.kind);
        out.push(raw.task_context);
        out.extend_from_slice(&raw.family.to_ne_bytes());
        out.extend_from_slice(&raw.tgid.to_ne_bytes());
        out.extend_from_slice(&raw.ts_ns.to_ne_bytes());
        out.extend_from_slice(&raw.skaddr.to_ne_bytes());
        out.extend_from_slice(&raw.tid.to_ne_bytes());
        out.extend_from_slice(&raw.sport.to_ne_bytes());
        out.extend_from_slice(&raw.dport.to_ne_bytes());
        out.extend_from_slice(&raw.saddr);
        out.extend_from_slice(&raw.daddr);
        out.extend_from_slice(&raw.comm);
        out.push(raw.oldstate);
        out.push(raw.newstate);
        out.extend_from_slice(&raw._pad);
        out
    }

    #[test]
    fn decodes_an_ipv4_record_from_its_wire_bytes() {
        let event = StateEvent::try_from(bytes(&record()).as_slice()).unwrap();
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
        let event = StateEvent::try_from(&raw).unwrap();
        assert_eq!(event.tuple.remote, "[2001:db8::2]:443".parse().unwrap());
        assert_eq!(event.context, TaskContext::Softirq);
    }

    #[test]
    fn rejects_every_out_of_domain_field() {
        type Corrupt = fn(&mut StateRecord);
        let cases: [(Corrupt, DecodeError); 5] = [
            (|r| r.kind = 9, DecodeError::Kind(9)),
            (|r| r.family = 1, DecodeError::Family(1)),
            (|r| r.oldstate = 0, DecodeError::State(0)),
            (|r| r.newstate = 200, DecodeError::State(200)),
            (|r| r.task_context = 0, DecodeError::Context(0)),
        ];
        let mut counts = RejectCounts::default();
        for (corrupt, expected) in cases {
            let mut raw = record();
            corrupt(&mut raw);
            let error = StateEvent::try_from(bytes(&raw).as_slice()).unwrap_err();
            assert_eq!(error, expected);
            counts.count(error);
        }
        assert_eq!(counts.state, 2);
        assert_eq!(counts.total(), 5);
    }

    #[test]
    fn rejects_short_and_long_records() {
        let wire = bytes(&record());
        assert_eq!(
            StateEvent::try_from(&wire[..STATE_RECORD_SIZE - 1]),
            Err(DecodeError::Size(STATE_RECORD_SIZE - 1))
        );
        let mut long = wire.clone();
        long.push(0);
        assert_eq!(
            StateEvent::try_from(long.as_slice()),
            Err(DecodeError::Size(STATE_RECORD_SIZE + 1))
        );
    }
}
