//! Energy per run: the API starts the real node exporter (simulated GPUs)
//! beside a GPU service on the local backend, labelled with the service's id;
//! it pushes to the real Pushgateway, which a real Prometheus scrapes; at the
//! end of a run the API asks Prometheus for the energy over the run's window.
//! The stored `energy_joules` must be within 2 % of the simulated counters'
//! true increase over that window (the same deterministic power curve,
//! integrated here at 5 ms steps).

mod common;

use std::time::Duration;

use aif_testbed::{Prometheus, Pushgateway, free_port, wait_until};
use common::{Api, recipes_with};
use serde_json::{Value, json};

/// demo-http asking for a GPU (so the exporter starts beside it).
const GPU_HTTP: &str = r#"
name = "gpu-http"
description = "HTTP on a (simulated) GPU"
category = "test"
argv = ["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
port = "{port}"
health_path = "/"
[resources]
gpus = 1
[parameters.port]
type = "integer"
min = 1024
max = 65535
"#;

#[test]
fn energy_of_a_run_matches_the_simulated_counters() {
    let exporter = common::exporter_binary();
    let pgw = Pushgateway::start().expect("pushgateway");
    let prom = Prometheus::start(&format!(
        "scrape_configs:\n  - job_name: pushgateway\n    honor_labels: true\n    scrape_interval: 200ms\n    static_configs:\n      - targets: ['{}']\n",
        pgw.addr()
    ))
    .expect("prometheus");
    let recipes = recipes_with(&[("gpu-http.toml", GPU_HTTP)]);
    let config = format!(
        "poll_interval_ms = 100\nexporter_binary = \"{}\"\nexporter_source = \"simulated\"\nexporter_interval = \"200ms\"\n",
        exporter.display()
    );
    let api = Api::start(
        recipes.path(),
        &config,
        &["--pushgateway", &pgw.url(), "--prometheus", &prom.url()],
        &[],
    );
    let svc = api.create_service("gpu-http", json!({"port": free_port()}));
    let sid = svc["id"].as_str().expect("id").to_string();
    api.wait_service(&sid, "running", Duration::from_secs(60));
    let query = format!("count(aif_gpu_energy_joules_total{{service_id=\"{sid}\"}})");
    assert!(
        wait_until(Duration::from_secs(60), || prom
            .query(&query)
            .is_ok_and(|b| b.contains("\"8\""))),
        "Prometheus never saw the exporter's 8 GPUs: {:?}\npushgateway:\n{}",
        prom.query(&query),
        pgw.metrics_text().unwrap_or_default()
    );
    let a = api.post(
        "/api/v1/benchmarks",
        &json!({"service_id": sid, "duration_seconds": 10, "concurrency": 2}),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let rid = a.json()["id"].as_str().expect("id").to_string();
    let mut last = Value::Null;
    assert!(
        wait_until(Duration::from_secs(120), || {
            last = api.get(&format!("/api/v1/benchmarks/{rid}")).json();
            last["result"]["energy_status"]
                .as_str()
                .is_some_and(|s| s != "pending")
        }),
        "{last:#}\n{}",
        api.log()
    );
    let r = &last["result"];
    assert_eq!(r["energy_status"], "measured", "{r:#}");
    assert_eq!(r["energy_gpus"], 8, "{r:#}");
    let (from, to) = (
        r["window_start_ms"].as_i64().expect("start"),
        r["window_end_ms"].as_i64().expect("end"),
    );
    let truth = common::simulated_energy(8, from, to);
    let got = r["energy_joules"].as_f64().expect("energy");
    let err = (got - truth) / truth;
    eprintln!(
        "energy over {:.2} s: stored {got:.1} J, true {truth:.1} J, error {:+.3} %",
        (to - from) as f64 / 1000.0,
        err * 100.0
    );
    assert!(err.abs() <= 0.02, "stored {got} J vs true {truth} J: {r:#}");
    let completed = r["completed"].as_f64().expect("completed");
    let per_request = r["joules_per_request"].as_f64().expect("J/request");
    assert!(
        (per_request - got / completed).abs() <= 1e-3 * per_request.max(1.0),
        "{r:#}"
    );
    let watts = r["mean_power_watts"].as_f64().expect("watts");
    assert!(
        (watts - got / ((to - from) as f64 / 1000.0)).abs() < 0.01 * watts,
        "{r:#}"
    );
    // The figure is on /metrics too.
    let text = api.get("/metrics").body;
    assert!(
        aif_testbed::metric_value(
            &text,
            "aif_benchmark_result_energy_joules",
            &[("run_id", rid.as_str())]
        )
        .is_some(),
        "{text}"
    );
}
