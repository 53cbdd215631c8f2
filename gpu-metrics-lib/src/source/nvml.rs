//! The NVML source: real GPUs through `nvml-wrapper`.
//!
//! Device handles borrow the [`Nvml`] instance, so they are looked up by index on
//! every tick (`nvmlDeviceGetHandleByIndex_v2` is a table lookup in the driver).
//! Identity (UUID, name, PCI bus id) is read once at open and again for a device
//! that did not answer then.
//!
//! Per field: `NotSupported` (and a symbol the library lacks) makes the field
//! absent; `GpuLost`/`Unknown`/`Timeout` on a device mark that device down for
//! this tick. Each field failure is logged once per device, not every tick.
//!
//! Memory temperature, NVLink throughput and remapped rows come from one
//! `nvmlDeviceGetFieldValues` call per device (nvml-wrapper has no getter for
//! them). XID errors have no getter at all: NVML reports them only as events,
//! so the source registers one event set per device for
//! `nvmlEventTypeXidCriticalError` at open and drains it without waiting
//! (`nvmlEventSetWait_v2` with a 0 ms timeout) on every tick; an XID that
//! happened before the exporter started is not seen.
//!
//! The [`Nvml`] instance is leaked (one per opened source, never shut down):
//! event sets and device handles borrow it for as long as the source lives,
//! and a process opens its source once.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{Clock, PcieUtilCounter, TemperatureSensor};
use nvml_wrapper::enums::device::{SampleValue, UsedGpuMemory};
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::{NvmlError, nvml_sym, nvml_try};
use nvml_wrapper::struct_wrappers::device::FieldValueSample;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::sys_exports::field_id::{
    NVML_FI_DEV_MEMORY_TEMP, NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX,
    NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, NVML_FI_DEV_REMAPPED_COR, NVML_FI_DEV_REMAPPED_FAILURE,
    NVML_FI_DEV_REMAPPED_UNC,
};
use nvml_wrapper::{Device, EventSet, Nvml};

use super::{
    GpuReading, GpuSource, ProcessReading, SourceError, SourceKind, ThrottleReason, XidReading,
};

/// The fields read with one `nvmlDeviceGetFieldValues` call per device.
/// NVLink counters take scope `UINT_MAX`: the sum over all links.
const FIELD_VALUES: [FieldId; 6] = [
    FieldId(NVML_FI_DEV_MEMORY_TEMP),
    FieldId(NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX),
    FieldId(NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX),
    FieldId(NVML_FI_DEV_REMAPPED_COR),
    FieldId(NVML_FI_DEV_REMAPPED_UNC),
    FieldId(NVML_FI_DEV_REMAPPED_FAILURE),
];

/// The most XID events taken from one device's event set per tick, so an
/// event storm cannot make a tick late (the rest are taken next tick).
const MAX_EVENTS_PER_TICK: usize = 64;

/// The library NVML is loaded from when no path is given.
pub const DEFAULT_NVML_LIB: &str = "libnvidia-ml.so.1";

/// Throttle reasons exported as `aif_gpu_throttle_active{reason}`.
const THROTTLE_REASONS: [(ThrottleReasons, &str); 9] = [
    (ThrottleReasons::GPU_IDLE, "gpu_idle"),
    (
        ThrottleReasons::APPLICATIONS_CLOCKS_SETTING,
        "applications_clocks_setting",
    ),
    (ThrottleReasons::SW_POWER_CAP, "sw_power_cap"),
    (ThrottleReasons::HW_SLOWDOWN, "hw_slowdown"),
    (ThrottleReasons::SYNC_BOOST, "sync_boost"),
    (ThrottleReasons::SW_THERMAL_SLOWDOWN, "sw_thermal_slowdown"),
    (ThrottleReasons::HW_THERMAL_SLOWDOWN, "hw_thermal_slowdown"),
    (
        ThrottleReasons::HW_POWER_BRAKE_SLOWDOWN,
        "hw_power_brake_slowdown",
    ),
    (
        ThrottleReasons::DISPLAY_CLOCK_SETTING,
        "display_clock_setting",
    ),
];

