//! A probe's connection among the host's records, as this kernel emits
//! them: its first SYN names its socket, then retransmits, a RST and the
//! closing transition tell how it went.
use super::*;
use crate::{
    kernel::event::{SocketSignal, StateEvent, TaskContext},
    model::owner::{Comm, Owner},
    model::tuple::{SocketTuple, TEST_NETNS},
    state::pipeline::Trackers,
    state::table::SocketTable,
};

use TcpState::*;

const MS: u64 = 1_000_000;
const SK: u64 = 0xffff_8881_0430_3780;
const PID: u32 = 4242;
const START: u64 = 5_000 * MS;

fn remote() -> SocketAddr {
    "10.0.0.5:8080".parse().unwrap()
}

fn local() -> SocketAddr {
    "10.0.0.1:43210".parse().unwrap()
}

fn tuple(local: SocketAddr) -> SocketTuple {
    SocketTuple {
        netns: TEST_NETNS,
        local,
        remote: remote(),
    }
}

fn state(ts_ns: u64, pid: u32, (old, new): (TcpState, TcpState), error: i32) -> Event {
    // The first SYN's transition comes before a port is bound.
    let local = if old == Close {
        "10.0.0.1:0".parse().unwrap()
    } else {
        local()
    };
    Event::State(StateEvent {
        ts_ns,
        skaddr: SK,
        tuple: tuple(local),
        old_state: old,
        new_state: new,
        task: Owner {
            pid,
            comm: Comm::from_text("socktrace"),
            container: None,
        },
        context: if new == Established {
            TaskContext::Softirq
        } else {
            TaskContext::Process
        },
        error: error as u32,
        soft_error: 0,
    })
}

fn signal(ts_ns: u64) -> SocketSignal {
    SocketSignal {
        ts_ns,
        skaddr: SK,
        tuple: tuple(local()),
    }
}

struct Probe {
    watch: Watch,
    pipeline: Pipeline,
    steps: Vec<Step>,
}

impl Probe {
    fn new() -> Self {
        Probe {
            watch: Watch::new(remote(), Some(local()), PID, TEST_NETNS),
            pipeline: Pipeline::new(SocketTable::new(), Trackers::ALL),
            steps: Vec::new(),
        }
    }

    /// Hands `event` over as the tracer does: only if it concerns the watch.
    fn read(&mut self, event: Event) -> bool {
        let concerns = self.watch.concerns(&event);
        if concerns && let Some(step) = self.watch.observe(event, &mut self.pipeline) {
            self.steps.push(step);
        }
        concerns
    }

    fn whats(&self) -> Vec<(Option<u64>, What)> {
        self.steps
            .iter()
            .map(|step| (step.at_ns.map(|ns| ns / MS), step.what.clone()))
            .collect()
    }
}

#[test]
fn a_connection_answered_after_a_retransmit_is_reachable_with_its_handshake_time() {
    let mut probe = Probe::new();
    probe.read(state(START, PID, (Close, SynSent), 0));
    probe.read(Event::SynRetransmit(signal(START + 1_000 * MS)));
    assert!(!probe.watch.done());
    probe.read(state(START + 1_003 * MS, 0, (SynSent, Established), 0));
    probe.watch.connect_returned(None);
    assert_eq!(
        probe.whats(),
        [
            (
                Some(0),
                What::SynSent {
                    local: Some(local())
                }
            ),
            (Some(1_000), What::SynRetransmit { count: 1 }),
            (Some(1_003), What::Established),
        ]
    );
    assert!(probe.watch.done());
    assert_eq!(probe.watch.verdict(), Verdict::Reachable);
    assert_eq!(probe.watch.handshake_ns(), Some(1_003 * MS));
    assert_eq!(probe.watch.retransmits(), 1);
    // The close that follows is not part of the handshake.
    assert!(!probe.read(state(START + 2_000 * MS, PID, (Established, FinWait1), 0)));
}

#[test]
fn a_reset_is_a_refusal_told_once() {
    let mut probe = Probe::new();
    probe.read(state(START, PID, (Close, SynSent), 0));
    probe.read(Event::ResetReceived(signal(START + MS / 2)));
    probe.read(state(
        START + MS / 2,
        PID,
        (SynSent, Close),
        libc::ECONNREFUSED,
    ));
    probe.watch.connect_returned(Some(libc::ECONNREFUSED));
    assert_eq!(
        probe.whats(),
        [
            (
                Some(0),
                What::SynSent {
                    local: Some(local())
                }
            ),
            (Some(0), What::ResetReceived),
        ]
    );
    assert_eq!(probe.watch.verdict(), Verdict::Refused);
    assert_eq!(probe.watch.errno(), Some(libc::ECONNREFUSED as u32));
    assert_eq!(probe.watch.failed_unseen(), None, "its SYN was seen");
}

