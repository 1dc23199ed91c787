//! One socket record of a sock_diag dump: `struct inet_diag_msg` and the
//! attributes after it, read field by field from the reply bytes (the
//! netlink crates drop the TIME-WAIT timer's expiry, which socktrace needs).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::{
    model::tcp_state::TcpState,
    model::tuple::{NetnsInode, SocketTuple},
};

/// `sizeof(struct inet_diag_msg)`.
pub(super) const INET_DIAG_MSG_LEN: usize = 72;

/// `INET_DIAG_SKMEMINFO`: an array of `u32`, `SK_MEMINFO_*` order.
const INET_DIAG_SKMEMINFO: u16 = 7;
/// `INET_DIAG_SKV6ONLY`: a full IPv6 socket's `IPV6_V6ONLY`, one byte.
const INET_DIAG_SKV6ONLY: u16 = 11;
/// `SK_MEMINFO_DROPS`: index of the drop counter in that array.
const SK_MEMINFO_DROPS: usize = 8;

/// The timer pending on a socket, as `ss -o` prints it (`timer:(on,..)`,
/// `timer:(keepalive,..)`, `timer:(timewait,..)`, `timer:(persist,..)`).
/// Expiries are milliseconds from the moment the kernel listed the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DiagTimer {
    Off,
    /// Retransmission (for SYN-SENT and request sockets: SYN or SYN-ACK).
    Retransmit {
        expires_ms: u32,
        retransmits: u8,
    },
    KeepAlive {
        expires_ms: u32,
    },
    /// The end of a timewait socket (TIME-WAIT, or orphaned FIN-WAIT-2).
    TimeWait {
        expires_ms: u32,
    },
    ZeroWindowProbe {
        expires_ms: u32,
        probes: u8,
    },
}

impl DiagTimer {
    /// Milliseconds until the timer fires (0 when none is pending).
    pub fn expires_ms(self) -> u32 {
        match self {
            DiagTimer::Off => 0,
            DiagTimer::Retransmit { expires_ms, .. }
            | DiagTimer::KeepAlive { expires_ms }
            | DiagTimer::TimeWait { expires_ms }
            | DiagTimer::ZeroWindowProbe { expires_ms, .. } => expires_ms,
        }
    }

    /// From `idiag_timer`, `idiag_retrans` and `idiag_expires`; `None` for
    /// a timer number the kernel does not define.
    fn from_raw(timer: u8, retransmits: u8, expires_ms: u32) -> Option<Self> {
        Some(match timer {
            0 => DiagTimer::Off,
            1 => DiagTimer::Retransmit {
                expires_ms,
                retransmits,
            },
            2 => DiagTimer::KeepAlive { expires_ms },
            3 => DiagTimer::TimeWait { expires_ms },
            4 => DiagTimer::ZeroWindowProbe {
                expires_ms,
                probes: retransmits,
            },
            _ => return None,
        })
    }
}

/// One TCP socket as `NETLINK_SOCK_DIAG` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiagSocket {
    /// Local and remote endpoint; a listener's remote is the unspecified
    /// address with port 0. No IPv6 flow label or scope id, like the
    /// tracer's own tuples.
    pub tuple: SocketTuple,
    /// The kernel's state number: request sockets report `SYN_RECV`,
    /// timewait sockets their substate (`TIME_WAIT`, or `FIN_WAIT2` while
    /// an orphan waits for the peer's FIN).
    pub state: TcpState,
    pub timer: DiagTimer,
    /// Socket inode (0 for timewait and request sockets, and orphans).
    pub inode: u32,
    /// Owner uid (0 for timewait and request sockets).
    pub uid: u32,
    /// Receive queue; for a listener, connections waiting in its accept
    /// queue (`ss -l` Recv-Q).
    pub recv_queue: u32,
    /// Send queue; for a listener, its accept queue's capacity, the
    /// `listen()` backlog (`ss -l` Send-Q).
    pub send_queue: u32,
    /// Packets the socket dropped (`ss -m` `d`). For a listener: SYNs and
    /// final ACKs refused with a full accept queue, and duplicate SYNs for
    /// connections already half-open. Only when the dump asked for memory
    /// information.
    pub drops: Option<u32>,
    /// An IPv6 socket with `IPV6_V6ONLY` set (ss prints its unspecified
    /// address `[::]` rather than `*`).
    pub v6only: bool,
}

impl DiagSocket {
    /// SYN or SYN-ACK retransmits so far, for SYN-SENT and request sockets
    /// (`ss -o`'s last timer field).
    pub fn retransmits(&self) -> u8 {
        match self.timer {
            DiagTimer::Retransmit { retransmits, .. } => retransmits,
            _ => 0,
        }
    }

    /// A timewait socket: what the kernel keeps of a connection after the
    /// full socket closed (TIME-WAIT, or an orphan's FIN-WAIT-2).
    pub fn is_timewait(&self) -> bool {
        matches!(self.timer, DiagTimer::TimeWait { .. })
            && matches!(self.state, TcpState::TimeWait | TcpState::FinWait2)
    }
}

