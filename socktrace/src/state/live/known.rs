//! The sockets as the live state knows them without a dump of its own
//! (`socktrace replay FILE ss --at TIME`).
use std::collections::HashMap;

use super::LiveState;
use crate::{
    host::sock_diag::{DiagSocket, DiagTimer},
    model::tcp_state::TcpState,
    model::tuple::SocketTuple,
    state::handshake_tracker::{InProgress, Side},
    state::listed_socket::ListedSocket,
};

/// `TCP_TIMEWAIT_LEN`: a timewait socket's timer when no listing showed
/// it yet.
const TIME_WAIT_LEN_NS: u64 = 60_000_000_000;

impl LiveState {
    /// The sockets at `now_ns`: the table's full sockets, the timewait
    /// sockets and half-open connections the trackers follow, and each
    /// listener with its queues as `listeners` (the last listing's) showed
    /// them. What only a dump at `now_ns` could tell, the other queues and
    /// timers, is unknown (`None`); timewait and request sockets hold no
    /// data, and their timers are the tracker's.
    pub fn known_listing(&self, listeners: &[DiagSocket], now_ns: u64) -> Vec<ListedSocket> {
        let age = |since: Option<u64>| since.map(|since| now_ns.saturating_sub(since));
        let listeners: HashMap<SocketTuple, &DiagSocket> = listeners
            .iter()
            .filter(|socket| socket.state == TcpState::Listen)
            .map(|socket| (socket.tuple.canonical(), socket))
            .collect();
        let attempts: HashMap<(Side, SocketTuple), InProgress> = self
            .pipeline
            .handshakes()
            .in_progress()
            .map(|attempt| ((attempt.side, attempt.tuple), attempt))
            .collect();
        let mut known = Vec::new();
        for socket in self.pipeline.table().sockets() {
            let tuple = socket.tuple.canonical();
            let listener = listeners
                .get(&tuple)
                .filter(|_| socket.state == TcpState::Listen);
            let attempt = attempts
                .get(&(Side::Client, tuple))
                .filter(|_| socket.state == TcpState::SynSent);
            known.push(ListedSocket {
                netns: tuple.netns,
                state: socket.state,
                local: socket.tuple.local,
                remote: socket.tuple.remote,
                v6only: listener.is_some_and(|l| l.v6only),
                recv_queue: listener.map(|l| l.recv_queue),
                send_queue: listener.map(|l| l.send_queue),
                timer: None,
                owner: socket.owner,
                in_state_ns: age(socket.state_since_ns).or_else(|| age(attempt?.started_ns)),
                retries: attempt.map(|a| a.retransmits),
            });
        }
        for socket in self.pipeline.time_wait().sockets() {
            let due_ns = socket
                .due_ns
                .or_else(|| Some(socket.entered_ns? + TIME_WAIT_LEN_NS));
            known.push(ListedSocket {
                netns: socket.tuple.netns,
                state: socket.substate.unwrap_or(TcpState::TimeWait),
                local: socket.tuple.local,
                remote: socket.tuple.remote,
                v6only: false,
                recv_queue: Some(0),
                send_queue: Some(0),
                timer: Some(DiagTimer::TimeWait {
                    expires_ms: due_ns.map_or(0, |due| {
                        (due.saturating_sub(now_ns) / 1_000_000).min(u64::from(u32::MAX)) as u32
                    }),
                }),
                owner: socket.owner.clone(),
                in_state_ns: age(socket.entered_ns),
                retries: None,
            });
        }
        for attempt in attempts.values().filter(|a| a.side == Side::Server) {
            known.push(ListedSocket {
                netns: attempt.tuple.netns,
                state: TcpState::SynRecv,
                local: attempt.tuple.local,
                remote: attempt.tuple.remote,
                v6only: false,
                recv_queue: Some(0),
                send_queue: Some(0),
                timer: None,
                owner: attempt.owner.clone(),
                in_state_ns: age(attempt.started_ns),
                retries: Some(attempt.retransmits),
            });
        }
        known.sort_by_key(|s| (s.netns, s.state.index(), s.local, s.remote));
        known
    }
}
