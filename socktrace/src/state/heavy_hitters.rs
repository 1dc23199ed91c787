//! Counts per key in bounded memory: at most `capacity` keys are kept; a
//! new key past that takes the place of the kept key with the lowest
//! estimate, which is merged into the rest (the Space-Saving algorithm of
//! Metwally, Agrawal and El Abbadi). Every key with more than 1/`capacity`
//! of the total weight stays kept, so the heaviest rank right however many
//! keys a scan or a spoofed flood brings. Pure.
use std::{collections::BTreeSet, hash::Hash};

use crate::{state::top_list::TopList, support::fast_hash::FastMap};

/// What is counted per key.
pub trait Tally: Default {
    /// What ranks a key, and what the bound keeps right for the heaviest.
    fn weight(&self) -> u64;
    /// Adds `other` (a key merged into the rest) to this one.
    fn merge(&mut self, other: Self);
}

impl Tally for u64 {
    fn weight(&self) -> u64 {
        *self
    }

    fn merge(&mut self, other: u64) {
        *self += other;
    }
}

/// A kept key's tally since it was kept.
#[derive(Clone, Debug)]
struct Kept<V> {
    value: V,
    /// The estimate of the key it replaced: at most this much weight of it
    /// came before it was kept, counted in the rest. 0 for a key kept
    /// before the bound was reached.
    uncounted_max: u64,
}

impl<V: Tally> Kept<V> {
    /// Space-Saving's estimate: its weight is between `value.weight()` and
    /// this.
    fn estimate(&self) -> u64 {
        self.value.weight() + self.uncounted_max
    }
}

/// A kept key, as rankings show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row<'a, K, V> {
    pub key: K,
    /// Its tally since it was kept.
    pub value: &'a V,
    /// At most this much of its weight came before it was kept (and is in
    /// the rest): 0 unless the bound was reached.
    pub uncounted_max: u64,
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct HeavyHitters<K, V> {
    capacity: usize,
    kept: FastMap<K, Kept<V>>,
    /// Every kept key by estimate, lowest (the next to be merged) first.
    by_estimate: BTreeSet<(u64, K)>,
    /// The tallies of the keys merged.
    rest: V,
    /// Keys merged into the rest; a key merged, kept again and merged again
    /// counts twice.
    merged: u64,
}

impl<K: Copy + Ord + Hash, V: Tally> HeavyHitters<K, V> {
    /// Keeps at most `capacity` keys (at least one).
    pub fn new(capacity: usize) -> Self {
        HeavyHitters {
            capacity: capacity.max(1),
            kept: FastMap::default(),
            by_estimate: BTreeSet::new(),
            rest: V::default(),
            merged: 0,
        }
    }

    /// Applies `update` to `key`'s tally, keeping `key` first if it is not.
    pub fn update(&mut self, key: K, update: impl FnOnce(&mut V)) {
        if let Some(kept) = self.kept.get_mut(&key) {
            let before = kept.estimate();
            update(&mut kept.value);
            let after = kept.estimate();
            if after != before {
                self.by_estimate.remove(&(before, key));
                self.by_estimate.insert((after, key));
            }
            return;
        }
        let mut kept = Kept {
            value: V::default(),
            uncounted_max: 0,
        };
        if self.kept.len() >= self.capacity
            && let Some((lowest, merged)) = self.by_estimate.pop_first()
        {
            let gone = self.kept.remove(&merged).expect("every kept key is ranked");
            self.rest.merge(gone.value);
            self.merged += 1;
            kept.uncounted_max = lowest;
        }
        update(&mut kept.value);
        self.by_estimate.insert((kept.estimate(), key));
        self.kept.insert(key, kept);
    }

    /// Keys kept now.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// Keys merged into the rest since the bound was reached.
    pub fn merged(&self) -> u64 {
        self.merged
    }

    /// The tallies of the keys merged, added up.
    pub fn rest(&self) -> &V {
        &self.rest
    }

    /// The kept keys, in no particular order.
    pub fn rows(&self) -> impl Iterator<Item = Row<'_, K, V>> {
        self.kept.iter().map(|(key, kept)| Row {
            key: *key,
            value: &kept.value,
            uncounted_max: kept.uncounted_max,
        })
    }

    /// The `top` heaviest kept keys by the weight counted since each was
    /// kept, ties by key.
    pub fn top(&self, top: usize) -> TopList<Row<'_, K, V>> {
        TopList::first_by(self.rows().collect(), top, |a, b| {
            b.value
                .weight()
                .cmp(&a.value.weight())
                .then(a.key.cmp(&b.key))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_the_bound_every_key_is_counted_exactly() {
        let mut counts = HeavyHitters::<u32, u64>::new(4);
        for key in [1, 2, 2, 3, 3, 3] {
            counts.update(key, |count| *count += 1);
        }
        let top = counts.top(2);
        let rows: Vec<_> = top.rows.iter().map(|r| (r.key, *r.value)).collect();
        assert_eq!(rows, [(3, 3), (2, 2)]);
        assert_eq!(top.omitted, 1);
        assert!(counts.rows().all(|r| r.uncounted_max == 0));
        assert_eq!((counts.merged(), *counts.rest()), (0, 0));
    }

    /// A million keys seen once each, and three that keep coming back.
    #[test]
    fn a_flood_of_a_million_keys_keeps_the_bound_and_the_heaviest_first() {
        const KEPT: usize = 1000;
        let mut counts = HeavyHitters::<u64, u64>::new(KEPT);
        let heavy = [u64::MAX, u64::MAX - 1, u64::MAX - 2];
        for i in 0..1_000_000 {
            counts.update(i, |count| *count += 1);
            for (rank, key) in heavy.iter().enumerate() {
                if i % 100 < 3 - rank as u64 {
                    counts.update(*key, |count| *count += 1);
                }
            }
            assert!(counts.len() <= KEPT);
        }
        assert_eq!(counts.len(), KEPT);
        let top = counts.top(3);
        let rows: Vec<_> = top.rows.iter().map(|r| (r.key, *r.value)).collect();
        assert_eq!(
            rows,
            [(heavy[0], 30_000), (heavy[1], 20_000), (heavy[2], 10_000)]
        );
        assert_eq!(counts.merged(), 1_000_003 - KEPT as u64);
        let kept: u64 = counts.rows().map(|r| *r.value).sum();
        assert_eq!(kept + counts.rest(), 1_060_000, "every count somewhere");
        // A key kept late may have had up to the estimate it replaced.
        let late = counts.rows().find(|r| r.key == 999_999).unwrap();
        assert_eq!(*late.value, 1);
        assert!(late.uncounted_max > 0);
    }

    #[test]
    fn a_key_merged_and_seen_again_counts_from_its_return() {
        let mut counts = HeavyHitters::<u8, u64>::new(1);
        counts.update(1, |count| *count += 5);
        counts.update(2, |count| *count += 1);
        let row = counts.rows().next().unwrap();
        assert_eq!((row.key, *row.value, row.uncounted_max), (2, 1, 5));
        counts.update(1, |count| *count += 1);
        let row = counts.rows().next().unwrap();
        assert_eq!((row.key, *row.value, row.uncounted_max), (1, 1, 6));
        assert_eq!((counts.merged(), *counts.rest()), (2, 6));
    }
}
