//! The summary's port pressure, in both formats.
use super::*;
use crate::{
    output::test_style,
    time_wait::TimeWaitCounts,
    time_wait_summary::{Observed, PortPressure},
    tuple::TEST_NETNS,
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
        top_local_ports: Vec::new(),
        top_remotes: Vec::new(),
        top_owners: Vec::new(),
        top_containers: Vec::new(),
        port_pressure: vec![PortPressure {
            netns: TEST_NETNS,
            local: "10.0.0.1".parse().unwrap(),
            remote: "10.0.0.9:443".parse().unwrap(),
            time_wait: 20,
            ephemeral_ports: 100,
        }],
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
