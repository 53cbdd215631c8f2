//! `aif-loadgen` against plain HTTP servers the test starts on 127.0.0.1:
//! counts, open-loop rate, coordinated omission, bad input, SIGTERM.

#[macro_use]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aif_testbed::wait_until;
use common::servers::{Behaviour, TestServer};
use serde_json::Value;

fn loadgen(engine: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_aif-loadgen"));
    c.env("RUST_LOG", "warn").arg("--engine").arg(engine);
    c
}

/// Runs to the end; returns (exit code, stdout, stderr, result JSON if written).
fn run(engine: &str, args: &[&str], result: &Path) -> (i32, String, String, Option<Value>) {
    let out = loadgen(engine)
        .args(args)
        .arg("--result-file")
        .arg(result)
        .output()
        .expect("run aif-loadgen");
    let json = std::fs::read(result)
        .ok()
        .map(|b| serde_json::from_slice(&b).expect("result JSON"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        json,
    )
}

fn closed_loop_counts_what_the_server_counted(engine: &str) {
    let server = TestServer::start(Behaviour::Plain);
    let dir = tempfile::tempdir().expect("tempdir");
    let result = dir.path().join("r.json");
    let (code, stdout, stderr, r) = run(
        engine,
        &[
            "--url",
            &server.url(),
            "--concurrency",
            "4",
            "--duration",
            "3s",
        ],
        &result,
    );
    assert_eq!(code, 0, "{stderr}");
    let r = r.expect("result");
    let client = r["completed"].as_u64().unwrap() + r["failed"].as_u64().unwrap();
    let served = server.count();
    eprintln!("closed loop: client {client}, server {served}");
    assert!(served > 100, "too few requests to compare: {served}");
    let diff = (client as f64 - served as f64).abs() / served as f64;
    assert!(
        diff <= 0.01,
        "client {client} vs server {served}: {:.2} %",
        diff * 100.0
    );
    assert_eq!(r["failed"], 0, "{r:#}");
    assert_eq!(r["mode"], "closed_loop");
    assert_eq!(r["max_concurrency"], 4);
    for key in [
        "request_throughput",
        "mean_e2el_ms",
        "median_e2el_ms",
        "p99_e2el_ms",
        "max_e2el_ms",
    ] {
        assert!(r[key].is_number(), "{key} missing: {r:#}");
    }
    assert!(stdout.contains("Successful requests:"), "{stdout}");
}

fn open_loop_achieves_its_rate(engine: &str) {
    let server = TestServer::start(Behaviour::Plain);
    let dir = tempfile::tempdir().expect("tempdir");
    let result = dir.path().join("r.json");
    let (code, _, stderr, r) = run(
        engine,
        &[
            "--url",
            &server.url(),
            "--request-rate",
            "200",
            "--arrivals",
            "constant",
            "--duration",
            "4s",
            "--warmup",
            "1s",
        ],
        &result,
    );
    assert_eq!(code, 0, "{stderr}");
    let r = r.expect("result");
    // The first second is warm-up: sent, not measured.
    assert_eq!(r["duration"], 3.0, "{r:#}");
    let warmup = r["warmup_requests"].as_f64().unwrap();
    assert!((190.0..=210.0).contains(&warmup), "{r:#}");
    let rate = r["request_throughput"].as_f64().unwrap();
    eprintln!(
        "open loop at 200 req/s: achieved {rate} req/s, server counted {}",
        server.count()
    );
    assert!(
        (190.0..=210.0).contains(&rate),
        "achieved {rate} req/s: {r:#}"
    );
    assert_eq!(r["mode"], "open_loop");
    assert_eq!(r["request_rate"], 200.0);
    assert!(r["mean_queue_wait_ms"].is_number(), "{r:#}");
}

fn open_loop_latency_includes_a_stall_that_closed_loop_hides(engine: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    // Open loop: 100 req/s for 4 s; request 150 (1.5 s in) starts a 1 s pause.
    let server = TestServer::start(Behaviour::StallOnce {
        at: 150,
        stall: Duration::from_secs(1),
    });
    let result = dir.path().join("open.json");
    let (code, _, stderr, r) = run(
        engine,
        &[
            "--url",
            &server.url(),
            "--request-rate",
            "100",
            "--arrivals",
            "constant",
            "--duration",
            "4s",
        ],
        &result,
    );
    assert_eq!(code, 0, "{stderr}");
    let r = r.expect("result");
    let p99 = r["p99_e2el_ms"].as_f64().unwrap();
    eprintln!("stall: open-loop p99 {p99} ms, max {}", r["max_e2el_ms"]);
    assert!(
        p99 >= 900.0,
        "open-loop p99 {p99} ms hides the stall: {r:#}"
    );

    // Closed loop, one client: the stall is one slow request among thousands.
    let server = TestServer::start(Behaviour::StallOnce {
        at: 150,
        stall: Duration::from_secs(1),
    });
    let result = dir.path().join("closed.json");
    let (code, _, stderr, r) = run(
        engine,
        &[
            "--url",
            &server.url(),
            "--concurrency",
            "1",
            "--duration",
            "4s",
        ],
        &result,
    );
    assert_eq!(code, 0, "{stderr}");
    let r = r.expect("result");
    let closed_p99 = r["p99_e2el_ms"].as_f64().unwrap();
    eprintln!(
        "stall: closed-loop p99 {closed_p99} ms, max {}",
        r["max_e2el_ms"]
    );
    assert!(r["max_e2el_ms"].as_f64().unwrap() >= 900.0, "{r:#}");
    assert!(closed_p99 < 900.0, "closed loop p99 {closed_p99}: {r:#}");
}

fn bad_input_exits_2_naming_it_before_any_request(engine: &str) {
    let server = TestServer::start(Behaviour::Plain);
    let dir = tempfile::tempdir().expect("tempdir");
    let not_jsonl = dir.path().join("prompts.txt");
    std::fs::write(&not_jsonl, "just a prompt\n").expect("write");
    let url = server.url();
    let np = not_jsonl.to_str().expect("utf8");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--url",
                &url,
                "--duration",
                "1s",
                "--concurrency",
                "1",
                "--bogus",
            ],
            "--bogus",
        ),
        (
            vec!["--url", &url, "--duration", "1s", "--request-rate", "0"],
            "--request-rate",
        ),
        (
            vec![
                "--url",
                "127.0.0.1:1",
                "--duration",
                "1s",
                "--concurrency",
                "1",
            ],
            "--url",
        ),
        (
            vec![
                "--url",
                &url,
                "--duration",
                "1s",
                "--concurrency",
                "1",
                "--workload",
                "completions",
                "--prompt-file",
                np,
            ],
            "not JSONL",
        ),
    ];
    for (args, needle) in cases {
        let out = loadgen(engine).args(&args).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    assert_eq!(server.count(), 0, "a request was sent despite bad input");
}

