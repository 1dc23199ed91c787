//! The table on recorded transition sequences, as the kernel emits them
//! (see PLATFORM.md): client, server, active and passive close, sockets first
//! seen mid-life, seeded sockets, and `struct sock` address reuse.
use super::*;
use crate::{model::owner::Comm, model::tuple::elsewhere};

use TcpState::*;

const CLIENT_SK: u64 = 0xffff_0000_0000_1000;
const SERVER_SK: u64 = 0xffff_0000_0000_2000;
const LISTEN_SK: u64 = 0xffff_0000_0000_3000;

fn task(pid: u32, comm: &str) -> Owner {
    Owner {
        pid,
        comm: Comm::from_text(comm),
        container: None,
    }
}

fn tuple(local: &str, remote: &str) -> SocketTuple {
    SocketTuple {
        netns: crate::model::tuple::TEST_NETNS,
        local: local.parse().unwrap(),
        remote: remote.parse().unwrap(),
    }
}

struct Ev {
    ts_ns: u64,
    skaddr: u64,
    tuple: SocketTuple,
    old: TcpState,
    new: TcpState,
    task: Owner,
    context: TaskContext,
}

fn ev(ts_ns: u64, skaddr: u64, tuple: SocketTuple, old: TcpState, new: TcpState) -> Ev {
    Ev {
        ts_ns,
        skaddr,
        tuple,
        old,
        new,
        task: task(100, "client"),
        context: TaskContext::Process,
    }
}

impl Ev {
    fn softirq(mut self, interrupted: Owner) -> Self {
        self.task = interrupted;
        self.context = TaskContext::Softirq;
        self
    }

    fn by(mut self, owner: Owner) -> Self {
        self.task = owner;
        self
    }

    fn event(&self) -> StateEvent {
        StateEvent {
            error: 0,
            soft_error: 0,
            ts_ns: self.ts_ns,
            skaddr: self.skaddr,
            tuple: self.tuple,
            old_state: self.old,
            new_state: self.new,
            task: self.task.clone(),
            context: self.context,
        }
    }
}

fn replay(table: &mut SocketTable, events: &[Ev]) -> Vec<Transition> {
    events.iter().map(|e| table.apply(&e.event())).collect()
}

/// A full socket as the start listing shows it.
fn listed(tuple: SocketTuple, state: TcpState, owner: Option<Owner>) -> SeedSocket {
    SeedSocket {
        tuple,
        state,
        kind: SeedKind::Full,
        owner,
    }
}

const MS: u64 = 1_000_000;

#[test]
fn client_active_open_and_active_close() {
    let unbound = tuple("10.0.0.1:0", "10.0.0.2:443");
    let bound = tuple("10.0.0.1:40000", "10.0.0.2:443");
    let stranger = task(999, "swapper/0");
    let mut table = SocketTable::new();
    let out = replay(
        &mut table,
        &[
            ev(0, CLIENT_SK, unbound, Close, SynSent),
            ev(3 * MS, CLIENT_SK, bound, SynSent, Established).softirq(stranger.clone()),
            ev(100 * MS, CLIENT_SK, bound, Established, FinWait1),
            ev(101 * MS, CLIENT_SK, bound, FinWait1, FinWait2).softirq(stranger.clone()),
            ev(102 * MS, CLIENT_SK, bound, FinWait2, Close).softirq(stranger.clone()),
        ],
    );
    let ids: Vec<_> = out.iter().map(|t| t.id).collect();
    assert!(ids.iter().all(|&id| id == ids[0]), "one socket: {ids:?}");
    assert_eq!(
        out[0].old_state_ns, None,
        "CLOSE before connect is not timed"
    );
    assert_eq!(out[1].old_state_ns, Some(3 * MS), "handshake time");
    assert_eq!(out[2].old_state_ns, Some(97 * MS));
    assert_eq!(
        out[1].tuple, bound,
        "port known from SYN_SENT->ESTABLISHED on"
    );
    for t in &out {
        assert_eq!(t.owner, Some(task(100, "client")), "softirq never owns");
    }
    let ended = out[4].ended.as_ref().expect("CLOSE ends the socket");
    assert_eq!(ended.lifetime_ns, Some(102 * MS));
    assert_eq!(ended.time_in_state_ns[SynSent.index()], 3 * MS);
    assert_eq!(ended.time_in_state_ns[Established.index()], 97 * MS);
    assert_eq!(ended.time_in_state_ns[FinWait2.index()], MS);
    assert!(table.is_empty());
    assert_eq!(table.stats(), TableStats::default());
}

