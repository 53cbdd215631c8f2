//! `aif-node-exporter --once`: the binary end to end, its text checked by the
//! real `promtool check metrics`.

use std::process::{Command, Output};

use aif_testbed::promtool_check_metrics;

const EXE: &str = env!("CARGO_BIN_EXE_aif-node-exporter");

fn run(args: &[&str]) -> Output {
    Command::new(EXE)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("SLURM_JOB_ID")
        .output()
        .expect("spawn aif-node-exporter")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf8")
}

#[test]
fn native_text_for_8_simulated_gpus_passes_promtool_with_no_finding() {
    let o = run(&["--source", "simulated", "--gpus", "8", "--once"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout(&o);
    for gpu in 0..8 {
        assert!(
            text.contains(&format!(
                "aif_gpu_up{{gpu=\"{gpu}\",model=\"Simulated GPU\""
            )),
            "gpu {gpu} missing:\n{text}"
        );
    }
    let report = promtool_check_metrics(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.code, Some(0), "promtool: {}", report.output);
    assert_eq!(
        report.output.trim(),
        "",
        "promtool findings:\n{}",
        report.output
    );
}

#[test]
fn dcgm_text_parses_and_has_only_dcgm_exporters_own_findings() {
    let o = run(&[
        "--source",
        "simulated",
        "--gpus",
        "8",
        "--once",
        "--metric-names",
        "dcgm",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout(&o);
    assert!(text.contains("DCGM_FI_DEV_GPU_UTIL{"), "{text}");
    assert!(text.contains("device=\"nvidia7\""), "{text}");
    let report = promtool_check_metrics(&text).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !report.output.trim().is_empty(),
        "expected dcgm's camelCase findings"
    );
    // dcgm-exporter's own counters have no `_total` suffix.
    let dcgm_counters: Vec<String> = gpu_metrics::catalogue::DCGM
        .iter()
        .filter(|(_, d)| d.kind == gpu_metrics::MetricKind::Counter)
        .map(|(_, d)| format!("{} counter metrics should have \"_total\" suffix", d.name))
        .collect();
    assert!(dcgm_counters.len() >= 4, "{dcgm_counters:?}");
    for line in report.output.lines().filter(|l| !l.trim().is_empty()) {
        let expected = line
            .ends_with("label names should be written in 'snake_case' not 'camelCase'")
            || dcgm_counters.iter().any(|c| c == line)
            // dcgm-exporter's own name for the PCIe replay counter.
            || line == "DCGM_FI_DEV_PCIE_REPLAY_COUNTER metric name should not include type 'counter'";
        assert!(
            expected,
            "unexpected promtool finding: {line}\nfull report:\n{}",
            report.output
        );
    }
}

#[test]
fn attribution_labels_from_flags_and_slurm_job_id_reach_every_series() {
    let o = Command::new(EXE)
        .args([
            "--source",
            "simulated",
            "--gpus",
            "2",
            "--once",
            "--label",
            "run_id=r42",
            "--label",
            "service_id=s1",
        ])
        .env("SLURM_JOB_ID", "9876")
        .output()
        .expect("spawn");
    assert!(o.status.success());
    let text = stdout(&o);
    let samples: Vec<_> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert!(samples.len() >= 2 * 29, "{text}");
    for l in samples {
        assert!(
            l.contains("run_id=\"r42\"")
                && l.contains("service_id=\"s1\"")
                && l.contains("slurm_job_id=\"9876\""),
            "{l}"
        );
    }
}

#[test]
fn nvml_source_through_the_fake_library_end_to_end() {
    let dir = tempfile::tempdir().expect("tmp");
    let lib = aif_testbed::fake_nvml_in(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let o = run(&[
        "--source",
        "nvml",
        "--nvml-lib",
        lib.to_str().expect("utf8"),
        "--once",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout(&o);
    assert!(text.contains("model=\"NVIDIA H100 80GB HBM3\""), "{text}");
    assert!(text.contains("aif_gpu_power_watts{gpu=\"0\",model=\"NVIDIA H100 80GB HBM3\",uuid=\"GPU-fake0000-0000-0000-0000-000000000000\"} 251.5"), "{text}");
    assert!(
        !text.contains("aif_gpu_energy_joules_total"),
        "energy must be absent:\n{text}"
    );
    let report = promtool_check_metrics(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.code, Some(0), "{}", report.output);
}

#[test]
fn auto_without_nvml_fails_with_what_to_do() {
    let o = run(&[
        "--source",
        "auto",
        "--nvml-lib",
        "/nonexistent/libnvidia-ml.so.1",
        "--once",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Install the NVIDIA driver") && err.contains("--source simulated"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn bad_flags_exit_2_naming_the_key() {
    for (args, key) in [
        (&["--source", "gpu", "--once"][..], "source"),
        (&["--metric-names", "prom", "--once"][..], "metric_names"),
        (&["--label", "run id=1", "--once"][..], "label"),
        (&["--label", "gpu=1", "--once"][..], "label"),
        (
            &["--gpus", "0", "--source", "simulated", "--once"][..],
            "gpus",
        ),
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&format!("`{key}`")), "{args:?}: {err}");
        assert!(o.stdout.is_empty());
    }
}
