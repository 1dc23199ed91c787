//! A view's side of the agent's socket: is an agent there, and what does
//! it answer, within a deadline: a stopped or overloaded agent makes a view
//! fail with one line that says how to do without it, never hang.
use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::net::UnixStream;

use crate::agent::protocol::{self, PathTooLong, ProtocolError, Request, Response};

/// Largest answer a view reads (a host with a million sockets listed).
const MAX_RESPONSE_BYTES: u64 = 1 << 30;

/// Why the agent could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "permission denied on the agent's socket {0}: only root and the group the agent was given with --group may use it"
    )]
    Denied(PathBuf),
    #[error(transparent)]
    PathTooLong(#[from] PathTooLong),
    #[error("cannot connect to the agent at {} (--no-agent works without it)", .path.display())]
    Connect {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error(
        "the agent at {} takes no more connections (stuck or overloaded?); --no-agent works without it",
        .0.display()
    )]
    Full(PathBuf),
    #[error(
        "the agent at {} did not answer within {}s (stopped or overloaded?); --agent-timeout waits longer, --no-agent works without it",
        .path.display(),
        .timeout.as_secs()
    )]
    TimedOut { path: PathBuf, timeout: Duration },
    #[error("talking to the agent (--no-agent works without it)")]
    Protocol(#[from] ProtocolError),
    #[error("the agent refused: {0}")]
    Refused(String),
}

/// Asks the agent listening at `path`, giving up after `timeout`.
/// `Ok(None)` when none listens there (no socket file, or nobody behind
/// it).
pub async fn ask(
    path: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<Option<Response>, ClientError> {
    protocol::check_socket_path(path)?;
    tokio::time::timeout(timeout, exchange(path, request))
        .await
        .unwrap_or_else(|_| {
            Err(ClientError::TimedOut {
                path: path.to_owned(),
                timeout,
            })
        })
}

/// Connects, sends `request` and reads the answer.
async fn exchange(path: &Path, request: &Request) -> Result<Option<Response>, ClientError> {
    let mut stream = match UnixStream::connect(path).await {
        Ok(stream) => stream,
        Err(error)
            if matches!(
                error.kind(),
                ErrorKind::NotFound | ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(error) if error.kind() == ErrorKind::PermissionDenied => {
            return Err(ClientError::Denied(path.to_owned()));
        }
        // The listen backlog is full: nobody accepts.
        Err(error) if error.kind() == ErrorKind::WouldBlock => {
            return Err(ClientError::Full(path.to_owned()));
        }
        Err(error) => {
            return Err(ClientError::Connect {
                path: path.to_owned(),
                error,
            });
        }
    };
    match protocol::write_message(&mut stream, request).await {
        // An agent that refuses a client closes without reading: its
        // answer is still there to read.
        Err(ProtocolError::Io(error)) if error.kind() == ErrorKind::BrokenPipe => {}
        written => written?,
    }
    match protocol::read_message(&mut stream, MAX_RESPONSE_BYTES).await? {
        Response::Refused(reason) => Err(ClientError::Refused(reason)),
        response => Ok(Some(response)),
    }
}
