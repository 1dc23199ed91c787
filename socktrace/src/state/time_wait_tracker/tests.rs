//! The tracker on event sequences as this kernel emits them (captured with
//! bpftrace on Linux 6.18), run through the socket table exactly as the
//! agent does, and on listings shaped like sock_diag's.
//!
//! Client closing first, on loopback:
//! `ESTABLISHED -> FIN_WAIT1` (close(2), process), `FIN_WAIT1 -> FIN_WAIT2`
//! and `FIN_WAIT2 -> CLOSE` (softirq); the server meanwhile goes
//! `ESTABLISHED -> CLOSE_WAIT -> LAST_ACK -> CLOSE`. A reconnect from the
//! same bound port with `tcp_tw_reuse` starts with `CLOSE -> SYN_SENT` on
//! the timewait socket's very 4-tuple.
use super::*;
use crate::{
    kernel::event::TaskContext,
    model::owner::Comm,
    model::tuple::{TEST_NETNS, elsewhere},
    state::table::SocketTable,
};

use TcpState::*;

const MS: u64 = 1_000_000;
const S: u64 = 1_000 * MS;
const CLIENT_SK: u64 = 0xffff_8881_0430_40c0;
const SERVER_SK: u64 = 0xffff_8881_0430_1280;

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

fn client() -> SocketTuple {
    tuple("127.0.0.1:45807", "127.0.0.1:42801")
}

fn server() -> SocketTuple {
    tuple("127.0.0.1:42801", "127.0.0.1:45807")
}

/// The agent's pipeline: table, then tracker.
#[derive(Default)]
struct Agent {
    table: SocketTable,
    tracker: TimeWaitTracker,
}

impl Agent {
    fn state(
        &mut self,
        ts_ns: u64,
        skaddr: u64,
        tuple: SocketTuple,
        (old, new): (TcpState, TcpState),
        context: TaskContext,
    ) -> TimeWaitOutcome {
        let event = StateEvent {
            ts_ns,
            skaddr,
            tuple,
            old_state: old,
            new_state: new,
            task: match context {
                TaskContext::Process => curl(),
                TaskContext::Softirq => Owner {
                    pid: 0,
                    comm: Comm::from_text("swapper/1"),
                    container: None,
                },
            },
            context,
            error: 0,
            soft_error: 0,
        };
        let transition = self.table.apply(&event);
        self.tracker.on_transition(&event, &transition)
    }

    /// A connection from `client()`, established at `at`.
    fn connect(&mut self, at: u64) {
        let unbound = tuple("127.0.0.1:0", "127.0.0.1:42801");
        self.state(
            at,
            CLIENT_SK,
            unbound,
            (Close, SynSent),
            TaskContext::Process,
        );
        self.state(
            at + 1,
            CLIENT_SK,
            client(),
            (SynSent, Established),
            TaskContext::Process,
        );
    }

    /// The client closes first at `at`; the server's FIN arrives after
    /// `fin_after`: the client's full socket closes into a timewait socket.
    fn client_closes(&mut self, at: u64, fin_after: u64) -> TimeWaitOutcome {
        self.state(
            at,
            CLIENT_SK,
            client(),
            (Established, FinWait1),
            TaskContext::Process,
        );
        self.state(
            at + 10_000,
            CLIENT_SK,
            client(),
            (FinWait1, FinWait2),
            TaskContext::Softirq,
        );
        self.state(
            at + fin_after,
            CLIENT_SK,
            client(),
            (FinWait2, Close),
            TaskContext::Softirq,
        )
    }

    /// What a summary would count now.
    fn counts(&self) -> TimeWaitCounts {
        let mut counts = TimeWaitCounts::default();
        for socket in self.tracker.sockets() {
            counts.add(socket);
        }
        counts
    }

    fn listing(
        &mut self,
        taken_ns: u64,
        listed: &[(SocketTuple, TcpState, u32)],
    ) -> TimeWaitOutcome {
        self.listing_in(TEST_NETNS, taken_ns, listed)
    }

    /// A listing of namespace `netns`.
    fn listing_in(
        &mut self,
        netns: NetnsInode,
        taken_ns: u64,
        listed: &[(SocketTuple, TcpState, u32)],
    ) -> TimeWaitOutcome {
        let listed: Vec<_> = listed
            .iter()
            .map(|&(tuple, substate, expires_ms)| ListedTimeWait {
                tuple,
                substate,
                expires_ms,
            })
            .collect();
        // Dumps in these tests take no time.
        let time = ListingTime {
            began_ns: taken_ns,
            ended_ns: taken_ns,
        };
        self.tracker.on_listing(netns, &listed, time)
    }
}

