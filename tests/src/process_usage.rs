//! What a process has used so far, from /proc: CPU time and resident
//! memory, for tests that bound them.
use std::time::Duration;

use anyhow::{Context, Result};

/// CPU time (user and system) process `pid` has used so far, from
/// `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name, in parentheses, may hold spaces: count fields
    // after its closing parenthesis. utime and stime are fields 14 and 15.
    let after_comm = stat
        .rsplit_once(')')
        .with_context(|| format!("no command name in {path}"))?
        .1;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum::<Option<u64>>()
        .with_context(|| format!("no utime and stime in {path}"))?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).context("CLK_TCK")?;
    Ok(Duration::from_millis(ticks * 1000 / per_second))
}

/// The resident memory of process `pid` (`VmRSS` in `/proc/PID/status`),
/// in bytes.
pub fn resident_bytes(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))?;
    Ok(kib * 1024)
}
