//! The agent's Unix socket. Only root, and the members of one group if the
//! operator names it, may talk to the agent: the socket file is mode 0600
//! (0660 with a group, owned by it), the directory the agent creates for it
//! is closed the same way, and every peer's credentials (`SO_PEERCRED`)
//! are checked again on accept, so a copied or re-permissioned socket does
//! not open the agent to everyone.
use std::{
    fs,
    io::ErrorKind,
    os::unix::fs::{PermissionsExt, chown},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::{
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};

use crate::{
    agent_protocol::{self, MAX_REQUEST_BYTES, Request, Response},
    event_loop::{Job, JobContext},
};

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("another agent is already serving {0}")]
    AlreadyServing(PathBuf),
    #[error("{what} {path}: {source}")]
    Setup {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no group named `{0}` in /etc/group")]
    NoSuchGroup(String),
}

/// A state that can answer the agent's clients.
pub trait Answer {
    fn answer(&mut self, request: Request, context: JobContext<'_>) -> Response;
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

/// The supplementary groups of process `pid`, from `/proc/PID/status`
/// (empty if it is gone).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Groups:"))
        .map(|groups| {
            groups
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default()
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
/// allows. A stale socket file (no agent answers on it) is replaced; a
/// live one is an error.
pub fn bind(path: &Path, access: Access) -> Result<Listening, ServerError> {
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
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => return Err(ServerError::AlreadyServing(path.to_owned())),
        Err(error) if error.kind() == ErrorKind::NotFound => {}
        Err(_) => fs::remove_file(path).map_err(setup("removing the stale socket", path))?,
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

/// Serves clients until the loop that runs the jobs is gone.
pub async fn serve<C: Answer + 'static>(listening: Listening, jobs: mpsc::Sender<Job<C>>) {
    let access = Arc::new(listening.access);
    loop {
        let stream = tokio::select! {
            accepted = listening.listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    log::warn!("accepting a client: {error}");
                    continue;
                }
            },
            () = jobs.closed() => return,
        };
        let jobs = jobs.clone();
        let access = Arc::clone(&access);
        tokio::spawn(async move {
            if let Err(error) = serve_client(stream, &access, &jobs).await {
                log::info!("client: {error}");
            }
        });
    }
}

async fn serve_client<C: Answer + 'static>(
    mut stream: UnixStream,
    access: &Access,
    jobs: &mpsc::Sender<Job<C>>,
) -> anyhow::Result<()> {
    let peer = stream.peer_cred()?;
    let pid = peer.pid().unwrap_or(0);
    if !access.allows(peer.uid(), peer.gid(), &supplementary_groups(pid)) {
        log::warn!(
            "refused a client: uid {} gid {} pid {pid} is neither root nor in the agent's group",
            peer.uid(),
            peer.gid()
        );
        let refusal = Response::Refused(
            "permission denied: only root and the agent's group (--group) may query the agent"
                .into(),
        );
        agent_protocol::write_message(&mut stream, &refusal).await?;
        return Ok(());
    }
    let request: Request = tokio::time::timeout(
        REQUEST_TIMEOUT,
        agent_protocol::read_message(&mut stream, MAX_REQUEST_BYTES),
    )
    .await??;
    let response = ask_loop(jobs, request).await?;
    agent_protocol::write_message(&mut stream, &response).await?;
    Ok(())
}

/// Has the event loop behind `jobs` answer `request`, between two batches
/// of records.
pub async fn ask_loop<C: Answer + 'static>(
    jobs: &mpsc::Sender<Job<C>>,
    request: Request,
) -> anyhow::Result<Response> {
    let (reply, answer) = oneshot::channel();
    let job: Job<C> = Box::new(move |state: &mut C, context: JobContext<'_>| {
        let _ = reply.send(state.answer(request, context));
    });
    jobs.send(job)
        .await
        .map_err(|_| anyhow::anyhow!("the tracer is stopping"))?;
    Ok(answer.await?)
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
