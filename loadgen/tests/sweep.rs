//! `aif-loadgen --sweep rate` against a server of known capacity: one
//! request at a time, 25 ms each (40 req/s). Below 40 req/s every request
//! takes 25 ms; above it the queue grows without bound. With an E2EL SLO of
//! 60 ms the largest rate meeting it is the capacity, and the search must
//! land within 10 % of it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::servers::{Behaviour, TestServer};
use serde_json::Value;

/// The server's capacity, req/s.
const CAPACITY: f64 = 40.0;

#[test]
fn rate_sweep_finds_the_capacity_of_a_serial_server() {
    let server = TestServer::start(Behaviour::Serial {
        service: Duration::from_secs_f64(1.0 / CAPACITY),
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let result = dir.path().join("r.json");
    let progress = dir.path().join("p.json");
    let out = Command::new(env!("CARGO_BIN_EXE_aif-loadgen"))
        .args(["--url", &server.url(), "--sweep", "rate"])
        .args(["--sweep-min", "5", "--sweep-max", "400"])
        .args(["--sweep-step-duration", "2s", "--sweep-tolerance", "5"])
        .args(["--goodput", "e2el:60", "--arrivals", "constant"])
        .args(["--max-concurrency", "64", "--progress-every", "0"])
        .arg("--result-file")
        .arg(&result)
        .arg("--progress-file")
        .arg(&progress)
        .env("RUST_LOG", "info")
        .output()
        .expect("run aif-loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let r: Value = serde_json::from_slice(&std::fs::read(&result).expect("result")).expect("json");
    let sweep = &r["sweep"];
    eprintln!("{stdout}");
    let knee = sweep["knee"]
        .as_f64()
        .unwrap_or_else(|| panic!("no knee: {sweep:#}"));
    assert!(
        (knee - CAPACITY).abs() <= 0.1 * CAPACITY,
        "knee {knee} req/s, capacity {CAPACITY}: {sweep:#}"
    );
    assert_eq!(sweep["ended_by"], "converged", "{sweep:#}");
    let steps = sweep["steps"].as_array().expect("steps");
    // Growth doubled from 5 until a step failed, then bisected.
    let loads: Vec<f64> = steps.iter().filter_map(|s| s["load"].as_f64()).collect();
    assert_eq!(&loads[..4], &[5.0, 10.0, 20.0, 40.0], "{loads:?}");
    assert!(steps.iter().any(|s| s["passed"] == false), "{sweep:#}");
    // The result is the knee step's own: its rate and figures.
    assert_eq!(r["request_rate"].as_f64(), Some(knee), "{r:#}");
    assert_eq!(r["ended_by"], "duration");
    assert!(
        r["median_e2el_ms"].as_f64().is_some_and(|ms| ms < 60.0),
        "{r:#}"
    );
    // The table of steps on stdout, the last step in the progress file.
    assert!(stdout.contains("SLO capacity search"), "{stdout}");
    assert!(stdout.contains(&format!("knee: rate {knee}")), "{stdout}");
    let p: Value =
        serde_json::from_slice(&std::fs::read(&progress).expect("progress")).expect("json");
    assert_eq!(p["sweep_step"].as_u64(), Some(steps.len() as u64), "{p:#}");
    assert_eq!(p["sweep_load"], *loads.last().unwrap(), "{p:#}");
}

#[test]
fn sweep_flags_are_refused_without_their_pieces() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_aif-loadgen"))
            .args(["--url", "http://127.0.0.1:9"])
            .args(args)
            .output()
            .expect("run aif-loadgen");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (args, needle) in [
        (&["--sweep", "rate", "--sweep-max", "10"][..], "--goodput"),
        (&["--sweep", "rate", "--goodput", "e2el:5"][..], "sweep-max"),
        (
            &[
                "--sweep",
                "rate",
                "--sweep-max",
                "9",
                "--goodput",
                "e2el:5",
                "--request-rate",
                "3",
            ][..],
            "request-rate",
        ),
        (
            &[
                "--sweep",
                "concurrency",
                "--sweep-max",
                "2.5",
                "--goodput",
                "e2el:5",
            ][..],
            "integer",
        ),
        (
            &["--sweep", "load", "--sweep-max", "9", "--goodput", "e2el:5"][..],
            "rate, concurrency",
        ),
        (
            &["--concurrency", "1", "--duration", "1s", "--sweep-max", "9"][..],
            "--sweep",
        ),
    ] {
        let (code, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
