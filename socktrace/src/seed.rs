//! The sockets that exist now, with owners: what the table starts from.
use std::path::Path;

use crate::{
    proc_owners::socket_owners,
    sock_diag::{DumpRequest, SockDiagError, dump},
    table::{SeedKind, SeedSocket},
    tcp_state::TcpState,
};

/// Which existing sockets to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Every socket, as `ss -tan` lists them.
    All,
    /// All but those in TIME-WAIT: what the socket table keeps. On a busy
    /// host they are most of the sockets, and never make a transition.
    WithoutTimeWait,
}

/// Lists this network namespace's TCP sockets (as `ss -tan` does) and finds
/// each one's owner among the processes' open files (as `ss -p` does).
/// TIME-WAIT and request sockets belong to no process.
pub fn existing_sockets(which: Existing) -> Result<Vec<SeedSocket>, SockDiagError> {
    let sockets = match which {
        Existing::All => dump(&DumpRequest::all())?,
        Existing::WithoutTimeWait => {
            let states: Vec<TcpState> = TcpState::ALL
                .into_iter()
                .filter(|&state| state != TcpState::TimeWait)
                .collect();
            dump(&DumpRequest::states(&states))?
        }
    };
    let owners = socket_owners(Path::new("/proc"));
    Ok(sockets
        .into_iter()
        .map(|socket| SeedSocket {
            owner: (socket.inode != 0)
                .then(|| owners.get(&socket.inode).copied())
                .flatten(),
            kind: if socket.is_timewait() {
                SeedKind::TimeWait
            } else if socket.state == TcpState::SynRecv && socket.inode == 0 {
                // A request socket; a Fast Open child not yet accepted
                // looks the same, and its transitions are few.
                SeedKind::Request
            } else {
                SeedKind::Full
            },
            tuple: socket.tuple,
            state: socket.state,
        })
        .collect())
}