/// Builds an [`NvmlSource`].
#[derive(Debug, Clone, Default)]
pub struct NvmlSourceBuilder {
    lib_path: Option<PathBuf>,
    processes: bool,
}

impl NvmlSourceBuilder {
    /// Load NVML from `path` instead of `libnvidia-ml.so.1` on the loader path.
    pub fn lib_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.lib_path = Some(path.into());
        self
    }

    /// Also read the compute processes of each GPU (opt-in: costs a driver call
    /// per GPU and a `/proc` read per process).
    pub fn processes(mut self, enabled: bool) -> Self {
        self.processes = enabled;
        self
    }

    /// Loads and initialises NVML, reads each device's identity and registers
    /// for its XID events.
    ///
    /// # Errors
    /// [`SourceError::NvmlNotLoaded`] when the library cannot be loaded,
    /// [`SourceError::NvmlInit`] when NVML refuses to start,
    /// [`SourceError::DeviceCount`] when it cannot count the devices.
    pub fn build(self) -> Result<NvmlSource, SourceError> {
        let path = self
            .lib_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_NVML_LIB));
        let nvml = Nvml::builder()
            .lib_path(OsStr::new(path.as_os_str()))
            .init()
            .map_err(|e| classify_init_error(&path, e))?;
        let count = nvml.device_count().map_err(|e| SourceError::DeviceCount {
            reason: e.to_string(),
        })?;
        let nvml: &'static Nvml = Box::leak(Box::new(nvml));
        let driver_version = nvml.sys_driver_version().ok();
        let mut source = NvmlSource {
            nvml,
            lib_path: path,
            driver_version,
            identities: vec![None; count as usize],
            xid: (0..count).map(|_| None).collect(),
            processes: self.processes,
            warned: HashSet::new(),
        };
        for index in 0..count {
            source.refresh_identity(index);
            source.xid[index as usize] = watch_xid(nvml, index);
        }
        log::info!(
            "nvml source opened: lib={} devices={} driver={} xid_watched={}",
            source.lib_path.display(),
            count,
            source.driver_version.as_deref().unwrap_or("unknown"),
            source.xid.iter().filter(|x| x.is_some()).count()
        );
        Ok(source)
    }
}

fn classify_init_error(path: &Path, e: NvmlError) -> SourceError {
    match e {
        NvmlError::LibloadingError(inner) => SourceError::NvmlNotLoaded {
            path: path.to_path_buf(),
            reason: inner.to_string(),
        },
        NvmlError::FailedToLoadSymbol(sym) => SourceError::NvmlNotLoaded {
            path: path.to_path_buf(),
            reason: format!("it lacks the symbol {sym}"),
        },
        other => SourceError::NvmlInit {
            reason: other.to_string(),
        },
    }
}

/// An event set registered for one device's XID errors, and what it saw.
struct XidWatch {
    set: EventSet<'static>,
    seen: XidReading,
}

/// Registers for the XID events of device `index`; `None` (XID absent) when
/// the device or the library cannot report them.
fn watch_xid(nvml: &'static Nvml, index: u32) -> Option<XidWatch> {
    let device = nvml.device_by_index(index).ok()?;
    let supported = device.supported_event_types().ok()?;
    if !supported.contains(EventTypes::CRITICAL_XID_ERROR) {
        return None;
    }
    let set = nvml.create_event_set().ok()?;
    match device.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
        Ok(set) => Some(XidWatch {
            set,
            seen: XidReading::default(),
        }),
        Err(e) => {
            log::warn!("nvml xid events unavailable: gpu={index} error={e}");
            None
        }
    }
}

