//! GPU sources: where readings come from.
//!
//! A source answers one question per tick: what does each GPU read now? It
//! returns [`GpuReading`]s in NVML's own units (percent, bytes, milliwatts,
//! millijoules, °C, MHz, KB/s) and knows nothing of metric names, labels,
//! buffers or HTTP. [`crate::naming`] turns readings into series.
//!
//! Invariants:
//! - a field the device does not support is `None`, never 0, and never fails the
//!   whole tick;
//! - a device that stops answering gives a reading with `up == false` and every
//!   field `None`, while the other devices go on;
//! - a source that could not be opened at all is a typed [`SourceError`].

mod nvml;
mod simulated;

pub use nvml::{NvmlSource, NvmlSourceBuilder};
pub use simulated::{MAX_SIMULATED_GPUS, SIMULATED_MODEL, SimulatedSource};

use std::fmt;
use std::path::PathBuf;

/// Which kind of source produced a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// Real hardware through NVML.
    Nvml,
    /// The deterministic simulation (never hardware).
    Simulated,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::Nvml => "nvml",
            SourceKind::Simulated => "simulated",
        })
    }
}

/// One throttle reason and whether it is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleReason {
    /// Reason label value, snake_case (e.g. `sw_power_cap`).
    pub reason: &'static str,
    /// Whether it is active now.
    pub active: bool,
}

/// One compute process on a GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessReading {
    /// Operating-system process id.
    pub pid: u32,
    /// Process name (from `/proc/PID/comm`), empty when unknown.
    pub name: String,
    /// GPU memory it uses, bytes; `None` when the driver does not say.
    pub used_memory_bytes: Option<u64>,
}

/// XID errors seen on a device since the source started watching it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XidReading {
    /// The code of the last XID error (0: none seen yet).
    pub last: u64,
    /// How many XID error events were seen.
    pub count: u64,
}

/// Everything one GPU (or MIG instance) read in one tick, in NVML units.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GpuReading {
    /// Device index as NVML counts it.
    pub index: u32,
    /// MIG GPU instance id (`nvmlDeviceGetGpuInstanceId`, not the MIG device
    /// index) when this reading is a MIG device.
    pub gpu_instance: Option<u32>,
    /// MIG profile name (e.g. `1g.10gb`) when this reading is a MIG device.
    pub gpu_instance_profile: Option<String>,
    /// For a MIG device: its parent GPU's UUID (dcgm-exporter's `UUID` label
    /// of a MIG series).
    pub parent_uuid: Option<String>,
    /// For a MIG device: its parent GPU's product name (dcgm's `modelName`).
    pub parent_model: Option<String>,
    /// Device minor number (`/dev/nvidia<minor>`); a MIG device has its parent's.
    pub minor_number: Option<u32>,
    /// Device UUID (`GPU-…`), empty if the device never answered.
    pub uuid: String,
    /// Product name, e.g. `NVIDIA H100 80GB HBM3`.
    pub model: String,
    /// PCI bus id, e.g. `00000000:17:00.0`.
    pub pci_bus_id: Option<String>,
    /// Driver version, e.g. `550.54.15`.
    pub driver_version: Option<String>,
    /// The device answered this tick.
    pub up: bool,
    /// GPU utilisation, percent 0–100.
    pub utilization_gpu_percent: Option<u32>,
    /// Memory-controller utilisation, percent 0–100.
    pub utilization_memory_percent: Option<u32>,
    /// Used framebuffer memory, bytes.
    pub memory_used_bytes: Option<u64>,
    /// Free framebuffer memory, bytes.
    pub memory_free_bytes: Option<u64>,
    /// Total framebuffer memory, bytes.
    pub memory_total_bytes: Option<u64>,
    /// Power draw, milliwatts.
    pub power_usage_mw: Option<u32>,
    /// Enforced power limit, milliwatts.
    pub power_limit_mw: Option<u32>,
    /// Energy since driver load, millijoules (Volta and later).
    pub energy_mj: Option<u64>,
    /// Reserved framebuffer memory (driver and firmware), bytes.
    pub memory_reserved_bytes: Option<u64>,
    /// GPU core temperature, °C.
    pub temperature_c: Option<u32>,
    /// Memory (HBM) temperature, °C.
    pub memory_temperature_c: Option<u32>,
    /// Video encoder utilisation, percent 0–100.
    pub encoder_utilization_percent: Option<u32>,
    /// Video decoder utilisation, percent 0–100.
    pub decoder_utilization_percent: Option<u32>,
    /// SM clock, MHz.
    pub sm_clock_mhz: Option<u32>,
    /// Memory clock, MHz.
    pub memory_clock_mhz: Option<u32>,
    /// PCIe transmit throughput, KB/s.
    pub pcie_tx_kbps: Option<u32>,
    /// PCIe receive throughput, KB/s.
    pub pcie_rx_kbps: Option<u32>,
    /// PCIe replays (retries) since the driver loaded.
    pub pcie_replays: Option<u64>,
    /// NVLink data transmitted over all links since the driver loaded, KiB.
    pub nvlink_tx_kib: Option<u64>,
    /// NVLink data received over all links since the driver loaded, KiB.
    pub nvlink_rx_kib: Option<u64>,
    /// Rows remapped for correctable memory errors.
    pub remapped_rows_correctable: Option<u64>,
    /// Rows remapped for uncorrectable memory errors.
    pub remapped_rows_uncorrectable: Option<u64>,
    /// A row remapping has failed (the GPU needs service).
    pub row_remap_failure: Option<bool>,
    /// XID errors, when the device can report them (event sets).
    pub xid: Option<XidReading>,
    /// Throttle reasons, when the device reports them.
    pub throttle: Option<Vec<ThrottleReason>>,
    /// Compute processes, when process collection is enabled and supported.
    pub processes: Option<Vec<ProcessReading>>,
}

