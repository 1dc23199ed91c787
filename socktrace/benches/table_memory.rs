//! Heap bytes per socket the table tracks: `SOCKTRACE_SOCKETS` (default
//! 1,000,000) distinct ESTABLISHED sockets built through `apply`, counted
//! by a global allocator that keeps the bytes currently allocated.
//!
//! Prints one line for people and, when `SOCKTRACE_BENCH_JSON` is set, a
//! JSON line `{"sockets":N,"bytes":B,"bytes_per_socket":X}`.
//!
//! ```text
//! AYA_BUILD_SKIP=1 cargo bench -p socktrace --bench table_memory
//! ```
use std::{
    alloc::{GlobalAlloc, Layout, System},
    env,
    hint::black_box,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::atomic::{AtomicUsize, Ordering},
};

use socktrace::{
    kernel::event::{StateEvent, TaskContext},
    model::owner::{Comm, Owner},
    model::tcp_state::TcpState,
    model::tuple::SocketTuple,
    state::table::SocketTable,
};

/// The system allocator, keeping count of the bytes allocated now and at
/// most.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = CURRENT.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    CURRENT.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every call is passed on to `System` unchanged; the counters
// only observe the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees for `layout` are System's.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from System.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from System with `layout`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            grew(new_size);
            shrank(layout.size());
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const DEFAULT_SOCKETS: usize = 1_000_000;
const NETNS: u32 = 4026531840;

/// A handful of processes that connect out.
const OWNERS: [(u32, &str); 5] = [
    (40211, "curl"),
    (3301, "python3"),
    (1290, "envoy"),
    (23011, "java"),
    (977, "postgres"),
];

/// The JSON line, fields in this order.
#[derive(serde::Serialize)]
struct Measured {
    sockets: usize,
    bytes: usize,
    bytes_per_socket: f64,
}

fn main() {
    let sockets = match env::var("SOCKTRACE_SOCKETS") {
        Ok(text) => text
            .parse::<usize>()
            .unwrap_or_else(|_| panic!("SOCKTRACE_SOCKETS={text}: not a count")),
        Err(_) => DEFAULT_SOCKETS,
    };
    assert!(sockets > 0, "SOCKTRACE_SOCKETS must be at least 1");
    let owners = OWNERS.map(|(pid, comm)| Owner::new(pid, Comm::from_text(comm)));

    let mut table = SocketTable::new();
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    for n in 0..sockets {
        let (connect, established) = connection(n, &owners[n % owners.len()]);
        black_box(table.apply(&connect));
        black_box(table.apply(&established));
    }
    let after = CURRENT.load(Ordering::Relaxed);
    let peak = PEAK.load(Ordering::Relaxed);
    let table = black_box(table);
    assert_eq!(table.len(), sockets, "every socket tracked");

    let bytes = after.saturating_sub(before);
    let per_socket = bytes as f64 / sockets as f64;
    println!(
        "table_memory: {sockets} ESTABLISHED sockets: {bytes} heap bytes, {per_socket:.1} bytes per socket \
         (peak while building {:.1} bytes per socket)",
        peak.saturating_sub(before) as f64 / sockets as f64,
    );
    if env::var_os("SOCKTRACE_BENCH_JSON").is_some() {
        let result = Measured {
            sockets,
            bytes,
            bytes_per_socket: per_socket,
        };
        println!("{}", serde_json::to_string(&result).expect("plain numbers"));
    }
    drop(table);
}

/// Socket `n`'s connect (`CLOSE -> SYN_SENT` in process context, before
/// the port is bound) and its establishment (`SYN_SENT -> ESTABLISHED` in
/// softirq). One in four is IPv6; every socket has its own address.
fn connection(n: usize, owner: &Owner) -> (StateEvent, StateEvent) {
    let skaddr = 0xffff_8881_0000_0000 + n as u64 * 0x980;
    let low = n as u32;
    let (local, remote): (IpAddr, IpAddr) = if n % 4 == 3 {
        (
            Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x15).into(),
            Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, (low >> 16) as u16, low as u16).into(),
        )
    } else {
        (
            Ipv4Addr::new(10, 0, 3, 15).into(),
            Ipv4Addr::from(0x0a40_0000 | (low & 0x003f_ffff)).into(),
        )
    };
    let ts_ns = 3_600_000_000_000 + n as u64 * 10_000;
    let tuple = |port| SocketTuple {
        netns: NETNS,
        local: SocketAddr::new(local, port),
        remote: SocketAddr::new(remote, 443),
    };
    let connect = StateEvent {
        ts_ns,
        skaddr,
        tuple: tuple(0),
        old_state: TcpState::Close,
        new_state: TcpState::SynSent,
        task: owner.clone(),
        context: TaskContext::Process,
        error: 0,
        soft_error: 0,
    };
    let established = StateEvent {
        ts_ns: ts_ns + 250_000,
        tuple: tuple(32768 + (n % 28232) as u16),
        old_state: TcpState::SynSent,
        new_state: TcpState::Established,
        task: Owner::new(0, Comm::from_text("swapper/0")),
        context: TaskContext::Softirq,
        ..connect.clone()
    };
    (connect, established)
}