impl XidWatch {
    /// Takes the events that arrived since the last tick, without waiting.
    fn drain(&mut self, index: u32) -> XidReading {
        for _ in 0..MAX_EVENTS_PER_TICK {
            match self.set.wait(0) {
                Ok(event) if event.event_type.contains(EventTypes::CRITICAL_XID_ERROR) => {
                    self.seen.count += 1;
                    if let Some(XidError::Value(code)) = event.event_data {
                        self.seen.last = code;
                    }
                    log::error!(
                        "gpu xid error: gpu={index} xid={} (events seen {})",
                        self.seen.last,
                        self.seen.count
                    );
                }
                Ok(_) => {}
                Err(NvmlError::Timeout) => break,
                Err(e) => {
                    log::debug!("nvml xid wait: gpu={index} error={e}");
                    break;
                }
            }
        }
        self.seen
    }
}

#[derive(Debug, Clone)]
struct Identity {
    uuid: String,
    model: String,
    pci_bus_id: Option<String>,
    minor_number: Option<u32>,
}

/// GPUs read through NVML.
pub struct NvmlSource {
    nvml: &'static Nvml,
    lib_path: PathBuf,
    driver_version: Option<String>,
    identities: Vec<Option<Identity>>,
    xid: Vec<Option<XidWatch>>,
    processes: bool,
    /// (device index, MIG index or u32::MAX, field) already logged as failing.
    warned: HashSet<(u32, u32, &'static str)>,
}

impl std::fmt::Debug for NvmlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlSource")
            .field("lib_path", &self.lib_path)
            .field("devices", &self.identities.len())
            .finish_non_exhaustive()
    }
}

impl NvmlSource {
    /// A builder with the default library path and no process collection.
    pub fn builder() -> NvmlSourceBuilder {
        NvmlSourceBuilder::default()
    }

    /// The driver version NVML reported at open, if any.
    pub fn driver_version(&self) -> Option<&str> {
        self.driver_version.as_deref()
    }

    fn refresh_identity(&mut self, index: u32) {
        let Ok(device) = self.nvml.device_by_index(index) else {
            return;
        };
        let Ok(uuid) = device.uuid() else {
            return;
        };
        let model = device.name().unwrap_or_default();
        let pci_bus_id = device.pci_info().ok().map(|p| p.bus_id);
        let minor_number = device.minor_number().ok();
        self.identities[index as usize] = Some(Identity {
            uuid,
            model,
            pci_bus_id,
            minor_number,
        });
    }

    /// A down reading that keeps everything known of the device's identity,
    /// so its series keep their labels.
    fn down(&self, index: u32, identity: Option<&Identity>) -> GpuReading {
        match identity {
            Some(id) => GpuReading {
                pci_bus_id: id.pci_bus_id.clone(),
                minor_number: id.minor_number,
                driver_version: self.driver_version.clone(),
                ..GpuReading::down(index, id.uuid.clone(), id.model.clone())
            },
            None => GpuReading::down(index, String::new(), String::new()),
        }
    }
}

/// What to do with a field's error.
enum FieldFailure {
    /// Absent field; the device still counts as up.
    Absent,
    /// The device is gone for this tick.
    DeviceDown,
}

fn classify_field_error(e: &NvmlError) -> FieldFailure {
    match e {
        NvmlError::GpuLost | NvmlError::Timeout | NvmlError::Unknown | NvmlError::Uninitialized => {
            FieldFailure::DeviceDown
        }
        _ => FieldFailure::Absent,
    }
}

/// Reads the fields of one device (or MIG device) into `reading`.
/// Returns false when the device must be reported down.
struct FieldReader<'a> {
    warned: &'a mut HashSet<(u32, u32, &'static str)>,
    index: u32,
    mig: u32,
    down: bool,
}

