//! One socket as `socktrace ss` lists it: what sock_diag reports now (the
//! same set of sockets `ss -tan` lists), with what only the tracer knows.
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::{
    host::sock_diag::DiagTimer, model::owner::Owner, model::tcp_state::TcpState,
    model::tuple::NetnsInode,
};

/// A listed socket. The agent sends these to its clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedSocket {
    pub netns: NetnsInode,
    /// As sock_diag reports it: request sockets `SYN_RECV`, timewait
    /// sockets their substate.
    pub state: TcpState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// An IPv6 socket with `IPV6_V6ONLY`: ss prints its wildcard `[::]`,
    /// not `*`.
    pub v6only: bool,
    /// `ss` Recv-Q: bytes not yet read; for a listener, connections waiting
    /// to be accepted. `None` where only a dump tells and none was made (a
    /// replay: see [`crate::state::live::LiveState::known_listing`]).
    pub recv_queue: Option<u32>,
    /// `ss` Send-Q: bytes not yet acknowledged; for a listener, its
    /// backlog. `None` as `recv_queue`.
    pub send_queue: Option<u32>,
    /// The pending timer, as `ss -o` prints it; `None` as `recv_queue`.
    pub timer: Option<DiagTimer>,
    /// The process that acted on it last (for a timewait socket, the closed
    /// connection's; for a half-open one, its listener's).
    pub owner: Option<Owner>,
    /// Time in its current state, when the tracer saw it enter that state.
    /// For a timewait socket: its age since the connection closed.
    pub in_state_ns: Option<u64>,
    /// SYN (SYN-SENT) or SYN-ACK (SYN-RECV) retransmits so far, for a
    /// handshake in progress.
    pub retries: Option<u32>,
}

impl ListedSocket {
    /// Whether this is an IPv4 socket (IPv4-mapped addresses belong to an
    /// IPv6 socket, as `ss -6` shows them).
    pub fn is_ipv4(&self) -> bool {
        self.local.is_ipv4()
    }
}
