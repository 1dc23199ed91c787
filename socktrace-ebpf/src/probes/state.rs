//! The two programs on `inet_sock_set_state` (BTF tracepoint): every TCP
//! state transition, read straight from the socket.
use aya_ebpf::{
    cty::c_void, helpers::generated::bpf_skc_to_tcp_sock, macros::btf_tracepoint, macros::map,
    maps::PerCpuArray, programs::BtfTracePointContext,
};
use aya_log_ebpf::debug;
use socktrace_ebpf::{
    CONTEXT_PROCESS, CONTEXT_SOFTIRQ, LOST_SLOT_STATE, LOST_SLOT_STATE_NESTED, RECORD_STATE,
    TCP_CLOSE, TCP_STATES, TCP_SYN_SENT,
};

use crate::{
    level::{LEVELS, level},
    read::{KernelMemory, Typed, addresses, netns_inode, setting},
    ring::{Fields, emit},
};

/// Per CPU and interrupt level ([`level`]), the transition [`tcp_state`]
/// last took there, until [`tcp_state_nested`] finds it. Two runs at one
/// level of a CPU never interleave, so for the transition it is called
/// for, [`tcp_state_nested`] finds it here exactly when [`tcp_state`] ran.
/// It looks at both levels rather than tell its own: a transition is
/// never the one noted at the other level, which is another socket's
/// (a socket's state changes under its lock, which holds softirqs off it).
#[map]
static TAKEN_AT_LEVEL: PerCpuArray<Taken> = PerCpuArray::with_max_entries(LEVELS, 0);

/// Transitions [`tcp_state_nested`] took (`MAP_NESTED_TAKEN`).
#[map]
static NESTED_TAKEN: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// A transition as the tracepoint names it: the socket and both states.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
struct Taken {
    skaddr: u64,
    states: u64,
}

impl Taken {
    /// What [`tcp_state_nested`] leaves behind: no socket is at address 0.
    const NONE: Taken = Taken {
        skaddr: 0,
        states: 0,
    };

    fn of(skaddr: u64, oldstate: i32, newstate: i32) -> Taken {
        Taken {
            skaddr,
            states: u64::from(oldstate as u32) << 32 | u64::from(newstate as u32),
        }
    }
}

/// Every transition, but those that come while it runs on the same CPU:
/// the kernel skips it for those (a softirq interrupting its run).
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn tcp_state(ctx: BtfTracePointContext) -> i32 {
    let (skaddr, oldstate, newstate): (u64, i32, i32) = (ctx.arg(0), ctx.arg(1), ctx.arg(2));
    if let Some(taken) = TAKEN_AT_LEVEL.get_ptr_mut(level(&ctx)) {
        // SAFETY: this CPU's slot for this level; a run that interrupts
        // this one is at the other level.
        unsafe { core::ptr::write_volatile(taken, Taken::of(skaddr, oldstate, newstate)) };
    }
    on_set_state(
        &ctx,
        skaddr as *const u8,
        oldstate,
        newstate,
        LOST_SLOT_STATE,
    );
    0
}

/// The transitions the kernel skipped [`tcp_state`] for: those that came
/// while it ran on this CPU, from its first instruction to the kernel's
/// last around it. Attached after it, so the tracepoint calls it next for
/// the same transition: it passes over a transition [`tcp_state`] noted
/// ([`TAKEN_AT_LEVEL`]) and takes any other. None is taken twice.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn tcp_state_nested(ctx: BtfTracePointContext) -> i32 {
    let (skaddr, oldstate, newstate): (u64, i32, i32) = (ctx.arg(0), ctx.arg(1), ctx.arg(2));
    let transition = Taken::of(skaddr, oldstate, newstate);
    for level in 0..LEVELS {
        let Some(slot) = TAKEN_AT_LEVEL.get_ptr_mut(level) else {
            return 0;
        };
        // SAFETY: this CPU's slot for a level, cleared only by this
        // program once it found its transition there; nothing at that
        // level runs between the two programs.
        unsafe {
            if core::ptr::read_volatile(slot) == transition {
                core::ptr::write_volatile(slot, Taken::NONE);
                return 0;
            }
        }
    }
    if let Some(count) = NESTED_TAKEN.get_ptr_mut(0) {
        // SAFETY: this CPU's slot, which only this program increments, and
        // it never nests in itself (the kernel skips such runs).
        unsafe { *count += 1 };
    }
    debug!(
        &ctx,
        "took a transition {} -> {} the kernel skipped tcp_state for", oldstate, newstate
    );
    on_set_state(
        &ctx,
        skaddr as *const u8,
        oldstate,
        newstate,
        LOST_SLOT_STATE_NESTED,
    );
    0
}

