//! When open-loop requests are due: constant spacing, Poisson (exponential
//! gaps) or gamma-distributed gaps, as `vllm bench serve` draws them (gamma
//! with shape `burstiness` and scale `1 / (rate * burstiness)`, so the mean
//! rate stays `rate`; burstiness 1 is Poisson), or a trace's own times
//! ([`Schedule::replay`], `--dataset trace`).

use gpu_metrics::rng::{Rng, Xoshiro256};
use serde::Serialize;

/// How inter-arrival gaps are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrivals {
    /// Exactly `1 / rate` apart.
    Constant,
    /// Exponential gaps (a Poisson process).
    Poisson,
    /// Gamma gaps with this shape (`--burstiness`): < 1 burstier, > 1 steadier.
    Gamma(f64),
    /// A trace's recorded times ([`Schedule::replay`]).
    Trace,
}

impl Arrivals {
    /// `constant`, `poisson` or `gamma` (for results and logs).
    pub fn name(self) -> &'static str {
        match self {
            Arrivals::Constant => "constant",
            Arrivals::Poisson => "poisson",
            Arrivals::Gamma(_) => "gamma",
            Arrivals::Trace => "trace",
        }
    }

    /// The burstiness as vLLM reports it (1 for Poisson and constant).
    pub fn burstiness(self) -> f64 {
        match self {
            Arrivals::Gamma(k) => k,
            _ => 1.0,
        }
    }
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut Xoshiro256) -> f64 {
    let (u1, u2) = (rng.open_unit(), rng.open_unit());
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Gamma(shape, 1) by Marsaglia and Tsang (boosted for shape < 1).
fn gamma(rng: &mut Xoshiro256, shape: f64) -> f64 {
    if shape < 1.0 {
        let u = rng.open_unit();
        return gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = rng.open_unit();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// The sequence of due times (seconds after the start) of an open-loop run.
#[derive(Debug, Clone)]
pub struct Schedule {
    rate: f64,
    arrivals: Arrivals,
    /// xoshiro256\*\* ([`gpu_metrics::rng`]): reproducible for the seed.
    rng: Xoshiro256,
    next_s: f64,
    /// [`Arrivals::Trace`]: the due times, and how many were taken.
    replay: std::sync::Arc<[f64]>,
    taken: usize,
}

impl Schedule {
    /// `rate` requests per second (> 0) drawn as `arrivals`, reproducible for `seed`.
    /// The first request is due at 0.
    pub fn new(rate: f64, arrivals: Arrivals, seed: u64) -> Schedule {
        Schedule {
            rate,
            arrivals,
            rng: Xoshiro256::new(seed),
            next_s: 0.0,
            replay: std::sync::Arc::from([]),
            taken: 0,
        }
    }

    /// The due times `due_s` (seconds after the start, non-decreasing), then
    /// no more: [`Schedule::next_due`] returns infinity past the last.
    pub fn replay(due_s: std::sync::Arc<[f64]>) -> Schedule {
        Schedule {
            replay: due_s,
            ..Schedule::new(1.0, Arrivals::Trace, 0)
        }
    }

    /// The next due time (seconds after the start); each call advances.
    /// Infinite once a replayed trace is over.
    pub fn next_due(&mut self) -> f64 {
        if self.arrivals == Arrivals::Trace {
            let due = self.replay.get(self.taken).copied();
            self.taken += 1;
            return due.unwrap_or(f64::INFINITY);
        }
        let due = self.next_s;
        let gap = match self.arrivals {
            Arrivals::Constant | Arrivals::Trace => 1.0 / self.rate,
            Arrivals::Poisson => -self.rng.open_unit().ln() / self.rate,
            Arrivals::Gamma(k) => gamma(&mut self.rng, k) / (self.rate * k),
        };
        self.next_s += gap;
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(arrivals: Arrivals, n: usize) -> Vec<f64> {
        let mut s = Schedule::new(100.0, arrivals, 7);
        let mut last = s.next_due();
        (0..n)
            .map(|_| {
                let d = s.next_due();
                let g = d - last;
                last = d;
                g
            })
            .collect()
    }

    fn mean_cv(g: &[f64]) -> (f64, f64) {
        let n = g.len() as f64;
        let mean = g.iter().sum::<f64>() / n;
        let var = g.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt() / mean)
    }

    #[test]
    fn every_kind_keeps_the_mean_rate_and_its_spread() {
        let (m, cv) = mean_cv(&gaps(Arrivals::Constant, 1000));
        assert!((m - 0.01).abs() < 1e-12 && cv < 1e-9, "{m} {cv}");
        // Exponential: coefficient of variation 1; gamma(k): 1/sqrt(k).
        for (arrivals, want_cv) in [
            (Arrivals::Poisson, 1.0),
            (Arrivals::Gamma(0.25), 2.0),
            (Arrivals::Gamma(4.0), 0.5),
        ] {
            let (m, cv) = mean_cv(&gaps(arrivals, 200_000));
            assert!((m - 0.01).abs() < 0.0003, "{arrivals:?}: mean {m}");
            assert!(
                (cv - want_cv).abs() < 0.05 * want_cv,
                "{arrivals:?}: cv {cv}"
            );
        }
    }

    /// The schedules of a seed are pinned (results name their seed, so a
    /// run can be repeated): these are the due times of seed 7 since the
    /// generator was written.
    #[test]
    fn the_schedules_of_a_seed_do_not_change() {
        let due = |arrivals| {
            let mut s = Schedule::new(100.0, arrivals, 7);
            (0..6).map(|_| s.next_due().to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(
            due(Arrivals::Poisson),
            [
                0,
                0x3f6d_26c0_7719_f0e3,
                0x3f90_b990_8a85_dfb1,
                0x3f92_83c8_cf96_c317,
                0x3f92_b5cf_5585_fc8c,
                0x3f92_cde1_193f_1885,
            ]
        );
        assert_eq!(
            due(Arrivals::Gamma(0.25)),
            [
                0,
                0x3f93_bcd7_30f7_8aad,
                0x3fb3_5f5b_9d5b_e0bd,
                0x3fb3_6204_8b2e_4111,
                0x3fb7_98a3_4bd6_045c,
                0x3fb7_ac74_0d2c_5424,
            ]
        );
        assert_eq!(
            due(Arrivals::Gamma(4.0)),
            [
                0,
                0x3f81_537f_eb19_5538,
                0x3f93_09e6_7b1f_bbac,
                0x3fa4_7909_6ff3_14aa,
                0x3fa5_e7d8_9da0_d46a,
                0x3fab_43fa_3192_5795,
            ]
        );
    }

    #[test]
    fn a_replay_gives_its_times_then_infinity() {
        let mut s = Schedule::replay(std::sync::Arc::from([0.0, 0.25, 1.5]));
        let got: Vec<f64> = (0..4).map(|_| s.next_due()).collect();
        assert_eq!(got[..3], [0.0, 0.25, 1.5]);
        assert!(got[3].is_infinite());
        assert!(
            Schedule::new(1.0, Arrivals::Trace, 0)
                .next_due()
                .is_infinite()
        );
    }

    #[test]
    fn same_seed_same_schedule() {
        let a: Vec<f64> = {
            let mut s = Schedule::new(5.0, Arrivals::Poisson, 1);
            (0..10).map(|_| s.next_due()).collect()
        };
        let mut s = Schedule::new(5.0, Arrivals::Poisson, 1);
        assert_eq!(a, (0..10).map(|_| s.next_due()).collect::<Vec<_>>());
        assert_eq!(a[0], 0.0);
    }
}