#[test]
fn server_socket_inherits_its_listeners_owner_and_closes_passively() {
    let server = task(200, "nginx");
    let stranger = task(7, "ksoftirqd/1");
    let listening = tuple("0.0.0.0:8080", "0.0.0.0:0");
    let child = tuple("10.0.0.2:8080", "10.0.0.1:40000");
    let mut table = SocketTable::new();
    let out = replay(
        &mut table,
        &[
            ev(0, LISTEN_SK, listening, Close, Listen).by(server.clone()),
            ev(10 * MS, SERVER_SK, child, Listen, SynRecv).softirq(stranger.clone()),
            ev(11 * MS, SERVER_SK, child, SynRecv, Established).softirq(stranger.clone()),
            ev(50 * MS, SERVER_SK, child, Established, CloseWait).softirq(stranger.clone()),
            ev(60 * MS, SERVER_SK, child, CloseWait, LastAck).by(server.clone()),
            ev(61 * MS, SERVER_SK, child, LastAck, Close).softirq(stranger.clone()),
        ],
    );
    let listener_id = out[0].id;
    assert!(out[1..].iter().all(|t| t.id != listener_id));
    for t in &out[1..] {
        assert_eq!(
            t.owner,
            Some(server.clone()),
            "{:?}->{:?}",
            t.old_state,
            t.new_state
        );
    }
    assert_eq!(
        out[1].old_state_ns, None,
        "a child was never in LISTEN itself"
    );
    assert_eq!(out[2].old_state_ns, Some(MS));
    assert_eq!(out[5].ended.as_ref().unwrap().lifetime_ns, Some(51 * MS));
    assert_eq!(table.len(), 1, "the listener stays");
}

#[test]
fn children_prefer_the_listener_bound_to_their_address() {
    let wildcard_owner = task(1, "any");
    let exact_owner = task(2, "exact");
    let v6_owner = task(3, "v6");
    let mut table = SocketTable::new();
    replay(
        &mut table,
        &[
            ev(0, 1, tuple("0.0.0.0:80", "0.0.0.0:0"), Close, Listen).by(wildcard_owner.clone()),
            ev(0, 2, tuple("10.0.0.2:80", "0.0.0.0:0"), Close, Listen).by(exact_owner.clone()),
            ev(0, 3, tuple("[::]:80", "[::]:0"), Close, Listen).by(v6_owner.clone()),
        ],
    );
    let child = |sk, local: &str, remote: &str| ev(1, sk, tuple(local, remote), Listen, SynRecv);
    let out = replay(
        &mut table,
        &[
            child(10, "10.0.0.2:80", "10.0.0.9:5000").softirq(task(0, "swapper")),
            child(11, "10.0.0.3:80", "10.0.0.9:5001").softirq(task(0, "swapper")),
            child(12, "[2001:db8::1]:80", "[2001:db8::9]:5002").softirq(task(0, "swapper")),
            child(13, "10.0.0.2:81", "10.0.0.9:5003").softirq(task(0, "swapper")),
        ],
    );
    assert_eq!(out[0].owner, Some(exact_owner));
    assert_eq!(out[1].owner, Some(wildcard_owner));
    assert_eq!(out[2].owner, Some(v6_owner));
    assert_eq!(out[3].owner, None, "no listener on that port");
}

#[test]
fn a_closed_listener_no_longer_lends_its_owner() {
    let mut table = SocketTable::new();
    let listening = tuple("0.0.0.0:80", "0.0.0.0:0");
    replay(
        &mut table,
        &[
            ev(0, LISTEN_SK, listening, Close, Listen).by(task(1, "old")),
            ev(1, LISTEN_SK, listening, Listen, Close).by(task(1, "old")),
        ],
    );
    let out = table.apply(
        &ev(
            2,
            SERVER_SK,
            tuple("10.0.0.2:80", "10.0.0.1:9"),
            Listen,
            SynRecv,
        )
        .softirq(task(0, "swapper"))
        .event(),
    );
    assert_eq!(out.owner, None);
    assert_eq!(table.len(), 1, "only the new child: the listener is gone");
}

