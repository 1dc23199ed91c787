//! socktrace's kernel side: stamp every TCP state transition, SYN and SYN-ACK
//! retransmit and received RST, and hand them to the agent through a ring
//! buffer. Filtering and stamping only; all
//! reasoning about sockets happens in userspace.
//!
//! Transitions come from the BTF twin of `sock:inet_sock_set_state`
//! (`tp_btf`), which hands over the `struct sock *` and the two states; the
//! addresses, ports and family are loaded straight from the socket ([`load`])
//! at offsets the agent resolves from the running kernel's BTF before load
//! (aya-ebpf has no CO-RE). Three reasons, all measured with `cargo xtask
//! bench`:
//! - Nothing is lost to nesting. The kernel runs a classic tracepoint's
//!   program only if no other classic tracepoint or kprobe program runs on
//!   that CPU (`bpf_prog_active`), so a softirq transition that interrupts a
//!   process-context run is dropped (`recursion_misses`): about 0.5 % of
//!   transitions under loopback churn. A BTF tracepoint skips only a nested
//!   run of the same program, so two programs are attached, in order:
//!   [`tcp_state`] takes every transition and marks the time it runs on its
//!   CPU ([`STATE_RUNNING`]); [`tcp_state_nested`], which the tracepoint
//!   calls next, takes a transition only when it comes in that time: then
//!   it nests in a run of [`tcp_state`], and the kernel skipped that
//!   program for it. None is taken twice; one that comes in the few
//!   instructions the kernel runs around [`tcp_state`] is counted lost.
//! - No perf trace record is assembled for a program that reads a few fields.
//! - A typed socket pointer and offsets the verifier knows (read-only
//!   globals) make each field one load instruction instead of a
//!   `bpf_probe_read_kernel` call: 618 instead of about 950 ns per
//!   transition for the two programs, with the kernel's statistics on.
//!
//! Whether the current task acts on the socket is read from the socket's
//! lock ([`task_context`]) rather than tracked with hooks on softirq entry
//! and exit: those ran on every softirq of the host, TCP or not, and cost
//! more per transition than the state program itself.
//!
//! The rarer events (retransmits, resets) keep their classic tracepoints,
//! whose records carry the endpoints.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    cty::c_void,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
        generated::bpf_skc_to_tcp_sock,
    },
    macros::{btf_tracepoint, map, tracepoint},
    maps::{PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, TracePointContext},
};
use socktrace_ebpf::{
    AF_INET, AF_INET6, CONTEXT_PROCESS, CONTEXT_SOFTIRQ, LOST_SLOT_CLASSIC, LOST_SLOT_STATE,
    LOST_SLOT_STATE_NESTED, LOST_SLOTS, RECORD_RESET_RECEIVED, RECORD_STATE, RECORD_SYN_RETRANSMIT,
    RECORD_SYNACK_RETRANSMIT, RING_BUFFER_BYTES, Record, TCP_CLOSE, TCP_SYN_SENT,
    tracepoints::{
        Endpoints, RECEIVE_RESET_ENDPOINTS, RECEIVE_RESET_SKADDR, RETRANSMIT_SKB_ENDPOINTS,
        RETRANSMIT_SKB_ERR, RETRANSMIT_SKB_SKADDR, RETRANSMIT_SKB_STATE,
        RETRANSMIT_SYNACK_ENDPOINTS, RETRANSMIT_SYNACK_REQ, RETRANSMIT_SYNACK_SKADDR,
    },
};

/// Set by the agent before load (`GLOBAL_WAKEUP_RECORDS`).
#[unsafe(no_mangle)]
static WAKEUP_RECORDS: u64 = 0;

/// Set by the agent before load (`GLOBAL_*_OFFSET`): where fields live in
/// this kernel's structs; 0 when unknown.
#[unsafe(no_mangle)]
static SYNACK_STAMP_OFFSET: u64 = 0;
#[unsafe(no_mangle)]
static SK_ERR_OFFSET: u64 = 0;
#[unsafe(no_mangle)]
static SK_ERR_SOFT_OFFSET: u64 = 0;
#[unsafe(no_mangle)]
static SK_NET_OFFSET: u64 = 0;
#[unsafe(no_mangle)]
static NET_INUM_OFFSET: u64 = 0;
#[unsafe(no_mangle)]
static SK_LOCK_OWNED_OFFSET: u64 = 0;

