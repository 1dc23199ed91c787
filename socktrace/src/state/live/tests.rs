//! The live state on event sequences as the kernel emits them (see the
//! handshake and TIME-WAIT trackers' tests), with dumps shaped like
//! sock_diag's.
use super::*;
use crate::{
    host::sock_diag::DiagTimer,
    kernel::event::{SocketSignal, StateEvent, SynAckRetransmit, TaskContext},
    model::owner::Comm,
    model::tuple::{TEST_NETNS, elsewhere},
    state::handshake_tracker::Outcome,
    state::table::{SeedKind, SeedSocket},
};

use TcpState::*;

const MS: u64 = 1_000_000;
const S: u64 = 1_000 * MS;

fn curl() -> Owner {
    Owner {
        pid: 4242,
        comm: Comm::from_text("curl"),
        container: None,
    }
}

fn tuple(local: &str, remote: &str) -> SocketTuple {
    SocketTuple {
        netns: TEST_NETNS,
        local: local.parse().unwrap(),
        remote: remote.parse().unwrap(),
    }
}

fn state(ts_ns: u64, skaddr: u64, tuple: SocketTuple, old: TcpState, new: TcpState) -> Event {
    Event::State(StateEvent {
        ts_ns,
        skaddr,
        tuple,
        old_state: old,
        new_state: new,
        task: curl(),
        context: TaskContext::Process,
        error: 0,
        soft_error: 0,
    })
}

fn diag(tuple: SocketTuple, state: TcpState, timer: DiagTimer, inode: u32) -> DiagSocket {
    DiagSocket {
        tuple,
        state,
        timer,
        inode,
        uid: 0,
        recv_queue: 0,
        send_queue: 0,
        drops: None,
        v6only: false,
    }
}

fn listing_time(at_ns: u64) -> ListingTime {
    ListingTime {
        began_ns: at_ns,
        ended_ns: at_ns + MS,
    }
}

fn everywhere(_: NetnsInode) -> bool {
    true
}

#[test]
fn a_connect_stuck_in_syn_sent_shows_its_age_retries_and_owner() {
    let mut live = LiveState::new(SocketTable::new());
    let stuck = tuple("10.0.0.1:40000", "192.0.2.7:443");
    // The kernel picks the local port after `CLOSE -> SYN_SENT`.
    let unbound = tuple("10.0.0.1:0", "192.0.2.7:443");
    live.event(&state(S, 0xa, unbound, Close, SynSent));
    for retry in 1..=2 {
        live.event(&Event::SynRetransmit(SocketSignal {
            ts_ns: S + retry * S,
            skaddr: 0xa,
            tuple: stuck,
        }));
    }
    let timer = DiagTimer::Retransmit {
        expires_ms: 1569,
        retransmits: 2,
    };
    let listed = live.listing(&[diag(stuck, SynSent, timer, 77)], 4 * S, &HashMap::new());
    assert_eq!(listed.len(), 1);
    let socket = &listed[0];
    assert_eq!(socket.state, SynSent);
    assert_eq!(socket.in_state_ns, Some(3 * S));
    assert_eq!(socket.retries, Some(2));
    assert_eq!(socket.owner, Some(curl()));
    assert_eq!(socket.timer, Some(timer));

    let overview = live.overview(4 * S, everywhere, 0);
    assert_eq!(overview.count(SynSent), 1);
    assert_eq!(overview.totals.new_connections, 1);
    assert_eq!(overview.top_opening_subnets[0].remote, "192.0.2.0/24");
    assert_eq!(overview.top_remotes[0].remote, "192.0.2.7");
}

#[test]
fn a_connect_listed_before_its_first_retransmit_is_known_by_its_addresses() {
    let mut live = LiveState::new(SocketTable::new());
    let unbound = tuple("[fd00::1]:0", "[fd00::7]:443");
    live.event(&state(S, 0xa, unbound, Close, SynSent));
    let stuck = tuple("[fd00::1]:40000", "[fd00::7]:443");
    let timer = DiagTimer::Retransmit {
        expires_ms: 800,
        retransmits: 0,
    };
    let listed = live.listing(
        &[diag(stuck, SynSent, timer, 77)],
        S + 200 * MS,
        &HashMap::new(),
    );
    assert_eq!(listed[0].in_state_ns, Some(200 * MS));
    assert_eq!(listed[0].owner, Some(curl()));
    assert_eq!(listed[0].retries, Some(0));

    // Another remote, or another namespace, is another connect.
    let elsewhere_remote = tuple("[fd00::1]:40001", "[fd00::8]:443");
    let other_netns = elsewhere(stuck);
    let listed = live.listing(
        &[
            diag(elsewhere_remote, SynSent, timer, 78),
            diag(other_netns, SynSent, timer, 79),
        ],
        2 * S,
        &HashMap::new(),
    );
    assert!(
        listed
            .iter()
            .all(|s| s.in_state_ns.is_none() && s.owner.is_none())
    );
}

