//! A view's side of the agent's socket: is an agent there, and what does
//! it answer.
use std::{io::ErrorKind, path::Path};

use tokio::net::UnixStream;

use crate::agent_protocol::{self, ProtocolError, Request, Response};

/// Largest answer a view reads (a host with a million sockets listed).
const MAX_RESPONSE_BYTES: u64 = 1 << 30;

/// Why the agent could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "permission denied on the agent's socket {0}: only root and the group the agent was given with --group may use it"
    )]
    Denied(String),
    #[error("connecting to the agent at {path}: {source}")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the agent")]
    Protocol(#[from] ProtocolError),
    #[error("the agent refused: {0}")]
    Refused(String),
    #[error("the agent answered something else than what was asked")]
    Unexpected,
}

/// Asks the agent listening at `path`. `Ok(None)` when none listens there
/// (no socket file, or nobody behind it).
pub async fn ask(path: &Path, request: &Request) -> Result<Option<Response>, ClientError> {
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
            return Err(ClientError::Denied(path.display().to_string()));
        }
        Err(source) => {
            return Err(ClientError::Connect {
                path: path.display().to_string(),
                source,
            });
        }
    };
    match agent_protocol::write_message(&mut stream, request).await {
        // An agent that refuses a client closes without reading: its
        // answer is still there to read.
        Err(ProtocolError::Io(error)) if error.kind() == ErrorKind::BrokenPipe => {}
        written => written?,
    }
    match agent_protocol::read_message(&mut stream, MAX_RESPONSE_BYTES).await? {
        Response::Refused(reason) => Err(ClientError::Refused(reason)),
        response => Ok(Some(response)),
    }
}
