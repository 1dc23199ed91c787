//! The way out to the agent: stamp a record with time and task, queue it in
//! the ring buffer, wake the agent once per batch, and count what does not fit.
use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use aya_log_ebpf::debug;
use socktrace_ebpf::{CONTEXT_PROCESS, LOST_SLOTS, RING_BUFFER_BYTES, Record};

use crate::read::setting;

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BUFFER_BYTES, 0);

#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(LOST_SLOTS, 0);

/// Records this CPU queued since it last woke the agent.
#[map]
static UNANNOUNCED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// What a program read from its hook, in the record's layout.
pub struct Fields {
    pub skaddr: u64,
    pub netns: u32,
    pub family: u16,
    pub sport: u16,
    pub dport: u16,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub oldstate: u8,
    pub newstate: u8,
    pub value: u64,
}

/// Stamps `fields` with time, task and context and queues the record. Only
/// state records carry a task, and only when it acts on the socket; the
/// others pass `CONTEXT_SOFTIRQ` and leave it zero. A record the ring has
/// no room for is counted in `lost_slot`, the [`LOST`] slot of the calling
/// program's group.
#[inline(always)]
pub fn emit(ctx: &impl EbpfContext, kind: u8, fields: &Fields, context: u8, lost_slot: u32) {
    let Some(mut entry) = EVENTS.reserve::<Record>(0) else {
        debug!(ctx, "ring buffer full: record of kind {} lost", kind);
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

/// Wake the agent only when a batch is waiting: a wake-up per record is an
/// irq_work plus a cross-CPU wake-up per transition. Each CPU wakes it once
/// per `wakeup_records` records it queued, counted on the CPU: asking the
/// ring how much data waits instead reads the consumer position, a cache
/// line the agent writes after every record.
#[inline(always)]
fn wakeup_flags() -> u64 {
    let every = setting(|config| &config.wakeup_records);
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

/// Counts a record the ring buffer had no room for, in the slot of the
/// program group that lost it (see `LOST_SLOTS`).
#[inline(always)]
fn count_lost(slot: u32) {
    if let Some(counter) = LOST.get_ptr_mut(slot) {
        // SAFETY: this CPU's slot of a per-CPU array, which only programs
        // that cannot interrupt each other increment.
        unsafe { *counter += 1 };
    }
}
