//! What one scrape of `socktrace agent --metrics` costs the agent with
//! 10,000 sockets tracked: the snapshot of the live state (taken in the
//! event loop), the agent's /proc reading, and the encoding. Criterion
//! reports the time per scrape; `cargo xtask bench` checks it against the
//! 1 ms target.
//!
//! ```text
//! AYA_BUILD_SKIP=1 cargo bench -p socktrace --bench metrics_scrape
//! ```
use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr, SocketAddr},
};

use criterion::Criterion;
use socktrace::{
    host::self_usage::SelfUsage,
    kernel::event::{Event, SocketSignal, StateEvent, TaskContext},
    kernel::lost::Lost,
    metrics::exposition::{self, Format},
    metrics::snapshot::MetricsSnapshot,
    model::owner::{Comm, Owner},
    model::tcp_state::TcpState,
    model::tuple::SocketTuple,
    state::live::LiveState,
    state::table::SocketTable,
};

/// Sockets the live state holds: 9,000 ESTABLISHED and 1,000 CLOSE-WAIT.
const SOCKETS: u64 = 10_000;
const NETNS: u32 = 4026531840;
const MS: u64 = 1_000_000;

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let live = live_state();
    criterion.bench_function("scrape_10000_sockets", |bencher| {
        bencher.iter(|| scrape(black_box(&live)))
    });
    criterion.final_summary();
}

/// The snapshot as the agent takes it, encoded as Prometheus text.
fn scrape(live: &LiveState) -> usize {
    let snapshot = MetricsSnapshot {
        live: live.metrics(SOCKETS * MS + 1),
        lost: Lost::default(),
        malformed_records: 0,
        usage: SelfUsage::read().ok(),
        listing_ns: Some(MS),
        namespace_names: Default::default(),
    };
    exposition::encode(snapshot, Format::Prometheus)
        .expect("plain numbers encode")
        .len()
}

/// Connections that were each opened with one SYN retransmit, then
/// established; every tenth was closed by its peer and waits in CLOSE-WAIT.
fn live_state() -> LiveState {
    let mut live = LiveState::new(SocketTable::new());
    let owner = Owner::new(4242, Comm::from_text("envoy"));
    for n in 0..SOCKETS {
        let ts_ns = n * MS;
        let skaddr = 0xffff_8880_0000_0000 + n * 4096;
        let tuple = |port: u16| SocketTuple {
            netns: NETNS,
            local: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), port),
            remote: SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(192, 0, (n / 250) as u8, (n % 250) as u8)),
                443,
            ),
        };
        let port = 32768 + (n % 28232) as u16;
        let state = |ts_ns, tuple, old_state, new_state| {
            Event::State(StateEvent {
                ts_ns,
                skaddr,
                tuple,
                old_state,
                new_state,
                task: owner.clone(),
                context: TaskContext::Process,
                error: 0,
                soft_error: 0,
            })
        };
        live.event(&state(ts_ns, tuple(0), TcpState::Close, TcpState::SynSent));
        live.event(&Event::SynRetransmit(SocketSignal {
            ts_ns: ts_ns + MS / 2,
            skaddr,
            tuple: tuple(port),
        }));
        live.event(&state(
            ts_ns + MS / 2 + 1,
            tuple(port),
            TcpState::SynSent,
            TcpState::Established,
        ));
        if n % 10 == 0 {
            live.event(&state(
                ts_ns + MS / 2 + 2,
                tuple(port),
                TcpState::Established,
                TcpState::CloseWait,
            ));
        }
    }
    live
}
