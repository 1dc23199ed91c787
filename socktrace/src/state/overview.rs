//! What `socktrace top` shows of one moment: sockets per state, counters
//! that only grow (the viewer turns them into rates), and the remote
//! addresses and subnets holding or opening the most connections. The agent
//! sends it over its socket; an in-process tracer builds it the same way.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::model::tcp_state::TcpState;

/// One moment of the live state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// When it was taken (CLOCK_MONOTONIC, nanoseconds).
    pub at_ns: u64,
    /// Sockets in each state now, by [`TcpState::index`]: full sockets from
    /// the table, TIME-WAIT sockets (and orphans in FIN-WAIT-2) from the
    /// TIME-WAIT tracker, half-open connections in SYN-RECV from the
    /// handshake tracker.
    pub states: [u64; TcpState::COUNT],
    /// Counts since the tracer started.
    pub totals: Totals,
    /// Remote addresses by connections held now, most first: counted over
    /// the live sockets, exact.
    pub top_remotes: Vec<RemoteCount>,
    /// Remote /24 (IPv4) or /64 (IPv6) subnets by connections held now,
    /// most first.
    pub top_subnets: Vec<RemoteCount>,
    /// Remote subnets by connections opened in the last `window_secs`
    /// seconds, most first.
    pub top_opening_subnets: Vec<RemoteCount>,
    /// The span [`Overview::top_opening_subnets`] counts over.
    pub window_secs: u64,
    /// Subnets that span merged beyond what it keeps per second, their
    /// opens in no count (see [`crate::state::opening_window`]).
    #[serde(default)]
    pub opening_subnets_merged: u64,
}

impl Overview {
    /// Sockets in `state` now.
    pub fn count(&self, state: TcpState) -> u64 {
        self.states[state.index()]
    }
}

/// Counters that only grow while the tracer runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Connections opened: connect(2) calls and accepted handshakes.
    pub new_connections: u64,
    /// Handshake attempts that did not end established or completed.
    pub handshake_failures: u64,
    /// Connections closed into TIME-WAIT.
    pub time_wait_entries: u64,
    /// Records the kernel could not hand over (ring buffer full).
    pub lost_events: u64,
}

/// A remote address or subnet and its connections.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteCount {
    /// An address (`192.0.2.7`) or a subnet (`192.0.2.0/24`).
    pub remote: String,
    /// Sockets with that remote end (listeners excluded), or connections
    /// opened, as the list says.
    pub count: u64,
}

/// Remote address of a connection, for [`RemoteCount::remote`].
pub fn remote_label(addr: IpAddr) -> String {
    addr.to_canonical().to_string()
}
