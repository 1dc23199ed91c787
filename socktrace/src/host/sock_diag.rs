//! Listing TCP sockets through `NETLINK_SOCK_DIAG`, the way `ss -tan` does:
//! every socket of both families, in every state, including TIME-WAIT
//! sockets and SYN-RECV request sockets.
mod record;

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::{
    AF_INET, AF_INET6, IPPROTO_TCP, SOCK_DIAG_BY_FAMILY, SockDiagMessage,
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
};
use netlink_sys::{Socket, protocols::NETLINK_SOCK_DIAG};

use self::record::RecordError;
pub use self::record::{DiagSocket, DiagTimer};
use crate::{model::tcp_state::TcpState, model::tuple::NetnsInode};

/// Size of the receive buffer: more than the 32 KiB the kernel puts in one
/// dump datagram at most.
const RECV_BUFFER_LEN: usize = 64 * 1024;

/// Netlink messages start on 4-byte boundaries (`NLMSG_ALIGNTO`).
const NLMSG_ALIGNTO: usize = 4;

/// Sequence number of the next dump request.
static NEXT_SEQUENCE: AtomicU32 = AtomicU32::new(1);

/// What a dump asks the kernel for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpRequest {
    states: StateFlags,
    extensions: ExtensionFlags,
}

impl DumpRequest {
    /// Every socket in every state, like `ss -tan state all`.
    pub fn all() -> Self {
        Self::states(&TcpState::ALL)
    }

    /// Sockets in these states only (filtered by the kernel). `SYN_RECV`
    /// includes request sockets.
    pub fn states(states: &[TcpState]) -> Self {
        let bits = states
            .iter()
            .fold(0u32, |bits, &state| bits | 1 << state as u8);
        DumpRequest {
            states: StateFlags::from_bits_retain(bits),
            extensions: ExtensionFlags::empty(),
        }
    }

    /// Also ask for socket memory information (drop counts).
    pub fn with_memory(mut self) -> Self {
        self.extensions |= ExtensionFlags::SKMEMINFO;
        self
    }

    /// Whether it lists sockets in `state` (a timewait socket's state is
    /// its substate, as the kernel filters it).
    pub fn lists(&self, state: TcpState) -> bool {
        self.states.bits() & (1 << state as u8) != 0
    }

    pub fn has_memory(&self) -> bool {
        self.extensions.contains(ExtensionFlags::SKMEMINFO)
    }

    /// What both requests list, with memory information if either asks.
    pub fn union(&self, other: &DumpRequest) -> DumpRequest {
        DumpRequest {
            states: StateFlags::from_bits_retain(self.states.bits() | other.states.bits()),
            extensions: ExtensionFlags::from_bits_retain(
                self.extensions.bits() | other.extensions.bits(),
            ),
        }
    }
}

/// Why a sock_diag dump failed.
#[derive(Debug, thiserror::Error)]
pub enum SockDiagError {
    /// Opening, sending on or receiving from the netlink socket failed.
    #[error("NETLINK_SOCK_DIAG socket")]
    Socket(#[source] io::Error),
    /// The kernel answered the dump request with `NLMSG_ERROR`.
    #[error("sock_diag {family} dump failed")]
    Dump {
        family: &'static str,
        #[source]
        errno: io::Error,
    },
    /// The reply could not be decoded.
    #[error("malformed sock_diag reply: {0}")]
    Malformed(String),
}

/// Dumps the TCP sockets of both families that `request` selects, in the
/// network namespace of the calling thread, which the caller names as
/// `netns`: sock_diag lists only the namespace its socket was opened in.
pub fn dump(request: &DumpRequest, netns: NetnsInode) -> Result<Vec<DiagSocket>, SockDiagError> {
    let mut sockets = dump_family(AF_INET, request, netns)?;
    sockets.extend(dump_family(AF_INET6, request, netns)?);
    Ok(sockets)
}

/// Runs one dump request for `family` on its own netlink socket.
fn dump_family(
    family: u8,
    request: &DumpRequest,
    netns: NetnsInode,
) -> Result<Vec<DiagSocket>, SockDiagError> {
    let socket = open_socket()?;
    let sequence = NEXT_SEQUENCE.fetch_add(1, Ordering::Relaxed);
    send_request(&socket, family, sequence, request)?;
    let mut dump = DumpReply::new(family, sequence, netns);
    let mut buffer = vec![0u8; RECV_BUFFER_LEN];
    loop {
        let datagram = receive(&socket, &mut buffer)?;
        if dump.feed(datagram)? == Progress::Done {
            return Ok(dump.finish());
        }
    }
}

/// A netlink socket connected to the kernel's sock_diag.
fn open_socket() -> Result<Socket, SockDiagError> {
    let socket = Socket::new(NETLINK_SOCK_DIAG).map_err(SockDiagError::Socket)?;
    socket
        .connect(&netlink_sys::SocketAddr::new(0, 0))
        .map_err(SockDiagError::Socket)?;
    Ok(socket)
}

/// Sends the `SOCK_DIAG_BY_FAMILY` dump request for TCP sockets of `family`.
fn send_request(
    socket: &Socket,
    family: u8,
    sequence: u32,
    dump: &DumpRequest,
) -> Result<(), SockDiagError> {
    let socket_id = if family == AF_INET {
        SocketId::new_v4()
    } else {
        SocketId::new_v6()
    };
    let request = SockDiagMessage::InetRequest(InetRequest {
        family,
        protocol: IPPROTO_TCP,
        extensions: dump.extensions.clone(),
        states: dump.states.clone(),
        socket_id,
    });
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = sequence;
    let mut message = NetlinkMessage::new(header, request.into());
    message.finalize();
    let mut bytes = vec![0u8; message.buffer_len()];
    message.serialize(&mut bytes);
    socket.send(&bytes, 0).map_err(SockDiagError::Socket)?;
    Ok(())
}

/// Receives one datagram into `buffer`, retrying on `EINTR`; a datagram
/// larger than the buffer is an error rather than silently truncated.
fn receive<'a>(socket: &Socket, buffer: &'a mut [u8]) -> Result<&'a [u8], SockDiagError> {
    loop {
        match socket.recv(&mut &mut buffer[..], libc::MSG_TRUNC) {
            Ok(len) if len > buffer.len() => {
                return Err(SockDiagError::Malformed(format!(
                    "{len}-byte datagram exceeds the {}-byte receive buffer",
                    buffer.len()
                )));
            }
            Ok(0) => {
                return Err(SockDiagError::Malformed(
                    "reply ended before NLMSG_DONE".to_owned(),
                ));
            }
            Ok(len) => return Ok(&buffer[..len]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(SockDiagError::Socket(error)),
        }
    }
}

