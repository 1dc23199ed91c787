//! The record ABI shared by socktrace's BPF program (`src/main.rs`, built for
//! the BPF target) and its agent (the `socktrace` crate, built for the host).
//!
//! This is the only definition of what crosses the ring buffer. Rules:
//! `#[repr(C)]`, fixed-width integers and byte arrays only (no `bool`, enum or
//! `Option`: every bit pattern must be a valid value), explicit padding, and a
//! compile-time size check. The agent never reinterprets raw bytes as anything
//! else than these plain structs and validates every field it decodes.
#![no_std]

/// Name of the BPF ring buffer map that carries records to the agent.
pub const MAP_EVENTS: &str = "EVENTS";
/// Name of the per-CPU array counting records the programs could not put in
/// the ring buffer (it was full). Readers add every slot.
pub const MAP_LOST: &str = "LOST";

/// Slots in [`MAP_LOST`], one per group of programs that can interrupt each
/// other on a CPU, so that a plain increment never races (the BPF target
/// has no atomic read-modify-write in `core`). The two state programs are
/// BTF tracepoints, which the kernel lets nest in any other program (only
/// a run of the same program is skipped): one slot each. The classic
/// tracepoint programs never nest in one another (`bpf_prog_active`): one
/// slot for all of them.
pub const LOST_SLOT_STATE: u32 = 0;
pub const LOST_SLOT_STATE_NESTED: u32 = 1;
pub const LOST_SLOT_CLASSIC: u32 = 2;
pub const LOST_SLOTS: u32 = 3;

/// Name of the per-CPU array (one slot) counting the transitions
/// [`PROGRAM_STATE_NESTED`] took because the kernel skipped
/// [`PROGRAM_STATE`] for them. Every skipped run of [`PROGRAM_STATE`]
/// (its `recursion_misses`) that this count does not cover is a lost
/// transition.
pub const MAP_NESTED_TAKEN: &str = "NESTED_TAKEN";

/// Default size of the ring buffer (bytes, a power of two multiple of the
/// page size). The agent can change it before load (`--ring-buffer-kib`).
/// Sized to hold the records of the longest time the agent may go
/// unscheduled under top churn (README, "Performance").
pub const RING_BUFFER_BYTES: u32 = 16 << 20;

/// [`Record::kind`]: a TCP state transition (`inet_sock_set_state`).
/// `oldstate` and `newstate` are the kernel's state numbers. For
/// `SYN_SENT -> CLOSE` (a connect that failed or was abandoned), `value`
/// holds the socket's errors at that moment: `sk_err` in the low 32 bits
/// (set by the kernel before it closes: `ETIMEDOUT`, `ECONNREFUSED`,
/// `EHOSTUNREACH`...) and `sk_err_soft` in the high 32 bits (an ICMP error
/// that arrived while the socket was busy); 0 for other transitions.
pub const RECORD_STATE: u8 = 1;
/// [`Record::kind`]: a SYN retransmitted by an active open
/// (`tcp:tcp_retransmit_skb` in `SYN_SENT`). `skaddr` and the endpoints are
/// the connecting socket's (the local port is bound by now); `oldstate` and
/// `newstate` both hold the socket's state; `value` is 0.
pub const RECORD_SYN_RETRANSMIT: u8 = 2;
/// [`Record::kind`]: a SYN-ACK retransmitted for a half-open connection
/// (`tcp:tcp_retransmit_synack`). `skaddr` is the listener, the endpoints
/// are the request socket's (local = the address the SYN was sent to);
/// `value` is when the first SYN-ACK went out, in microseconds of
/// CLOCK_MONOTONIC (the kernel's `tcp_request_sock.snt_synack`), or 0 when
/// the agent could not locate that field. States are 0.
pub const RECORD_SYNACK_RETRANSMIT: u8 = 3;
/// [`Record::kind`]: a RST received on a socket (`tcp:tcp_receive_reset`).
/// `skaddr` and endpoints are the socket's; states and `value` are 0.
pub const RECORD_RESET_RECEIVED: u8 = 4;