fn sigterm_stops_within_a_second_and_writes_the_partial_result(engine: &str) {
    let server = TestServer::start(Behaviour::Plain);
    let dir = tempfile::tempdir().expect("tempdir");
    let result = dir.path().join("r.json");
    let mut child = loadgen(engine)
        .args([
            "--url",
            &server.url(),
            "--concurrency",
            "2",
            "--duration",
            "300s",
        ])
        .arg("--result-file")
        .arg(&result)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    assert!(wait_until(Duration::from_secs(20), || server.count() > 50));
    let sent = Instant::now();
    // SAFETY: kill(2) on our own child's PID.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let mut status = None;
    wait_until(Duration::from_secs(5), || {
        status = child.try_wait().expect("wait");
        status.is_some()
    });
    let took = sent.elapsed();
    if status.is_none() {
        let _ = child.kill();
    }
    eprintln!("SIGTERM to exit: {took:?}");
    assert!(took <= Duration::from_secs(1), "took {took:?}");
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    let r: Value = serde_json::from_slice(&std::fs::read(&result).expect("result")).expect("json");
    assert_eq!(r["ended_by"], "signal", "{r:#}");
    assert!(r["completed"].as_u64().unwrap() > 0, "{r:#}");
}

fn failures_are_classified_by_kind(engine: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let result = dir.path().join("r.json");
    let base = |url: &str, extra: &[&str]| {
        let mut v = vec![
            "--url".to_string(),
            url.to_string(),
            "--concurrency".into(),
            "2".into(),
            "--duration".into(),
            "1s".into(),
            "--drain-timeout".into(),
            "2s".into(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let check = |args: Vec<String>, kind: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, stderr, r) = run(engine, &args, &result);
        assert_eq!(code, 0, "{stderr}");
        let r = r.expect("result");
        let failed = r["failed"].as_u64().unwrap();
        eprintln!("{engine}, {kind}: {failed} failed");
        assert!(failed > 0, "{kind}: {r:#}");
        assert_eq!(r["completed"], 0, "{kind}: {r:#}");
        assert_eq!(r["errors_by_kind"][kind], failed, "{kind}: {r:#}");
        r
    };
    // Status >= 400, its body drained: the connection is reused.
    let server = TestServer::start(Behaviour::Status(503));
    let r = check(base(&server.url(), &[]), "http_status");
    let failed = r["failed"].as_u64().unwrap();
    assert!(
        failed > 50 && failed.abs_diff(server.count()) <= 2,
        "{failed} vs {}",
        server.count()
    );
    // Nothing listens.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    check(base(&format!("http://127.0.0.1:{closed}"), &[]), "connect");
    // Slower than --timeout.
    let server = TestServer::start(Behaviour::Serial {
        service: Duration::from_millis(400),
    });
    check(base(&server.url(), &["--timeout", "100ms"]), "timeout");
}

fn open_loop_adds_connections_up_to_max_concurrency(engine: &str) {
    // Every answer takes 100 ms (one event of a chunked stream); 50 req/s
    // need 5 requests in flight.
    let slow = || {
        TestServer::start(Behaviour::Stream {
            first: Duration::from_millis(100),
            every: Duration::from_millis(1),
            tokens: 1,
        })
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let result = dir.path().join("r.json");
    let server = slow();
    let url = server.url();
    let open = [
        "--url",
        &url,
        "--request-rate",
        "50",
        "--arrivals",
        "constant",
        "--duration",
        "2s",
    ];
    let mut capped = open.to_vec();
    capped.extend(["--max-concurrency", "3"]);
    let (code, _, stderr, r) = run(engine, &capped, &result);
    assert_eq!(code, 0, "{stderr}");
    let r = r.expect("result");
    let wait = r["mean_queue_wait_ms"].as_f64().unwrap();
    eprintln!(
        "{engine}: capped at 3: {} clients, mean wait {wait} ms",
        r["clients"]
    );
    assert_eq!(r["failed"], 0, "{r:#}");
    assert!(r["clients"].as_u64().unwrap() <= 3, "{r:#}");
    // 30 req/s served of 50 due: the queue grows.
    assert!(wait > 100.0, "{r:#}");
    let server = slow();
    let url = server.url();
    let open = [
        "--url",
        &url,
        "--request-rate",
        "50",
        "--arrivals",
        "constant",
        "--duration",
        "2s",
    ];
    let (code, _, stderr, r) = run(engine, &open, &result);
    assert_eq!(code, 0, "{stderr}");
    let r = r.expect("result");
    let clients = r["clients"].as_u64().unwrap();
    eprintln!(
        "{engine}: uncapped: {clients} clients, mean wait {} ms",
        r["mean_queue_wait_ms"]
    );
    assert_eq!(r["failed"], 0, "{r:#}");
    assert!((5..=40).contains(&clients), "{r:#}");
    let rate = r["request_throughput"].as_f64().unwrap();
    assert!((45.0..=55.0).contains(&rate), "{r:#}");
}

/// A kept-alive connection must not fall into delayed ACKs: against a
/// server that sends an answer's head and body apart with Nagle on, each
/// answer would then wait for the delayed ACK (~40 ms) instead of ~0.1 ms.
fn a_server_writing_head_and_body_apart_is_not_held_by_delayed_acks(engine: &str) {
    let server = TestServer::start(Behaviour::SplitWrites);
    let dir = tempfile::tempdir().expect("tempdir");
    let result = dir.path().join("r.json");
    let (code, _, stderr, r) = run(
        engine,
        &[
            "--url",
            &server.url(),
            "--request-rate",
            "100",
            "--arrivals",
            "constant",
            "--duration",
            "3s",
        ],
        &result,
    );
    assert_eq!(code, 0, "{stderr}");
    let r = r.expect("result");
    let median = r["median_e2el_ms"].as_f64().unwrap();
    eprintln!(
        "split writes, {engine}: median e2el {median} ms, p99 {}",
        r["p99_e2el_ms"]
    );
    // Far below the 40 ms a delayed ACK costs, far above any scheduling noise.
    assert!(median < 20.0, "{r:#}");
}

both_engines!(
    closed_loop_counts_what_the_server_counted,
    open_loop_achieves_its_rate,
    open_loop_latency_includes_a_stall_that_closed_loop_hides,
    bad_input_exits_2_naming_it_before_any_request,
    sigterm_stops_within_a_second_and_writes_the_partial_result,
    failures_are_classified_by_kind,
    open_loop_adds_connections_up_to_max_concurrency,
    a_server_writing_head_and_body_apart_is_not_held_by_delayed_acks,
);
