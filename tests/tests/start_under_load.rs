//! A tracer started while connections come and go reports no gap that
//! starting under load made. The programs attach before the start listing,
//! so the ring holds transitions from before the listing ended, whose
//! sockets the listing already shows in a later state: those transitions
//! name the listed sockets instead of counting them as first seen mid-life.
//!
//! Some kernels do not report every transition (README, "Transitions the
//! kernel does not report"): such a gap is real, and a second tracer,
//! running since before the churn began, sees it too. A gap beyond the
//! events lost and beyond the witness's own gaps is one the start made.
use std::io::{BufRead, BufReader, Read};
use std::thread;
use std::time::Duration;

use serde_json::Value;
use socktrace_integration_tests::{Agent, NetNs, churn::Churn};

/// Starts of the tracer, each under the churn.
const STARTS: usize = 5;
/// Connections each start watches before it stops.
const CONNECTIONS: u64 = 2_000;
/// The most the churn may take to make them.
const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn a_trace_started_under_churn_reports_no_gap_the_start_made() {
    let ns = NetNs::new().unwrap();
    let (witness, witness_stdout) = Agent::start_unread(&ns, &[]).unwrap();
    let witness_summary = thread::spawn(move || last_summary(witness_stdout));
    let mut excess = 0;
    let mut starts = Vec::new();
    for start in 0..STARTS {
        let churn = Churn::start(&ns, 8, 5_000).unwrap();
        churn.wait_for(200, TIMEOUT).unwrap();
        let agent = Agent::start(&ns, &[]).unwrap();
        churn
            .wait_for(churn.connections() + CONNECTIONS, TIMEOUT)
            .unwrap();
        // The agent's last transitions printed without a churn to keep up
        // with.
        drop(churn);
        let records = agent.stop_with_records().unwrap();
        let summary = records
            .iter()
            .find(|r| r["type"] == "summary")
            .cloned()
            .unwrap_or_else(|| panic!("start {start}: no summary record"));
        let (missed, lost) = gaps_and_losses(&summary);
        eprintln!("start {start}: {missed} transitions missed, {lost} events lost");
        excess += missed.saturating_sub(lost);
        starts.push(summary);
    }
    witness.stop().unwrap();
    let witness_summary = witness_summary
        .join()
        .unwrap()
        .expect("the witness printed no summary record");
    let (witness_missed, witness_lost) = gaps_and_losses(&witness_summary);
    eprintln!(
        "witness: {witness_missed} transitions missed, {witness_lost} events lost; the starts' \
         gaps beyond their losses: {excess}"
    );
    assert!(
        excess <= witness_missed + witness_lost,
        "gaps beyond the events lost that the witness did not have: {starts:#?}\nwitness: \
         {witness_summary}"
    );
}

/// `transitions_missed` and `lost_events` of a summary record.
fn gaps_and_losses(summary: &Value) -> (u64, u64) {
    let count = |field: &str| summary[field].as_u64().unwrap_or_else(|| panic!("{field}"));
    (count("transitions_missed"), count("lost_events"))
}

/// Reads a `trace --json` output to its end; its summary record.
fn last_summary(stdout: impl Read) -> Option<Value> {
    let mut summary = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("reading the witness's stdout");
        // Parse only the summary: the witness prints every transition.
        if line.contains(r#""type":"summary""#) {
            summary = Some(serde_json::from_str(&line).expect("a JSON summary"));
        }
    }
    summary
}
