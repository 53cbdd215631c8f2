//! The real NVML code path against the fake `libnvidia-ml.so.1` (DESIGN.md §9).

use gpu_metrics::source::{GpuSource, NvmlSource, SourceError, SourceKind, XidReading};
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
    assert_eq!(g.minor_number, Some(2), "minor number, not the index");
    assert_eq!(g.memory_reserved_bytes, Some(536_870_912));
    assert_eq!(g.memory_temperature_c, Some(52));
    assert_eq!(g.encoder_utilization_percent, Some(5));
    assert_eq!(g.pcie_replays, Some(7));
    assert_eq!(g.nvlink_tx_kib, Some(2048), "scope UINT_MAX: all links");
    assert_eq!(g.nvlink_rx_kib, Some(1024));
    assert_eq!(g.remapped_rows_correctable, Some(3));
    assert_eq!(g.remapped_rows_uncorrectable, Some(0));
    assert_eq!(g.row_remap_failure, Some(false));
    assert_eq!(g.xid, Some(XidReading { last: 31, count: 1 }));
    // The symbols left out of the library: absent, not 0, and not a failed tick.
    assert_eq!(g.energy_mj, None);
    assert_eq!(g.decoder_utilization_percent, None);
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
    // GPU 1: no encoder, no HBM sensor, no NVLink, no XID events → absent.
    assert_eq!(g1.minor_number, Some(0));
    assert_eq!(g1.encoder_utilization_percent, None);
    assert_eq!(g1.memory_temperature_c, None);
    assert_eq!(g1.nvlink_tx_kib, None);
    assert_eq!(g1.remapped_rows_correctable, None);
    assert_eq!(g1.xid, None);
    assert_eq!(g1.pcie_replays, Some(0), "a real 0 stays 0");
}

#[test]
fn xid_events_are_taken_each_tick_and_the_last_code_kept() {
    let (_dir, mut src) = open(false);
    let first = src.sample(0).expect("tick 1");
    assert_eq!(first[0].xid, Some(XidReading { last: 31, count: 1 }));
    // No new event: the last code and the count stay.
    let second = src.sample(1000).expect("tick 2");
    assert_eq!(second[0].xid, Some(XidReading { last: 31, count: 1 }));
    let b = Namer::new(NameScheme::Native, Labels::new(), "n").batch(1000, &second);
    assert_eq!(b.value_of("aif_gpu_last_xid", &[("gpu", "0")]), Some(31.0));
    assert_eq!(
        b.value_of("aif_gpu_xid_errors_total", &[("gpu", "0")]),
        Some(1.0)
    );
    let b = Namer::new(NameScheme::Dcgm, Labels::new(), "n").batch(1000, &second);
    assert_eq!(
        b.value_of(
            "DCGM_FI_DEV_XID_ERRORS",
            &[("gpu", "0"), ("err_code", "31")]
        ),
        Some(31.0)
    );
    assert_eq!(b.value_of("DCGM_FI_DEV_XID_ERRORS", &[("gpu", "1")]), None);
}

#[test]
fn dcgm_mode_labels_like_dcgm_exporter_and_shows_the_lost_gpu() {
    let (_dir, mut src) = open(false);
    let mut namer = Namer::new(NameScheme::Dcgm, Labels::new(), "node3");
    let first = namer.batch(0, &src.sample(0).expect("tick 1"));
    let gpu0 = [
        ("gpu", "0"),
        ("UUID", "GPU-fake0000-0000-0000-0000-000000000000"),
        ("device", "nvidia2"),
        ("pci_bus_id", "00000000:17:00.0"),
        ("modelName", "NVIDIA H100 80GB HBM3"),
        ("hostname", "node3"),
        ("DCGM_FI_DRIVER_VERSION", "550.54.15"),
    ];
    assert_eq!(first.value_of("DCGM_FI_DEV_GPU_TEMP", &gpu0), Some(45.0));
    assert_eq!(first.value_of("DCGM_FI_DEV_MEMORY_TEMP", &gpu0), Some(52.0));
    assert_eq!(
        first.value_of("DCGM_FI_DEV_FB_RESERVED", &gpu0),
        Some(512.0)
    );
    assert_eq!(first.value_of("DCGM_FI_DEV_ENC_UTIL", &gpu0), Some(5.0));
    assert_eq!(
        first.value_of("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", &gpu0),
        Some(7.0)
    );
    assert_eq!(
        first.value_of("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", &gpu0),
        Some(3.0)
    );
    assert_eq!(
        first.value_of("DCGM_FI_DEV_ROW_REMAP_FAILURE", &gpu0),
        Some(0.0)
    );
    // Left out of the library / not supported: absent, not 0.
    for absent in [
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "DCGM_FI_DEV_DEC_UTIL",
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
    ] {
        assert_eq!(first.value_of(absent, &[("gpu", "0")]), None, "{absent}");
    }
    let gpu1 = [
        ("gpu", "1"),
        ("device", "nvidia0"),
        ("pci_bus_id", "00000000:18:00.0"),
    ];
    assert_eq!(first.value_of("DCGM_FI_DEV_MEMORY_TEMP", &gpu1), None);
    assert_eq!(first.value_of("aif_gpu_up", &gpu1), Some(1.0));

    // Tick 2: GPU 1 is lost. Its DCGM series stop; aif_gpu_up keeps the
    // same labels and reads 0, so the loss is a value, not a gap.
    let second = namer.batch(2000, &src.sample(2000).expect("tick 2"));
    assert_eq!(second.value_of("aif_gpu_up", &gpu1), Some(0.0));
    assert_eq!(second.value_of("DCGM_FI_DEV_GPU_TEMP", &gpu1), None);
    assert_eq!(second.value_of("aif_gpu_up", &gpu0), Some(1.0));
    // NVLink bandwidth is a rate, so it appears from the second reading on:
    // (2048 + 1024) KiB in 2 s → 1536 KiB/s → 1.536 (DCGM's /1000).
    assert_eq!(
        second.value_of("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", &gpu0),
        Some(1.536)
    );
}