/// `inet_sock_set_state(const struct sock *sk, int oldstate, int newstate)`:
/// the record for a TCP socket's transition, counted in `lost_slot` if the
/// ring has no room. Every field is a typed load from the socket.
#[inline(always)]
fn on_set_state(
    ctx: &BtfTracePointContext,
    sk: *const u8,
    oldstate: i32,
    newstate: i32,
    lost_slot: u32,
) {
    // SAFETY: the helper takes the tracepoint's socket and returns it as a
    // `tcp_sock` if it is one (full socket, `IPPROTO_TCP`, stream), else
    // null: the protocol filter, and a pointer to `inet_sock`'s fields too.
    let tcp = unsafe { bpf_skc_to_tcp_sock(sk as *mut c_void) } as *const u8;
    if tcp.is_null() {
        return;
    }
    if !(TCP_STATES.contains(&oldstate) && TCP_STATES.contains(&newstate)) {
        // Still sent: the agent counts and skips unknown states.
        debug!(ctx, "unknown TCP state in {} -> {}", oldstate, newstate);
    }
    let read = |offset: u64| Typed::read::<u32>(tcp, offset).unwrap_or(0);
    let family = Typed::read::<u16>(tcp, setting(|config| &config.offsets.skc_family)).unwrap_or(0);
    let (saddr, daddr) = addresses(
        ctx,
        family,
        // What the classic tracepoint reports: `inet_saddr`, as for the
        // port below.
        || {
            (
                read(setting(|config| &config.offsets.inet_saddr)).to_ne_bytes(),
                read(setting(|config| &config.offsets.skc_daddr)).to_ne_bytes(),
            )
        },
        // `skc_v6_daddr` then `skc_v6_rcv_saddr`, by 32-bit words
        // (`in6_addr.s6_addr32`).
        || {
            let v6 = setting(|config| &config.offsets.skc_v6_daddr);
            let (mut local, mut remote) = ([0u8; 16], [0u8; 16]);
            for word in 0..4 {
                let at = word * 4;
                remote[at..at + 4].copy_from_slice(&read(v6 + at as u64).to_ne_bytes());
                local[at..at + 4].copy_from_slice(&read(v6 + 16 + at as u64).to_ne_bytes());
            }
            (local, remote)
        },
    );
    // A connect that failed or was abandoned: the kernel set the verdict in
    // `sk_err` before closing; `sk_err_soft` holds an ICMP error that came
    // while the socket was busy. Errnos are stored positive.
    let value = if oldstate == TCP_SYN_SENT && newstate == TCP_CLOSE {
        let error = |offset| u64::from((read(offset) as i32).unsigned_abs());
        error(setting(|config| &config.offsets.sk_err))
            | error(setting(|config| &config.offsets.sk_err_soft)) << 32
    } else {
        0
    };
    let netns = netns_inode::<Typed>(tcp);
    if netns == 0 {
        debug!(ctx, "no network namespace read from the socket");
    }
    let port = |offset| u16::from_be(Typed::read::<u16>(tcp, offset).unwrap_or(0));
    emit(
        ctx,
        RECORD_STATE,
        &Fields {
            skaddr: sk as u64,
            netns,
            family,
            // Both in network order. The local port is `inet_sport`, which
            // a CLOSE leaves in place (`skc_num` is already 0 by then: the
            // transition is traced after the port was released).
            sport: port(setting(|config| &config.offsets.inet_sport)),
            dport: port(setting(|config| &config.offsets.skc_dport)),
            saddr,
            daddr,
            oldstate: oldstate as u8,
            newstate: newstate as u8,
            value,
        },
        task_context(sk),
        lost_slot,
    );
}

/// Whether the current task holds the lock of the socket at `sk`
/// (`sk->sk_lock.owned`): then it is the task acting on the socket (a
/// system call, or its own backlog being processed in `release_sock`).
/// Softirq and timer code never changes the state of a socket a task holds:
/// they defer to the owner (`sock_owned_by_user`), so a transition of an
/// unowned socket ran in softirq, a timer, or a kernel path acting on a
/// socket nobody locked (a listener's unaccepted children), and `current`
/// there says nothing. One read of the socket, instead of hooks on every
/// softirq of the host.
#[inline(always)]
fn task_context(sk: *const u8) -> u8 {
    match Typed::read::<i32>(sk, setting(|config| &config.offsets.sk_lock_owned)) {
        Some(0) | None => CONTEXT_SOFTIRQ,
        Some(_) => CONTEXT_PROCESS,
    }
}
