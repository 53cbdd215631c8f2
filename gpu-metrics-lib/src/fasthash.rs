//! The hash for maps keyed by values this process makes itself (`Arc`
//! addresses, ids, enum fields) on the per-tick paths, where SipHash was a
//! visible share of the exporter's CPU: `foldhash`'s fast variant (already in
//! the dependency tree through `hashbrown`), per-process seeded.

/// A `HashMap` with `foldhash`'s fast hasher.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