impl FieldReader<'_> {
    fn get<T>(&mut self, field: &'static str, r: Result<T, NvmlError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(NvmlError::NotSupported) => None,
            Err(e) => {
                if matches!(classify_field_error(&e), FieldFailure::DeviceDown) {
                    self.down = true;
                }
                self.warn(field, &e);
                None
            }
        }
    }

    /// Like [`FieldReader::get`] for one entry of a field-value answer: a
    /// failed entry never marks the device down (the call as a whole answered).
    fn value(&mut self, field: &'static str, sample: Option<&FieldValueSample>) -> Option<u64> {
        match &sample?.value {
            Ok(SampleValue::U32(v)) => Some(u64::from(*v)),
            Ok(SampleValue::U64(v)) => Some(*v),
            Ok(SampleValue::I64(v)) => u64::try_from(*v).ok(),
            Ok(SampleValue::F64(v)) if v.is_finite() && *v >= 0.0 => Some(*v as u64),
            Ok(SampleValue::F64(_)) => None,
            Err(NvmlError::NotSupported) => None,
            Err(e) => {
                self.warn(field, e);
                None
            }
        }
    }

    fn warn(&mut self, field: &'static str, e: &NvmlError) {
        if self.warned.insert((self.index, self.mig, field)) {
            log::warn!(
                "nvml field unavailable: gpu={} field={} error={} (reported once)",
                self.index,
                field,
                e
            );
        }
    }
}

/// `nvmlDeviceGetFieldValues` for [`FIELD_VALUES`], NVLink fields with scope
/// `UINT_MAX` (all links). nvml-wrapper's `field_values_for` cannot set a
/// scope (it would read link 0 only), hence the direct call.
fn field_values(nvml: &Nvml, device: &Device<'_>) -> Result<Vec<FieldValueSample>, NvmlError> {
    let sym = nvml_sym(nvml.lib().nvmlDeviceGetFieldValues.as_ref())?;
    let mut raw: Vec<nvml_wrapper_sys::bindings::nvmlFieldValue_t> = FIELD_VALUES
        .iter()
        .map(|id| {
            // SAFETY: nvmlFieldValue_t is a plain C struct (integers and a
            // union of numbers); all-zero is a valid value of it.
            let mut v: nvml_wrapper_sys::bindings::nvmlFieldValue_t = unsafe { std::mem::zeroed() };
            v.fieldId = id.0;
            if matches!(
                id.0,
                NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX | NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX
            ) {
                v.scopeId = u32::MAX;
            }
            v
        })
        .collect();
    // SAFETY: `device.handle()` is a live handle of `nvml` (the device borrows
    // it); `raw` holds exactly `raw.len()` initialised entries that NVML
    // fills in place; the symbol has the signature nvml.h declares.
    let ret = unsafe { sym(device.handle(), raw.len() as i32, raw.as_mut_ptr()) };
    nvml_try(ret)?;
    Ok(raw
        .into_iter()
        .filter_map(|v| FieldValueSample::try_from(v).ok())
        .collect())
}

/// The GPU instance id of a MIG device (`nvmlDeviceGetGpuInstanceId`, which
/// nvml-wrapper does not wrap); `None` when NVML cannot say.
fn gpu_instance_id(nvml: &Nvml, mig: &Device<'_>) -> Option<u32> {
    let sym = nvml.lib().nvmlDeviceGetGpuInstanceId.as_ref().ok()?;
    let mut id: u32 = 0;
    // SAFETY: a live MIG device handle and a valid out pointer, as nvml.h
    // declares the function.
    let ret = unsafe { sym(mig.handle(), &mut id) };
    (ret == 0).then_some(id)
}

/// The MIG profile from a MIG device's name (`NVIDIA A100-SXM4-40GB MIG 1g.5gb`
/// → `1g.5gb`).
fn mig_profile(name: &str) -> Option<String> {
    let (_, profile) = name.rsplit_once(" MIG ")?;
    let profile = profile.trim();
    (!profile.is_empty()).then(|| profile.to_string())
}

