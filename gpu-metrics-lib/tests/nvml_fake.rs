//! The real NVML code path against the fake `libnvidia-ml.so.1` (DESIGN.md §9).

use gpu_metrics::source::{GpuSource, NvmlSource, SourceError, SourceKind};
use gpu_metrics::{Labels, NameScheme, Namer};

fn open(processes: bool) -> (tempfile::TempDir, NvmlSource) {
    let dir = tempfile::tempdir().expect("tempdir");
    let lib = aif_testbed::fake_nvml_in(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let src = NvmlSource::builder()
        .lib_path(&lib)
        .processes(processes)
        .build()
        .unwrap_or_else(|e| panic!("open fake NVML: {e}"));
    (dir, src)
}

#[test]
fn nvml_source_reads_every_field_the_fake_library_exports() {
    let (_dir, mut src) = open(false);
    assert_eq!(src.kind(), SourceKind::Nvml);
    assert_eq!(src.device_count(), 2);
    assert_eq!(src.driver_version(), Some("550.54.15"));
    let r = src.sample(0).expect("sample");
    assert_eq!(r.len(), 2);
    let g = &r[0];
    assert!(g.up);
    assert_eq!(g.index, 0);
    assert_eq!(g.uuid, "GPU-fake0000-0000-0000-0000-000000000000");
    assert_eq!(g.model, "NVIDIA H100 80GB HBM3");
    assert_eq!(g.pci_bus_id.as_deref(), Some("00000000:17:00.0"));
    assert_eq!(g.driver_version.as_deref(), Some("550.54.15"));
    assert_eq!(g.utilization_gpu_percent, Some(37));
    assert_eq!(g.utilization_memory_percent, Some(12));
    assert_eq!(g.memory_total_bytes, Some(85_899_345_920));
    assert_eq!(g.memory_used_bytes, Some(10_737_418_240));
    assert_eq!(
        g.memory_free_bytes,
        Some(85_899_345_920 - 536_870_912 - 10_737_418_240)
    );
    assert_eq!(g.power_usage_mw, Some(251_500));
    assert_eq!(g.power_limit_mw, Some(700_000));
    assert_eq!(g.temperature_c, Some(45));
    assert_eq!(g.sm_clock_mhz, Some(1755));
    assert_eq!(g.memory_clock_mhz, Some(2619));
    assert_eq!(g.pcie_tx_kbps, Some(1000));
    assert_eq!(g.pcie_rx_kbps, Some(2000));
    let throttle = g.throttle.as_ref().expect("throttle reasons");
    let active: Vec<_> = throttle
        .iter()
        .filter(|t| t.active)
        .map(|t| t.reason)
        .collect();
    assert_eq!(active, ["sw_power_cap"]);
    assert_eq!(throttle.len(), 9);
    // The symbol left out of the library: absent, not 0, and not a failed tick.
    assert_eq!(g.energy_mj, None);
    // Processes are opt-in.
    assert_eq!(g.processes, None);
    // GPU 1: PCIe counters not supported → absent.
    let g1 = &r[1];
    assert!(g1.up);
    assert_eq!(g1.utilization_gpu_percent, Some(81));
    assert_eq!(g1.power_usage_mw, Some(612_000));
    assert_eq!(g1.temperature_c, Some(71));
    assert_eq!(g1.pcie_tx_kbps, None);
    assert_eq!(g1.pcie_rx_kbps, None);
}

#[test]
fn lost_gpu_reads_down_while_the_other_goes_on() {
    let (_dir, mut src) = open(false);
    let first = src.sample(0).expect("tick 1");
    assert!(first[1].up);
    let second = src.sample(1000).expect("tick 2");
    assert!(second[0].up, "GPU 0 must go on");
    assert_eq!(second[0].power_usage_mw, Some(251_500));
    let lost = &second[1];
    assert!(!lost.up);
    assert_eq!(lost.uuid, "GPU-fake0000-0000-0000-0000-000000000001");
    assert_eq!(lost.utilization_gpu_percent, None);
    assert_eq!(lost.power_usage_mw, None);
    assert_eq!(lost.memory_used_bytes, None);

    let mut namer = Namer::new(NameScheme::Native, Labels::new(), "node");
    let b = namer.batch(1000, &second);
    assert_eq!(b.value_of("aif_gpu_up", &[("gpu", "1")]), Some(0.0));
    assert_eq!(b.value_of("aif_gpu_up", &[("gpu", "0")]), Some(1.0));
    assert_eq!(b.value_of("aif_gpu_power_watts", &[("gpu", "1")]), None);
    assert_eq!(
        b.value_of("aif_gpu_power_watts", &[("gpu", "0")]),
        Some(251.5)
    );
}

#[test]
fn native_names_convert_nvml_units_to_base_units() {
    let (_dir, mut src) = open(false);
    let r = src.sample(0).expect("sample");
    let mut namer = Namer::new(
        NameScheme::Native,
        Labels::from_pairs([("run_id", "x")]),
        "n",
    );
    let b = namer.batch(0, &r);
    let g0 = [("gpu", "0"), ("run_id", "x")];
    assert_eq!(b.value_of("aif_gpu_utilization_ratio", &g0), Some(0.37));
    assert_eq!(
        b.value_of("aif_gpu_memory_utilization_ratio", &g0),
        Some(0.12)
    );
    assert_eq!(b.value_of("aif_gpu_power_limit_watts", &g0), Some(700.0));
    assert_eq!(b.value_of("aif_gpu_sm_clock_hertz", &g0), Some(1.755e9));
    assert_eq!(
        b.value_of("aif_gpu_pcie_tx_bytes_per_second", &g0),
        Some(1_024_000.0)
    );
    assert_eq!(
        b.value_of(
            "aif_gpu_info",
            &[
                ("gpu", "0"),
                ("pci_bus_id", "00000000:17:00.0"),
                ("driver_version", "550.54.15")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        b.value_of("aif_gpu_energy_joules_total", &[]),
        None,
        "energy symbol is missing"
    );
    assert_eq!(
        b.value_of("aif_gpu_pcie_tx_bytes_per_second", &[("gpu", "1")]),
        None
    );
}

#[test]
fn processes_are_read_when_enabled() {
    let (_dir, mut src) = open(true);
    let r = src.sample(0).expect("sample");
    let procs = r[0].processes.as_ref().expect("processes");
    assert_eq!(procs.len(), 1);
    assert_eq!(procs[0].pid, 4242);
    assert_eq!(procs[0].used_memory_bytes, Some(1_073_741_824));
    assert_eq!(r[1].processes.as_deref(), Some(&[][..]));
    let b = Namer::new(NameScheme::Native, Labels::new(), "n").batch(0, &r);
    assert_eq!(b.value_of("aif_gpu_processes", &[("gpu", "0")]), Some(1.0));
    assert_eq!(
        b.value_of(
            "aif_gpu_process_memory_used_bytes",
            &[("gpu", "0"), ("pid", "4242")]
        ),
        Some(1_073_741_824.0)
    );
}

#[test]
fn missing_library_is_a_typed_error_that_says_what_to_do() {
    let err = NvmlSource::builder()
        .lib_path("/nonexistent/libnvidia-ml.so.1")
        .build()
        .expect_err("must fail");
    assert!(matches!(err, SourceError::NvmlNotLoaded { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("/nonexistent/libnvidia-ml.so.1"), "{msg}");
    assert!(msg.contains("Install the NVIDIA driver"), "{msg}");
    assert!(msg.contains("--source simulated"), "{msg}");
}
