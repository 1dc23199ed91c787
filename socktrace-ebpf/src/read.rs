//! What every program reads: the load-time settings ([`CONFIG`]), kernel
//! memory through a typed or an untyped pointer, a socket's network
//! namespace, and addresses in the record's layout.
use aya_ebpf::{EbpfContext, helpers::bpf_probe_read_kernel};
use aya_log_ebpf::debug;
use socktrace_ebpf::{AF_INET, AF_INET6, Config};

/// Set by the agent before load (`GLOBAL_CONFIG`).
#[unsafe(no_mangle)]
static CONFIG: Config = Config::UNSET;

/// One setting of [`CONFIG`], as the agent set it. Read volatile, so the
/// load reads the map rather than the compile-time value; the verifier
/// knows the value, since the map is frozen.
#[inline(always)]
pub fn setting(field: impl FnOnce(&'static Config) -> &'static u64) -> u64 {
    // SAFETY: read of a plain global set at load time.
    unsafe { core::ptr::read_volatile(field(&CONFIG)) }
}

/// A way to read the `T` at `base + offset` in kernel memory.
pub trait KernelMemory {
    fn read<T>(base: *const u8, offset: u64) -> Option<T>;
}

/// `base` is a BTF-typed pointer (a `tp_btf` argument, or one derived from
/// it by a helper or a typed load): a direct load, which the verifier
/// checks against the kernel's BTF (the offset is a known constant) and
/// the JIT guards with the exception table (a faulting load reads 0). One
/// instruction instead of a `bpf_probe_read_kernel` call.
pub enum Typed {}

impl KernelMemory for Typed {
    #[inline(always)]
    fn read<T>(base: *const u8, offset: u64) -> Option<T> {
        // SAFETY: see above; the verifier rejects an access outside the
        // field.
        Some(unsafe { core::ptr::read_volatile(base.add(offset as usize).cast::<T>()) })
    }
}

/// `base` is an address held as a number (a classic tracepoint's field):
/// `bpf_probe_read_kernel`, which checks the address.
pub enum Untyped {}

impl KernelMemory for Untyped {
    #[inline(always)]
    fn read<T>(base: *const u8, offset: u64) -> Option<T> {
        // SAFETY: the helper checks the address and fails rather than
        // fault.
        unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize).cast::<T>()) }.ok()
    }
}

/// The inode of the socket's network namespace
/// (`sk->__sk_common.skc_net.net->ns.inum`), or 0 when a read failed. A
/// socket holds its namespace while it lives.
#[inline(always)]
pub fn netns_inode<M: KernelMemory>(sk: *const u8) -> u32 {
    match M::read::<*const u8>(sk, setting(|config| &config.offsets.sk_net)) {
        Some(net) if !net.is_null() => {
            M::read::<u32>(net, setting(|config| &config.offsets.net_inum)).unwrap_or(0)
        }
        _ => 0,
    }
}

/// Local and remote address in the record's 16-byte layout: the IPv4 pair
/// then zeros, or the IPv6 pair; zeros for an unknown family (the record
/// still goes out, and the agent counts and skips it).
#[inline(always)]
pub fn addresses(
    ctx: &impl EbpfContext,
    family: u16,
    ipv4: impl FnOnce() -> ([u8; 4], [u8; 4]),
    ipv6: impl FnOnce() -> ([u8; 16], [u8; 16]),
) -> ([u8; 16], [u8; 16]) {
    let mut local = [0u8; 16];
    let mut remote = [0u8; 16];
    match family {
        AF_INET => {
            let (local4, remote4) = ipv4();
            local[..4].copy_from_slice(&local4);
            remote[..4].copy_from_slice(&remote4);
        }
        AF_INET6 => (local, remote) = ipv6(),
        _ => debug!(ctx, "unknown address family {}", family),
    }
    (local, remote)
}