/// Whether a dump reply is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    More,
    Done,
}

/// The reply to one dump request, collected datagram by datagram.
struct DumpReply {
    family: u8,
    sequence: u32,
    netns: NetnsInode,
    sockets: Vec<DiagSocket>,
    skipped: usize,
}

impl DumpReply {
    fn new(family: u8, sequence: u32, netns: NetnsInode) -> Self {
        DumpReply {
            family,
            sequence,
            netns,
            sockets: Vec::new(),
            skipped: 0,
        }
    }

    /// Takes in every netlink message of one datagram.
    fn feed(&mut self, datagram: &[u8]) -> Result<Progress, SockDiagError> {
        let mut offset = 0;
        while offset < datagram.len() {
            let message = &datagram[offset..];
            let length = NetlinkBuffer::new_checked(message)
                .map_err(|error| SockDiagError::Malformed(error.to_string()))?
                .length() as usize;
            if self.message(&message[..length])? == Progress::Done {
                return Ok(Progress::Done);
            }
            offset += length.next_multiple_of(NLMSG_ALIGNTO);
        }
        Ok(Progress::More)
    }

    /// Handles one netlink message (`bytes` is exactly its length).
    fn message(&mut self, bytes: &[u8]) -> Result<Progress, SockDiagError> {
        let buffer = NetlinkBuffer::new(bytes);
        if buffer.sequence_number() != self.sequence {
            return Err(SockDiagError::Malformed(format!(
                "sequence number {} in reply to request {}",
                buffer.sequence_number(),
                self.sequence
            )));
        }
        if buffer.message_type() == SOCK_DIAG_BY_FAMILY {
            self.record(buffer.payload())?;
            return Ok(Progress::More);
        }
        let message = NetlinkMessage::<SockDiagMessage>::deserialize(bytes)
            .map_err(|error| SockDiagError::Malformed(error.to_string()))?;
        match message.payload {
            NetlinkPayload::Done(_) => Ok(Progress::Done),
            NetlinkPayload::Noop => Ok(Progress::More),
            NetlinkPayload::Error(error) => Err(SockDiagError::Dump {
                family: family_name(self.family),
                errno: error.to_io(),
            }),
            other => Err(SockDiagError::Malformed(format!(
                "unexpected message type {}",
                other.message_type()
            ))),
        }
    }

    /// Keeps one socket record, or skips it if its family, state or timer
    /// is unknown.
    fn record(&mut self, payload: &[u8]) -> Result<(), SockDiagError> {
        match record::parse(payload, self.netns) {
            Ok(socket) => self.sockets.push(socket),
            Err(RecordError::Unknown(what)) => self.skip(format_args!("unknown {what}")),
            Err(RecordError::Truncated(len)) => {
                return Err(SockDiagError::Malformed(format!(
                    "{len}-byte socket record, expected at least {}",
                    record::INET_DIAG_MSG_LEN
                )));
            }
        }
        Ok(())
    }

