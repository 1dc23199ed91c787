//! Connections opened per remote subnet over the last few seconds: which
//! /24 (or /64) is opening hundreds right now. Memory is bounded by the
//! subnets seen within the window, not by the agent's lifetime.
use std::collections::{HashMap, VecDeque};

use crate::cidr::Cidr;

/// How far back [`OpeningWindow`] counts, in seconds.
pub const WINDOW_SECS: u64 = 10;

const NS_PER_SEC: u64 = 1_000_000_000;

/// Counts per subnet in one-second buckets.
#[derive(Debug, Default)]
pub struct OpeningWindow {
    /// (second since boot, opens per subnet in it), oldest first.
    buckets: VecDeque<(u64, HashMap<Cidr, u64>)>,
}

impl OpeningWindow {
    pub fn new() -> Self {
        Self::default()
    }

    /// A connection to or from `subnet` opened at `ts_ns`.
    pub fn record(&mut self, ts_ns: u64, subnet: Cidr) {
        let second = ts_ns / NS_PER_SEC;
        let bucket = match self.buckets.back_mut() {
            Some((last, counts)) if *last == second => counts,
            // Records arrive in time order per CPU, not across CPUs: a
            // slightly older one joins the newest bucket.
            Some((last, counts)) if *last > second => counts,
            _ => {
                self.buckets.push_back((second, HashMap::new()));
                &mut self.buckets.back_mut().expect("just pushed").1
            }
        };
        *bucket.entry(subnet).or_default() += 1;
        self.forget_before(second);
    }

    /// Opens per subnet within the window ending at `now_ns`, most first
    /// (ties by subnet), at most `limit` of them.
    pub fn top(&mut self, now_ns: u64, limit: usize) -> Vec<(Cidr, u64)> {
        self.forget_before(now_ns / NS_PER_SEC);
        let mut totals: HashMap<Cidr, u64> = HashMap::new();
        for (_, counts) in &self.buckets {
            for (subnet, count) in counts {
                *totals.entry(*subnet).or_default() += count;
            }
        }
        let mut top: Vec<(Cidr, u64)> = totals.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(limit);
        top
    }

    fn forget_before(&mut self, now_second: u64) {
        let oldest_kept = now_second.saturating_sub(WINDOW_SECS - 1);
        while self
            .buckets
            .front()
            .is_some_and(|(second, _)| *second < oldest_kept)
        {
            self.buckets.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn counts_within_the_window_and_forgets_older_seconds() {
        let mut window = OpeningWindow::new();
        for i in 0..300 {
            window.record(5 * NS_PER_SEC + i, subnet("192.0.2.0/24"));
        }
        window.record(6 * NS_PER_SEC, subnet("198.51.100.0/24"));
        assert_eq!(
            window.top(6 * NS_PER_SEC, 10),
            vec![
                (subnet("192.0.2.0/24"), 300),
                (subnet("198.51.100.0/24"), 1)
            ]
        );
        // Second 5 is 10 s old at second 15: out of the window.
        assert_eq!(
            window.top(15 * NS_PER_SEC, 10),
            vec![(subnet("198.51.100.0/24"), 1)]
        );
        assert!(window.top(16 * NS_PER_SEC, 10).is_empty());
    }

    #[test]
    fn limits_the_list_and_breaks_ties_by_subnet() {
        let mut window = OpeningWindow::new();
        for text in ["10.0.3.0/24", "10.0.1.0/24", "10.0.2.0/24"] {
            window.record(NS_PER_SEC, subnet(text));
        }
        assert_eq!(
            window.top(NS_PER_SEC, 2),
            vec![(subnet("10.0.1.0/24"), 1), (subnet("10.0.2.0/24"), 1)]
        );
    }

    #[test]
    fn a_late_record_joins_the_newest_bucket() {
        let mut window = OpeningWindow::new();
        window.record(3 * NS_PER_SEC, subnet("10.0.0.0/24"));
        window.record(2 * NS_PER_SEC, subnet("10.0.0.0/24"));
        assert_eq!(window.buckets.len(), 1);
        assert_eq!(window.top(3 * NS_PER_SEC, 1)[0].1, 2);
    }
}
