//! The sockets that exist now, with owners: what the table starts from.
use std::path::Path;

use crate::{
    host::namespaces::{DumpError, Namespaces},
    host::proc_owners::{OwnersError, socket_owners},
    host::sock_diag::DumpRequest,
    model::tcp_state::TcpState,
    state::table::{SeedKind, SeedSocket},
    support::error_line::ErrorLine,
};

/// Why the existing sockets could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Dump(#[from] DumpError),
    #[error("reading the sockets' owners")]
    Owners(#[source] OwnersError),
}

/// Which existing sockets to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Every socket, as `ss -tan` lists them.
    All,
    /// All but those in TIME-WAIT: what the socket table keeps. On a busy
    /// host they are most of the sockets, and never make a transition.
    WithoutTimeWait,
}

/// The sockets of `listed` that `which` asks for: all, or all but those in
/// TIME-WAIT (as the kernel's state filter leaves them out: an orphan's
/// timewait socket in FIN-WAIT-2 stays).
pub fn keep(mut listed: Vec<SeedSocket>, which: Existing) -> Vec<SeedSocket> {
    if which == Existing::WithoutTimeWait {
        listed.retain(|socket| socket.state != TcpState::TimeWait);
    }
    listed
}

/// Lists the TCP sockets of every namespace followed (as `ss -tan` does in
/// each) and finds each one's owner among the processes' open files (as
/// `ss -p` does; socket inodes are unique across namespaces). TIME-WAIT and
/// request sockets belong to no process. A namespace that cannot be listed
/// is left out with a warning; it is an error only when none can be, or
/// when /proc cannot be read.
pub fn existing_sockets(
    namespaces: &mut Namespaces,
    which: Existing,
) -> Result<Vec<SeedSocket>, SeedError> {
    let request = match which {
        Existing::All => DumpRequest::all(),
        Existing::WithoutTimeWait => {
            let states: Vec<TcpState> = TcpState::ALL
                .into_iter()
                .filter(|&state| state != TcpState::TimeWait)
                .collect();
            DumpRequest::states(&states)
        }
    };
    let mut sockets = Vec::new();
    let mut first_error = None;
    let mut listed_any = false;
    for dump in namespaces.dump_each(&request) {
        match dump {
            Ok(dump) => {
                listed_any = true;
                sockets.extend(dump.sockets);
            }
            Err(error) => {
                log::warn!("existing sockets: {}", ErrorLine(&error));
                first_error.get_or_insert(error);
            }
        }
    }
    if let (false, Some(error)) = (listed_any, first_error) {
        return Err(error.into());
    }
    let owners = socket_owners(Path::new("/proc")).map_err(SeedError::Owners)?;
    Ok(sockets
        .into_iter()
        .map(|socket| SeedSocket {
            owner: (socket.inode != 0)
                .then(|| owners.get(&socket.inode).cloned())
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
