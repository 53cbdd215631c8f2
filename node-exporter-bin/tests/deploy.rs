//! The files in `deploy/` work as documented.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use aif_testbed::{Pushgateway, metric_value, require_binary, wait_until};
use support::EXE;

fn deploy(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(rel)
}

#[test]
fn sample_config_parses_with_every_key() {
    let sample = std::fs::read_to_string(deploy("node-exporter.toml")).expect("sample");
    // Uncomment every commented `key = value` line: all keys must be accepted.
    let all_keys: String = sample
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.split_once(" = ").is_some_and(|(k, _)| {
                    k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                }) =>
            {
                rest.to_string()
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("all.toml");
    // Point file-valued keys at files that exist so validation passes.
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "x").expect("pw");
    let all_keys = all_keys
        .replace("/etc/aif/pushgateway.password", pw.to_str().expect("utf8"))
        .replace("/etc/aif/remote-write.password", pw.to_str().expect("utf8"))
        .replace("source = \"auto\"", "source = \"simulated\"");
    std::fs::write(&cfg, &all_keys).expect("write");
    let o = Command::new(EXE)
        .args(["--config", cfg.to_str().expect("utf8"), "--once"])
        .output()
        .expect("spawn");
    assert!(
        o.status.success(),
        "{}\n---\n{all_keys}",
        String::from_utf8_lossy(&o.stderr)
    );
    for key in [
        "source",
        "gpus",
        "seed",
        "nvml_lib",
        "processes",
        "metric_names",
        "interval",
        "buffer",
        "buffer_max_bytes",
        "durability",
        "pushgateway",
        "job",
        "instance",
        "pushgateway_user",
        "pushgateway_password_file",
        "push_retry_initial",
        "push_retry_max",
        "push_timeout",
        "delete_on_exit",
        "listen",
        "ssh_host",
        "ssh_port",
        "ssh_user",
        "ssh_identity",
        "ssh_known_hosts",
        "ssh_accept_new",
        "once",
        "dcgm_host_label",
        "remote_write",
        "remote_write_user",
        "remote_write_password_file",
        "remote_write_max_samples",
    ] {
        assert!(
            all_keys
                .lines()
                .any(|l| l.starts_with(&format!("{key} = "))),
            "sample lacks {key}"
        );
    }
}