#[test]
fn a_socket_first_seen_mid_life_is_tracked_without_guessing() {
    let mut table = SocketTable::new();
    let t = tuple("10.0.0.1:5000", "10.0.0.2:22");
    let out = replay(
        &mut table,
        &[
            ev(5 * MS, CLIENT_SK, t, Established, FinWait1).by(task(300, "ssh")),
            ev(6 * MS, CLIENT_SK, t, FinWait1, FinWait2).softirq(task(0, "swapper")),
        ],
    );
    assert_eq!(out[0].old_state_ns, None, "time in ESTABLISHED unknown");
    assert_eq!(out[1].old_state_ns, Some(MS));
    assert_eq!(out[1].owner, Some(task(300, "ssh")));
    assert_eq!(table.stats().mid_life, 1);
    let socket = table.sockets().next().unwrap();
    assert_eq!(socket.origin, Origin::MidLife);
    assert_eq!(socket.born_ns, None);
}

#[test]
fn a_mid_life_socket_in_softirq_stays_ownerless() {
    let mut table = SocketTable::new();
    let t = tuple("10.0.0.2:80", "10.0.0.1:5000");
    let out = table.apply(
        &ev(0, SERVER_SK, t, Established, CloseWait)
            .softirq(task(55, "cc1"))
            .event(),
    );
    assert_eq!(out.owner, None, "the interrupted task is not the owner");
}

#[test]
fn seeded_sockets_are_adopted_by_their_first_transition() {
    let owner = task(400, "postgres");
    let established = tuple("10.0.0.2:5432", "10.0.0.1:6000");
    let listening = tuple("0.0.0.0:5432", "0.0.0.0:0");
    let mut table = SocketTable::new();
    table.seed(
        [
            listed(established, Established, Some(owner.clone())),
            listed(listening, Listen, Some(owner.clone())),
        ],
        0,
    );
    assert_eq!(table.len(), 2);
    let seeded_id = table
        .sockets()
        .find(|s| s.tuple == established)
        .map(|s| s.id)
        .unwrap();
    let stranger = task(1, "swapper/1");
    let out = replay(
        &mut table,
        &[
            ev(MS, SERVER_SK, established, Established, CloseWait).softirq(stranger.clone()),
            ev(
                2 * MS,
                0x5000,
                tuple("10.0.0.2:5432", "10.0.0.7:7000"),
                Listen,
                SynRecv,
            )
            .softirq(stranger.clone()),
        ],
    );
    assert_eq!(out[0].id, seeded_id);
    assert_eq!(out[0].owner, Some(owner.clone()), "seeded owner carried");
    assert_eq!(out[0].old_state_ns, None);
    assert_eq!(out[1].owner, Some(owner), "seeded listener lends its owner");
    assert_eq!(table.stats().mid_life, 0);
    assert_eq!(table.len(), 3);
}

#[test]
fn a_transition_from_before_the_seeding_listing_is_no_gap() {
    // The programs attach before the listing: the ring may hold a close
    // from before the listing ended, whose socket it already shows in
    // FIN_WAIT1, or the end of a socket it no longer shows. After the
    // listing, a state that disagrees is a gap.
    let owner = task(400, "postgres");
    let closed_early = tuple("10.0.0.2:5432", "10.0.0.1:6000");
    let closed_late = tuple("10.0.0.2:5432", "10.0.0.1:6001");
    let mut table = SocketTable::new();
    table.seed(
        [
            listed(closed_early, FinWait1, Some(owner.clone())),
            listed(closed_late, FinWait1, Some(owner.clone())),
        ],
        10 * MS,
    );
    let seeded_id = table
        .sockets()
        .find(|s| s.tuple == closed_early)
        .map(|s| s.id)
        .unwrap();
    let out = replay(
        &mut table,
        &[
            ev(5 * MS, SERVER_SK, closed_early, Established, FinWait1).by(owner.clone()),
            ev(6 * MS, SERVER_SK, closed_early, FinWait1, FinWait2),
            ev(20 * MS, CLIENT_SK, closed_late, Established, FinWait1).by(owner.clone()),
            // Closed before the listing, so not listed: its life began
            // before tracing.
            ev(
                7 * MS,
                LISTEN_SK,
                tuple("10.0.0.2:5432", "10.0.0.1:6002"),
                LastAck,
                Close,
            ),
        ],
    );
    assert_eq!(out[0].id, seeded_id);
    assert_eq!(out[0].owner, Some(owner));
    assert_eq!(out[1].id, seeded_id);
    assert_eq!(
        table.stats().mid_life,
        1,
        "only the transition from after the listing shows a gap"
    );
}