/// Traced: a connection from `client()` born at 0 and closed into a
/// timewait socket at 10 ms, confirmed by a listing at 500 ms.
fn entered() -> Agent {
    let mut agent = Agent::default();
    agent.listing(0, &[]);
    agent.connect(0);
    let outcome = agent.client_closes(10 * MS, MS);
    assert_eq!(outcome, TimeWaitOutcome::default(), "nothing until listed");
    let listed = agent.listing(500 * MS, &[(client(), TimeWait, 59_489)]);
    assert_eq!(listed.entered.len(), 1);
    agent
}

#[test]
fn a_client_closing_first_enters_at_its_close_with_its_owner() {
    let mut agent = Agent::default();
    agent.listing(0, &[]);
    agent.connect(0);
    agent.client_closes(10 * MS, 2 * MS);
    assert_eq!(agent.counts().unlisted, 1);
    let outcome = agent.listing(500 * MS, &[(client(), FinWait2, 59_488)]);
    let [entered] = outcome.entered.as_slice() else {
        panic!("{outcome:?}");
    };
    assert_eq!(entered.tuple, client());
    assert_eq!(
        entered.owner,
        Some(curl()),
        "the closing process, not softirq"
    );
    assert_eq!(entered.entered_ns, Some(12 * MS));
    assert_eq!(entered.entered_from, Some(FinWait2));
    assert_eq!(entered.connection_ns, Some(12 * MS));
    assert_eq!(entered.origin, TimeWaitOrigin::Traced);
    assert!(outcome.ended.is_empty());
    assert_eq!(
        agent.counts(),
        TimeWaitCounts {
            time_wait: 0,
            fin_wait2: 1,
            unlisted: 0
        },
        "an orphan waiting for the peer's FIN is not counted as TIME-WAIT"
    );
    let again = agent.listing(1500 * MS, &[(client(), TimeWait, 59_900)]);
    assert!(again.entered.is_empty(), "announced once");
    assert_eq!(agent.counts().time_wait, 1);
}

#[test]
fn the_server_closing_first_enters_too_and_a_passive_close_does_not() {
    let mut agent = Agent::default();
    agent.listing(0, &[]);
    agent.connect(0);
    let server_born = tuple("127.0.0.1:42801", "127.0.0.1:45807");
    agent.state(
        MS,
        SERVER_SK,
        server_born,
        (Listen, SynRecv),
        TaskContext::Softirq,
    );
    agent.state(
        MS,
        SERVER_SK,
        server(),
        (SynRecv, Established),
        TaskContext::Softirq,
    );
    // The server closes first; the client answers with its own FIN.
    agent.state(
        5 * MS,
        SERVER_SK,
        server(),
        (Established, FinWait1),
        TaskContext::Process,
    );
    agent.state(
        5 * MS,
        CLIENT_SK,
        client(),
        (Established, CloseWait),
        TaskContext::Softirq,
    );
    agent.state(
        5 * MS,
        SERVER_SK,
        server(),
        (FinWait1, FinWait2),
        TaskContext::Softirq,
    );
    agent.state(
        6 * MS,
        CLIENT_SK,
        client(),
        (CloseWait, LastAck),
        TaskContext::Process,
    );
    agent.state(
        6 * MS,
        SERVER_SK,
        server(),
        (FinWait2, Close),
        TaskContext::Softirq,
    );
    agent.state(
        6 * MS,
        CLIENT_SK,
        client(),
        (LastAck, Close),
        TaskContext::Softirq,
    );
    let outcome = agent.listing(S, &[(server(), TimeWait, 59_000)]);
    assert_eq!(outcome.entered.len(), 1);
    assert_eq!(outcome.entered[0].tuple, server());
    assert_eq!(agent.tracker.stats(), TimeWaitStats::default());
}

#[test]
fn simultaneous_close_enters_from_closing() {
    let mut agent = Agent::default();
    agent.listing(0, &[]);
    agent.connect(0);
    agent.state(
        5 * MS,
        CLIENT_SK,
        client(),
        (Established, FinWait1),
        TaskContext::Process,
    );
    agent.state(
        5 * MS,
        CLIENT_SK,
        client(),
        (FinWait1, Closing),
        TaskContext::Softirq,
    );
    agent.state(
        6 * MS,
        CLIENT_SK,
        client(),
        (Closing, Close),
        TaskContext::Softirq,
    );
    let outcome = agent.listing(S, &[(client(), TimeWait, 59_000)]);
    assert_eq!(outcome.entered[0].entered_from, Some(Closing));
}

