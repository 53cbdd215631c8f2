//! What the two Slurm backends' end-to-end tests share.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aif_testbed::{SlurmCluster, free_port, http_get, wait_until};
use serde_json::json;

use super::Api;

/// The state of a job in the completion log (`sacct -c`), once it has one.
pub fn sacct_state(cluster: &SlurmCluster, job: &str) -> Option<String> {
    let out = Command::new("sacct")
        .args(["-c", "-n", "-P", "-j", job, "-o", "JobID,State,ExitCode"])
        .envs(cluster.env())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.split('|').next() == Some(job))
        .map(|l| l.split('|').skip(1).collect::<Vec<_>>().join("|"))
}

/// Start → running (health check passed) → reachable → cancel → cancelled in
/// Slurm; then a failing job → failed with its exit code. `backend` is the
/// API's backend (`slurm` or `slurm-rest`).
pub fn lifecycle(api: &Api, cluster: &SlurmCluster, flag_dir: &Path, backend: &str) {
    // Start → running (health check passed) → reachable → cancel → cancelled.
    let port = free_port();
    let svc = api.create_service("demo-http", json!({"port": port}));
    let id = svc["id"].as_str().expect("id").to_string();
    assert_eq!(svc["backend"], backend, "{svc:#}");
    let job = svc["backend_ref"].as_str().expect("job id").to_string();
    assert!(job.parse::<u64>().is_ok(), "{svc:#}");
    let running = api.wait_service(&id, "running", Duration::from_secs(90));
    assert_eq!(running["host"], "localhost", "{running:#}");
    assert!(
        running["detail"]
            .as_str()
            .unwrap_or("")
            .contains("health check"),
        "{running:#}"
    );
    assert_eq!(
        http_get(&format!("http://127.0.0.1:{port}/"))
            .expect("reachable")
            .0,
        200
    );
    let targets = api.get("/api/v1/services/targets").json();
    assert_eq!(
        targets[0]["targets"],
        json!([format!("localhost:{port}")]),
        "{targets:#}"
    );
    let a = api.send("DELETE", &format!("/api/v1/services/{id}"), None);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["status"], "cancelled");
    assert!(
        wait_until(Duration::from_secs(60), || sacct_state(cluster, &job)
            .is_some_and(|s| s.starts_with("CANCELLED"))),
        "job {job} not cancelled in Slurm: {:?}",
        sacct_state(cluster, &job)
    );
    assert!(wait_until(Duration::from_secs(30), || http_get(&format!(
        "http://127.0.0.1:{port}/"
    ))
    .is_err()));
    assert_eq!(api.service(&id)["status"], "cancelled");

    // A failing job → failed with its exit code.
    let flag = flag_dir.join(format!("go-{}", free_port()));
    std::fs::write(&flag, "").expect("flag");
    let svc = api.create_service(
        "exit-after",
        json!({"flag": flag.to_str().expect("utf8"), "code": 3}),
    );
    let id = svc["id"].as_str().expect("id").to_string();
    let failed = api.wait_service(&id, "failed", Duration::from_secs(90));
    assert_eq!(failed["exit_code"], 3, "{failed:#}");
    let job = failed["backend_ref"].as_str().expect("job");
    assert!(
        wait_until(Duration::from_secs(30), || sacct_state(cluster, job)
            .as_deref()
            == Some("FAILED|3:0")),
        "{:?}",
        sacct_state(cluster, job)
    );
}

/// A 2 s benchmark run against a fresh `demo-http` service completes with
/// requests counted (submitted, watched and collected through the backend).
pub fn benchmark_run_completes(api: &Api) {
    let svc = api.create_service("demo-http", json!({"port": free_port()}));
    let sid = svc["id"].as_str().expect("id").to_string();
    api.wait_service(&sid, "running", Duration::from_secs(90));
    let a = api.post(
        "/api/v1/benchmarks",
        &json!({"service_id": sid, "duration_seconds": 2}),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let rid = a.json()["id"].as_str().expect("id").to_string();
    let mut run = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(120), || {
            run = api.get(&format!("/api/v1/benchmarks/{rid}")).json();
            run["status"] == "completed"
        }),
        "{run:#}\n{}",
        api.log()
    );
    assert!(
        run["result"]["completed"].as_u64().unwrap_or(0) > 0,
        "{run:#}"
    );
}
