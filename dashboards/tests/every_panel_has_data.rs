//! Every panel shows data (issue 11 §6): the testbed's Prometheus scrapes a
//! Pushgateway fed by the real exporter on simulated GPUs, the API's `/metrics`
//! and (Benchmarks) the live metrics of one short load-generator run; every
//! Prometheus query of a dashboard, with each variable set to a value its own
//! query returns, must return at least one series over the window Grafana would
//! show, as Grafana asks (`label_values` through `/api/v1/label/…/values`,
//! panels through `/api/v1/query_range`). An empty panel fails, naming it.
//!
//! Binaries come from `AIF_BIN_DIR` (default `target/debug`; scripts/test.sh
//! builds them all first).

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aif_dashboards::{build, checks, crate_dir, repo_dir};
use aif_testbed::{
    Prometheus, Pushgateway, ServerProcess, free_port, http_get, url_encode, wait_until,
};
use serde_json::{Value, json};

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// GET `base` + `path`; the `data` of Prometheus's answer.
fn prom(base: &str, path: &str) -> Value {
    let (status, body) = http_get(&format!("{base}{path}")).unwrap_or((0, String::new()));
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!(status, 200, "GET {path}: {body}");
    v["data"].clone()
}

/// Sets each variable, in order, to the first value its own query returns over
/// `[start, end]` (as Grafana's `label_values(selector, label)` does).
fn resolve_variables(
    base: &str,
    dashboard: &Value,
    start: f64,
    end: f64,
) -> BTreeMap<String, String> {
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
        let data = prom(
            base,
            &format!(
                "/api/v1/label/{label}/values?match[]={}&start={start}&end={end}",
                url_encode(&selector)
            ),
        );
        let first = data
            .as_array()
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .unwrap_or_else(|| {
                panic!("variable {name}: label_values({selector}, {label}) is empty")
            })
            .to_string();
        values.insert(name, first);
    }
    values
}

/// The Prometheus queries of `dashboard` (those `only` keeps) that return no
/// series over `[start, end]`. Steps are 1 s from `start`: pass an `end` a
/// second past now so the newest scrape falls before a step.
fn empty_queries(
    base: &str,
    dashboard: &Value,
    values: &BTreeMap<String, String>,
    (start, end): (f64, f64),
    only: impl Fn(&str) -> bool,
) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut empty = Vec::new();
    let range = format!("{}s", ((end - start).ceil() as u64).max(1));
    for q in checks::prom_queries(dashboard) {
        if q.label.is_some() || !only(&q.place) {
            continue;
        }
        let mut values = values.clone();
        values.insert("__range".into(), range.clone());
        let expr = checks::substitute(&q.expr, &values).expect("variables resolved");
        let data = prom(
            base,
            &format!(
                "/api/v1/query_range?query={}&start={start}&end={end}&step=1",
                url_encode(&expr)
            ),
        );
        checked += 1;
        if data["result"].as_array().is_none_or(Vec::is_empty) {
            empty.push(format!("{}: {expr}", q.place));
        }
    }
    (checked, empty)
}