#[test]
fn a_socket_born_before_the_seeding_listing_ended_is_not_kept_twice() {
    // Born after the programs were attached and listed by the start
    // listing too: its birth and the listing name the same socket, which
    // must leave no seeded copy behind when it closes.
    let owner = task(500, "curl");
    let served = tuple("10.0.0.2:80", "10.0.0.1:7000");
    let connected = tuple("10.0.0.1:7001", "10.0.0.2:80");
    let unbound = tuple("10.0.0.1:0", "10.0.0.2:80");
    let mut table = SocketTable::new();
    table.seed(
        [
            listed(served, Established, Some(owner.clone())),
            listed(connected, Established, Some(owner.clone())),
        ],
        10 * MS,
    );
    let out = replay(
        &mut table,
        &[
            ev(2 * MS, SERVER_SK, served, Listen, SynRecv).softirq(task(1, "swapper")),
            ev(3 * MS, SERVER_SK, served, SynRecv, Established).softirq(task(1, "swapper")),
            ev(2 * MS, CLIENT_SK, unbound, Close, SynSent).by(owner.clone()),
            ev(3 * MS, CLIENT_SK, connected, SynSent, Established),
        ],
    );
    assert_eq!(
        table.len(),
        2,
        "one entry per socket: {:#?}",
        table.sockets().collect::<Vec<_>>()
    );
    assert_eq!(
        out[1].owner,
        Some(owner),
        "the listing's owner, none traced"
    );
    replay(
        &mut table,
        &[
            ev(20 * MS, SERVER_SK, served, Established, FinWait1),
            ev(21 * MS, SERVER_SK, served, FinWait1, Close),
            ev(20 * MS, CLIENT_SK, connected, Established, CloseWait),
            ev(21 * MS, CLIENT_SK, connected, CloseWait, Close),
        ],
    );
    assert!(
        table.is_empty(),
        "{:#?}",
        table.sockets().collect::<Vec<_>>()
    );
    assert_eq!(table.stats().transitions_missed(), 0);
}

#[test]
fn timewait_and_request_sockets_are_listed_but_not_kept() {
    let t = tuple("10.0.0.1:40000", "10.0.0.2:443");
    let mut table = SocketTable::new();
    let listed = table.seed(
        [
            SeedSocket {
                tuple: t,
                state: TimeWait,
                kind: SeedKind::TimeWait,
                owner: None,
            },
            SeedSocket {
                tuple: tuple("10.0.0.2:443", "10.0.0.9:5000"),
                state: SynRecv,
                kind: SeedKind::Request,
                owner: None,
            },
        ],
        0,
    );
    assert_eq!(listed.len(), 2);
    assert_ne!(listed[0].id, listed[1].id);
    assert!(table.is_empty(), "no transition would ever end them");
    replay(
        &mut table,
        &[
            ev(
                0,
                CLIENT_SK,
                tuple("10.0.0.1:0", "10.0.0.2:443"),
                Close,
                SynSent,
            ),
            ev(MS, CLIENT_SK, t, SynSent, Established).softirq(task(0, "swapper")),
        ],
    );
    assert_eq!(table.len(), 1);
    assert_eq!(table.sockets().next().unwrap().state, Established);
    assert_eq!(table.stats().mid_life, 0);
}