#[test]
fn prometheus_config_passes_promtool() {
    let promtool = require_binary("promtool", "prometheus").unwrap_or_else(|e| panic!("{e}"));
    let o = Command::new(promtool)
        .args(["check", "config", "--syntax-only"])
        .arg(deploy("prometheus/prometheus.yml"))
        .output()
        .expect("promtool");
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn slurm_prolog_starts_a_labelled_exporter_and_epilog_deletes_its_group() {
    let pgw = Pushgateway::start().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("exporter.toml");
    std::fs::write(
        &cfg,
        format!(
            "source = \"simulated\"\ngpus = 2\ninterval = \"100ms\"\npushgateway = \"{}\"\ninstance = \"node-slurm\"\n",
            pgw.url()
        ),
    )
    .expect("config");
    let env = |c: &mut Command| {
        c.env("SLURM_JOB_ID", "4242")
            .env("AIF_EXPORTER", EXE)
            .env("AIF_EXPORTER_CONFIG", &cfg)
            .env("AIF_RUNDIR", dir.path().join("run"))
            .env("AIF_STATEDIR", dir.path().join("state"));
    };
    let mut prolog = Command::new("bash");
    prolog.arg(deploy("slurm/prolog.sh"));
    env(&mut prolog);
    assert!(prolog.status().expect("prolog").success());
    let labelled = [
        ("instance", "node-slurm"),
        ("slurm_job_id", "4242"),
        ("gpu", "1"),
    ];
    assert!(
        wait_until(Duration::from_secs(15), || pgw.metrics_text().is_ok_and(
            |t| metric_value(&t, "aif_gpu_up", &labelled) == Some(1.0)
        )),
        "job's exporter never pushed; log:\n{}",
        std::fs::read_to_string(dir.path().join("state/job-4242.log")).unwrap_or_default()
    );
    let pid: i32 = std::fs::read_to_string(dir.path().join("run/job-4242.pid"))
        .expect("pidfile")
        .trim()
        .parse()
        .expect("pid");
    let mut epilog = Command::new("bash");
    epilog.arg(deploy("slurm/epilog.sh"));
    env(&mut epilog);
    assert!(epilog.status().expect("epilog").success());
    // SAFETY: kill(pid, 0) only probes for existence.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    assert!(!alive, "exporter {pid} still running after the epilog");
    let text = pgw.metrics_text().expect("metrics");
    assert!(
        !text.contains("slurm_job_id=\"4242\""),
        "group not deleted:\n{text}"
    );
    assert!(!dir.path().join("run/job-4242.pid").exists());
}

/// Runs `deploy/slurm/{script}` for job `job` with `cfg`; returns (success,
/// stderr).
fn slurm_script(
    script: &str,
    job: &str,
    cfg: &std::path::Path,
    dir: &std::path::Path,
) -> (bool, String) {
    let o = Command::new("bash")
        .arg(deploy(&format!("slurm/{script}")))
        .env("SLURM_JOB_ID", job)
        .env("AIF_EXPORTER", EXE)
        .env("AIF_EXPORTER_CONFIG", cfg)
        .env("AIF_RUNDIR", dir.join("run"))
        .env("AIF_STATEDIR", dir.join("state"))
        .output()
        .expect(script);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn slurm_prolog_without_a_pushgateway_starts_an_exporter_that_keeps_running() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("exporter.toml");
    let listen = format!("127.0.0.1:{}", aif_testbed::free_port());
    // No pushgateway: the exporter only buffers and serves /metrics. The
    // prolog used to pass --delete-on-exit anyway, and the exporter exited 2.
    std::fs::write(
        &cfg,
        format!("source = \"simulated\"\ngpus = 1\ninterval = \"100ms\"\nlisten = \"{listen}\"\n"),
    )
    .expect("config");
    let (ok, err) = slurm_script("prolog.sh", "5151", &cfg, dir.path());
    assert!(ok, "{err}");
    assert!(err.contains("started aif-node-exporter pid="), "{err}");
    let pid: i32 = std::fs::read_to_string(dir.path().join("run/job-5151.pid"))
        .expect("pidfile")
        .trim()
        .parse()
        .expect("pid");
    // It serves: the exporter really runs, not just "started" in a log.
    assert!(
        wait_until(Duration::from_secs(10), || {
            aif_testbed::http_get(&format!("http://{listen}/metrics")).is_ok_and(|(s, body)| {
                s == 200
                    && metric_value(&body, "aif_gpu_up", &[("slurm_job_id", "5151")]) == Some(1.0)
            })
        }),
        "exporter not serving; log:\n{}",
        std::fs::read_to_string(dir.path().join("state/job-5151.log")).unwrap_or_default()
    );
    let log = std::fs::read_to_string(dir.path().join("state/job-5151.log")).expect("log");
    assert!(!log.contains("delete_on_exit"), "{log}");
    let (ok, err) = slurm_script("epilog.sh", "5151", &cfg, dir.path());
    assert!(ok, "{err}");
    // SAFETY: kill(pid, 0) only probes for existence.
    assert!(
        unsafe { libc::kill(pid, 0) } != 0,
        "exporter {pid} still running"
    );
}

#[test]
fn slurm_prolog_reports_an_exporter_that_fails_to_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("exporter.toml");
    std::fs::write(&cfg, "source = \"simulated\"\ninterval = \"0s\"\n").expect("config");
    let (ok, err) = slurm_script("prolog.sh", "5252", &cfg, dir.path());
    // A failing prolog would drain the node: it still exits 0, but says why.
    assert!(ok, "{err}");
    assert!(err.contains("failed to start (exit 2)"), "{err}");
    assert!(
        err.contains("interval"),
        "the exporter's reason is relayed: {err}"
    );
    assert!(!err.contains("started aif-node-exporter"), "{err}");
    assert!(!dir.path().join("run/job-5252.pid").exists());
}

#[test]
fn systemd_unit_runs_the_exporter_with_its_state_directory() {
    let unit = std::fs::read_to_string(deploy("systemd/aif-node-exporter.service")).expect("unit");
    for needle in [
        "DynamicUser=yes",
        "StateDirectory=aif-node-exporter",
        "Restart=always",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "--buffer ${STATE_DIRECTORY}/buffer.db",
        "KillSignal=SIGTERM",
    ] {
        assert!(unit.contains(needle), "unit lacks {needle}");
    }
}

#[test]
fn the_repository_root_holds_no_file_named_like_a_mistyped_redirect() {
    // A file `0` (the output of a shell loop, `cmd >0` for `cmd >&0` or
    // `2>0` for `2>/dev/null`) was once committed at the root. Scripts run
    // from the root (scripts/, benches/); a stray redirect target lands here.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let stray: Vec<String> = std::fs::read_dir(&root)
        .expect("repository root")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert!(
        stray.is_empty(),
        "stray files at the repository root: {stray:?}"
    );
}
