//! The agent's own CPU time and resident memory, from `/proc/self`.
use std::{fs, io};

/// See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelfUsage {
    /// User and system CPU time since the process started.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
}

impl SelfUsage {
    pub fn read() -> io::Result<SelfUsage> {
        let stat = fs::read_to_string("/proc/self/stat")?;
        let statm = fs::read_to_string("/proc/self/statm")?;
        // SAFETY: plain queries of constants, no arguments to check.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        parse(&stat, &statm, ticks, page).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "unexpected /proc/self/stat or statm",
            )
        })
    }
}

/// `utime` and `stime` (fields 14 and 15 of `stat`, after the command in
/// parentheses) in `ticks` per second, and `statm`'s resident pages.
fn parse(stat: &str, statm: &str, ticks: i64, page: i64) -> Option<SelfUsage> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let resident: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    (ticks > 0 && page > 0).then(|| SelfUsage {
        cpu_seconds: (utime + stime) as f64 / ticks as f64,
        resident_bytes: resident * page as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory_come_from_stat_and_statm() {
        let stat = "4242 (socktrace agent) S 1 4242 4242 0 -1 4194560 500 0 0 0 \
                    250 50 0 0 20 0 4 0 100 200000000 3000 18446744073709551615";
        let usage = parse(stat, "50000 3000 1000 100 0 4000 0", 100, 4096).unwrap();
        assert_eq!(usage.cpu_seconds, 3.0);
        assert_eq!(usage.resident_bytes, 3000 * 4096);
        assert_eq!(parse("garbage", "", 100, 4096), None);
    }

    #[test]
    fn this_process_can_read_its_own() {
        let usage = SelfUsage::read().unwrap();
        assert!(usage.resident_bytes > 0);
    }
}
