//! NVIDIA's own Grafana dashboard for dcgm-exporter works against the exporter
//! in dcgm mode (DESIGN.md §4): its queries run, as Grafana would run them, on
//! a real Prometheus that scrapes a real Pushgateway the exporter pushes to
//! (the deployment's shape, `deploy/prometheus/prometheus.yml`), with GPUs read
//! through the fake NVML library.
//!
//! The queries are `tests/data/dcgm-exporter-dashboard-queries.json`: every
//! panel target and query variable of `grafana/dcgm-exporter-dashboard.json`,
//! copied verbatim (the file names its source commit).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use aif_testbed::{Prometheus, Pushgateway, http_get, wait_until};
use serde_json::Value;
use support::{EXE, Exporter};

const QUERIES: &str = include_str!("data/dcgm-exporter-dashboard-queries.json");

fn dashboard() -> Value {
    serde_json::from_str(QUERIES).expect("dashboard queries JSON")
}

/// `DCGM_…` metric names in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("DCGM_"))
        .map(str::to_string)
        .collect()
}

/// The result vector of an instant query's JSON answer.
fn result(body: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(body).expect("query JSON");
    assert_eq!(v["status"], "success", "{body}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Grafana's `label_values(metric, label)`: the label's values on the series.
fn label_values(prom: &Prometheus, query: &str) -> Vec<String> {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a label_values query: {query}"));
    let (metric, label) = inner.split_once(',').expect("metric, label");
    let (metric, label) = (metric.trim(), label.trim());
    let body = prom
        .query(&format!("group by ({label}) ({metric})"))
        .expect("query");
    result(&body)
        .iter()
        .filter_map(|s| s["metric"][label].as_str().map(str::to_string))
        .collect()
}

#[test]
fn every_query_of_nvidias_dashboard_answers_from_the_dcgm_mode_exporter() {
    let dir = tempfile::tempdir().expect("tmp");
    let lib = aif_testbed::fake_nvml_in(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let pgw = Pushgateway::start().unwrap_or_else(|e| panic!("{e}"));
    let pgw_url = pgw.url();
    let buffer = dir.path().join("b.db");
    let _exp = Exporter::start(
        dir.path(),
        &[
            "--source",
            "nvml",
            "--nvml-lib",
            lib.to_str().expect("utf8"),
            "--metric-names",
            "dcgm",
            "--interval",
            "500ms",
            "--pushgateway",
            &pgw_url,
            "--instance",
            "gpu-node-1",
            "--buffer",
            buffer.to_str().expect("utf8"),
        ],
    );
    let prom = Prometheus::start(&format!(
        "scrape_configs:\n  - job_name: pushgateway\n    honor_labels: true\n    static_configs:\n      - targets: ['{}']\n",
        pgw.addr()
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        wait_until(Duration::from_secs(30), || prom
            .query("DCGM_FI_DEV_GPU_TEMP")
            .is_ok_and(|b| !result(&b).is_empty())),
        "dcgm series never reached Prometheus:\n{}",
        prom.log_text()
    );

    let d = dashboard();
    // The variables, resolved as Grafana resolves them.
    let mut values = std::collections::BTreeMap::new();
    for var in d["variables"].as_array().expect("variables") {
        let name = var["name"].as_str().expect("name");
        let found = label_values(&prom, var["query"].as_str().expect("query"));
        assert!(!found.is_empty(), "variable ${name} has no values");
        values.insert(name.to_string(), found);
    }
    assert_eq!(values["instance"], ["gpu-node-1"]);
    assert!(values["gpu"].contains(&"0".to_string()), "{values:?}");

    let mut served = BTreeSet::new();
    let mut profiling = BTreeSet::new();
    for panel in d["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("title");
        let mut expr = panel["expr"].as_str().expect("expr").to_string();
        // "All" selected: Grafana substitutes the alternation of every value.
        for (name, vals) in &values {
            expr = expr.replace(&format!("${name}"), &format!("({})", vals.join("|")));
        }
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "{title}: no DCGM metric in {expr}");
        let series = result(&prom.query(&expr).expect("query"));
        if names.iter().all(|n| n.starts_with("DCGM_FI_PROF_")) {
            // Profiling fields need DCGM itself; the exporter never fakes them.
            assert!(series.is_empty(), "{title}: profiling field answered");
            profiling.extend(names);
            continue;
        }
        assert!(!series.is_empty(), "{title}: no data for {expr}");
        // Every label the legend names is on every series.
        let legend = panel["legendFormat"].as_str().unwrap_or("");
        for label in legend
            .split("{{")
            .skip(1)
            .filter_map(|s| s.split_once("}}").map(|(l, _)| l.trim()))
        {
            for s in &series {
                assert!(
                    s["metric"][label].is_string(),
                    "{title}: legend label {label} missing on {s}"
                );
            }
        }
        served.extend(names);
    }
    assert_eq!(
        served.into_iter().collect::<Vec<_>>(),
        [
            "DCGM_FI_DEV_FB_USED",
            "DCGM_FI_DEV_GPU_TEMP",
            "DCGM_FI_DEV_GPU_UTIL",
            "DCGM_FI_DEV_POWER_USAGE",
            "DCGM_FI_DEV_SM_CLOCK",
        ]
    );
    assert_eq!(
        profiling.into_iter().collect::<Vec<_>>(),
        ["DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"]
    );

    // dcgm-exporter's labels are all there, with its current host label.
    let body = prom
        .query("DCGM_FI_DEV_GPU_TEMP{gpu=\"0\"}")
        .expect("query");
    let labels = &result(&body)[0]["metric"];
    for (name, want) in [
        ("UUID", "GPU-fake0000-0000-0000-0000-000000000000"),
        ("device", "nvidia2"),
        ("pci_bus_id", "00000000:17:00.0"),
        ("modelName", "NVIDIA H100 80GB HBM3"),
        ("DCGM_FI_DRIVER_VERSION", "550.54.15"),
    ] {
        assert_eq!(labels[name], want, "{name} in {labels}");
    }
    assert!(labels["hostname"].is_string(), "{labels}");
    assert!(labels["Hostname"].is_null(), "{labels}");
    // The lost GPU (the fake loses GPU 1 after its first read) shows as 0.
    assert!(
        wait_until(Duration::from_secs(10), || prom
            .query("aif_gpu_up{gpu=\"1\",device=\"nvidia0\"} == 0")
            .is_ok_and(|b| result(&b).len() == 1)),
        "lost GPU not visible in dcgm mode"
    );
    // Nothing else is served under a DCGM name we do not define.
    let (status, text) = http_get(&format!("{pgw_url}/metrics")).expect("pgw");
    assert_eq!(status, 200);
    let pushed: BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("DCGM_"))
        .filter_map(|l| l.split('{').next())
        .collect();
    assert!(pushed.len() >= 15, "{pushed:?}");
    for name in pushed {
        assert!(
            gpu_metrics::catalogue::DCGM
                .iter()
                .any(|(_, d)| d.name == name),
            "{name} pushed but not in the catalogue"
        );
    }
}

#[test]
fn the_simulated_source_serves_the_dashboards_metrics_too() {
    let o = std::process::Command::new(EXE)
        .args([
            "--source",
            "simulated",
            "--gpus",
            "2",
            "--once",
            "--metric-names",
            "dcgm",
        ])
        .output()
        .expect("spawn");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).expect("utf8");
    for panel in dashboard()["panels"].as_array().expect("panels") {
        for name in metric_names(panel["expr"].as_str().expect("expr")) {
            if name.starts_with("DCGM_FI_PROF_") {
                assert!(!text.contains(&name), "{name} must not be simulated");
            } else {
                assert!(
                    text.lines()
                        .any(|l| l.starts_with(&format!("{name}{{")) && l.contains(",gpu=\"1\",")),
                    "{name} missing:\n{text}"
                );
            }
        }
    }
}
