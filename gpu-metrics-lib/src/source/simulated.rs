//! The simulated source: plausible, deterministic GPUs for machines without one.
//!
//! It is labelled so nobody can take it for hardware: model [`SIMULATED_MODEL`],
//! UUIDs `SIM-…` (never `GPU-…`), driver version `simulated`.
//!
//! For a given seed and sequence of tick timestamps the readings are identical.
//! Utilisation follows a load curve (two sinusoids per GPU with seeded periods and
//! phases, clamped to 0–100 %), power follows utilisation between an idle floor
//! and the power limit, and the energy counter is the trapezoidal integral of
//! power over time: it never decreases. NVLink traffic follows utilisation the
//! same way (counters that never decrease); the error counters (PCIe replays,
//! remapped rows, XID) stay at 0, as on a healthy GPU.

use super::{GpuReading, GpuSource, SourceError, SourceKind, ThrottleReason, XidReading};
use crate::rng::{Rng, SplitMix64};

/// The model name every simulated GPU reports.
pub const SIMULATED_MODEL: &str = "Simulated GPU";

/// The largest number of simulated GPUs accepted.
pub const MAX_SIMULATED_GPUS: usize = 1024;

const MEMORY_TOTAL: u64 = 80 * 1024 * 1024 * 1024;
const POWER_LIMIT_MW: u32 = 700_000;
const IDLE_POWER_MW: f64 = 70_000.0;
const MEMORY_RESERVED: u64 = 512 * 1024 * 1024;
/// NVLink transmit rate at 100 % utilisation, KiB/s (receive is 90 % of it).
const NVLINK_FULL_KIBPS: f64 = 40_000_000.0;

#[derive(Debug, Clone)]
struct SimGpu {
    uuid: String,
    period_s: f64,
    phase: f64,
    fast_period_s: f64,
    fast_phase: f64,
    energy_mj: f64,
    nvlink_tx_kib: f64,
    nvlink_rx_kib: f64,
    last: Option<(i64, f64)>,
}

/// `n` simulated GPUs, deterministic for a seed.
#[derive(Debug, Clone)]
pub struct SimulatedSource {
    gpus: Vec<SimGpu>,
}

impl SimulatedSource {
    /// `count` simulated GPUs whose curves derive from `seed`.
    ///
    /// # Errors
    /// [`SourceError::SimulatedCount`] when `count` is 0 or above
    /// [`MAX_SIMULATED_GPUS`].
    pub fn new(count: usize, seed: u64) -> Result<Self, SourceError> {
        if count == 0 || count > MAX_SIMULATED_GPUS {
            return Err(SourceError::SimulatedCount {
                count,
                max: MAX_SIMULATED_GPUS,
            });
        }
        let gpus = (0..count)
            .map(|i| {
                // SplitMix64: enough for seeding curves; one stream per GPU.
                let mut st = SplitMix64::new(seed ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407));
                let a = st.next_u64();
                let b = st.next_u64();
                SimGpu {
                    uuid: format!(
                        "SIM-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                        a >> 32,
                        (a >> 16) & 0xffff,
                        a & 0xffff,
                        b >> 48,
                        b & 0xffff_ffff_ffff
                    ),
                    period_s: 300.0 + 600.0 * st.unit(),
                    phase: std::f64::consts::TAU * st.unit(),
                    fast_period_s: 20.0 + 40.0 * st.unit(),
                    fast_phase: std::f64::consts::TAU * st.unit(),
                    energy_mj: (1.0e9 * st.unit()).floor(),
                    nvlink_tx_kib: 0.0,
                    nvlink_rx_kib: 0.0,
                    last: None,
                }
            })
            .collect();
        Ok(SimulatedSource { gpus })
    }
}

impl SimGpu {
    fn utilization(&self, now_ms: i64) -> f64 {
        // Reduce the time modulo each period first: sin() of an epoch-sized
        // argument needs slow argument reduction and loses precision.
        let t = now_ms as f64 / 1000.0;
        let cycle = |period: f64| (t.rem_euclid(period)) / period;
        let slow = (std::f64::consts::TAU * cycle(self.period_s) + self.phase).sin();
        let fast = (std::f64::consts::TAU * cycle(self.fast_period_s) + self.fast_phase).sin();
        (0.45 + 0.5 * slow + 0.1 * fast).clamp(0.0, 1.0)
    }
}