#[test]
fn an_icmp_error_is_unreachable_with_its_kind() {
    let mut probe = Probe::new();
    probe.read(state(START, PID, (Close, SynSent), 0));
    probe.read(state(
        START + 3 * MS,
        PID,
        (SynSent, Close),
        libc::EHOSTUNREACH,
    ));
    let errno = Some(libc::EHOSTUNREACH as u32);
    assert_eq!(
        probe.whats()[1],
        (
            Some(3),
            What::Failed {
                outcome: Outcome::Unreachable,
                errno
            }
        )
    );
    assert_eq!(probe.watch.verdict(), Verdict::Unreachable);
    assert_eq!(
        error_kind(libc::EHOSTUNREACH as u32),
        "ICMP host unreachable or administratively prohibited"
    );
}

#[test]
fn giving_up_is_a_timeout_and_the_close_it_causes_is_not_told() {
    let mut probe = Probe::new();
    probe.read(state(START, PID, (Close, SynSent), 0));
    probe.read(Event::SynRetransmit(signal(START + 1_000 * MS)));
    probe.read(Event::SynRetransmit(signal(START + 3_000 * MS)));
    let gave_up = probe.watch.gave_up(START + 5_000 * MS);
    assert_eq!(gave_up.at_ns, Some(5_000 * MS));
    assert_eq!(gave_up.what, What::GaveUp { retransmits: 2 });
    probe.read(state(START + 5_001 * MS, PID, (SynSent, Close), 0));
    assert_eq!(
        probe.steps.len(),
        3,
        "SYN and two retransmits: {:?}",
        probe.steps
    );
    assert!(probe.watch.done());
    assert_eq!(probe.watch.verdict(), Verdict::Timeout);
}

#[test]
fn other_sockets_records_are_passed_over() {
    let mut probe = Probe::new();
    assert!(
        !probe.read(state(START, PID + 1, (Close, SynSent), 0)),
        "another process"
    );
    let Event::State(mut elsewhere) = state(START, PID, (Close, SynSent), 0) else {
        unreachable!()
    };
    elsewhere.tuple.netns = TEST_NETNS + 1;
    assert!(
        !probe.read(Event::State(elsewhere.clone())),
        "another namespace"
    );
    elsewhere.tuple.netns = TEST_NETNS;
    elsewhere.tuple.remote = "10.0.0.6:8080".parse().unwrap();
    assert!(!probe.read(Event::State(elsewhere)), "another remote");
    assert!(
        !probe.read(Event::SynRetransmit(signal(START))),
        "before its first SYN"
    );
    assert!(probe.steps.is_empty());
}

#[test]
fn a_connect_that_failed_unseen_says_no_syn_left_and_its_errno_decides() {
    let mut probe = Probe::new();
    probe.watch.connect_returned(Some(libc::ENETUNREACH));
    assert_eq!(
        probe.watch.failed_unseen(),
        Some(Step {
            at_ns: None,
            what: What::NotSent {
                errno: libc::ENETUNREACH
            }
        })
    );
    assert!(probe.watch.done());
    assert_eq!(probe.watch.verdict(), Verdict::Unreachable);
    let mut refused = Probe::new();
    refused.watch.connect_returned(Some(libc::ECONNREFUSED));
    assert_eq!(
        refused.watch.verdict(),
        Verdict::Refused,
        "records lost: connect() decides"
    );
}

#[test]
fn an_error_connect_read_before_the_kernel_closed_is_told_from_connect() {
    // An ICMP error taken while connect() held the socket is a soft error;
    // SO_ERROR hands it over and clears it, and the probe's close of the
    // failed socket then carries none.
    let mut probe = Probe::new();
    probe.read(state(START, PID, (Close, SynSent), 0));
    probe.watch.connect_returned(Some(libc::ECONNREFUSED));
    probe.read(state(START + MS, PID, (SynSent, Close), 0));
    let errno = Some(libc::ECONNREFUSED as u32);
    assert_eq!(
        probe.whats()[1],
        (
            Some(1),
            What::Failed {
                outcome: Outcome::Unreachable,
                errno
            }
        )
    );
    assert_eq!(
        probe.watch.verdict(),
        Verdict::Unreachable,
        "no RST: an ICMP port unreachable"
    );
    assert_eq!(
        error_kind(libc::ECONNREFUSED as u32),
        "ICMP port unreachable"
    );
}
