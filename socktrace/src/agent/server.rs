//! The agent's Unix socket. Only root, and the members of one group if the
//! operator names it, may talk to the agent: the socket file is mode 0600
//! (0660 with a group, owned by it), the directory the agent creates for it
//! is closed the same way, and every peer's credentials (`SO_PEERCRED`)
//! are checked again on accept, so a copied or re-permissioned socket does
//! not open the agent to everyone. Clients are bounded: [`MAX_CLIENTS`] at
//! once (those beyond wait in the listen backlog, and their own deadline
//! tells them the agent is overloaded), each with a deadline to send its
//! request and one to read its answer.
use std::{
    fs,
    io::ErrorKind,
    os::unix::fs::{FileTypeExt, PermissionsExt, chown},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::net::{UnixListener, UnixStream};

use crate::{
    agent::connection_slots::{ConnectionSlots, WARNING_EVERY_NS},
    agent::live_consumer::{Answer, Answers},
    agent::protocol::{self, MAX_REQUEST_BYTES, PathTooLong, ProtocolError, Request, Response},
    support::clock::monotonic_now_ns,
    support::error_line::ErrorLine,
    support::log_throttle::LogThrottle,
};

/// Clients served at once; those beyond are not accepted until one is done
/// (they wait in the listen backlog). Each holds a file descriptor.
pub const MAX_CLIENTS: usize = 64;

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client may go without reading any of its answer; one that
/// stops is dropped, and the memory its answer held freed.
const ANSWER_STALL: Duration = Duration::from_secs(5);

/// How long a client may take to read its whole answer, however slowly it
/// reads.
const ANSWER_DEADLINE: Duration = Duration::from_secs(60);

/// How long a refused client has to take its refusal and close.
const LINGER: Duration = Duration::from_secs(1);

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("another agent is already serving {0}")]
    AlreadyServing(PathBuf),
    #[error(transparent)]
    PathTooLong(#[from] PathTooLong),
    #[error(
        "{0} exists and is not a socket: the agent replaces only a socket a stopped agent left; \
         remove it or choose another --socket"
    )]
    NotASocket(PathBuf),
    #[error("{what} {path}")]
    Setup {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no group named `{0}` in /etc/group")]
    NoSuchGroup(String),
}

/// Who may talk to the agent besides root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub group: Option<u32>,
}

impl Access {
    /// Whether a peer with these credentials may talk to the agent.
    pub fn allows(&self, uid: u32, gid: u32, supplementary: &[u32]) -> bool {
        uid == 0
            || self
                .group
                .is_some_and(|group| gid == group || supplementary.contains(&group))
    }
}

/// The gid of group `name` in an `/etc/group` text, or `name` itself if
/// it is a number.
pub fn group_id(etc_group: &str, name: &str) -> Result<u32, ServerError> {
    if let Ok(gid) = name.parse() {
        return Ok(gid);
    }
    etc_group
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let group = fields.next()?;
            let gid = fields.nth(1)?.parse().ok()?;
            (group == name).then_some(gid)
        })
        .next()
        .ok_or_else(|| ServerError::NoSuchGroup(name.to_owned()))
}

