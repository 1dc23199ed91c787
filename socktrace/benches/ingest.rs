//! The agent's ingest ceiling without the kernel: recorded kernel records
//! replayed, on one core, through decoding (`Event::try_from`) and the
//! socket table (`apply` for state transitions; other kinds are decoded
//! only), and through the agent's whole live state (`decode_live`).
//! Criterion reports records per second.
//!
//! Input: the recording named by `SOCKTRACE_RECORDING`, by default
//! `benches/data/churn.rec`: 8,002 real records, 800 loopback connections
//! opened and closed in a namespace, captured with `socktrace trace
//! --record` by `tests/data/capture.sh churn` (see `tests/data/README.md`).
//!
//! ```text
//! AYA_BUILD_SKIP=1 cargo bench -p socktrace --bench ingest
//! ```
use std::{env, fs, hint::black_box, path::PathBuf};

use criterion::{Criterion, Throughput};
use socktrace::{
    kernel::event::Event,
    recording::format as recording,
    state::{live::LiveState, table::SocketTable},
};

/// The recording replayed unless `SOCKTRACE_RECORDING` names another.
const DEFAULT_RECORDING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/data/churn.rec");

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    ingest(&mut criterion);
    criterion.final_summary();
}

fn ingest(criterion: &mut Criterion) {
    let path = env::var_os("SOCKTRACE_RECORDING")
        .map(PathBuf::from)
        .unwrap_or_else(|| DEFAULT_RECORDING.into());
    let bytes = fs::read(&path)
        .unwrap_or_else(|error| panic!("cannot read recording {}: {error}", path.display()));
    let records =
        recording::records(&bytes).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let count = records.len();

    let mut group = criterion.benchmark_group("ingest");
    group.throughput(Throughput::Elements(count as u64));
    // One table for every pass: a stream of whole lives leaves it (nearly)
    // empty, and a reused table is the agent's steady state.
    let mut table = SocketTable::new();
    group.bench_function("decode_apply", |bencher| {
        bencher.iter(|| decode_apply(black_box(&records), &mut table))
    });
    // The agent's whole per-record work: every tracker and counter the
    // live state keeps, not only the table.
    let mut live = LiveState::new(SocketTable::new());
    group.bench_function("decode_live", |bencher| {
        bencher.iter(|| decode_live(black_box(&records), &mut live))
    });
    group.bench_function("decode_only", |bencher| {
        bencher.iter(|| decode_only(black_box(&records)))
    });
    group.finish();
}

/// Decodes every record and applies the transitions; returns how many
/// records were rejected.
fn decode_apply(records: &[&[u8]], table: &mut SocketTable) -> u64 {
    let mut rejected = 0;
    for &raw in records {
        match Event::try_from(raw) {
            Ok(Event::State(event)) => {
                black_box(table.apply(&event));
            }
            Ok(other) => {
                black_box(other);
            }
            Err(error) => {
                black_box(error);
                rejected += 1;
            }
        }
    }
    rejected
}

/// Records between two settles of the live state: the agent settles it
/// once per drain tick (every 50 ms), and under the HTTP load that is
/// about this many records.
const RECORDS_PER_SETTLE: usize = 10_000;

/// Decodes every record and hands it to the agent's live state, settling
/// it as the agent does; returns how many records were rejected.
fn decode_live(records: &[&[u8]], live: &mut LiveState) -> u64 {
    let mut rejected = 0;
    for (index, &raw) in records.iter().enumerate() {
        if index % RECORDS_PER_SETTLE == 0 {
            live.settled();
        }
        match Event::try_from(raw) {
            Ok(event) => live.event(&event),
            Err(error) => {
                black_box(error);
                rejected += 1;
            }
        }
    }
    rejected
}

/// Decoding alone, to tell its share from the table's.
fn decode_only(records: &[&[u8]]) -> u64 {
    let mut rejected = 0;
    for &raw in records {
        match Event::try_from(raw) {
            Ok(event) => {
                black_box(event);
            }
            Err(error) => {
                black_box(error);
                rejected += 1;
            }
        }
    }
    rejected
}
