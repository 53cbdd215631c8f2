//! From readings to series: the naming schemes of DESIGN.md §4.
//!
//! [`Namer`] turns the [`GpuReading`]s of one tick into a [`Batch`], in either the
//! native scheme (Prometheus conventions, base units) or the dcgm-exporter
//! compatible scheme, and adds the attribution labels (`slurm_job_id`, `--label`)
//! to every series. Series are built once per device and reused while the
//! device's identity does not change, so a tick allocates no strings.

use std::collections::HashMap;

use crate::fasthash::FastMap;
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

/// The name of the host label in dcgm mode (DESIGN.md §4).
///
/// dcgm-exporter renamed its `Hostname` label to `hostname` in May 2026
/// (NVIDIA/dcgm-exporter#655, so it joins Slurm-derived series without two
/// labels that differ in case); dashboards written before that still match on
/// `Hostname`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostLabel {
    /// `hostname`, as current dcgm-exporter names it.
    #[default]
    Hostname,
    /// `Hostname`, for dashboards written against dcgm-exporter before the rename.
    LegacyHostname,
}

impl HostLabel {
    /// The label name.
    pub fn name(self) -> &'static str {
        match self {
            HostLabel::Hostname => "hostname",
            HostLabel::LegacyHostname => "Hostname",
        }
    }
}

