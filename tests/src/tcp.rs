//! Blocking TCP on the loopback, for driving real transitions. Call
//! [`listen`] and [`connect`] inside [`crate::NetNs::run`] so the sockets
//! live in the test's namespace; the rest works from any thread.
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Address family, as the agent names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// `127.0.0.1` or `::1`.
    pub fn loopback(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Family::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        }
    }

    /// `0.0.0.0` or `::`.
    pub fn unspecified(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }

    /// `"ipv4"` or `"ipv6"`, the agent's `family` field.
    pub fn json_name(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

/// A listener on the loopback's ephemeral port (`127.0.0.1:0` / `[::1]:0`).
pub fn listen(family: Family) -> Result<TcpListener> {
    let addr = SocketAddr::new(family.loopback(), 0);
    TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))
}

/// A port nobody listens on in `ns`: the kernel's pick for a listener on
/// `family`'s loopback, then released.
pub fn unused_port(ns: &crate::NetNs, family: Family) -> Result<u16> {
    let listener = ns.run(|| listen(family))?;
    local_port(&listener)
}

/// The port a listener (or any bound socket) got.
pub fn local_port(listener: &TcpListener) -> Result<u16> {
    Ok(listener
        .local_addr()
        .context("listener's local address")?
        .port())
}

/// Connects to `listener`'s address.
pub fn connect(listener: &TcpListener) -> Result<TcpStream> {
    let addr = listener.local_addr().context("listener's local address")?;
    TcpStream::connect_timeout(&addr, crate::TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))
}

/// Accepts one connection, failing after `timeout` (poll(2) on the
/// listener: no busy wait). The returned stream is blocking.
pub fn accept(listener: &TcpListener, timeout: Duration) -> Result<TcpStream> {
    let mut pollfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, the length says so.
    let ready = unsafe { libc::poll(&mut pollfd, 1, millis) };
    match ready {
        0 => bail!("no connection to accept within {timeout:?}"),
        n if n < 0 => Err(std::io::Error::last_os_error()).context("poll on the listener"),
        _ => {
            let (stream, _) = listener.accept().context("accepting")?;
            Ok(stream)
        }
    }
}

/// A connected pair on `listener`: `(client, accepted server side)`. Must
/// run inside the namespace (the client socket is created here).
pub fn connect_pair(listener: &TcpListener) -> Result<(TcpStream, TcpStream)> {
    let client = connect(listener)?;
    let server = accept(listener, crate::TIMEOUT)?;
    let (client_local, server_peer) = (client.local_addr()?, server.peer_addr()?);
    if client_local != server_peer {
        bail!("accepted {server_peer}, expected our client {client_local}");
    }
    Ok((client, server))
}

/// Reads until the peer's FIN (EOF). Fails on data, error or `timeout`.
pub fn read_to_eof(stream: &mut TcpStream, timeout: Duration) -> Result<()> {
    stream
        .set_read_timeout(Some(timeout))
        .context("setting a read timeout")?;
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => Ok(()),
        Ok(n) => bail!("expected EOF, read {n} bytes"),
        Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            bail!("no EOF within {timeout:?}")
        }
        Err(err) => Err(err).context("reading until EOF"),
    }
}

/// A connection from `local` (port 0: the kernel picks) to `remote`, with
/// SO_REUSEADDR so that a port held by a timewait socket can be bound.
pub fn connect_from(local: SocketAddr, remote: SocketAddr) -> std::io::Result<TcpStream> {
    let domain = if local.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); the fd is owned by the stream below.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh socket fd that nothing else owns.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: a valid int option and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    check(rc)?;
    let (storage, len) = sockaddr(local);
    // SAFETY: a sockaddr of the socket's family and its length.
    check(unsafe { libc::bind(fd, (&storage as *const libc::sockaddr_storage).cast(), len) })?;
    let (storage, len) = sockaddr(remote);
    // SAFETY: as above; a blocking connect on loopback.
    check(unsafe { libc::connect(fd, (&storage as *const libc::sockaddr_storage).cast(), len) })?;
    Ok(stream)
}

fn check(rc: libc::c_int) -> std::io::Result<()> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `addr` as a `sockaddr_in` or `sockaddr_in6` in a `sockaddr_storage`.
pub fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// A socket with a non-blocking connect to `addr` in progress (call it in
/// [`crate::NetNs::run`]); the caller closes the descriptor.
pub fn nonblocking_connect(addr: SocketAddr) -> Result<libc::c_int> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0) };
    anyhow::ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    let (storage, len) = sockaddr(addr);
    // SAFETY: a sockaddr of the socket's family and its length.
    let rc = unsafe { libc::connect(fd, (&storage as *const libc::sockaddr_storage).cast(), len) };
    let error = std::io::Error::last_os_error();
    anyhow::ensure!(
        rc == 0 || error.raw_os_error() == Some(libc::EINPROGRESS),
        "connect: {error}"
    );
    Ok(fd)
}
