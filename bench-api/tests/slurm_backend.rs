//! The Slurm backend against the real single-node Slurm cluster of the testbed
//! (munge + slurmctld + slurmd on 127.0.0.1): here, and through SSH exec to the
//! private sshd.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aif_testbed::{SlurmCluster, Sshd, free_port, http_get, wait_until};
use common::{Api, EXIT_AFTER_RECIPE, recipes_with, slurm_over_ssh};
use serde_json::json;

const GPU_SLEEP_RECIPE: &str = r#"
name = "gpu-sleep"
description = "Sleeps on a (fake) GPU"
category = "test"
argv = ["sleep", "{seconds}"]
[resources]
gpus = 1
cpus = 1
[parameters.seconds]
type = "integer"
default = 3600
min = 1
max = 86400
"#;

/// The state of a job in the completion log (`sacct -c`), once it has one.
fn sacct_state(cluster: &SlurmCluster, job: &str) -> Option<String> {
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

fn config(extra: &str) -> String {
    format!("poll_interval_ms = 100\n{extra}")
}

fn lifecycle(api: &Api, cluster: &SlurmCluster, flag_dir: &Path) {
    // Start → running (health check passed) → reachable → cancel → cancelled.
    let port = free_port();
    let svc = api.create_service("demo-http", json!({"port": port}));
    let id = svc["id"].as_str().expect("id").to_string();
    assert_eq!(svc["backend"], "slurm");
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
    let flag = flag_dir.join("go-now");
    std::fs::write(&flag, "").expect("flag");
    let svc = api.create_service(
        "exit-after",
        json!({"flag": flag.to_str().expect("utf8"), "code": 3}),
    );
    let id = svc["id"].as_str().expect("id").to_string();
    let failed = api.wait_service(&id, "failed", Duration::from_secs(90));
    assert_eq!(failed["exit_code"], 3, "{failed:#}");
    let job = failed["backend_ref"].as_str().expect("job");
    assert_eq!(sacct_state(cluster, job).as_deref(), Some("FAILED|3:0"));
}

#[test]
fn slurm_services_run_cancel_fail_and_get_the_exporter() {
    let cluster = SlurmCluster::start().expect("slurm cluster");
    let recipes = recipes_with(&[
        ("exit-after.toml", EXIT_AFTER_RECIPE),
        ("gpu-sleep.toml", GPU_SLEEP_RECIPE),
    ]);
    let work = tempfile::tempdir().expect("tempdir");
    // A stand-in for aif-node-exporter that records its arguments.
    let args_file = work.path().join("exporter-args");
    let exporter = work.path().join("fake-exporter");
    std::fs::write(
        &exporter,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}.tmp\necho \"SLURM_JOB_ID=$SLURM_JOB_ID\" >> {}.tmp\nmv {}.tmp {}\nexec sleep 3600\n",
            args_file.display(),
            args_file.display(),
            args_file.display(),
            args_file.display()
        ),
    )
    .expect("exporter");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exporter, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let api = Api::start(
        recipes.path(),
        &config(&format!("exporter_binary = \"{}\"\n", exporter.display())),
        &["--backend", "slurm", "--pushgateway", "http://127.0.0.1:9"],
        &cluster.env(),
    );
    lifecycle(&api, &cluster, work.path());

    // A GPU recipe gets the node exporter beside it.
    let svc = api.create_service("gpu-sleep", json!({}));
    let id = svc["id"].as_str().expect("id").to_string();
    let running = api.wait_service(&id, "running", Duration::from_secs(90));
    let job = running["backend_ref"].as_str().expect("job").to_string();
    assert!(
        wait_until(Duration::from_secs(60), || args_file.exists()),
        "exporter not started\n{}",
        cluster.log_text()
    );
    let args = std::fs::read_to_string(&args_file).expect("args");
    let lines: Vec<&str> = args.lines().collect();
    for pair in [
        ["--pushgateway", "http://127.0.0.1:9"],
        ["--label", &format!("service_id={id}")],
        ["--interval", "1s"],
        ["--source", "auto"],
        ["--job", "aif-service"],
    ] {
        assert!(
            lines.windows(2).any(|w| w == pair),
            "{pair:?} missing in {lines:?}"
        );
    }
    assert!(lines.contains(&"--delete-on-exit"), "{lines:?}");
    assert!(
        lines.contains(&format!("SLURM_JOB_ID={job}").as_str()),
        "{lines:?}"
    );
    assert_eq!(
        api.send("DELETE", &format!("/api/v1/services/{id}"), None)
            .status,
        200
    );
    assert!(wait_until(Duration::from_secs(60), || sacct_state(
        &cluster, &job
    )
    .is_some_and(|s| s.starts_with("CANCELLED"))));
}

#[test]
fn slurm_job_that_ends_while_the_api_is_down_is_shown_ended() {
    let cluster = SlurmCluster::start().expect("slurm cluster");
    let recipes = recipes_with(&[("exit-after.toml", EXIT_AFTER_RECIPE)]);
    let work = tempfile::tempdir().expect("tempdir");
    let mut api = Api::start(
        recipes.path(),
        &config(""),
        &["--backend", "slurm"],
        &cluster.env(),
    );
    let flag = work.path().join("flag");
    let svc = api.create_service(
        "exit-after",
        json!({"flag": flag.to_str().expect("utf8"), "code": 4}),
    );
    let id = svc["id"].as_str().expect("id").to_string();
    let job = svc["backend_ref"].as_str().expect("job").to_string();
    api.wait_service(&id, "running", Duration::from_secs(90));
    api.kill();
    std::fs::write(&flag, "").expect("flag");
    assert!(
        wait_until(Duration::from_secs(60), || sacct_state(&cluster, &job)
            .is_some()),
        "job did not end"
    );
    api.restart();
    let svc = api.service(&id);
    assert_eq!(
        (svc["status"].as_str(), svc["exit_code"].as_i64()),
        (Some("failed"), Some(4)),
        "{svc:#}"
    );
}

#[test]
fn slurm_through_ssh_exec() {
    let cluster = SlurmCluster::start().expect("slurm cluster");
    let sshd = Sshd::start().expect("sshd");
    let work = tempfile::tempdir().expect("tempdir");
    let recipes = recipes_with(&[("exit-after.toml", EXIT_AFTER_RECIPE)]);
    let toml = config(&slurm_over_ssh(&sshd, &cluster, work.path()));
    // No SLURM_CONF in the API's own environment: it only reaches Slurm over SSH.
    let api = Api::start(recipes.path(), &toml, &["--backend", "slurm"], &[]);
    lifecycle(&api, &cluster, work.path());
    // A benchmark run over SSH: sbatch, squeue and the result file (`cat`) all
    // go through the SSH runner.
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
    assert!(
        sshd.log_text().contains("Accepted publickey"),
        "{}",
        sshd.log_text()
    );
    assert!(api.log().contains("logged in to"), "{}", api.log());
}