/// Why a record was not turned into a [`DiagSocket`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RecordError {
    /// Shorter than `struct inet_diag_msg`: the reply is corrupt.
    Truncated(usize),
    /// A family, state or timer socktrace does not know: skipped.
    Unknown(String),
}

/// Reads one record: `payload` is a `SOCK_DIAG_BY_FAMILY` message's payload,
/// from a dump made in namespace `netns`.
pub(super) fn parse(payload: &[u8], netns: NetnsInode) -> Result<DiagSocket, RecordError> {
    if payload.len() < INET_DIAG_MSG_LEN {
        return Err(RecordError::Truncated(payload.len()));
    }
    let u32_at = |offset: usize| {
        u32::from_ne_bytes(payload[offset..offset + 4].try_into().expect("4 bytes"))
    };
    let port_at = |offset: usize| u16::from_be_bytes([payload[offset], payload[offset + 1]]);
    let address_at =
        |offset: usize| -> [u8; 16] { payload[offset..offset + 16].try_into().expect("16 bytes") };
    let family = payload[0];
    let ip = |bytes: [u8; 16]| match family {
        AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        AF_INET6 => Ok(IpAddr::V6(Ipv6Addr::from(bytes))),
        other => Err(RecordError::Unknown(format!("family {other}"))),
    };
    let state = TcpState::try_from(payload[1])
        .map_err(|unknown| RecordError::Unknown(unknown.to_string()))?;
    let timer = DiagTimer::from_raw(payload[2], payload[3], u32_at(52))
        .ok_or_else(|| RecordError::Unknown(format!("timer {}", payload[2])))?;
    Ok(DiagSocket {
        tuple: SocketTuple {
            netns,
            local: SocketAddr::new(ip(address_at(8))?, port_at(4)),
            remote: SocketAddr::new(ip(address_at(24))?, port_at(6)),
        },
        state,
        timer,
        recv_queue: u32_at(56),
        send_queue: u32_at(60),
        uid: u32_at(64),
        inode: u32_at(68),
        drops: drops(&payload[INET_DIAG_MSG_LEN..]),
        v6only: attribute(&payload[INET_DIAG_MSG_LEN..], INET_DIAG_SKV6ONLY)
            .is_some_and(|value| value.first() == Some(&1)),
    })
}

const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;

/// The drop counter of an `INET_DIAG_SKMEMINFO` attribute, if present.
fn drops(attributes: &[u8]) -> Option<u32> {
    let at = SK_MEMINFO_DROPS * 4;
    let value = attribute(attributes, INET_DIAG_SKMEMINFO)?.get(at..at + 4)?;
    Some(u32::from_ne_bytes(value.try_into().expect("4 bytes")))
}

