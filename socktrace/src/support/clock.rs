//! Kernel timestamps (CLOCK_MONOTONIC, as `bpf_ktime_get_ns`) to wall time.

/// Converts monotonic nanoseconds to wall-clock time, fixed at creation.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    /// Realtime minus monotonic, in nanoseconds.
    offset_ns: i128,
}

impl WallClock {
    /// Reads both clocks now.
    pub fn now() -> Self {
        Self {
            offset_ns: read(libc::CLOCK_REALTIME) - read(libc::CLOCK_MONOTONIC),
        }
    }

    /// Realtime minus monotonic.
    pub fn offset_ns(&self) -> i128 {
        self.offset_ns
    }

    /// With a known offset (tests, replays).
    pub fn with_offset_ns(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// `HH:MM:SS.mmm` (UTC) of a monotonic timestamp.
    pub fn time_of_day(&self, monotonic_ns: u64) -> String {
        let wall_ns = i128::from(monotonic_ns) + self.offset_ns;
        let ms_of_day = (wall_ns / 1_000_000).rem_euclid(86_400_000);
        let (h, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
        let (m, rest) = (rest / 60_000, rest % 60_000);
        format!("{h:02}:{m:02}:{:02}.{:03}", rest / 1000, rest % 1000)
    }
}

/// The current monotonic time in nanoseconds, on the kernel's clock.
pub fn monotonic_now_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC).try_into().unwrap_or(0)
}

fn read(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and a valid out pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_of_day_wraps_at_midnight() {
        let clock = WallClock::with_offset_ns(86_400_000_000_000 - 1_000_000);
        assert_eq!(clock.time_of_day(0), "23:59:59.999");
        assert_eq!(clock.time_of_day(1_000_000), "00:00:00.000");
        assert_eq!(clock.time_of_day(3_723_004_000_000), "01:02:03.003");
    }
}