#[test]
fn a_reused_address_after_a_lost_close_starts_a_new_socket() {
    let first = tuple("10.0.0.1:40000", "10.0.0.2:443");
    let mut table = SocketTable::new();
    let out = replay(
        &mut table,
        &[
            ev(
                0,
                CLIENT_SK,
                tuple("10.0.0.1:0", "10.0.0.2:443"),
                Close,
                SynSent,
            ),
            ev(MS, CLIENT_SK, first, SynSent, Established),
            // ... its CLOSE was lost; the kernel reuses the address.
            ev(
                10 * MS,
                CLIENT_SK,
                tuple("10.0.0.1:0", "10.0.0.3:80"),
                Close,
                SynSent,
            )
            .by(task(101, "wget")),
        ],
    );
    assert_ne!(out[2].id, out[0].id);
    assert_eq!(out[2].owner, Some(task(101, "wget")));
    assert_eq!(table.len(), 1);
    assert_eq!(table.stats().inconsistent, 1);
}

#[test]
fn address_reuse_after_a_seen_close_is_a_clean_new_life() {
    let t = tuple("10.0.0.1:40000", "10.0.0.2:443");
    let mut table = SocketTable::new();
    let out = replay(
        &mut table,
        &[
            ev(
                0,
                CLIENT_SK,
                tuple("10.0.0.1:0", "10.0.0.2:443"),
                Close,
                SynSent,
            ),
            ev(MS, CLIENT_SK, t, SynSent, Close).softirq(task(0, "swapper")),
            ev(
                2 * MS,
                CLIENT_SK,
                tuple("10.0.0.1:0", "10.0.0.2:443"),
                Close,
                SynSent,
            ),
        ],
    );
    assert_ne!(out[2].id, out[0].id);
    assert_eq!(out[1].ended.as_ref().unwrap().lifetime_ns, Some(MS));
    assert_eq!(table.stats(), TableStats::default());
}

#[test]
fn a_missed_transition_is_counted_and_the_state_follows_the_kernel() {
    let t = tuple("10.0.0.1:40000", "10.0.0.2:443");
    let mut table = SocketTable::new();
    let out = replay(
        &mut table,
        &[
            ev(
                0,
                CLIENT_SK,
                tuple("10.0.0.1:0", "10.0.0.2:443"),
                Close,
                SynSent,
            ),
            ev(MS, CLIENT_SK, t, SynSent, Established),
            // ESTABLISHED->FIN_WAIT1 lost.
            ev(5 * MS, CLIENT_SK, t, FinWait1, FinWait2).softirq(task(0, "swapper")),
        ],
    );
    assert_eq!(out[2].id, out[0].id);
    assert_eq!(out[2].old_state_ns, None, "FIN_WAIT1 entry not seen");
    assert_eq!(table.stats().inconsistent, 1);
    assert_eq!(table.sockets().next().unwrap().state, FinWait2);
}

#[test]
fn ipv6_sockets_are_tracked_like_ipv4() {
    let mut table = SocketTable::new();
    let out = replay(
        &mut table,
        &[
            ev(0, CLIENT_SK, tuple("[::1]:0", "[::1]:8443"), Close, SynSent),
            ev(
                MS,
                CLIENT_SK,
                tuple("[::1]:50000", "[::1]:8443"),
                SynSent,
                Established,
            ),
        ],
    );
    assert_eq!(out[1].tuple.family_name(), "ipv6");
    assert_eq!(out[1].tuple.local.port(), 50000);
    assert_eq!(out[1].old_state_ns, Some(MS));
}

#[test]
fn the_same_tuple_in_two_namespaces_is_two_sockets_each_with_its_listener() {
    let here = task(1, "here");
    let there = task(2, "there");
    let listening = tuple("127.0.0.1:80", "0.0.0.0:0");
    let child = tuple("127.0.0.1:80", "127.0.0.1:5000");
    let mut table = SocketTable::new();
    let out = replay(
        &mut table,
        &[
            ev(0, 1, listening, Close, Listen).by(here.clone()),
            ev(0, 2, elsewhere(listening), Close, Listen).by(there.clone()),
            ev(MS, 10, child, Listen, SynRecv).softirq(task(0, "swapper")),
            ev(MS, 20, elsewhere(child), Listen, SynRecv).softirq(task(0, "swapper")),
        ],
    );
    assert_eq!(out[2].owner, Some(here));
    assert_eq!(out[3].owner, Some(there), "each namespace's own listener");
    assert_ne!(out[2].id, out[3].id);
    assert_eq!(table.len(), 4);
    assert_eq!(table.by_skaddr(20).unwrap().tuple, elsewhere(child));
}

