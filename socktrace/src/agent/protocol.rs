//! What the agent and its clients say over the agent's Unix socket: one
//! JSON request line from the client, one JSON response line back, then
//! the agent closes the connection.
use std::{
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Encoder as _, FramedRead};

use crate::{
    agent::framing::JsonLines, model::tuple::NetnsInode, state::listed_socket::ListedSocket,
    state::overview::Overview,
};

/// Where `socktrace agent` listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/socktrace/agent.sock";

/// Longest request line the agent reads.
pub const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// Longest path a Unix socket can be bound or connected at: `sun_path`
/// holds 108 bytes, the last one a NUL.
pub const MAX_SOCKET_PATH_BYTES: usize = 107;

/// Bytes of a line written at a time, each piece within the stall deadline
/// of [`write_line`].
const PIECE_BYTES: usize = 64 * 1024;

/// A socket path longer than a Unix socket's can be.
#[derive(Debug, thiserror::Error)]
#[error(
    "the socket path {} is {} bytes long: a Unix socket's path has at most {MAX_SOCKET_PATH_BYTES}",
    .0.display(),
    .0.as_os_str().len()
)]
pub struct PathTooLong(pub PathBuf);

/// Fails if `path` is too long for a Unix socket.
pub fn check_socket_path(path: &Path) -> Result<(), PathTooLong> {
    if path.as_os_str().as_bytes().len() > MAX_SOCKET_PATH_BYTES {
        return Err(PathTooLong(path.to_owned()));
    }
    Ok(())
}

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
    #[error("the peer read nothing for {}s", .0.as_secs())]
    Stalled(Duration),
}

/// Reads one JSON line of at most `limit` bytes.
pub async fn read_message<T: DeserializeOwned>(
    stream: impl AsyncRead + Unpin,
    limit: u64,
) -> Result<T, ProtocolError> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    FramedRead::new(stream, JsonLines::new(limit))
        .next()
        .await
        .unwrap_or(Err(ProtocolError::Closed))
}

/// `message` as one JSON line.
pub fn encode<T: Serialize>(message: &T) -> Result<Bytes, ProtocolError> {
    let mut line = BytesMut::new();
    JsonLines::new(0).encode(message, &mut line)?;
    Ok(line.freeze())
}

/// Writes one message as a JSON line.
pub async fn write_message(
    mut stream: impl AsyncWrite + Unpin,
    message: &impl Serialize,
) -> Result<(), ProtocolError> {
    stream.write_all(&encode(message)?).await?;
    stream.flush().await?;
    Ok(())
}

/// Writes an [`encode`]d line, failing if the peer takes nothing for
/// `stall`: a client that reads slowly is served, one that stopped reading
/// is not waited for.
pub async fn write_line(
    mut stream: impl AsyncWrite + Unpin,
    line: &[u8],
    stall: Duration,
) -> Result<(), ProtocolError> {
    for piece in line.chunks(PIECE_BYTES) {
        let written = async {
            stream.write_all(piece).await?;
            stream.flush().await
        };
        tokio::time::timeout(stall, written)
            .await
            .map_err(|_| ProtocolError::Stalled(stall))??;
    }
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
    async fn a_line_is_written_whole_to_a_reader_and_given_up_on_without_one() {
        let line = encode(&Response::Refused("x".repeat(3 * PIECE_BYTES))).unwrap();
        let mut written = Vec::new();
        write_line(&mut written, &line, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(written, line);
        // A peer that never reads: the pipe's buffer fills, then nothing.
        let (_reader, writer) = tokio::io::duplex(1024);
        let stalled = write_line(writer, &line, Duration::from_millis(50)).await;
        assert!(
            matches!(stalled, Err(ProtocolError::Stalled(_))),
            "{stalled:?}"
        );
    }

    #[test]
    fn a_socket_path_longer_than_sun_path_is_refused() {
        let fits = PathBuf::from(format!("/{}", "x".repeat(MAX_SOCKET_PATH_BYTES - 1)));
        assert!(check_socket_path(&fits).is_ok());
        let long = PathBuf::from(format!("/{}", "x".repeat(MAX_SOCKET_PATH_BYTES)));
        let error = check_socket_path(&long).unwrap_err().to_string();
        assert!(error.contains("108 bytes long"), "{error}");
    }

    #[tokio::test]
    async fn an_oversized_request_is_refused_before_parsing() {
        let long = [b'x'; 100];
        let result = read_message::<Request>(&long[..], 10).await;
        assert!(matches!(result, Err(ProtocolError::TooLong)));
    }
}