/// Set by the agent before load (`GLOBAL_SKC_*_OFFSET`,
/// `GLOBAL_INET_*_OFFSET`); the agent refuses to load without them, so 0 is
/// a real offset here (`skc_daddr` opens `struct sock`).
#[unsafe(no_mangle)]
static SKC_DADDR_OFFSET: u64 = 0;
#[unsafe(no_mangle)]
static SKC_DPORT_OFFSET: u64 = 0;
#[unsafe(no_mangle)]
static INET_SADDR_OFFSET: u64 = 0;
#[unsafe(no_mangle)]
static INET_SPORT_OFFSET: u64 = 0;
#[unsafe(no_mangle)]
static SKC_FAMILY_OFFSET: u64 = 0;
#[unsafe(no_mangle)]
static SKC_V6_DADDR_OFFSET: u64 = 0;

/// Set by the agent before load (`GLOBAL_RETRANSMIT_HAS_ERR`).
#[unsafe(no_mangle)]
static RETRANSMIT_HAS_ERR: u64 = 0;

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BUFFER_BYTES, 0);

#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(LOST_SLOTS, 0);

/// Whether the current task holds the lock of the socket at `skaddr`
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
    if load::<i32>(sk, &SK_LOCK_OWNED_OFFSET) == 0 {
        CONTEXT_SOFTIRQ
    } else {
        CONTEXT_PROCESS
    }
}

/// The `T` at `sk + *offset`, for `sk` a BTF-typed socket pointer (a
/// `tp_btf` argument, or one derived from it by a helper), loaded directly
/// rather than through `bpf_probe_read_kernel`. The offset is a global the
/// agent set from the kernel's BTF; globals live in a frozen read-only map,
/// so the verifier knows its value, checks the access against the kernel's
/// BTF, and the JIT makes it a single load guarded by the exception table
/// (a faulting load reads 0).
#[inline(always)]
fn load<T>(sk: *const u8, offset: &u64) -> T {
    // SAFETY: read of a plain global set at load time (volatile: not the
    // compile-time 0).
    let offset = unsafe { core::ptr::read_volatile(offset) } as usize;
    // SAFETY: see above; the verifier rejects an access outside the field.
    unsafe { core::ptr::read_volatile(sk.add(offset).cast::<T>()) }
}

/// What a program read from its tracepoint, in the record's layout.
struct Fields {
    skaddr: u64,
    netns: u32,
    family: u16,
    sport: u16,
    dport: u16,
    saddr: [u8; 16],
    daddr: [u8; 16],
    oldstate: u8,
    newstate: u8,
    value: u64,
}

