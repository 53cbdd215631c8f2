//! When open-loop requests are due: constant spacing, Poisson (exponential
//! gaps) or gamma-distributed gaps, as `vllm bench serve` draws them (gamma
//! with shape `burstiness` and scale `1 / (rate * burstiness)`, so the mean
//! rate stays `rate`; burstiness 1 is Poisson).

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
}

impl Arrivals {
    /// `constant`, `poisson` or `gamma` (for results and logs).
    pub fn name(self) -> &'static str {
        match self {
            Arrivals::Constant => "constant",
            Arrivals::Poisson => "poisson",
            Arrivals::Gamma(_) => "gamma",
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

/// xoshiro256** seeded through SplitMix64: fast, reproducible for a seed.
#[derive(Debug, Clone)]
pub struct Rng([u64; 4]);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
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

    /// Uniform in (0, 1): never 0, so `ln` is finite.
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }

    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.unit(), self.unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Gamma(shape, 1) by Marsaglia and Tsang (boosted for shape < 1).
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            let u = self.unit();
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.unit();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }
}

/// The sequence of due times (seconds after the start) of an open-loop run.
#[derive(Debug, Clone)]
pub struct Schedule {
    rate: f64,
    arrivals: Arrivals,
    rng: Rng,
    next_s: f64,
}

impl Schedule {
    /// `rate` requests per second (> 0) drawn as `arrivals`, reproducible for `seed`.
    /// The first request is due at 0.
    pub fn new(rate: f64, arrivals: Arrivals, seed: u64) -> Schedule {
        Schedule {
            rate,
            arrivals,
            rng: Rng::new(seed),
            next_s: 0.0,
        }
    }

    /// The next due time (seconds after the start); each call advances.
    pub fn next_due(&mut self) -> f64 {
        let due = self.next_s;
        let gap = match self.arrivals {
            Arrivals::Constant => 1.0 / self.rate,
            Arrivals::Poisson => -self.rng.unit().ln() / self.rate,
            Arrivals::Gamma(k) => self.rng.gamma(k) / (self.rate * k),
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
