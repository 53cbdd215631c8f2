//! Every API version's request and answer shapes, and the one state mapping
//! seen through both Slurm backends.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::version::{ApiVersion, errors};
use super::*;
use crate::backend::runner::{CommandOutput, CommandRunner, RunnerError};
use crate::backend::slurm::SlurmBackend;
use crate::backend::slurm_settings::SlurmSettings;
use crate::backend::{Ending, JobState};
use crate::recipes::Recipe;

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/backend/slurm_rest/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `squeue`/`sacct` as the CLI backend sees them: canned output of the real
/// commands' formats (`%i|%T|%N`; `JobID,State,ExitCode`).
struct Printed {
    squeue: String,
    sacct: String,
}

impl CommandRunner for Printed {
    fn run(&self, argv: &[String]) -> Result<CommandOutput, RunnerError> {
        let stdout = match argv.first().map(String::as_str) {
            Some("squeue") => self.squeue.clone(),
            Some("sacct") => self.sacct.clone(),
            _ => String::new(),
        };
        Ok(CommandOutput {
            status: 0,
            stdout,
            stderr: String::new(),
        })
    }
    fn describe(&self) -> String {
        "printed".into()
    }
}

fn cli_state(squeue: &str, sacct: &str) -> JobState {
    let b = SlurmBackend::new(
        Box::new(Printed {
            squeue: squeue.into(),
            sacct: sacct.into(),
        }),
        SlurmSettings::default(),
        PathBuf::from("/logs"),
        None,
    );
    b.states(&[("svc", "42")])
        .remove("svc")
        .expect("an answer")
        .expect("a state")
}

fn rest_state(v: ApiVersion, fixture_name: &str) -> JobState {
    let j = v
        .job(&fixture(fixture_name))
        .expect("parsed")
        .expect("a job");
    job_state(&j.state, j.exit, j.host).expect("a known state")
}