impl GpuSource for SimulatedSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Simulated
    }

    fn device_count(&self) -> usize {
        self.gpus.len()
    }

    fn sample(&mut self, now_ms: i64) -> Result<Vec<GpuReading>, SourceError> {
        let mut out = Vec::with_capacity(self.gpus.len());
        for (index, gpu) in self.gpus.iter_mut().enumerate() {
            let u = gpu.utilization(now_ms);
            let power_mw =
                IDLE_POWER_MW + (f64::from(POWER_LIMIT_MW) - IDLE_POWER_MW) * u.powf(1.2);
            if let Some((last_ms, last_power)) = gpu.last {
                let dt_s = (now_ms - last_ms) as f64 / 1000.0;
                if dt_s > 0.0 {
                    gpu.energy_mj += (last_power + power_mw) / 2.0 * dt_s;
                    gpu.nvlink_tx_kib += u * NVLINK_FULL_KIBPS * dt_s;
                    gpu.nvlink_rx_kib += 0.9 * u * NVLINK_FULL_KIBPS * dt_s;
                }
            }
            if gpu.last.is_none_or(|(last_ms, _)| now_ms >= last_ms) {
                gpu.last = Some((now_ms, power_mw));
            }
            let used = ((0.05 + 0.9 * u) * MEMORY_TOTAL as f64) as u64;
            let busy = u > 0.05;
            out.push(GpuReading {
                index: index as u32,
                gpu_instance: None,
                gpu_instance_profile: None,
                parent_uuid: None,
                parent_model: None,
                minor_number: Some(index as u32),
                uuid: gpu.uuid.clone(),
                model: SIMULATED_MODEL.to_string(),
                pci_bus_id: Some(format!("simulated:{index:02x}")),
                driver_version: Some("simulated".to_string()),
                up: true,
                utilization_gpu_percent: Some((u * 100.0).round() as u32),
                utilization_memory_percent: Some((u * 60.0).round() as u32),
                memory_used_bytes: Some(used),
                memory_free_bytes: Some(MEMORY_TOTAL - MEMORY_RESERVED - used),
                memory_total_bytes: Some(MEMORY_TOTAL),
                memory_reserved_bytes: Some(MEMORY_RESERVED),
                power_usage_mw: Some(power_mw.round() as u32),
                power_limit_mw: Some(POWER_LIMIT_MW),
                energy_mj: Some(gpu.energy_mj.floor() as u64),
                temperature_c: Some((32.0 + 45.0 * u).round() as u32),
                memory_temperature_c: Some((38.0 + 40.0 * u).round() as u32),
                encoder_utilization_percent: Some(0),
                decoder_utilization_percent: Some(0),
                sm_clock_mhz: Some(if busy { 1980 } else { 345 }),
                memory_clock_mhz: Some(2619),
                pcie_tx_kbps: Some((u * 2_000_000.0).round() as u32),
                pcie_rx_kbps: Some((u * 6_000_000.0).round() as u32),
                pcie_replays: Some(0),
                nvlink_tx_kib: Some(gpu.nvlink_tx_kib.floor() as u64),
                nvlink_rx_kib: Some(gpu.nvlink_rx_kib.floor() as u64),
                remapped_rows_correctable: Some(0),
                remapped_rows_uncorrectable: Some(0),
                row_remap_failure: Some(false),
                xid: Some(XidReading::default()),
                throttle: Some(vec![
                    ThrottleReason {
                        reason: "gpu_idle",
                        active: !busy,
                    },
                    ThrottleReason {
                        reason: "sw_power_cap",
                        active: power_mw > 0.97 * f64::from(POWER_LIMIT_MW),
                    },
                ]),
                processes: None,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_readings() {
        let mut a = SimulatedSource::new(8, 42).expect("source");
        let mut b = SimulatedSource::new(8, 42).expect("source");
        for t in [1_000, 2_000, 3_500] {
            assert_eq!(a.sample(t).expect("a"), b.sample(t).expect("b"));
        }
        let mut c = SimulatedSource::new(8, 43).expect("source");
        assert_ne!(a.sample(4_000).expect("a"), c.sample(4_000).expect("c"));
    }

    /// The curves of a seed are pinned (a simulated run can be repeated and
    /// compared): seed 42 as since the source was written.
    #[test]
    fn the_gpus_of_a_seed_do_not_change() {
        let s = SimulatedSource::new(2, 42).expect("source");
        let got: Vec<_> = s
            .gpus
            .iter()
            .map(|g| {
                (
                    g.uuid.as_str(),
                    [g.period_s, g.phase, g.fast_period_s, g.fast_phase].map(f64::to_bits),
                    g.energy_mj,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "SIM-bdd73226-2feb-6e95-28ef-e333b266f103",
                    [
                        0x407d_3292_2341_4ac9,
                        0x4001_4d08_98b9_9927,
                        0x4035_856d_ce15_ab45,
                        0x4015_d229_e1e7_bc65
                    ],
                    218_405_193.0
                ),
                (
                    "SIM-0fc1bc4c-9cef-205d-f34b-3763afdbbaab",
                    [
                        0x4085_74c4_72df_0c22,
                        0x3fe7_3ead_a070_1db9,
                        0x404b_523f_0384_8f24,
                        0x4014_0d79_27ce_f819
                    ],
                    63_651_710.0
                ),
            ]
        );
    }

    #[test]
    fn labelled_as_simulation_not_hardware() {
        let mut s = SimulatedSource::new(3, 1).expect("source");
        let r = s.sample(0).expect("sample");
        assert_eq!(r.len(), 3);
        for g in r {
            assert_eq!(g.model, SIMULATED_MODEL);
            assert!(g.uuid.starts_with("SIM-"), "{}", g.uuid);
            assert_eq!(g.driver_version.as_deref(), Some("simulated"));
        }
    }

    #[test]
    fn energy_never_decreases_and_power_follows_utilization() {
        let mut s = SimulatedSource::new(8, 7).expect("source");
        let mut last = [0u64; 8];
        let mut t = 1_700_000_000_000i64;
        for step in 0..2_000 {
            // Irregular steps, one going backwards in time.
            t += if step == 1000 {
                -5_000
            } else {
                250 + (step % 7) * 100
            };
            for g in s.sample(t).expect("sample") {
                let e = g.energy_mj.expect("energy");
                assert!(
                    e >= last[g.index as usize],
                    "energy went down at step {step}"
                );
                last[g.index as usize] = e;
                let u = f64::from(g.utilization_gpu_percent.expect("util")) / 100.0;
                let p = f64::from(g.power_usage_mw.expect("power"));
                let expected = IDLE_POWER_MW + (700_000.0 - IDLE_POWER_MW) * u.powf(1.2);
                assert!((p - expected).abs() < 8_000.0, "power {p} vs util {u}");
                assert!(g.utilization_gpu_percent.expect("util") <= 100);
            }
        }
    }

    #[test]
    fn energy_is_the_integral_of_power() {
        let mut s = SimulatedSource::new(1, 3).expect("source");
        let first = s.sample(0).expect("sample").remove(0);
        let mut expected = first.energy_mj.expect("energy") as f64;
        let mut last_p = f64::from(first.power_usage_mw.expect("p"));
        for i in 1..=600 {
            let g = s.sample(i * 1000).expect("sample").remove(0);
            let p = f64::from(g.power_usage_mw.expect("p"));
            expected += (last_p + p) / 2.0;
            last_p = p;
            let got = g.energy_mj.expect("energy") as f64;
            assert!((got - expected).abs() < 600.0, "{got} vs {expected}");
        }
    }

    #[test]
    fn simulates_every_field_the_nvml_source_can_read() {
        let mut s = SimulatedSource::new(2, 11).expect("source");
        let first = s.sample(1_000).expect("sample");
        let later = s.sample(61_000).expect("sample");
        for (a, b) in first.iter().zip(&later) {
            assert_eq!(b.minor_number, Some(b.index));
            assert!(b.memory_temperature_c.is_some());
            assert_eq!(b.encoder_utilization_percent, Some(0));
            assert_eq!(b.decoder_utilization_percent, Some(0));
            assert_eq!(
                b.memory_used_bytes.expect("used")
                    + b.memory_free_bytes.expect("free")
                    + b.memory_reserved_bytes.expect("reserved"),
                b.memory_total_bytes.expect("total")
            );
            assert_eq!(b.pcie_replays, Some(0));
            assert_eq!(b.remapped_rows_correctable, Some(0));
            assert_eq!(b.remapped_rows_uncorrectable, Some(0));
            assert_eq!(b.row_remap_failure, Some(false));
            assert_eq!(b.xid, Some(XidReading::default()));
            assert!(b.nvlink_tx_kib >= a.nvlink_tx_kib);
            assert!(b.nvlink_rx_kib >= a.nvlink_rx_kib);
        }
    }

    #[test]
    fn zero_gpus_is_an_error() {
        assert!(matches!(
            SimulatedSource::new(0, 1),
            Err(SourceError::SimulatedCount { count: 0, .. })
        ));
    }
}
