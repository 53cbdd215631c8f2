//! The Slurm backend against the real single-node Slurm cluster of the testbed
//! (munge + slurmctld + slurmd on 127.0.0.1): here, and through SSH exec to the
//! private sshd.

mod common;

use std::time::Duration;

use aif_testbed::{SlurmCluster, Sshd, wait_until};
use common::slurm::{benchmark_run_completes, lifecycle, sacct_state};
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

fn config(extra: &str) -> String {
    format!("poll_interval_ms = 100\n{extra}")
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
    lifecycle(&api, &cluster, work.path(), "slurm");

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
    lifecycle(&api, &cluster, work.path(), "slurm");
    // A benchmark run over SSH: sbatch, squeue and the result file (`cat`) all
    // go through the SSH runner.
    benchmark_run_completes(&api);
    assert!(
        sshd.log_text().contains("Accepted publickey"),
        "{}",
        sshd.log_text()
    );
    assert!(api.log().contains("logged in to"), "{}", api.log());
}
