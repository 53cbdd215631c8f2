//! `aif-loadgen` against a real inference engine: llama.cpp's server
//! (`llama-cpp-python[server]`, installed by `scripts/test.sh`) serving a tiny
//! random-weight llama model written by the testbed. At temperature 0 the
//! engine is deterministic, so its own non-streamed `usage` says how many
//! tokens each prompt generates; the streamed run must count exactly that
//! many per request. llama.cpp sends one event per token, ignores
//! `stream_options.include_usage`, and sends tokens that are part of a
//! multi-byte character with empty text: the counts come from the events.

use std::process::Command;

use aif_testbed::LlamaServer;
use serde_json::{Value, json};

/// `max_tokens` of every request.
const MAX_TOKENS: u64 = 16;

/// The prompts: each run sends one, so that every request of it has the
/// same truth.
const PROMPTS: [&str; 2] = ["the city of the world", "benchmark latency of the server"];

/// The engine's own count for `prompt`: a non-streamed request at
/// temperature 0, its `usage.completion_tokens`.
fn truth(server: &LlamaServer, api: &str, prompt: &str) -> u64 {
    let (path, body) = request(api, prompt);
    let mut body = body;
    body["stream"] = json!(false);
    let text = ureq::post(&format!("{}{path}", server.url()))
        .header("Content-Type", "application/json")
        .send(serde_json::to_vec(&body).expect("body").as_slice())
        .unwrap_or_else(|e| panic!("{path}: {e}\n{}", server.log_tail()))
        .body_mut()
        .read_to_string()
        .expect("answer");
    let answer: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let n = answer["usage"]["completion_tokens"]
        .as_u64()
        .unwrap_or_else(|| panic!("no usage: {answer:#}"));
    assert!(n > 0, "{answer:#}");
    n
}

fn request(api: &str, prompt: &str) -> (&'static str, Value) {
    match api {
        "completions" => (
            "/v1/completions",
            json!({"model": LlamaServer::MODEL, "prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0.0}),
        ),
        _ => (
            "/v1/chat/completions",
            json!({"model": LlamaServer::MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": MAX_TOKENS, "temperature": 0.0}),
        ),
    }
}

/// One streamed run of `prompt`, closed loop with 2 clients for 3 s.
fn run(server: &LlamaServer, api: &str, prompt: &str) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let result = dir.path().join("r.json");
    let out = Command::new(env!("CARGO_BIN_EXE_aif-loadgen"))
        .args([
            "--url",
            &server.url(),
            "--workload",
            api,
            "--model",
            LlamaServer::MODEL,
        ])
        .args(["--prompt", prompt, "--max-tokens", &MAX_TOKENS.to_string()])
        .args([
            "--temperature",
            "0",
            "--concurrency",
            "2",
            "--duration",
            "3s",
        ])
        .arg("--result-file")
        .arg(&result)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run aif-loadgen");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(&result).expect("result")).expect("json")
}

fn counts_are_exact(api: &str) {
    let server = LlamaServer::start().unwrap_or_else(|e| panic!("llama.cpp server: {e}"));
    for prompt in PROMPTS {
        let want = truth(&server, api, prompt);
        let r = run(&server, api, prompt);
        let completed = r["completed"].as_u64().expect("completed");
        assert!(completed >= 2, "{r:#}");
        assert_eq!(r["failed"].as_u64(), Some(0), "{r:#}");
        let total = r["total_output_tokens"]
            .as_u64()
            .expect("total_output_tokens");
        eprintln!(
            "{api} {prompt:?}: llama.cpp usage {want} tokens per request; aif-loadgen {total} over {completed} requests ({:.2} each), source {}",
            total as f64 / completed as f64,
            r["output_token_source"]
        );
        assert_eq!(total, want * completed, "{api} {prompt:?}: {r:#}");
        assert_eq!(r["output_token_source"], "events", "{r:#}");
    }
}

#[test]
fn completions_streamed_count_what_llama_cpp_generates() {
    counts_are_exact("completions");
}

#[test]
fn chat_streamed_count_what_llama_cpp_generates() {
    counts_are_exact("chat");
}