#[test]
fn mig_devices_are_labelled_with_their_gpu_instance_id_not_their_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lib = aif_testbed::fake_nvml_mig_in(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let mut src = NvmlSource::builder()
        .lib_path(&lib)
        .build()
        .unwrap_or_else(|e| panic!("open fake NVML: {e}"));
    let r = src.sample(0).expect("sample");
    // GPU 0, its two MIG devices, GPU 1.
    assert_eq!(r.len(), 4, "{r:#?}");
    let migs: Vec<_> = r.iter().filter(|g| g.gpu_instance.is_some()).collect();
    assert_eq!(migs.len(), 2);
    assert_eq!(migs[0].gpu_instance, Some(3));
    assert_eq!(migs[1].gpu_instance, Some(5));
    assert_eq!(migs[0].gpu_instance_profile.as_deref(), Some("1g.10gb"));
    assert_eq!(migs[1].gpu_instance_profile.as_deref(), Some("3g.40gb"));
    for m in &migs {
        assert_eq!(m.index, 0, "a MIG device belongs to its parent GPU");
        assert!(m.up);
        assert!(m.uuid.starts_with("MIG-"), "{}", m.uuid);
        assert_eq!(m.minor_number, Some(2), "the parent's /dev/nvidia2");
        // MIG devices answer memory but not power or temperature.
        assert_eq!(m.memory_used_bytes, Some(1_073_741_824));
        assert_eq!(m.power_usage_mw, None);
        assert_eq!(m.temperature_c, None);
    }
    let b = Namer::new(NameScheme::Dcgm, Labels::new(), "n").batch(0, &r);
    // As dcgm-exporter labels MIG series: the parent GPU's UUID and model,
    // told apart by GPU_I_ID and GPU_I_PROFILE.
    let mig5 = [
        ("gpu", "0"),
        ("GPU_I_ID", "5"),
        ("GPU_I_PROFILE", "3g.40gb"),
        ("device", "nvidia2"),
        ("UUID", "GPU-fake0000-0000-0000-0000-000000000000"),
        ("modelName", "NVIDIA H100 80GB HBM3"),
    ];
    assert_eq!(b.value_of("DCGM_FI_DEV_FB_USED", &mig5), Some(1024.0));
    assert_eq!(b.value_of("aif_gpu_up", &mig5), Some(1.0));
    assert!(
        b.samples
            .iter()
            .all(|s| s.series.labels.get("GPU_I_ID") != Some("1")
                && s.series.labels.get("GPU_I_ID") != Some("0")),
        "GPU_I_ID must be the instance id, never the MIG index"
    );
    let native = Namer::new(NameScheme::Native, Labels::new(), "n").batch(0, &r);
    // Natively a MIG series has its own UUID and name.
    assert_eq!(
        native.value_of(
            "aif_gpu_memory_used_bytes",
            &[
                ("gpu", "0"),
                ("gpu_instance", "3"),
                ("uuid", "MIG-fake0000-0000-0000-0000-000000000003"),
                ("model", "NVIDIA H100 80GB HBM3 MIG 1g.10gb"),
            ]
        ),
        Some(1_073_741_824.0)
    );
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