/// (squeue line, sacct line, REST fixtures, expected).
type Case = (
    &'static str,
    &'static str,
    Vec<(ApiVersion, &'static str)>,
    JobState,
);

#[test]
fn one_mapping_for_squeue_sacct_and_every_rest_version() {
    let ended = |e| JobState::Ended(e);
    let active = |h: &str| JobState::Active {
        host: Some(h.to_string()),
    };
    // (squeue line, sacct line, REST fixtures, expected)
    let cases: Vec<Case> = vec![
        (
            "42|FAILED|localhost",
            "42|FAILED|3:0",
            vec![
                (ApiVersion::V0_0_38, "v0.0.38-job-failed-3.json"),
                (ApiVersion::V0_0_40, "v0.0.40-job-failed-3.json"),
                (ApiVersion::V0_0_41, "v0.0.41-job-failed-3.json"),
            ],
            ended(Ending::Exited(3)),
        ),
        (
            "42|CANCELLED|localhost",
            "42|CANCELLED by 0|0:15",
            vec![
                (ApiVersion::V0_0_38, "v0.0.38-job-cancelled.json"),
                (ApiVersion::V0_0_40, "v0.0.40-job-cancelled.json"),
                (ApiVersion::V0_0_41, "v0.0.41-job-cancelled.json"),
            ],
            ended(Ending::Cancelled),
        ),
        (
            "42|FAILED|node01",
            "42|FAILED|0:9",
            vec![
                (ApiVersion::V0_0_40, "v0.0.40-job-signalled-9.json"),
                (ApiVersion::V0_0_41, "v0.0.41-job-signalled-9.json"),
            ],
            ended(Ending::Signalled(9)),
        ),
        (
            "42|COMPLETED|node01",
            "42|COMPLETED|0:0",
            vec![
                (ApiVersion::V0_0_40, "v0.0.40-job-completed.json"),
                (ApiVersion::V0_0_41, "v0.0.41-job-completed.json"),
            ],
            ended(Ending::Exited(0)),
        ),
        (
            "42|RUNNING|localhost",
            "",
            vec![(ApiVersion::V0_0_38, "v0.0.38-job-running.json")],
            active("localhost"),
        ),
        (
            "42|RUNNING|node[01-02]",
            "",
            vec![
                (ApiVersion::V0_0_40, "v0.0.40-job-running.json"),
                (ApiVersion::V0_0_41, "v0.0.41-job-running.json"),
            ],
            active("node01"),
        ),
        (
            "42|COMPLETING|node01",
            "",
            vec![
                (ApiVersion::V0_0_40, "v0.0.40-job-cancelled-completing.json"),
                (ApiVersion::V0_0_41, "v0.0.41-job-cancelled-completing.json"),
            ],
            active("node01"),
        ),
        (
            "42|PENDING|",
            "",
            vec![
                (ApiVersion::V0_0_40, "v0.0.40-job-pending.json"),
                (ApiVersion::V0_0_41, "v0.0.41-job-pending.json"),
            ],
            JobState::Queued,
        ),
    ];
    for (squeue, sacct, rest, want) in cases {
        assert_eq!(cli_state(squeue, sacct), want, "CLI: {squeue} / {sacct}");
        for (v, f) in rest {
            assert_eq!(rest_state(v, f), want, "{} {f}", v.as_str());
        }
    }
    // Gone from the controller: Missing on both.
    assert_eq!(cli_state("", ""), JobState::Missing);
    let e = errors(&fixture("v0.0.38-job-invalid.json"));
    assert_eq!(e[0].number, version::ESLURM_INVALID_JOB_ID, "{e:?}");
    assert!(
        ApiVersion::V0_0_38
            .job(&fixture("v0.0.38-job-invalid.json"))
            .unwrap()
            .is_none()
    );
    // Slurm 22.05's answer to a refused token: no number, no reason.
    let e = errors(&fixture("v0.0.38-job-bad-token.json"));
    assert!(e.iter().all(|e| e.number == -1), "{e:?}");
}

#[test]
fn discovery_picks_the_newest_common_version() {
    let paths = |name: &str| -> Vec<String> {
        fixture(name)["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .cloned()
            .collect()
    };
    let p = paths("v0.0.38-openapi-paths.json");
    let offered = ApiVersion::offered(p.iter().map(String::as_str));
    assert_eq!(offered, vec!["v0.0.38".to_string()]);
    assert_eq!(
        ApiVersion::newest_common(&offered),
        Some(ApiVersion::V0_0_38)
    );
    let p = paths("v0.0.41+42-openapi-paths.json");
    let offered = ApiVersion::offered(p.iter().map(String::as_str));
    assert_eq!(offered, vec!["v0.0.41".to_string(), "v0.0.42".to_string()]);
    assert_eq!(
        ApiVersion::newest_common(&offered),
        Some(ApiVersion::V0_0_41)
    );
    let newer = vec!["v0.0.42".to_string(), "v0.0.43".to_string()];
    assert_eq!(ApiVersion::newest_common(&newer), None);
    let both = vec!["v0.0.38".into(), "v0.0.39".into(), "v0.0.40".into()];
    assert_eq!(ApiVersion::newest_common(&both), Some(ApiVersion::V0_0_40));
    assert_eq!(ApiVersion::parse("0.0.41"), Some(ApiVersion::V0_0_41));
    assert_eq!(ApiVersion::parse("v0.0.39"), None);
}

fn gpu_recipe() -> Recipe {
    Recipe::parse(
        Path::new("g.toml"),
        r#"
name = "g"
description = "d"
category = "c"
argv = ["prog", "x"]
[resources]
gpus = 2
cpus = 4
memory = "16G"
time_limit = "1:30:00"
"#,
    )
    .expect("recipe")
}

fn backend(v: Option<ApiVersion>) -> SlurmRestBackend {
    let client = SlurmRestClient::new(
        Endpoint::Http("http://127.0.0.1:9".into()),
        Auth::Local { user: "svc".into() },
        Duration::from_secs(1),
        v,
    );
    SlurmRestBackend::new(
        client,
        JobDefaults {
            partition: Some("gpu".into()),
            ..JobDefaults::default()
        },
        PathBuf::from("/cluster/logs"),
        None,
        [("PATH".to_string(), "/usr/bin:/bin".to_string())].into(),
        None,
    )
}

/// Every key we send exists in that version's schema with that JSON type.
fn check_against_schema(job: &Value, types_fixture: &str) {
    let types = fixture(types_fixture);
    let types = types["properties"].as_object().expect("properties");
    for (k, v) in job.as_object().expect("job") {
        let want = types
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("`{k}` is not in {types_fixture}"));
        let got = match v {
            Value::String(_) => "string",
            Value::Number(_) => "integer",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
            Value::Bool(_) => "boolean",
            _ => "other",
        };
        assert_eq!(got, want, "{k} in {types_fixture}");
    }
}

#[test]
fn submit_bodies_follow_each_version_and_carry_the_cli_script() {
    let recipe = gpu_recipe();
    let argv = vec!["prog".to_string(), "it's".to_string()];
    let spec = LaunchSpec {
        service_id: "svc-1",
        recipe: &recipe,
        argv: &argv,
        port: None,
        tasks: 1,
        urls: &[],
    };
    let cli = SlurmBackend::new(
        Box::new(Printed {
            squeue: String::new(),
            sacct: String::new(),
        }),
        SlurmSettings::default(),
        PathBuf::from("/cluster/logs"),
        None,
    );
    let b = backend(None);
    // The same script as sbatch --wrap runs (which adds the `#!/bin/sh`).
    assert_eq!(b.script(&spec), format!("#!/bin/sh\n{}", cli.script(&spec)));

    let v38 = b.submit_body(ApiVersion::V0_0_38, &spec).expect("body");
    let job = &v38["job"];
    assert_eq!(v38["script"], b.script(&spec).as_str());
    assert_eq!(job["name"], "aif-svc-1");
    assert_eq!(job["nodes"], serde_json::json!([1, 1]));
    assert_eq!(
        job["environment"],
        serde_json::json!({"PATH": "/usr/bin:/bin"})
    );
    assert_eq!(job["memory_per_node"], 16384);
    assert_eq!(job["time_limit"], 90);
    assert_eq!(job["gres"], "gpu:2");
    assert_eq!(job["cpus_per_task"], 4);
    assert_eq!(
        job["requeue"], false,
        "a dead node must not restart the job unseen"
    );
    assert_eq!(job["partition"], "gpu");
    assert_eq!(job["standard_output"], "/cluster/logs/svc-1-%j.out");
    assert_eq!(job["current_working_directory"], "/cluster/logs");
    check_against_schema(job, "v0.0.38-job_properties-types.json");

    for v in [ApiVersion::V0_0_40, ApiVersion::V0_0_41] {
        let body = b.submit_body(v, &spec).expect("body");
        let job = &body["job"];
        assert_eq!(job["nodes"], "1");
        assert_eq!(
            job["environment"],
            serde_json::json!(["PATH=/usr/bin:/bin"])
        );
        let n = |x: u64| serde_json::json!({"set": true, "infinite": false, "number": x});
        assert_eq!(job["memory_per_node"], n(16384));
        assert_eq!(job["time_limit"], n(90));
        assert_eq!(job["tres_per_node"], "gres/gpu:2");
        check_against_schema(job, "v0.0.41-job_desc_msg-types.json");
        match v {
            ApiVersion::V0_0_40 => {
                assert_eq!(body["script"], b.script(&spec).as_str());
                assert!(job.get("script").is_none());
            }
            _ => {
                assert!(body.get("script").is_none(), "deprecated in v0.0.41");
                assert_eq!(job["script"], b.script(&spec).as_str());
            }
        }
    }
    // The sbatch options of the CLI backend ask for the same.
    let args = cli.sbatch_args(&spec);
    for a in [
        "--job-name=aif-svc-1",
        "--gres=gpu:2",
        "--mem=16G",
        "--time=1:30:00",
        "--cpus-per-task=4",
        "--output=/cluster/logs/svc-1-%j.out",
        "--no-requeue",
    ] {
        assert!(args.contains(&a.to_string()), "{a} in {args:?}");
    }
}

#[test]
fn submit_answers_of_every_version() {
    assert_eq!(
        ApiVersion::V0_0_38.submitted_job_id(&fixture("v0.0.38-submit.json")),
        Ok(4)
    );
    for v in [ApiVersion::V0_0_40, ApiVersion::V0_0_41] {
        let name = format!("{}-submit.json", v.as_str());
        assert_eq!(v.submitted_job_id(&fixture(&name)), Ok(42));
    }
    assert!(
        ApiVersion::V0_0_41
            .submitted_job_id(&serde_json::json!({"errors": []}))
            .is_err()
    );
}

#[test]
fn bad_refs_and_debug_hide_nothing_secret() {
    let b = backend(Some(ApiVersion::V0_0_41));
    let s = b.states(&[("svc", "42; rm -rf /")]);
    assert!(matches!(s["svc"], Err(BackendError::BadRef(_))));
    assert!(format!("{b:?}").contains("127.0.0.1:9"));
}

#[test]
fn runnable_is_unknown_not_a_guess() {
    let r = backend(Some(ApiVersion::V0_0_41)).runnable(&gpu_recipe());
    assert_eq!(r.state, crate::backend::Runnable::Unknown, "{r:?}");
    assert!(
        r.reason.contains("`prog`") && r.reason.contains("slurm-rest"),
        "{r:?}"
    );
}

/// A slurmrestd on a Unix socket answering `requests` requests: a ping
/// with `ping`, any other with `job` (status, body); one connection each.
/// The thread returns the paths asked for.
fn fake_slurmrestd(
    dir: &Path,
    requests: usize,
    job: (u16, String),
    ping: (u16, String),
) -> (PathBuf, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{BufRead, BufReader, Write};
    let sock = dir.join("slurmrestd.socket");
    let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..requests {
            let Ok((stream, _)) = listener.accept() else {
                break;
            };
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            reader.read_line(&mut line).expect("request line");
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).map_or(true, |n| n <= 2) {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (status, body) = if path.ends_with("/ping") {
                ping.clone()
            } else {
                job.clone()
            };
            let _ = (&stream).write_all(
                format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
            seen.push(path);
        }
        seen
    });
    (sock, handle)
}

