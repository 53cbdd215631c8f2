//! The local backend end to end: the demo HTTP service starts, passes its
//! health check, is reachable and discoverable, is cancelled with its process
//! group gone; benchmark runs go through their lifecycle; state survives a
//! restart (a run's load generator too) and a service that ended while the
//! API was down shows its exit state.

mod common;

use std::time::Duration;

use aif_testbed::{free_port, http_get, metric_value, wait_until};
use common::{Api, EXIT_AFTER_RECIPE, group_alive, recipes_with, shipped_recipes};
use serde_json::json;

const POLL: &str = "poll_interval_ms = 50\nkill_grace_seconds = 5\n";

#[test]
fn demo_service_runs_is_reachable_and_cancels_cleanly() {
    let api = Api::start(&shipped_recipes(), POLL, &[], &[]);
    let port = free_port();
    let svc = api.create_service("demo-http", json!({"port": port}));
    let id = svc["id"].as_str().expect("id").to_string();
    assert_eq!(svc["status"], "pending");
    assert_eq!(svc["backend"], "local");
    assert_eq!(svc["port"], port);
    let pgid: i32 = svc["backend_ref"]
        .as_str()
        .expect("ref")
        .parse()
        .expect("pgid");
    let running = api.wait_service(&id, "running", Duration::from_secs(60));
    let history: Vec<&str> = running["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["status"].as_str())
        .collect();
    assert_eq!(history, ["pending", "starting", "running"], "{running:#}");
    assert!(
        running["detail"]
            .as_str()
            .unwrap_or("")
            .contains("health check"),
        "{running:#}"
    );
    // Reachable.
    let (status, _) = http_get(&format!("http://127.0.0.1:{port}/")).expect("demo service answers");
    assert_eq!(status, 200);
    // Listed, filtered, discovered.
    let list = api.get("/api/v1/services?status=running").json();
    assert!(
        list.as_array()
            .expect("list")
            .iter()
            .any(|s| s["id"] == id.as_str())
    );
    assert_eq!(
        api.get("/api/v1/services?status=failed,cancelled").json(),
        json!([])
    );
    let targets = api.get("/api/v1/services/targets").json();
    assert_eq!(
        targets,
        json!([{"targets": [format!("127.0.0.1:{port}")], "labels": {"service_id": id, "recipe": "demo-http", "backend": "local"}}])
    );
    // A second service on the same port is refused before it starts.
    let a = api.post(
        "/api/v1/services",
        &json!({"recipe": "demo-http", "params": {"port": port}}),
    );
    assert_eq!(
        (a.status, a.json()["field"].as_str()),
        (409, Some("params.port")),
        "{}",
        a.body
    );
    // Cancel through the status route.
    assert!(group_alive(pgid));
    let a = api.post(
        &format!("/api/v1/services/{id}/status"),
        &json!({"status": "cancelled"}),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["status"], "cancelled");
    assert!(
        wait_until(Duration::from_secs(20), || !group_alive(pgid)),
        "process group {pgid} survived the cancel"
    );
    let svc = api.service(&id);
    assert_eq!(svc["status"], "cancelled", "{svc:#}");
    assert_eq!(api.get("/api/v1/services/targets").json(), json!([]));
    // Cancelling again is fine; the monitor does not turn it into `failed`:
    // after two full monitor passes since the DELETE nothing was added.
    assert_eq!(
        api.send("DELETE", &format!("/api/v1/services/{id}"), None)
            .status,
        200
    );
    let ticks = || {
        metric_value(
            &api.get("/metrics").body,
            "aif_api_monitor_ticks_total",
            &[],
        )
        .expect("aif_api_monitor_ticks_total") as u64
    };
    let after_delete = ticks();
    assert!(
        wait_until(Duration::from_secs(20), || ticks() >= after_delete + 2),
        "the monitor did not run"
    );
    let svc = api.service(&id);
    let history: Vec<&str> = svc["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["status"].as_str())
        .collect();
    assert_eq!(
        history,
        ["pending", "starting", "running", "cancelled"],
        "{svc:#}"
    );
    assert_eq!(svc["status"], "cancelled");
    let log = std::fs::read_dir(api.log_dir().join(&id)).expect("service log dir");
    let names: Vec<String> = log
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.contains(&"stderr.log".to_string()) && names.contains(&"stdout.log".to_string()),
        "{names:?}"
    );
}

/// A recipe whose program is a parameter: not checked before it starts.
const ANY_PROGRAM_RECIPE: &str = "name = \"any-program\"\ndescription = \"d\"\ncategory = \"test\"\nargv = [\"{program}\"]\n[parameters.program]\ntype = \"string\"\n";

#[test]
fn recipes_say_whether_they_run_here_and_a_missing_program_is_409() {
    let recipes = recipes_with(&[
        (
            "missing.toml",
            "name = \"missing\"\ndescription = \"d\"\ncategory = \"test\"\nargv = [\"/nonexistent/prog\", \"x\"]\n",
        ),
        (
            "not-on-path.toml",
            "name = \"not-on-path\"\ndescription = \"d\"\ncategory = \"test\"\nargv = [\"no-such-program-xyz\"]\n",
        ),
        ("any-program.toml", ANY_PROGRAM_RECIPE),
    ]);
    let api = Api::start(recipes.path(), POLL, &[], &[]);
    let list = api.get("/api/v1/recipes").json();
    let doc = api.get("/openapi.json").json();
    let schema = &doc["components"]["schemas"]["Recipe"];
    let by_name = |name: &str| {
        list.as_array()
            .expect("array")
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no recipe {name}: {list:#}"))
            .clone()
    };
    // Every recipe: the shape the OpenAPI describes, a reason always given.
    for r in list.as_array().expect("array") {
        for key in r.as_object().expect("object").keys() {
            assert!(
                schema["properties"][key].is_object(),
                "`{key}` is not in the Recipe schema: {r}"
            );
        }
        for key in schema["required"].as_array().expect("required") {
            assert!(
                r.get(key.as_str().expect("name")).is_some(),
                "{key} missing: {r}"
            );
        }
        assert!(
            ["yes", "no", "unknown"].contains(&r["runnable"].as_str().unwrap_or("")),
            "{r}"
        );
        assert!(
            r["runnable_reason"].as_str().is_some_and(|s| !s.is_empty()),
            "{r}"
        );
    }
    for (name, program) in [
        ("missing", "/nonexistent/prog"),
        ("not-on-path", "no-such-program-xyz"),
    ] {
        let r = by_name(name);
        assert_eq!(r["runnable"], "no", "{r}");
        let reason = r["runnable_reason"].as_str().unwrap_or("");
        assert!(reason.contains(&format!("`{program}`")), "{r}");
        // Starting it is refused before anything is recorded: 409, naming
        // the recipe field and the same reason.
        let a = api.post("/api/v1/services", &json!({"recipe": name}));
        assert_eq!(a.status, 409, "{}", a.body);
        let e = a.json();
        assert_eq!(e["field"], "recipe", "{e}");
        assert!(
            e["error"].as_str().unwrap_or("").contains(reason),
            "{e} does not give the reason {reason:?}"
        );
        // Bad parameters are still a 400 first.
        let a = api.post(
            "/api/v1/services",
            &json!({"recipe": name, "params": {"nope": 1}}),
        );
        assert_eq!(a.status, 400, "{}", a.body);
    }
    assert_eq!(api.get("/api/v1/services").json(), json!([]));
    // A program that is on PATH (the built-in demo-http runs python3).
    let demo = by_name("demo-http");
    assert_eq!(demo["runnable"], "yes", "{demo}");
    assert!(
        demo["runnable_reason"]
            .as_str()
            .unwrap_or("")
            .contains("`python3`"),
        "{demo}"
    );
    // A program given as a parameter is not checked before it starts.
    assert_eq!(by_name("any-program")["runnable"], "unknown");
}

#[test]
fn a_service_that_fails_to_start_or_exits_is_reported() {
    let recipes = recipes_with(&[
        ("exit-after.toml", EXIT_AFTER_RECIPE),
        ("any-program.toml", ANY_PROGRAM_RECIPE),
    ]);
    let api = Api::start(recipes.path(), POLL, &[], &[]);
    // The program (a parameter, so not checked beforehand) is missing: 502,
    // and the service is recorded failed.
    let a = api.post(
        "/api/v1/services",
        &json!({"recipe": "any-program", "params": {"program": "/nonexistent/program"}}),
    );
    assert_eq!(a.status, 502, "{}", a.body);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap_or("")
            .contains("/nonexistent/program"),
        "{}",
        a.body
    );
    let failed = api.get("/api/v1/services?status=failed").json();
    assert_eq!(failed.as_array().expect("list").len(), 1, "{failed:#}");

    let flag = api.dir.path().join("flag");
    let svc = api.create_service(
        "exit-after",
        json!({"flag": flag.to_str().expect("utf8"), "code": 7}),
    );
    let id = svc["id"].as_str().expect("id").to_string();
    api.wait_service(&id, "running", Duration::from_secs(30));
    std::fs::write(&flag, "").expect("flag");
    let svc = api.wait_service(&id, "failed", Duration::from_secs(30));
    assert_eq!(svc["exit_code"], 7, "{svc:#}");
    assert!(
        svc["detail"].as_str().unwrap_or("").contains("code 7"),
        "{svc:#}"
    );
    let svc = api.create_service(
        "exit-after",
        json!({"flag": flag.to_str().expect("utf8"), "code": 0}),
    );
    let svc = api.wait_service(
        svc["id"].as_str().expect("id"),
        "completed",
        Duration::from_secs(30),
    );
    assert_eq!(svc["exit_code"], 0);
}

#[test]
fn benchmark_runs_complete_or_cancel() {
    let api = Api::start(&shipped_recipes(), POLL, &[], &[]);
    let svc = api.create_service("demo-http", json!({"port": free_port()}));
    let sid = svc["id"].as_str().expect("id").to_string();
    api.wait_service(&sid, "running", Duration::from_secs(30));
    let a = api.post(
        "/api/v1/benchmarks",
        &json!({"service_id": sid, "duration_seconds": 1, "concurrency": 4}),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let run = a.json();
    let rid = run["id"].as_str().expect("id").to_string();
    assert_eq!(
        (
            run["status"].as_str(),
            run["concurrency"].as_i64(),
            run["mode"].as_str()
        ),
        (Some("running"), Some(4), Some("closed_loop"))
    );
    assert!(wait_until(Duration::from_secs(30), || api
        .get(&format!("/api/v1/benchmarks/{rid}"))
        .json()["status"]
        == "completed"));
    let done = api.get(&format!("/api/v1/benchmarks/{rid}")).json();
    let h: Vec<&str> = done["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["status"].as_str())
        .collect();
    assert_eq!(h, ["pending", "running", "completed"]);
    assert!(done["ended_at"].is_string());
    let a = api.post(&format!("/api/v1/benchmarks/{rid}/cancel"), &json!({}));
    assert_eq!(a.status, 409, "{}", a.body);

    let a = api.post(
        "/api/v1/benchmarks",
        &json!({"service_id": sid, "duration_seconds": 86400, "mode": "open_loop", "requests_per_second": 50}),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let rid2 = a.json()["id"].as_str().expect("id").to_string();
    let a = common::request(
        &api.url(&format!("/api/v1/benchmarks/{rid2}/cancel")),
        "POST",
        &[],
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["status"], "cancelled");
    let listed = api
        .get(&format!(
            "/api/v1/benchmarks?service_id={sid}&status=cancelled"
        ))
        .json();
    assert_eq!(listed.as_array().expect("list").len(), 1);
    // A run on a service that is not running is refused.
    let a = api.post(
        "/api/v1/benchmarks",
        &json!({"service_id": sid, "duration_seconds": 10}),
    );
    assert_eq!(a.status, 201);
    let rid3 = a.json()["id"].as_str().expect("id").to_string();
    assert_eq!(
        api.send("DELETE", &format!("/api/v1/services/{sid}"), None)
            .status,
        200
    );
    assert_eq!(
        api.get(&format!("/api/v1/benchmarks/{rid3}")).json()["status"],
        "cancelled",
        "runs end with their service"
    );
    let a = api.post(
        "/api/v1/benchmarks",
        &json!({"service_id": sid, "duration_seconds": 10}),
    );
    assert_eq!(
        (a.status, a.json()["field"].as_str()),
        (409, Some("service_id")),
        "{}",
        a.body
    );
}

#[test]
fn state_survives_restart_and_reconciles_ended_services() {
    let recipes = recipes_with(&[("exit-after.toml", EXIT_AFTER_RECIPE)]);
    let mut api = Api::start(recipes.path(), POLL, &[], &[]);
    let flag = api.dir.path().join("flag");
    let ends = api.create_service(
        "exit-after",
        json!({"flag": flag.to_str().expect("utf8"), "code": 3}),
    );
    let ends_id = ends["id"].as_str().expect("id").to_string();
    let stays = api.create_service("demo-http", json!({"port": free_port()}));
    let stays_id = stays["id"].as_str().expect("id").to_string();
    api.wait_service(&ends_id, "running", Duration::from_secs(30));
    api.wait_service(&stays_id, "running", Duration::from_secs(30));
    let run = api.post(
        "/api/v1/benchmarks",
        &json!({"service_id": stays_id, "duration_seconds": 3600}),
    );
    assert_eq!(run.status, 201);
    let run_id = run.json()["id"].as_str().expect("id").to_string();

    api.kill();
    // The job finishes while the API is down.
    std::fs::write(&flag, "").expect("flag");
    let exit_file = api.log_dir().join(&ends_id).join("exit");
    assert!(
        wait_until(Duration::from_secs(30), || exit_file.exists()),
        "service did not end"
    );
    api.restart();

    let svc = api.service(&ends_id);
    assert_eq!(
        (svc["status"].as_str(), svc["exit_code"].as_i64()),
        (Some("failed"), Some(3)),
        "{svc:#}"
    );
    let svc = api.service(&stays_id);
    assert_eq!(
        svc["status"], "running",
        "still running after the restart: {svc:#}"
    );
    // Its load generator outlived the API (its own process group): the run
    // goes on, and ends with the service.
    let run = api.get(&format!("/api/v1/benchmarks/{run_id}")).json();
    assert_eq!(run["status"], "running", "{run:#}");
    // The re-adopted service can still be cancelled (its group is killed).
    let pgid: i32 = svc["backend_ref"]
        .as_str()
        .expect("ref")
        .parse()
        .expect("pgid");
    assert_eq!(
        api.send("DELETE", &format!("/api/v1/services/{stays_id}"), None)
            .status,
        200
    );
    assert!(wait_until(Duration::from_secs(20), || {
        // Not our child any more: it may linger as a zombie of PID 1; check /proc.
        !std::path::Path::new(&format!("/proc/{pgid}/cmdline")).exists()
            || std::fs::read_to_string(format!("/proc/{pgid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    }));
}