#[test]
fn a_namespace_torn_down_leaves_nothing_behind_and_is_counted() {
    let listening = tuple("127.0.0.1:80", "0.0.0.0:0");
    let mut table = SocketTable::new();
    table.seed(
        [listed(
            elsewhere(tuple("127.0.0.1:22", "0.0.0.0:0")),
            Listen,
            None,
        )],
        0,
    );
    replay(
        &mut table,
        &[
            ev(0, 1, listening, Close, Listen),
            ev(0, 2, elsewhere(listening), Close, Listen),
            ev(
                MS,
                20,
                elsewhere(tuple("127.0.0.1:80", "127.0.0.1:5000")),
                Listen,
                SynRecv,
            ),
        ],
    );
    table.tear_down(crate::model::tuple::TEST_NETNS + 1);
    assert_eq!(table.len(), 1, "only the other namespace's listener");
    assert_eq!(table.stats().torn_down, 3);
    assert_eq!(
        table.listener_owner(
            crate::model::tuple::TEST_NETNS + 1,
            &"127.0.0.1:80".parse().unwrap()
        ),
        None
    );
    assert!(table.by_skaddr(1).is_some());
}

/// The connect and close of a client socket at `skaddr`, owned by `owner`.
fn connect_and_close(skaddr: u64, at_ns: u64, owner: Owner) -> [Ev; 2] {
    let t = tuple("10.0.0.1:40000", "10.0.0.2:443");
    [
        ev(at_ns, skaddr, t, Close, SynSent).by(owner),
        ev(at_ns + MS, skaddr, t, SynSent, Close).softirq(task(0, "swapper")),
    ]
}

#[test]
fn a_freed_slot_holds_the_next_socket_with_nothing_left_of_the_last() {
    let mut table = SocketTable::new();
    let first = replay(&mut table, &connect_and_close(CLIENT_SK, 0, task(1, "old")));
    assert_eq!(table.slab.vacant, [0], "CLOSE freed the slot");
    let t = tuple("10.0.0.2:80", "10.0.0.1:5000");
    let out = table.apply(
        &ev(5 * MS, SERVER_SK, t, Established, CloseWait)
            .softirq(task(0, "swapper"))
            .event(),
    );
    assert_eq!(table.slab.entries.len(), 1, "the slot was reused");
    assert!(table.slab.vacant.is_empty());
    assert_ne!(out.id, first[0].id);
    assert_eq!(table.by_skaddr(CLIENT_SK), None);
    assert_eq!(
        table.by_skaddr(SERVER_SK),
        Some(TrackedSocket {
            id: out.id,
            tuple: t,
            state: CloseWait,
            state_since_ns: Some(5 * MS),
            born_ns: None,
            owner: None,
            origin: Origin::MidLife,
            time_in_state_ns: [0; TcpState::COUNT],
            opening: None,
        })
    );
}

#[test]
fn tear_down_frees_the_slots_and_owners_of_its_sockets() {
    let gone = crate::model::tuple::TEST_NETNS + 1;
    let mut table = SocketTable::new();
    table.seed(
        [listed(
            elsewhere(tuple("127.0.0.1:22", "0.0.0.0:0")),
            Listen,
            Some(task(2, "sshd")),
        )],
        0,
    );
    replay(
        &mut table,
        &[
            ev(0, 1, tuple("127.0.0.1:80", "0.0.0.0:0"), Close, Listen),
            ev(
                0,
                2,
                elsewhere(tuple("127.0.0.1:80", "0.0.0.0:0")),
                Close,
                Listen,
            )
            .by(task(3, "nginx")),
        ],
    );
    table.tear_down(gone);
    let mut vacant = table.slab.vacant.clone();
    vacant.sort();
    assert_eq!(vacant, [0, 2], "the seeded listener's and the named one's");
    assert_eq!((table.by_skaddr.len(), table.seeded.len()), (1, 0));
    assert!(
        table
            .owners
            .interned
            .iter()
            .filter(|o| o.pid != 100)
            .all(|o| Arc::strong_count(o) == 1),
        "no socket holds the torn down sockets' owners"
    );
    table.apply(&ev(MS, 3, tuple("127.0.0.1:81", "0.0.0.0:0"), Close, Listen).event());
    assert_eq!(table.slab.entries.len(), 3, "a freed slot was reused");
}