fn unix_backend(sock: PathBuf) -> SlurmRestBackend {
    let client = SlurmRestClient::new(
        Endpoint::Unix(sock),
        Auth::Local { user: "svc".into() },
        Duration::from_secs(5),
        Some(ApiVersion::V0_0_38),
    );
    SlurmRestBackend::new(
        client,
        JobDefaults::default(),
        PathBuf::from("/cluster/logs"),
        None,
        BTreeMap::new(),
        None,
    )
}

#[test]
fn a_refused_token_does_not_say_the_running_job_is_not_found() {
    // Slurm 22.05's answer to a refused token (recorded while job 1 ran):
    // "Unable to find JobId=1", error -1; the ping is refused too.
    let bad_token = fixture("v0.0.38-job-bad-token.json").to_string();
    let refused_ping = r#"{"errors":[{"error_number":-1,"error":"Unspecified error","description":"slurm_ping","source":"slurm_ping"}]}"#;
    let dir = tempfile::tempdir().unwrap();
    let (sock, server) = fake_slurmrestd(
        dir.path(),
        2,
        (500, bad_token.clone()),
        (500, refused_ping.to_string()),
    );
    let b = unix_backend(sock);
    let e = b
        .states(&[("svc", "1")])
        .remove("svc")
        .expect("an answer")
        .expect_err("no state");
    assert_eq!(
        server.join().unwrap(),
        ["/slurm/v0.0.38/job/1", "/slurm/v0.0.38/ping"]
    );
    assert!(e.state_unknowable(), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("refused the credentials of user `svc`")
            && text.contains("scontrol token username=svc")
            && text.contains("slurm_load_job: Unspecified error"),
        "{text}"
    );
    assert!(!text.contains("Unable to find JobId"), "{text}");

    // The same answer while a ping passes: not the credentials, and not a
    // job Slurm forgot either (that is error 2017): no state, kept as it was.
    let dir = tempfile::tempdir().unwrap();
    let (sock, server) = fake_slurmrestd(
        dir.path(),
        2,
        (500, bad_token),
        (200, r#"{"pings":[],"errors":[]}"#.to_string()),
    );
    let e = unix_backend(sock)
        .states(&[("svc", "1")])
        .remove("svc")
        .expect("an answer")
        .expect_err("no state");
    server.join().unwrap();
    assert!(!e.state_unknowable(), "{e}");

    // A job Slurm really does not know (2017): Missing, no error.
    let dir = tempfile::tempdir().unwrap();
    let (sock, server) = fake_slurmrestd(
        dir.path(),
        1,
        (500, fixture("v0.0.38-job-invalid.json").to_string()),
        (200, "{}".to_string()),
    );
    let s = unix_backend(sock).states(&[("svc", "999")]);
    server.join().unwrap();
    assert_eq!(s["svc"].as_ref().ok(), Some(&JobState::Missing));
}
