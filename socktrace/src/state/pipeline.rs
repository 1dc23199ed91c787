//! The one path every decoded record and every sock_diag listing takes: the
//! socket table, then the handshake and TIME-WAIT trackers a view asks for.
//! Every command and the agent render what it returns. Pure: no clock, no
//! kernel.
use crate::{
    host::sock_diag::DiagSocket,
    kernel::event::Event,
    model::tuple::NetnsInode,
    state::handshake_tracker::{Handshake, HandshakeTracker, Retrying, request_sockets},
    state::table::{SocketTable, Transition},
    state::time_wait_tracker::{
        ListedTimeWait, ListingTime, TimeWaitOutcome, TimeWaitTracker, listed_time_wait,
    },
};

/// Which trackers run besides the table: a view that shows neither skips
/// their cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trackers {
    pub handshakes: bool,
    pub time_wait: bool,
}

impl Trackers {
    pub const ALL: Trackers = Trackers {
        handshakes: true,
        time_wait: true,
    };
    pub const TABLE_ONLY: Trackers = Trackers {
        handshakes: false,
        time_wait: false,
    };
}

/// What one record did.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "returned by value and used at once; a box would cost an allocation per transition"
)]
pub enum Applied {
    /// A state transition as the table resolved it, the handshake it
    /// ended and what it did to TIME-WAIT (empty when those trackers are
    /// off).
    Transition {
        transition: Transition,
        handshake: Option<Handshake>,
        time_wait: TimeWaitOutcome,
    },
    /// A SYN or SYN-ACK retransmit of a handshake in progress.
    Retrying(Retrying),
    /// Taken in by the trackers (a reset received), or by none running.
    Noted,
}

/// What a listing of one namespace settled.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// Half-open connections whose request socket is gone.
    pub expired: Vec<Handshake>,
    pub time_wait: TimeWaitOutcome,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Pipeline {
    table: SocketTable,
    handshakes: HandshakeTracker,
    time_wait: TimeWaitTracker,
    trackers: Trackers,
}

impl Pipeline {
    /// Starts from a table seeded with the sockets that existed.
    pub fn new(table: SocketTable, trackers: Trackers) -> Self {
        Pipeline {
            table,
            handshakes: HandshakeTracker::new(),
            time_wait: TimeWaitTracker::new(),
            trackers,
        }
    }

    pub fn table(&self) -> &SocketTable {
        &self.table
    }

    pub fn handshakes(&self) -> &HandshakeTracker {
        &self.handshakes
    }

    pub fn time_wait(&self) -> &TimeWaitTracker {
        &self.time_wait
    }

    /// One decoded record.
    pub fn apply(&mut self, event: &Event) -> Applied {
        let Trackers {
            handshakes,
            time_wait,
        } = self.trackers;
        match event {
            Event::State(event) => {
                let transition = self.table.apply(event);
                let handshake = if handshakes {
                    self.handshakes.on_transition(event, &transition)
                } else {
                    None
                };
                let time_wait = if time_wait {
                    self.time_wait.on_transition(event, &transition)
                } else {
                    TimeWaitOutcome::default()
                };
                Applied::Transition {
                    transition,
                    handshake,
                    time_wait,
                }
            }
            Event::SynRetransmit(signal) if handshakes => {
                let owner = self.table.by_skaddr(signal.skaddr).and_then(|s| s.owner);
                Applied::Retrying(self.handshakes.on_syn_retransmit(signal, owner))
            }
            Event::SynAckRetransmit(synack) if handshakes => {
                let owner = self
                    .table
                    .listener_owner(synack.tuple.netns, &synack.tuple.local);
                Applied::Retrying(self.handshakes.on_synack_retransmit(synack, owner))
            }
            Event::ResetReceived(signal) => {
                if handshakes {
                    self.handshakes.on_reset(signal);
                }
                if time_wait {
                    self.time_wait.on_reset(signal);
                }
                Applied::Noted
            }
            Event::SynRetransmit(_) | Event::SynAckRetransmit(_) => Applied::Noted,
        }
    }

    /// One namespace's sockets as sock_diag listed them during `time`,
    /// applied once the records before the listing were: the request
    /// sockets for the handshake tracker, the timewait sockets for the
    /// TIME-WAIT tracker. The listing must hold the states the running
    /// trackers follow (SYN-RECV; TIME-WAIT and FIN-WAIT-2).
    pub fn on_listing(
        &mut self,
        netns: NetnsInode,
        sockets: &[DiagSocket],
        time: ListingTime,
    ) -> Reconciled {
        let mut reconciled = Reconciled::default();
        if self.trackers.handshakes {
            let requests = request_sockets(sockets, &self.table);
            reconciled.expired =
                self.handshakes
                    .on_request_snapshot(netns, &requests, time.began_ns);
        }
        if self.trackers.time_wait {
            reconciled.time_wait =
                self.on_time_wait_listing(netns, &listed_time_wait(sockets), time);
        }
        reconciled
    }

    /// [`Pipeline::on_listing`] for the TIME-WAIT tracker alone, from
    /// timewait sockets already picked out of the listing.
    pub fn on_time_wait_listing(
        &mut self,
        netns: NetnsInode,
        listed: &[ListedTimeWait],
        time: ListingTime,
    ) -> TimeWaitOutcome {
        self.time_wait.on_listing(netns, listed, time)
    }

    /// After every drain and the listing it was for (see
    /// `Consumer::settle`).
    pub fn settled(&mut self) {
        self.handshakes.settled();
    }

    /// Namespace `netns` is gone, found so at `now_ns`: what is left of it
    /// goes, counted.
    pub fn tear_down(&mut self, netns: NetnsInode, now_ns: u64) -> TimeWaitOutcome {
        self.table.tear_down(netns);
        self.handshakes.tear_down(netns);
        self.time_wait.tear_down(netns, now_ns)
    }
}
