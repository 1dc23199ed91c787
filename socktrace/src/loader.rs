//! Loads socktrace's BPF object and attaches its programs. Dropping the
//! returned [`KernelProbes`] detaches everything.
use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, TracePoint},
};
use socktrace_ebpf::{
    GLOBAL_NET_INUM_OFFSET, GLOBAL_RETRANSMIT_HAS_ERR, GLOBAL_SK_ERR_OFFSET,
    GLOBAL_SK_ERR_SOFT_OFFSET, GLOBAL_SK_NET_OFFSET, GLOBAL_SYNACK_STAMP_OFFSET,
    GLOBAL_WAKEUP_BYTES, MAP_EVENTS, MAP_LOST,
    tracepoints::{LAYOUTS, RETRANSMIT_SKB},
};

use crate::{
    kernel_btf::{self, KernelBtf},
    privileges, tracepoint_format,
};

/// The BPF object built from `socktrace-ebpf` by build.rs.
static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/socktrace"));

/// Why the kernel side could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Privileges(#[from] privileges::MissingPrivileges),
    #[error(transparent)]
    Format(#[from] tracepoint_format::FormatError),
    #[error("kernel BTF (/sys/kernel/btf/vmlinux) is required for the softirq hooks: {0}")]
    Btf(#[source] aya::BtfError),
    #[error("cannot locate kernel struct fields the BPF programs read: {0}")]
    Offsets(#[from] kernel_btf::BtfError),
    #[error("this socktrace binary was built with AYA_BUILD_SKIP=1 and holds no BPF program")]
    NoObject,
    #[error("loading the BPF object: {0}")]
    Object(#[source] aya::EbpfError),
    #[error("the BPF object has no {0}")]
    Missing(&'static str),
    #[error("{what}: {source}")]
    Program {
        what: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

/// The loaded, attached programs and the maps the agent reads.
pub struct KernelProbes {
    /// Owns the programs and their links: attached while it lives.
    pub attached: Ebpf,
    pub events: RingBuf<MapData>,
    pub lost: LostCounter,
}

/// The kernel's count of records it could not deliver.
pub struct LostCounter(PerCpuArray<MapData, u64>);

/// BTF tracepoints that tell the state program whether it runs in softirq.
/// Exit first: were entry attached first, a softirq already running would
/// set the flag with no attached exit to clear it.
const SOFTIRQ_HOOKS: [&str; 2] = ["softirq_exit", "softirq_entry"];

/// Checks privileges and the tracepoint layout, loads, and attaches:
/// softirq hooks first so the first transition already knows its context.
pub fn load_and_attach(ring_buffer_bytes: u32) -> Result<KernelProbes, LoadError> {
    let wakeup_bytes = wakeup_threshold(ring_buffer_bytes);
    if BPF_OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    privileges::require_tracing_privileges()?;
    let optional_fields = tracepoint_format::check_all()?;
    let retransmit_has_err = u64::from(optional_fields.has(&RETRANSMIT_SKB, "err"));
    raise_memlock_limit();
    let btf = Btf::from_sys_fs().map_err(LoadError::Btf)?;
    let offsets = FieldOffsets::resolve()?;
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        .map_max_entries(MAP_EVENTS, ring_buffer_bytes)
        .override_global(GLOBAL_WAKEUP_BYTES, &wakeup_bytes, true)
        .override_global(GLOBAL_SYNACK_STAMP_OFFSET, &offsets.synack_stamp, true)
        .override_global(GLOBAL_SK_ERR_OFFSET, &offsets.sk_err, true)
        .override_global(GLOBAL_SK_ERR_SOFT_OFFSET, &offsets.sk_err_soft, true)
        .override_global(GLOBAL_SK_NET_OFFSET, &offsets.sk_net, true)
        .override_global(GLOBAL_NET_INUM_OFFSET, &offsets.net_inum, true)
        .override_global(GLOBAL_RETRANSMIT_HAS_ERR, &retransmit_has_err, true)
        .load(BPF_OBJECT)
        .map_err(LoadError::Object)?;

    for hook in SOFTIRQ_HOOKS {
        let program: &mut BtfTracePoint = ebpf
            .program_mut(hook)
            .ok_or(LoadError::Missing("softirq hook"))?
            .try_into()
            .map_err(program_error(hook))?;
        program.load(hook, &btf).map_err(program_error(hook))?;
        program.attach().map_err(program_error(hook))?;
    }

    for layout in LAYOUTS {
        let program: &mut TracePoint = ebpf
            .program_mut(layout.name)
            .ok_or(LoadError::Missing(layout.name))?
            .try_into()
            .map_err(program_error(layout.name))?;
        program.load().map_err(program_error(layout.name))?;
        program
            .attach(layout.category, layout.name)
            .map_err(program_error(layout.name))?;
    }

    let events = take_map(&mut ebpf, MAP_EVENTS)?;
    let events = RingBuf::try_from(events).map_err(|source| LoadError::Map {
        name: MAP_EVENTS,
        source,
    })?;
    let lost = take_map(&mut ebpf, MAP_LOST)?;
    let lost = PerCpuArray::try_from(lost).map_err(|source| LoadError::Map {
        name: MAP_LOST,
        source,
    })?;
    Ok(KernelProbes {
        attached: ebpf,
        events,
        lost: LostCounter(lost),
    })
}

/// Byte offsets of the kernel struct fields the programs read, from the
/// running kernel's BTF.
struct FieldOffsets {
    /// `tcp_request_sock.snt_synack`: when the first SYN-ACK went out.
    synack_stamp: u64,
    /// `sock.sk_err` and `sock.sk_err_soft`: a failed connect's verdict.
    sk_err: u64,
    sk_err_soft: u64,
    /// `sock.__sk_common.skc_net.net` and `net.ns.inum`: the socket's
    /// network namespace. Missing when the kernel has no network
    /// namespaces (`CONFIG_NET_NS` off).
    sk_net: u64,
    net_inum: u64,
}

impl FieldOffsets {
    fn resolve() -> Result<Self, kernel_btf::BtfError> {
        let btf = KernelBtf::load()?;
        let offset = |owner, field| btf.member_offset(owner, &[field]).map(u64::from);
        Ok(FieldOffsets {
            synack_stamp: offset("tcp_request_sock", "snt_synack")?,
            sk_err: offset("sock", "sk_err")?,
            sk_err_soft: offset("sock", "sk_err_soft")?,
            sk_net: btf
                .member_offset("sock", &["__sk_common", "skc_net", "net"])
                .map(u64::from)?,
            net_inum: btf.member_offset("net", &["ns", "inum"]).map(u64::from)?,
        })
    }
}

/// Bytes waiting in the ring before the kernel wakes the agent: an eighth
/// of the ring, at most 64 KiB (about 700 records), so a burst is drained
/// long before it could fill the ring.
pub fn wakeup_threshold(ring_buffer_bytes: u32) -> u64 {
    u64::from(ring_buffer_bytes / 8).min(64 * 1024)
}

/// Names the program an aya error is about.
fn program_error(what: &'static str) -> impl Fn(aya::programs::ProgramError) -> LoadError {
    move |source| LoadError::Program { what, source }
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, LoadError> {
    ebpf.take_map(name).ok_or(LoadError::Missing(name))
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones
/// (memcg accounting) do not, and some sandboxes forbid raising it. Try,
/// and only say so when it fails.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain system call with a valid, initialised argument.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        log::debug!(
            "could not raise RLIMIT_MEMLOCK ({}); fine on kernels with memcg-based BPF accounting (5.11+)",
            std::io::Error::last_os_error()
        );
    }
}

impl LostCounter {
    /// Records the kernel could not deliver so far, all CPUs and reasons.
    pub fn total(&self) -> Result<u64, aya::maps::MapError> {
        let mut total = 0u64;
        for per_cpu in self.0.iter() {
            total += per_cpu?.iter().sum::<u64>();
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wakeup_threshold_leaves_room_in_small_and_large_rings() {
        assert_eq!(wakeup_threshold(4096), 512);
        assert_eq!(wakeup_threshold(4 << 20), 64 * 1024);
    }
}
