//! The summary's port pressure, in both formats.
use super::*;
use crate::{
    model::tuple::TEST_NETNS,
    render::output::test_style,
    state::time_wait_summary::{Observed, PortPressure},
    state::time_wait_tracker::TimeWaitCounts,
};

fn report_with_pressure() -> TimeWaitReport {
    TimeWaitReport {
        interval_ns: 1_000_000_000,
        counts: TimeWaitCounts::default(),
        entered: 0,
        ended: 0,
        ends: [0; TimeWaitEnd::ALL.len()],
        lifetime_p50_ms: None,
        lifetime_p99_ms: None,
        lifetime_max_ms: None,
        top_local_ports: TopList::default(),
        top_remotes: TopList::default(),
        top_owners: TopList::default(),
        top_containers: TopList::default(),
        port_pressure: TopList {
            rows: vec![PortPressure {
                netns: TEST_NETNS,
                local: "10.0.0.1".parse().unwrap(),
                remote: "10.0.0.9:443".parse().unwrap(),
                time_wait: 20,
                ephemeral_ports: 100,
            }],
            omitted: 0,
        },
        observed: Observed::default(),
    }
}

fn pressure_line(style: &Style) -> String {
    let mut out = String::new();
    write_summary(&mut out, &report_with_pressure(), Format::Human, style, 0);
    out.lines()
        .find(|line| line.contains("ephemeral ports held"))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn the_pressure_names_its_namespace_when_several_are_in_play() {
    assert_eq!(
        pressure_line(&test_style(false)),
        "ephemeral ports held: 10.0.0.1 -> 10.0.0.9:443 20/100 (20.0%)"
    );
    assert_eq!(
        pressure_line(&test_style(true)),
        format!("ephemeral ports held: netns {TEST_NETNS} 10.0.0.1 -> 10.0.0.9:443 20/100 (20.0%)")
    );
}

#[test]
fn json_rows_carry_the_namespace() {
    let mut out = String::new();
    write_summary(
        &mut out,
        &report_with_pressure(),
        Format::Json,
        &test_style(false),
        0,
    );
    let value: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
    let row = &value["port_pressure"][0];
    assert_eq!(row["netns"], TEST_NETNS);
    assert_eq!(row["ephemeral_ports"], 100);
    assert_eq!(row["ratio"], 0.2);
}

#[test]
fn every_list_says_how_many_rows_it_left_out() {
    let mut report = report_with_pressure();
    report.port_pressure.omitted = 12_345;
    report.top_remotes = TopList {
        rows: vec![("10.0.0.9:443".parse().unwrap(), 7)],
        omitted: 99,
    };
    let mut out = String::new();
    write_summary(&mut out, &report, Format::Human, &test_style(false), 0);
    assert!(
        out.contains("  by remote: 10.0.0.9:443 7, and 99 more\n"),
        "{out}"
    );
    assert!(out.contains("(20.0%), and 12345 more\n"), "{out}");
    assert!(out.contains("  by process: -\n"), "{out}");
    let mut out = String::new();
    write_summary(&mut out, &report, Format::Json, &test_style(false), 0);
    let value: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
    assert_eq!(value["top_remotes_omitted"], 99);
    assert_eq!(value["port_pressure_omitted"], 12_345);
    assert_eq!(value["top_processes_omitted"], 0);
}