/// The panel-id prefixes (`panel N `) of panels whose queries name `needle`.
fn panels_naming(dashboard: &Value, needle: &str, yes: bool) -> Vec<String> {
    checks::panels(dashboard)
        .into_iter()
        .filter(|p| {
            p["targets"].as_array().is_some_and(|t| !t.is_empty())
                && p["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| t["expr"].as_str().is_some_and(|e| e.contains(needle)))
                    == yes
        })
        .map(|p| format!("panel {} ", p["id"]))
        .collect()
}

fn spawn(name: &str, package: &str, args: &[String]) -> ServerProcess {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(common::binary(name, package));
    cmd.args(args);
    ServerProcess::spawn(name, cmd, dir).expect(name)
}

fn pushgateway_and_api_scrape(pushgateway: &Pushgateway, api_port: u16) -> String {
    format!(
        "scrape_configs:\n\
         \x20 - job_name: pushgateway\n    honor_labels: true\n    static_configs:\n      - targets: ['{}']\n\
         \x20 - job_name: aif-bench-api\n    static_configs:\n      - targets: ['127.0.0.1:{api_port}']\n",
        pushgateway.addr()
    )
}

fn exporter_args(pushgateway: &Pushgateway, dir: &std::path::Path) -> Vec<String> {
    vec![
        "--source".into(),
        "simulated".into(),
        "--gpus".into(),
        "2".into(),
        "--interval".into(),
        "1s".into(),
        "--buffer".into(),
        dir.join("buffer.db").display().to_string(),
        "--pushgateway".into(),
        pushgateway.url(),
        "--instance".into(),
        "sim-node-1".into(),
    ]
}

#[test]
fn every_gpu_panel_shows_data() {
    let pushgateway = Pushgateway::start().expect("Pushgateway");
    let scratch = tempfile::tempdir().expect("tempdir");
    let _exporter = spawn(
        "aif-node-exporter",
        "aif-node-exporter",
        &exporter_args(&pushgateway, scratch.path()),
    );
    let api_port = free_port();
    let _api = spawn(
        "aif-bench-api",
        "aif-bench-api",
        &[
            format!("--listen=127.0.0.1:{api_port}"),
            format!("--db={}", scratch.path().join("api.sqlite").display()),
            format!("--log-dir={}", scratch.path().join("logs").display()),
            format!(
                "--recipes={}",
                repo_dir().join("bench-api/recipes").display()
            ),
        ],
    );
    let prometheus =
        Prometheus::start(&pushgateway_and_api_scrape(&pushgateway, api_port)).expect("Prometheus");
    let base = prometheus.url();
    let start = now_s();
    // Wait for what every panel needs: a few pushes scraped (rates,
    // increases), the buffer gauges and the Pushgateway's push_time_seconds.
    let ready = wait_until(Duration::from_secs(60), || {
        let has = |q: &str| {
            prom(&base, &format!("/api/v1/query?query={}", url_encode(q)))["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        };
        has("count_over_time(aif_gpu_energy_joules_total[5m]) >= 3")
            && has("aif_exporter_buffer_pending_batches")
            && has("push_time_seconds{job=\"aif_gpu\"}")
    });
    assert!(ready, "the exporter's pushes never reached Prometheus");
    let window = (start - 60.0, now_s() + 1.0);

    let built = build::build_all(&crate_dir().join("src")).expect("build");
    let gpus = &built["gpus"];
    let values = resolve_variables(&base, gpus, window.0, window.1);
    assert_eq!(
        values.get("instance").map(String::as_str),
        Some("sim-node-1")
    );
    let (checked, empty) = empty_queries(&base, gpus, &values, window, |_| true);
    assert!(checked >= 12, "only {checked} queries");
    assert!(
        empty.is_empty(),
        "GPUs: empty panels:\n{}",
        empty.join("\n")
    );

    // The Benchmarks dashboard's GPU panels (same variables, no run needed).
    let bench = &built["benchmarks"];
    let mut values = values;
    values.insert("run_id".into(), "none".into());
    let gpu_panels = panels_naming(bench, "aif_gpu_", true);
    assert!(gpu_panels.len() >= 7, "{gpu_panels:?}");
    let (_, empty) = empty_queries(&base, bench, &values, window, |place| {
        gpu_panels.iter().any(|t| place.starts_with(t.as_str()))
    });
    assert!(
        empty.is_empty(),
        "Benchmarks: empty GPU panels:\n{}",
        empty.join("\n")
    );
}

/// An OpenAI-compatible streaming stand-in on one (simulated) GPU, so a run has
/// TTFT/ITL/TPOT, tokens and energy.
fn stub_recipe() -> String {
    format!(
        r#"name = "openai-stub"
description = "OpenAI-compatible streaming stand-in (loadgen/benches/openai-stub.py)"
category = "test"
argv = ["python3", "{}", "{{port}}", "20", "5", "8"]
port = "{{port}}"
[resources]
gpus = 1
[parameters.port]
type = "integer"
min = 1024
max = 65535
"#,
        repo_dir().join("loadgen/benches/openai-stub.py").display()
    )
}

#[test]
fn every_benchmark_panel_shows_data() {
    let pushgateway = Pushgateway::start().expect("Pushgateway");
    let scratch = tempfile::tempdir().expect("tempdir");
    let recipes = scratch.path().join("recipes");
    std::fs::create_dir_all(&recipes).expect("recipes dir");
    std::fs::write(recipes.join("openai-stub.toml"), stub_recipe()).expect("recipe");
    let api_port = free_port();
    let prometheus =
        Prometheus::start(&pushgateway_and_api_scrape(&pushgateway, api_port)).expect("Prometheus");
    let config = scratch.path().join("api.toml");
    std::fs::write(
        &config,
        format!(
            "poll_interval_ms = 100\nexporter_binary = \"{}\"\nexporter_source = \"simulated\"\nexporter_interval = \"500ms\"\n",
            common::binary("aif-node-exporter", "aif-node-exporter").display()
        ),
    )
    .expect("config");
    let mut api = spawn(
        "aif-bench-api",
        "aif-bench-api",
        &[
            format!("--config={}", config.display()),
            format!("--listen=127.0.0.1:{api_port}"),
            format!("--db={}", scratch.path().join("api.sqlite").display()),
            format!("--log-dir={}", scratch.path().join("logs").display()),
            format!("--recipes={}", recipes.display()),
            format!("--pushgateway={}", pushgateway.url()),
            format!("--prometheus={}", prometheus.url()),
        ],
    );
    let api_url = format!("http://127.0.0.1:{api_port}");
    api.wait_ready(Duration::from_secs(30), || {
        http_get(&format!("{api_url}/health")).is_ok_and(|(s, _)| s == 200)
    })
    .expect("API ready");
    let post = |path: &str, body: &Value| -> Value {
        let mut resp = ureq::post(&format!("{api_url}{path}"))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap_or_default())
            .unwrap_or(Value::Null)
    };
    let get = |path: &str| -> Value {
        let (_, body) = http_get(&format!("{api_url}{path}")).unwrap_or_default();
        serde_json::from_str(&body).unwrap_or(Value::Null)
    };
    let svc = post(
        "/api/v1/services",
        &json!({"recipe": "openai-stub", "params": {"port": free_port()}}),
    );
    let sid = svc["id"].as_str().expect("service id").to_string();
    let running = wait_until(Duration::from_secs(60), || {
        get(&format!("/api/v1/services/{sid}"))["status"] == "running"
    });
    assert!(running, "service never ran:\n{}", api.log_tail(3000));
    let _cleanup = CancelOnDrop(format!("{api_url}/api/v1/services/{sid}"));
    let base = prometheus.url();
    let start = now_s();
    let gpus_seen = wait_until(Duration::from_secs(60), || {
        prom(
            &base,
            &format!(
                "/api/v1/query?query={}",
                url_encode(&format!(
                    "aif_gpu_energy_joules_total{{service_id=\"{sid}\"}}"
                ))
            ),
        )["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    });
    assert!(gpus_seen, "the exporter beside the service never pushed");

    let run = post(
        "/api/v1/benchmarks",
        &json!({"service_id": sid, "duration_seconds": 6, "mode": "closed_loop", "concurrency": 2,
                "workload": "openai_completions", "model": "stub", "max_tokens": 8,
                "prompts": ["one two three"]}),
    );
    let rid = run["id"]
        .as_str()
        .unwrap_or_else(|| panic!("run: {run}"))
        .to_string();
    let mut last = Value::Null;
    let measured = wait_until(Duration::from_secs(120), || {
        last = get(&format!("/api/v1/benchmarks/{rid}"));
        last["result"]["energy_status"]
            .as_str()
            .is_some_and(|s| s != "pending")
    });
    assert!(
        measured,
        "run never finished with its energy: {last:#}\n{}",
        api.log_tail(3000)
    );
    // The API's result gauges reach Prometheus by scrape.
    let scraped = wait_until(Duration::from_secs(30), || {
        prom(
            &base,
            &format!(
                "/api/v1/query?query={}",
                url_encode(&format!(
                    "aif_benchmark_result_joules_per_output_token{{run_id=\"{rid}\"}}"
                ))
            ),
        )["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    });
    assert!(scraped, "result gauges never scraped: {last:#}");
    // A capacity search, for the panels that read the run from the API.
    let sweep = post(
        "/api/v1/benchmarks",
        &json!({"service_id": sid, "duration_seconds": 1, "mode": "open_loop", "requests_per_second": 2,
                "arrivals": "constant", "workload": "openai_completions", "model": "stub", "max_tokens": 8,
                "prompts": ["one two three"], "goodput": {"e2el_ms": 10000}, "sweep": {"max": 4}}),
    );
    let sweep_id = sweep["id"]
        .as_str()
        .unwrap_or_else(|| panic!("sweep run: {sweep}"))
        .to_string();
    let mut swept = Value::Null;
    assert!(
        wait_until(Duration::from_secs(120), || {
            swept = get(&format!("/api/v1/benchmarks/{sweep_id}"));
            swept["status"] == "completed"
        }),
        "sweep run never completed: {swept:#}\n{}",
        api.log_tail(3000)
    );
    let window = (start - 10.0, now_s() + 1.0);

    let built = build::build_all(&crate_dir().join("src")).expect("build");
    let bench = &built["benchmarks"];
    // Every panel reading the API (Infinity) finds its rows and every
    // column, for the sweep run.
    let mut api_panels = 0;
    for p in checks::panels(bench) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let Some(url) = t["url"].as_str().filter(|_| t["type"] == "json") else {
                continue;
            };
            api_panels += 1;
            let body = get(&url.replace("${run_id}", &sweep_id));
            let mut rows = &body;
            for part in t["root_selector"]
                .as_str()
                .unwrap_or("")
                .split('.')
                .filter(|s| !s.is_empty())
            {
                rows = &rows[part];
            }
            let rows = rows.as_array().unwrap_or_else(|| {
                panic!(
                    "panel {}: {url} {:?}: no rows in {body:#}",
                    p["title"], t["root_selector"]
                )
            });
            assert!(!rows.is_empty(), "panel {}: no rows", p["title"]);
            for c in t["columns"].as_array().into_iter().flatten() {
                let key = c["selector"].as_str().unwrap_or("");
                assert!(
                    rows.iter().any(|r| r.get(key).is_some()),
                    "panel {}: column {key} in no row: {rows:#?}",
                    p["title"]
                );
            }
        }
    }
    assert!(api_panels >= 2, "only {api_panels} API panels");
    let values = resolve_variables(&base, bench, window.0, window.1);
    assert_eq!(values.get("run_id"), Some(&rid), "{values:?}");
    let (checked, empty) = empty_queries(&base, bench, &values, window, |_| true);
    assert!(checked >= 20, "only {checked} queries");
    assert!(
        empty.is_empty(),
        "Benchmarks: empty panels:\n{}",
        empty.join("\n")
    );
}

/// Cancels the service when the test ends, passed or failed.
struct CancelOnDrop(String);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let _ = ureq::delete(&self.0).call();
    }
}
