//! Maps for the per-transition hot path. std's SipHash cost a fifth of the
//! socket table's time per transition; foldhash is several times faster and
//! still seeded at random per map, so a peer choosing its addresses and
//! ports cannot aim collisions at a known hash function.

/// A `HashMap` with foldhash's randomly seeded fast hasher.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A `HashSet` with foldhash's randomly seeded fast hasher.
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