#[test]
fn natural_expiry_is_reported_between_due_time_and_the_listing_that_misses_it() {
    let mut agent = entered();
    // The timer wheel fires late: still listed, due now.
    assert!(
        agent
            .listing(60_300 * MS, &[(client(), TimeWait, 0)])
            .ended
            .is_empty()
    );
    // A dump may skip a socket: one listing without it is not yet its end.
    assert_eq!(agent.listing(61_300 * MS, &[]), TimeWaitOutcome::default());
    assert_eq!(
        agent.counts(),
        TimeWaitCounts::default(),
        "but it is not counted"
    );
    let outcome = agent.listing(62_300 * MS, &[]);
    let [ended] = outcome.ended.as_slice() else {
        panic!("{outcome:?}");
    };
    assert_eq!(ended.end, TimeWaitEnd::Expired);
    assert_eq!(ended.ended_within_ns, (60_300 * MS, 61_300 * MS));
    assert_eq!(ended.ended_ns(), 60_800 * MS);
    assert_eq!(ended.uncertainty_ns(), 500 * MS);
    assert_eq!(ended.lifetime_ns(), Some(60_789 * MS));
    assert_eq!(ended.socket.owner, Some(curl()));
    assert!(outcome.entered.is_empty(), "announced when confirmed");
    assert_eq!(agent.counts(), TimeWaitCounts::default());
}

#[test]
fn gone_before_its_timer_was_due_is_killed() {
    let mut agent = entered();
    agent.listing(1_500 * MS, &[]);
    let outcome = agent.listing(2_500 * MS, &[]);
    assert_eq!(outcome.ended[0].end, TimeWaitEnd::Killed);
    assert_eq!(outcome.ended[0].ended_within_ns, (500 * MS, 1_500 * MS));
}

#[test]
fn a_new_connection_on_its_tuple_reuses_it_at_that_moment() {
    let mut agent = entered();
    // tcp_tw_reuse: the client binds the same port and connects again.
    const NEW_SK: u64 = 0xffff_8881_0430_6f00;
    agent.state(
        2 * S,
        NEW_SK,
        client(),
        (Close, SynSent),
        TaskContext::Process,
    );
    agent.state(
        2 * S + 1,
        NEW_SK,
        client(),
        (SynSent, Established),
        TaskContext::Process,
    );
    let outcome = agent.listing(3 * S, &[]);
    let [ended] = outcome.ended.as_slice() else {
        panic!("{outcome:?}");
    };
    assert_eq!(ended.end, TimeWaitEnd::Reused);
    assert_eq!(ended.ended_within_ns, (2 * S, 2 * S));
    assert_eq!(ended.lifetime_ns(), Some(2 * S - 11 * MS));
    assert_eq!(ended.uncertainty_ns(), 0);
}

#[test]
fn a_new_syn_to_a_servers_timewait_socket_reuses_it() {
    let mut agent = Agent::default();
    agent.listing(0, &[]);
    agent.state(
        MS,
        SERVER_SK,
        server(),
        (FinWait2, Close),
        TaskContext::Softirq,
    );
    agent.listing(S, &[(server(), TimeWait, 59_000)]);
    // The same client port connects again: the child's birth names the tuple.
    agent.state(
        2 * S,
        0x7000,
        server(),
        (Listen, SynRecv),
        TaskContext::Softirq,
    );
    let outcome = agent.listing(3 * S, &[]);
    assert_eq!(outcome.ended[0].end, TimeWaitEnd::Reused);
    assert_eq!(outcome.ended[0].ended_ns(), 2 * S);
}

#[test]
fn the_connect_that_took_the_tuple_over_is_the_last_one_before_it_went() {
    let mut agent = entered();
    const NEW_SK: u64 = 0xffff_8881_0430_6f00;
    // Too early for tcp_tw_reuse: EADDRNOTAVAIL, then a retry that works,
    // both before the next listing.
    agent.state(S, NEW_SK, client(), (Close, SynSent), TaskContext::Process);
    agent.state(S, NEW_SK, client(), (SynSent, Close), TaskContext::Process);
    agent.state(
        2 * S,
        NEW_SK,
        client(),
        (Close, SynSent),
        TaskContext::Process,
    );
    agent.state(
        2 * S + MS,
        NEW_SK,
        client(),
        (SynSent, Established),
        TaskContext::Process,
    );
    let outcome = agent.listing(3 * S, &[]);
    assert_eq!(outcome.ended[0].end, TimeWaitEnd::Reused);
    assert_eq!(outcome.ended[0].ended_ns(), 2 * S);
}