impl FromStr for HostLabel {
    type Err = LabelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hostname" => Ok(HostLabel::Hostname),
            "Hostname" => Ok(HostLabel::LegacyHostname),
            other => Err(LabelError::UnknownHostLabel {
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
    /// A dcgm host label name other than `hostname` or `Hostname`.
    #[error("dcgm host label {value:?} is not one of: hostname, Hostname")]
    UnknownHostLabel {
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
    "hostname",
    "GPU_I_ID",
    "GPU_I_PROFILE",
    "DCGM_FI_DRIVER_VERSION",
    "err_code",
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
    minor_number: Option<u32>,
    gpu_instance_profile: Option<String>,
    parent_uuid: Option<String>,
    parent_model: Option<String>,
}

impl Identity {
    fn of(r: &GpuReading) -> Self {
        Identity {
            uuid: r.uuid.clone(),
            model: r.model.clone(),
            pci_bus_id: r.pci_bus_id.clone(),
            driver_version: r.driver_version.clone(),
            minor_number: r.minor_number,
            gpu_instance_profile: r.gpu_instance_profile.clone(),
            parent_uuid: r.parent_uuid.clone(),
            parent_model: r.parent_model.clone(),
        }
    }

    /// True when `r` has this identity.
    fn is(&self, r: &GpuReading) -> bool {
        self.uuid == r.uuid
            && self.model == r.model
            && self.pci_bus_id == r.pci_bus_id
            && self.driver_version == r.driver_version
            && self.minor_number == r.minor_number
            && self.gpu_instance_profile == r.gpu_instance_profile
            && self.parent_uuid == r.parent_uuid
            && self.parent_model == r.parent_model
    }
}

/// The dcgm definition of `field`, for fields known to have one.
fn dcgm_def(field: Field) -> MetricDef {
    DCGM.iter()
        .find(|(f, _)| *f == field)
        .map(|(_, d)| *d)
        .expect("field has a dcgm definition")
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
    fixed: FastMap<Field, Arc<Series>>,
    throttle: HashMap<&'static str, Arc<Series>>,
    /// Previous NVLink total (timestamp ms, TX + RX KiB), for DCGM's rate.
    nvlink_last: Option<(i64, u64)>,
    /// dcgm's `DCGM_FI_DEV_XID_ERRORS{err_code}` for the last code seen.
    xid: Option<(u64, Arc<Series>)>,
}

/// Turns readings into batches. Keep one per source: it caches series.
#[derive(Debug)]
pub struct Namer {
    scheme: NameScheme,
    attribution: Labels,
    hostname: String,
    host_label: HostLabel,
    devices: FastMap<(u32, Option<u32>), DeviceSeries>,
}

impl Namer {
    /// A namer for `scheme` adding `attribution` to every series; `hostname` is
    /// the value of the dcgm host label (named `hostname` unless
    /// [`Namer::with_host_label`] says otherwise).
    pub fn new(scheme: NameScheme, attribution: Labels, hostname: impl Into<String>) -> Self {
        Namer {
            scheme,
            attribution,
            hostname: hostname.into(),
            host_label: HostLabel::default(),
            devices: FastMap::default(),
        }
    }

    /// Names the dcgm host label `Hostname` (dashboards from before
    /// dcgm-exporter's rename) or `hostname` (the default). No effect in the
    /// native scheme, which has no host label (the Pushgateway's `instance`
    /// names the host).
    pub fn with_host_label(mut self, label: HostLabel) -> Self {
        self.host_label = label;
        self.devices.clear();
        self
    }

    /// The dcgm host label in use.
    pub fn host_label(&self) -> HostLabel {
        self.host_label
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
                // dcgm-exporter's label set (rendermetrics/render_metrics.go);
                // a MIG series carries its parent GPU's UUID and model, told
                // apart by GPU_I_ID.
                labels.insert("gpu", r.index.to_string());
                labels.insert("UUID", r.parent_uuid.as_ref().unwrap_or(&r.uuid).clone());
                labels.insert("pci_bus_id", r.pci_bus_id.clone().unwrap_or_default());
                // /dev/nvidia<minor>; the NVML index only where the minor
                // number is unknown (NVML answers it on Linux only).
                labels.insert(
                    "device",
                    format!("nvidia{}", r.minor_number.unwrap_or(r.index)),
                );
                labels.insert(
                    "modelName",
                    r.parent_model.as_ref().unwrap_or(&r.model).clone(),
                );
                labels.insert(self.host_label.name(), self.hostname.clone());
                if let Some(v) = &r.driver_version {
                    labels.insert("DCGM_FI_DRIVER_VERSION", v.clone());
                }
                if let Some(gi) = r.gpu_instance {
                    labels.insert("GPU_I_ID", gi.to_string());
                    if let Some(profile) = &r.gpu_instance_profile {
                        labels.insert("GPU_I_PROFILE", profile.clone());
                    }
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
            let identity = Identity::of(r);
            let base = self.base_labels(r);
            let mut fixed = FastMap::default();
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
                    // dcgm-exporter labels the last XID with its code.
                    Field::XidLast if self.scheme == NameScheme::Dcgm => continue,
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
                    nvlink_last: None,
                    xid: None,
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
        let table = self.table();
        let dev = self.device_series(r);
        let nvlink_total = r
            .nvlink_tx_kib
            .zip(r.nvlink_rx_kib)
            .map(|(tx, rx)| tx.saturating_add(rx));
        // DCGM publishes NVLink bandwidth as a rate over the last interval
        // (KiB/s / 1000): absent on a device's first tick, after a gap in the
        // counters or when they went backwards (driver reload).
        let nvlink_rate = match (dev.nvlink_last, nvlink_total) {
            (Some((t0, v0)), Some(v1)) if batch.timestamp_ms > t0 && v1 >= v0 => {
                let dt_s = (batch.timestamp_ms - t0) as f64 / 1000.0;
                Some((v1 - v0) as f64 / dt_s / 1000.0)
            }
            _ => None,
        };
        if r.up {
            dev.nvlink_last = nvlink_total.map(|v| (batch.timestamp_ms, v));
        }
        for (field, _) in table {
            let value = match field {
                Field::Info => Some(1.0),
                Field::Up => Some(if r.up { 1.0 } else { 0.0 }),
                _ if !r.up => None,
                Field::NvlinkBandwidth => nvlink_rate,
                _ => nvml_value(*field, r).map(|v| in_scheme_units(scheme, *field, v)),
            };
            if let (Some(v), Some(s)) = (value, dev.fixed.get(field)) {
                batch.push(Arc::clone(s), v);
            }
        }
        if scheme == NameScheme::Dcgm
            && r.up
            && let Some(x) = r.xid
        {
            // As dcgm-exporter: the code is the value and the `err_code` label
            // (its `err_msg` text table is not reproduced).
            if dev.xid.as_ref().is_none_or(|(code, _)| *code != x.last) {
                let def = dcgm_def(Field::XidLast);
                let mut labels = dev.base.clone();
                labels.insert("err_code", x.last.to_string());
                dev.xid = Some((x.last, Arc::new(Series::new(def.name, def.kind, labels))));
            }
            if let Some((_, s)) = &dev.xid {
                batch.push(Arc::clone(s), x.last as f64);
            }
        }
        if !r.up || scheme != NameScheme::Native {
            return;
        }
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
}

/// The reading of a per-device `field`, in NVML's units (%, bytes, mW, mJ,
/// °C, MHz, KB/s, KiB, counts); `None` when absent or not a plain reading.
fn nvml_value(field: Field, r: &GpuReading) -> Option<f64> {
    let u = |v: Option<u32>| v.map(f64::from);
    let l = |v: Option<u64>| v.map(|x| x as f64);
    match field {
        Field::Utilization => u(r.utilization_gpu_percent),
        Field::MemoryUtilization => u(r.utilization_memory_percent),
        Field::MemoryUsed => l(r.memory_used_bytes),
        Field::MemoryFree => l(r.memory_free_bytes),
        Field::MemoryTotal => l(r.memory_total_bytes),
        Field::MemoryReserved => l(r.memory_reserved_bytes),
        Field::Power => u(r.power_usage_mw),
        Field::PowerLimit => u(r.power_limit_mw),
        Field::Energy => l(r.energy_mj),
        Field::Temperature => u(r.temperature_c),
        Field::MemoryTemperature => u(r.memory_temperature_c),
        Field::SmClock => u(r.sm_clock_mhz),
        Field::MemoryClock => u(r.memory_clock_mhz),
        Field::PcieTx => u(r.pcie_tx_kbps),
        Field::PcieRx => u(r.pcie_rx_kbps),
        Field::EncoderUtilization => u(r.encoder_utilization_percent),
        Field::DecoderUtilization => u(r.decoder_utilization_percent),
        Field::PcieReplays => l(r.pcie_replays),
        Field::NvlinkTx => l(r.nvlink_tx_kib),
        Field::NvlinkRx => l(r.nvlink_rx_kib),
        Field::RemappedRowsCorrectable => l(r.remapped_rows_correctable),
        Field::RemappedRowsUncorrectable => l(r.remapped_rows_uncorrectable),
        Field::RowRemapFailure => r.row_remap_failure.map(|b| if b { 1.0 } else { 0.0 }),
        Field::XidLast => r.xid.map(|x| x.last as f64),
        Field::XidErrors => r.xid.map(|x| x.count as f64),
        Field::Processes => r.processes.as_ref().map(|p| p.len() as f64),
        Field::Info
        | Field::Up
        | Field::NvlinkBandwidth
        | Field::ThrottleActive
        | Field::ProcessMemory => None,
    }
}

/// `v` (NVML's units) in the units of `scheme`: base units for native
/// (ratios, bytes, W, J, Hz, B/s); DCGM's own for dcgm (%, MiB, W, mJ, MHz,
/// KB/s).
fn in_scheme_units(scheme: NameScheme, field: Field, v: f64) -> f64 {
    const MIB: f64 = 1024.0 * 1024.0;
    match (scheme, field) {
        (
            NameScheme::Native,
            Field::Utilization
            | Field::MemoryUtilization
            | Field::EncoderUtilization
            | Field::DecoderUtilization,
        ) => v / 100.0,
        (NameScheme::Native, Field::Power | Field::PowerLimit | Field::Energy) => v / 1000.0,
        (NameScheme::Native, Field::SmClock | Field::MemoryClock) => v * 1e6,
        (NameScheme::Native, Field::PcieTx | Field::PcieRx | Field::NvlinkTx | Field::NvlinkRx) => {
            v * 1024.0
        }
        (NameScheme::Dcgm, Field::MemoryUsed | Field::MemoryFree | Field::MemoryReserved) => {
            (v / MIB).floor()
        }
        (NameScheme::Dcgm, Field::Power) => v / 1000.0,
        _ => v,
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
        assert_eq!(
            b.value_of("aif_gpu_nvlink_transmitted_bytes_total", &gpu),
            Some(r.nvlink_tx_kib.expect("nvlink") as f64 * 1024.0)
        );
        assert_eq!(
            b.value_of("aif_gpu_memory_reserved_bytes", &gpu),
            Some(512.0 * 1024.0 * 1024.0)
        );
        assert_eq!(b.value_of("aif_gpu_xid_errors_total", &gpu), Some(0.0));
        // 27 per GPU + 2 throttle reasons.
        assert_eq!(b.len(), 2 * 29);
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
    fn dcgm_host_label_is_hostname_unless_the_legacy_name_is_asked_for() {
        let mut src = SimulatedSource::new(1, 5).expect("src");
        let readings = src.sample(5_000).expect("sample");
        let mut current = Namer::new(NameScheme::Dcgm, Labels::new(), "node7");
        assert_eq!(current.host_label(), HostLabel::Hostname);
        let b = current.batch(5_000, &readings);
        assert!(b.samples.iter().all(|s| {
            s.series.labels.get("hostname") == Some("node7")
                && s.series.labels.get("Hostname").is_none()
        }));
        let mut legacy = Namer::new(NameScheme::Dcgm, Labels::new(), "node7")
            .with_host_label("Hostname".parse().expect("legacy"));
        let b = legacy.batch(5_000, &readings);
        assert!(b.samples.iter().all(|s| {
            s.series.labels.get("Hostname") == Some("node7")
                && s.series.labels.get("hostname").is_none()
        }));
        let err = "HOSTNAME".parse::<HostLabel>().expect_err("unknown");
        assert!(err.to_string().contains("hostname, Hostname"), "{err}");
    }

    #[test]
    fn down_gpu_in_dcgm_mode_is_seen_through_aif_gpu_up() {
        let r = GpuReading {
            pci_bus_id: Some("00000000:18:00.0".into()),
            minor_number: Some(6),
            ..GpuReading::down(1, "GPU-y".into(), "m".into())
        };
        let mut namer = Namer::new(NameScheme::Dcgm, Labels::new(), "h");
        let b = namer.batch(0, &[r]);
        assert_eq!(b.len(), 1, "{b:?}");
        assert_eq!(
            b.value_of(
                "aif_gpu_up",
                &[
                    ("gpu", "1"),
                    ("UUID", "GPU-y"),
                    ("device", "nvidia6"),
                    ("pci_bus_id", "00000000:18:00.0"),
                    ("hostname", "h")
                ]
            ),
            Some(0.0)
        );
    }

    #[test]
    fn dcgm_nvlink_bandwidth_is_a_rate_from_the_second_tick_on() {
        let reading = |tx: u64, rx: u64| GpuReading {
            up: true,
            nvlink_tx_kib: Some(tx),
            nvlink_rx_kib: Some(rx),
            ..GpuReading::down(0, "GPU-n".into(), "m".into())
        };
        let mut namer = Namer::new(NameScheme::Dcgm, Labels::new(), "h");
        let name = "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL";
        let b = namer.batch(1_000, &[reading(1_000, 500)]);
        assert_eq!(b.value_of(name, &[]), None, "no rate from one reading");
        // 2 s later: (3000 + 1500 - 1500) KiB / 2 s / 1000 = 1.5 (MB/s).
        let b = namer.batch(3_000, &[reading(3_000, 1_500)]);
        assert_eq!(b.value_of(name, &[]), Some(1.5));
        // Counters went backwards (driver reload): no rate, then a fresh one.
        let b = namer.batch(4_000, &[reading(10, 10)]);
        assert_eq!(b.value_of(name, &[]), None);
        let b = namer.batch(5_000, &[reading(1_010, 10)]);
        assert_eq!(b.value_of(name, &[]), Some(1.0));
    }

    #[test]
    fn dcgm_batch_uses_dcgm_names_units_and_labels() {
        let mut src = SimulatedSource::new(1, 5).expect("src");
        let readings = src.sample(5_000).expect("sample");
        let mut namer = Namer::new(NameScheme::Dcgm, Labels::new(), "node7");
        let b = namer.batch(5_000, &readings);
        let l = [
            ("gpu", "0"),
            ("device", "nvidia0"),
            ("hostname", "node7"),
            ("pci_bus_id", "simulated:00"),
            ("DCGM_FI_DRIVER_VERSION", "simulated"),
        ];
        assert_eq!(b.value_of("DCGM_FI_DEV_FB_RESERVED", &l), Some(512.0));
        assert_eq!(
            b.value_of("DCGM_FI_DEV_MEMORY_TEMP", &l),
            readings[0].memory_temperature_c.map(f64::from)
        );
        for name in [
            "DCGM_FI_DEV_ENC_UTIL",
            "DCGM_FI_DEV_DEC_UTIL",
            "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
            "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
            "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
            "DCGM_FI_DEV_ROW_REMAP_FAILURE",
        ] {
            assert_eq!(b.value_of(name, &l), Some(0.0), "{name}");
        }
        assert_eq!(b.value_of("aif_gpu_up", &l), Some(1.0));
        let mut xid = l.to_vec();
        xid.push(("err_code", "0"));
        assert_eq!(b.value_of("DCGM_FI_DEV_XID_ERRORS", &xid), Some(0.0));
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
                .all(|s| s.series.name.starts_with("DCGM_FI_DEV_") || s.series.name == "aif_gpu_up")
        );
        assert!(
            b.samples
                .iter()
                .all(|s| s.series.labels.get("modelName") == Some("Simulated GPU"))
        );
    }
}