    /// Counts a record that cannot be represented.
    fn skip(&mut self, reason: std::fmt::Arguments<'_>) {
        log::debug!(
            "sock_diag {}: skipping record: {reason}",
            family_name(self.family)
        );
        self.skipped += 1;
    }

    /// The sockets collected, after logging how many records were skipped.
    fn finish(self) -> Vec<DiagSocket> {
        if self.skipped > 0 {
            log::debug!(
                "sock_diag {}: skipped {} records with an unknown family, state or timer",
                family_name(self.family),
                self.skipped
            );
        }
        self.sockets
    }
}

/// The name of an address family, for messages.
fn family_name(family: u8) -> &'static str {
    if family == AF_INET {
        "AF_INET"
    } else {
        "AF_INET6"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, TcpListener, TcpStream};
    use std::os::unix::fs::MetadataExt;
    use std::time::{Duration, Instant};

    use super::record::tests::Raw;
    use crate::{model::tuple::SocketTuple, support::error_line::ErrorLine};
    use netlink_packet_core::{DoneMessage, ErrorMessage, NLM_F_MULTIPART};
    use std::net::SocketAddr;

    fn dump() -> Vec<DiagSocket> {
        super::dump(&DumpRequest::all(), own_netns()).expect("sock_diag dump")
    }

    fn own_netns() -> NetnsInode {
        std::fs::metadata("/proc/thread-self/ns/net")
            .expect("own namespace")
            .ino() as NetnsInode
    }

    fn find(sockets: &[DiagSocket], tuple: SocketTuple) -> Option<&DiagSocket> {
        sockets.iter().find(|socket| socket.tuple == tuple)
    }

    fn unspecified_like(addr: SocketAddr) -> SocketAddr {
        let ip = match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        SocketAddr::new(ip, 0)
    }

    fn assert_listening(listener: &TcpListener) {
        let local = listener.local_addr().expect("local addr");
        let tuple = SocketTuple {
            netns: own_netns(),
            local,
            remote: unspecified_like(local),
        };
        let sockets = dump();
        let socket = find(&sockets, tuple).unwrap_or_else(|| panic!("{tuple:?} not in dump"));
        assert_eq!(socket.state, TcpState::Listen);
        assert_eq!(socket.tuple.local.port(), local.port());
        assert_ne!(socket.inode, 0);
        let uid = std::fs::metadata("/proc/self").expect("/proc/self").uid();
        assert_eq!(socket.uid, uid);
    }

    #[test]
    fn ipv4_listener_is_listed_as_listen() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        assert_listening(&listener);
    }

    #[test]
    fn ipv6_listener_is_listed_as_listen() {
        match TcpListener::bind("[::1]:0") {
            Ok(listener) => assert_listening(&listener),
            Err(error) => println!("skipping: cannot bind [::1]:0: {error}"),
        }
    }

    #[test]
    fn established_pair_is_listed_from_both_ends() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        let client_tuple = SocketTuple {
            netns: own_netns(),
            local: client.local_addr().expect("addr"),
            remote: client.peer_addr().expect("addr"),
        };
        let server_tuple = SocketTuple {
            netns: own_netns(),
            local: server.local_addr().expect("addr"),
            remote: server.peer_addr().expect("addr"),
        };
        assert_eq!(client_tuple.local, server_tuple.remote);
        assert_eq!(client_tuple.remote, server_tuple.local);

        let sockets = dump();
        for tuple in [client_tuple, server_tuple] {
            let socket = find(&sockets, tuple).unwrap_or_else(|| panic!("{tuple:?} not in dump"));
            assert_eq!(socket.state, TcpState::Established);
            assert_ne!(socket.inode, 0);
        }
    }

    #[test]
    fn client_that_closes_first_is_left_in_time_wait() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        let tuple = SocketTuple {
            netns: own_netns(),
            local: client.local_addr().expect("addr"),
            remote: client.peer_addr().expect("addr"),
        };
        client.shutdown(Shutdown::Both).expect("shutdown");
        drop(client);
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).expect("read to EOF");
        drop(server);

        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let state = find(&dump(), tuple).map(|socket| socket.state);
            if state == Some(TcpState::TimeWait) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{tuple:?} not in TIME_WAIT, last seen in {state:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A serialized reply message with the given sequence number.
    fn reply(sequence: u32, payload: NetlinkPayload<SockDiagMessage>) -> Vec<u8> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_MULTIPART;
        header.sequence_number = sequence;
        let mut message = NetlinkMessage::new(header, payload);
        message.finalize();
        let mut bytes = vec![0u8; message.buffer_len()];
        message.serialize(&mut bytes);
        bytes
    }

    /// A serialized AF_INET socket record in `state`.
    fn record(sequence: u32, state: u8, local_port: u16) -> Vec<u8> {
        let payload = Raw::v4(state, local_port).bytes();
        let mut header = [0u8; 16];
        let length = (header.len() + payload.len()) as u32;
        header[..4].copy_from_slice(&length.to_ne_bytes());
        header[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        header[6..8].copy_from_slice(&NLM_F_MULTIPART.to_ne_bytes());
        header[8..12].copy_from_slice(&sequence.to_ne_bytes());
        [&header[..], &payload].concat()
    }

    fn done(sequence: u32) -> Vec<u8> {
        reply(sequence, NetlinkPayload::Done(DoneMessage::default()))
    }

    #[test]
    fn every_message_of_a_datagram_is_read_and_unknown_records_skipped() {
        let mut unknown_family = record(7, 1, 3);
        unknown_family[16] = 99;
        let datagram = [
            record(7, 10, 1),
            record(7, 13, 2),
            unknown_family,
            record(7, 6, 4),
        ]
        .concat();
        let mut dump = DumpReply::new(AF_INET, 7, crate::model::tuple::TEST_NETNS);
        assert_eq!(dump.feed(&datagram).expect("feed"), Progress::More);
        assert_eq!(dump.feed(&done(7)).expect("feed"), Progress::Done);
        assert_eq!(dump.skipped, 2);
        let states: Vec<_> = dump
            .finish()
            .iter()
            .map(|socket| (socket.tuple.local.port(), socket.state))
            .collect();
        assert_eq!(states, [(1, TcpState::Listen), (4, TcpState::TimeWait)]);
    }

    #[test]
    fn done_in_the_middle_of_a_datagram_ends_the_dump() {
        let datagram = [record(3, 1, 1), done(3)].concat();
        let mut dump = DumpReply::new(AF_INET6, 3, crate::model::tuple::TEST_NETNS);
        assert_eq!(dump.feed(&datagram).expect("feed"), Progress::Done);
        assert_eq!(dump.finish().len(), 1);
    }

    #[test]
    fn nlmsg_error_and_garbage_are_errors() {
        let mut error = ErrorMessage::default();
        error.code = std::num::NonZeroI32::new(-libc::EPERM);
        let nack = reply(5, NetlinkPayload::Error(error));
        let failure = DumpReply::new(AF_INET, 5, crate::model::tuple::TEST_NETNS)
            .feed(&nack)
            .unwrap_err();
        assert!(matches!(failure, SockDiagError::Dump { .. }), "{failure}");
        assert_eq!(
            ErrorLine(&failure).to_string(),
            "sock_diag AF_INET dump failed: Operation not permitted (os error 1)"
        );

        let truncated = &record(5, 1, 1)[..30];
        let failure = DumpReply::new(AF_INET, 5, crate::model::tuple::TEST_NETNS)
            .feed(truncated)
            .unwrap_err();
        assert!(matches!(failure, SockDiagError::Malformed(_)), "{failure}");

        let mut short_record = record(5, 1, 1)[..16 + 40].to_vec();
        short_record[..4].copy_from_slice(&56u32.to_ne_bytes());
        let failure = DumpReply::new(AF_INET, 5, crate::model::tuple::TEST_NETNS)
            .feed(&short_record)
            .unwrap_err();
        assert!(
            failure.to_string().contains("40-byte socket record"),
            "{failure}"
        );

        let failure = DumpReply::new(AF_INET, 5, crate::model::tuple::TEST_NETNS)
            .feed(&done(6))
            .unwrap_err();
        assert!(matches!(failure, SockDiagError::Malformed(_)), "{failure}");
    }

    #[test]
    fn the_request_asks_for_every_state_including_request_sockets() {
        assert_eq!(DumpRequest::all().states.bits(), 0x1ffe);
    }

    #[test]
    fn a_state_filtered_request_asks_for_those_states_and_memory() {
        let request = DumpRequest::states(&[TcpState::SynRecv, TcpState::Listen]).with_memory();
        assert_eq!(request.states.bits(), 1 << 3 | 1 << 10);
        assert_eq!(request.extensions, ExtensionFlags::SKMEMINFO);
    }

    #[test]
    fn a_listener_dump_with_memory_reports_drops_and_accept_queue() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let _queued = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let local = listener.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let request = DumpRequest::states(&[TcpState::Listen]).with_memory();
            let sockets = super::dump(&request, own_netns()).unwrap();
            let found = sockets
                .iter()
                .find(|s| s.tuple.local == local)
                .expect("listener listed");
            assert!(sockets.iter().all(|s| s.state == TcpState::Listen));
            assert_eq!(found.drops, Some(0));
            if found.recv_queue == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "accept queue never reached 1");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