/// Whether [`tcp_state`] runs on this CPU: set by its first store, cleared
/// by its last. A transition that finds it set nests in that run, and the
/// kernel skipped [`tcp_state`] for it.
#[map]
static STATE_RUNNING: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Transitions [`tcp_state_nested`] took (`MAP_NESTED_TAKEN`).
#[map]
static NESTED_TAKEN: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Every transition, but those nested in its own run on this CPU (the
/// kernel skips it for them).
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn tcp_state(ctx: BtfTracePointContext) -> i32 {
    let (skaddr, oldstate, newstate): (u64, i32, i32) = (ctx.arg(0), ctx.arg(1), ctx.arg(2));
    let Some(running) = STATE_RUNNING.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot; nothing else writes it (a nested run of
    // this program is skipped).
    unsafe { core::ptr::write_volatile(running, 1) };
    on_set_state(skaddr as *const u8, oldstate, newstate, LOST_SLOT_STATE);
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(running, 0) };
    0
}

/// The transitions the kernel skipped [`tcp_state`] for: those that came
/// while it ran on this CPU. A transition in the few instructions the
/// kernel runs around [`tcp_state`] is skipped by it without being seen
/// here; the agent counts those as lost (`recursion_misses` of
/// [`tcp_state`] less [`NESTED_TAKEN`]). None is taken twice.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn tcp_state_nested(ctx: BtfTracePointContext) -> i32 {
    let Some(running) = STATE_RUNNING.get_ptr(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot, read once.
    if unsafe { core::ptr::read_volatile(running) } == 0 {
        return 0;
    }
    let (skaddr, oldstate, newstate): (u64, i32, i32) = (ctx.arg(0), ctx.arg(1), ctx.arg(2));
    if let Some(taken) = NESTED_TAKEN.get_ptr_mut(0) {
        // SAFETY: this CPU's slot, which only this program increments, and
        // it never nests in itself (the kernel skips such runs).
        unsafe { *taken += 1 };
    }
    on_set_state(
        skaddr as *const u8,
        oldstate,
        newstate,
        LOST_SLOT_STATE_NESTED,
    );
    0
}

/// `inet_sock_set_state(const struct sock *sk, int oldstate, int newstate)`:
/// the record for a TCP socket's transition, counted in `lost_slot` if the
/// ring has no room. Fields are loaded straight from the socket ([`load`]).
#[inline(always)]
fn on_set_state(sk: *const u8, oldstate: i32, newstate: i32, lost_slot: u32) {
    // SAFETY: the helper takes the tracepoint's socket and returns it as a
    // `tcp_sock` if it is one (full socket, `IPPROTO_TCP`, stream), else
    // null: the protocol filter, and a pointer to `inet_sock`'s fields too.
    let tcp = unsafe { bpf_skc_to_tcp_sock(sk as *mut c_void) } as *const u8;
    if tcp.is_null() {
        return;
    }
    let family = load::<u16>(tcp, &SKC_FAMILY_OFFSET);
    let mut saddr = [0u8; 16];
    let mut daddr = [0u8; 16];
    match family {
        AF_INET => {
            // What the classic tracepoint reports: `inet_saddr`, as for
            // the port below.
            saddr[..4].copy_from_slice(&load::<u32>(tcp, &INET_SADDR_OFFSET).to_ne_bytes());
            daddr[..4].copy_from_slice(&load::<u32>(tcp, &SKC_DADDR_OFFSET).to_ne_bytes());
        }
        AF_INET6 => {
            // `skc_v6_daddr` then `skc_v6_rcv_saddr`, by 32-bit words
            // (`in6_addr.s6_addr32`).
            for word in 0..4 {
                let remote = load::<u32>(tcp.wrapping_add(word * 4), &SKC_V6_DADDR_OFFSET);
                let local = load::<u32>(tcp.wrapping_add(16 + word * 4), &SKC_V6_DADDR_OFFSET);
                daddr[word * 4..word * 4 + 4].copy_from_slice(&remote.to_ne_bytes());
                saddr[word * 4..word * 4 + 4].copy_from_slice(&local.to_ne_bytes());
            }
        }
        // Unknown families still go out; the agent counts and skips them.
        _ => {}
    }
    // A connect that failed or was abandoned: the kernel set the verdict in
    // `sk_err` before closing; `sk_err_soft` holds an ICMP error that came
    // while the socket was busy. Errnos are stored positive.
    let value = if oldstate == TCP_SYN_SENT && newstate == TCP_CLOSE {
        let err = load::<i32>(tcp, &SK_ERR_OFFSET).unsigned_abs();
        let soft = load::<i32>(tcp, &SK_ERR_SOFT_OFFSET).unsigned_abs();
        u64::from(err) | u64::from(soft) << 32
    } else {
        0
    };
    // The network namespace: `sk->__sk_common.skc_net.net->ns.inum`.
    let net = load::<*const u8>(tcp, &SK_NET_OFFSET);
    let netns = if net.is_null() {
        0
    } else {
        load::<u32>(net, &NET_INUM_OFFSET)
    };
    emit(
        RECORD_STATE,
        &Fields {
            skaddr: sk as u64,
            netns,
            family,
            // Both in network order. The local port is `inet_sport`, which
            // a CLOSE leaves in place (`skc_num` is already 0 by then: the
            // transition is traced after the port was released).
            sport: u16::from_be(load::<u16>(tcp, &INET_SPORT_OFFSET)),
            dport: u16::from_be(load::<u16>(tcp, &SKC_DPORT_OFFSET)),
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

/// SYN retransmits of active opens only: data retransmits are far more
/// frequent and not socktrace's business.
#[tracepoint]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    // SAFETY (every `read_at` of the tcp programs): offsets from
    // `tracepoints`, checked against the running kernel before load.
    let Ok(state) = (unsafe { ctx.read_at::<i32>(RETRANSMIT_SKB_STATE) }) else {
        return 0;
    };
    if state != TCP_SYN_SENT || retransmit_failed(&ctx) {
        return 0;
    }
    let (Ok(skaddr), Ok(ends)) = (unsafe {
        (
            ctx.read_at::<u64>(RETRANSMIT_SKB_SKADDR),
            ctx.read_at::<Endpoints>(RETRANSMIT_SKB_ENDPOINTS),
        )
    }) else {
        return 0;
    };
    emit_endpoints(RECORD_SYN_RETRANSMIT, skaddr, &ends, state as u8, 0);
    0
}

/// Linux 6.17+ also fires `tcp_retransmit_skb` for a retransmit that could
/// not be sent, with its error in `err`.
#[inline(always)]
fn retransmit_failed(ctx: &TracePointContext) -> bool {
    // SAFETY: read of a plain global set at load time (volatile: not the
    // compile-time 0).
    if unsafe { core::ptr::read_volatile(&RETRANSMIT_HAS_ERR) } == 0 {
        return false;
    }
    // SAFETY: the agent set the flag only after finding `err` at this
    // offset in the running kernel's format.
    !matches!(unsafe { ctx.read_at::<i32>(RETRANSMIT_SKB_ERR) }, Ok(0))
}

/// Every SYN-ACK retransmit: the only trace a half-open connection leaves.
#[tracepoint]
pub fn tcp_retransmit_synack(ctx: TracePointContext) -> u32 {
    let (Ok(listener), Ok(req), Ok(ends)) = (unsafe {
        (
            ctx.read_at::<u64>(RETRANSMIT_SYNACK_SKADDR),
            ctx.read_at::<u64>(RETRANSMIT_SYNACK_REQ),
            ctx.read_at::<Endpoints>(RETRANSMIT_SYNACK_ENDPOINTS),
        )
    }) else {
        return 0;
    };
    // SAFETY: read of a plain global set at load time (volatile: not the
    // compile-time 0).
    let offset = unsafe { core::ptr::read_volatile(&SYNACK_STAMP_OFFSET) };
    let first_synack_us = if offset == 0 {
        0
    } else {
        // SAFETY: bpf_probe_read_kernel checks the address; `req` is the
        // live request socket the tracepoint was called with.
        unsafe { bpf_probe_read_kernel((req + offset) as *const u64) }.unwrap_or(0)
    };
    emit_endpoints(
        RECORD_SYNACK_RETRANSMIT,
        listener,
        &ends,
        0,
        first_synack_us,
    );
    0
}

#[tracepoint]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    let (Ok(skaddr), Ok(ends)) = (unsafe {
        (
            ctx.read_at::<u64>(RECEIVE_RESET_SKADDR),
            ctx.read_at::<Endpoints>(RECEIVE_RESET_ENDPOINTS),
        )
    }) else {
        return 0;
    };
    emit_endpoints(RECORD_RESET_RECEIVED, skaddr, &ends, 0, 0);
    0
}