fn read_fields(
    nvml: &Nvml,
    device: &Device<'_>,
    reading: &mut GpuReading,
    reader: &mut FieldReader<'_>,
    processes: bool,
) {
    if let Some(u) = reader.get("utilization", device.utilization_rates()) {
        reading.utilization_gpu_percent = Some(u.gpu);
        reading.utilization_memory_percent = Some(u.memory);
    }
    if let Some(m) = reader.get("memory", device.memory_info()) {
        reading.memory_used_bytes = Some(m.used);
        reading.memory_free_bytes = Some(m.free);
        reading.memory_total_bytes = Some(m.total);
        reading.memory_reserved_bytes = Some(m.reserved);
    }
    reading.power_usage_mw = reader.get("power_usage", device.power_usage());
    reading.power_limit_mw = reader.get("power_limit", device.enforced_power_limit());
    reading.energy_mj = reader.get("energy", device.total_energy_consumption());
    reading.temperature_c = reader.get("temperature", device.temperature(TemperatureSensor::Gpu));
    reading.sm_clock_mhz = reader.get("sm_clock", device.clock_info(Clock::SM));
    reading.memory_clock_mhz = reader.get("memory_clock", device.clock_info(Clock::Memory));
    reading.pcie_tx_kbps = reader.get("pcie_tx", device.pcie_throughput(PcieUtilCounter::Send));
    reading.pcie_rx_kbps = reader.get("pcie_rx", device.pcie_throughput(PcieUtilCounter::Receive));
    reading.pcie_replays = reader
        .get("pcie_replays", device.pcie_replay_counter())
        .map(u64::from);
    reading.encoder_utilization_percent = reader
        .get("encoder_utilization", device.encoder_utilization())
        .map(|u| u.utilization);
    reading.decoder_utilization_percent = reader
        .get("decoder_utilization", device.decoder_utilization())
        .map(|u| u.utilization);
    if let Some(values) = reader.get("field_values", field_values(nvml, device)) {
        let find = |id: u32| values.iter().find(|v| v.field.0 == id);
        reading.memory_temperature_c = reader
            .value("memory_temperature", find(NVML_FI_DEV_MEMORY_TEMP))
            .and_then(|t| u32::try_from(t).ok());
        reading.nvlink_tx_kib =
            reader.value("nvlink_tx", find(NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX));
        reading.nvlink_rx_kib =
            reader.value("nvlink_rx", find(NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX));
        reading.remapped_rows_correctable =
            reader.value("remapped_rows_correctable", find(NVML_FI_DEV_REMAPPED_COR));
        reading.remapped_rows_uncorrectable = reader.value(
            "remapped_rows_uncorrectable",
            find(NVML_FI_DEV_REMAPPED_UNC),
        );
        reading.row_remap_failure = reader
            .value("row_remap_failure", find(NVML_FI_DEV_REMAPPED_FAILURE))
            .map(|v| v != 0);
    }
    reading.throttle = reader
        .get("throttle_reasons", device.current_throttle_reasons())
        .map(|bits| {
            THROTTLE_REASONS
                .iter()
                .map(|(flag, reason)| ThrottleReason {
                    reason,
                    active: bits.contains(*flag),
                })
                .collect()
        });
    if processes {
        reading.processes = reader
            .get("processes", device.running_compute_processes())
            .map(|procs| {
                procs
                    .into_iter()
                    .map(|p| ProcessReading {
                        pid: p.pid,
                        name: process_name(p.pid),
                        used_memory_bytes: match p.used_gpu_memory {
                            UsedGpuMemory::Used(b) => Some(b),
                            UsedGpuMemory::Unavailable => None,
                        },
                    })
                    .collect()
            });
    }
}

/// The short name of a process from `/proc/PID/comm`, empty when unreadable.
fn process_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

