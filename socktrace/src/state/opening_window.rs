//! Connections opened per remote subnet over the last few seconds: which
//! /24 (or /64) is opening hundreds right now. Memory is bounded: each
//! second of the window keeps at most [`KEPT_PER_SECOND`] subnets, however
//! many a scan opens to.
use std::collections::{HashMap, VecDeque};

use crate::{model::cidr::Cidr, state::heavy_hitters::HeavyHitters};

/// How far back [`OpeningWindow`] counts, in seconds.
pub const WINDOW_SECS: u64 = 10;

/// Subnets kept per second: far more than an overview names. Past that,
/// each new one takes the place of the one that opened the fewest, merged
/// into the rest (see [`HeavyHitters`]).
pub const KEPT_PER_SECOND: usize = 1024;

const NS_PER_SEC: u64 = 1_000_000_000;

/// Counts per subnet in one-second buckets.
#[derive(Debug, Default)]
pub struct OpeningWindow {
    /// Oldest first.
    buckets: VecDeque<Second>,
}

/// One second's opens.
#[derive(Debug)]
struct Second {
    /// Since boot.
    second: u64,
    counts: HeavyHitters<Cidr, u64>,
    /// The latest opens, all of one subnet, not yet in `counts`: a host
    /// behind a proxy or talking to one backend opens run after run from
    /// one subnet, and a run costs one update of `counts`, not one each.
    run: Option<(Cidr, u64)>,
}

impl Second {
    fn new(second: u64, subnet: Cidr) -> Self {
        Second {
            second,
            counts: HeavyHitters::new(KEPT_PER_SECOND),
            run: Some((subnet, 1)),
        }
    }

    fn record(&mut self, subnet: Cidr) {
        match &mut self.run {
            Some((running, opens)) if *running == subnet => *opens += 1,
            _ => {
                self.count_run();
                self.run = Some((subnet, 1));
            }
        }
    }

    fn count_run(&mut self) {
        if let Some((subnet, run)) = self.run.take() {
            self.counts.update(subnet, |opens| *opens += run);
        }
    }
}

impl OpeningWindow {
    pub fn new() -> Self {
        Self::default()
    }

    /// A connection to or from `subnet` opened at `ts_ns`.
    pub fn record(&mut self, ts_ns: u64, subnet: Cidr) {
        let second = ts_ns / NS_PER_SEC;
        match self.buckets.back_mut() {
            // Records arrive in time order per CPU, not across CPUs: a
            // slightly older one joins the newest bucket.
            Some(newest) if newest.second >= second => newest.record(subnet),
            _ => {
                self.buckets.push_back(Second::new(second, subnet));
                self.forget_before(second);
            }
        }
    }

    /// Opens per subnet within the window ending at `now_ns`, most first
    /// (ties by subnet), at most `limit` of them.
    pub fn top(&mut self, now_ns: u64, limit: usize) -> Vec<(Cidr, u64)> {
        self.forget_before(now_ns / NS_PER_SEC);
        let mut totals: HashMap<Cidr, u64> = HashMap::new();
        for bucket in &mut self.buckets {
            bucket.count_run();
            for row in bucket.counts.rows() {
                *totals.entry(row.key).or_default() += row.value;
            }
        }
        let mut top: Vec<(Cidr, u64)> = totals.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(limit);
        top
    }

    /// Subnets the window's seconds merged beyond [`KEPT_PER_SECOND`] (as
    /// of the last [`OpeningWindow::top`]), their opens in no count; one
    /// merged in two seconds counts twice.
    pub fn merged(&self) -> u64 {
        self.buckets
            .iter()
            .map(|bucket| bucket.counts.merged())
            .sum()
    }

    fn forget_before(&mut self, now_second: u64) {
        let oldest_kept = now_second.saturating_sub(WINDOW_SECS - 1);
        while self
            .buckets
            .front()
            .is_some_and(|bucket| bucket.second < oldest_kept)
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
        assert_eq!(window.merged(), 0);
    }

    #[test]
    fn a_late_record_joins_the_newest_bucket() {
        let mut window = OpeningWindow::new();
        window.record(3 * NS_PER_SEC, subnet("10.0.0.0/24"));
        window.record(2 * NS_PER_SEC, subnet("10.0.0.0/24"));
        assert_eq!(window.buckets.len(), 1);
        assert_eq!(window.top(3 * NS_PER_SEC, 1)[0].1, 2);
    }

    /// A scan opening connections to a million /64s in one second: each
    /// second keeps at most its bound of subnets, and the one opening the
    /// most still comes first.
    #[test]
    fn a_flood_of_subnets_keeps_each_second_within_the_bound() {
        let mut window = OpeningWindow::new();
        let heavy = subnet("198.51.100.0/24");
        for i in 0..1_000_000u64 {
            let scanned = Cidr::subnet_of(std::net::Ipv6Addr::from(u128::from(i) << 64).into());
            window.record(NS_PER_SEC + i, scanned);
            if i % 100 == 0 {
                window.record(NS_PER_SEC + i, heavy);
            }
        }
        let kept: usize = window
            .buckets
            .iter()
            .map(|bucket| bucket.counts.len())
            .sum();
        assert_eq!(kept, KEPT_PER_SECOND, "subnets kept");
        assert_eq!(window.top(NS_PER_SEC, 1), vec![(heavy, 10_000)]);
        assert_eq!(window.merged(), 1_000_001 - KEPT_PER_SECOND as u64);
        assert_eq!(window.top(11 * NS_PER_SEC, 1), vec![]);
        assert_eq!(window.merged(), 0, "out of the window");
    }
}
