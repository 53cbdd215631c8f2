//! A capacity search and a dataset run from the API on the local backend:
//! the sweep reports each step in the run's progress while it runs and its
//! steps and knee in the result; a random dataset's run says so in its
//! result; both show their choices in the run.

mod common;

use std::time::Duration;

use aif_testbed::{free_port, wait_until};
use common::{Api, shipped_recipes};
use serde_json::{Value, json};

const POLL: &str = "poll_interval_ms = 50\nkill_grace_seconds = 5\n";

fn service(api: &Api, recipe: &str) -> String {
    let svc = api.create_service(recipe, json!({"port": free_port()}));
    let id = svc["id"].as_str().expect("id").to_string();
    api.wait_service(&id, "running", Duration::from_secs(60));
    id
}

fn start(api: &Api, body: Value) -> String {
    let a = api.post("/api/v1/benchmarks", &body);
    assert_eq!(a.status, 201, "{}", a.body);
    a.json()["id"].as_str().expect("id").to_string()
}

fn finished(api: &Api, rid: &str) -> Value {
    let mut last = Value::Null;
    assert!(
        wait_until(Duration::from_secs(120), || {
            last = api.get(&format!("/api/v1/benchmarks/{rid}")).json();
            !matches!(last["status"].as_str(), Some("pending" | "running"))
        }),
        "{last:#}\n{}",
        api.log()
    );
    last
}

#[test]
fn a_sweep_run_reports_its_steps_while_running_and_its_knee_at_the_end() {
    let api = Api::start(&shipped_recipes(), POLL, &[], &[]);
    let sid = service(&api, "demo-http");
    let rid = start(
        &api,
        json!({"service_id": sid, "duration_seconds": 1, "mode": "open_loop", "requests_per_second": 5,
               "arrivals": "constant", "goodput": {"e2el_ms": 2000}, "sweep": {"max": 20, "target_percent": 95}}),
    );
    // Progress names the step and its load while the search runs.
    let mut seen = Value::Null;
    assert!(
        wait_until(Duration::from_secs(60), || {
            seen = api.get(&format!("/api/v1/benchmarks/{rid}")).json();
            seen["progress"]["sweep_step"]
                .as_u64()
                .is_some_and(|n| n >= 2)
        }),
        "no step progress: {seen:#}"
    );
    assert_eq!(seen["progress"]["sweep_by"], "rate", "{seen:#}");
    assert_eq!(seen["sweep"]["max"], 20, "{seen:#}");
    let run = finished(&api, &rid);
    assert_eq!(run["status"], "completed", "{run:#}");
    let r = &run["result"];
    let sweep = &r["sweep"];
    let loads: Vec<f64> = sweep["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["load"].as_f64())
        .collect();
    // Python's http.server serves 20 req/s of a directory listing with ease:
    // 5, 10, 20 pass and the search ends at the maximum.
    assert_eq!(loads, vec![5.0, 10.0, 20.0], "{sweep:#}");
    assert_eq!(
        (sweep["knee"].as_f64(), sweep["ended_by"].as_str()),
        (Some(20.0), Some("max")),
        "{sweep:#}"
    );
    assert_eq!(r["request_rate"].as_f64(), Some(20.0), "{r:#}");
}

#[test]
fn a_random_dataset_run_says_which_dataset_fed_it() {
    let api = Api::start(&shipped_recipes(), POLL, &[], &[]);
    let sid = service(&api, "demo-llm");
    let rid = start(
        &api,
        json!({"service_id": sid, "duration_seconds": 2, "concurrency": 2, "workload": "openai_completions",
               "dataset": {"kind": "random", "input_len": 32, "output_len": 8, "range_ratio": 0.25}}),
    );
    let run = finished(&api, &rid);
    assert_eq!(run["status"], "completed", "{run:#}");
    assert_eq!(run["dataset"]["kind"], "random", "{run:#}");
    assert_eq!(run["synthetic_prompt_words"], Value::Null, "{run:#}");
    let r = &run["result"];
    assert_eq!(r["dataset"], "random", "{r:#}");
    assert!(r["completed"].as_u64().is_some_and(|n| n > 0), "{r:#}");
    // A file on the node that does not exist fails the run naming it.
    let rid = start(
        &api,
        json!({"service_id": sid, "duration_seconds": 2, "workload": "openai_chat",
               "dataset": {"kind": "sharegpt", "path": "/nonexistent/sharegpt.json"}}),
    );
    let run = finished(&api, &rid);
    assert_eq!(run["status"], "failed", "{run:#}");
    let detail = run["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("/nonexistent/sharegpt.json"),
        "{run:#}\n{}",
        api.log()
    );
}