#[inline(always)]
fn emit_endpoints(kind: u8, skaddr: u64, ends: &Endpoints, state: u8, value: u64) {
    let (saddr, daddr) = addresses(
        ends.family,
        &ends.saddr,
        &ends.daddr,
        &ends.saddr_v6,
        &ends.daddr_v6,
    );
    emit(
        kind,
        &Fields {
            skaddr,
            netns: netns_inode(skaddr),
            family: ends.family,
            sport: ends.sport,
            dport: ends.dport,
            saddr,
            daddr,
            oldstate: state,
            newstate: state,
            value,
        },
        CONTEXT_SOFTIRQ,
        LOST_SLOT_CLASSIC,
    );
}

/// Stamps `fields` with time, task and context and queues the record. Only
/// state records carry a task, and only when it acts on the socket (see
/// [`task_context`]); the others pass [`CONTEXT_SOFTIRQ`] and leave it zero.
/// A record the ring has no room for is counted in `lost_slot`, the
/// [`LOST`] slot of the calling program's group.
#[inline(always)]
fn emit(kind: u8, fields: &Fields, context: u8, lost_slot: u32) {
    let Some(mut entry) = EVENTS.reserve::<Record>(0) else {
        count_lost(lost_slot);
        return;
    };
    let (tgid, comm) = if context == CONTEXT_PROCESS {
        (
            (bpf_get_current_pid_tgid() >> 32) as u32,
            bpf_get_current_comm().unwrap_or_default(),
        )
    } else {
        (0, [0; 16])
    };
    entry.write(Record {
        kind,
        task_context: context,
        family: fields.family,
        tgid,
        // SAFETY: plain helper call, no arguments.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        skaddr: fields.skaddr,
        netns: fields.netns,
        sport: fields.sport,
        dport: fields.dport,
        saddr: fields.saddr,
        daddr: fields.daddr,
        comm,
        oldstate: fields.oldstate,
        newstate: fields.newstate,
        _pad: [0; 6],
        value: fields.value,
    });
    entry.submit(wakeup_flags());
}

