//! The first rows of a ranking and the count of the rows left out: every
//! list a summary prints is cut to `--top` rows, so that a summary stays a
//! few kilobytes however many peers, ports or destinations there are.
use std::cmp::Ordering;

/// The first rows of a ranking, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct TopList<T> {
    pub rows: Vec<T>,
    /// Rows of the ranking left out.
    pub omitted: u64,
}

impl<T> TopList<T> {
    /// The first `top` of `rows` under `order`, in that order. Selects
    /// before sorting: a ranking may have a hundred thousand rows.
    pub fn first_by(
        mut rows: Vec<T>,
        top: usize,
        mut order: impl FnMut(&T, &T) -> Ordering,
    ) -> Self {
        let omitted = rows.len().saturating_sub(top) as u64;
        if top == 0 {
            rows.clear();
        } else if rows.len() > top {
            rows.select_nth_unstable_by(top - 1, &mut order);
            rows.truncate(top);
        }
        rows.sort_unstable_by(order);
        TopList { rows, omitted }
    }

    /// This list's rows, then `other`'s; the omitted rows of both.
    pub fn chain(mut self, other: TopList<T>) -> Self {
        self.rows.extend(other.rows);
        self.omitted += other.omitted;
        self
    }
}

impl<T> Default for TopList<T> {
    fn default() -> Self {
        TopList {
            rows: Vec::new(),
            omitted: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_rows_are_kept_in_order_and_the_rest_counted() {
        let descending = |a: &u32, b: &u32| b.cmp(a);
        let list = TopList::first_by((0..100_000).collect(), 3, descending);
        assert_eq!(list.rows, [99_999, 99_998, 99_997]);
        assert_eq!(list.omitted, 99_997);
        let short = TopList::first_by(vec![1, 3, 2], 5, descending);
        assert_eq!((short.rows, short.omitted), (vec![3, 2, 1], 0));
        let none = TopList::first_by(vec![1, 2], 0, descending);
        assert_eq!((none.rows, none.omitted), (vec![], 2));
        let both = TopList::first_by(vec![1, 2], 1, descending).chain(TopList::first_by(
            vec![7, 8, 9],
            1,
            descending,
        ));
        assert_eq!((both.rows, both.omitted), (vec![2, 9], 3));
    }
}
