//! The interrupt level a program runs at, told by the stack its tracepoint
//! call runs on: a run nested in another one on its CPU is never on the
//! same stack.
use aya_ebpf::{
    EbpfContext, helpers::generated::bpf_get_current_task_btf, macros::map, maps::PerCpuArray,
};

use crate::read::{KernelMemory, Typed, setting};

/// Levels [`level`] tells apart.
pub const LEVELS: u32 = 2;

/// Per CPU, the two addresses [`level`] compares, stored and loaded back
/// so that the verifier sees plain numbers: it refuses arithmetic on a
/// context pointer, and types a kernel `void *` differently from one
/// kernel version to the next. Only `tcp_state` calls [`level`], and a
/// program never nests in itself (the kernel skips such runs), so nothing
/// else writes the slot in between.
#[map]
static ADDRESSES: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// 0 when the tracepoint's arguments are on the current task's kernel
/// stack (a system call, or a kernel thread such as ksoftirqd), 1 anywhere
/// else: the CPU's interrupt stack, where x86-64 runs the softirqs that
/// interrupt the kernel. The arguments are the kernel's own (`u64 args[]`
/// in `bpf_trace_run3`), on the stack of the context the transition runs
/// in, whatever stack the JIT gives the program. Softirqs do not nest in
/// one another and hard interrupts change no TCP state, so a transition
/// nested in another one's programs on a CPU is at level 1 and the one it
/// interrupts at level 0. `current` only names the stack here, never an
/// owner.
#[inline(always)]
pub fn level(ctx: &impl EbpfContext) -> u32 {
    // SAFETY: plain helper call, no arguments; it returns the current
    // task as a BTF-typed pointer, never null.
    let task = unsafe { bpf_get_current_task_btf() }.cast::<u8>();
    let stack = Typed::read::<u64>(task, setting(|config| &config.offsets.task_stack)).unwrap_or(0);
    let Some(addresses) = ADDRESSES.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's slot, see [`ADDRESSES`].
    let (args, stack) = unsafe {
        core::ptr::write_volatile(addresses, [ctx.as_ptr() as u64, stack]);
        let [args, stack] = core::ptr::read_volatile(addresses);
        (args, stack)
    };
    if args.wrapping_sub(stack) < setting(|config| &config.task_stack_bytes) {
        0
    } else {
        1
    }
}
