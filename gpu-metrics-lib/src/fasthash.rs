//! A fast hasher for maps keyed by values this process makes itself: `Arc`
//! addresses, ids, enum fields (FxHash's multiply-rotate). Never for keys a
//! client chooses (no protection against crafted collisions); the standard
//! SipHash stays for those. Used on the per-tick paths, where SipHash was a
//! visible share of the exporter's CPU.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

const K: u64 = 0x517c_c1b7_2722_0a95;

/// FxHash: for each word, `state = (state.rotl(5) ^ word) * K`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn write_isize(&mut self, i: isize) {
        self.add(i as u64);
    }

    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_map_keeps_distinct_pointer_like_keys_apart() {
        let mut m: FastMap<usize, usize> = FastMap::default();
        for i in 0..10_000usize {
            m.insert(0x7f00_0000_0000 + i * 64, i);
        }
        assert_eq!(m.len(), 10_000);
        assert!((0..10_000usize).all(|i| m[&(0x7f00_0000_0000 + i * 64)] == i));
        let mut h1 = FastHasher::default();
        h1.write(b"abcdefghij");
        let mut h2 = FastHasher::default();
        h2.write(b"abcdefghik");
        assert_ne!(h1.finish(), h2.finish());
    }
}