#[test]
fn a_connect_that_failed_to_take_the_tuple_leaves_it_in_place() {
    let mut agent = entered();
    // EADDRNOTAVAIL: tcp_v4_connect names the tuple, then closes.
    const NEW_SK: u64 = 0xffff_8881_0430_6f00;
    agent.state(
        2 * S,
        NEW_SK,
        client(),
        (Close, SynSent),
        TaskContext::Process,
    );
    agent.state(
        2 * S,
        NEW_SK,
        client(),
        (SynSent, Close),
        TaskContext::Process,
    );
    assert!(
        agent
            .listing(3 * S, &[(client(), TimeWait, 57_000)])
            .ended
            .is_empty()
    );
    agent.listing(61 * S, &[]);
    let outcome = agent.listing(62 * S, &[]);
    assert_eq!(outcome.ended[0].end, TimeWaitEnd::Expired);
}

#[test]
fn a_close_after_a_reset_is_no_entry() {
    let mut agent = Agent::default();
    agent.listing(0, &[]);
    agent.connect(0);
    agent.state(
        5 * MS,
        CLIENT_SK,
        client(),
        (Established, FinWait1),
        TaskContext::Process,
    );
    agent.state(
        5 * MS,
        CLIENT_SK,
        client(),
        (FinWait1, FinWait2),
        TaskContext::Softirq,
    );
    agent.tracker.on_reset(&SocketSignal {
        ts_ns: 6 * MS,
        skaddr: CLIENT_SK,
        tuple: client(),
    });
    agent.state(
        6 * MS,
        CLIENT_SK,
        client(),
        (FinWait2, Close),
        TaskContext::Softirq,
    );
    assert_eq!(agent.counts(), TimeWaitCounts::default());
    let outcome = agent.listing(S, &[]);
    assert_eq!(outcome, TimeWaitOutcome::default());
    assert_eq!(agent.tracker.stats().never_listed, 0);
}

#[test]
fn an_entry_never_listed_is_dropped_and_counted_not_guessed() {
    let mut agent = Agent::default();
    agent.listing(0, &[]);
    agent.connect(0);
    agent.client_closes(10 * MS, MS);
    // A listing begun before the entry does not judge it.
    assert_eq!(agent.listing(5 * MS, &[]), TimeWaitOutcome::default());
    assert_eq!(agent.counts().unlisted, 1);
    // One begun after it and not showing it: another namespace, or the
    // kernel refused to create it (TCPTimeWaitOverflow).
    assert_eq!(agent.listing(S, &[]), TimeWaitOutcome::default());
    assert_eq!(agent.tracker.stats().never_listed, 1);
    assert_eq!(agent.counts(), TimeWaitCounts::default());
}

#[test]
fn sockets_listed_without_an_entry_are_existing_first_then_unseen() {
    let mut agent = Agent::default();
    let other = tuple("10.0.0.1:40000", "10.0.0.2:443");
    agent.listing(0, &[(other, TimeWait, 30_000)]);
    let existing = agent.tracker.sockets().next().unwrap().clone();
    assert_eq!(existing.origin, TimeWaitOrigin::Existing);
    assert_eq!(existing.entered_ns, None);
    let outcome = agent.listing(
        S,
        &[(other, TimeWait, 29_000), (client(), TimeWait, 59_000)],
    );
    assert!(outcome.entered.is_empty(), "no traced entry to announce");
    assert_eq!(agent.tracker.stats().unseen, 1);
    agent.listing(31 * S, &[(client(), TimeWait, 29_000)]);
    let outcome = agent.listing(32 * S, &[(client(), TimeWait, 28_000)]);
    assert_eq!(outcome.ended[0].end, TimeWaitEnd::Expired);
    assert_eq!(outcome.ended[0].lifetime_ns(), None, "entry not seen");
}

