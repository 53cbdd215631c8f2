//! From readings to series: the naming schemes of DESIGN.md §4.
//!
//! [`Namer`] turns the [`GpuReading`]s of one tick into a [`Batch`], in either the
//! native scheme (Prometheus conventions, base units) or the dcgm-exporter
//! compatible scheme, and adds the attribution labels (`slurm_job_id`, `--label`)
//! to every series. Series are built once per device and reused while the
//! device's identity does not change, so a tick allocates no strings.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use crate::catalogue::{DCGM, Field, MetricDef, NATIVE};
use crate::sample::{Batch, Labels, Series};
use crate::source::GpuReading;

/// Which metric names to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameScheme {
    /// `aif_gpu_*`, base units.
    #[default]
    Native,
    /// `DCGM_FI_DEV_*`, dcgm-exporter's names, labels and units.
    Dcgm,
}

impl FromStr for NameScheme {
    type Err = LabelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "native" => Ok(NameScheme::Native),
            "dcgm" => Ok(NameScheme::Dcgm),
            other => Err(LabelError::UnknownScheme {
                value: other.to_string(),
            }),
        }
    }
}

/// Why an attribution label or a scheme name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// A `--label` argument without `=`.
    #[error("label {arg:?} is not KEY=VALUE")]
    NotKeyValue {
        /// The argument as given.
        arg: String,
    },
    /// A label name that Prometheus does not accept.
    #[error(
        "label name {name:?} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
    )]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// A label name the exporter sets itself.
    #[error("label name {name:?} is reserved: the exporter sets it on every GPU series")]
    Reserved {
        /// The name as given.
        name: String,
    },
    /// A naming scheme other than native or dcgm.
    #[error("metric-name scheme {value:?} is not one of: native, dcgm")]
    UnknownScheme {
        /// The value as given.
        value: String,
    },
}

/// Label names the exporter sets itself; attribution labels may not use them.
pub const RESERVED_LABELS: &[&str] = &[
    "gpu",
    "uuid",
    "model",
    "gpu_instance",
    "driver_version",
    "pci_bus_id",
    "reason",
    "pid",
    "process",
    "UUID",
    "device",
    "modelName",
    "Hostname",
    "GPU_I_ID",
    "job",
    "instance",
];

/// True for a valid Prometheus label name that is not reserved (`__…`).
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.starts_with("__")
}

/// Parses one `KEY=VALUE` attribution label.
///
/// # Errors
/// [`LabelError`] naming what is wrong with the argument.
pub fn parse_label(arg: &str) -> Result<(String, String), LabelError> {
    let (k, v) = arg.split_once('=').ok_or_else(|| LabelError::NotKeyValue {
        arg: arg.to_string(),
    })?;
    if !is_valid_label_name(k) {
        return Err(LabelError::InvalidName {
            name: k.to_string(),
        });
    }
    if RESERVED_LABELS.contains(&k) {
        return Err(LabelError::Reserved {
            name: k.to_string(),
        });
    }
    Ok((k.to_string(), v.to_string()))
}

/// The attribution labels for this process: `slurm_job_id` from `SLURM_JOB_ID`
/// when set and non-empty, then `extra` (which wins on a clash).
pub fn attribution_labels(extra: &[(String, String)]) -> Labels {
    let mut labels = Labels::new();
    if let Ok(job) = std::env::var("SLURM_JOB_ID")
        && !job.is_empty()
    {
        labels.insert("slurm_job_id", job);
    }
    for (k, v) in extra {
        labels.insert(k.clone(), v.clone());
    }
    labels
}

/// Identity of a device slot; its series are rebuilt when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    uuid: String,
    model: String,
    pci_bus_id: Option<String>,
    driver_version: Option<String>,
}

impl Identity {
    /// True when `r` has this identity.
    fn is(&self, r: &GpuReading) -> bool {
        self.uuid == r.uuid
            && self.model == r.model
            && self.pci_bus_id == r.pci_bus_id
            && self.driver_version == r.driver_version
    }
}

/// The native definition of `field` (every field has one).
fn native_def(field: Field) -> MetricDef {
    NATIVE
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(_, d)| *d)
        .expect("every field has a native definition")
}

