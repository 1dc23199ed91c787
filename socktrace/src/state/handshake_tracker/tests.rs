//! The tracker on event sequences as this kernel emits them (captured with
//! bpftrace on Linux 6.18: see PLATFORM.md and the comments below), run
//! through the socket table exactly as the agent does. `close` carries the
//! socket's `sk_err` and `sk_err_soft` as the kernel side reads them.
use super::*;
use crate::{
    kernel::event::{StateEvent, TaskContext},
    model::owner::Comm,
    model::tuple::{TEST_NETNS, elsewhere},
    state::table::SocketTable,
};

use TcpState::*;

const MS: u64 = 1_000_000;
const SK: u64 = 0xffff_8881_0430_3780;
const LISTENER: u64 = 0xffff_8881_0430_0000;

fn curl() -> Owner {
    Owner {
        pid: 4242,
        comm: Comm::from_text("curl"),
        container: None,
    }
}

fn nginx() -> Owner {
    Owner {
        pid: 77,
        comm: Comm::from_text("nginx"),
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

/// The agent's pipeline: table, then tracker.
#[derive(Default)]
struct Agent {
    table: SocketTable,
    tracker: HandshakeTracker,
}

impl Agent {
    fn state(
        &mut self,
        ts_ns: u64,
        skaddr: u64,
        tuple: SocketTuple,
        old: TcpState,
        new: TcpState,
        context: TaskContext,
    ) -> Option<Handshake> {
        self.transition(ts_ns, skaddr, tuple, (old, new), context, (0, 0))
    }

    /// `SYN_SENT -> CLOSE` with the socket's `(sk_err, sk_err_soft)`.
    fn close(
        &mut self,
        ts_ns: u64,
        tuple: SocketTuple,
        context: TaskContext,
        errors: (i32, i32),
    ) -> Option<Handshake> {
        let errors = (errors.0 as u32, errors.1 as u32);
        self.transition(ts_ns, SK, tuple, (SynSent, Close), context, errors)
    }

    fn transition(
        &mut self,
        ts_ns: u64,
        skaddr: u64,
        tuple: SocketTuple,
        (old, new): (TcpState, TcpState),
        context: TaskContext,
        (error, soft_error): (u32, u32),
    ) -> Option<Handshake> {
        let event = StateEvent {
            error,
            soft_error,
            ts_ns,
            skaddr,
            tuple,
            old_state: old,
            new_state: new,
            task: if context == TaskContext::Process {
                curl()
            } else {
                Owner {
                    pid: 0,
                    comm: Comm::from_text("swapper/1"),
                    container: None,
                }
            },
            context,
        };
        let transition = self.table.apply(&event);
        self.tracker.on_transition(&event, &transition)
    }

    fn syn_rtx(&mut self, ts_ns: u64, skaddr: u64, tuple: SocketTuple) -> Retrying {
        let signal = SocketSignal {
            ts_ns,
            skaddr,
            tuple,
        };
        let owner = self.table.by_skaddr(skaddr).and_then(|s| s.owner);
        self.tracker.on_syn_retransmit(&signal, owner)
    }

    fn reset(&mut self, ts_ns: u64, skaddr: u64, tuple: SocketTuple) {
        self.tracker.on_reset(&SocketSignal {
            ts_ns,
            skaddr,
            tuple,
        });
    }

    fn synack_rtx(&mut self, ts_ns: u64, tuple: SocketTuple, first_ns: u64) -> Retrying {
        let owner = self.table.listener_owner(tuple.netns, &tuple.local);
        self.tracker.on_synack_retransmit(
            &SynAckRetransmit {
                ts_ns,
                listener: LISTENER,
                tuple,
                first_synack_ns: Some(first_ns),
            },
            owner,
        )
    }

    fn listen(&mut self, ts_ns: u64, local: &str) {
        let event = StateEvent {
            ts_ns,
            skaddr: LISTENER,
            tuple: tuple(local, "0.0.0.0:0"),
            old_state: Close,
            new_state: Listen,
            task: nginx(),
            context: TaskContext::Process,
            error: 0,
            soft_error: 0,
        };
        self.table.apply(&event);
    }
}

const PROCESS: TaskContext = TaskContext::Process;
const SOFTIRQ: TaskContext = TaskContext::Softirq;

fn unbound() -> SocketTuple {
    tuple("127.0.0.1:0", "127.0.0.1:9999")
}

fn bound() -> SocketTuple {
    tuple("127.0.0.1:40862", "127.0.0.1:9999")
}

#[test]
fn timeout_after_two_syn_retransmits() {
    // Captured: tcp_syn_retries=1, SYN dropped by iptables.
    let mut agent = Agent::default();
    let t0 = 2_633_724 * MS;
    assert_eq!(
        agent.state(t0, SK, unbound(), Close, SynSent, PROCESS),
        None
    );
    let retry = agent.syn_rtx(t0 + 1016 * MS, SK, bound());
    assert_eq!(retry.retransmits, 1);
    assert_eq!(retry.elapsed_ns, Some(1016 * MS));
    assert_eq!(retry.owner, Some(curl()));
    agent.syn_rtx(t0 + 2040 * MS, SK, bound());
    let handshake = agent
        .close(t0 + 3064 * MS, bound(), SOFTIRQ, (libc::ETIMEDOUT, 0))
        .unwrap();
    assert_eq!(handshake.outcome, Outcome::Timeout);
    assert_eq!(handshake.errno, Some(110));
    assert_eq!(handshake.tuple, bound());
    assert_eq!(
        handshake.owner,
        Some(curl()),
        "softirq close keeps the owner"
    );
    assert_eq!(handshake.retransmits(), 2);
    assert_eq!(
        handshake.retransmit_offsets_ns(),
        Some(vec![1016 * MS, 2040 * MS])
    );
    assert_eq!(handshake.duration_ns(), Some(3064 * MS));
    assert_eq!(agent.tracker.pending(), 0);
}

#[test]
fn refused_by_a_reset_before_the_close() {
    // Captured: connect to a closed port. RST, then the close with
    // ECONNREFUSED in sk_err.
    let mut agent = Agent::default();
    let t0 = 10 * MS;
    let bound = tuple("127.0.0.1:49976", "127.0.0.1:9998");
    agent.state(
        t0,
        SK,
        tuple("127.0.0.1:0", "127.0.0.1:9998"),
        Close,
        SynSent,
        PROCESS,
    );
    agent.reset(t0 + 30_000, SK, bound);
    let handshake = agent
        .close(t0 + 31_000, bound, SOFTIRQ, (libc::ECONNREFUSED, 0))
        .unwrap();
    assert_eq!(handshake.outcome, Outcome::Refused);
    assert_eq!(handshake.errno, Some(111));
    assert_eq!(handshake.retransmits(), 0);
    assert_eq!(handshake.duration_ns(), Some(31_000));
    assert_eq!(agent.tracker.pending(), 0);
}

#[test]
fn icmp_errors_are_unreachable_even_as_connection_refused() {
    for errno in [libc::EHOSTUNREACH, libc::ENETUNREACH, libc::ECONNREFUSED] {
        let mut agent = Agent::default();
        agent.state(0, SK, unbound(), Close, SynSent, PROCESS);
        let handshake = agent.close(5 * MS, bound(), SOFTIRQ, (errno, 0)).unwrap();
        assert_eq!(handshake.outcome, Outcome::Unreachable, "errno {errno}");
        assert_eq!(handshake.errno, Some(errno as u32));
    }
}

#[test]
fn a_soft_icmp_error_the_application_gave_up_on_is_unreachable() {
    // Captured: an ICMP host unreachable that arrived while connect(2)
    // held the socket is kept in sk_err_soft; the application read it
    // with SO_ERROR and closed.
    let mut agent = Agent::default();
    agent.state(0, SK, unbound(), Close, SynSent, PROCESS);
    let handshake = agent
        .close(100_000, bound(), PROCESS, (0, libc::EHOSTUNREACH))
        .unwrap();
    assert_eq!(handshake.outcome, Outcome::Unreachable);
    assert_eq!(handshake.errno, Some(libc::EHOSTUNREACH as u32));
}

#[test]
fn a_timeout_after_a_soft_error_reports_that_error() {
    // tcp_write_err closes with sk_err_soft when there is one.
    let mut agent = Agent::default();
    agent.state(0, SK, unbound(), Close, SynSent, PROCESS);
    let handshake = agent
        .close(
            3000 * MS,
            bound(),
            SOFTIRQ,
            (libc::EHOSTUNREACH, libc::EHOSTUNREACH),
        )
        .unwrap();
    assert_eq!(handshake.outcome, Outcome::Unreachable);
}

#[test]
fn established_after_one_lost_syn() {
    let mut agent = Agent::default();
    agent.state(0, SK, unbound(), Close, SynSent, PROCESS);
    agent.syn_rtx(1000 * MS, SK, bound());
    let handshake = agent
        .state(1001 * MS, SK, bound(), SynSent, Established, SOFTIRQ)
        .unwrap();
    assert_eq!(handshake.outcome, Outcome::Established);
    assert_eq!(handshake.errno, None);
    assert_eq!(handshake.retransmit_offsets_ns(), Some(vec![1000 * MS]));
    assert_eq!(handshake.duration_ns(), Some(1001 * MS));
}

#[test]
fn application_closing_first_without_an_error_is_aborted() {
    let mut agent = Agent::default();
    agent.state(0, SK, unbound(), Close, SynSent, PROCESS);
    agent.syn_rtx(1000 * MS, SK, bound());
    let handshake = agent.close(1500 * MS, bound(), PROCESS, (0, 0)).unwrap();
    assert_eq!(handshake.outcome, Outcome::Aborted);
    assert_eq!(handshake.errno, None);
    assert_eq!(handshake.retransmits(), 1);
    assert_eq!(handshake.duration_ns(), Some(1500 * MS));
    assert_eq!(agent.tracker.pending(), 0);
}

#[test]
fn closing_before_a_port_was_bound_is_no_local_port() {
    let mut agent = Agent::default();
    agent.state(0, SK, unbound(), Close, SynSent, PROCESS);
    let handshake = agent.close(20_000, unbound(), PROCESS, (0, 0)).unwrap();
    assert_eq!(handshake.outcome, Outcome::NoLocalPort);
    assert_eq!(handshake.errno, Some(libc::EADDRNOTAVAIL as u32));
}

#[test]
fn an_attempt_begun_before_tracing_has_no_start() {
    let mut agent = Agent::default();
    let retry = agent.syn_rtx(7 * MS, SK, bound());
    assert_eq!(retry.elapsed_ns, None);
    let handshake = agent
        .close(9 * MS, bound(), SOFTIRQ, (libc::ETIMEDOUT, 0))
        .unwrap();
    assert_eq!(handshake.outcome, Outcome::Timeout);
    assert_eq!(handshake.duration_ns(), None);
    assert_eq!(handshake.retransmit_offsets_ns(), None);
    assert_eq!(handshake.retransmits(), 1);
}

#[test]
fn a_reused_address_drops_the_attempt_whose_end_was_lost() {
    let mut agent = Agent::default();
    agent.state(0, SK, unbound(), Close, SynSent, PROCESS);
    agent.state(50 * MS, SK, unbound(), Close, SynSent, PROCESS);
    assert_eq!(agent.tracker.stats().client_ends_missed, 1);
    assert_eq!(agent.tracker.pending(), 1);
}

#[test]
fn an_attempt_whose_end_was_lost_goes_at_the_sockets_next_transition() {
    let mut agent = Agent::default();
    agent.state(0, SK, unbound(), Close, SynSent, PROCESS);
    // SYN_SENT -> ESTABLISHED lost: the close is not a failed connect.
    let after = agent.state(5 * MS, SK, bound(), Established, FinWait1, PROCESS);
    assert_eq!(after, None);
    assert_eq!(agent.tracker.stats().client_ends_missed, 1);
    assert_eq!(agent.tracker.pending(), 0);

    agent.state(10 * MS, SK + 64, unbound(), Close, SynSent, PROCESS);
    let closed = agent.transition(
        20 * MS,
        SK + 64,
        bound(),
        (FinWait2, Close),
        SOFTIRQ,
        (0, 0),
    );
    assert_eq!(closed, None);
    assert_eq!(agent.tracker.stats().client_ends_missed, 2);
    assert_eq!(agent.tracker.pending(), 0);
}

fn request() -> SocketTuple {
    tuple("127.0.0.1:8080", "127.0.0.1:51000")
}

fn listed(tuple: SocketTuple, retransmits: u32) -> RequestSocket {
    RequestSocket {
        tuple,
        retransmits,
        owner: Some(nginx()),
    }
}

#[test]
fn half_open_expires_when_the_snapshot_stops_listing_it() {
    // SYN-ACKs dropped at the client: retransmits at 1 s and 3 s after the
    // first SYN-ACK, then the request socket is gone.
    let mut agent = Agent::default();
    agent.listen(0, "0.0.0.0:8080");
    let first = 100 * MS;
    let retry = agent.synack_rtx(first + 1000 * MS, request(), first);
    assert_eq!(retry.side, Side::Server);
    assert_eq!(retry.owner, Some(nginx()), "the listener's owner");
    assert_eq!(retry.elapsed_ns, Some(1000 * MS));
    assert!(
        agent
            .tracker
            .on_request_snapshot(TEST_NETNS, &[listed(request(), 1)], first + 1500 * MS)
            .is_empty()
    );
    agent.synack_rtx(first + 3000 * MS, request(), first);
    assert!(
        agent
            .tracker
            .on_request_snapshot(TEST_NETNS, &[listed(request(), 2)], first + 3500 * MS)
            .is_empty()
    );
    let expired = agent
        .tracker
        .on_request_snapshot(TEST_NETNS, &[], first + 7500 * MS);
    assert_eq!(expired.len(), 1);
    let handshake = &expired[0];
    assert_eq!(handshake.outcome, Outcome::Expired);
    assert_eq!(handshake.tuple, request());
    assert_eq!(handshake.owner, Some(nginx()));
    assert_eq!(
        handshake.retransmit_offsets_ns(),
        Some(vec![1000 * MS, 3000 * MS])
    );
    assert_eq!(handshake.duration_ns(), Some(7500 * MS));
    assert_eq!(agent.tracker.pending(), 0);
}

#[test]
fn half_open_completes_when_its_child_is_born_even_on_a_dual_stack_listener() {
    let mut agent = Agent::default();
    agent.listen(0, "[::]:8080");
    let first = 100 * MS;
    agent.synack_rtx(first + 1000 * MS, request(), first);
    agent
        .tracker
        .on_request_snapshot(TEST_NETNS, &[listed(request(), 1)], first + 1200 * MS);
    // Before Linux 6.15 the child's birth carries no remote address.
    let unborn = tuple("[::]:8080", "[::]:0");
    let child = tuple("[::ffff:127.0.0.1]:8080", "[::ffff:127.0.0.1]:51000");
    assert_eq!(
        agent.state(first + 1300 * MS, SK, unborn, Listen, SynRecv, SOFTIRQ),
        None
    );
    let handshake = agent
        .state(first + 1301 * MS, SK, child, SynRecv, Established, SOFTIRQ)
        .unwrap();
    assert_eq!(handshake.outcome, Outcome::Completed);
    assert_eq!(handshake.side, Side::Server);
    assert_eq!(handshake.tuple, child);
    assert_eq!(handshake.retransmits(), 1);
    assert_eq!(handshake.duration_ns(), Some(1301 * MS));
    assert_eq!(agent.tracker.pending(), 0);
}

#[test]
fn a_completion_after_the_snapshot_was_taken_is_not_expired_later() {
    // The dump at 1.0 s lists the request; the child is established at
    // 1.01 s, and the drain hands that over before the snapshot is applied.
    let mut agent = Agent::default();
    agent.listen(0, "0.0.0.0:8080");
    agent.state(1005 * MS, SK, request(), Listen, SynRecv, SOFTIRQ);
    let completed = agent
        .state(1010 * MS, SK, request(), SynRecv, Established, SOFTIRQ)
        .unwrap();
    assert_eq!(completed.outcome, Outcome::Completed);
    let taken = 1000 * MS;
    assert!(
        agent
            .tracker
            .on_request_snapshot(TEST_NETNS, &[listed(request(), 0)], taken)
            .is_empty()
    );
    assert_eq!(agent.tracker.pending(), 0, "not re-added as half-open");
    assert!(
        agent
            .tracker
            .on_request_snapshot(TEST_NETNS, &[], 2000 * MS)
            .is_empty()
    );
}

#[test]
fn a_quick_completion_is_reported_without_a_start() {
    let mut agent = Agent::default();
    agent.listen(0, "0.0.0.0:8080");
    assert_eq!(
        agent.state(5 * MS, SK, request(), Listen, SynRecv, SOFTIRQ),
        None
    );
    let handshake = agent
        .state(5 * MS, SK, request(), SynRecv, Established, SOFTIRQ)
        .unwrap();
    assert_eq!(handshake.outcome, Outcome::Completed);
    assert_eq!(handshake.owner, Some(nginx()));
    assert_eq!(handshake.retransmits(), 0);
    assert_eq!(handshake.duration_ns(), None);
}

#[test]
fn half_open_never_listed_is_counted_not_expired() {
    let mut agent = Agent::default();
    agent.synack_rtx(1000 * MS, request(), 0);
    assert!(
        agent
            .tracker
            .on_request_snapshot(TEST_NETNS, &[], 1200 * MS)
            .is_empty()
    );
    assert_eq!(agent.tracker.stats().server_unlisted, 1);
    assert_eq!(agent.tracker.pending(), 0);
}

#[test]
fn a_snapshot_older_than_the_last_retransmit_decides_nothing() {
    let mut agent = Agent::default();
    agent
        .tracker
        .on_request_snapshot(TEST_NETNS, &[listed(request(), 0)], 500 * MS);
    agent.synack_rtx(1000 * MS, request(), 0);
    assert!(
        agent
            .tracker
            .on_request_snapshot(TEST_NETNS, &[], 900 * MS)
            .is_empty()
    );
    assert_eq!(agent.tracker.pending(), 1);
}

#[test]
fn a_snapshot_discovers_half_open_connections_and_the_kernel_count() {
    let mut agent = Agent::default();
    agent
        .tracker
        .on_request_snapshot(TEST_NETNS, &[listed(request(), 3)], 500 * MS);
    let expired = agent
        .tracker
        .on_request_snapshot(TEST_NETNS, &[], 1500 * MS);
    assert_eq!(expired.len(), 1);
    assert_eq!(
        expired[0].retransmits(),
        3,
        "retransmits before tracing began"
    );
    assert_eq!(expired[0].owner, Some(nginx()));
    assert_eq!(expired[0].duration_ns(), None);
}

#[test]
fn a_snapshot_judges_only_its_own_namespace() {
    let mut agent = Agent::default();
    agent.synack_rtx(1000 * MS, request(), 0);
    agent.synack_rtx(1000 * MS, elsewhere(request()), 0);
    agent.tracker.on_request_snapshot(
        TEST_NETNS + 1,
        &[listed(elsewhere(request()), 1)],
        1100 * MS,
    );
    agent
        .tracker
        .on_request_snapshot(TEST_NETNS, &[listed(request(), 1)], 1100 * MS);
    assert_eq!(agent.tracker.pending(), 2, "two half-open connections");
    let expired = agent
        .tracker
        .on_request_snapshot(TEST_NETNS, &[], 5000 * MS);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].tuple, request());
    assert_eq!(agent.tracker.pending(), 1, "the other namespace's is kept");
}