impl GpuReading {
    /// A reading for a device that did not answer: only identity, `up == false`.
    /// Set the other identity fields (`pci_bus_id`, `minor_number`, …) with
    /// struct update syntax where they are known, so the device keeps its
    /// series.
    pub fn down(index: u32, uuid: String, model: String) -> Self {
        GpuReading {
            index,
            uuid,
            model,
            up: false,
            ..GpuReading::default()
        }
    }
}

/// A source of GPU readings.
pub trait GpuSource: Send {
    /// What kind of source this is.
    fn kind(&self) -> SourceKind;

    /// Number of devices this source reports.
    fn device_count(&self) -> usize;

    /// Reads every device once. `now_ms` is the tick's timestamp (milliseconds
    /// since the Unix epoch); the simulated source derives its curves from it.
    ///
    /// # Errors
    /// Only when the source as a whole cannot answer (e.g. NVML was unloaded);
    /// a single device that fails is reported as `up == false`, not as an error.
    fn sample(&mut self, now_ms: i64) -> Result<Vec<GpuReading>, SourceError>;
}

/// Why a source could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The NVML library could not be loaded (no driver installed, or wrong path).
    #[error(
        "cannot load the NVML library {path}: {reason}. Install the NVIDIA driver \
         (it ships libnvidia-ml.so.1), point --nvml-lib at the library, or run with \
         --source simulated to use simulated GPUs"
    )]
    NvmlNotLoaded {
        /// The library path that was tried.
        path: PathBuf,
        /// What the loader said.
        reason: String,
    },
    /// NVML loaded but refused to initialise (driver not running, no permission).
    #[error("NVML failed to initialise: {reason}. Is the NVIDIA driver loaded (nvidia-smi)?")]
    NvmlInit {
        /// What NVML said.
        reason: String,
    },
    /// NVML could not count the devices.
    #[error("NVML could not list the GPUs: {reason}")]
    DeviceCount {
        /// What NVML said.
        reason: String,
    },
    /// A simulated source was asked for zero or too many GPUs.
    #[error("simulated GPU count {count} is out of range 1..={max}")]
    SimulatedCount {
        /// The requested count.
        count: usize,
        /// The largest count accepted.
        max: usize,
    },
}