#[derive(Debug)]
struct DeviceSeries {
    identity: Identity,
    /// Labels every series of this device carries.
    base: Labels,
    fixed: HashMap<Field, Arc<Series>>,
    throttle: HashMap<&'static str, Arc<Series>>,
}

/// Turns readings into batches. Keep one per source: it caches series.
#[derive(Debug)]
pub struct Namer {
    scheme: NameScheme,
    attribution: Labels,
    hostname: String,
    devices: HashMap<(u32, Option<u32>), DeviceSeries>,
}

impl Namer {
    /// A namer for `scheme` adding `attribution` to every series; `hostname` is
    /// the DCGM `Hostname` label.
    pub fn new(scheme: NameScheme, attribution: Labels, hostname: impl Into<String>) -> Self {
        Namer {
            scheme,
            attribution,
            hostname: hostname.into(),
            devices: HashMap::new(),
        }
    }

    /// The scheme in use.
    pub fn scheme(&self) -> NameScheme {
        self.scheme
    }

    /// The attribution labels added to every series.
    pub fn attribution(&self) -> &Labels {
        &self.attribution
    }

    fn table(&self) -> &'static [(Field, MetricDef)] {
        match self.scheme {
            NameScheme::Native => NATIVE,
            NameScheme::Dcgm => DCGM,
        }
    }

    fn base_labels(&self, r: &GpuReading) -> Labels {
        let mut labels = self.attribution.clone();
        match self.scheme {
            NameScheme::Native => {
                labels.insert("gpu", r.index.to_string());
                labels.insert("uuid", r.uuid.clone());
                labels.insert("model", r.model.clone());
                if let Some(gi) = r.gpu_instance {
                    labels.insert("gpu_instance", gi.to_string());
                }
            }
            NameScheme::Dcgm => {
                labels.insert("gpu", r.index.to_string());
                labels.insert("UUID", r.uuid.clone());
                labels.insert("device", format!("nvidia{}", r.index));
                labels.insert("modelName", r.model.clone());
                labels.insert("Hostname", self.hostname.clone());
                if let Some(gi) = r.gpu_instance {
                    labels.insert("GPU_I_ID", gi.to_string());
                }
            }
        }
        labels
    }

    fn device_series(&mut self, r: &GpuReading) -> &mut DeviceSeries {
        let key = (r.index, r.gpu_instance);
        // Compared by reference: a tick with an unchanged device allocates nothing.
        let stale = self.devices.get(&key).is_none_or(|d| !d.identity.is(r));
        if stale {
            let identity = Identity {
                uuid: r.uuid.clone(),
                model: r.model.clone(),
                pci_bus_id: r.pci_bus_id.clone(),
                driver_version: r.driver_version.clone(),
            };
            let base = self.base_labels(r);
            let mut fixed = HashMap::new();
            for (field, def) in self.table() {
                let mut labels = base.clone();
                match field {
                    Field::Info => {
                        labels.insert(
                            "driver_version",
                            identity.driver_version.clone().unwrap_or_default(),
                        );
                        labels.insert(
                            "pci_bus_id",
                            identity.pci_bus_id.clone().unwrap_or_default(),
                        );
                    }
                    Field::ThrottleActive | Field::ProcessMemory => continue,
                    _ => {}
                }
                fixed.insert(*field, Arc::new(Series::new(def.name, def.kind, labels)));
            }
            self.devices.insert(
                key,
                DeviceSeries {
                    identity,
                    base,
                    fixed,
                    throttle: HashMap::new(),
                },
            );
        }
        self.devices.get_mut(&key).expect("inserted above")
    }

    /// Names the readings of one tick taken at `timestamp_ms`.
    pub fn batch(&mut self, timestamp_ms: i64, readings: &[GpuReading]) -> Batch {
        let mut batch = Batch::new(timestamp_ms);
        batch.samples.reserve(readings.len() * 20);
        for r in readings {
            self.name_reading(r, &mut batch);
        }
        batch
    }

    fn name_reading(&mut self, r: &GpuReading, batch: &mut Batch) {
        let scheme = self.scheme;
        let dev = self.device_series(r);
        let push = |batch: &mut Batch, dev: &DeviceSeries, field: Field, value: Option<f64>| {
            if let (Some(v), Some(s)) = (value, dev.fixed.get(&field)) {
                batch.push(Arc::clone(s), v);
            }
        };
        push(batch, dev, Field::Info, Some(1.0));
        push(batch, dev, Field::Up, Some(if r.up { 1.0 } else { 0.0 }));
        if !r.up {
            return;
        }
        let f = |v: Option<u32>| v.map(f64::from);
        let g = |v: Option<u64>| v.map(|x| x as f64);
        match scheme {
            NameScheme::Native => {
                push(
                    batch,
                    dev,
                    Field::Utilization,
                    f(r.utilization_gpu_percent).map(|p| p / 100.0),
                );
                push(
                    batch,
                    dev,
                    Field::MemoryUtilization,
                    f(r.utilization_memory_percent).map(|p| p / 100.0),
                );
                push(batch, dev, Field::MemoryUsed, g(r.memory_used_bytes));
                push(batch, dev, Field::MemoryFree, g(r.memory_free_bytes));
                push(batch, dev, Field::MemoryTotal, g(r.memory_total_bytes));
                push(
                    batch,
                    dev,
                    Field::Power,
                    f(r.power_usage_mw).map(|mw| mw / 1000.0),
                );
                push(
                    batch,
                    dev,
                    Field::PowerLimit,
                    f(r.power_limit_mw).map(|mw| mw / 1000.0),
                );
                push(
                    batch,
                    dev,
                    Field::Energy,
                    g(r.energy_mj).map(|mj| mj / 1000.0),
                );
                push(batch, dev, Field::Temperature, f(r.temperature_c));
                push(
                    batch,
                    dev,
                    Field::SmClock,
                    f(r.sm_clock_mhz).map(|m| m * 1e6),
                );
                push(
                    batch,
                    dev,
                    Field::MemoryClock,
                    f(r.memory_clock_mhz).map(|m| m * 1e6),
                );
                push(
                    batch,
                    dev,
                    Field::PcieTx,
                    f(r.pcie_tx_kbps).map(|k| k * 1024.0),
                );
                push(
                    batch,
                    dev,
                    Field::PcieRx,
                    f(r.pcie_rx_kbps).map(|k| k * 1024.0),
                );
                if let Some(reasons) = &r.throttle {
                    for t in reasons {
                        let base = &dev.base;
                        let s = dev.throttle.entry(t.reason).or_insert_with(|| {
                            let def = native_def(Field::ThrottleActive);
                            let mut labels = base.clone();
                            labels.insert("reason", t.reason);
                            Arc::new(Series::new(def.name, def.kind, labels))
                        });
                        batch.push(Arc::clone(s), if t.active { 1.0 } else { 0.0 });
                    }
                }
                if let Some(procs) = &r.processes {
                    push(batch, dev, Field::Processes, Some(procs.len() as f64));
                    let def = native_def(Field::ProcessMemory);
                    for p in procs {
                        if let Some(bytes) = p.used_memory_bytes {
                            let mut labels = dev.base.clone();
                            labels.insert("pid", p.pid.to_string());
                            labels.insert("process", p.name.clone());
                            batch.push(
                                Arc::new(Series::new(def.name, def.kind, labels)),
                                bytes as f64,
                            );
                        }
                    }
                }
            }
            NameScheme::Dcgm => {
                const MIB: f64 = 1024.0 * 1024.0;
                push(batch, dev, Field::Utilization, f(r.utilization_gpu_percent));
                push(
                    batch,
                    dev,
                    Field::MemoryUtilization,
                    f(r.utilization_memory_percent),
                );
                push(
                    batch,
                    dev,
                    Field::MemoryUsed,
                    g(r.memory_used_bytes).map(|b| (b / MIB).floor()),
                );
                push(
                    batch,
                    dev,
                    Field::MemoryFree,
                    g(r.memory_free_bytes).map(|b| (b / MIB).floor()),
                );
                push(
                    batch,
                    dev,
                    Field::Power,
                    f(r.power_usage_mw).map(|mw| mw / 1000.0),
                );
                push(batch, dev, Field::Energy, g(r.energy_mj));
                push(batch, dev, Field::Temperature, f(r.temperature_c));
                push(batch, dev, Field::SmClock, f(r.sm_clock_mhz));
                push(batch, dev, Field::MemoryClock, f(r.memory_clock_mhz));
                push(batch, dev, Field::PcieTx, f(r.pcie_tx_kbps));
                push(batch, dev, Field::PcieRx, f(r.pcie_rx_kbps));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{GpuSource, SimulatedSource};

    #[test]
    fn parse_label_accepts_and_rejects() {
        assert_eq!(
            parse_label("run_id=abc=d").expect("ok"),
            ("run_id".to_string(), "abc=d".to_string())
        );
        assert!(matches!(
            parse_label("noequals"),
            Err(LabelError::NotKeyValue { .. })
        ));
        assert!(matches!(
            parse_label("9x=1"),
            Err(LabelError::InvalidName { .. })
        ));
        assert!(matches!(
            parse_label("__x=1"),
            Err(LabelError::InvalidName { .. })
        ));
        assert!(matches!(
            parse_label("gpu=1"),
            Err(LabelError::Reserved { .. })
        ));
    }

    #[test]
    fn native_batch_has_every_field_in_base_units() {
        let mut src = SimulatedSource::new(2, 5).expect("src");
        let readings = src.sample(1_000_000).expect("sample");
        let attribution = Labels::from_pairs([("run_id", "r1")]);
        let mut namer = Namer::new(NameScheme::Native, attribution, "node1");
        let b = namer.batch(1_000_000, &readings);
        let r = &readings[1];
        let gpu = [("gpu", "1"), ("run_id", "r1")];
        assert_eq!(b.value_of("aif_gpu_up", &gpu), Some(1.0));
        assert_eq!(
            b.value_of("aif_gpu_utilization_ratio", &gpu),
            Some(f64::from(r.utilization_gpu_percent.expect("u")) / 100.0)
        );
        assert_eq!(
            b.value_of("aif_gpu_power_watts", &gpu),
            Some(f64::from(r.power_usage_mw.expect("p")) / 1000.0)
        );
        assert_eq!(
            b.value_of("aif_gpu_sm_clock_hertz", &gpu),
            Some(f64::from(r.sm_clock_mhz.expect("c")) * 1e6)
        );
        assert_eq!(
            b.value_of(
                "aif_gpu_throttle_active",
                &[("gpu", "1"), ("reason", "gpu_idle")]
            ),
            Some(if r.utilization_gpu_percent.expect("u") > 5 {
                0.0
            } else {
                1.0
            })
        );
        // 16 per GPU + 2 throttle reasons.
        assert_eq!(b.len(), 2 * 17);
        // Cached series are shared between ticks.
        let b2 = namer.batch(1_001_000, &src.sample(1_001_000).expect("sample"));
        assert!(Arc::ptr_eq(&b.samples[0].series, &b2.samples[0].series));
    }

    #[test]
    fn down_gpu_has_only_identity_and_up_zero() {
        let r = GpuReading::down(3, "GPU-x".into(), "m".into());
        let mut namer = Namer::new(NameScheme::Native, Labels::new(), "h");
        let b = namer.batch(0, &[r]);
        assert_eq!(b.len(), 2);
        assert_eq!(b.value_of("aif_gpu_up", &[("gpu", "3")]), Some(0.0));
    }

    #[test]
    fn dcgm_batch_uses_dcgm_names_units_and_labels() {
        let mut src = SimulatedSource::new(1, 5).expect("src");
        let readings = src.sample(5_000).expect("sample");
        let mut namer = Namer::new(NameScheme::Dcgm, Labels::new(), "node7");
        let b = namer.batch(5_000, &readings);
        let l = [("gpu", "0"), ("device", "nvidia0"), ("Hostname", "node7")];
        assert_eq!(
            b.value_of("DCGM_FI_DEV_FB_USED", &l),
            Some((readings[0].memory_used_bytes.expect("m") / (1024 * 1024)) as f64)
        );
        assert_eq!(
            b.value_of("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", &l),
            Some(readings[0].energy_mj.expect("e") as f64)
        );
        assert!(
            b.samples
                .iter()
                .all(|s| s.series.name.starts_with("DCGM_FI_DEV_"))
        );
        assert!(
            b.samples
                .iter()
                .all(|s| s.series.labels.get("modelName") == Some("Simulated GPU"))
        );
    }
}
