//! A failure that can repeat many times a second (accept out of file
//! descriptors, a namespace scan that fails) is logged once per interval,
//! with how many times it happened since. Pure: an explicit `now` in.

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct LogThrottle {
    interval_ns: u64,
    /// When the last line was logged.
    logged_ns: Option<u64>,
    /// Failures since then, not logged yet.
    unlogged: u64,
    /// Failures since the start.
    total: u64,
}

impl LogThrottle {
    pub fn new(interval_ns: u64) -> Self {
        LogThrottle {
            interval_ns,
            logged_ns: None,
            unlogged: 0,
            total: 0,
        }
    }

    /// Counts one failure at `now_ns`. When a line is due (the first
    /// failure, then at most one per interval), how many failures it stands
    /// for: this one and those not logged since the last line.
    pub fn failed(&mut self, now_ns: u64) -> Option<u64> {
        self.total += 1;
        self.unlogged += 1;
        let due = self
            .logged_ns
            .is_none_or(|logged| now_ns.saturating_sub(logged) >= self.interval_ns);
        if !due {
            return None;
        }
        self.logged_ns = Some(now_ns);
        Some(std::mem::take(&mut self.unlogged))
    }

    /// Failures counted since the start.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn the_first_failure_is_logged_then_one_line_per_interval_with_a_count() {
        let mut throttle = LogThrottle::new(10 * SECOND);
        assert_eq!(throttle.failed(5 * SECOND), Some(1));
        for at in 0..1000 {
            assert_eq!(throttle.failed(5 * SECOND + at * 1000), None);
        }
        assert_eq!(throttle.failed(15 * SECOND), Some(1001));
        assert_eq!(throttle.failed(16 * SECOND), None);
        assert_eq!(throttle.failed(40 * SECOND), Some(2));
        assert_eq!(throttle.total(), 1004);
    }
}
