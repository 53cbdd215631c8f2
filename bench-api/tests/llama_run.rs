//! A benchmark run from the API against a real inference engine: llama.cpp's
//! server (`llama-cpp-python[server]`, installed by `scripts/test.sh`) started
//! as a service on the local backend through the shipped `llama-cpp` recipe, serving the
//! testbed's tiny random-weight model. At temperature 0 every request of the
//! run generates what the engine's own non-streamed `usage` says; the run's
//! result must count exactly that.

mod common;

use std::time::Duration;

use aif_testbed::{free_port, wait_until};
use common::{Api, shipped_recipes};
use serde_json::{Value, json};

const PROMPT: &str = "the city of the world";
const MAX_TOKENS: u64 = 16;

#[test]
fn a_run_on_llama_cpp_counts_what_the_engine_generates() {
    let python = aif_testbed::llama::python().unwrap_or_else(|e| panic!("{e}"));
    let models = tempfile::tempdir().expect("tempdir");
    let model = aif_testbed::llama::write_model(models.path()).unwrap_or_else(|e| panic!("{e}"));
    // The recipe runs `python3` from PATH: the venv's first, as an operator
    // would set it.
    let bin = python.parent().expect("venv bin").display().to_string();
    let path = format!("{bin}:{}", std::env::var("PATH").unwrap_or_default());
    let api = Api::start(
        &shipped_recipes(),
        "poll_interval_ms = 50\n",
        &[],
        &[("PATH".to_string(), path)],
    );
    let port = free_port();
    let svc = api.create_service(
        "llama-cpp",
        json!({"port": port, "model": model.display().to_string(),
               "alias": "tiny", "host": "127.0.0.1", "n_ctx": 1024, "n_gpu_layers": 0}),
    );
    let sid = svc["id"].as_str().expect("id").to_string();
    api.wait_service(&sid, "running", Duration::from_secs(120));

    // The engine's own count, non-streamed.
    let text = ureq::post(&format!("http://127.0.0.1:{port}/v1/completions"))
        .header("Content-Type", "application/json")
        .send(
            serde_json::to_vec(&json!({"model": "tiny", "prompt": PROMPT, "max_tokens": MAX_TOKENS, "temperature": 0.0}))
                .expect("body")
                .as_slice(),
        )
        .expect("non-streamed completion")
        .body_mut()
        .read_to_string()
        .expect("answer");
    let answer: Value = serde_json::from_str(&text).expect("json");
    let want = answer["usage"]["completion_tokens"]
        .as_u64()
        .expect("usage");

    let a = api.post(
        "/api/v1/benchmarks",
        &json!({"service_id": sid, "duration_seconds": 3, "concurrency": 2,
                "workload": "openai_completions", "model": "tiny", "prompts": [PROMPT],
                "max_tokens": MAX_TOKENS, "temperature": 0.0}),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let rid = a.json()["id"].as_str().expect("id").to_string();
    let mut last = Value::Null;
    assert!(
        wait_until(Duration::from_secs(60), || {
            last = api.get(&format!("/api/v1/benchmarks/{rid}")).json();
            last["status"] == "completed"
        }),
        "{last:#}\n{}",
        api.log()
    );
    let r = &last["result"];
    let completed = r["completed"].as_u64().expect("completed");
    let total = r["total_output_tokens"].as_u64().expect("tokens");
    eprintln!(
        "llama.cpp usage {want} tokens per request; the run counted {total} over {completed} requests, source {}",
        r["output_token_source"]
    );
    assert!(completed >= 2, "{r:#}");
    assert_eq!(r["failed"], 0, "{r:#}");
    assert_eq!(total, want * completed, "{r:#}");
    assert_eq!(r["output_token_source"], "events", "{r:#}");
}
