//! TCP states as the kernel numbers them, with the names users know from
//! `ss` (`SYN-SENT`) and from the kernel and tracepoints (`SYN_SENT`).
use std::fmt;

/// A TCP state (`include/net/tcp_states.h`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[repr(u8)]
pub enum TcpState {
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait1 = 4,
    FinWait2 = 5,
    TimeWait = 6,
    Close = 7,
    CloseWait = 8,
    LastAck = 9,
    Listen = 10,
    Closing = 11,
    /// A request socket (half-open passive connection); `ss` shows it as SYN-RECV.
    NewSynRecv = 12,
}

/// A state number the kernel should never produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown TCP state {0}")]
pub struct UnknownState(pub u8);

impl TcpState {
    /// Every state, in kernel order.
    /// How many states there are: the length of per-state arrays.
    pub const COUNT: usize = 12;

    pub const ALL: [TcpState; TcpState::COUNT] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
        TcpState::NewSynRecv,
    ];

    /// The kernel's name without the `TCP_` prefix, as tracepoints print it.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
            TcpState::NewSynRecv => "NEW_SYN_RECV",
        }
    }

    /// The name `ss -tan` prints in its State column.
    pub fn ss_name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTAB",
            TcpState::SynSent => "SYN-SENT",
            TcpState::SynRecv | TcpState::NewSynRecv => "SYN-RECV",
            TcpState::FinWait1 => "FIN-WAIT-1",
            TcpState::FinWait2 => "FIN-WAIT-2",
            TcpState::TimeWait => "TIME-WAIT",
            TcpState::Close => "UNCONN",
            TcpState::CloseWait => "CLOSE-WAIT",
            TcpState::LastAck => "LAST-ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
        }
    }

    /// Position in [`TcpState::ALL`].
    pub fn index(self) -> usize {
        self as usize - 1
    }
}

impl TryFrom<u8> for TcpState {
    type Error = UnknownState;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        match value {
            1..=12 => Ok(TcpState::ALL[usize::from(value) - 1]),
            other => Err(UnknownState(other)),
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_unknown_ones_are_rejected() {
        for state in TcpState::ALL {
            assert_eq!(TcpState::try_from(state as u8), Ok(state));
        }
        assert_eq!(TcpState::try_from(0), Err(UnknownState(0)));
        assert_eq!(TcpState::try_from(13), Err(UnknownState(13)));
    }

    #[test]
    fn names_match_the_kernel_and_ss() {
        assert_eq!(TcpState::FinWait2.name(), "FIN_WAIT2");
        assert_eq!(TcpState::FinWait2.ss_name(), "FIN-WAIT-2");
        assert_eq!(TcpState::NewSynRecv.ss_name(), "SYN-RECV");
        assert_eq!(TcpState::Established.ss_name(), "ESTAB");
    }
}
