//! The metrics' label sets and label values: each label takes its values
//! from one type (an enum, or an address, prefix, port or name), never a
//! free string.
use std::{
    fmt::{self, Write as _},
    net::{IpAddr, SocketAddr},
};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

use crate::{
    model::cidr::Cidr,
    model::tcp_state::TcpState,
    state::handshake_tracker::{Outcome, Side},
    state::time_wait_tracker::TimeWaitEnd,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: StateName,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub from: StateName,
    pub to: StateName,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    pub side: SideName,
    pub outcome: OutcomeName,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerHandshakeLabels {
    pub peer: Prefix,
    pub side: SideName,
    pub outcome: OutcomeName,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub peer: Prefix,
    pub side: SideName,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceStateLabels {
    pub namespace: NamespaceName,
    pub state: StateName,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceHandshakeLabels {
    pub namespace: NamespaceName,
    pub side: SideName,
    pub outcome: OutcomeName,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PortLabels {
    pub port: Port,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SideLabels {
    pub side: SideName,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndLabels {
    pub reason: EndName,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabels {
    pub source: Address,
    pub destination: Endpoint,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LossLabels {
    pub cause: LossCause,
}

/// A network namespace as output names it: its /run/netns names, or its
/// inode.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct NamespaceName(pub String);

/// A listening port asked for with --metrics-port.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Port(pub u16);

/// A prefix asked for with --metrics-peer (`10.0.0.0/8`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Prefix(pub Cidr);

/// A local address (`10.0.0.5`, `::1`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Address(pub IpAddr);

/// A remote address and port (`192.0.2.7:443`, `[2001:db8::7]:443`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Endpoint(pub SocketAddr);

/// A TCP state as the kernel names it (`SYN_SENT`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct StateName(pub TcpState);

/// `client` or `server`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct SideName(pub Side);

/// `established`, `timeout`, `refused`... as `socktrace handshakes` says.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct OutcomeName(pub Outcome);

/// `expired`, `reused`, `killed`, `teardown`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct EndName(pub TimeWaitEnd);

/// Why events were lost: the ring buffer was full, or the kernel skipped a
/// program run nested in another BPF program.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum LossCause {
    RingFull,
    Skipped,
}

impl EncodeLabelValue for NamespaceName {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(&self.0)
    }
}

impl EncodeLabelValue for Port {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        write!(encoder, "{}", self.0)
    }
}

impl EncodeLabelValue for Prefix {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        write!(encoder, "{}", self.0)
    }
}

impl EncodeLabelValue for Address {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        write!(encoder, "{}", self.0)
    }
}

impl EncodeLabelValue for Endpoint {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        write!(encoder, "{}", self.0)
    }
}

impl EncodeLabelValue for StateName {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(self.0.name())
    }
}

impl EncodeLabelValue for SideName {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(self.0.name())
    }
}

impl EncodeLabelValue for OutcomeName {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(self.0.name())
    }
}

impl EncodeLabelValue for EndName {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(self.0.name())
    }
}

impl EncodeLabelValue for LossCause {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(match self {
            LossCause::RingFull => "ring_full",
            LossCause::Skipped => "skipped",
        })
    }
}
