//! The metric catalogue: every name this crate emits, with its type and help
//! text (DESIGN.md §4). Exposition looks help text up here, so a series read back
//! from the buffer after a restart renders with the same `# HELP` and `# TYPE`.

use crate::sample::MetricKind;

/// One metric's name, type and help text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    /// The metric name.
    pub name: &'static str,
    /// Gauge or counter.
    pub kind: MetricKind,
    /// The `# HELP` text.
    pub help: &'static str,
}

const fn gauge(name: &'static str, help: &'static str) -> MetricDef {
    MetricDef {
        name,
        kind: MetricKind::Gauge,
        help,
    }
}

const fn counter(name: &'static str, help: &'static str) -> MetricDef {
    MetricDef {
        name,
        kind: MetricKind::Counter,
        help,
    }
}

/// What a GPU reading field is, independent of the naming scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// Identity info gauge.
    Info,
    /// Device answered this tick.
    Up,
    /// GPU utilisation.
    Utilization,
    /// Memory-controller utilisation.
    MemoryUtilization,
    /// Used memory.
    MemoryUsed,
    /// Free memory.
    MemoryFree,
    /// Total memory.
    MemoryTotal,
    /// Power draw.
    Power,
    /// Enforced power limit.
    PowerLimit,
    /// Energy counter.
    Energy,
    /// Temperature.
    Temperature,
    /// SM clock.
    SmClock,
    /// Memory clock.
    MemoryClock,
    /// PCIe transmit throughput.
    PcieTx,
    /// PCIe receive throughput.
    PcieRx,
    /// One throttle reason.
    ThrottleActive,
    /// Number of compute processes.
    Processes,
    /// Memory of one compute process.
    ProcessMemory,
}

/// Native names (Prometheus conventions, base units).
pub const NATIVE: &[(Field, MetricDef)] = &[
    (
        Field::Info,
        gauge(
            "aif_gpu_info",
            "GPU identity: always 1, with driver_version and pci_bus_id labels.",
        ),
    ),
    (
        Field::Up,
        gauge(
            "aif_gpu_up",
            "1 if the GPU answered this sampling tick, 0 if not.",
        ),
    ),
    (
        Field::Utilization,
        gauge(
            "aif_gpu_utilization_ratio",
            "Fraction of the last sample period during which a kernel ran on the GPU (0-1).",
        ),
    ),
    (
        Field::MemoryUtilization,
        gauge(
            "aif_gpu_memory_utilization_ratio",
            "Fraction of the last sample period during which device memory was read or written (0-1).",
        ),
    ),
    (
        Field::MemoryUsed,
        gauge(
            "aif_gpu_memory_used_bytes",
            "Framebuffer memory allocated, in bytes.",
        ),
    ),
    (
        Field::MemoryFree,
        gauge(
            "aif_gpu_memory_free_bytes",
            "Framebuffer memory free, in bytes.",
        ),
    ),
    (
        Field::MemoryTotal,
        gauge(
            "aif_gpu_memory_total_bytes",
            "Framebuffer memory installed, in bytes.",
        ),
    ),
    (
        Field::Power,
        gauge(
            "aif_gpu_power_watts",
            "Power drawn by the GPU board, in watts.",
        ),
    ),
    (
        Field::PowerLimit,
        gauge(
            "aif_gpu_power_limit_watts",
            "Enforced power limit, in watts.",
        ),
    ),
    (
        Field::Energy,
        counter(
            "aif_gpu_energy_joules_total",
            "Energy consumed since the driver was loaded, in joules.",
        ),
    ),
    (
        Field::Temperature,
        gauge(
            "aif_gpu_temperature_celsius",
            "GPU core temperature, in degrees Celsius.",
        ),
    ),
    (
        Field::SmClock,
        gauge(
            "aif_gpu_sm_clock_hertz",
            "Streaming-multiprocessor clock, in hertz.",
        ),
    ),
    (
        Field::MemoryClock,
        gauge("aif_gpu_memory_clock_hertz", "Memory clock, in hertz."),
    ),
    (
        Field::PcieTx,
        gauge(
            "aif_gpu_pcie_tx_bytes_per_second",
            "PCIe transmit throughput, in bytes per second.",
        ),
    ),
    (
        Field::PcieRx,
        gauge(
            "aif_gpu_pcie_rx_bytes_per_second",
            "PCIe receive throughput, in bytes per second.",
        ),
    ),
    (
        Field::ThrottleActive,
        gauge(
            "aif_gpu_throttle_active",
            "1 if the clock throttle reason in the reason label is active.",
        ),
    ),
    (
        Field::Processes,
        gauge(
            "aif_gpu_processes",
            "Number of compute processes running on the GPU.",
        ),
    ),
    (
        Field::ProcessMemory,
        gauge(
            "aif_gpu_process_memory_used_bytes",
            "GPU memory used by one compute process, in bytes.",
        ),
    ),
];

/// dcgm-exporter-compatible names (DCGM's units: %, MiB, W, mJ, MHz, KB/s).
pub const DCGM: &[(Field, MetricDef)] = &[
    (
        Field::Utilization,
        gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %)."),
    ),
    (
        Field::MemoryUtilization,
        gauge("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %)."),
    ),
    (
        Field::MemoryUsed,
        gauge("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB)."),
    ),
    (
        Field::MemoryFree,
        gauge("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB)."),
    ),
    (
        Field::Power,
        gauge("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W)."),
    ),
    (
        Field::Energy,
        counter(
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
            "Total energy consumption since boot (in mJ).",
        ),
    ),
    (
        Field::Temperature,
        gauge("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C)."),
    ),
    (
        Field::SmClock,
        gauge("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz)."),
    ),
    (
        Field::MemoryClock,
        gauge("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz)."),
    ),
    (
        Field::PcieTx,
        gauge(
            "DCGM_FI_DEV_PCIE_TX_THROUGHPUT",
            "PCIe TX throughput (in KB/s).",
        ),
    ),
    (
        Field::PcieRx,
        gauge(
            "DCGM_FI_DEV_PCIE_RX_THROUGHPUT",
            "PCIe RX throughput (in KB/s).",
        ),
    ),
];

/// The definition for a metric name, from any table.
pub fn lookup(name: &str) -> Option<&'static MetricDef> {
    NATIVE
        .iter()
        .chain(DCGM.iter())
        .map(|(_, d)| d)
        .find(|d| d.name == name)
}

/// Help text for a metric name; a neutral text for a name not in the catalogue.
pub fn help(name: &str) -> &'static str {
    lookup(name).map_or("Metric recorded by gpu_metrics.", |d| d.help)
}
