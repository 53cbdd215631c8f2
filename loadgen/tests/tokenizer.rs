//! `--tokenizer FILE`: `aif-loadgen` counts prompt and output tokens with a
//! `tokenizer.json` written here (a WordLevel model, a Whitespace
//! pre-tokenizer, a vocabulary of a few dozen words plus `[UNK]`), against
//! the streaming stub, whose usage counts words instead (no network, no
//! model hub).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use aif_loadgen::tokenizer::Tokenizer;
use common::servers::{Behaviour, TestServer};
use serde_json::{Value, json};

/// Tokens of each answer: the stub streams `t0 ` .. `t19 `.
const TOKENS: u64 = 20;

/// The vocabulary: some words of the prompts, and `t0`..`t9` of the stub's
/// text, so `t10`..`t19` are unknown (`[UNK]`, one token each all the same).
fn vocab() -> Vec<String> {
    let words = [
        "the", "a", "an", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "hello",
        "world", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "red", "green", "blue", "cat", "sat", "on", "mat", ",", "!", ".",
    ];
    let mut v: Vec<String> = words.iter().map(|w| (*w).to_string()).collect();
    v.extend((0..10).map(|i| format!("t{i}")));
    v
}

/// Writes the tokenizer.json into `dir`.
fn write_tokenizer(dir: &Path) -> PathBuf {
    let mut vocab_map = serde_json::Map::new();
    vocab_map.insert("[UNK]".into(), json!(0));
    for (i, w) in vocab().into_iter().enumerate() {
        vocab_map.insert(w, json!(i + 1));
    }
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [{
            "id": 0, "content": "[UNK]", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true
        }],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab_map, "unk_token": "[UNK]"}
    });
    let f = dir.join("tokenizer.json");
    std::fs::write(&f, tokenizer.to_string()).expect("write tokenizer");
    f
}

/// What the tokenizer gives for `text`, without special tokens, and how
/// many of those are `[UNK]`.
fn tokens(f: &Path, text: &str) -> (u64, u64) {
    let t = Tokenizer::from_file(f).expect("tokenizer");
    let e = t.encode(text, false).expect("encode");
    let unknown = e.get_ids().iter().filter(|id| **id == 0).count();
    (e.len() as u64, unknown as u64)
}

/// The stub's whole answer.
fn answer() -> String {
    (0..TOKENS).map(|i| format!("t{i} ")).collect()
}

fn run(args: &[&str], result: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_aif-loadgen"))
        .args(args)
        .arg("--result-file")
        .arg(result)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run")
}

fn server() -> TestServer {
    TestServer::start(Behaviour::Stream {
        first: Duration::from_millis(20),
        every: Duration::from_millis(5),
        tokens: TOKENS,
    })
}

/// A 1 s closed-loop run of one client with `--tokenizer tok`; its result.
fn counted_run(tok: &Path, workload: &str, prompt: &str, extra: &[&str]) -> Value {
    let server = server();
    let dir = tempfile::tempdir().expect("tempdir");
    let result = dir.path().join("r.json");
    let url = server.url();
    let mut args = vec![
        "--url",
        &url,
        "--workload",
        workload,
        "--tokenizer",
        tok.to_str().expect("utf-8"),
        "--prompt",
        prompt,
        "--concurrency",
        "1",
        "--duration",
        "1s",
    ];
    args.extend_from_slice(extra);
    let out = run(&args, &result);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("tokenizer"),
        "the summary names the source: {stdout}"
    );
    serde_json::from_slice(&std::fs::read(&result).expect("result")).expect("json")
}

#[test]
fn completions_tokens_are_the_tokenizers_not_the_servers() {
    // The stub's usage says 3 prompt tokens (words); the tokenizer sees 5:
    // "hello" "," "world" "!" "zebra" (unknown).
    let prompt = "hello, world! zebra";
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = write_tokenizer(dir.path());
    let r = counted_run(&tok, "completions", prompt, &[]);
    let (input, input_unknown) = tokens(&tok, prompt);
    let (output, output_unknown) = tokens(&tok, &answer());
    assert_eq!((input, input_unknown), (5, 1));
    assert_eq!((output, output_unknown), (TOKENS, TOKENS - 10));
    let completed = r["completed"].as_u64().expect("completed");
    assert!(completed >= 2, "{r:#}");
    assert_eq!(r["failed"], 0, "{r:#}");
    assert_eq!(r["output_token_source"], "tokenizer", "{r:#}");
    assert_eq!(r["output_token_sources"], json!({"tokenizer": completed}));
    assert_eq!(r["total_output_tokens"], completed * output, "{r:#}");
    assert_eq!(r["total_input_tokens"], completed * input, "{r:#}");
    assert!(r["median_tpot_ms"].is_number(), "{r:#}");
}

#[test]
fn chat_without_usage_counts_the_content_and_the_user_message() {
    let prompt = "the quick brown fox. the lazy dog!";
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = write_tokenizer(dir.path());
    let r = counted_run(&tok, "chat", prompt, &["--no-usage"]);
    let (input, _) = tokens(&tok, prompt);
    let (output, _) = tokens(&tok, &answer());
    assert_eq!(input, 9);
    let completed = r["completed"].as_u64().expect("completed");
    assert!(completed >= 2, "{r:#}");
    assert_eq!(r["output_token_source"], "tokenizer", "{r:#}");
    assert_eq!(r["total_output_tokens"], completed * output, "{r:#}");
    // Without usage the server gives no prompt tokens: the tokenizer does.
    assert_eq!(r["total_input_tokens"], completed * input, "{r:#}");
}

#[test]
fn a_bad_tokenizer_file_is_refused_before_any_request() {
    let server = server();
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"model\": {}}").expect("write");
    let missing = dir.path().join("missing.json");
    for f in [&bad, &missing] {
        let out = run(
            &[
                "--url",
                &server.url(),
                "--workload",
                "completions",
                "--tokenizer",
                f.to_str().expect("utf-8"),
                "--prompt",
                "x",
                "--concurrency",
                "1",
                "--duration",
                "1s",
            ],
            &dir.path().join("r.json"),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("--tokenizer") && stderr.contains(f.to_str().expect("utf-8")),
            "{stderr}"
        );
    }
    assert_eq!(server.count(), 0, "no request was sent");
}
