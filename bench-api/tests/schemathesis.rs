//! The served OpenAPI document is exact: schemathesis (PyPI, in a venv under
//! `target/`, created here when missing) runs every phase, the stateful one
//! included, with `--checks all` against a real `aif-bench-api`, and any
//! finding fails the test. Bounded by `--max-examples` and `--max-time`.
//!
//! Two things are set aside, on purpose:
//! - `use_after_free`: `DELETE /api/v1/services/{id}` cancels and *keeps* the
//!   record (ARCHITECTURE.md decision 9: Grafana lists cancelled services), so
//!   a `GET` after it is 200 by contract, not a resource served after deletion.
//! - The inference recipes' container runtime (`apptainer`) is not on a test
//!   machine: a stand-in on `PATH` sleeps instead, so starting them does not
//!   end in the (documented) 502 that `not_a_server_error` would count.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aif_testbed::wait_until;
use common::{Api, shipped_recipes};

/// The schemathesis release this test was written against.
const VERSION: &str = "4.32.5";

/// `target/schemathesis-venv/bin/schemathesis`, installed if missing.
fn schemathesis() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let venv = target.join("schemathesis-venv");
    let exe = venv.join("bin/schemathesis");
    let installed = Command::new(&exe)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(VERSION));
    if installed {
        return exe;
    }
    let o = Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv)
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is not installed ({e}): install the Debian package `python3`")
        });
    assert!(
        o.status.success(),
        "python3 -m venv failed: install the Debian package `python3-venv`\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", &format!("schemathesis=={VERSION}")])
        .output()
        .expect("run pip");
    assert!(
        o.status.success(),
        "pip install schemathesis=={VERSION} failed (PyPI must be reachable):\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    exe
}

#[test]
fn schemathesis_finds_nothing_in_any_phase() {
    let st = schemathesis();
    let stubs = tempfile::tempdir().expect("tempdir");
    let apptainer = stubs.path().join("apptainer");
    std::fs::write(&apptainer, "#!/bin/sh\nexec sleep 3600\n").expect("stub");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&apptainer, std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    let path = format!(
        "{}:{}",
        stubs.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let api = Api::start(
        &shipped_recipes(),
        "poll_interval_ms = 100\nkill_grace_seconds = 1\n",
        &[],
        &[("PATH".to_string(), path)],
    );
    let run = |attempt: u32| {
        let report = api.dir.path().join(format!("schemathesis-{attempt}"));
        let out = Command::new(&st)
            .arg("run")
            .arg(api.url("/openapi.json"))
            .args([
                "--checks",
                "all",
                "--exclude-checks",
                "use_after_free",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                "30",
                "--max-time",
                "150",
                "--seed",
                "1",
                "--workers",
                "2",
                "--request-timeout",
                "10",
                "--generation-database",
                "none",
                "--no-color",
                "--report",
                "junit",
                "--report-dir",
            ])
            .arg(&report)
            .current_dir(api.dir.path())
            .output()
            .expect("run schemathesis");
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out, text)
    };
    let (mut out, mut text) = run(1);
    // CPython 3.11 before 3.11.8 can raise `SystemError: AST constructor
    // recursion depth mismatch` inside Hypothesis while it describes a
    // strategy (CPython gh-106905): a crash of the tool on one operation, not
    // a finding about the API. Only then, and only when nothing failed, run
    // once more; a finding fails the test at once.
    if !out.status.success()
        && !text.contains("=== FAILURES")
        && text.contains("AST constructor recursion depth mismatch")
    {
        eprintln!("schemathesis crashed on CPython gh-106905; running it once more");
        (out, text) = run(2);
    }
    // Stop what the run started (sleep and demo services) before judging.
    let list = api.get("/api/v1/services").json();
    for svc in list.as_array().into_iter().flatten() {
        if let Some(id) = svc["id"].as_str() {
            api.send("DELETE", &format!("/api/v1/services/{id}"), None);
        }
    }
    let settled = wait_until(Duration::from_secs(30), || {
        api.get("/api/v1/services?status=pending,starting,running")
            .json()
            .as_array()
            .is_some_and(Vec::is_empty)
    });
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    assert!(
        text.contains("Stateful"),
        "the stateful phase did not run:\n{text}"
    );
    assert!(settled, "services the run started did not stop");
    eprintln!("{text}");
}