#[test]
fn an_entry_handled_after_the_listing_that_showed_it_is_the_same_socket() {
    let mut agent = Agent::default();
    agent.listing(0, &[]);
    agent.connect(0);
    // The dump reached the new timewait socket before its entry event was
    // read from the ring.
    agent.listing(S, &[(client(), TimeWait, 60_000)]);
    assert_eq!(agent.tracker.stats().unseen, 1);
    agent.client_closes(S - 10_000 - 1, 1);
    assert_eq!(agent.tracker.stats().unseen, 0);
    let outcome = agent.listing(2 * S, &[(client(), TimeWait, 59_000)]);
    assert_eq!(outcome.entered.len(), 1, "announced at the next listing");
    assert_eq!(outcome.entered[0].owner, Some(curl()));
}

#[test]
fn a_second_entry_on_a_tracked_tuple_ends_the_first_as_reused() {
    let mut agent = entered();
    // The reconnect and its close all fall between two listings.
    const NEW_SK: u64 = 0xffff_8881_0430_6f00;
    agent.state(
        2 * S,
        NEW_SK,
        client(),
        (Close, SynSent),
        TaskContext::Process,
    );
    agent.state(
        2 * S,
        NEW_SK,
        client(),
        (SynSent, Established),
        TaskContext::Process,
    );
    agent.state(
        2 * S + MS,
        NEW_SK,
        client(),
        (Established, FinWait1),
        TaskContext::Process,
    );
    agent.state(
        2 * S + MS,
        NEW_SK,
        client(),
        (FinWait1, FinWait2),
        TaskContext::Softirq,
    );
    let outcome = agent.state(
        2 * S + 2 * MS,
        NEW_SK,
        client(),
        (FinWait2, Close),
        TaskContext::Softirq,
    );
    assert_eq!(outcome.ended[0].end, TimeWaitEnd::Reused);
    assert_eq!(outcome.ended[0].ended_ns(), 2 * S);
    assert_eq!(agent.tracker.stats().replaced, 0, "the reuse was seen");
    let next = agent.listing(3 * S, &[(client(), TimeWait, 59_000)]);
    assert_eq!(next.entered[0].entered_ns, Some(2 * S + 2 * MS));
}

#[test]
fn a_reuse_before_any_listing_confirms_the_entry_too() {
    let mut agent = Agent::default();
    agent.listing(0, &[]);
    agent.connect(0);
    agent.client_closes(10 * MS, MS);
    const NEW_SK: u64 = 0xffff_8881_0430_6f00;
    agent.state(
        20 * MS,
        NEW_SK,
        client(),
        (Close, SynSent),
        TaskContext::Process,
    );
    let outcome = agent.listing(S, &[]);
    assert_eq!(outcome.entered.len(), 1);
    assert_eq!(outcome.ended[0].end, TimeWaitEnd::Reused);
    assert_eq!(outcome.ended[0].lifetime_ns(), Some(9 * MS));
}

#[test]
fn a_v4_mapped_socket_and_its_listing_are_one() {
    let mut agent = Agent::default();
    agent.listing(0, &[]);
    let mapped = tuple("[::ffff:127.0.0.1]:45807", "[::ffff:127.0.0.1]:42801");
    agent.state(
        MS,
        CLIENT_SK,
        mapped,
        (FinWait2, Close),
        TaskContext::Softirq,
    );
    let outcome = agent.listing(S, &[(mapped, TimeWait, 59_000)]);
    assert_eq!(outcome.entered.len(), 1);
    assert_eq!(agent.tracker.stats(), TimeWaitStats::default());
}

#[test]
fn a_v4_mapped_socket_listed_twice_is_one() {
    let mut agent = Agent::default();
    agent.listing(0, &[]);
    let mapped = tuple("[::ffff:127.0.0.1]:45807", "[::ffff:127.0.0.1]:42801");
    agent.listing(S, &[(mapped, TimeWait, 59_000)]);
    let outcome = agent.listing(2 * S, &[(mapped, TimeWait, 58_000)]);
    assert_eq!(outcome, TimeWaitOutcome::default());
    assert_eq!(agent.tracker.sockets().count(), 1);
    assert_eq!(agent.tracker.stats().unseen, 1);
}

#[test]
fn a_socket_one_listing_skipped_is_still_there() {
    let mut agent = entered();
    assert_eq!(agent.listing(S + 500 * MS, &[]), TimeWaitOutcome::default());
    let outcome = agent.listing(2 * S + 500 * MS, &[(client(), TimeWait, 57_500)]);
    assert_eq!(outcome, TimeWaitOutcome::default());
    assert_eq!(agent.tracker.stats().relisted, 1);
    assert_eq!(agent.counts().time_wait, 1);
}

