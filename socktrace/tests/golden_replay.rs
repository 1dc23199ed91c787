//! Golden replay: a recording of real kernel records (`socktrace trace
//! --record`, see `tests/data/README.md`) fed through decoding and the one
//! pipeline every command and the agent use (the socket table, then the
//! trackers), rendered as `socktrace trace --json` and `socktrace
//! handshakes --json` render it, compared line by line with the output they
//! printed. Any change in how records are decoded, how the
//! table names sockets and owners, or how handshakes end shows up here.
//!
//! After an intended change: `SOCKTRACE_BLESS=1 cargo test --test
//! golden_replay`, and review the diff of the golden file.
use std::{env, fs, path::PathBuf};

use socktrace::{
    kernel::event::Event,
    recording::format as recording,
    render::handshake_output,
    render::output::{self, Format, Style},
    state::pipeline::{Applied, Pipeline, Trackers},
    state::table::SocketTable,
    support::clock::WallClock,
};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// What `trace --json` and `handshakes --json` print for these records,
/// one stream after the other per record.
fn replay(bytes: &[u8]) -> String {
    let style = Style {
        clock: WallClock::now(),
        netns_column: false,
    };
    let mut pipeline = Pipeline::new(SocketTable::new(), Trackers::ALL);
    let mut out = String::new();
    for raw in recording::records(bytes).expect("a socktrace recording") {
        let event = Event::try_from(raw).expect("every recorded record decodes");
        match pipeline.apply(&event) {
            Applied::Transition {
                transition,
                handshake,
                ..
            } => {
                output::write_transition(&mut out, &transition, Format::Json, &style);
                if let Some(handshake) = handshake {
                    handshake_output::write_handshake(&mut out, &handshake, Format::Json, &style);
                }
            }
            Applied::Retrying(retrying) => {
                handshake_output::write_retrying(&mut out, &retrying, Format::Json, &style);
            }
            Applied::Noted => {}
        }
    }
    assert_eq!(
        pipeline.table().stats().inconsistent,
        0,
        "the recording is whole"
    );
    out
}

#[test]
fn a_recorded_loopback_session_replays_to_its_golden_output() {
    let bytes = fs::read(data("loopback.rec")).expect("tests/data/loopback.rec");
    let replayed = replay(&bytes);
    let golden_path = data("loopback.golden.jsonl");
    if env::var_os("SOCKTRACE_BLESS").is_some() {
        fs::write(&golden_path, &replayed).expect("writing the golden file");
    }
    let golden = fs::read_to_string(&golden_path).expect("tests/data/loopback.golden.jsonl");
    let (replayed, golden): (Vec<&str>, Vec<&str>) =
        (replayed.lines().collect(), golden.lines().collect());
    for (n, (got, want)) in replayed.iter().zip(&golden).enumerate() {
        assert_eq!(got, want, "line {} differs", n + 1);
    }
    assert_eq!(replayed.len(), golden.len(), "number of lines");
}
