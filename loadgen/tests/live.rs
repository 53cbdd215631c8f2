//! Live metrics of `aif-loadgen` through the real Pushgateway: progress while
//! it runs, the final figures when the group is kept, no group when not; and
//! the same through an SSH local forward (the exporter's `--ssh-*` flags).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use aif_testbed::{KeyFormat, KeyKind, Pushgateway, Sshd, metric_value, wait_until};
use common::servers::{Behaviour, TestServer};
use serde_json::Value;

fn loadgen() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_aif-loadgen"));
    c.env("RUST_LOG", "info");
    c
}

#[test]
fn live_metrics_reach_the_pushgateway_and_the_group_goes_at_the_end() {
    let pgw = Pushgateway::start().expect("pushgateway");
    let server = TestServer::start(Behaviour::Stream {
        first: Duration::from_millis(20),
        every: Duration::from_millis(5),
        tokens: 10,
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let result = dir.path().join("r.json");
    let mut child = loadgen()
        .args([
            "--url",
            &server.url(),
            "--workload",
            "completions",
            "--prompt",
            "a b",
            "--concurrency",
            "2",
            "--duration",
            "4s",
            "--run-id",
            "run-live1",
            "--service-id",
            "svc-live1",
            "--pushgateway",
            &pgw.url(),
            "--push-interval",
            "200ms",
            "--keep-group",
        ])
        .arg("--result-file")
        .arg(&result)
        .arg("--buffer")
        .arg(dir.path().join("live.sqlite"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let labels = [
        ("run_id", "run-live1"),
        ("service_id", "svc-live1"),
        ("job", "aif_benchmark"),
    ];
    // While it runs: requests counted and progress between 0 and 1.
    let mut seen = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            let text = pgw.metrics_text().unwrap_or_default();
            seen = metric_value(&text, "aif_benchmark_progress_ratio", &labels).zip(metric_value(
                &text,
                "aif_benchmark_requests_total",
                &labels,
            ));
            seen.is_some_and(|(p, n)| p > 0.0 && p < 1.0 && n > 0.0)
        }),
        "no live progress: {seen:?}\n{}",
        pgw.metrics_text().unwrap_or_default()
    );
    let status = child.wait().expect("wait");
    assert!(status.success());
    let r: Value = serde_json::from_slice(&std::fs::read(&result).expect("result")).expect("json");
    let text = pgw.metrics_text().expect("metrics");
    assert_eq!(
        metric_value(&text, "aif_benchmark_requests_total", &labels),
        r["completed"].as_f64(),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "aif_benchmark_output_tokens_total", &labels),
        r["total_output_tokens"].as_f64()
    );
    let inf = metric_value(
        &text,
        "aif_benchmark_request_duration_seconds_bucket",
        &[("run_id", "run-live1"), ("le", "+Inf")],
    );
    assert_eq!(inf, r["completed"].as_f64(), "{text}");
    assert_eq!(
        metric_value(&text, "aif_benchmark_progress_ratio", &labels),
        Some(1.0)
    );
    assert!(
        !dir.path().join("live.sqlite").exists(),
        "buffer file left behind"
    );

    // Without --keep-group the group is deleted at the end.
    let mut child = loadgen()
        .args([
            "--url",
            &server.url(),
            "--workload",
            "completions",
            "--prompt",
            "a",
            "--concurrency",
            "1",
            "--duration",
            "2s",
            "--run-id",
            "run-live2",
            "--pushgateway",
            &pgw.url(),
            "--push-interval",
            "200ms",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    assert!(wait_until(Duration::from_secs(20), || {
        metric_value(
            &pgw.metrics_text().unwrap_or_default(),
            "aif_benchmark_requests_total",
            &[("run_id", "run-live2")],
        )
        .is_some()
    }));
    assert!(child.wait().expect("wait").success());
    let text = pgw.metrics_text().expect("metrics");
    assert!(!text.contains("run-live2"), "group not deleted:\n{text}");
}

#[test]
fn live_metrics_through_an_ssh_local_forward() {
    let pgw = Pushgateway::start().expect("pushgateway");
    let sshd = Sshd::start().expect("sshd");
    let key = sshd
        .client_key("id_loadgen", KeyKind::Ed25519, KeyFormat::OpenSsh, None)
        .expect("key");
    let dir = tempfile::tempdir().expect("tempdir");
    let known_hosts = dir.path().join("known_hosts");
    sshd.write_known_hosts(&known_hosts).expect("known_hosts");
    let server = TestServer::start(Behaviour::Plain);
    let status = loadgen()
        .args([
            "--url",
            &server.url(),
            "--concurrency",
            "1",
            "--duration",
            "3s",
            "--run-id",
            "run-ssh1",
            "--pushgateway",
            &pgw.url(),
            "--push-interval",
            "200ms",
            "--keep-group",
            "--ssh-host",
            "127.0.0.1",
            "--ssh-port",
            &sshd.port().to_string(),
            "--ssh-user",
            &sshd.user(),
        ])
        .arg("--ssh-identity")
        .arg(&key.private)
        .arg("--ssh-known-hosts")
        .arg(&known_hosts)
        .stdout(Stdio::null())
        .status()
        .expect("run");
    assert!(status.success());
    let text = pgw.metrics_text().expect("metrics");
    let n = metric_value(
        &text,
        "aif_benchmark_requests_total",
        &[("run_id", "run-ssh1")],
    );
    assert!(
        n.is_some_and(|n| n > 0.0),
        "nothing pushed through the tunnel:\n{text}"
    );
    assert!(
        sshd.log_text().contains("Accepted publickey"),
        "{}",
        sshd.log_text()
    );
}
