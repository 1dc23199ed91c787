//! The interrupt level a program runs at, told by the stack it runs on:
//! a run nested in another one on its CPU is never on the same stack.
use aya_ebpf::helpers::generated::bpf_get_current_task_btf;

use crate::read::{KernelMemory, Typed, setting};

/// Levels [`level`] tells apart.
pub const LEVELS: u32 = 2;

/// 0 on the current task's kernel stack (a system call, or a kernel thread
/// such as ksoftirqd), 1 anywhere else: the CPU's interrupt stack, where
/// x86-64 runs the softirqs that interrupt the kernel. Softirqs do not
/// nest in one another, and hard interrupts change no TCP state, so a
/// transition nested in another one's programs on a CPU is at level 1 and
/// the one it interrupts at level 0. `current` only names the stack here,
/// never an owner.
#[inline(always)]
pub fn level() -> u32 {
    // SAFETY: plain helper call, no arguments; it returns the current
    // task as a BTF-typed pointer, never null.
    let task = unsafe { bpf_get_current_task_btf() }.cast::<u8>();
    let stack = Typed::read::<u64>(task, setting(|config| &config.offsets.task_stack)).unwrap_or(0);
    // This program's own stack frame, on the stack the CPU runs on.
    let anchor = 0u8;
    let frame = core::ptr::addr_of!(anchor) as u64;
    if frame.wrapping_sub(stack) < setting(|config| &config.task_stack_bytes) {
        0
    } else {
        1
    }
}