/// The supplementary groups of process `pid`, from `/proc/PID/status`.
fn supplementary_groups(pid: i32) -> std::io::Result<Vec<u32>> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(status
        .lines()
        .find_map(|line| line.strip_prefix("Groups:"))
        .map(|groups| {
            groups
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default())
}

/// The bound socket; its file is removed when this is dropped.
pub struct Listening {
    listener: UnixListener,
    path: PathBuf,
    access: Access,
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Binds the agent's socket at `path` with the permissions `access`
/// allows. A stale socket (no agent answers on it) is replaced; a live one
/// is an error, and so is anything at `path` that is not a socket.
pub fn bind(path: &Path, access: Access) -> Result<Listening, ServerError> {
    protocol::check_socket_path(path)?;
    let setup = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| ServerError::Setup { what, path, source }
    };
    let (mode, dir_mode) = if access.group.is_some() {
        (0o660, 0o750)
    } else {
        (0o600, 0o700)
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        fs::create_dir_all(dir).map_err(setup("creating", dir))?;
        // The directory is the first gate.
        fs::set_permissions(dir, fs::Permissions::from_mode(dir_mode))
            .map_err(setup("setting the mode of", dir))?;
        chown(dir, Some(0), access.group).map_err(setup("setting the owner of", dir))?;
    }
    match fs::symlink_metadata(path) {
        Err(error) if error.kind() == ErrorKind::NotFound => {}
        Err(error) => return Err(setup("examining", path)(error)),
        Ok(found) if !found.file_type().is_socket() => {
            return Err(ServerError::NotASocket(path.to_owned()));
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(ServerError::AlreadyServing(path.to_owned())),
            Err(error) if error.kind() == ErrorKind::ConnectionRefused => {
                fs::remove_file(path).map_err(setup("removing the stale socket", path))?;
            }
            Err(error) => return Err(setup("checking for an agent at", path)(error)),
        },
    }
    // No moment with a socket anyone may connect to: create it closed.
    // SAFETY: umask only changes the process's file creation mask.
    let previous = unsafe { libc::umask(0o177) };
    let bound = std::os::unix::net::UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(previous) };
    let listener = bound.map_err(setup("binding", path))?;
    chown(path, Some(0), access.group).map_err(setup("setting the owner of", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(setup("setting the mode of", path))?;
    listener
        .set_nonblocking(true)
        .map_err(setup("configuring", path))?;
    let listener = UnixListener::from_std(listener).map_err(setup("listening on", path))?;
    Ok(Listening {
        listener,
        path: path.to_owned(),
        access,
    })
}

/// What every client's task shares.
struct Server {
    access: Access,
    answers: Answers,
    /// Clients dropped for not sending their request or not reading their
    /// answer in time.
    dropped: Mutex<LogThrottle>,
}

impl Server {
    /// Counts a client dropped for `why`, and says so at most once per
    /// [`WARNING_EVERY_NS`].
    fn dropped(&self, why: &str) {
        let mut dropped = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(times) = dropped.failed(monotonic_now_ns()) {
            log::warn!("dropped {times} client(s), the latest because it {why}");
        }
    }
}

/// Serves clients until the loop behind `answers` is gone.
pub async fn serve(listening: Listening, answers: Answers) {
    let server = Arc::new(Server {
        access: listening.access,
        answers,
        dropped: Mutex::new(LogThrottle::new(WARNING_EVERY_NS)),
    });
    let mut clients = ConnectionSlots::new(MAX_CLIENTS, ("client", "clients"));
    while let Some(((stream, _), slot)) = clients
        .next(|| listening.listener.accept(), &server.answers)
        .await
    {
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            if let Err(error) = serve_client(stream, &server).await {
                log::info!("client: {}", ErrorLine(error.as_ref()));
            }
            drop(slot);
        });
    }
}

async fn serve_client(mut stream: UnixStream, server: &Server) -> anyhow::Result<()> {
    let (answer, refused) = match read_request(&mut stream, server).await {
        Ok(request) => (server.answers.answer(request).await, false),
        Err(Unanswered::Refused(reason)) => (Answer::refused(reason), true),
        Err(Unanswered::Silent(error)) => return Err(error),
    };
    let Answer { response, turn } = answer;
    let line = match response {
        // Off the loop's thread: a listing can be megabytes of JSON (and
        // it has a turn, which bounds how many are encoded at once).
        Response::Sockets(_) => {
            tokio::task::spawn_blocking(move || protocol::encode(&response)).await??
        }
        small => protocol::encode(&small)?,
    };
    let written = tokio::time::timeout(
        ANSWER_DEADLINE,
        protocol::write_line(&mut stream, &line, ANSWER_STALL),
    )
    .await;
    // The listing's turn is held until its answer is written or given up.
    drop(turn);
    match written {
        Ok(Ok(())) => {}
        Ok(Err(ProtocolError::Stalled(_))) => {
            server.dropped(&format!(
                "stopped reading its answer for {}s",
                ANSWER_STALL.as_secs()
            ));
            return Ok(());
        }
        Ok(Err(error)) => return Err(error.into()),
        Err(_) => {
            server.dropped(&format!(
                "did not read its answer within {}s",
                ANSWER_DEADLINE.as_secs()
            ));
            return Ok(());
        }
    }
    if refused {
        let _ = tokio::time::timeout(LINGER, discard_the_rest(&mut stream)).await;
    }
    Ok(())
}