/// The inode of the network namespace of the socket at `skaddr`
/// (`sk->__sk_common.skc_net.net->ns.inum`), or 0 when unknown, for the
/// classic tracepoints, whose socket address is a plain number (the state
/// programs load it directly: [`on_set_state`]).
#[inline(always)]
fn netns_inode(skaddr: u64) -> u32 {
    // SAFETY: reads of plain globals set at load time (volatile: not the
    // compile-time 0).
    let (net_offset, inum_offset) = unsafe {
        (
            core::ptr::read_volatile(&SK_NET_OFFSET),
            core::ptr::read_volatile(&NET_INUM_OFFSET),
        )
    };
    if net_offset == 0 || inum_offset == 0 {
        return 0;
    }
    // SAFETY: bpf_probe_read_kernel checks both addresses; `skaddr` is the
    // live socket the tracepoint was called with, and a socket holds its
    // namespace while it lives.
    unsafe {
        match bpf_probe_read_kernel((skaddr + net_offset) as *const u64) {
            Ok(net) if net != 0 => {
                bpf_probe_read_kernel((net + inum_offset) as *const u32).unwrap_or(0)
            }
            _ => 0,
        }
    }
}

/// Records this CPU queued since it last woke the agent.
#[map]
static UNANNOUNCED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Wake the agent only when a batch is waiting: a wake-up per record is an
/// irq_work plus a cross-CPU wake-up per transition, which measured 6 µs per
/// event in a VM and halved the connection rate of a loopback churn. Each
/// CPU wakes it once per `WAKEUP_RECORDS` records it queued, counted on
/// the CPU: asking the ring how much data waits instead reads the
/// consumer position, a cache line the agent writes after every record.
#[inline(always)]
fn wakeup_flags() -> u64 {
    // SAFETY: read of a plain global; volatile so the value set at load
    // time is read rather than the compile-time 0.
    let every = unsafe { core::ptr::read_volatile(&WAKEUP_RECORDS) };
    let Some(count) = UNANNOUNCED.get_ptr_mut(0) else {
        return u64::from(BPF_RB_FORCE_WAKEUP);
    };
    // SAFETY: this CPU's slot. A program nesting in another may lose an
    // increment, which only delays a wake-up by one record (the agent also
    // drains the ring on a timer).
    unsafe {
        *count += 1;
        if *count >= every {
            *count = 0;
            u64::from(BPF_RB_FORCE_WAKEUP)
        } else {
            u64::from(BPF_RB_NO_WAKEUP)
        }
    }
}

/// Local and remote address in the record's 16-byte layout.
#[inline(always)]
fn addresses(
    family: u16,
    saddr4: &[u8; 4],
    daddr4: &[u8; 4],
    saddr6: &[u8; 16],
    daddr6: &[u8; 16],
) -> ([u8; 16], [u8; 16]) {
    let mut saddr = [0u8; 16];
    let mut daddr = [0u8; 16];
    match family {
        AF_INET => {
            saddr[..4].copy_from_slice(saddr4);
            daddr[..4].copy_from_slice(daddr4);
        }
        AF_INET6 => {
            saddr = *saddr6;
            daddr = *daddr6;
        }
        // Unknown families still go out; the agent counts and skips them.
        _ => {}
    }
    (saddr, daddr)
}

/// Counts a record the ring buffer had no room for, in the slot of the
/// program group that lost it (see [`LOST_SLOTS`]).
#[inline(always)]
fn count_lost(slot: u32) {
    if let Some(counter) = LOST.get_ptr_mut(slot) {
        // SAFETY: this CPU's slot of a per-CPU array, which only programs
        // that cannot interrupt each other increment.
        unsafe { *counter += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
