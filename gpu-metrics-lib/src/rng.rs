//! Seeded pseudo-random numbers, the one generator of the workspace: the
//! simulated GPUs' curves ([`crate::source::SimulatedSource`]), the retry
//! jitter ([`crate::retry::Jitter`]) and the load generator's arrival
//! schedules and synthetic prompts. The same seed gives the same sequence,
//! on every platform; no cryptographic quality (never for secrets).
//!
//! - [`SplitMix64`]: one `u64` of state, each output a mix of the next
//!   Weyl step; what the simulated source and the retry jitter draw from.
//! - [`Xoshiro256`]: xoshiro256\*\* (Blackman and Vigna), its four words of
//!   state seeded through [`SplitMix64`]; longer period, for the load
//!   generator's long schedules.
//! - [`Rng`]: the draws both give ([`Rng::next_u64`], [`Rng::unit`] in
//!   `[0, 1)`, [`Rng::open_unit`] in `(0, 1]`, [`Rng::below`]).
//!
//! ```
//! use gpu_metrics::rng::{Rng, Xoshiro256};
//!
//! let mut a = Xoshiro256::new(7);
//! let mut b = Xoshiro256::new(7);
//! assert_eq!(a.next_u64(), b.next_u64());
//! let u = a.unit();
//! assert!((0.0..1.0).contains(&u));
//! assert!(a.below(10) < 10);
//! ```

/// 2^53: the doubles of `[0, 1)` with 53 random bits are `k / 2^53`.
const TWO_53: f64 = (1u64 << 53) as f64;

/// The draws of a seeded generator; only [`Rng::next_u64`] is its own.
pub trait Rng {
    /// The next 64 random bits.
    fn next_u64(&mut self) -> u64;

    /// Uniform in `[0, 1)`: the top 53 bits of [`Rng::next_u64`] over 2^53.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / TWO_53
    }

    /// Uniform in `(0, 1]`: as [`Rng::unit`], shifted half a step up, so
    /// never 0 (its `ln` is finite); the last step rounds to 1.
    fn open_unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / TWO_53
    }

    /// Uniform in `0..n` (0 when `n` is 0): [`Rng::open_unit`] scaled to
    /// `n`, modulo `n` (its 1 wraps to 0), so uniform to within about 2^-53
    /// for any `n` below 2^53.
    fn below(&mut self, n: usize) -> usize {
        (self.open_unit() * n as f64) as usize % n.max(1)
    }
}

/// SplitMix64 (Steele, Lea and Flood; the constants of Vigna's reference
/// code): a Weyl sequence of step `0x9E37_79B9_7F4A_7C15`, each state mixed
/// into an output. Any seed, 0 included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// The generator whose state starts at `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }
}

impl Rng for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// xoshiro256\*\*: four words of state, period 2^256 − 1, seeded with the
/// first four outputs of [`SplitMix64::new`]`(seed)` (never all zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xoshiro256 {
    s: [u64; 4],
}

impl Xoshiro256 {
    /// The generator for `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Xoshiro256 {
        let mut seeder = SplitMix64::new(seed);
        Xoshiro256 {
            s: std::array::from_fn(|_| seeder.next_u64()),
        }
    }
}

impl Rng for Xoshiro256 {
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sequences are pinned: the simulated source's readings and the
    /// load generator's schedules and prompts derive from them.
    #[test]
    fn sequences_match_the_reference_outputs() {
        let mut z = SplitMix64::new(0);
        assert_eq!(
            [z.next_u64(), z.next_u64(), z.next_u64()],
            [
                0xe220_a839_7b1d_cdaf,
                0x6e78_9e6a_a1b9_65f4,
                0x06c4_5d18_8009_454f
            ]
        );
        let mut z = SplitMix64::new(42);
        assert_eq!(
            [z.next_u64(), z.next_u64(), z.next_u64()],
            [
                0xbdd7_3226_2feb_6e95,
                0x28ef_e333_b266_f103,
                0x4752_6757_130f_9f52
            ]
        );
        let mut x = Xoshiro256::new(0);
        assert_eq!(
            [x.next_u64(), x.next_u64(), x.next_u64()],
            [
                0x99ec_5f36_cb75_f2b4,
                0xbf6e_1f78_4956_452a,
                0x1a5f_849d_4933_e6e0
            ]
        );
        let mut x = Xoshiro256::new(7);
        assert_eq!(
            [x.next_u64(), x.next_u64(), x.next_u64()],
            [
                0xb358_faf7_4ef9_765a,
                0x475c_3d96_4f48_2cd2,
                0xd6f1_d349_952c_7996
            ]
        );
        let mut x = Xoshiro256::new(7);
        assert_eq!(
            [x.open_unit(), x.open_unit(), x.open_unit()].map(f64::to_bits),
            [
                0x3fe6_6b1f_5ee9_df2e,
                0x3fd1_d70f_6593_d20b,
                0x3fea_de3a_6932_a590
            ]
        );
        let mut x = Xoshiro256::new(1 ^ 0x005E_ED0F_5EED);
        let words: Vec<usize> = (0..10).map(|_| x.below(60)).collect();
        assert_eq!(words, [56, 43, 33, 29, 56, 57, 20, 35, 47, 36]);
    }

    #[test]
    fn the_same_seed_repeats_and_another_differs() {
        let draw = |seed| {
            let mut x = Xoshiro256::new(seed);
            let mut z = SplitMix64::new(seed);
            (0..16)
                .map(|_| (x.next_u64(), z.next_u64()))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
        let mut a = SplitMix64::new(9);
        let mut b = a.clone();
        assert_eq!(a.unit().to_bits(), b.unit().to_bits());
        assert_eq!(a, b);
    }

    #[test]
    fn draws_stay_in_range() {
        let mut x = Xoshiro256::new(11);
        let mut z = SplitMix64::new(11);
        let mut seen = [false; 7];
        for _ in 0..10_000 {
            for r in [&mut x as &mut dyn Rng, &mut z] {
                let u = r.unit();
                assert!((0.0..1.0).contains(&u), "{u}");
                let o = r.open_unit();
                assert!(o > 0.0 && o <= 1.0, "{o}");
                let k = r.below(7);
                assert!(k < 7, "{k}");
                seen[k] = true;
                assert_eq!(r.below(1), 0);
                assert_eq!(r.below(0), 0);
            }
        }
        assert!(seen.iter().all(|&s| s), "{seen:?}");
        // The extremes of the 53-bit grid.
        struct Fixed(u64);
        impl Rng for Fixed {
            fn next_u64(&mut self) -> u64 {
                self.0
            }
        }
        assert_eq!(Fixed(0).unit(), 0.0);
        assert!(Fixed(u64::MAX).unit() < 1.0);
        assert!(Fixed(0).open_unit() > 0.0);
        assert_eq!(Fixed(u64::MAX).open_unit(), 1.0);
        assert_eq!(Fixed(u64::MAX).below(10), 0);
        assert_eq!(Fixed(u64::MAX - (1 << 11)).below(10), 9);
        assert_eq!(Fixed(0).below(10), 0);
    }
}
