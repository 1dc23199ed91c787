//! What the agent and its clients say over the agent's Unix socket: one
//! JSON request line from the client, one JSON response line back, then
//! the agent closes the connection.
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use crate::{listed_socket::ListedSocket, overview::Overview, tuple::NetnsInode};

/// Where `socktrace agent` listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/socktrace/agent.sock";

/// Longest request line the agent reads.
pub const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// A client's question.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Every TCP socket of these namespaces now, as `ss -tan` lists them,
    /// with what the tracer knows of each. `owners`: also look up in /proc
    /// the owners the tracer never saw act (what `ss -p` costs).
    Sockets {
        netns: Vec<NetnsInode>,
        owners: bool,
    },
    /// Counts and top remotes of these namespaces, for `socktrace top`.
    Overview { netns: Vec<NetnsInode> },
}

/// The agent's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Sockets(Vec<ListedSocket>),
    Overview(Box<Overview>),
    /// The request could not be answered; the text says why.
    Refused(String),
}

/// Why a message could not be exchanged.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("I/O on the agent's socket")]
    Io(#[from] std::io::Error),
    #[error("the peer closed the connection without a message")]
    Closed,
    #[error("message longer than {MAX_REQUEST_BYTES} bytes")]
    TooLong,
    #[error("malformed message")]
    Malformed(#[from] serde_json::Error),
}

/// Reads one JSON line of at most `limit` bytes.
pub async fn read_message<T: for<'de> Deserialize<'de>>(
    stream: impl AsyncRead + Unpin,
    limit: u64,
) -> Result<T, ProtocolError> {
    use tokio::io::AsyncReadExt;
    let mut line = Vec::new();
    let mut reader = BufReader::new(stream.take(limit + 1));
    reader.read_until(b'\n', &mut line).await?;
    if line.is_empty() {
        return Err(ProtocolError::Closed);
    }
    if line.len() as u64 > limit {
        return Err(ProtocolError::TooLong);
    }
    Ok(serde_json::from_slice(&line)?)
}

/// Writes one message as a JSON line.
pub async fn write_message(
    mut stream: impl AsyncWrite + Unpin,
    message: &impl Serialize,
) -> Result<(), ProtocolError> {
    let mut line = serde_json::to_vec(message)?;
    line.push(b'\n');
    stream.write_all(&line).await?;
    stream.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_round_trips_and_garbage_or_silence_is_an_error() {
        let request = Request::Sockets {
            netns: vec![4026531840],
            owners: true,
        };
        let mut wire = Vec::new();
        write_message(&mut wire, &request).await.unwrap();
        let read: Request = read_message(&wire[..], MAX_REQUEST_BYTES).await.unwrap();
        assert_eq!(read, request);

        let garbage = read_message::<Request>(&b"{\"Sockets\":7}\n"[..], MAX_REQUEST_BYTES).await;
        assert!(matches!(garbage, Err(ProtocolError::Malformed(_))));
        let silence = read_message::<Request>(&b""[..], MAX_REQUEST_BYTES).await;
        assert!(matches!(silence, Err(ProtocolError::Closed)));
    }

    #[tokio::test]
    async fn an_oversized_request_is_refused_before_parsing() {
        let long = [b'x'; 100];
        let result = read_message::<Request>(&long[..], 10).await;
        assert!(matches!(result, Err(ProtocolError::TooLong)));
    }
}