/// The value of the first attribute of `kind`, if present and well formed.
fn attribute(mut attributes: &[u8], kind: u16) -> Option<&[u8]> {
    while attributes.len() >= 4 {
        let length = usize::from(u16::from_ne_bytes([attributes[0], attributes[1]]));
        let found = u16::from_ne_bytes([attributes[2], attributes[3]]);
        if length < 4 || length > attributes.len() {
            return None;
        }
        if found == kind {
            return Some(&attributes[4..length]);
        }
        attributes = attributes.get(length.next_multiple_of(4)..).unwrap_or(&[]);
    }
    None
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A raw record: family, state, timer, retransmits, ports, addresses,
    /// expiry, queues, uid and inode at the kernel's offsets.
    pub struct Raw {
        pub family: u8,
        pub state: u8,
        pub timer: u8,
        pub retransmits: u8,
        pub local: SocketAddr,
        pub remote: SocketAddr,
        pub expires_ms: u32,
        pub inode: u32,
    }

    impl Raw {
        pub fn v4(state: u8, local_port: u16) -> Raw {
            Raw {
                family: AF_INET,
                state,
                timer: 0,
                retransmits: 0,
                local: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), local_port),
                remote: SocketAddr::new(Ipv4Addr::new(192, 0, 2, 1).into(), 443),
                expires_ms: 0,
                inode: 42,
            }
        }

        pub fn bytes(&self) -> Vec<u8> {
            let mut bytes = vec![0u8; INET_DIAG_MSG_LEN];
            bytes[..4].copy_from_slice(&[self.family, self.state, self.timer, self.retransmits]);
            bytes[4..6].copy_from_slice(&self.local.port().to_be_bytes());
            bytes[6..8].copy_from_slice(&self.remote.port().to_be_bytes());
            for (at, addr) in [(8, self.local), (24, self.remote)] {
                match addr.ip() {
                    IpAddr::V4(ip) => bytes[at..at + 4].copy_from_slice(&ip.octets()),
                    IpAddr::V6(ip) => bytes[at..at + 16].copy_from_slice(&ip.octets()),
                }
            }
            bytes[52..56].copy_from_slice(&self.expires_ms.to_ne_bytes());
            bytes[56..60].copy_from_slice(&1u32.to_ne_bytes());
            bytes[60..64].copy_from_slice(&2u32.to_ne_bytes());
            bytes[64..68].copy_from_slice(&1000u32.to_ne_bytes());
            bytes[68..72].copy_from_slice(&self.inode.to_ne_bytes());
            bytes
        }
    }

    /// An `INET_DIAG_SKMEMINFO` attribute whose drop counter is `drops`.
    fn meminfo(drops: u32) -> Vec<u8> {
        let mut attribute = Vec::new();
        attribute.extend_from_slice(&(4u16 + 9 * 4).to_ne_bytes());
        attribute.extend_from_slice(&INET_DIAG_SKMEMINFO.to_ne_bytes());
        for index in 0..9u32 {
            let value = if index as usize == SK_MEMINFO_DROPS {
                drops
            } else {
                index
            };
            attribute.extend_from_slice(&value.to_ne_bytes());
        }
        attribute
    }

    #[test]
    fn a_timewait_record_keeps_its_expiry() {
        let mut raw = Raw::v4(6, 40000);
        raw.timer = 3;
        raw.expires_ms = 59_123;
        raw.inode = 0;
        let socket = parse(&raw.bytes(), crate::model::tuple::TEST_NETNS).unwrap();
        assert_eq!(socket.state, TcpState::TimeWait);
        assert_eq!(socket.timer, DiagTimer::TimeWait { expires_ms: 59_123 });
        assert!(socket.is_timewait());
        assert_eq!(socket.tuple.local, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(socket.tuple.remote, "192.0.2.1:443".parse().unwrap());
        assert_eq!((socket.recv_queue, socket.send_queue), (1, 2));
        assert_eq!((socket.uid, socket.inode, socket.drops), (1000, 0, None));
    }

    #[test]
    fn an_orphan_in_fin_wait2_is_timewait_only_with_the_timewait_timer() {
        let mut raw = Raw::v4(5, 40000);
        raw.timer = 3;
        assert!(
            parse(&raw.bytes(), crate::model::tuple::TEST_NETNS)
                .unwrap()
                .is_timewait()
        );
        raw.timer = 2;
        assert!(
            !parse(&raw.bytes(), crate::model::tuple::TEST_NETNS)
                .unwrap()
                .is_timewait()
        );
    }

    #[test]
    fn ipv6_addresses_and_retransmit_timer() {
        let mut raw = Raw::v4(3, 8080);
        raw.family = AF_INET6;
        raw.local = "[2001:db8::1]:8080".parse().unwrap();
        raw.remote = "[2001:db8::2]:50000".parse().unwrap();
        raw.timer = 1;
        raw.retransmits = 2;
        raw.expires_ms = 1500;
        let socket = parse(&raw.bytes(), crate::model::tuple::TEST_NETNS).unwrap();
        assert_eq!(socket.tuple.local, raw.local);
        assert_eq!(socket.tuple.remote, raw.remote);
        assert_eq!(socket.retransmits(), 2);
        assert_eq!(
            socket.timer,
            DiagTimer::Retransmit {
                expires_ms: 1500,
                retransmits: 2
            }
        );
    }

    #[test]
    fn drops_come_from_the_meminfo_attribute_after_others() {
        let mut bytes = Raw::v4(10, 80).bytes();
        // An unrelated 5-byte attribute (padded to 8) first.
        bytes.extend_from_slice(&[5, 0, 9, 0, 1, 0, 0, 0]);
        bytes.extend_from_slice(&meminfo(77));
        assert_eq!(
            parse(&bytes, crate::model::tuple::TEST_NETNS)
                .unwrap()
                .drops,
            Some(77)
        );
        let mut v6only = Raw::v4(10, 80).bytes();
        v6only.extend_from_slice(&[5, 0, 11, 0, 1, 0, 0, 0]);
        assert!(
            parse(&v6only, crate::model::tuple::TEST_NETNS)
                .unwrap()
                .v6only
        );
        assert!(
            !parse(&bytes, crate::model::tuple::TEST_NETNS)
                .unwrap()
                .v6only
        );
        let mut corrupt = Raw::v4(10, 80).bytes();
        corrupt.extend_from_slice(&[200, 0, 4, 0]);
        assert_eq!(
            parse(&corrupt, crate::model::tuple::TEST_NETNS)
                .unwrap()
                .drops,
            None
        );
    }

    #[test]
    fn unknown_values_and_short_records_are_errors() {
        let mut raw = Raw::v4(10, 80);
        raw.family = 99;
        assert!(matches!(
            parse(&raw.bytes(), crate::model::tuple::TEST_NETNS),
            Err(RecordError::Unknown(_))
        ));
        let mut raw = Raw::v4(10, 80);
        raw.state = 42;
        assert!(matches!(
            parse(&raw.bytes(), crate::model::tuple::TEST_NETNS),
            Err(RecordError::Unknown(_))
        ));
        let mut raw = Raw::v4(10, 80);
        raw.timer = 9;
        assert!(matches!(
            parse(&raw.bytes(), crate::model::tuple::TEST_NETNS),
            Err(RecordError::Unknown(_))
        ));
        assert_eq!(
            parse(&[0u8; 30], crate::model::tuple::TEST_NETNS),
            Err(RecordError::Truncated(30)),
            "a short record is corrupt, not unknown"
        );
    }
}
