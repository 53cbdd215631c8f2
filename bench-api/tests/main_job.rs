//! The main job as a newcomer runs it (issue 17): `scripts/run.sh` from a
//! clean data directory, then the commands it prints, then SIGTERM. The
//! demo service's benchmark result must carry measured energy (the exporter
//! beside it samples simulated GPUs attributed to the service), and the
//! platform must stop cleanly: exit status 143, every process it started
//! gone, the demo service cancelled.
//!
//! The dev binaries `scripts/test.sh` built are used (`AIF_PROFILE=dev`,
//! `AIF_SKIP_BUILD=1`); ports and the data directory are the test's own.

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aif_testbed::{free_port, wait_until};
use serde_json::Value;

/// The workspace root (this crate's parent).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `scripts/run.sh` in its own process group; the group is killed on drop.
struct RunSh {
    child: Option<Child>,
    out: PathBuf,
}

impl RunSh {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for RunSh {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM first, so that run.sh cancels the services the API
            // started (they run in process groups of their own); then the
            // whole group.
            // SAFETY: kill(2) on our child and the process group we made.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            wait_until(Duration::from_secs(30), || {
                c.try_wait().ok().flatten().is_some()
            });
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- scripts/run.sh output ---\n{}", self.output());
        }
    }
}

fn alive(pid: i32) -> bool {
    // A zombie is gone for our purpose: /proc/PID/stat says `Z`.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn the_main_job_and_its_printed_commands_show_energy_and_stop_cleanly_on_sigterm() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = data.path().join("run.sh.out");
    let ports: Vec<String> = (0..6).map(|_| free_port().to_string()).collect();
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("scripts/run.sh"))
        .current_dir(root())
        .env("AIF_PROFILE", "dev")
        .env("AIF_SKIP_BUILD", "1")
        .env("AIF_DATA_DIR", data.path().join("data"))
        .env("AIF_PUSHGATEWAY_PORT", &ports[0])
        .env("AIF_PROMETHEUS_PORT", &ports[1])
        .env("AIF_API_PORT", &ports[2])
        .env("AIF_EXPORTER_PORT", &ports[3])
        .env("AIF_GRAFANA_PORT", &ports[4])
        .env("AIF_DEMO_PORT", &ports[5])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("out"))
        .stderr(
            std::fs::File::options()
                .append(true)
                .open(&out)
                .expect("out"),
        )
        .process_group(0);
    let mut run = RunSh {
        child: Some(cmd.spawn().expect("spawn scripts/run.sh")),
        out,
    };
    assert!(
        wait_until(Duration::from_secs(180), || run
            .output()
            .contains("the platform is up")),
        "scripts/run.sh did not come up"
    );
    let text = run.output();
    // The printed commands: the indented lines from `api=` on.
    let commands: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("api="))
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert!(commands.len() >= 5, "printed commands: {commands:?}");
    let script = commands.join("\n");
    let started = Instant::now();
    let mut demo = Command::new("bash")
        .args(["-e", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run the printed commands");
    let mut printed = String::new();
    demo.stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut printed)
        .expect("read");
    let status = demo.wait().expect("wait");
    println!(
        "printed commands ran in {:.1} s:\n{printed}",
        started.elapsed().as_secs_f64()
    );
    assert!(status.success(), "the printed commands failed: {status}");
    let r: Value = serde_json::from_str(&printed).expect("the last command prints JSON");
    assert_eq!(r["energy_status"], "measured", "{r:#}");
    let joules = r["energy_joules"].as_f64().expect("energy_joules");
    assert!(joules > 0.0, "{r:#}");
    assert!(
        r["joules_per_request"].as_f64().is_some_and(|j| j > 0.0),
        "{r:#}"
    );
    assert!(
        r["output_tokens_per_joule"]
            .as_f64()
            .is_some_and(|t| t > 0.0),
        "{r:#}"
    );
    assert!(r["completed"].as_u64().is_some_and(|n| n > 0), "{r:#}");

    // SIGTERM: everything it started stops, the service is cancelled.
    let pids: Vec<i32> = text
        .lines()
        .filter_map(|l| l.split_once("(pid ")?.1.split_once(',')?.0.parse().ok())
        .collect();
    assert_eq!(
        pids.len(),
        4,
        "pushgateway, API, Prometheus, exporter: {text}"
    );
    let mut child = run.child.take().expect("running");
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut code = None;
    assert!(
        wait_until(Duration::from_secs(60), || {
            code = child.try_wait().expect("try_wait");
            code.is_some()
        }),
        "scripts/run.sh did not stop within 60 s of SIGTERM"
    );
    run.child = Some(child);
    assert_eq!(code.and_then(|c| c.code()), Some(143));
    let text = run.output();
    assert!(text.contains("run.sh: cancelled service svc-"), "{text}");
    assert!(text.contains("run.sh: stopped"), "{text}");
    let left: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "still running after SIGTERM: {left:?}");
}
