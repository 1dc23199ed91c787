//! CLOSE-WAIT watch: connections the peer closed while the application
//! never closed its side. A socket stays in `CLOSE_WAIT` until the
//! application calls close(2) or shutdown(2); one that stays longer than a
//! threshold is reported once with its owner and age, and again when it
//! finally leaves. Pure: transitions and an explicit `now` in.
use std::collections::HashMap;

use crate::{
    model::owner::Owner,
    model::tcp_state::TcpState,
    model::tuple::{NetnsInode, SocketTuple},
    state::table::{SocketId, TrackedSocket, Transition},
};

/// A socket in CLOSE-WAIT.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Waiting {
    tuple: SocketTuple,
    owner: Option<Owner>,
    /// When it entered CLOSE-WAIT; `None` when it was already there at
    /// start-up.
    since_ns: Option<u64>,
    reported: bool,
}

/// What is reported about a CLOSE-WAIT socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseWaitStatus {
    /// Over the threshold and still there.
    Stuck,
    /// Left CLOSE-WAIT after having been reported stuck.
    Closed,
}

impl CloseWaitStatus {
    pub fn name(self) -> &'static str {
        match self {
            CloseWaitStatus::Stuck => "stuck",
            CloseWaitStatus::Closed => "closed",
        }
    }
}

/// One report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseWaitReport {
    pub at_ns: u64,
    pub status: CloseWaitStatus,
    pub id: SocketId,
    pub tuple: SocketTuple,
    pub owner: Option<Owner>,
    /// Time in CLOSE-WAIT so far (or in all, once closed).
    pub age_ns: u64,
    /// The socket was in CLOSE-WAIT before tracing began: `age_ns` counts
    /// from then and is a lower bound.
    pub age_is_lower_bound: bool,
}

/// CLOSE-WAIT sockets now, for summaries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloseWaitCounts {
    pub waiting: u64,
    /// Over the threshold.
    pub stuck: u64,
    /// Age of the oldest (a lower bound if it predates tracing).
    pub oldest_ns: Option<u64>,
}

/// The CLOSE-WAIT sockets being watched.
#[derive(Debug)]
pub struct CloseWaitWatch {
    threshold_ns: u64,
    /// When tracing began: the age origin of sockets already waiting then.
    started_ns: u64,
    /// The socket table's sockets in CLOSE-WAIT: bounded by the kernel's.
    waiting: HashMap<SocketId, Waiting>,
}

impl CloseWaitWatch {
    pub fn new(threshold_ns: u64, started_ns: u64) -> Self {
        CloseWaitWatch {
            threshold_ns,
            started_ns,
            waiting: HashMap::new(),
        }
    }