/// [`Record::task_context`]: the current task holds the socket's lock
/// (`sk_lock.owned`): a system call acting on the socket, or the socket's
/// own backlog processed as its owner releases it. `tgid` and `comm` name
/// that task.
pub const CONTEXT_PROCESS: u8 = 1;
/// [`Record::task_context`]: nobody holds the socket's lock, which is how
/// softirq (packet receive) and timers find a socket they change (they
/// defer to an owner), and also how a kernel path treats a socket no task
/// locked (a closing listener's unaccepted children). The current task
/// there is unrelated: `tgid` and `comm` are left zero. Records other than
/// [`RECORD_STATE`] carry no task and always have this value.
pub const CONTEXT_SOFTIRQ: u8 = 2;

/// Address families as the kernel numbers them.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// The kernel's `TCP_SYN_SENT` and `TCP_CLOSE` state numbers.
pub const TCP_SYN_SENT: i32 = 2;
pub const TCP_CLOSE: i32 = 7;
/// The kernel's TCP state numbers, `TCP_ESTABLISHED` (1) to
/// `TCP_NEW_SYN_RECV` (12).
pub const TCP_STATES: core::ops::RangeInclusive<i32> = 1..=12;

/// Names of the two programs on `inet_sock_set_state` (BTF tracepoint),
/// attached in this order: [`PROGRAM_STATE`] takes every transition;
/// [`PROGRAM_STATE_NESTED`] takes only those the kernel skipped the first
/// for (a softirq transition nested in one of its runs, which the kernel
/// does not run the same program for) and passes over the others.
pub const PROGRAM_STATE: &str = "tcp_state";
pub const PROGRAM_STATE_NESTED: &str = "tcp_state_nested";

/// One kernel event. Every kind shares this layout; the constants
/// `RECORD_*` say which fields each kind fills.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// One of the `RECORD_*` constants.
    pub kind: u8,
    /// [`CONTEXT_PROCESS`] or [`CONTEXT_SOFTIRQ`].
    pub task_context: u8,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// Thread group id (the process id) of the current task, 0 unless
    /// [`CONTEXT_PROCESS`].
    pub tgid: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Kernel address of the `struct sock`: the socket's identity while it
    /// lives. The kernel may reuse it for a later socket.
    pub skaddr: u64,
    /// The socket's network namespace: the inode of its `struct net`
    /// (`ls -l /proc/PID/ns/net`), read from the socket itself so it is
    /// right in softirq too; 0 if the read failed.
    pub netns: u32,
    /// Local port, host byte order (0 before an active open binds one).
    pub sport: u16,
    /// Remote port, host byte order.
    pub dport: u16,
    /// Local address: 4 bytes then zeros for IPv4, 16 bytes for IPv6.
    pub saddr: [u8; 16],
    /// Remote address, laid out as `saddr`.
    pub daddr: [u8; 16],
    /// `comm` of the current task, NUL padded; zero unless
    /// [`CONTEXT_PROCESS`].
    pub comm: [u8; 16],
    /// Kernel TCP state numbers (`TCP_ESTABLISHED` = 1 ... `TCP_NEW_SYN_RECV` = 12).
    pub oldstate: u8,
    pub newstate: u8,
    /// Zero. Two fixed-width fields rather than a byte array, so that the
    /// kernel side stores them inline instead of calling a byte-wise `memset`.
    pub _pad16: u16,
    pub _pad32: u32,
    /// Kind-specific value, see the `RECORD_*` constants.
    pub value: u64,
}

/// Size in bytes of a [`Record`] on the wire.
pub const RECORD_SIZE: usize = 96;

const _: () = assert!(core::mem::size_of::<Record>() == RECORD_SIZE);
const _: () = assert!(core::mem::align_of::<Record>() == 8);
const _: () = assert!(core::mem::offset_of!(Record, comm) == 64);
const _: () = assert!(core::mem::offset_of!(Record, value) == 88);

pub mod config;
pub mod toolchain;
pub mod tracepoints;

pub use config::{Config, GLOBAL_CONFIG, KernelOffsets};