#[test]
fn tuples_come_back_as_they_went_in() {
    for (local, remote) in [
        ("10.0.0.1:40000", "192.0.2.7:443"),
        ("[2001:db8::1]:40000", "[2001:db8::2]:443"),
        ("[::ffff:10.0.0.1]:40000", "[::ffff:192.0.2.7]:443"),
        ("0.0.0.0:80", "0.0.0.0:0"),
        ("[::]:80", "[::]:0"),
    ] {
        let t = tuple(local, remote);
        let entry = Entry::new(CLIENT_SK, 1, &t, Established, Origin::MidLife);
        assert_eq!(entry.tuple(), t, "{local} {remote}");
        assert_eq!(entry.tuple().local.is_ipv4(), t.local.is_ipv4());
        assert_eq!(entry.tuple().remote.is_ipv4(), t.remote.is_ipv4());
    }
    let mapped = tuple("[::ffff:10.0.0.1]:40000", "[::ffff:192.0.2.7]:443");
    let mut table = SocketTable::new();
    table.apply(&ev(0, CLIENT_SK, mapped, Established, FinWait1).event());
    assert_eq!(table.by_skaddr(CLIENT_SK).unwrap().tuple, mapped);
}

#[test]
fn sockets_of_one_owner_share_one_interned_owner() {
    let mut table = SocketTable::new();
    let unbound = |remote| tuple("10.0.0.1:0", remote);
    replay(
        &mut table,
        &[
            ev(0, 1, unbound("10.0.0.2:443"), Close, SynSent),
            ev(0, 2, unbound("10.0.0.3:443"), Close, SynSent),
            ev(
                MS,
                2,
                tuple("10.0.0.1:40000", "10.0.0.3:443"),
                SynSent,
                Established,
            ),
        ],
    );
    let owner_at = |skaddr| {
        let slot = table.find(skaddr).unwrap();
        Arc::clone(table.slab[slot].owner.as_ref().unwrap())
    };
    assert!(Arc::ptr_eq(&owner_at(1), &owner_at(2)));
    assert_eq!(table.owners.interned.len(), 1);
    assert_eq!(*owner_at(1), task(100, "client"));
}

#[test]
fn the_interner_sweeps_owners_no_socket_references() {
    let mut table = SocketTable::new();
    let dead = Owners::SWEEP_FROM as u32 - 1;
    for pid in 0..dead {
        replay(
            &mut table,
            &connect_and_close(CLIENT_SK, u64::from(pid) * 10 * MS, task(pid, "short")),
        );
    }
    assert_eq!(table.owners.interned.len(), dead as usize, "not swept yet");
    let live = task(5000, "long");
    table.apply(&connect_and_close(SERVER_SK, 0, live.clone())[0].event());
    assert_eq!(
        table.owners.interned.len(),
        1,
        "swept at {}",
        Owners::SWEEP_FROM
    );
    assert_eq!(table.by_skaddr(SERVER_SK).unwrap().owner, Some(live));
}

#[test]
fn a_long_stay_is_timed_within_f32_precision() {
    let hour_ns = 3_600_000_000_007;
    let t = tuple("10.0.0.1:40000", "10.0.0.2:443");
    let mut table = SocketTable::new();
    let out = replay(
        &mut table,
        &[
            ev(0, CLIENT_SK, t, Close, SynSent),
            ev(MS, CLIENT_SK, t, SynSent, Established),
            ev(MS + hour_ns, CLIENT_SK, t, Established, Close),
        ],
    );
    assert_eq!(
        out[2].old_state_ns,
        Some(hour_ns),
        "the stay itself is exact"
    );
    let kept = out[2].ended.as_ref().unwrap().time_in_state_ns[Established.index()];
    assert!(kept.abs_diff(hour_ns) <= hour_ns >> 24, "{kept}");
}