#[test]
fn a_claim_after_the_listing_that_missed_it_makes_it_reused_within_that_interval() {
    let mut agent = entered();
    // An unbound connect took the port in the kernel at once, but its
    // port shows only at SYN_SENT -> ESTABLISHED, after a listing.
    const NEW_SK: u64 = 0xffff_8881_0430_6f00;
    let unbound = tuple("127.0.0.1:0", "127.0.0.1:42801");
    agent.state(
        1_400 * MS,
        NEW_SK,
        unbound,
        (Close, SynSent),
        TaskContext::Process,
    );
    assert!(agent.listing(1_500 * MS, &[]).ended.is_empty());
    let outcome = agent.state(
        1_600 * MS,
        NEW_SK,
        client(),
        (SynSent, Established),
        TaskContext::Softirq,
    );
    let [ended] = outcome.ended.as_slice() else {
        panic!("{outcome:?}");
    };
    assert_eq!(ended.end, TimeWaitEnd::Reused);
    assert_eq!(ended.ended_within_ns, (500 * MS, 1_500 * MS));
    assert_eq!(
        agent.listing(2_500 * MS, &[]),
        TimeWaitOutcome::default(),
        "ended once"
    );
}

#[test]
fn a_claim_after_its_timer_was_due_is_an_expiry() {
    // Listed at 500 ms, due at 60 s: a client reconnecting from the same
    // port at 61 s finds the tuple free (or its timer run out).
    let mut agent = entered();
    const NEW_SK: u64 = 0xffff_8881_0430_6f00;
    agent.state(
        61 * S,
        NEW_SK,
        client(),
        (Close, SynSent),
        TaskContext::Process,
    );
    let outcome = agent.listing(62 * S, &[]);
    assert_eq!(outcome.ended[0].end, TimeWaitEnd::Expired);
    assert_eq!(outcome.ended[0].ended_within_ns, (59_989 * MS, 61 * S));
}

#[test]
fn the_same_tuple_in_two_namespaces_is_two_sockets_each_judged_by_its_own_listing() {
    let mut agent = entered();
    agent.listing_in(TEST_NETNS + 1, 0, &[]);
    let other = agent.listing_in(
        TEST_NETNS + 1,
        600 * MS,
        &[(elsewhere(client()), TimeWait, 60_000)],
    );
    assert!(other.entered.is_empty() && other.ended.is_empty());
    assert_eq!(agent.tracker.sockets().count(), 2);
    // Two listings of the first namespace without its socket end it; the
    // other namespace's socket, on the same 4-tuple, stays.
    agent.listing(1000 * MS, &[]);
    let ended = agent.listing(1500 * MS, &[]).ended;
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].socket.tuple, client());
    let left: Vec<_> = agent.tracker.sockets().map(|s| s.tuple).collect();
    assert_eq!(left, vec![elsewhere(client())]);
}

#[test]
fn a_namespace_deleted_ends_its_sockets_by_teardown_unless_their_timer_was_due() {
    let mut agent = entered();
    let server_side = elsewhere(server());
    agent.listing_in(TEST_NETNS + 1, 400 * MS, &[(server_side, TimeWait, 100)]);
    let outcome = agent.tracker.tear_down(TEST_NETNS, 2 * S);
    assert_eq!(outcome.ended.len(), 1);
    let ended = &outcome.ended[0];
    assert_eq!(ended.end, TimeWaitEnd::Teardown);
    assert_eq!(
        ended.ended_within_ns,
        (500 * MS, 2 * S),
        "after its last listing"
    );
    assert_eq!(ended.lifetime_ns(), Some(1250 * MS - 11 * MS));
    let outcome = agent.tracker.tear_down(TEST_NETNS + 1, 2 * S);
    assert_eq!(outcome.ended[0].end, TimeWaitEnd::Expired, "due at 500 ms");
    assert_eq!(agent.tracker.sockets().count(), 0);
}

#[test]
fn entries_of_a_namespace_never_listed_are_dropped_at_teardown_and_counted() {
    let mut agent = Agent::default();
    agent.connect(0);
    agent.client_closes(5 * MS, 5 * MS);
    let outcome = agent.tracker.tear_down(TEST_NETNS, S);
    assert!(outcome.ended.is_empty() && outcome.entered.is_empty());
    assert_eq!(agent.tracker.stats().never_listed, 1);
}
