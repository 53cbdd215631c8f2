//! Exponential backoff with full jitter (the AWS architecture blog's "full
//! jitter": sleep a uniform random time in `[0, min(cap, initial × factor^n)]`).

use std::time::Duration;

/// Backoff settings. Defaults: 500 ms initial, ×2, 30 s cap (DESIGN.md §6).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// The ceiling of the first delay.
    pub initial: Duration,
    /// Growth factor of the ceiling per failure (≥ 1).
    pub factor: f64,
    /// The largest ceiling.
    pub max: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(500),
            factor: 2.0,
            max: Duration::from_secs(30),
        }
    }
}

/// The state of one retry sequence.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
    rng: u64,
}

impl Backoff {
    /// A fresh sequence; `seed` feeds the jitter (any value; 0 is fine).
    pub fn new(policy: BackoffPolicy, seed: u64) -> Self {
        Backoff {
            policy,
            failures: 0,
            rng: seed ^ 0x2545_F491_4F6C_DD1D,
        }
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets past failures (call on success).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The current ceiling: `min(max, initial × factor^failures)`.
    pub fn ceiling(&self) -> Duration {
        let exp = self
            .policy
            .factor
            .max(1.0)
            .powi(self.failures.min(64) as i32);
        let secs = (self.policy.initial.as_secs_f64() * exp).min(self.policy.max.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }

    fn next_unit(&mut self) -> f64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Records a failure and returns how long to wait before the next try:
    /// uniform in `[0, ceiling]`, the ceiling taken before this failure counts.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        ceiling.mul_f64(self.next_unit())
    }

    /// Records a failure that must wait the full cap (configuration errors):
    /// the largest ceiling, with jitter in its upper half so retries of many
    /// nodes spread out.
    pub fn max_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.policy.max.mul_f64(0.5 + 0.5 * self.next_unit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_jittered_below_a_growing_capped_ceiling() {
        let mut b = Backoff::new(BackoffPolicy::default(), 7);
        let mut ceilings = Vec::new();
        for _ in 0..12 {
            let c = b.ceiling();
            let d = b.next_delay();
            assert!(d <= c, "{d:?} > {c:?}");
            ceilings.push(c);
        }
        assert_eq!(ceilings[0], Duration::from_millis(500));
        assert_eq!(ceilings[1], Duration::from_secs(1));
        assert_eq!(ceilings[3], Duration::from_secs(4));
        assert_eq!(*ceilings.last().expect("some"), Duration::from_secs(30));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(500));
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut b = Backoff::new(BackoffPolicy::default(), 1);
        let mut ds: Vec<_> = (0..50)
            .map(|_| {
                b.reset();
                b.next_delay()
            })
            .collect();
        ds.sort();
        ds.dedup();
        assert!(ds.len() > 40, "delays not spread: {ds:?}");
    }

    #[test]
    fn max_delay_stays_in_the_upper_half_of_the_cap() {
        let mut b = Backoff::new(BackoffPolicy::default(), 3);
        for _ in 0..100 {
            let d = b.max_delay();
            assert!(
                d >= Duration::from_secs(15) && d <= Duration::from_secs(30),
                "{d:?}"
            );
        }
    }
}
