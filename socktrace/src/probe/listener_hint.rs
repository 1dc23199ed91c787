//! Why a port of this host refused a connection: what listens on it, and
//! on which addresses (the "listens on 127.0.0.1 only" case).
use std::net::{IpAddr, SocketAddr, UdpSocket};

use crate::{
    host::sock_diag::{self, DiagSocket, DumpRequest, SockDiagError},
    model::tcp_state::TcpState,
    model::tuple::NetnsInode,
};

/// Whether `ip` is an address of this host (in this network namespace):
/// only a local address can be bound.
pub fn is_local(ip: IpAddr) -> bool {
    UdpSocket::bind((ip, 0)).is_ok()
}

/// The listeners of this network namespace, named `netns`.
pub fn listeners(netns: NetnsInode) -> Result<Vec<DiagSocket>, SockDiagError> {
    sock_diag::dump(&DumpRequest::states(&[TcpState::Listen]), netns)
}

/// What listens on `target`'s port, said against `target`'s address.
pub fn hint(target: SocketAddr, listeners: &[DiagSocket]) -> String {
    let port = target.port();
    let on_port: Vec<&DiagSocket> = listeners
        .iter()
        .filter(|listener| listener.tuple.local.port() == port)
        .collect();
    if on_port.is_empty() {
        return format!("nothing listens on port {port} in this network namespace");
    }
    let mut addresses: Vec<String> = on_port
        .iter()
        .map(|listener| listen_address(listener.tuple.local.ip(), listener.v6only))
        .collect();
    addresses.dedup();
    let addresses = addresses.join(", ");
    let ip = target.ip();
    if on_port
        .iter()
        .any(|listener| takes(listener.tuple.local.ip(), listener.v6only, ip))
    {
        format!(
            "port {port} listens on {addresses}, which takes {ip}: the refusal came from \
             elsewhere (a firewall rule's tcp-reset?)"
        )
    } else {
        format!("port {port} listens on {addresses} only, not on {ip}")
    }
}

/// A listening address as ss prints it: `*` for the IPv6 wildcard that
/// also takes IPv4.
fn listen_address(ip: IpAddr, v6only: bool) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) if v6.is_unspecified() && !v6only => "*".to_owned(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Whether a listener on `listening` takes connections to `target`.
fn takes(listening: IpAddr, v6only: bool, target: IpAddr) -> bool {
    if listening.to_canonical() == target.to_canonical() {
        return true;
    }
    match (listening, target.to_canonical()) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
            listening.is_unspecified()
        }
        (IpAddr::V6(_), IpAddr::V4(_)) => listening.is_unspecified() && !v6only,
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{host::sock_diag::DiagTimer, model::tuple::SocketTuple};

    fn listener(local: &str, v6only: bool) -> DiagSocket {
        let local: SocketAddr = local.parse().unwrap();
        let remote = SocketAddr::new(
            match local {
                SocketAddr::V4(_) => IpAddr::from([0, 0, 0, 0]),
                SocketAddr::V6(_) => IpAddr::from([0u16; 8]),
            },
            0,
        );
        DiagSocket {
            tuple: SocketTuple {
                netns: 1,
                local,
                remote,
            },
            state: TcpState::Listen,
            timer: DiagTimer::Off,
            inode: 1,
            uid: 0,
            recv_queue: 0,
            send_queue: 128,
            drops: None,
            v6only,
        }
    }

    fn at(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_loopback_only_listener_is_named_against_the_address_tried() {
        let listeners = [
            listener("127.0.0.1:8080", false),
            listener("10.0.0.5:22", false),
        ];
        assert_eq!(
            hint(at("10.0.0.5:8080"), &listeners),
            "port 8080 listens on 127.0.0.1 only, not on 10.0.0.5"
        );
        assert_eq!(
            hint(at("10.0.0.5:9090"), &listeners),
            "nothing listens on port 9090 in this network namespace"
        );
    }

    #[test]
    fn an_ipv6_only_listener_does_not_take_ipv4_and_a_dual_stack_one_does() {
        let v6only = [listener("[::]:443", true)];
        assert_eq!(
            hint(at("10.0.0.5:443"), &v6only),
            "port 443 listens on [::] only, not on 10.0.0.5"
        );
        let dual = [listener("[::]:443", false)];
        assert!(
            hint(at("10.0.0.5:443"), &dual)
                .starts_with("port 443 listens on *, which takes 10.0.0.5")
        );
        let v4 = [listener("0.0.0.0:443", false)];
        assert_eq!(
            hint(at("[::1]:443"), &v4),
            "port 443 listens on 0.0.0.0 only, not on ::1"
        );
    }

    #[test]
    fn this_hosts_loopback_is_local_and_a_documentation_address_is_not() {
        assert!(is_local(IpAddr::from([127, 0, 0, 1])));
        assert!(!is_local(IpAddr::from([192, 0, 2, 1])));
    }
}