#[test]
fn connects_between_the_same_addresses_are_told_apart_by_owner_or_not_at_all() {
    let mut live = LiveState::new(SocketTable::new());
    let unbound = tuple("10.0.0.1:0", "192.0.2.7:443");
    live.event(&state(S, 0xa, unbound, Close, SynSent));
    let mut by_wget = state(2 * S, 0xb, unbound, Close, SynSent);
    let wget = Owner {
        pid: 77,
        comm: Comm::from_text("wget"),
        container: None,
    };
    if let Event::State(event) = &mut by_wget {
        event.task = wget.clone();
    }
    live.event(&by_wget);
    let timer = DiagTimer::Retransmit {
        expires_ms: 800,
        retransmits: 0,
    };
    let first = tuple("10.0.0.1:40000", "192.0.2.7:443");
    let second = tuple("10.0.0.1:40001", "192.0.2.7:443");
    let dumped = [
        diag(first, SynSent, timer, 70),
        diag(second, SynSent, timer, 71),
    ];
    let owners = HashMap::from([(70, wget.clone()), (71, curl())]);
    let listed = live.listing(&dumped, 3 * S, &owners);
    assert_eq!(listed[0].in_state_ns, Some(S));
    assert_eq!(listed[0].owner, Some(wget));
    assert_eq!(listed[1].in_state_ns, Some(2 * S));
    assert_eq!(listed[1].owner, Some(curl()));

    // Without /proc's owners, neither can be told apart from the other.
    let listed = live.listing(&dumped, 3 * S, &HashMap::new());
    assert!(listed.iter().all(|s| s.in_state_ns.is_none()));
}

#[test]
fn a_close_into_time_wait_is_counted_when_listed_and_listed_with_its_age() {
    let mut live = LiveState::new(SocketTable::new());
    let client = tuple("127.0.0.1:45807", "127.0.0.1:8080");
    live.event(&state(S, 0xc, client, Close, SynSent));
    live.event(&state(S + MS, 0xc, client, SynSent, Established));
    live.event(&state(2 * S, 0xc, client, Established, FinWait1));
    live.event(&state(2 * S + MS, 0xc, client, FinWait1, FinWait2));
    live.event(&state(2 * S + 2 * MS, 0xc, client, FinWait2, Close));
    assert_eq!(
        live.overview(3 * S, everywhere, 0).totals.time_wait_entries,
        0
    );

    let time_wait = diag(
        client,
        TimeWait,
        DiagTimer::TimeWait { expires_ms: 59_000 },
        0,
    );
    live.reconcile(
        TEST_NETNS,
        std::slice::from_ref(&time_wait),
        listing_time(3 * S),
    );
    let overview = live.overview(3 * S, everywhere, 5);
    assert_eq!(overview.totals.time_wait_entries, 1);
    assert_eq!(overview.totals.lost_events, 5);
    assert_eq!(overview.count(TimeWait), 1);
    assert_eq!(overview.count(Established), 0);

    let listed = live.listing(&[time_wait], 12 * S, &HashMap::new());
    assert_eq!(listed[0].in_state_ns, Some(10 * S - 2 * MS));
    assert_eq!(listed[0].owner, Some(curl()));
    assert_eq!(listed[0].retries, None);
}

#[test]
fn a_half_open_connection_is_listed_and_its_expiry_is_a_failure() {
    let mut table = SocketTable::new();
    let listener = tuple("10.0.0.1:8080", "0.0.0.0:0");
    table.seed(
        [SeedSocket {
            tuple: listener,
            state: Listen,
            kind: SeedKind::Full,
            owner: Some(curl()),
        }],
        0,
    );
    let mut live = LiveState::new(table);
    let half_open = tuple("10.0.0.1:8080", "198.51.100.9:50000");
    live.event(&Event::SynAckRetransmit(SynAckRetransmit {
        ts_ns: 2 * S,
        listener: 0x1,
        tuple: half_open,
        first_synack_ns: Some(S),
    }));
    let request = diag(
        half_open,
        SynRecv,
        DiagTimer::Retransmit {
            expires_ms: 2000,
            retransmits: 1,
        },
        0,
    );
    live.reconcile(
        TEST_NETNS,
        std::slice::from_ref(&request),
        listing_time(2 * S + MS),
    );
    assert_eq!(live.overview(3 * S, everywhere, 0).count(SynRecv), 1);
    let listed = live.listing(&[request], 3 * S, &HashMap::new());
    assert_eq!(listed[0].retries, Some(1));
    assert_eq!(listed[0].in_state_ns, Some(2 * S));
    assert_eq!(listed[0].owner, Some(curl()), "the listener's owner");

    live.reconcile(TEST_NETNS, &[], listing_time(10 * S));
    let overview = live.overview(10 * S, everywhere, 0);
    assert_eq!(overview.totals.handshake_failures, 1);
    assert_eq!(overview.count(SynRecv), 0);
}