    /// Takes in the sockets already in CLOSE-WAIT at start-up.
    pub fn seed<'a>(&mut self, existing: impl IntoIterator<Item = &'a TrackedSocket>) {
        for socket in existing {
            if socket.state == TcpState::CloseWait {
                self.waiting.insert(
                    socket.id,
                    Waiting {
                        tuple: socket.tuple,
                        owner: socket.owner.clone(),
                        since_ns: None,
                        reported: false,
                    },
                );
            }
        }
    }

    /// One transition, after the socket table applied it: a report when a
    /// socket reported stuck leaves CLOSE-WAIT.
    pub fn on_transition(&mut self, t: &Transition) -> Option<CloseWaitReport> {
        if t.new_state == TcpState::CloseWait {
            self.waiting.insert(
                t.id,
                Waiting {
                    tuple: t.tuple,
                    owner: t.owner.clone(),
                    since_ns: Some(t.ts_ns),
                    reported: false,
                },
            );
            return None;
        }
        if t.old_state != TcpState::CloseWait {
            return None;
        }
        let waiting = self.waiting.remove(&t.id)?;
        waiting.reported.then(|| {
            // The application acted at last: the closing task owns it.
            let owner = t.owner.clone().or_else(|| waiting.owner.clone());
            self.report(t.id, &waiting, t.ts_ns, CloseWaitStatus::Closed, owner)
        })
    }

    /// Sockets that crossed the threshold since the last call.
    pub fn check(&mut self, now_ns: u64) -> Vec<CloseWaitReport> {
        let (threshold, started) = (self.threshold_ns, self.started_ns);
        let mut reports = Vec::new();
        for (&id, waiting) in &mut self.waiting {
            let since = waiting.since_ns.unwrap_or(started);
            if !waiting.reported && now_ns.saturating_sub(since) >= threshold {
                waiting.reported = true;
                reports.push((id, waiting.clone()));
            }
        }
        reports.sort_by_key(|(id, _)| *id);
        reports
            .into_iter()
            .map(|(id, w)| self.report(id, &w, now_ns, CloseWaitStatus::Stuck, w.owner.clone()))
            .collect()
    }

    /// Forgets the sockets of a network namespace that is gone.
    pub fn tear_down(&mut self, netns: NetnsInode) {
        self.waiting
            .retain(|_, waiting| waiting.tuple.netns != netns);
    }

    pub fn counts(&self, now_ns: u64) -> CloseWaitCounts {
        let ages = self
            .waiting
            .values()
            .map(|w| now_ns.saturating_sub(w.since_ns.unwrap_or(self.started_ns)));
        CloseWaitCounts {
            waiting: self.waiting.len() as u64,
            stuck: self.waiting.values().filter(|w| w.reported).count() as u64,
            oldest_ns: ages.max(),
        }
    }

    fn report(
        &self,
        id: SocketId,
        waiting: &Waiting,
        at_ns: u64,
        status: CloseWaitStatus,
        owner: Option<Owner>,
    ) -> CloseWaitReport {
        CloseWaitReport {
            at_ns,
            status,
            id,
            tuple: waiting.tuple,
            owner,
            age_ns: at_ns.saturating_sub(waiting.since_ns.unwrap_or(self.started_ns)),
            age_is_lower_bound: waiting.since_ns.is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        kernel::event::{StateEvent, TaskContext},
        model::owner::Comm,
        state::table::{SeedKind, SeedSocket, SocketTable},
    };
    use TcpState::*;

    const S: u64 = 1_000_000_000;
    const SERVER_SK: u64 = 0xffff_8881_0430_1280;

    fn nginx() -> Owner {
        Owner {
            pid: 77,
            comm: Comm::from_text("nginx"),
            container: None,
        }
    }

    fn server() -> SocketTuple {
        SocketTuple {
            netns: crate::model::tuple::TEST_NETNS,
            local: "10.0.0.2:80".parse().unwrap(),
            remote: "10.0.0.9:50000".parse().unwrap(),
        }
    }

    fn apply(table: &mut SocketTable, ts_ns: u64, (old, new): (TcpState, TcpState)) -> Transition {
        let (task, context) = match new {
            // The peer's FIN arrives in softirq.
            CloseWait => (
                Owner {
                    pid: 0,
                    comm: Comm::from_text("swapper/0"),
                    container: None,
                },
                TaskContext::Softirq,
            ),
            _ => (nginx(), TaskContext::Process),
        };
        table.apply(&StateEvent {
            ts_ns,
            skaddr: SERVER_SK,
            tuple: server(),
            old_state: old,
            new_state: new,
            task,
            context,
            error: 0,
            soft_error: 0,
        })
    }

    #[test]
    fn a_socket_left_in_close_wait_is_reported_once_then_when_it_closes() {
        let mut table = SocketTable::new();
        let mut watch = CloseWaitWatch::new(60 * S, 0);
        apply(&mut table, S, (Close, SynSent));
        let established = apply(&mut table, S, (SynSent, Established));
        assert_eq!(watch.on_transition(&established), None);
        let peer_closed = apply(&mut table, 2 * S, (Established, CloseWait));
        assert_eq!(watch.on_transition(&peer_closed), None);
        assert!(
            watch.check(61 * S).is_empty(),
            "59 s is under the threshold"
        );
        let [stuck] = watch.check(62 * S).try_into().unwrap();
        assert_eq!(stuck.status, CloseWaitStatus::Stuck);
        assert_eq!(stuck.age_ns, 60 * S);
        assert_eq!(stuck.owner, Some(nginx()), "the owner, not the softirq");
        assert!(!stuck.age_is_lower_bound);
        assert!(watch.check(100 * S).is_empty(), "reported once");
        assert_eq!(watch.counts(100 * S).stuck, 1);
        let closed = apply(&mut table, 130 * S, (CloseWait, LastAck));
        let report = watch.on_transition(&closed).unwrap();
        assert_eq!(report.status, CloseWaitStatus::Closed);
        assert_eq!(report.age_ns, 128 * S);
        assert_eq!(watch.counts(130 * S), CloseWaitCounts::default());
    }

    #[test]
    fn a_socket_closed_in_time_is_never_reported() {
        let mut table = SocketTable::new();
        let mut watch = CloseWaitWatch::new(S, 0);
        apply(&mut table, 0, (Close, SynSent));
        apply(&mut table, 0, (SynSent, Established));
        watch.on_transition(&apply(&mut table, S / 2, (Established, CloseWait)));
        assert!(watch.check(S).is_empty());
        assert_eq!(
            watch.on_transition(&apply(&mut table, S, (CloseWait, LastAck))),
            None
        );
        assert!(watch.check(10 * S).is_empty());
    }

    #[test]
    fn a_socket_waiting_since_before_start_counts_its_age_from_start() {
        let mut table = SocketTable::new();
        let existing = table.seed(
            [SeedSocket {
                tuple: server(),
                state: CloseWait,
                kind: SeedKind::Full,
                owner: Some(nginx()),
            }],
            0,
        );
        let mut watch = CloseWaitWatch::new(5 * S, 10 * S);
        watch.seed(&existing);
        let [stuck] = watch.check(15 * S).try_into().unwrap();
        assert_eq!(stuck.age_ns, 5 * S);
        assert!(stuck.age_is_lower_bound);
        assert_eq!(stuck.owner, Some(nginx()));
        assert_eq!(watch.counts(20 * S).oldest_ns, Some(10 * S));
        let closed = watch.on_transition(&apply(&mut table, 20 * S, (CloseWait, LastAck)));
        assert_eq!(closed.unwrap().id, existing[0].id);
    }
}