impl GpuSource for NvmlSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Nvml
    }

    fn device_count(&self) -> usize {
        self.identities.len()
    }

    fn sample(&mut self, _now_ms: i64) -> Result<Vec<GpuReading>, SourceError> {
        let nvml = self.nvml;
        let count = self.identities.len() as u32;
        let mut out = Vec::with_capacity(count as usize);
        for index in 0..count {
            if self.identities[index as usize].is_none() {
                self.refresh_identity(index);
                // A device that did not answer at open gets its XID watch
                // once it does.
                if self.identities[index as usize].is_some() && self.xid[index as usize].is_none() {
                    self.xid[index as usize] = watch_xid(nvml, index);
                }
            }
            let identity = self.identities[index as usize].clone();
            let device = match (nvml.device_by_index(index), &identity) {
                (Ok(d), Some(id)) => (d, id.clone()),
                _ => {
                    out.push(self.down(index, identity.as_ref()));
                    continue;
                }
            };
            let (device, id) = device;
            let mut reading = GpuReading {
                index,
                uuid: id.uuid.clone(),
                model: id.model.clone(),
                pci_bus_id: id.pci_bus_id.clone(),
                minor_number: id.minor_number,
                driver_version: self.driver_version.clone(),
                up: true,
                ..GpuReading::default()
            };
            let mut reader = FieldReader {
                warned: &mut self.warned,
                index,
                mig: u32::MAX,
                down: false,
            };
            read_fields(nvml, &device, &mut reading, &mut reader, self.processes);
            if reader.down {
                out.push(self.down(index, Some(&id)));
                continue;
            }
            reading.xid = self.xid[index as usize]
                .as_mut()
                .map(|watch| watch.drain(index));
            let mig_enabled = matches!(device.mig_mode(), Ok(m) if m.current == 1);
            out.push(reading);
            if mig_enabled {
                let max = device.mig_device_count().unwrap_or(0);
                for mig in 0..max {
                    let Ok(mdev) = device.mig_device_by_index(mig) else {
                        continue;
                    };
                    let name = mdev.name().ok();
                    let mut mreading = GpuReading {
                        index,
                        gpu_instance: gpu_instance_id(nvml, &mdev),
                        gpu_instance_profile: name.as_deref().and_then(mig_profile),
                        parent_uuid: Some(id.uuid.clone()),
                        parent_model: Some(id.model.clone()),
                        uuid: mdev.uuid().unwrap_or_default(),
                        model: name.unwrap_or_else(|| id.model.clone()),
                        pci_bus_id: id.pci_bus_id.clone(),
                        minor_number: id.minor_number,
                        driver_version: self.driver_version.clone(),
                        up: true,
                        ..GpuReading::default()
                    };
                    if mreading.gpu_instance.is_none() {
                        // Without its instance id a MIG device cannot be told
                        // apart from its siblings in dcgm's labels.
                        if self.warned.insert((index, mig, "gpu_instance_id")) {
                            log::warn!(
                                "nvml: no GPU instance id for MIG device {mig} of gpu {index}; skipped (reported once)"
                            );
                        }
                        continue;
                    }
                    let mut reader = FieldReader {
                        warned: &mut self.warned,
                        index,
                        mig,
                        down: false,
                    };
                    read_fields(nvml, &mdev, &mut mreading, &mut reader, self.processes);
                    if reader.down {
                        mreading = GpuReading {
                            gpu_instance: mreading.gpu_instance,
                            gpu_instance_profile: mreading.gpu_instance_profile.clone(),
                            parent_uuid: mreading.parent_uuid.clone(),
                            parent_model: mreading.parent_model.clone(),
                            pci_bus_id: mreading.pci_bus_id.clone(),
                            minor_number: mreading.minor_number,
                            driver_version: mreading.driver_version.clone(),
                            ..GpuReading::down(index, mreading.uuid, mreading.model)
                        };
                    }
                    out.push(mreading);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::mig_profile;

    #[test]
    fn mig_profile_comes_from_the_mig_device_name() {
        assert_eq!(
            mig_profile("NVIDIA A100-SXM4-40GB MIG 1g.5gb").as_deref(),
            Some("1g.5gb")
        );
        assert_eq!(
            mig_profile("NVIDIA H100 80GB HBM3 MIG 3g.40gb").as_deref(),
            Some("3g.40gb")
        );
        assert_eq!(mig_profile("NVIDIA H100 80GB HBM3"), None);
        assert_eq!(mig_profile("X MIG "), None);
    }
}
