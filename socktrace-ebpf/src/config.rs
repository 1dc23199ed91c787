//! The programs' settings: one read-only global ([`GLOBAL_CONFIG`]) that the
//! agent fills from the running kernel before load and the programs only read.

/// Name of the read-only global of type [`Config`] in the BPF object.
pub const GLOBAL_CONFIG: &str = "CONFIG";

/// Everything the agent tells the programs at load time. Read-only globals
/// live in a frozen map, so the verifier knows each value: an offset read
/// from here makes a field access one checked load instruction.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Each CPU wakes the agent once per this many records it queued (the
    /// agent also drains the ring on a short timer): a wake-up per record
    /// costs an inter-processor interrupt per transition.
    pub wakeup_records: u64,
    /// 1 when this kernel's `tcp:tcp_retransmit_skb` has its `err` field
    /// (Linux 6.17+): failed retransmits are then skipped.
    pub retransmit_has_err: u64,
    /// The size of a task's kernel stack (`THREAD_SIZE`): the state
    /// programs tell a run on the current task's stack from one nested on
    /// the interrupt stack by it.
    pub task_stack_bytes: u64,
    pub offsets: KernelOffsets,
}

/// Byte offsets of the kernel struct fields the programs read, resolved
/// from the running kernel's BTF (aya-ebpf has no CO-RE). The agent refuses
/// to load without every one of them, so 0 is a real offset here
/// (`skc_daddr` opens `struct sock`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `tcp_request_sock.snt_synack`: when the first SYN-ACK went out.
    pub synack_stamp: u64,
    /// `sock.sk_err` and `sock.sk_err_soft`: a failed connect's verdict.
    pub sk_err: u64,
    pub sk_err_soft: u64,
    /// `sock.__sk_common.skc_net.net` (a `struct net *`) and `net.ns.inum`:
    /// the socket's network namespace.
    pub sk_net: u64,
    pub net_inum: u64,
    /// `sock.sk_lock.owned`: non-zero while a task holds the socket.
    pub sk_lock_owned: u64,
    /// What the state programs read of a socket, the fields the classic
    /// tracepoint reports: `skc_daddr`, `skc_dport`, `inet_sock.inet_saddr`
    /// and `inet_sport` (`struct inet_sock` begins with the `struct sock`),
    /// `skc_family`, and `skc_v6_daddr`, which the agent checks is followed
    /// by `skc_v6_rcv_saddr`.
    pub skc_daddr: u64,
    pub skc_dport: u64,
    pub inet_saddr: u64,
    pub inet_sport: u64,
    pub skc_family: u64,
    pub skc_v6_daddr: u64,
    /// `task_struct.stack`: the lowest address of the task's kernel stack.
    pub task_stack: u64,
}

impl Config {
    /// The value compiled into the object, replaced at load time.
    pub const UNSET: Config = Config {
        wakeup_records: 0,
        retransmit_has_err: 0,
        task_stack_bytes: 0,
        offsets: KernelOffsets {
            synack_stamp: 0,
            sk_err: 0,
            sk_err_soft: 0,
            sk_net: 0,
            net_inum: 0,
            sk_lock_owned: 0,
            skc_daddr: 0,
            skc_dport: 0,
            inet_saddr: 0,
            inet_sport: 0,
            skc_family: 0,
            skc_v6_daddr: 0,
            task_stack: 0,
        },
    };
}

const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 13 * 8);
const _: () = assert!(core::mem::size_of::<Config>() == 16 * 8);
