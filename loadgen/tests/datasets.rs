//! `aif-loadgen --dataset sharegpt|random|trace` against a stub
//! OpenAI-compatible server written here that records every request body it
//! received and when: the prompts and `max_tokens` each dataset defines, and a
//! trace replayed at its own times.

mod common;

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

use common::servers::read_request;

/// A request the stub received: when its head was read, and its body.
type Received = Arc<Mutex<Vec<(Instant, Value)>>>;

/// A stub OpenAI server on 127.0.0.1: thread per connection, keep-alive,
/// every answer an SSE stream of three tokens, usage, `[DONE]`.
struct Stub {
    port: u16,
    received: Received,
}

impl Stub {
    fn start() -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let received: Received = Arc::default();
        let r = Arc::clone(&received);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let r = Arc::clone(&r);
                std::thread::spawn(move || serve(conn, &r));
            }
        });
        Stub { port, received }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn received(&self) -> Vec<(Instant, Value)> {
        self.received.lock().unwrap().clone()
    }
}

fn serve(conn: TcpStream, received: &Mutex<Vec<(Instant, Value)>>) {
    let _ = conn.set_nodelay(true);
    let mut w = conn.try_clone().expect("clone");
    let mut r = BufReader::new(conn);
    while let Some((path, body)) = read_request(&mut r) {
        let at = Instant::now();
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        received.lock().unwrap().push((at, v));
        let chat = path.ends_with("/chat/completions");
        let mut sse = String::new();
        for t in ["a", "b", "c"] {
            let choice = if chat {
                serde_json::json!({"delta": {"content": t}})
            } else {
                serde_json::json!({"text": t})
            };
            sse += &format!("data: {}\n\n", serde_json::json!({"choices": [choice]}));
        }
        sse += "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3}}\n\n";
        sse += "data: [DONE]\n\n";
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n",
            sse.len()
        );
        if w.write_all(head.as_bytes()).is_err() || w.write_all(sse.as_bytes()).is_err() {
            return;
        }
    }
}

/// Runs the binary; its exit code, stderr and result JSON (when written).
fn run(args: &[&str], dir: &Path) -> (Option<i32>, String, Option<Value>) {
    let result = dir.join("r.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aif-loadgen"))
        .args(args)
        .arg("--result-file")
        .arg(&result)
        .arg("--progress-every=0s")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let value = std::fs::read(&result)
        .ok()
        .map(|b| serde_json::from_slice(&b).expect("json"));
    (out.status.code(), stderr, value)
}

fn ok_run(args: &[&str], dir: &Path) -> Value {
    let (code, stderr, value) = run(args, dir);
    assert_eq!(code, Some(0), "{stderr}");
    value.expect("result")
}

const SHAREGPT: &str = r#"[
  {"id": "1", "conversations": [
    {"from": "human", "value": "What is a GPU?"},
    {"from": "gpt", "value": "A graphics processing unit, built for parallel work."},
    {"from": "human", "value": "And a TPU?"},
    {"from": "gpt", "value": "A tensor processing unit."}]},
  {"id": "2", "conversations": [{"from": "human", "value": "only one turn"}]},
  {"id": "3", "conversations": [
    {"from": "system", "value": "You are terse."},
    {"from": "human", "value": "Name a prime."},
    {"from": "gpt", "value": "Seven."}]},
  {"id": "4", "conversations": [
    {"from": "human", "value": "Count to five."},
    {"from": "gpt", "value": "one two three four five"}]}
]"#;

#[test]
fn sharegpt_sends_the_first_human_turns_with_the_reference_lengths() {
    let stub = Stub::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("sharegpt.json");
    std::fs::write(&file, SHAREGPT).expect("write");
    let r = ok_run(
        &[
            "--url",
            &stub.url(),
            "--workload",
            "chat",
            "--concurrency",
            "2",
            "--duration",
            "1s",
            "--dataset",
            "sharegpt",
            "--dataset-path",
            file.to_str().unwrap(),
            "--sharegpt-reference-len",
        ],
        dir.path(),
    );
    assert_eq!(
        (r["dataset"].clone(), r["failed"].clone()),
        ("sharegpt".into(), 0.into()),
        "{r:#}"
    );
    assert_eq!(r["num_prompts"], 3, "{r:#}");
    let want = [
        ("What is a GPU?", 8),
        ("Name a prime.", 1),
        ("Count to five.", 5),
    ];
    let got = stub.received();
    assert!(got.len() >= 3, "{got:?}");
    let mut seen = [false; 3];
    for (_, body) in &got {
        let prompt = body["messages"][0]["content"].as_str().expect("content");
        let i = want
            .iter()
            .position(|(p, _)| *p == prompt)
            .unwrap_or_else(|| panic!("unexpected prompt {prompt:?}"));
        assert_eq!(body["max_tokens"], want[i].1, "{body}");
        seen[i] = true;
    }
    assert_eq!(seen, [true; 3]);
}

