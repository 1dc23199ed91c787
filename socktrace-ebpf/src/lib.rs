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
/// Name of the per-CPU array counting records the kernel could not deliver.
pub const MAP_LOST: &str = "LOST";
/// Name of the per-CPU array that says whether a CPU is running softirqs.
pub const MAP_IN_SOFTIRQ: &str = "IN_SOFTIRQ";

/// Reason index in [`MAP_LOST`]: the ring buffer was full.
pub const LOST_RESERVE_FAILED: u32 = 0;
/// Number of loss reasons.
pub const LOST_REASONS: u32 = 1;
/// Slots in [`MAP_LOST`]: two per reason, `reason * 2` counted in process
/// context and `reason * 2 + 1` in softirq context (so that neither
/// increment can interrupt the other). Readers add both.
pub const LOST_SLOTS: u32 = LOST_REASONS * 2;

/// Default size of the ring buffer (bytes, a power of two multiple of the
/// page size). The agent can change it before load.
pub const RING_BUFFER_BYTES: u32 = 4 << 20;

/// Name of the read-only global holding the wake-up threshold: the kernel
/// wakes the agent only once this many bytes wait in the ring buffer (the
/// agent also drains it on a short timer). A wake-up per record costs an
/// inter-processor interrupt per transition; see `trace.rs`.
pub const GLOBAL_WAKEUP_BYTES: &str = "WAKEUP_BYTES";

/// [`StateRecord::kind`]: a TCP state transition.
pub const RECORD_STATE: u8 = 1;

/// [`StateRecord::task_context`]: the transition ran in process context, so
/// the current task (pid/comm) is the one acting on the socket.
pub const CONTEXT_PROCESS: u8 = 1;
/// [`StateRecord::task_context`]: the transition ran in softirq context; the
/// current task is whatever was interrupted and must not be trusted.
pub const CONTEXT_SOFTIRQ: u8 = 2;

/// Address families as the kernel numbers them.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// `IPPROTO_TCP`, as carried by `sock:inet_sock_set_state`.
pub const IPPROTO_TCP: u16 = 6;

/// One TCP state transition, as seen by `sock:inet_sock_set_state`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateRecord {
    /// Always [`RECORD_STATE`].
    pub kind: u8,
    /// [`CONTEXT_PROCESS`] or [`CONTEXT_SOFTIRQ`].
    pub task_context: u8,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// Thread group id (the process id) of the current task.
    pub tgid: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Kernel address of the `struct sock`: the socket's identity while it
    /// lives. The kernel may reuse it for a later socket.
    pub skaddr: u64,
    /// Thread id of the current task.
    pub tid: u32,
    /// Local port, host byte order (0 before an active open binds one).
    pub sport: u16,
    /// Remote port, host byte order.
    pub dport: u16,
    /// Local address: 4 bytes then zeros for IPv4, 16 bytes for IPv6.
    pub saddr: [u8; 16],
    /// Remote address, laid out as `saddr`.
    pub daddr: [u8; 16],
    /// `comm` of the current task, NUL padded.
    pub comm: [u8; 16],
    /// Kernel TCP state numbers (`TCP_ESTABLISHED` = 1 ... `TCP_NEW_SYN_RECV` = 12).
    pub oldstate: u8,
    pub newstate: u8,
    pub _pad: [u8; 6],
}

/// Size in bytes of a [`StateRecord`] on the wire.
pub const STATE_RECORD_SIZE: usize = 88;

const _: () = assert!(core::mem::size_of::<StateRecord>() == STATE_RECORD_SIZE);
const _: () = assert!(core::mem::align_of::<StateRecord>() == 8);

/// The fields of `sock:inet_sock_set_state` after the 8-byte common header,
/// exactly as `/sys/kernel/tracing/events/sock/inet_sock_set_state/format`
/// lays them out (stable since Linux 4.16). The agent checks the running
/// kernel's format file against [`SET_STATE_LAYOUT`] before it loads.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SetStateTracepoint {
    pub skaddr: u64,
    pub oldstate: i32,
    pub newstate: i32,
    pub sport: u16,
    pub dport: u16,
    pub family: u16,
    pub protocol: u16,
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub saddr_v6: [u8; 16],
    pub daddr_v6: [u8; 16],
}

/// Offset of [`SetStateTracepoint`] in the tracepoint record.
pub const SET_STATE_OFFSET: usize = 8;

const _: () = assert!(core::mem::size_of::<SetStateTracepoint>() == 64);

/// `(field name, offset, size)` of every field [`SetStateTracepoint`] reads,
/// as the tracepoint's format file must state them.
pub const SET_STATE_LAYOUT: [(&str, usize, usize); 11] = [
    ("skaddr", 8, 8),
    ("oldstate", 16, 4),
    ("newstate", 20, 4),
    ("sport", 24, 2),
    ("dport", 26, 2),
    ("family", 28, 2),
    ("protocol", 30, 2),
    ("saddr", 32, 4),
    ("daddr", 36, 4),
    ("saddr_v6", 40, 16),
    ("daddr_v6", 56, 16),
];