/// Reads what a refused client still sends (the rest of its request), up
/// to [`MAX_REQUEST_BYTES`], until it closes: closed with unread data, the
/// socket would give the client ECONNRESET before the refusal.
async fn discard_the_rest(stream: &mut UnixStream) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.shutdown().await?;
    tokio::io::copy(&mut stream.take(MAX_REQUEST_BYTES), &mut tokio::io::sink()).await?;
    Ok(())
}

/// Why a client gets no answer to a request.
enum Unanswered {
    /// Told why, in one line.
    Refused(String),
    /// Gone, or sent nothing: nobody to tell.
    Silent(anyhow::Error),
}

/// The request of a client allowed to ask.
async fn read_request(stream: &mut UnixStream, server: &Server) -> Result<Request, Unanswered> {
    let peer = stream
        .peer_cred()
        .map_err(|error| Unanswered::Silent(error.into()))?;
    let pid = peer.pid().unwrap_or(0);
    let allowed = peer.uid() == 0
        || match supplementary_groups(pid) {
            Ok(groups) => server.access.allows(peer.uid(), peer.gid(), &groups),
            Err(error) => {
                return Err(Unanswered::Refused(format!(
                    "cannot check the groups of pid {pid} in /proc: {error}"
                )));
            }
        };
    if !allowed {
        log::warn!(
            "refused a client: uid {} gid {} pid {pid} is neither root nor in the agent's group",
            peer.uid(),
            peer.gid()
        );
        return Err(Unanswered::Refused(
            "permission denied: only root and the agent's group (--group) may query the agent"
                .into(),
        ));
    }
    let read = tokio::time::timeout(
        REQUEST_TIMEOUT,
        protocol::read_message(stream, MAX_REQUEST_BYTES),
    )
    .await
    .map_err(|_| {
        let within = format!("within {}s", REQUEST_TIMEOUT.as_secs());
        server.dropped(&format!("sent no request {within}"));
        Unanswered::Refused(format!("no request {within}"))
    })?;
    match read {
        Ok(request) => Ok(request),
        Err(ProtocolError::TooLong) => Err(Unanswered::Refused(format!(
            "request longer than {MAX_REQUEST_BYTES} bytes"
        ))),
        Err(ProtocolError::Malformed(error)) => {
            Err(Unanswered::Refused(format!("malformed request: {error}")))
        }
        Err(error) => Err(Unanswered::Silent(error.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_always_and_others_only_through_the_group() {
        let closed = Access { group: None };
        assert!(closed.allows(0, 0, &[]));
        assert!(!closed.allows(1000, 1000, &[0]));
        let ops = Access { group: Some(4242) };
        assert!(ops.allows(1000, 4242, &[]));
        assert!(ops.allows(1000, 1000, &[27, 4242]));
        assert!(!ops.allows(1000, 1000, &[27]));
    }

    #[test]
    fn groups_resolve_by_name_or_number() {
        let etc_group = "root:x:0:\nadm:x:4:syslog\nsre:x:4242:alice,bob\n";
        assert_eq!(group_id(etc_group, "sre").unwrap(), 4242);
        assert_eq!(group_id(etc_group, "77").unwrap(), 77);
        assert!(matches!(
            group_id(etc_group, "nobodyhere"),
            Err(ServerError::NoSuchGroup(_))
        ));
    }
}
