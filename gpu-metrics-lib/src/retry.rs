//! Exponential backoff with full jitter, shared by every retry loop: the
//! sink agent's pushes ([`crate::agent`]) and the SSH tunnel's logins
//! (`crate::tunnel`, feature `ssh`).
//!
//! "Full jitter" (the AWS architecture blog's name): before retry `n`
//! (0-based) wait a uniformly random time in `[0, min(max, initial ×
//! factor^n)]`. Defaults: 500 ms initial, ×2, 30 s cap (DESIGN.md §6).
//!
//! - [`BackoffPolicy`]: the settings, checked by [`BackoffPolicy::validate`];
//!   [`BackoffPolicy::ceiling`] and [`BackoffPolicy::delay`] for callers that
//!   count attempts themselves.
//! - [`Backoff`]: the state of one retry sequence (failures since the last
//!   success and its jitter source).
//! - [`Jitter`]: the one source of jitter ([`crate::rng::SplitMix64`]; no
//!   cryptographic quality needed, only independence across nodes, see
//!   [`random_seed`]).

use std::time::Duration;

use crate::rng::{Rng, SplitMix64};

/// The largest `max` a [`BackoffPolicy`] accepts: one day. A longer wait
/// between retries is a misconfiguration, and far larger values overflow
/// [`Duration`] arithmetic.
pub const MAX_BACKOFF: Duration = Duration::from_secs(24 * 3600);

/// Backoff settings. Defaults: 500 ms initial, ×2, 30 s cap (DESIGN.md §6).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// The ceiling of the first delay (> 0).
    pub initial: Duration,
    /// Growth factor of the ceiling per failure (finite, ≥ 1).
    pub factor: f64,
    /// The largest ceiling (≥ `initial`, ≤ [`MAX_BACKOFF`]); also the delay after a
    /// configuration error ([`Backoff::max_delay`]).
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

/// Why a [`BackoffPolicy`] cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BackoffPolicyError {
    /// `initial` is zero (retries would run in a hot loop).
    #[error("backoff initial delay must be greater than zero")]
    ZeroInitial,
    /// `factor` is below 1, NaN or infinite.
    #[error("backoff factor must be a finite number ≥ 1")]
    BadFactor,
    /// `max` is below `initial`.
    #[error("backoff max {max:?} is below the initial delay {initial:?}")]
    MaxBelowInitial {
        /// The initial delay.
        initial: Duration,
        /// The cap.
        max: Duration,
    },
    /// `max` is above [`MAX_BACKOFF`].
    #[error("backoff max {max:?} is above the limit of {limit:?}")]
    MaxTooLarge {
        /// The cap as given.
        max: Duration,
        /// The largest cap accepted ([`MAX_BACKOFF`]).
        limit: Duration,
    },
}

impl BackoffPolicy {
    /// Checks that `initial > 0`, `factor` is finite and ≥ 1, and
    /// `initial ≤ max ≤ MAX_BACKOFF`.
    ///
    /// # Errors
    /// The first [`BackoffPolicyError`] found, in that order.
    pub fn validate(&self) -> Result<(), BackoffPolicyError> {
        if self.initial.is_zero() {
            return Err(BackoffPolicyError::ZeroInitial);
        }
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return Err(BackoffPolicyError::BadFactor);
        }
        if self.max < self.initial {
            return Err(BackoffPolicyError::MaxBelowInitial {
                initial: self.initial,
                max: self.max,
            });
        }
        if self.max > MAX_BACKOFF {
            return Err(BackoffPolicyError::MaxTooLarge {
                max: self.max,
                limit: MAX_BACKOFF,
            });
        }
        Ok(())
    }

    /// The ceiling before retry `attempt` (0-based): `min(max, initial ×
    /// factor^attempt)` (a factor below 1 counts as 1). Never panics, even for
    /// a policy [`BackoffPolicy::validate`] refuses: a ceiling that does not
    /// fit a [`Duration`] is `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = self.factor.max(1.0).powi(attempt.min(64) as i32);
        let secs = (self.initial.as_secs_f64() * exp).min(self.max.as_secs_f64());
        Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(self.max)
    }

    /// A random delay in `[0, ceiling(attempt)]` (full jitter), drawn from
    /// `jitter`.
    pub fn delay(&self, attempt: u32, jitter: &mut Jitter) -> Duration {
        self.ceiling(attempt).mul_f64(jitter.next_unit())
    }
}

/// A seed that differs between processes, threads and calls (std's randomly
/// keyed hasher over a counter and the time), for [`Jitter::new`] where
/// nodes must not retry in lockstep.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// The jitter source: uniform numbers in `[0, 1)` from a
/// [`SplitMix64`] generator.
#[derive(Debug, Clone)]
pub struct Jitter {
    rng: SplitMix64,
}

