//! Every panel shows data (issue 11 §6): the testbed's Prometheus scrapes a
//! Pushgateway fed by the real exporter on simulated GPUs and the API's
//! `/metrics`; every Prometheus query of a dashboard, with each variable set to
//! a value its own query returns, must return at least one series. An empty
//! panel fails the test, naming it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use aif_dashboards::{build, checks, crate_dir, repo_dir};
use aif_testbed::{Prometheus, Pushgateway, ServerProcess, free_port, instant_vector, wait_until};
use serde_json::Value;

fn binary(name: &str, package: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_dir().join("target"));
    let bin = target.join("debug").join(name);
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p {package}` (scripts/test.sh builds every binary first)",
        bin.display()
    );
    bin
}

/// The stack: Pushgateway, exporter (2 simulated GPUs) pushing to it, the API,
/// and Prometheus scraping both as deploy/prometheus/prometheus.yml does.
struct Stack {
    prometheus: Prometheus,
    _exporter: ServerProcess,
    _api: ServerProcess,
    _pushgateway: Pushgateway,
}

impl Stack {
    fn start() -> Stack {
        let pushgateway = Pushgateway::start().expect("Pushgateway");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(binary("aif-node-exporter", "aif-node-exporter"));
        cmd.args(["--source", "simulated", "--gpus", "2", "--interval", "1s"])
            .arg("--buffer")
            .arg(dir.path().join("buffer.db"))
            .arg("--pushgateway")
            .arg(pushgateway.url())
            .args(["--instance", "sim-node-1"]);
        let exporter = ServerProcess::spawn("aif-node-exporter", cmd, dir).expect("exporter");

        let api_port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(binary("aif-bench-api", "aif-bench-api"));
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{api_port}"))
            .arg("--db")
            .arg(dir.path().join("api.sqlite"))
            .arg("--log-dir")
            .arg(dir.path().join("logs"))
            .arg("--recipes")
            .arg(repo_dir().join("bench-api/recipes"));
        let api = ServerProcess::spawn("aif-bench-api", cmd, dir).expect("API");

        let scrape = format!(
            "scrape_configs:\n\
             \x20 - job_name: pushgateway\n    honor_labels: true\n    static_configs:\n      - targets: ['{}']\n\
             \x20 - job_name: aif-bench-api\n    static_configs:\n      - targets: ['127.0.0.1:{api_port}']\n",
            pushgateway.addr()
        );
        let prometheus = Prometheus::start(&scrape).expect("Prometheus");
        Stack {
            prometheus,
            _exporter: exporter,
            _api: api,
            _pushgateway: pushgateway,
        }
    }

    fn series(&self, promql: &str) -> Vec<(String, f64)> {
        instant_vector(&self.prometheus.url(), promql).unwrap_or_default()
    }
}

/// Sets each variable, in order, to the first value its own query returns.
fn resolve_variables(stack: &Stack, dashboard: &Value) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    for v in checks::variables(dashboard) {
        let name = v["name"].as_str().unwrap_or("").to_string();
        if v["type"] == "datasource" {
            values.insert(name, "aif-prometheus".into());
            continue;
        }
        let q = v["query"]["query"].as_str().unwrap_or("");
        let (selector, label) = checks::parse_label_values(q)
            .unwrap_or_else(|| panic!("variable {name}: not a label_values query: {q}"));
        let selector = checks::substitute(&selector, &values)
            .unwrap_or_else(|m| panic!("variable {name}: unresolved {m:?}"));
        let promql = format!("group by ({label}) ({selector})");
        let found = stack.series(&promql);
        let first = found
            .first()
            .and_then(|(labels, _)| serde_json::from_str::<Value>(labels).ok())
            .and_then(|l| l[&label].as_str().map(String::from))
            .unwrap_or_else(|| panic!("variable {name}: its query {promql} returned nothing"));
        values.insert(name, first);
    }
    values
}

/// The Prometheus queries of `dashboard` that return no series, with `values`.
fn empty_queries(
    stack: &Stack,
    dashboard: &Value,
    values: &BTreeMap<String, String>,
    only: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut empty = Vec::new();
    for q in checks::prom_queries(dashboard) {
        if q.label.is_some() || !only(&q.place) {
            continue;
        }
        let expr = checks::substitute(&q.expr, values).expect("variables resolved");
        if stack.series(&expr).is_empty() {
            empty.push(format!("{}: {expr}", q.place));
        }
    }
    empty
}

#[test]
fn every_gpu_panel_shows_data() {
    let stack = Stack::start();
    let built = build::build_all(&crate_dir().join("src")).expect("build");
    // Wait for what every panel needs: two pushes scraped (rates, increases),
    // the exporter's buffer gauges and the Pushgateway's push_time_seconds.
    let ready = wait_until(Duration::from_secs(60), || {
        !stack
            .series("count_over_time(aif_gpu_energy_joules_total[5m]) >= 3")
            .is_empty()
            && !stack
                .series("aif_exporter_buffer_pending_batches")
                .is_empty()
            && !stack
                .series("push_time_seconds{job=\"aif_gpu\"}")
                .is_empty()
    });
    assert!(ready, "the exporter's pushes never reached Prometheus");

    let gpus = &built["gpus"];
    let values = resolve_variables(&stack, gpus);
    assert_eq!(
        values.get("instance").map(String::as_str),
        Some("sim-node-1")
    );
    let empty = empty_queries(&stack, gpus, &values, |_| true);
    assert!(
        empty.is_empty(),
        "GPUs: empty panels:\n{}",
        empty.join("\n")
    );

    // The Benchmarks dashboard's GPU panels (same window, same variables).
    let bench = &built["benchmarks"];
    let mut values = values;
    values.insert("run_id".into(), "none".into());
    let gpu_titles: Vec<String> = checks::panels(bench)
        .into_iter()
        .filter(|p| {
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| t["expr"].as_str().is_some_and(|e| e.contains("aif_gpu_")))
        })
        .map(|p| format!("panel {} ", p["id"]))
        .collect();
    assert!(gpu_titles.len() >= 7, "{gpu_titles:?}");
    let empty = empty_queries(&stack, bench, &values, |place| {
        gpu_titles.iter().any(|t| place.starts_with(t.as_str()))
    });
    assert!(
        empty.is_empty(),
        "Benchmarks: empty GPU panels:\n{}",
        empty.join("\n")
    );
}