#[test]
fn owners_the_tracer_never_saw_come_from_proc_and_unknown_ages_stay_unknown() {
    let established = tuple("10.0.0.1:22", "192.0.2.50:51000");
    let mut table = SocketTable::new();
    table.seed(
        [SeedSocket {
            tuple: established,
            state: Established,
            kind: SeedKind::Full,
            owner: None,
        }],
        0,
    );
    let live = LiveState::new(table);
    let sshd = Owner {
        pid: 1,
        comm: Comm::from_text("sshd"),
        container: None,
    };
    let owners = HashMap::from([(99, sshd.clone())]);
    let listed = live.listing(
        &[diag(established, Established, DiagTimer::Off, 99)],
        S,
        &owners,
    );
    assert_eq!(listed[0].owner, Some(sshd));
    assert_eq!(
        listed[0].in_state_ns, None,
        "seeded: its entry was not seen"
    );
}

#[test]
fn remotes_and_subnets_are_ranked_by_connections_held_in_the_selected_namespaces() {
    let mut live = LiveState::new(SocketTable::new());
    let mut skaddr = 0x100;
    let mut connect = |live: &mut LiveState, local_port: u16, remote: &str, netns_elsewhere| {
        skaddr += 1;
        let mut t = tuple(&format!("10.0.0.1:{local_port}"), remote);
        if netns_elsewhere {
            t = elsewhere(t);
        }
        live.event(&state(S, skaddr, t, Close, SynSent));
        live.event(&state(S + MS, skaddr, t, SynSent, Established));
    };
    for port in 40000..40003 {
        connect(&mut live, port, "192.0.2.7:443", false);
    }
    connect(&mut live, 40010, "192.0.2.8:443", false);
    connect(&mut live, 40011, "[2001:db8::1]:443", false);
    connect(&mut live, 40020, "203.0.113.1:443", true);

    let overview = live.overview(2 * S, |netns| netns == TEST_NETNS, 0);
    assert_eq!(overview.count(Established), 5);
    let remotes: Vec<(&str, u64)> = overview
        .top_remotes
        .iter()
        .map(|r| (r.remote.as_str(), r.count))
        .collect();
    assert_eq!(
        remotes,
        [("192.0.2.7", 3), ("192.0.2.8", 1), ("2001:db8::1", 1)]
    );
    assert_eq!(overview.top_subnets[0].remote, "192.0.2.0/24");
    assert_eq!(overview.top_subnets[0].count, 4);
    assert_eq!(overview.top_subnets[1].remote, "2001:db8::/64");
    assert_eq!(overview.window_secs, WINDOW_SECS);

    assert_eq!(live.overview(2 * S, everywhere, 0).count(Established), 6);
    live.tear_down(TEST_NETNS, 3 * S);
    assert_eq!(live.overview(3 * S, everywhere, 0).count(Established), 1);
}

#[test]
fn retries_of_an_attempt_older_than_the_tracer_come_from_the_kernel() {
    let live = LiveState::new(SocketTable::new());
    let stuck = tuple("10.0.0.1:40001", "192.0.2.7:443");
    let timer = DiagTimer::Retransmit {
        expires_ms: 16_000,
        retransmits: 4,
    };
    let listed = live.listing(&[diag(stuck, SynSent, timer, 78)], S, &HashMap::new());
    assert_eq!(listed[0].retries, Some(4));
    assert_eq!(listed[0].in_state_ns, None);
    let established = live.listing(
        &[diag(stuck, Established, DiagTimer::Off, 78)],
        S,
        &HashMap::new(),
    );
    assert_eq!(established[0].retries, None, "only handshakes in progress");
}

#[test]
fn the_metrics_count_transitions_retransmits_outcomes_and_the_oldest_close_wait() {
    let mut live = LiveState::new(SocketTable::new());
    let connect = tuple("10.0.0.1:40000", "192.0.2.7:443");
    live.event(&state(
        S,
        0xa,
        tuple("10.0.0.1:0", "192.0.2.7:443"),
        Close,
        SynSent,
    ));
    live.event(&Event::SynRetransmit(SocketSignal {
        ts_ns: 2 * S,
        skaddr: 0xa,
        tuple: connect,
    }));
    live.event(&state(3 * S, 0xa, connect, SynSent, Established));
    let served = tuple("10.0.0.1:8080", "192.0.2.9:50000");
    live.event(&state(S, 0xb, served, Established, CloseWait));

    let metrics = live.metrics(11 * S);
    let counts = &metrics.counts;
    assert_eq!(counts.transitions[SynSent.index()][Established.index()], 1);
    assert_eq!(counts.client.retransmits, 1);
    assert_eq!(
        counts.client.outcomes[Outcome::Established.index()],
        1,
        "{counts:?}"
    );
    assert_eq!(counts.client.seconds.count, 1);
    assert_eq!(metrics.states[Established.index()], 1);
    assert_eq!(metrics.states[CloseWait.index()], 1);
    assert_eq!(metrics.close_wait_oldest_ns, Some(10 * S));
}
