//! The agent's Unix socket as clients other than socktrace's own use it: a
//! raw request line and its answer, and clients that connect and then
//! never send, or send and never read.
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::TIMEOUT;

/// Sends `line` (and a newline) to the agent at `path` and returns the
/// one line it answers, parsed, within [`TIMEOUT`].
pub fn ask_raw(path: &Path, line: &[u8]) -> Result<Value> {
    let answer = ask_raw_line(path, line)?;
    serde_json::from_str(&answer).with_context(|| format!("answer {answer:?}"))
}

/// [`ask_raw`], the answer left unparsed.
pub fn ask_raw_line(path: &Path, line: &[u8]) -> Result<String> {
    let mut stream =
        UnixStream::connect(path).with_context(|| format!("connecting to {}", path.display()))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.write_all(line)?;
    stream.write_all(b"\n")?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .context("reading the agent's answer")?;
    ensure!(
        answer.ends_with('\n'),
        "no whole line answered ({} bytes): {:?}",
        answer.len(),
        &answer[..answer.len().min(200)]
    );
    Ok(answer)
}

/// Clients of the agent that never read, closed on drop.
pub struct SilentClients {
    streams: Vec<UnixStream>,
    /// Connections the agent's listen backlog had no room for.
    pub turned_away: usize,
}

impl SilentClients {
    /// `count` connections to the agent at `path`, each sending `request`
    /// (a line, or nothing when empty) and then neither sending nor
    /// reading. The connects do not wait: one the listen backlog has no
    /// room for fails at once and is counted in `turned_away`.
    pub fn connect(path: &Path, count: usize, request: &[u8]) -> Result<Self> {
        let mut clients = SilentClients {
            streams: Vec::with_capacity(count),
            turned_away: 0,
        };
        for _ in 0..count {
            match nonblocking_connect(path)? {
                Some(mut stream) => {
                    if !request.is_empty() {
                        // Far less than a socket buffer: written at once.
                        stream.write_all(request).context("sending a request")?;
                    }
                    clients.streams.push(stream);
                }
                None => clients.turned_away += 1,
            }
        }
        Ok(clients)
    }

    /// How many of the clients the agent has closed (POLLRDHUP: found
    /// without reading what it sent).
    pub fn closed_by_the_agent(&self) -> Result<usize> {
        let mut polled: Vec<libc::pollfd> = self
            .streams
            .iter()
            .map(|stream| libc::pollfd {
                fd: stream.as_raw_fd(),
                events: libc::POLLRDHUP,
                revents: 0,
            })
            .collect();
        // SAFETY: valid pollfds, the length says so; no wait.
        let rc = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, 0) };
        ensure!(rc >= 0, "poll: {}", std::io::Error::last_os_error());
        Ok(polled
            .iter()
            .filter(|p| p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0)
            .count())
    }

    /// The clients connected.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

/// A non-blocking connection to `path`; `None` when the listen backlog is
/// full (EAGAIN).
fn nonblocking_connect(path: &Path) -> Result<Option<UnixStream>> {
    // SAFETY: all-zero is a valid sockaddr_un.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    ensure!(bytes.len() < address.sun_path.len(), "socket path too long");
    for (slot, &byte) in address.sun_path.iter_mut().zip(bytes) {
        *slot = byte as libc::c_char;
    }
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0) };
    ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: a descriptor just opened and owned by nothing else.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    // SAFETY: a sockaddr_un and its size.
    let rc = unsafe {
        libc::connect(
            fd,
            (&address as *const libc::sockaddr_un).cast(),
            size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        return Ok(Some(stream));
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EAGAIN) => Ok(None),
        _ => bail!("connecting to {}: {error}", path.display()),
    }
}
