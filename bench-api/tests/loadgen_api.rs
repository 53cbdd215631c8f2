//! Benchmark runs from the API that send real load with `aif-loadgen`: on the
//! local backend (progress, results, `/metrics`, cancel within a second, a
//! service that dies) and on the testbed's real Slurm cluster.

mod common;

use std::time::{Duration, Instant};

use aif_testbed::{SlurmCluster, free_port, metric_value, wait_until};
use common::{Api, recipes_with, shipped_recipes};
use serde_json::{Value, json};

const POLL: &str = "poll_interval_ms = 50\nkill_grace_seconds = 5\n";

/// An HTTP service that exits with code 5 once the file `{flag}` exists.
const DIES_RECIPE: &str = r#"
name = "dies"
description = "HTTP on {port} until a flag file appears, then exit 5"
category = "test"
argv = ["python3", "-c", "import http.server, os, sys, threading, time\nsrv = http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), http.server.SimpleHTTPRequestHandler)\nthreading.Thread(target=srv.serve_forever, daemon=True).start()\nwhile not os.path.exists(sys.argv[2]): time.sleep(0.05)\nos._exit(5)", "{port}", "{flag}"]
port = "{port}"
health_path = "/"
[parameters.port]
type = "integer"
min = 1024
max = 65535
[parameters.flag]
type = "string"
max_length = 4096
"#;

fn run(api: &Api, id: &str) -> Value {
    let a = api.get(&format!("/api/v1/benchmarks/{id}"));
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()
}

fn demo(api: &Api) -> String {
    let svc = api.create_service("demo-http", json!({"port": free_port()}));
    let id = svc["id"].as_str().expect("id").to_string();
    api.wait_service(&id, "running", Duration::from_secs(60));
    id
}

#[test]
fn a_300_s_run_shows_its_plan_and_progress_and_cancels_within_a_second() {
    let api = Api::start(&shipped_recipes(), POLL, &[], &[]);
    let sid = demo(&api);
    let a = api.post(
        "/api/v1/benchmarks",
        &json!({"service_id": sid, "duration_seconds": 300, "concurrency": 2}),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let created = a.json();
    let rid = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["duration_seconds"], 300);
    assert_eq!(created["status"], "running");
    assert!(created["planned_end_at"].is_string(), "{created:#}");
    assert_eq!(created["progress"]["planned_seconds"], 300.0, "{created:#}");
    let log = api.log();
    assert!(
        log.contains(&format!("run {rid} started"))
            && log.contains("duration_seconds=300")
            && log.contains("effective end"),
        "{log}"
    );
    // Progress while it runs: requests so far, elapsed, remaining.
    let mut last = Value::Null;
    assert!(
        wait_until(Duration::from_secs(30), || {
            last = run(&api, &rid);
            // Figures are rounded to 0.1 s: wait until the clock has visibly
            // moved, so "remaining" must have come down from the plan.
            last["progress"]["requests_completed"].as_u64().unwrap_or(0) > 0
                && last["progress"]["elapsed_seconds"].as_f64().unwrap_or(0.0) >= 0.5
        }),
        "no progress: {last:#}"
    );
    let remaining = last["progress"]["remaining_seconds"]
        .as_f64()
        .expect("remaining");
    let elapsed = last["progress"]["elapsed_seconds"]
        .as_f64()
        .expect("elapsed");
    assert!(remaining > 250.0 && remaining < 300.0, "{last:#}");
    assert!(
        (remaining + elapsed - 300.0).abs() <= 0.2,
        "elapsed + remaining is not the plan: {last:#}"
    );

    let asked = Instant::now();
    let a = api.post(
        &format!("/api/v1/benchmarks/{rid}/cancel"),
        &json!({"reason": "test"}),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["status"], "cancelled");
    // The generator stops and its partial result is collected within a second.
    let stopped = wait_until(Duration::from_secs(1), || {
        last = run(&api, &rid);
        last["result"]["ended_by"] == "signal"
    });
    let took = asked.elapsed();
    eprintln!("cancel to collected partial result: {took:?}");
    assert!(stopped, "generator not stopped within 1 s: {last:#}");
    assert_eq!(last["status"], "cancelled");
    assert!(
        last["result"]["completed"].as_u64().expect("completed") > 0,
        "{last:#}"
    );
}