#[test]
fn a_namespace_torn_down_drops_its_attempts_and_counts_them() {
    let mut agent = Agent::default();
    agent.synack_rtx(1000 * MS, elsewhere(request()), 0);
    agent.synack_rtx(1000 * MS, request(), 0);
    agent.tracker.tear_down(TEST_NETNS + 1);
    assert_eq!(agent.tracker.pending(), 1);
    assert_eq!(agent.tracker.stats().torn_down, 1);
}

/// A listener on 8080 whose connection on [`request`] completed at 0.9 s.
fn completed_at_900_ms() -> Agent {
    let mut agent = Agent::default();
    agent.listen(0, "0.0.0.0:8080");
    agent.state(890 * MS, SK, request(), Listen, SynRecv, SOFTIRQ);
    agent.state(900 * MS, SK, request(), SynRecv, Established, SOFTIRQ);
    agent
}

#[test]
fn a_request_on_the_tuple_of_a_completion_from_before_the_dump_is_new() {
    // A churn reusing its 4-tuples: the connection on the tuple completed
    // at 0.9 s, the dump began at 1.0 s, so the request it lists on that
    // tuple is the next connection, half-open.
    let mut agent = completed_at_900_ms();
    agent
        .tracker
        .on_request_snapshot(TEST_NETNS, &[listed(request(), 0)], 1000 * MS);
    assert_eq!(agent.tracker.pending(), 1, "the next connection, half-open");
}

#[test]
fn a_settle_forgets_the_completions_no_later_listing_can_show() {
    let mut agent = completed_at_900_ms();
    assert_eq!(agent.tracker.recent_completions.len(), 1);
    agent.tracker.settled();
    assert!(agent.tracker.recent_completions.is_empty());
}
