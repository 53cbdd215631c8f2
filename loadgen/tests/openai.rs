//! `aif-loadgen` against an OpenAI-compatible streaming server written here:
//! first token after 150 ms, then one every 25 ms, 20 tokens. TTFT, ITL, TPOT
//! and E2EL must match at the median within 5 ms; token counts exactly.

#[macro_use]
mod common;

use std::time::Duration;

use common::servers::{Behaviour, TestServer};
use serde_json::Value;

const FIRST_MS: f64 = 150.0;
const EVERY_MS: f64 = 25.0;
const TOKENS: u64 = 20;

fn run(engine: &str, args: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let result = dir.path().join("r.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aif-loadgen"))
        .arg("--engine")
        .arg(engine)
        .args(args)
        .arg("--result-file")
        .arg(&result)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Mean TTFT (ms):"), "{stdout}");
    serde_json::from_slice(&std::fs::read(&result).expect("result")).expect("json")
}

fn close(r: &Value, key: &str, want: f64) {
    let got = r[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing: {r:#}"));
    eprintln!(
        "{key}: {got} ms (configured {want} ms, error {:+.2} ms)",
        got - want
    );
    assert!(
        (got - want).abs() <= 5.0,
        "{key} = {got}, want {want} ± 5: {r:#}"
    );
}

fn server() -> TestServer {
    TestServer::start(Behaviour::Stream {
        first: Duration::from_millis(FIRST_MS as u64),
        every: Duration::from_millis(EVERY_MS as u64),
        tokens: TOKENS,
    })
}

fn completions_timings_match_the_server_and_tokens_are_exact(engine: &str) {
    let server = server();
    let r = run(
        engine,
        &[
            "--url",
            &server.url(),
            "--workload",
            "completions",
            "--concurrency",
            "4",
            "--duration",
            "4s",
            "--prompt",
            "one two three",
            "--prompt",
            "four five six",
            "--model",
            "test-model",
            "--max-tokens",
            "20",
            "--goodput",
            "ttft:100",
            "e2el:2000",
        ],
    );
    let completed = r["completed"].as_u64().unwrap();
    assert!(completed >= 8, "{r:#}");
    assert_eq!(r["failed"], 0, "{r:#}");
    close(&r, "median_ttft_ms", FIRST_MS);
    close(&r, "median_itl_ms", EVERY_MS);
    close(&r, "median_tpot_ms", EVERY_MS);
    close(
        &r,
        "median_e2el_ms",
        FIRST_MS + EVERY_MS * (TOKENS - 1) as f64,
    );
    assert_eq!(r["total_output_tokens"], completed * TOKENS, "{r:#}");
    assert_eq!(r["total_input_tokens"], completed * 3, "{r:#}");
    assert_eq!(r["backend"], "openai");
    // No request can meet a TTFT of 100 ms when the first token takes 150.
    assert_eq!(r["request_goodput"], 0.0, "{r:#}");
    for key in [
        "mean_ttft_ms",
        "p99_ttft_ms",
        "mean_itl_ms",
        "p99_itl_ms",
        "mean_tpot_ms",
        "mean_e2el_ms",
        "output_throughput",
        "request_throughput",
    ] {
        assert!(r[key].is_number(), "{key}: {r:#}");
    }
}

fn chat_open_loop_without_usage_counts_streamed_tokens(engine: &str) {
    let server = server();
    let dir = tempfile::tempdir().expect("tempdir");
    let prompts = dir.path().join("p.jsonl");
    std::fs::write(
        &prompts,
        "{\"prompt\": \"hello there\"}\n{\"prompt\": \"a b c d\"}\n",
    )
    .expect("write");
    let r = run(
        engine,
        &[
            "--url",
            &server.url(),
            "--workload",
            "chat",
            "--request-rate",
            "10",
            "--arrivals",
            "poisson",
            "--seed",
            "3",
            "--duration",
            "3s",
            "--prompt-file",
            prompts.to_str().unwrap(),
            "--no-usage",
        ],
    );
    let completed = r["completed"].as_u64().unwrap();
    assert!(completed >= 10, "{r:#}");
    assert_eq!(r["failed"], 0, "{r:#}");
    assert_eq!(r["total_output_tokens"], completed * TOKENS, "{r:#}");
    assert!(r["total_input_tokens"].is_null(), "{r:#}");
    assert_eq!(r["backend"], "openai-chat");
    close(&r, "median_ttft_ms", FIRST_MS);
    close(&r, "median_itl_ms", EVERY_MS);
}

both_engines!(
    completions_timings_match_the_server_and_tokens_are_exact,
    chat_open_loop_without_usage_counts_streamed_tokens,
);
