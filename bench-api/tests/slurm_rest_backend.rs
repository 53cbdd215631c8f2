//! The slurm-rest backend against the testbed's real slurmrestd (Debian
//! 22.05, API v0.0.38, `rest_auth/jwt`) in front of the single-node cluster:
//! on 127.0.0.1, on a Unix socket, and through the SSH local forward to the
//! private sshd.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aif_testbed::{
    KeyFormat, KeyKind, RestdAuth, RestdListen, SlurmCluster, SlurmOptions, SlurmRestd, Sshd,
    free_port, wait_until,
};
use common::slurm::{benchmark_run_completes, lifecycle, sacct_state};
use common::{Api, EXIT_AFTER_RECIPE, recipes_with};
use serde_json::json;

const GPU_SLEEP_RECIPE: &str = r#"
name = "gpu-sleep"
description = "Sleeps on a (fake) GPU"
category = "test"
argv = ["sleep", "3600"]
[resources]
gpus = 1
cpus = 1
memory = "64M"
time_limit = "10:00"
"#;

fn cluster() -> SlurmCluster {
    SlurmCluster::start_with(SlurmOptions { jwt: true }).expect("slurm cluster with auth/jwt")
}

/// A directory the job user (`nobody`) can read and write: job output, flags.
struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Work {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let logs = dir.path().join("slurm-logs");
        std::fs::create_dir(&logs).expect("logs");
        std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        Work { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn token_file(&self) -> PathBuf {
        self.path().join("slurm.jwt")
    }
    /// `[slurm]` and `[slurm.rest]` for `url`, plus `more` keys of `[slurm.rest]`.
    fn config(&self, url: &str, more: &str) -> String {
        format!(
            "poll_interval_ms = 100\n[slurm]\nlog_dir = \"{logs}\"\n[slurm.rest]\nurl = \"{url}\"\nuser = \"{user}\"\ntoken_file = \"{tf}\"\n{more}",
            logs = self.path().join("slurm-logs").display(),
            user = SlurmRestd::JOB_USER,
            tf = self.token_file().display(),
        )
    }
}

fn write_token(path: &Path, token: &str) {
    // As `scontrol token` prints it; written whole, then renamed into place.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("SLURM_JWT={token}\n")).expect("token");
    std::fs::rename(&tmp, path).expect("token");
}

#[test]
fn slurm_rest_services_run_cancel_fail_and_ask_for_gpus() {
    let cluster = cluster();
    let restd = SlurmRestd::start(&cluster, RestdListen::Tcp).expect("slurmrestd");
    let work = Work::new();
    let token = cluster.token(SlurmRestd::JOB_USER, 3600).expect("token");
    write_token(&work.token_file(), &token);
    let recipes = recipes_with(&[
        ("exit-after.toml", EXIT_AFTER_RECIPE),
        ("gpu-sleep.toml", GPU_SLEEP_RECIPE),
    ]);
    // The most verbose logging of ours and of the HTTP client: still no token.
    let api = Api::start(
        recipes.path(),
        &work.config(&restd.url(), ""),
        &["--backend", "slurm-rest"],
        &[(
            "RUST_LOG".to_string(),
            "info,aif_bench_api=debug,ureq=trace,ureq_proto=trace".to_string(),
        )],
    );
    lifecycle(&api, &cluster, work.path(), "slurm-rest");
    assert!(
        api.log().contains("HEADERS ARE REDACTED"),
        "the HTTP client's trace is not in the log: the check below would prove nothing"
    );
    // Discovered from the server's OpenAPI document (it offers v0.0.37 and v0.0.38).
    assert!(api.log().contains("using v0.0.38"), "{}", api.log());
    // GPUs, memory and time limit reach Slurm as numbers and gres.
    let svc = api.create_service("gpu-sleep", json!({}));
    let id = svc["id"].as_str().expect("id").to_string();
    let running = api.wait_service(&id, "running", Duration::from_secs(90));
    let job = running["backend_ref"].as_str().expect("job").to_string();
    let show = Command::new("scontrol")
        .args(["show", "job", &job])
        .envs(cluster.env())
        .output()
        .expect("scontrol");
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(show.contains("gpu:1"), "{show}");
    assert!(show.contains("TimeLimit=00:10:00"), "{show}");
    assert!(
        show.contains(&format!("UserId={}", SlurmRestd::JOB_USER)),
        "{show}"
    );
    assert_eq!(
        api.send("DELETE", &format!("/api/v1/services/{id}"), None)
            .status,
        200
    );
    // The token is never logged, though the lines about reading it and
    // submitting with it are there, word for word.
    let log = api.log();
    assert!(!log.contains(&token), "token in the API log");
    let read = format!(
        "slurm-rest: token of user {} read from {} (expires in ",
        SlurmRestd::JOB_USER,
        work.token_file().display()
    );
    assert!(log.contains(&read), "no `{read}` in the log:\n{log}");
    let submitted = format!(
        "slurm-rest: submitted service {id} (gpu-sleep) as job {job} via {} (v0.0.38, user {})",
        restd.url(),
        SlurmRestd::JOB_USER
    );
    assert!(
        log.lines().any(|l| l.ends_with(&submitted)),
        "no line ending in `{submitted}` in the log:\n{log}"
    );
}

#[test]
fn wrong_or_expired_token_is_a_clear_error_and_the_service_goes_unknown() {
    let cluster = cluster();
    let restd = SlurmRestd::start(&cluster, RestdListen::Tcp).expect("slurmrestd");
    let work = Work::new();
    let token = cluster.token(SlurmRestd::JOB_USER, 3600).expect("token");
    write_token(&work.token_file(), &token);
    let recipes = recipes_with(&[("exit-after.toml", EXIT_AFTER_RECIPE)]);
    let api = Api::start(
        recipes.path(),
        &work.config(&restd.url(), ""),
        &["--backend", "slurm-rest"],
        &[],
    );
    // The program is looked up on the compute node: not checked here.
    let recipes = api.get("/api/v1/recipes").json();
    for r in recipes.as_array().expect("array") {
        assert_eq!(r["runnable"], "unknown", "{r}");
    }
    let flag = work.path().join("never");
    let svc = api.create_service(
        "exit-after",
        json!({"flag": flag.to_str().expect("utf8"), "code": 0}),
    );
    let id = svc["id"].as_str().expect("id").to_string();
    api.wait_service(&id, "running", Duration::from_secs(90));

    // A wrong token (well-formed, bad signature): slurmctld refuses it.
    let (head, _sig) = token.rsplit_once('.').expect("jwt");
    write_token(
        &work.token_file(),
        &format!("{head}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    );
    let unknown = api.wait_service(&id, "unknown", Duration::from_secs(30));
    let detail = unknown["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("refused the credentials") && detail.contains("scontrol token"),
        "{unknown:#}"
    );
    // Slurm 22.05 says "Unable to find JobId=N" for the refused token while
    // the job runs: that is not passed on as if it were the job's state.
    assert!(!detail.contains("Unable to find JobId"), "{unknown:#}");
    // A new service is not started, and says why.
    let a = api.post(
        "/api/v1/services",
        &json!({"recipe": "exit-after", "params": {"flag": "/nonexistent", "code": 0}}),
    );
    assert_eq!(a.status, 502, "{}", a.body);
    assert!(a.body.contains("refused the credentials"), "{}", a.body);

    // A file that holds no JWT at all: said so, with how to write one.
    write_token(&work.token_file(), "hello");
    let mut unknown = serde_json::Value::Null;
    let said = wait_until(Duration::from_secs(30), || {
        unknown = api.service(&id);
        unknown["detail"]
            .as_str()
            .is_some_and(|d| d.contains("does not hold a JWT"))
    });
    assert!(said, "{unknown:#}");
    let detail = unknown["detail"].as_str().unwrap_or("");
    assert!(
        unknown["status"] == "unknown" && detail.contains("scontrol token username=nobody"),
        "{unknown:#}"
    );

    // A renewed token (the file is read again): back to running, and the
    // reason no longer speaks of the token.
    let fresh = cluster.token(SlurmRestd::JOB_USER, 3600).expect("token");
    write_token(&work.token_file(), &fresh);
    let running = api.wait_service(&id, "running", Duration::from_secs(60));
    assert!(
        !running["detail"].as_str().unwrap_or("").contains("token"),
        "{running:#}"
    );

    // An expired token: said so plainly, and the service is unknown again.
    let short = cluster.token(SlurmRestd::JOB_USER, 1).expect("token");
    write_token(&work.token_file(), &short);
    let unknown = api.wait_service(&id, "unknown", Duration::from_secs(30));
    let detail = unknown["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("expired") && detail.contains("scontrol token username=nobody"),
        "{unknown:#}"
    );
    write_token(&work.token_file(), &fresh);
    api.wait_service(&id, "running", Duration::from_secs(60));
    for t in [&token, &short, &fresh] {
        assert!(!api.log().contains(t.as_str()), "a token is in the API log");
    }
}

#[test]
fn slurm_rest_job_that_ends_while_the_api_is_down_is_shown_ended() {
    let cluster = cluster();
    let restd = SlurmRestd::start(&cluster, RestdListen::Unix).expect("slurmrestd");
    let work = Work::new();
    write_token(
        &work.token_file(),
        &cluster.token(SlurmRestd::JOB_USER, 3600).expect("token"),
    );
    let recipes = recipes_with(&[("exit-after.toml", EXIT_AFTER_RECIPE)]);
    // Over slurmrestd's Unix socket (JWT), API version pinned.
    let mut api = Api::start(
        recipes.path(),
        &work.config(&restd.url(), "api_version = \"v0.0.38\"\n"),
        &["--backend", "slurm-rest"],
        &[],
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
    let mut svc = json!(null);
    assert!(
        wait_until(Duration::from_secs(30), || {
            svc = api.service(&id);
            svc["status"] == "failed"
        }),
        "{svc:#}\n{}",
        api.log()
    );
    assert_eq!(svc["exit_code"], 4, "{svc:#}");
    assert!(api.log().contains("unix:"), "{}", api.log());

    // Without a token (rest_auth/local) a JWT slurmrestd answers 401: said
    // plainly, nothing started.
    let toml = format!(
        "[slurm]\nlog_dir = \"{}\"\n[slurm.rest]\nurl = \"{}\"\n",
        work.path().join("slurm-logs").display(),
        restd.url()
    );
    let no_token = Api::start(recipes.path(), &toml, &["--backend", "slurm-rest"], &[]);
    let a = no_token.post(
        "/api/v1/services",
        &json!({"recipe": "exit-after", "params": {"flag": "/nonexistent", "code": 0}}),
    );
    assert_eq!(a.status, 502, "{}", a.body);
    assert!(
        a.body.contains("HTTP 401") && a.body.contains("refused the credentials"),
        "{}",
        a.body
    );
}

#[test]
fn slurm_rest_over_a_unix_socket_with_rest_auth_local() {
    let cluster = cluster();
    let restd =
        SlurmRestd::start_with(&cluster, RestdListen::Unix, RestdAuth::Local).expect("slurmrestd");
    let work = Work::new();
    let recipes = recipes_with(&[("exit-after.toml", EXIT_AFTER_RECIPE)]);
    // No token: slurmrestd knows the socket's peer.
    let toml = format!(
        "poll_interval_ms = 100\n[slurm]\nlog_dir = \"{}\"\n[slurm.rest]\nurl = \"{}\"\n",
        work.path().join("slurm-logs").display(),
        restd.url()
    );
    let api = Api::start(recipes.path(), &toml, &["--backend", "slurm-rest"], &[]);
    lifecycle(&api, &cluster, work.path(), "slurm-rest");
    assert!(
        restd.log_text().contains("rest_auth/local"),
        "{}",
        restd.log_text()
    );
    let jobs = Command::new("squeue")
        .args(["-h", "-t", "all", "-o", "%u"])
        .envs(cluster.env())
        .output()
        .expect("squeue");
    assert!(
        String::from_utf8_lossy(&jobs.stdout).contains(SlurmRestd::LOCAL_USER),
        "{}",
        String::from_utf8_lossy(&jobs.stdout)
    );
}

#[test]
fn slurm_rest_through_the_ssh_local_forward() {
    let cluster = cluster();
    let restd = SlurmRestd::start(&cluster, RestdListen::Tcp).expect("slurmrestd");
    let sshd = Sshd::start().expect("sshd");
    let key = sshd
        .client_key("id_api", KeyKind::Ed25519, KeyFormat::OpenSsh, None)
        .expect("client key");
    let work = Work::new();
    let known_hosts = work.path().join("known_hosts");
    sshd.write_known_hosts(&known_hosts).expect("known_hosts");
    write_token(
        &work.token_file(),
        &cluster.token(SlurmRestd::JOB_USER, 3600).expect("token"),
    );
    let recipes = recipes_with(&[("exit-after.toml", EXIT_AFTER_RECIPE)]);
    let ssh = |kh: &Path| {
        format!(
            "[slurm.rest.ssh]\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"{user}\"\nidentity_file = \"{key}\"\nknown_hosts = \"{kh}\"\n",
            port = sshd.port(),
            user = sshd.user(),
            key = key.private.display(),
            kh = kh.display(),
        )
    };
    // The URL as the login node sees it: its own loopback.
    let url = format!("http://127.0.0.1:{}", restd.port().expect("tcp"));
    // A host key that does not match: refused at start, naming the host.
    let wrong = work.path().join("wrong_known_hosts");
    std::fs::write(
        &wrong,
        format!(
            "[127.0.0.1]:{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKxsA0m2c9Wl6YbIanXwD4+2a0D3GQ6Ff1EC1o2bOp0a\n",
            sshd.port()
        ),
    )
    .expect("known_hosts");
    let out = Command::new(common::binary())
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--db")
        .arg(work.path().join("refused.sqlite"))
        .arg("--config")
        .arg({
            let c = work.path().join("refused.toml");
            std::fs::write(&c, work.config(&url, &ssh(&wrong))).expect("config");
            c
        })
        .args(["--backend", "slurm-rest"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("SSH forward") && stderr.to_lowercase().contains("host key"),
        "{stderr}"
    );

    let api = Api::start(
        recipes.path(),
        &work.config(&url, &ssh(&known_hosts)),
        &["--backend", "slurm-rest"],
        &[],
    );
    lifecycle(&api, &cluster, work.path(), "slurm-rest");
    assert!(api.log().contains("SSH forward"), "{}", api.log());
    // A benchmark run is a job too: submitted, watched and collected through
    // the forward (its result file is in the shared `log_dir`).
    benchmark_run_completes(&api);
    assert!(
        sshd.log_text().contains("Accepted publickey"),
        "{}",
        sshd.log_text()
    );
}
