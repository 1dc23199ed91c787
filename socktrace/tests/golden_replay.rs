//! Golden replay: a recording of real kernel records (`socktrace trace
//! --record`, see `tests/data/README.md`) fed through decoding, the socket
//! table and the handshake tracker exactly as `socktrace trace --json` and
//! `socktrace handshakes --json` feed them, compared line by line with the
//! output they printed. Any change in how records are decoded, how the
//! table names sockets and owners, or how handshakes end shows up here.
//!
//! After an intended change: `SOCKTRACE_BLESS=1 cargo test --test
//! golden_replay`, and review the diff of the golden file.
use std::{env, fs, path::PathBuf};

use socktrace::{
    clock::WallClock,
    event::Event,
    handshake::HandshakeTracker,
    handshake_output,
    output::{self, Format, Style},
    recording,
    table::SocketTable,
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
    let mut table = SocketTable::new();
    let mut handshakes = HandshakeTracker::new();
    let mut out = String::new();
    for raw in recording::records(bytes).expect("a socktrace recording") {
        let event = Event::try_from(raw).expect("every recorded record decodes");
        match event {
            Event::State(event) => {
                let transition = table.apply(&event);
                output::write_transition(&mut out, &transition, Format::Json, &style);
                if let Some(handshake) = handshakes.on_transition(&event, &transition) {
                    handshake_output::write_handshake(&mut out, &handshake, Format::Json, &style);
                }
            }
            Event::SynRetransmit(signal) => {
                let owner = table.by_skaddr(signal.skaddr).and_then(|s| s.owner);
                let retrying = handshakes.on_syn_retransmit(&signal, owner);
                handshake_output::write_retrying(&mut out, &retrying, Format::Json, &style);
            }
            Event::SynAckRetransmit(synack) => {
                let owner = table.listener_owner(synack.tuple.netns, &synack.tuple.local);
                let retrying = handshakes.on_synack_retransmit(&synack, owner);
                handshake_output::write_retrying(&mut out, &retrying, Format::Json, &style);
            }
            Event::ResetReceived(signal) => handshakes.on_reset(&signal),
        }
    }
    assert_eq!(table.stats().inconsistent, 0, "the recording is whole");
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
