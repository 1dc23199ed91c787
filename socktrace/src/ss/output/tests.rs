use super::*;
use crate::{
    model::owner::{Comm, ContainerLabel, Owner},
    model::tuple::TEST_NETNS,
};

fn socket(state: TcpState, local: &str, remote: &str) -> ListedSocket {
    ListedSocket {
        netns: TEST_NETNS,
        state,
        local: local.parse().unwrap(),
        remote: remote.parse().unwrap(),
        v6only: false,
        recv_queue: Some(0),
        send_queue: Some(0),
        timer: Some(DiagTimer::Off),
        owner: None,
        in_state_ns: None,
        retries: None,
    }
}

fn sample() -> Vec<ListedSocket> {
    let mut listener = socket(TcpState::Listen, "127.0.0.1:8080", "0.0.0.0:0");
    listener.send_queue = Some(128);
    listener.owner = Some(Owner {
        pid: 20488,
        comm: Comm::from_text("python3"),
        container: Some(ContainerLabel::new("systemd:demo.service")),
    });
    let mut stuck = socket(TcpState::SynSent, "10.0.0.1:40000", "192.0.2.7:443");
    stuck.timer = Some(DiagTimer::Retransmit {
        expires_ms: 1569,
        retransmits: 1,
    });
    stuck.in_state_ns = Some(3_200_000_000);
    stuck.retries = Some(1);
    let mut time_wait = socket(TcpState::TimeWait, "[::1]:8081", "[::1]:39252");
    time_wait.timer = Some(DiagTimer::TimeWait { expires_ms: 59_000 });
    time_wait.in_state_ns = Some(1_000_000_000);
    vec![
        listener,
        socket(TcpState::Listen, "[::]:8081", "[::]:0"),
        stuck,
        time_wait,
    ]
}

fn label(netns: NetnsInode) -> String {
    format!("ns{netns}")
}

#[test]
fn addresses_are_printed_like_ss() {
    let shown = |text: &str, v6only: bool| endpoint(text.parse().unwrap(), !v6only);
    assert_eq!(shown("127.0.0.1:8080", false), "127.0.0.1:8080");
    assert_eq!(shown("0.0.0.0:0", false), "0.0.0.0:*");
    assert_eq!(shown("[::]:8081", false), "*:8081");
    assert_eq!(shown("[::]:0", false), "*:*");
    assert_eq!(shown("[::]:0", true), "[::]:*");
    assert_eq!(shown("[::1]:8081", true), "[::1]:8081");
    assert_eq!(
        shown("[::ffff:127.0.0.1]:8081", false),
        "[::ffff:127.0.0.1]:8081"
    );
}

#[test]
fn timers_are_printed_like_ss_dash_o() {
    let on = DiagTimer::Retransmit {
        expires_ms: 1569,
        retransmits: 1,
    };
    assert_eq!(timer(on).unwrap(), "timer:(on,1.569ms,1)");
    let tw = DiagTimer::TimeWait { expires_ms: 59_000 };
    assert_eq!(timer(tw).unwrap(), "timer:(timewait,59sec,0)");
    let keepalive = DiagTimer::KeepAlive {
        expires_ms: 7_140_000,
    };
    assert_eq!(timer(keepalive).unwrap(), "timer:(keepalive,119min,0)");
    assert_eq!(ms_timer(200), "200ms");
    assert_eq!(ms_timer(63_500), "1min3sec");
    assert_eq!(ms_timer(12_345), "12sec");
    assert_eq!(timer(DiagTimer::Off), None);
}

#[test]
fn the_table_has_ss_columns_then_socktrace_ones() {
    let columns = Shown {
        state: true,
        processes: true,
        timers: true,
        ..Shown::default()
    };
    let text = table(&sample(), columns, label);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5);
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "State",
            "Recv-Q",
            "Send-Q",
            "Local",
            "Address:Port",
            "Peer",
            "Address:Port",
            "In-State",
            "Retries",
            "Process"
        ]
    );
    let listener: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        listener,
        [
            "LISTEN",
            "0",
            "128",
            "127.0.0.1:8080",
            "0.0.0.0:*",
            "-",
            "-",
            "users:((\"python3\",pid=20488))",
            "container:systemd:demo.service"
        ]
    );
    let stuck: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(
        stuck,
        [
            "SYN-SENT",
            "0",
            "0",
            "10.0.0.1:40000",
            "192.0.2.7:443",
            "3.2s",
            "1",
            "timer:(on,1.569ms,1)"
        ]
    );
    // Local addresses are right-aligned, as ss does.
    let end_of_local = lines[1].find("8080").unwrap() + 4;
    assert_eq!(lines[2].find("8081").unwrap() + 4, end_of_local);
}

