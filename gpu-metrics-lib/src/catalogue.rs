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
    /// Reserved memory.
    MemoryReserved,
    /// Memory temperature.
    MemoryTemperature,
    /// Video encoder utilisation.
    EncoderUtilization,
    /// Video decoder utilisation.
    DecoderUtilization,
    /// PCIe replay counter.
    PcieReplays,
    /// NVLink bytes transmitted (native only).
    NvlinkTx,
    /// NVLink bytes received (native only).
    NvlinkRx,
    /// NVLink throughput, TX + RX (dcgm only: DCGM publishes a rate).
    NvlinkBandwidth,
    /// Rows remapped for correctable errors.
    RemappedRowsCorrectable,
    /// Rows remapped for uncorrectable errors.
    RemappedRowsUncorrectable,
    /// Row remapping failed.
    RowRemapFailure,
    /// Code of the last XID error.
    XidLast,
    /// XID error events (native only).
    XidErrors,
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
        Field::MemoryReserved,
        gauge(
            "aif_gpu_memory_reserved_bytes",
            "Framebuffer memory reserved by the driver and firmware, in bytes.",
        ),
    ),
    (
        Field::MemoryTemperature,
        gauge(
            "aif_gpu_memory_temperature_celsius",
            "GPU memory (HBM) temperature, in degrees Celsius.",
        ),
    ),
    (
        Field::EncoderUtilization,
        gauge(
            "aif_gpu_encoder_utilization_ratio",
            "Fraction of the last sample period during which the video encoder was busy (0-1).",
        ),
    ),
    (
        Field::DecoderUtilization,
        gauge(
            "aif_gpu_decoder_utilization_ratio",
            "Fraction of the last sample period during which the video decoder was busy (0-1).",
        ),
    ),
    (
        Field::PcieReplays,
        counter(
            "aif_gpu_pcie_replays_total",
            "PCIe replays (link-level retries) since the driver was loaded.",
        ),
    ),
    (
        Field::NvlinkTx,
        counter(
            "aif_gpu_nvlink_transmitted_bytes_total",
            "NVLink data transmitted over all links since the driver was loaded, in bytes.",
        ),
    ),
    (
        Field::NvlinkRx,
        counter(
            "aif_gpu_nvlink_received_bytes_total",
            "NVLink data received over all links since the driver was loaded, in bytes.",
        ),
    ),
    (
        Field::RemappedRowsCorrectable,
        counter(
            "aif_gpu_correctable_remapped_rows_total",
            "Memory rows remapped because of correctable errors.",
        ),
    ),
    (
        Field::RemappedRowsUncorrectable,
        counter(
            "aif_gpu_uncorrectable_remapped_rows_total",
            "Memory rows remapped because of uncorrectable errors.",
        ),
    ),
    (
        Field::RowRemapFailure,
        gauge(
            "aif_gpu_row_remap_failure",
            "1 if remapping a memory row has failed (the GPU needs service), 0 if not.",
        ),
    ),
    (
        Field::XidLast,
        gauge(
            "aif_gpu_last_xid",
            "Code of the last XID error seen since the exporter started (0: none).",
        ),
    ),
    (
        Field::XidErrors,
        counter(
            "aif_gpu_xid_errors_total",
            "XID error events seen since the exporter started.",
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

/// The series that shows, in dcgm mode too, whether a GPU answered: DCGM has
/// no such field, and without it a lost GPU would only be a gap.
const UP: MetricDef = gauge(
    "aif_gpu_up",
    "1 if the GPU answered this sampling tick, 0 if not.",
);

/// dcgm-exporter-compatible names (DCGM's units: %, MiB, W, mJ, MHz, KB/s),
/// the non-profiling fields of its `etc/default-counters.csv` that NVML can
/// read, plus [`Field::Up`] under its native name.
pub const DCGM: &[(Field, MetricDef)] = &[
    (Field::Up, UP),
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
    (
        Field::MemoryReserved,
        gauge(
            "DCGM_FI_DEV_FB_RESERVED",
            "Framebuffer memory reserved (in MiB).",
        ),
    ),
    (
        Field::MemoryTemperature,
        gauge("DCGM_FI_DEV_MEMORY_TEMP", "Memory temperature (in C)."),
    ),
    (
        Field::EncoderUtilization,
        gauge("DCGM_FI_DEV_ENC_UTIL", "Encoder utilization (in %)."),
    ),
    (
        Field::DecoderUtilization,
        gauge("DCGM_FI_DEV_DEC_UTIL", "Decoder utilization (in %)."),
    ),
    (
        Field::PcieReplays,
        counter(
            "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
            "Total number of PCIe retries.",
        ),
    ),
    (
        Field::NvlinkBandwidth,
        gauge(
            "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
            "NVLink throughput over all links, TX + RX (in MB/s, as DCGM computes it: KiB/s / 1000).",
        ),
    ),
    (
        Field::XidLast,
        gauge(
            "DCGM_FI_DEV_XID_ERRORS",
            "Value of the last XID error encountered.",
        ),
    ),
    (
        Field::RemappedRowsUncorrectable,
        counter(
            "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
            "Number of remapped rows for uncorrectable errors",
        ),
    ),
    (
        Field::RemappedRowsCorrectable,
        counter(
            "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
            "Number of remapped rows for correctable errors",
        ),
    ),
    (
        Field::RowRemapFailure,
        gauge(
            "DCGM_FI_DEV_ROW_REMAP_FAILURE",
            "Whether remapping of rows has failed",
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The enabled, non-profiling counters of dcgm-exporter's
    /// `etc/default-counters.csv` (NVIDIA/dcgm-exporter@d5e5f51) with their
    /// declared types, except `DCGM_FI_DEV_VGPU_LICENSE_STATUS` (vGPU guests
    /// only) and the label `DCGM_FI_DRIVER_VERSION` (a label on every series).
    const DEFAULT_COUNTERS: &[(&str, MetricKind)] = &[
        ("DCGM_FI_DEV_SM_CLOCK", MetricKind::Gauge),
        ("DCGM_FI_DEV_MEM_CLOCK", MetricKind::Gauge),
        ("DCGM_FI_DEV_MEMORY_TEMP", MetricKind::Gauge),
        ("DCGM_FI_DEV_GPU_TEMP", MetricKind::Gauge),
        ("DCGM_FI_DEV_POWER_USAGE", MetricKind::Gauge),
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", MetricKind::Counter),
        ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", MetricKind::Counter),
        ("DCGM_FI_DEV_GPU_UTIL", MetricKind::Gauge),
        ("DCGM_FI_DEV_MEM_COPY_UTIL", MetricKind::Gauge),
        ("DCGM_FI_DEV_ENC_UTIL", MetricKind::Gauge),
        ("DCGM_FI_DEV_DEC_UTIL", MetricKind::Gauge),
        ("DCGM_FI_DEV_XID_ERRORS", MetricKind::Gauge),
        ("DCGM_FI_DEV_FB_FREE", MetricKind::Gauge),
        ("DCGM_FI_DEV_FB_USED", MetricKind::Gauge),
        ("DCGM_FI_DEV_FB_RESERVED", MetricKind::Gauge),
        // Declared counter there, but DCGM publishes a rate (ARCHITECTURE.md
        // decision 11): a gauge here.
        ("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", MetricKind::Gauge),
        (
            "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
            MetricKind::Counter,
        ),
        ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", MetricKind::Counter),
        ("DCGM_FI_DEV_ROW_REMAP_FAILURE", MetricKind::Gauge),
    ];

    #[test]
    fn every_default_counter_of_dcgm_exporter_is_in_the_dcgm_table_with_its_type() {
        for (name, kind) in DEFAULT_COUNTERS {
            let def = DCGM
                .iter()
                .map(|(_, d)| d)
                .find(|d| d.name == *name)
                .unwrap_or_else(|| panic!("{name} missing from DCGM"));
            assert_eq!(def.kind, *kind, "{name}");
        }
    }

    #[test]
    fn names_are_unique_and_native_names_follow_prometheus_conventions() {
        for table in [NATIVE, DCGM] {
            let mut names: Vec<_> = table.iter().map(|(_, d)| d.name).collect();
            names.sort_unstable();
            let before = names.len();
            names.dedup();
            assert_eq!(names.len(), before, "duplicate names");
            let mut fields: Vec<_> = table.iter().map(|(f, _)| format!("{f:?}")).collect();
            fields.sort_unstable();
            fields.dedup();
            assert_eq!(fields.len(), before, "a field named twice");
        }
        for (_, d) in NATIVE {
            assert!(d.name.starts_with("aif_gpu_"), "{}", d.name);
            assert_eq!(
                d.kind == MetricKind::Counter,
                d.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                d.name
            );
        }
        // Every dcgm field other than the NVLink rate has a native twin.
        for (f, d) in DCGM {
            if *f != Field::NvlinkBandwidth {
                assert!(
                    NATIVE.iter().any(|(g, _)| g == f),
                    "{} has no native name",
                    d.name
                );
            }
        }
    }
}
