//! A fixed-precision latency histogram: bounded memory however many
//! samples, percentiles within about 3 %.

/// Sub-buckets per power of two: values are kept to 1/32 of their size.
const SUB_BUCKETS: u64 = 32;
const SUB_BITS: u32 = SUB_BUCKETS.trailing_zeros();

/// Counts of microsecond latencies in log-linear buckets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// The bucket `counts[0]` counts.
    first: usize,
    /// From the lowest bucket used to the highest: one bucket for a single
    /// latency, 32 per doubling of the spread, at most 1,601 (12.5 KiB,
    /// up to the bucket of `u64::MAX` nanoseconds).
    counts: Vec<u64>,
    total: u64,
}

impl LatencyHistogram {
    pub fn record_ns(&mut self, ns: u64) {
        self.add(bucket(ns / 1000), 1);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// Adds the samples of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (offset, &count) in other.counts.iter().enumerate() {
            if count > 0 {
                self.add(other.first + offset, count);
            }
        }
    }

    /// Adds `count` samples to bucket `index`, widening the span to it.
    fn add(&mut self, index: usize, count: u64) {
        if self.counts.is_empty() {
            self.first = index;
        } else if index < self.first {
            let below = self.first - index;
            self.counts.splice(0..0, std::iter::repeat_n(0, below));
            self.first = index;
        }
        let offset = index - self.first;
        if self.counts.len() <= offset {
            self.counts.resize(offset + 1, 0);
        }
        self.counts[offset] += count;
        self.total += count;
    }

    /// The `q` quantile (0.5 for the median) in milliseconds: the middle of
    /// the bucket holding that rank. `None` without samples.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (offset, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (low, width) = bucket_range(self.first + offset);
                return Some((low as f64 + width as f64 / 2.0) / 1000.0);
            }
        }
        None
    }
}

/// Bucket of a value in microseconds: exact below [`SUB_BUCKETS`], then
/// [`SUB_BUCKETS`] equal buckets per power of two.
fn bucket(us: u64) -> usize {
    if us < SUB_BUCKETS {
        return us as usize;
    }
    let shift = (63 - us.leading_zeros()) - SUB_BITS;
    let mantissa = us >> shift;
    (SUB_BUCKETS * (u64::from(shift) + 1) + (mantissa - SUB_BUCKETS)) as usize
}

/// `(lowest value, width)` of a bucket, in microseconds.
fn bucket_range(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < SUB_BUCKETS {
        return (index, 1);
    }
    let shift = index / SUB_BUCKETS - 1;
    let mantissa = index % SUB_BUCKETS + SUB_BUCKETS;
    (mantissa << shift, 1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_trip_and_stay_within_three_percent() {
        for us in [0, 1, 31, 32, 33, 63, 64, 1000, 1_000_000, 123_456_789] {
            let (low, width) = bucket_range(bucket(us));
            assert!(low <= us && us < low + width, "{us} in [{low}, +{width})");
            assert!(width as f64 <= (us as f64 / 32.0).max(1.0), "{us}: {width}");
        }
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut histogram = LatencyHistogram::default();
        assert_eq!(histogram.quantile_ms(0.5), None);
        for _ in 0..98 {
            histogram.record_ns(200_000); // 0.2 ms
        }
        histogram.record_ns(1_000_000_000); // 1 s: a retransmitted SYN
        histogram.record_ns(3_000_000_000);
        assert_eq!(histogram.count(), 100);
        let p50 = histogram.quantile_ms(0.5).unwrap();
        assert!((p50 - 0.2).abs() < 0.01, "{p50}");
        let p99 = histogram.quantile_ms(0.99).unwrap();
        assert!((p99 - 1000.0).abs() < 1000.0 * 0.03, "{p99}");
        let max = histogram.quantile_ms(1.0).unwrap();
        assert!((max - 3000.0).abs() < 3000.0 * 0.03, "{max}");

        let mut merged = LatencyHistogram::default();
        merged.record_ns(1_000_000_000);
        merged.merge(&histogram);
        assert_eq!(merged.count(), 101);
        assert_eq!(merged.quantile_ms(0.5), histogram.quantile_ms(0.5));
        assert_eq!(merged.quantile_ms(1.0), histogram.quantile_ms(1.0));
    }

    /// A peer kept in a handshake summary held every bucket below its
    /// latency: 4 KiB for one handshake of a second.
    #[test]
    fn memory_spans_the_buckets_used_only() {
        let mut histogram = LatencyHistogram::default();
        histogram.record_ns(1_000_000_000);
        assert_eq!(histogram.counts.len(), 1);
        histogram.record_ns(2_000_000_000);
        assert_eq!(histogram.counts.len(), 33, "one doubling");
        histogram.record_ns(500_000_000);
        assert_eq!(histogram.counts.len(), 65, "widened downwards");
        assert_eq!(histogram.count(), 3);
        let median = histogram.quantile_ms(0.5).unwrap();
        assert!((median - 1000.0).abs() < 1000.0 * 0.03, "{median}");
        let min = histogram.quantile_ms(0.0).unwrap();
        assert!((min - 500.0).abs() < 500.0 * 0.03, "{min}");
    }

    #[test]
    fn the_longest_latency_has_the_last_bucket() {
        assert_eq!(bucket(u64::MAX / 1000), 1600);
    }
}