#[test]
fn one_state_leaves_the_state_column_out_and_several_namespaces_add_one() {
    let columns = Shown {
        state: false,
        netns: true,
        no_header: true,
        ..Shown::default()
    };
    let text = table(&sample()[..1], columns, label);
    let cells: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(cells[0], format!("ns{TEST_NETNS}"));
    assert_eq!(cells[1], "0", "Recv-Q right after NETNS");
    assert!(!text.contains("Process"));
}

#[test]
fn the_summary_counts_states_per_family() {
    let text = summary(&sample());
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["State", "Total", "IPv4", "IPv6"]);
    assert!(rows.contains(&vec!["LISTEN", "2", "1", "1"]));
    assert!(rows.contains(&vec!["SYN-SENT", "1", "1", "0"]));
    assert_eq!(rows[rows.len() - 2], ["Total", "4", "2", "2"]);
    let json: serde_json::Value = serde_json::from_str(&summary_json(&sample())).unwrap();
    assert_eq!(json["total"], 4);
    assert_eq!(json["states"]["TIME_WAIT"]["ipv6"], 1);
}

#[test]
fn the_summary_gives_the_figures_of_ss_dash_s() {
    let mut sockets = sample();
    sockets.push(socket(TcpState::Established, "10.0.0.1:1", "10.0.0.2:2"));
    sockets.push(socket(TcpState::CloseWait, "[::1]:3", "[::1]:4"));
    let mut orphan = socket(TcpState::FinWait2, "[::1]:5", "[::1]:6");
    orphan.timer = Some(DiagTimer::TimeWait { expires_ms: 100 });
    sockets.push(orphan);
    sockets.push(socket(TcpState::FinWait2, "10.0.0.1:7", "10.0.0.2:8"));
    sockets.push(socket(TcpState::SynRecv, "10.0.0.1:80", "10.0.0.2:9"));
    // Listeners 1+1, SYN-SENT 1, ESTAB 1, CLOSE-WAIT 1, FIN-WAIT-2 1: hashed;
    // the TIME-WAIT, the orphan and the request socket are not.
    assert_eq!(
        summary(&sockets).lines().last().unwrap(),
        "As ss -s counts them: estab 2, timewait 2, TCP 6 (IP 4, IPv6 2)"
    );
    let json: serde_json::Value = serde_json::from_str(&summary_json(&sockets)).unwrap();
    assert_eq!(json["estab"], 2);
    assert_eq!(json["timewait"], 2);
    assert_eq!(
        json["tcp"],
        serde_json::json!({"total": 6, "ipv4": 4, "ipv6": 2})
    );
}

#[test]
fn json_has_one_object_per_socket_with_the_tracer_fields() {
    let text = json(&sample());
    let objects: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 4);
    let stuck = &objects[2];
    assert_eq!(stuck["state"], "SYN_SENT");
    assert_eq!(stuck["daddr"], "192.0.2.7");
    assert_eq!(stuck["dport"], 443);
    assert_eq!(stuck["netns"], TEST_NETNS);
    assert_eq!(stuck["timer"]["kind"], "on");
    assert_eq!(stuck["timer"]["count"], 1);
    assert_eq!(stuck["in_state_ms"], 3200);
    assert_eq!(stuck["retries"], 1);
    assert_eq!(objects[0]["comm"], "python3");
    assert_eq!(objects[0]["container"], "systemd:demo.service");
    assert!(objects[1]["container"].is_null(), "no owner, no container");
    assert!(objects[1]["timer"].is_null());
}

#[test]
fn durations_are_short_and_readable() {
    assert_eq!(duration(850_000_000), "850ms");
    assert_eq!(duration(12_345_000_000), "12.3s");
    assert_eq!(duration(245_000_000_000), "4m05s");
    assert_eq!(duration(11_520_000_000_000), "3h12m");
}
