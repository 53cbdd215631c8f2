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

use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use nvml_wrapper::Device;
use nvml_wrapper::Nvml;
use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::enum_wrappers::device::{Clock, PcieUtilCounter, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;

use super::{GpuReading, GpuSource, ProcessReading, SourceError, SourceKind, ThrottleReason};

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

    /// Loads and initialises NVML and reads each device's identity.
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
        let driver_version = nvml.sys_driver_version().ok();
        let mut source = NvmlSource {
            nvml,
            lib_path: path,
            driver_version,
            identities: vec![None; count as usize],
            processes: self.processes,
            warned: HashSet::new(),
        };
        for index in 0..count {
            source.refresh_identity(index);
        }
        log::info!(
            "nvml source opened: lib={} devices={} driver={}",
            source.lib_path.display(),
            count,
            source.driver_version.as_deref().unwrap_or("unknown")
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

#[derive(Debug, Clone)]
struct Identity {
    uuid: String,
    model: String,
    pci_bus_id: Option<String>,
}

/// GPUs read through NVML.
pub struct NvmlSource {
    nvml: Nvml,
    lib_path: PathBuf,
    driver_version: Option<String>,
    identities: Vec<Option<Identity>>,
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
        self.identities[index as usize] = Some(Identity {
            uuid,
            model,
            pci_bus_id,
        });
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
                if self.warned.insert((self.index, self.mig, field)) {
                    log::warn!(
                        "nvml field unavailable: gpu={} field={} error={} (reported once)",
                        self.index,
                        field,
                        e
                    );
                }
                None
            }
        }
    }
}

fn read_fields(
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
    }
    reading.power_usage_mw = reader.get("power_usage", device.power_usage());
    reading.power_limit_mw = reader.get("power_limit", device.enforced_power_limit());
    reading.energy_mj = reader.get("energy", device.total_energy_consumption());
    reading.temperature_c = reader.get("temperature", device.temperature(TemperatureSensor::Gpu));
    reading.sm_clock_mhz = reader.get("sm_clock", device.clock_info(Clock::SM));
    reading.memory_clock_mhz = reader.get("memory_clock", device.clock_info(Clock::Memory));
    reading.pcie_tx_kbps = reader.get("pcie_tx", device.pcie_throughput(PcieUtilCounter::Send));
    reading.pcie_rx_kbps = reader.get("pcie_rx", device.pcie_throughput(PcieUtilCounter::Receive));
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
        let count = self.identities.len() as u32;
        let mut out = Vec::with_capacity(count as usize);
        for index in 0..count {
            if self.identities[index as usize].is_none() {
                self.refresh_identity(index);
            }
            let identity = self.identities[index as usize].clone();
            let (uuid, model, pci) = match &identity {
                Some(id) => (id.uuid.clone(), id.model.clone(), id.pci_bus_id.clone()),
                None => (String::new(), String::new(), None),
            };
            let device = match self.nvml.device_by_index(index) {
                Ok(d) if identity.is_some() => d,
                Ok(_) | Err(_) => {
                    out.push(GpuReading::down(index, uuid, model));
                    continue;
                }
            };
            let mut reading = GpuReading {
                index,
                uuid: uuid.clone(),
                model: model.clone(),
                pci_bus_id: pci,
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
            read_fields(&device, &mut reading, &mut reader, self.processes);
            if reader.down {
                out.push(GpuReading::down(index, uuid, model));
                continue;
            }
            let mig_enabled = matches!(device.mig_mode(), Ok(m) if m.current == 1);
            out.push(reading);
            if mig_enabled {
                let max = device.mig_device_count().unwrap_or(0);
                for mig in 0..max {
                    let Ok(mdev) = device.mig_device_by_index(mig) else {
                        continue;
                    };
                    let mut mreading = GpuReading {
                        index,
                        gpu_instance: Some(mig),
                        uuid: mdev.uuid().unwrap_or_default(),
                        model: mdev.name().unwrap_or_else(|_| model.clone()),
                        driver_version: self.driver_version.clone(),
                        up: true,
                        ..GpuReading::default()
                    };
                    let mut reader = FieldReader {
                        warned: &mut self.warned,
                        index,
                        mig,
                        down: false,
                    };
                    read_fields(&mdev, &mut mreading, &mut reader, self.processes);
                    if reader.down {
                        mreading = GpuReading {
                            gpu_instance: Some(mig),
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