#[test]
fn random_prompts_share_the_prefix_and_stay_in_the_ranges() {
    let stub = Stub::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let r = ok_run(
        &[
            "--url",
            &stub.url(),
            "--workload",
            "completions",
            "--concurrency",
            "2",
            "--duration",
            "1s",
            "--dataset",
            "random",
            "--input-len",
            "40",
            "--output-len",
            "10",
            "--range-ratio",
            "0.5",
            "--prefix-len",
            "6",
            "--seed",
            "5",
        ],
        dir.path(),
    );
    assert_eq!(
        (r["dataset"].clone(), r["failed"].clone()),
        ("random".into(), 0.into()),
        "{r:#}"
    );
    let got = stub.received();
    assert!(got.len() >= 10, "{}", got.len());
    let first: Vec<String> = got[0].1["prompt"]
        .as_str()
        .unwrap()
        .split(' ')
        .take(6)
        .map(str::to_string)
        .collect();
    let mut distinct = std::collections::BTreeSet::new();
    for (_, body) in &got {
        let words: Vec<&str> = body["prompt"]
            .as_str()
            .expect("prompt")
            .split(' ')
            .collect();
        assert_eq!(words[..6], first[..], "the shared prefix: {body}");
        assert!(
            (20..=60).contains(&(words.len() - 6)),
            "{} words",
            words.len() - 6
        );
        let max = body["max_tokens"].as_u64().expect("max_tokens");
        assert!((5..=15).contains(&max), "{body}");
        distinct.insert(words.len());
    }
    assert!(distinct.len() > 1, "lengths are drawn: {distinct:?}");
}

#[test]
fn a_trace_is_replayed_at_its_own_times() {
    let stub = Stub::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("trace.jsonl");
    let offsets_ms = [0u64, 200, 500, 1100, 1500];
    let text: String = offsets_ms
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                "{{\"timestamp\": {}, \"input_length\": {}, \"output_length\": {}, \"hash_ids\": [{i}]}}\n",
                1_700_000_000_000 + t,
                3 + i,
                10 + i
            )
        })
        .collect();
    std::fs::write(&file, text).expect("write");
    let r = ok_run(
        &[
            "--url",
            &stub.url(),
            "--workload",
            "completions",
            "--dataset",
            "trace",
            "--dataset-path",
            file.to_str().unwrap(),
            "--max-concurrency",
            "8",
        ],
        dir.path(),
    );
    let got = stub.received();
    assert_eq!(got.len(), 5, "{got:?}");
    let t0 = got[0].0;
    for (i, (at, body)) in got.iter().enumerate() {
        // In order: line i has 3 + i words and max_tokens 10 + i.
        let words = body["prompt"].as_str().expect("prompt").split(' ').count();
        assert_eq!(
            (words, body["max_tokens"].as_u64()),
            (3 + i, Some(10 + i as u64)),
            "{body}"
        );
        let rel = at.duration_since(t0).as_millis() as i64;
        let want = offsets_ms[i] as i64;
        eprintln!("request {i}: received at +{rel} ms, trace +{want} ms");
        assert!(
            (rel - want).abs() <= 150,
            "request {i} at +{rel} ms, want +{want} ± 150"
        );
    }
    assert_eq!(
        (r["dataset"].clone(), r["completed"].clone()),
        ("trace".into(), 5.into()),
        "{r:#}"
    );
    assert_eq!(
        (r["arrivals"].clone(), r["ended_by"].clone()),
        ("trace".into(), "duration".into()),
        "{r:#}"
    );
    assert_eq!(r["planned_duration_seconds"], 1.501, "{r:#}");
    for key in [
        "mean_lateness_ms",
        "median_lateness_ms",
        "p99_lateness_ms",
        "max_lateness_ms",
    ] {
        let v = r[key].as_f64().unwrap_or_else(|| panic!("{key}: {r:#}"));
        assert!((0.0..1000.0).contains(&v), "{key} {v}");
    }
}

#[test]
fn bad_dataset_input_exits_2_naming_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.json");
    std::fs::write(
        &file,
        r#"[{"conversations": []}, {"conversations": [{"value": "x"}]}]"#,
    )
    .expect("write");
    let path = file.to_str().unwrap();
    let base = ["--url", "http://127.0.0.1:9", "--workload", "completions"];
    for (extra, want) in [
        (
            &[
                "--concurrency",
                "1",
                "--duration",
                "1s",
                "--dataset",
                "sharegpt",
                "--dataset-path",
                path,
            ][..],
            "entry 1",
        ),
        (
            &[
                "--max-concurrency",
                "1",
                "--dataset",
                "trace",
                "--dataset-path",
                path,
            ],
            "--dataset-path: ",
        ),
        (
            &[
                "--request-rate",
                "1",
                "--dataset",
                "trace",
                "--dataset-path",
                path,
            ],
            "--request-rate does not go with --dataset trace",
        ),
        (
            &[
                "--concurrency",
                "1",
                "--duration",
                "1s",
                "--dataset",
                "random",
                "--range-ratio",
                "1.5",
            ],
            "--range-ratio",
        ),
    ] {
        let (code, stderr, _) = run(&[&base[..], extra].concat(), dir.path());
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains(want), "{extra:?}: {stderr}");
    }
}