#[test]
fn a_run_completes_with_vllm_figures_in_sqlite_and_on_metrics() {
    let api = Api::start(&shipped_recipes(), POLL, &[], &[]);
    let sid = demo(&api);
    let a = api.post(
        "/api/v1/benchmarks",
        &json!({"service_id": sid, "duration_seconds": 3, "mode": "open_loop",
                "requests_per_second": 20, "arrivals": "constant", "max_concurrency": 4,
                "goodput": {"e2el_ms": 1000}}),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let rid = a.json()["id"].as_str().expect("id").to_string();
    let mut last = Value::Null;
    assert!(
        wait_until(Duration::from_secs(60), || {
            last = run(&api, &rid);
            last["status"] == "completed"
        }),
        "{last:#}\n{}",
        api.log()
    );
    let r = &last["result"];
    let completed = r["completed"].as_u64().expect("completed");
    assert!((50..=70).contains(&completed), "{r:#}");
    assert_eq!(r["request_rate"], 20.0);
    assert_eq!(r["run_id"], rid.as_str());
    assert!(
        r["p99_e2el_ms"].is_number() && r["request_goodput"].is_number(),
        "{r:#}"
    );
    assert_eq!(r["energy_status"], "unavailable");
    assert!(r["energy_joules"].is_null());
    assert!(
        r["energy_unavailable_reason"]
            .as_str()
            .unwrap_or("")
            .contains("Prometheus"),
        "{r:#}"
    );
    let text = api.get("/metrics").body;
    let labels = [("run_id", rid.as_str()), ("service_id", sid.as_str())];
    assert_eq!(
        metric_value(&text, "aif_benchmark_result_completed_requests", &labels),
        Some(completed as f64),
        "{text}"
    );
    assert!(
        metric_value(
            &text,
            "aif_benchmark_result_latency_seconds",
            &[
                ("run_id", rid.as_str()),
                ("metric", "e2el"),
                ("quantile", "0.99")
            ]
        )
        .is_some()
    );
    assert!(metric_value(&text, "aif_benchmark_result_energy_joules", &labels).is_none());
    aif_testbed::promtool_check_metrics(&text).expect("promtool");

    // Bad choices are refused naming the field; a service without a port is 409.
    for (body, field) in [
        (
            json!({"service_id": sid, "duration_seconds": 5, "arrivals": "poisson"}),
            "arrivals",
        ),
        (
            json!({"service_id": sid, "duration_seconds": 5, "mode": "open_loop", "requests_per_second": 5, "arrivals": "gamma"}),
            "burstiness",
        ),
        (
            json!({"service_id": sid, "duration_seconds": 5, "prompts": ["a"]}),
            "prompts",
        ),
        (
            json!({"service_id": sid, "duration_seconds": 5, "goodput": {"ttft_ms": 5}}),
            "goodput.ttft_ms",
        ),
        (
            json!({"service_id": sid, "duration_seconds": 5, "warmup_seconds": 3601}),
            "warmup_seconds",
        ),
        (
            json!({"service_id": sid, "duration_seconds": 5, "workload": "openai_chat", "prompts": []}),
            "prompts",
        ),
    ] {
        let a = api.post("/api/v1/benchmarks", &body);
        assert_eq!(
            (a.status, a.json()["field"].as_str()),
            (400, Some(field)),
            "{body}: {}",
            a.body
        );
    }
    let sleeper = api.create_service("sleep", json!({"seconds": 3600}));
    let sleeper = sleeper["id"].as_str().expect("id").to_string();
    api.wait_service(&sleeper, "running", Duration::from_secs(30));
    let a = api.post(
        "/api/v1/benchmarks",
        &json!({"service_id": sleeper, "duration_seconds": 5}),
    );
    assert_eq!(
        (a.status, a.json()["field"].as_str()),
        (409, Some("service_id")),
        "{}",
        a.body
    );
}

#[test]
fn a_run_whose_service_dies_is_failed_with_the_reason() {
    let recipes = recipes_with(&[("dies.toml", DIES_RECIPE)]);
    let api = Api::start(recipes.path(), POLL, &[], &[]);
    let flag = api.dir.path().join("die-now");
    let svc = api.create_service(
        "dies",
        json!({"port": free_port(), "flag": flag.to_str().expect("utf8")}),
    );
    let sid = svc["id"].as_str().expect("id").to_string();
    api.wait_service(&sid, "running", Duration::from_secs(60));
    let a = api.post(
        "/api/v1/benchmarks",
        &json!({"service_id": sid, "duration_seconds": 300}),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let rid = a.json()["id"].as_str().expect("id").to_string();
    assert!(wait_until(
        Duration::from_secs(30),
        || run(&api, &rid)["progress"]["requests_completed"]
            .as_u64()
            .unwrap_or(0)
            > 0
    ));
    std::fs::write(&flag, "").expect("flag");
    let mut last = Value::Null;
    assert!(
        wait_until(Duration::from_secs(30), || {
            last = run(&api, &rid);
            last["status"] == "failed"
        }),
        "{last:#}"
    );
    let detail = last["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains(&sid) && detail.contains("exited with code 5"),
        "{last:#}"
    );
    // The generator was stopped and its partial result kept.
    assert!(
        wait_until(
            Duration::from_secs(5),
            || run(&api, &rid)["result"]["ended_by"] == "signal"
        ),
        "{:#}",
        run(&api, &rid)
    );
}

#[test]
fn a_run_on_slurm_completes_and_its_result_reaches_the_api() {
    let cluster = SlurmCluster::start().expect("slurm cluster");
    let api = Api::start(
        &shipped_recipes(),
        "poll_interval_ms = 100\n",
        &["--backend", "slurm"],
        &cluster.env(),
    );
    let svc = api.create_service("demo-http", json!({"port": free_port()}));
    let sid = svc["id"].as_str().expect("id").to_string();
    api.wait_service(&sid, "running", Duration::from_secs(90));
    let a = api.post(
        "/api/v1/benchmarks",
        &json!({"service_id": sid, "duration_seconds": 3, "concurrency": 2}),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let rid = a.json()["id"].as_str().expect("id").to_string();
    let mut last = Value::Null;
    assert!(
        wait_until(Duration::from_secs(120), || {
            last = run(&api, &rid);
            last["status"]
                .as_str()
                .is_some_and(|s| s != "pending" && s != "running")
        }),
        "{last:#}\n{}",
        cluster.log_text()
    );
    assert_eq!(last["status"], "completed", "{last:#}\n{}", api.log());
    let r = &last["result"];
    assert!(r["completed"].as_u64().expect("completed") > 0, "{r:#}");
    assert_eq!(r["failed"], 0, "{r:#}");
    let history: Vec<&str> = last["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["status"].as_str())
        .collect();
    assert_eq!(history, ["pending", "running", "completed"], "{last:#}");
}
