//! The way out to the agent: stamp a record with time and task, queue it in
//! the ring buffer, wake the agent once per batch, and count what does not fit.
use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        TASK_COMM_LEN, bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated::bpf_get_current_comm,
    },
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
    let record = entry.as_mut_ptr();
    // SAFETY: `record` is the entry just reserved, a whole `Record` the ring
    // lends until submit. Every field is written once, in place: the command
    // name by the helper, which fills all 16 bytes (NUL padded, or zeros if
    // it fails), so no copy of it goes through the stack.
    unsafe {
        (&raw mut (*record).kind).write(kind);
        (&raw mut (*record).task_context).write(context);
        (&raw mut (*record).family).write(fields.family);
        (&raw mut (*record).ts_ns).write(bpf_ktime_get_ns());
        (&raw mut (*record).skaddr).write(fields.skaddr);
        (&raw mut (*record).netns).write(fields.netns);
        (&raw mut (*record).sport).write(fields.sport);
        (&raw mut (*record).dport).write(fields.dport);
        (&raw mut (*record).saddr).write(fields.saddr);
        (&raw mut (*record).daddr).write(fields.daddr);
        (&raw mut (*record).oldstate).write(fields.oldstate);
        (&raw mut (*record).newstate).write(fields.newstate);
        (&raw mut (*record)._pad16).write(0);
        (&raw mut (*record)._pad32).write(0);
        (&raw mut (*record).value).write(fields.value);
        let comm = &raw mut (*record).comm;
        if context == CONTEXT_PROCESS {
            (&raw mut (*record).tgid).write((bpf_get_current_pid_tgid() >> 32) as u32);
            bpf_get_current_comm(comm.cast(), TASK_COMM_LEN as u32);
        } else {
            (&raw mut (*record).tgid).write(0);
            // As two volatile words: `comm` starts 8-aligned (asserted with
            // the layout), and LLVM turns a plain zeroing of 16 bytes into a
            // call to a byte-wise `memset`.
            let words = comm.cast::<u64>();
            words.write_volatile(0);
            words.add(1).write_volatile(0);
        }
    }
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
