//! Which sockets a user asked to see (handshake attempts, timewait
//! sockets): by port, remote address or prefix, owning process and comm.
//! Each kind of criterion matches if any of its values does; all given
//! kinds must match.
use crate::{model::cidr::Cidr, model::owner::Owner, model::tuple::SocketTuple};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SocketFilter {
    /// Local or remote port.
    pub ports: Vec<u16>,
    /// Remote address within one of these prefixes.
    pub hosts: Vec<Cidr>,
    /// Owner pid.
    pub pids: Vec<u32>,
    /// Owner comm, exactly as the kernel truncates it (15 bytes).
    pub comms: Vec<String>,
}

impl SocketFilter {
    pub fn matches(&self, tuple: &SocketTuple, owner: Option<&Owner>) -> bool {
        let port = self.ports.is_empty()
            || self
                .ports
                .iter()
                .any(|&p| p == tuple.local.port() || p == tuple.remote.port());
        let host =
            self.hosts.is_empty() || self.hosts.iter().any(|c| c.contains(tuple.remote.ip()));
        let pid = self.pids.is_empty() || owner.is_some_and(|o| self.pids.contains(&o.pid));
        let comm = self.comms.is_empty()
            || owner.is_some_and(|o| {
                let text = o.comm.to_text();
                self.comms.contains(&text)
            });
        port && host && pid && comm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::owner::Comm;

    fn tuple() -> SocketTuple {
        SocketTuple {
            netns: crate::model::tuple::TEST_NETNS,
            local: "10.0.0.1:40000".parse().unwrap(),
            remote: "192.0.2.7:443".parse().unwrap(),
        }
    }

    fn curl() -> Owner {
        Owner {
            pid: 42,
            comm: Comm::from_text("curl"),
            container: None,
        }
    }

    #[test]
    fn an_empty_filter_matches_everything_even_without_owner() {
        assert!(SocketFilter::default().matches(&tuple(), None));
    }

    #[test]
    fn ports_match_either_end() {
        let mut filter = SocketFilter {
            ports: vec![443],
            ..Default::default()
        };
        assert!(filter.matches(&tuple(), None));
        filter.ports = vec![40000];
        assert!(filter.matches(&tuple(), None));
        filter.ports = vec![80, 22];
        assert!(!filter.matches(&tuple(), None));
    }

    #[test]
    fn hosts_match_the_remote_address_by_prefix() {
        let mut filter = SocketFilter {
            hosts: vec!["192.0.2.0/24".parse().unwrap()],
            ..Default::default()
        };
        assert!(filter.matches(&tuple(), None));
        filter.hosts = vec!["10.0.0.1".parse().unwrap()];
        assert!(
            !filter.matches(&tuple(), None),
            "the local address is not the host"
        );
    }

    #[test]
    fn pid_and_comm_need_a_known_owner_and_all_kinds_must_match() {
        let filter = SocketFilter {
            pids: vec![42],
            comms: vec!["curl".into()],
            ports: vec![443],
            ..Default::default()
        };
        assert!(filter.matches(&tuple(), Some(&curl())));
        assert!(!filter.matches(&tuple(), None));
        let wget = Owner {
            pid: 42,
            comm: Comm::from_text("wget"),
            container: None,
        };
        assert!(!filter.matches(&tuple(), Some(&wget)));
    }
}