impl Jitter {
    /// A generator fed by `seed` (any value; 0 is fine). The same seed gives
    /// the same sequence.
    pub fn new(seed: u64) -> Self {
        Jitter {
            rng: SplitMix64::new(seed),
        }
    }

    /// The next uniform number in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        self.rng.unit()
    }
}

/// The state of one retry sequence: failures since the last success and the
/// jitter source.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
    jitter: Jitter,
}

impl Backoff {
    /// A fresh sequence; `seed` feeds the jitter (any value; 0 is fine;
    /// [`random_seed`] for one that differs between nodes).
    pub fn new(policy: BackoffPolicy, seed: u64) -> Self {
        Backoff {
            policy,
            failures: 0,
            jitter: Jitter::new(seed),
        }
    }

    /// The policy this sequence follows.
    pub fn policy(&self) -> BackoffPolicy {
        self.policy
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
        self.policy.ceiling(self.failures)
    }

    /// Records a failure and returns how long to wait before the next try:
    /// uniform in `[0, ceiling]`, the ceiling taken before this failure counts.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.policy.delay(self.failures, &mut self.jitter);
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// Records a failure that must wait the full cap (configuration errors):
    /// the largest ceiling, with jitter in its upper half so retries of many
    /// nodes spread out.
    pub fn max_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.policy.max.mul_f64(0.5 + 0.5 * self.jitter.next_unit())
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

    #[test]
    fn backoff_ceilings_double_to_the_cap() {
        let b = BackoffPolicy::default();
        let ms: Vec<u128> = (0..9).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(
            ms,
            vec![500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn full_jitter_stays_within_the_ceiling_and_varies() {
        let b = BackoffPolicy::default();
        let mut jitter = Jitter::new(random_seed());
        let delays: Vec<Duration> = (0..200).map(|_| b.delay(3, &mut jitter)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(4)));
        let min = delays.iter().min().copied().unwrap_or_default();
        let max = delays.iter().max().copied().unwrap_or_default();
        assert!(
            max - min > Duration::from_secs(1),
            "no jitter: {min:?}..{max:?}"
        );
    }

    #[test]
    fn backoff_validation() {
        let mut b = BackoffPolicy::default();
        assert!(b.validate().is_ok());
        b.factor = 0.5;
        assert!(b.validate().is_err());
        assert_eq!(b.validate(), Err(BackoffPolicyError::BadFactor));
        b.factor = f64::NAN;
        assert_eq!(b.validate(), Err(BackoffPolicyError::BadFactor));
        b = BackoffPolicy {
            initial: Duration::ZERO,
            ..BackoffPolicy::default()
        };
        assert!(b.validate().is_err());
        assert_eq!(b.validate(), Err(BackoffPolicyError::ZeroInitial));
        b = BackoffPolicy {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(1),
            ..BackoffPolicy::default()
        };
        assert_eq!(
            b.validate(),
            Err(BackoffPolicyError::MaxBelowInitial {
                initial: Duration::from_secs(2),
                max: Duration::from_secs(1),
            })
        );
    }

    #[test]
    fn a_huge_max_is_refused_and_never_panics() {
        let huge = BackoffPolicy {
            initial: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::MAX,
        };
        assert_eq!(
            huge.validate(),
            Err(BackoffPolicyError::MaxTooLarge {
                max: Duration::MAX,
                limit: MAX_BACKOFF,
            })
        );
        assert!(
            huge.validate()
                .expect_err("refused")
                .to_string()
                .contains("above the limit")
        );
        // Even unvalidated, the arithmetic saturates instead of panicking
        // (Duration::from_secs_f64 panicked on 2^64 s).
        for attempt in [0, 63, 64, 65, u32::MAX] {
            assert!(huge.ceiling(attempt) <= Duration::MAX);
        }
        let mut b = Backoff::new(huge, 1);
        for _ in 0..70 {
            b.next_delay();
        }
        b.max_delay();
        let at_limit = BackoffPolicy {
            max: MAX_BACKOFF,
            ..huge
        };
        assert_eq!(at_limit.validate(), Ok(()));
        assert_eq!(at_limit.ceiling(64), MAX_BACKOFF);
    }

    #[test]
    fn different_seeds_give_different_jitter() {
        let mut a = Jitter::new(random_seed());
        let mut b = Jitter::new(random_seed());
        let xs: Vec<f64> = (0..8).map(|_| a.next_unit()).collect();
        let ys: Vec<f64> = (0..8).map(|_| b.next_unit()).collect();
        assert_ne!(xs, ys);
        assert!(xs.iter().chain(&ys).all(|u| (0.0..1.0).contains(u)));
        let mut z = Jitter::new(0);
        assert!((0..8).map(|_| z.next_unit()).any(|u| u > 0.0));
    }
}
