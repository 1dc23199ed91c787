use super::*;
use crate::{
    kernel::lost::Lost,
    model::tuple::TEST_NETNS,
    state::live::{LiveMetrics, PortListeners},
    state::live_counts::LiveCounts,
    state::time_wait_summary::PortPressure,
    state::top_list::TopList,
};

fn snapshot() -> MetricsSnapshot {
    let mut counts = LiveCounts::default();
    counts.transitions[TcpState::SynSent.index()][TcpState::Established.index()] = 5;
    counts.client.outcomes[Outcome::Refused.index()] = 2;
    counts.client.retransmits = 3;
    counts.client.seconds.observe(0.0002);
    counts.client.seconds.observe(200.0);
    counts.time_wait_ends[TimeWaitEnd::Reused.index()] = 4;
    counts.count_peers(&["10.0.0.0/8".parse().unwrap()]);
    counts.peers[0].1[0].outcomes[Outcome::Timeout.index()] = 6;
    counts.count_namespaces();
    let mut refused = [[0; Outcome::ALL.len()]; 2];
    refused[0][Outcome::Refused.index()] = 2;
    counts.by_namespace = Some(BTreeMap::from([(TEST_NETNS, refused)]));
    let mut states = [0; TcpState::COUNT];
    states[TcpState::Established.index()] = 7;
    MetricsSnapshot {
        live: LiveMetrics {
            states,
            close_wait_oldest_ns: Some(1_500_000_000),
            counts,
            listen_overflows: Some(2),
            listen_drops: Some(3),
            time_wait_overflows: None,
            time_wait_buckets_used: Some(0.25),
            port_pressure: TopList::first_by(
                vec![pressure(TEST_NETNS, 100), pressure(TEST_NETNS + 1, 300)],
                5,
                |a, b| b.time_wait.cmp(&a.time_wait),
            ),
            states_by_namespace: Some(BTreeMap::from([(TEST_NETNS + 1, states)])),
            listeners: BTreeMap::from([(
                8080,
                PortListeners {
                    listeners: 2,
                    accept_queue: 9,
                    backlog: 128,
                    drops: 4,
                },
            )]),
        },
        lost: Lost {
            ring_full: 1,
            skipped: 0,
            skipped_signals: Some(0),
        },
        malformed_records: 0,
        usage: None,
        listing_ns: None,
        namespace_names: BTreeMap::from([(TEST_NETNS, "blue".to_owned())]),
    }
}

/// TIME-WAIT sockets from 10.0.0.5 to 192.0.2.7:443 in `netns`, against
/// 1,000 ephemeral ports.
fn pressure(netns: u32, time_wait: u64) -> PortPressure {
    PortPressure {
        netns,
        local: "10.0.0.5".parse().unwrap(),
        remote: "192.0.2.7:443".parse().unwrap(),
        time_wait,
        ephemeral_ports: 1000,
    }
}

fn has(body: &str, line: &str) -> bool {
    body.lines().any(|l| l == line)
}

#[test]
fn families_follow_prometheus_naming_with_typed_labels() {
    let body = encode(snapshot(), Format::Prometheus).unwrap();
    for line in [
        "# TYPE socktrace_sockets gauge",
        "socktrace_sockets{state=\"ESTABLISHED\"} 7",
        "socktrace_sockets{state=\"TIME_WAIT\"} 0",
        "# TYPE socktrace_transitions_total counter",
        "socktrace_transitions_total{from=\"SYN_SENT\",to=\"ESTABLISHED\"} 5",
        "socktrace_handshakes_total{side=\"client\",outcome=\"refused\"} 2",
        "socktrace_syn_retransmits_total 3",
        "socktrace_handshake_duration_seconds_bucket{side=\"client\",le=\"0.0005\"} 1",
        "socktrace_handshake_duration_seconds_bucket{side=\"client\",le=\"+Inf\"} 2",
        "socktrace_handshake_duration_seconds_count{side=\"client\"} 2",
        "socktrace_time_wait_ends_total{reason=\"reused\"} 4",
        "socktrace_close_wait_oldest_seconds 1.5",
        "socktrace_lost_events_total{cause=\"ring_full\"} 1",
        "socktrace_malformed_records_total 0",
        "socktrace_listen_overflows_total 2",
        "socktrace_listen_queue{port=\"8080\"} 9",
        "socktrace_namespace_handshakes_total{namespace=\"blue\",side=\"client\",outcome=\"refused\"} 2",
        "socktrace_namespace_sockets{namespace=\"4026531841\",state=\"ESTABLISHED\"} 7",
        "socktrace_listen_backlog{port=\"8080\"} 128",
        "socktrace_listener_drops_total{port=\"8080\"} 4",
        "socktrace_peer_handshakes_total{peer=\"10.0.0.0/8\",side=\"client\",outcome=\"timeout\"} 6",
        "socktrace_peer_retransmits_total{peer=\"10.0.0.0/8\",side=\"server\"} 0",
        "socktrace_listen_drops_total 3",
        "socktrace_time_wait_buckets_used_ratio 0.25",
        "socktrace_ephemeral_ports_used_ratio{source=\"10.0.0.5\",destination=\"192.0.2.7:443\"} 0.3",
    ] {
        assert!(has(&body, line), "no `{line}` in:\n{body}");
    }
    assert!(
        !body.contains("from=\"CLOSE\",to=\"CLOSE\""),
        "transitions that never happened are left out"
    );
    assert!(!body.contains("# EOF"));
    assert!(
        !body.contains("socktrace_agent_cpu"),
        "an unread /proc is no figure, not 0"
    );
    assert!(!body.contains("socktrace_time_wait_overflows"), "unread");
    assert_eq!(
        body.matches("socktrace_ephemeral_ports_used_ratio{")
            .count(),
        1,
        "one series for the same addresses in two namespaces"
    );
}

#[test]
fn openmetrics_when_asked_for() {
    assert_eq!(
        Format::accepted(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
        )),
        Format::OpenMetrics
    );
    assert_eq!(Format::accepted(Some("*/*")), Format::Prometheus);
    assert_eq!(Format::accepted(None), Format::Prometheus);
    let mut without_peers = snapshot();
    without_peers.live.counts.peers.clear();
    let body = encode(without_peers, Format::Prometheus).unwrap();
    assert!(
        !body.contains("socktrace_peer_"),
        "no family without a peer asked for"
    );
    let body = encode(snapshot(), Format::OpenMetrics).unwrap();
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(has(&body, "socktrace_syn_retransmits_total 3"), "{body}");
}
