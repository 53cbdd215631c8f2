//! The reverse tunnel (`--reverse-tunnel`) against the real testbed: the Slurm
//! cluster driven over SSH through the private sshd (the "login node"), and a
//! real Pushgateway the jobs can only reach through the login node's
//! forwarded port.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aif_testbed::{
    Prometheus, Pushgateway, SlurmCluster, Sshd, free_port, metric_value, port_open, raw_samples,
    wait_until,
};
use common::{Api, recipes_with, slurm_over_ssh};
use gpu_metrics::sink::{RemoteWriteBuilder, RemoteWriteSink, Sink};
use gpu_metrics::{Batch, Labels, MetricKind, Series, now_ms};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// A GPU service that also answers HTTP, so a benchmark run can target it.
const GPU_HTTP_RECIPE: &str = r#"
name = "gpu-http"
description = "HTTP server on a (fake) GPU"
category = "test"
argv = ["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
port = "{port}"
health_path = "/"
startup_timeout_seconds = 60
[resources]
gpus = 1
cpus = 1
memory = "256M"
[parameters.port]
type = "integer"
min = 1024
max = 65535
"#;

/// A stand-in for `aif-node-exporter`: records its arguments, then pushes a
/// series to the `--pushgateway` URL it was given, every 200 ms.
fn fake_exporter(path: &std::path::Path, args_file: &std::path::Path) {
    std::fs::write(
        path,
        format!(
            r#"#!/usr/bin/env python3
import os, sys, time, urllib.request
args = sys.argv[1:]
with open({args:?} + ".tmp", "w") as f:
    f.write("\n".join(args) + "\n")
os.rename({args:?} + ".tmp", {args:?})
url = args[args.index("--pushgateway") + 1]
sid = [a for a in args if a.startswith("service_id=")][0].split("=", 1)[1]
n = 0
while True:
    n += 1
    req = urllib.request.Request(url + "/metrics/job/fake-exporter/service_id/" + sid,
                                 data=("aif_fake_exporter_pushes %d\n" % n).encode(), method="PUT")
    try:
        urllib.request.urlopen(req, timeout=5).read()
    except Exception as e:
        print("push failed:", e, file=sys.stderr, flush=True)
    time.sleep(0.2)
"#,
            args = args_file.display().to_string()
        ),
    )
    .expect("fake exporter");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The value of the series `name{forward="pushgateway",port="PORT"}`.
fn tunnel_metric(api: &Api, name: &str, port: u16) -> Option<f64> {
    forward_metric(api, name, "pushgateway", port)
}

/// The value of the series `name{forward="FORWARD",port="PORT"}`.
fn forward_metric(api: &Api, name: &str, forward: &str, port: u16) -> Option<f64> {
    metric_value(
        &api.get("/metrics").body,
        name,
        &[("forward", forward), ("port", &port.to_string())],
    )
}

/// Waits until the Pushgateway forward's `up` gauge reads `want` (and, when
/// `reconnects` is given, `reconnects_total` is at least that); panics with
/// the API's `/metrics` and log otherwise.
fn wait_up(api: &Api, port: u16, want: f64, reconnects: Option<f64>) {
    assert!(
        wait_until(WAIT, || {
            tunnel_metric(api, "aif_api_reverse_tunnel_up", port) == Some(want)
                && reconnects.is_none_or(|r| {
                    tunnel_metric(api, "aif_api_reverse_tunnel_reconnects_total", port)
                        .is_some_and(|n| n >= r)
                })
        }),
        "up != {want} (reconnects {reconnects:?}):\n{}\n{}",
        api.get("/metrics").body,
        api.log()
    );
}

/// Pushes `aif_rt_test value` to `base` until it is accepted, then checks the
/// Pushgateway holds it.
fn push_arrives(pgw: &Pushgateway, base: &str, value: u64) {
    assert!(
        wait_until(WAIT, || push(base, "aif_rt_test", value) == Ok(200)),
        "no push through {base}"
    );
    assert_eq!(
        pushed(pgw, "aif_rt_test", &[("job", "reverse-tunnel-test")]),
        Some(value as f64)
    );
}

/// PUTs `name value` to the group `job/reverse-tunnel-test` at `base`.
fn push(base: &str, name: &str, value: u64) -> Result<u16, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .put(&format!("{base}/metrics/job/reverse-tunnel-test"))
        .send(format!("{name} {value}\n"))
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

fn has_series(pgw: &Pushgateway, needle: &str) -> bool {
    pgw.metrics_text().is_ok_and(|t| t.contains(needle))
}

/// The value of the pushed series `name{…labels…}` in the Pushgateway.
fn pushed(pgw: &Pushgateway, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metric_value(&pgw.metrics_text().ok()?, name, labels)
}

/// Remote-writes one sample `aif_rt_remote_write{via="tunnel"} 1` to `url`.
fn remote_write(url: &str, ts: i64) -> bool {
    let mut b = Batch::new(ts);
    b.push(
        Arc::new(Series::new(
            "aif_rt_remote_write",
            MetricKind::Gauge,
            Labels::from_pairs([("via", "tunnel")]),
        )),
        1.0,
    );
    let mut sink = RemoteWriteSink::new(
        RemoteWriteBuilder::new(url)
            .job("reverse-tunnel-test")
            .instance("test")
            .build()
            .expect("remote-write client"),
    );
    sink.deliver(&[Arc::new(b)]).is_ok()
}

fn listening(port: u16) -> bool {
    port_open(SocketAddr::from(([127, 0, 0, 1], port)))
}

#[test]
fn reverse_tunnel_carries_job_pushes_comes_back_after_sshd_restarts_and_closes_when_idle() {
    let cluster = SlurmCluster::start().expect("slurm cluster");
    let mut sshd = Sshd::start().expect("sshd");
    let pgw = Pushgateway::start().expect("pushgateway");
    let prom = Prometheus::start("").expect("prometheus");
    let work = tempfile::tempdir().expect("tempdir");
    let args_file = work.path().join("exporter-args");
    let exporter = work.path().join("fake-exporter");
    fake_exporter(&exporter, &args_file);
    let recipes = recipes_with(&[("gpu-http.toml", GPU_HTTP_RECIPE)]);
    let tunnel_port = free_port();
    let rw_port = free_port();
    let toml = format!(
        "poll_interval_ms = 100\nexporter_binary = \"{}\"\nreverse_tunnel_linger_seconds = 0\n{}",
        exporter.display(),
        slurm_over_ssh(&sshd, &cluster, work.path()),
    );
    let mut api = Api::start(
        recipes.path(),
        &toml,
        &[
            "--backend",
            "slurm",
            "--pushgateway",
            &pgw.url(),
            "--reverse-tunnel",
            &tunnel_port.to_string(),
            "--remote-write",
            &prom.remote_write_url(),
            "--reverse-tunnel-remote-write-port",
            &rw_port.to_string(),
        ],
        &[],
    );
    let forwarded = format!("http://127.0.0.1:{tunnel_port}");
    let forwarded_rw = format!("http://127.0.0.1:{rw_port}/api/v1/write");

    // Nothing on the cluster: no forward.
    assert_eq!(
        tunnel_metric(&api, "aif_api_reverse_tunnel_held", tunnel_port),
        Some(0.0),
        "{}",
        api.get("/metrics").body
    );
    assert!(!listening(tunnel_port));

    // A GPU service: the forward opens, and its exporter is handed the
    // login node's port, through which its pushes arrive.
    let svc_port = free_port();
    let svc = api.create_service("gpu-http", json!({"port": svc_port}));
    let sid = svc["id"].as_str().expect("id").to_string();
    api.wait_service(&sid, "running", Duration::from_secs(90));
    assert!(
        wait_until(WAIT, || args_file.exists()),
        "exporter not started\n{}",
        cluster.log_text()
    );
    let args = std::fs::read_to_string(&args_file).expect("args");
    let lines: Vec<&str> = args.lines().collect();
    assert!(
        lines
            .windows(2)
            .any(|w| w == ["--pushgateway", forwarded.as_str()]),
        "{lines:?}"
    );
    assert!(
        lines
            .windows(2)
            .any(|w| w == ["--remote-write", forwarded_rw.as_str()]),
        "{lines:?}"
    );
    let exporter_pushes = || pushed(&pgw, "aif_fake_exporter_pushes", &[("service_id", &sid)]);
    assert!(
        wait_until(WAIT, || exporter_pushes().is_some()),
        "the exporter's push never arrived:\n{}\n{}",
        pgw.metrics_text().unwrap_or_default(),
        api.log()
    );
    wait_up(&api, tunnel_port, 1.0, None);
    assert_eq!(
        tunnel_metric(&api, "aif_api_reverse_tunnel_held", tunnel_port),
        Some(1.0)
    );
    push_arrives(&pgw, &forwarded, 1);
    // The second forward leads to the remote-write receiver.
    assert!(wait_until(WAIT, || forward_metric(
        &api,
        "aif_api_reverse_tunnel_up",
        "remote_write",
        rw_port
    ) == Some(1.0)));
    let ts = now_ms();
    assert!(
        remote_write(&forwarded_rw, ts),
        "remote-write through the tunnel failed"
    );
    let sel = r#"aif_rt_remote_write{via="tunnel",job="reverse-tunnel-test"}"#;
    assert!(
        wait_until(WAIT, || raw_samples(&prom.url(), sel, "1h")
            .is_ok_and(|s| s == vec![(ts, 1.0)])),
        "{:?}",
        raw_samples(&prom.url(), sel, "1h")
    );

    // A benchmark run's load generator pushes its live figures there too.
    let a = api.post(
        "/api/v1/benchmarks",
        &json!({"service_id": sid, "duration_seconds": 4}),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let rid = a.json()["id"].as_str().expect("id").to_string();
    assert!(
        wait_until(Duration::from_secs(90), || has_series(
            &pgw,
            &format!("run_id=\"{rid}\"")
        )),
        "no live metrics of run {rid} arrived:\n{}\n{}",
        pgw.metrics_text().unwrap_or_default(),
        api.log()
    );
    let mut run = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(120), || {
            run = api.get(&format!("/api/v1/benchmarks/{rid}")).json();
            run["status"] == "completed"
        }),
        "{run:#}"
    );

    // After an API restart (kill -9) the monitor's first pass reopens it for
    // the service still running.
    api.restart();
    wait_up(&api, tunnel_port, 1.0, None);
    push_arrives(&pgw, &forwarded, 2);

    // The login node goes away and comes back: the forward follows.
    sshd.kill();
    wait_up(&api, tunnel_port, 0.0, None);
    assert!(!listening(tunnel_port));
    // The exporter's pushes fail meanwhile; they grow again once it is back.
    let before = exporter_pushes().expect("exporter series");
    sshd.restart().expect("restart sshd");
    wait_up(&api, tunnel_port, 1.0, Some(1.0));
    push_arrives(&pgw, &forwarded, 3);
    assert!(
        wait_until(WAIT, || exporter_pushes().is_some_and(|n| n > before)),
        "the exporter's pushes did not resume"
    );

    // Nothing left on the cluster: the forward is closed (linger 0 here).
    assert_eq!(
        api.send("DELETE", &format!("/api/v1/services/{sid}"), None)
            .status,
        200
    );
    assert!(
        wait_until(WAIT, || tunnel_metric(
            &api,
            "aif_api_reverse_tunnel_held",
            tunnel_port
        ) == Some(0.0)
            && !listening(tunnel_port)),
        "{}",
        api.get("/metrics").body
    );
    assert_eq!(
        tunnel_metric(&api, "aif_api_reverse_tunnel_opens_total", tunnel_port),
        Some(1.0)
    );
    assert!(api.log().contains("reverse tunnel closed"), "{}", api.log());
}
