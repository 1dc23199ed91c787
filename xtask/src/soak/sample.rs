//! One sample of the soak: the agent's RSS, CPU time, descriptors and
//! threads from /proc, the transitions its state program ran for (the
//! kernel's count, kept while the soak holds the BPF statistics on), and
//! what the load and the clients saw.
use std::fs;

use anyhow::{Context, Result};
use socktrace_ebpf::PROGRAM_STATE;

use crate::bench::{programs, tracer};

/// The agent and the world at one moment; the counts are since the start.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// Seconds since the agent was ready.
    pub elapsed_s: f64,
    pub rss_kib: u64,
    /// User plus system CPU seconds.
    pub cpu_s: f64,
    pub fds: u64,
    pub threads: u64,
    /// Events the agent reported lost.
    pub lost: u64,
    /// Transitions the kernel ran the agent's state program for, in every
    /// namespace (the kernel's program statistics): the load's and any
    /// other on the host.
    pub host_transitions: u64,
    /// Connections the load made, and those that failed.
    pub connections: u64,
    pub connection_failures: u64,
    /// Handshakes the load left unanswered that timed out.
    pub handshake_timeouts: u64,
    /// TIME-WAIT and CLOSE-WAIT sockets in the soak's namespace, from the
    /// agent's last overview.
    pub time_wait: u64,
    pub close_wait: u64,
    /// Sockets the last `ss -tanpo` listed, and how long it took.
    pub listed: u64,
    pub listing_ms: f64,
    pub queries: u64,
    pub query_failures: u64,
}

/// Transitions of one loopback connection of the load, its two ends
/// together: five each, two to open (`CLOSE -> SYN_SENT -> ESTABLISHED`,
/// `LISTEN -> SYN_RECV -> ESTABLISHED`) and three to close (`FIN_WAIT1`,
/// `FIN_WAIT2`, `CLOSE` for the side closing first, `CLOSE_WAIT`,
/// `LAST_ACK`, `CLOSE` for the other).
pub const TRANSITIONS_PER_CONNECTION: u64 = 10;
/// Of a connect that times out: `CLOSE -> SYN_SENT -> CLOSE` (the server
/// side of a handshake never completed makes none).
pub const TRANSITIONS_PER_TIMEOUT: u64 = 2;

impl Sample {
    /// The transitions the soak's load made: the host's count less any
    /// other load's, which the kernel does not tell apart.
    pub fn load_transitions(&self) -> u64 {
        self.connections * TRANSITIONS_PER_CONNECTION
            + self.handshake_timeouts * TRANSITIONS_PER_TIMEOUT
    }
}

/// What /proc and the kernel's program statistics say of process `pid`.
pub struct Process {
    pub rss_kib: u64,
    pub cpu_s: f64,
    pub fds: u64,
    pub threads: u64,
    pub host_transitions: u64,
}

impl Process {
    pub fn read(pid: u32) -> Result<Self> {
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let fds = fs::read_dir(format!("/proc/{pid}/fd"))
            .with_context(|| format!("listing /proc/{pid}/fd"))?
            .count() as u64;
        let host_transitions = programs::of_process(pid)?
            .values()
            .find(|program| program.name == PROGRAM_STATE)
            .map(|program| program.run_count + program.recursion_misses)
            .with_context(|| format!("process {pid} holds no {PROGRAM_STATE} program"))?;
        Ok(Process {
            rss_kib: status_field(&status, "VmRSS")?,
            cpu_s: tracer::cpu_seconds(pid)?,
            fds,
            threads: status_field(&status, "Threads")?,
            host_transitions,
        })
    }
}

/// The number of `/proc/PID/status`'s line `name:` (`VmRSS:  1234 kB`).
fn status_field(status: &str, name: &str) -> Result<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {name} in /proc/PID/status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_by_name() {
        let status = "Name:\tsocktrace\nVmRSSMax:\t1 kB\nVmRSS:\t   41236 kB\nThreads:\t7\n";
        assert_eq!(status_field(status, "VmRSS").unwrap(), 41236);
        assert_eq!(status_field(status, "Threads").unwrap(), 7);
        assert!(status_field(status, "VmSwap").is_err());
    }
}
