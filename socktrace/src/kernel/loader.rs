//! Loads socktrace's BPF object and attaches its programs. Dropping the
//! returned [`KernelProbes`] detaches everything.
use std::os::fd::AsFd;

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray},
    programs::{BtfTracePoint, TracePoint},
};
use aya_log::EbpfLogger;
use socktrace_ebpf::{
    Config, GLOBAL_CONFIG, KernelOffsets, MAP_EVENTS, MAP_LOST, MAP_NESTED_TAKEN, PROGRAM_STATE,
    PROGRAM_STATE_NESTED, RECORD_SIZE,
    tracepoints::{LAYOUTS, RETRANSMIT_SKB},
};

use crate::{
    kernel::kernel_btf::{self, KernelBtf},
    kernel::lost::{LostCounter, LostReadError, SkippedRuns},
    kernel::privileges,
    kernel::ring_reader::RingBuffer,
    kernel::tracepoint_format,
};

/// The BPF object built from `socktrace-ebpf` by build.rs.
static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/socktrace"));

/// Why the kernel side could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("map {0} is not a ring buffer")]
    NotRingBuffer(&'static str),
    #[error(transparent)]
    Privileges(#[from] privileges::MissingPrivileges),
    #[error(transparent)]
    Format(#[from] tracepoint_format::FormatError),
    #[error("cannot locate kernel struct fields the BPF programs read")]
    Offsets(#[from] kernel_btf::BtfError),
    #[error("kernel BTF (/sys/kernel/btf/vmlinux) is required for the state programs")]
    Btf(#[source] aya::BtfError),
    #[error("this socktrace binary was built with AYA_BUILD_SKIP=1 and holds no BPF program")]
    NoObject,
    #[error("loading the BPF object")]
    Object(#[source] aya::EbpfError),
    #[error("the BPF object has no {0}")]
    Missing(&'static str),
    #[error("reading the possible CPUs ({path})")]
    Cpus {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("BPF program {what}")]
    Program {
        what: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("reading the BPF programs' log")]
    KernelLog(#[source] aya_log::Error),
    #[error("opening the counts of lost records")]
    Counts(#[source] LostReadError),
    #[error("map {name}")]
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
    pub events: RingBuffer,
    pub lost: LostCounter,
    /// The programs' diagnostics of unusual paths, when debug logging is
    /// on (`-vv`): [`KernelLog::flush`] passes them to the log.
    pub kernel_log: Option<KernelLog>,
}

/// Reads what the programs log (aya-log) into this process's log.
pub struct KernelLog(EbpfLogger<&'static dyn log::Log>);

impl KernelLog {
    /// Logs every message the programs queued.
    pub fn flush(&mut self) {
        self.0.flush();
    }
}

/// The BTF tracepoint both state programs attach to, in the order of
/// [`STATE_PROGRAMS`]: the tracepoint calls them in the order they were
/// attached, and the nested one relies on running after the other.
const STATE_TRACEPOINT: &str = "inet_sock_set_state";
const STATE_PROGRAMS: [&str; 2] = [PROGRAM_STATE, PROGRAM_STATE_NESTED];

/// Checks privileges, the tracepoint layouts and the kernel struct offsets,
/// then loads and attaches.
pub fn load_and_attach(ring_buffer_bytes: u32) -> Result<KernelProbes, LoadError> {
    if BPF_OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    privileges::require_tracing_privileges()?;
    let cpus = possible_cpus()?;
    let optional_fields = tracepoint_format::check_all()?;
    raise_memlock_limit();
    let (offsets, task_stack_bytes, btf) = resolve_offsets()?;
    let config = LoadConfig(Config {
        wakeup_records: wakeup_threshold(ring_buffer_bytes, cpus),
        retransmit_has_err: u64::from(optional_fields.has(&RETRANSMIT_SKB, "err")),
        task_stack_bytes,
        offsets,
    });
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        .map_max_entries(MAP_EVENTS, ring_buffer_bytes)
        .override_global(GLOBAL_CONFIG, &config, true)
        .override_global(aya_log::LEVEL, &kernel_log_level(), true)
        .load(BPF_OBJECT)
        .map_err(LoadError::Object)?;

    let mut state_program = None;
    for name in STATE_PROGRAMS {
        let program: &mut BtfTracePoint = ebpf
            .program_mut(name)
            .ok_or(LoadError::Missing(name))?
            .try_into()
            .map_err(program_error(name))?;
        program
            .load(STATE_TRACEPOINT, &btf)
            .map_err(program_error(name))?;
        program.attach().map_err(program_error(name))?;
        if name == PROGRAM_STATE {
            let fd = program.fd().map_err(program_error(name))?;
            state_program = Some(SkippedRuns::open(&fd.as_fd()).map_err(LoadError::Counts)?);
        }
    }
    let state_program = state_program.ok_or(LoadError::Missing(PROGRAM_STATE))?;
    let mut classic_programs = Vec::with_capacity(LAYOUTS.len());
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
        let fd = program.fd().map_err(program_error(layout.name))?;
        classic_programs.push(SkippedRuns::open(&fd.as_fd()).map_err(LoadError::Counts)?);
    }

    let kernel_log = if kernel_log_level() == 0 {
        None
    } else {
        Some(KernelLog(
            EbpfLogger::init(&mut ebpf).map_err(LoadError::KernelLog)?,
        ))
    };
    let events = take_map(&mut ebpf, MAP_EVENTS)?;
    let aya::maps::Map::RingBuf(map) = events else {
        return Err(LoadError::NotRingBuffer(MAP_EVENTS));
    };
    // The size the kernel made it (aya rounds up to whole pages).
    let data_bytes = map
        .info()
        .map_err(|source| LoadError::Map {
            name: MAP_EVENTS,
            source,
        })?
        .max_entries() as usize;
    let events = RingBuffer { map, data_bytes };
    let lost = per_cpu_counters(&mut ebpf, MAP_LOST)?;
    let nested_taken = per_cpu_counters(&mut ebpf, MAP_NESTED_TAKEN)?;
    Ok(KernelProbes {
        attached: ebpf,
        events,
        lost: LostCounter::new(lost, state_program, nested_taken, classic_programs),
        kernel_log,
    })
}

/// The level the programs log at: debug when this process logs debug
/// (`-vv`, or `RUST_LOG`), else 0, and the verifier drops the log calls
/// from the programs (the level is a read-only global it knows).
fn kernel_log_level() -> u8 {
    if log::log_enabled!(log::Level::Debug) {
        aya_log::Level::Debug as u8
    } else {
        0
    }
}

/// The programs' settings as aya sets a global: plain bytes.
#[repr(transparent)]
#[derive(Clone, Copy)]
struct LoadConfig(Config);

// SAFETY: `Config` is `#[repr(C)]`, all `u64`, without padding; every bit
// pattern is a valid value.
unsafe impl aya::Pod for LoadConfig {}

/// The kernel struct offsets the programs read, the size of a task's
/// kernel stack, and the kernel's BTF for aya, all from one read of
/// `/sys/kernel/btf/vmlinux` (aya's parser keeps struct members to itself,
/// so ours finds the offsets).
fn resolve_offsets() -> Result<(KernelOffsets, u64, Btf), LoadError> {
    let bytes = kernel_btf::read_vmlinux()?;
    let btf = Btf::parse(&bytes, aya::Endianness::default()).map_err(LoadError::Btf)?;
    let kernel = KernelBtf::parse(bytes)?;
    let offset = |owner, path: &[&str]| kernel.member_offset(owner, path).map(u64::from);
    let common = |field| offset("sock", &["__sk_common", field]);
    let offsets = KernelOffsets {
        synack_stamp: offset("tcp_request_sock", &["snt_synack"])?,
        sk_err: offset("sock", &["sk_err"])?,
        sk_err_soft: offset("sock", &["sk_err_soft"])?,
        sk_net: offset("sock", &["__sk_common", "skc_net", "net"])?,
        net_inum: offset("net", &["ns", "inum"])?,
        sk_lock_owned: offset("sock", &["sk_lock", "owned"])?,
        skc_daddr: common("skc_daddr")?,
        skc_dport: common("skc_dport")?,
        inet_saddr: offset("inet_sock", &["inet_saddr"])?,
        inet_sport: offset("inet_sock", &["inet_sport"])?,
        skc_family: common("skc_family")?,
        skc_v6_daddr: pair(&kernel, "skc_v6_daddr", "skc_v6_rcv_saddr", 16)?,
        task_stack: offset("task_struct", &["stack"])?,
    };
    Ok((offsets, task_stack_bytes(&kernel), btf))
}

/// x86-64's `THREAD_SIZE`: four pages, eight in a kernel built with KASAN
/// (`KASAN_STACK_ORDER`), which has its `kasan_report`.
fn task_stack_bytes(kernel: &KernelBtf) -> u64 {
    const PAGE_BYTES: u64 = 4096;
    let order = if kernel.has_function("kasan_report") {
        3
    } else {
        2
    };
    PAGE_BYTES << order
}

/// The offset of `first` in `struct sock`'s `__sk_common`, checked to be
/// followed by `second` `size` bytes later: the state programs read both
/// with one copy.
fn pair(
    btf: &KernelBtf,
    first: &str,
    second: &str,
    size: u32,
) -> Result<u64, kernel_btf::BtfError> {
    let at = btf.member_offset("sock", &["__sk_common", first])?;
    let next = btf.member_offset("sock", &["__sk_common", second])?;
    if next != at + size {
        return Err(kernel_btf::BtfError::NotAdjacent {
            first: first.to_owned(),
            second: second.to_owned(),
        });
    }
    Ok(u64::from(at))
}

/// Records each CPU queues before it wakes the agent: together at most an
/// eighth of the ring, or 256 KiB (about 2,500 records), so a burst is
/// drained long before it could fill the ring.
pub fn wakeup_threshold(ring_buffer_bytes: u32, cpus: usize) -> u64 {
    /// A record and the ring's 8-byte header.
    const SLOT_BYTES: u64 = RECORD_SIZE as u64 + 8;
    /// What every CPU together queues at most between two wake-ups.
    const WAKEUP_BYTES: u64 = 256 * 1024;
    let bytes = u64::from(ring_buffer_bytes / 8).min(WAKEUP_BYTES);
    (bytes / SLOT_BYTES / cpus.max(1) as u64).max(1)
}

/// How many CPUs the kernel may run programs on.
fn possible_cpus() -> Result<usize, LoadError> {
    aya::util::nr_cpus().map_err(|(path, source)| LoadError::Cpus { path, source })
}

/// Names the program an aya error is about.
fn program_error(what: &'static str) -> impl Fn(aya::programs::ProgramError) -> LoadError {
    move |source| LoadError::Program { what, source }
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, LoadError> {
    ebpf.take_map(name).ok_or(LoadError::Missing(name))
}

fn per_cpu_counters(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<PerCpuArray<MapData, u64>, LoadError> {
    PerCpuArray::try_from(take_map(ebpf, name)?).map_err(|source| LoadError::Map { name, source })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wakeup_threshold_leaves_room_in_small_and_large_rings() {
        assert_eq!(wakeup_threshold(4096, 1), 4, "512 bytes, 104-byte slots");
        assert_eq!(wakeup_threshold(4096, 8), 1);
        assert_eq!(wakeup_threshold(1 << 20, 1), 1260, "an eighth: 128 KiB");
        assert_eq!(wakeup_threshold(4 << 20, 1), 2520, "256 KiB");
        assert_eq!(wakeup_threshold(16 << 20, 2), 1260);
    }
}
