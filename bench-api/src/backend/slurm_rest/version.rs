//! Every difference between the slurmrestd API versions we speak, in one place:
//! the paths, the job-submit request, and how a job and a submit answer read.
//!
//! | | v0.0.38 (Slurm 22.05) | v0.0.40 (23.11) | v0.0.41 (24.05) |
//! |---|---|---|---|
//! | script | top-level `script` | top-level `script` | `job.script` (top-level deprecated) |
//! | `environment` | object `{K: V}` | array `["K=V"]` | array |
//! | `nodes` | `[min, max]` | string `"N"` | string |
//! | `memory_per_node`, `time_limit` | integers | `{"set":true,"infinite":false,"number":N}` | same |
//! | GPUs | `gres: "gpu:N"` | `tres_per_node: "gres/gpu:N"` | same |
//! | `job_state` | string | array (base state and flags) | array |
//! | `exit_code` | wait(2) status (`768` = exit 3) | `{"status":[..],"return_code":{..},"signal":{"id":{..}}}` | same |
//!
//! The shapes of v0.0.40 and v0.0.41 are Slurm's own: the data_parser plugins
//! (`src/plugins/data_parser/v0.0.40/parsers.c`) and the published OpenAPI
//! document (`testsuite/python/data/openapi_specs/openapi_spec_v41.json`);
//! v0.0.38's were recorded from Debian's slurmrestd 22.05.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::super::slurm_job::{ExitStatus, JobResources};

/// A slurmrestd API version this client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ApiVersion {
    /// Slurm 22.05 (`openapi/v0.0.38`).
    V0_0_38,
    /// Slurm 23.11 (`data_parser/v0.0.40`).
    V0_0_40,
    /// Slurm 24.05–24.11 (`data_parser/v0.0.41`).
    V0_0_41,
}

/// `ESLURM_INVALID_JOB_ID`: the controller has no such job (any more).
pub const ESLURM_INVALID_JOB_ID: i64 = 2017;
/// `ESLURM_ALREADY_DONE`: the job already ended.
pub const ESLURM_ALREADY_DONE: i64 = 2021;
/// `SLURM_PROTOCOL_AUTHENTICATION_ERROR`: slurmctld refused the credential.
pub const SLURM_PROTOCOL_AUTHENTICATION_ERROR: i64 = 1007;

/// What a job description needs beyond the resources.
#[derive(Debug, Clone)]
pub struct JobRequest<'a> {
    /// The batch script (starts with `#!`).
    pub script: &'a str,
    /// Resources, names, output files.
    pub resources: &'a JobResources,
    /// The job's working directory.
    pub cwd: &'a str,
    /// The job's environment (slurmrestd does not pass its own).
    pub environment: &'a BTreeMap<String, String>,
    /// `--mem` in MiB, when set.
    pub memory_mib: Option<u64>,
    /// `--time` in minutes, when set.
    pub time_minutes: Option<u32>,
}

/// One job as slurmrestd describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestJob {
    /// The state name as squeue prints it (`RUNNING`, `COMPLETING`, `FAILED`).
    pub state: String,
    /// The exit status, once known.
    pub exit: Option<ExitStatus>,
    /// First node of the allocation (`batch_host`, else `nodes`).
    pub host: Option<String>,
    /// `state_reason` (`NonZeroExitCode`, `Resources`, …).
    pub reason: Option<String>,
}

/// One entry of an answer's `errors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestErrorEntry {
    /// `error_number` (-1 when Slurm gives none).
    pub number: i64,
    /// `source`, `error` and `description`, joined.
    pub text: String,
    /// `source` and `error` only (`slurm_load_job: Unspecified error`).
    pub cause: String,
}

/// Flags squeue shows instead of the base state (Slurm's `job_state_string`).
const SHOWN_FLAGS: [&str; 11] = [
    "COMPLETING",
    "STAGE_OUT",
    "CONFIGURING",
    "RESIZING",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "SPECIAL_EXIT",
    "STOPPED",
    "RESV_DEL_HOLD",
    "SIGNALING",
];

fn no_val(n: u64) -> Value {
    json!({"set": true, "infinite": false, "number": n})
}

/// `{"set":true,"number":N}` → N; `set: false` or `infinite` → `None`.
fn read_no_val(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::Object(o) => {
            if o.get("set").and_then(Value::as_bool) == Some(false)
                || o.get("infinite").and_then(Value::as_bool) == Some(true)
            {
                None
            } else {
                o.get("number").and_then(Value::as_i64)
            }
        }
        _ => None,
    }
}

impl ApiVersion {
    /// Every version we speak, oldest first.
    pub const KNOWN: [ApiVersion; 3] = [
        ApiVersion::V0_0_38,
        ApiVersion::V0_0_40,
        ApiVersion::V0_0_41,
    ];

    /// `v0.0.40`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V0_0_38 => "v0.0.38",
            ApiVersion::V0_0_40 => "v0.0.40",
            ApiVersion::V0_0_41 => "v0.0.41",
        }
    }

    /// `v0.0.40` (or `0.0.40`) → the version, when we speak it.
    pub fn parse(s: &str) -> Option<ApiVersion> {
        let s = s.strip_prefix('v').unwrap_or(s);
        Self::KNOWN.into_iter().find(|v| &v.as_str()[1..] == s)
    }

    /// The versions an OpenAPI document's paths offer for job submission
    /// (`/slurm/v0.0.40/job/submit`), as written there.
    pub fn offered<'a>(paths: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut out: Vec<String> = paths
            .into_iter()
            .filter_map(|p| {
                let rest = p.strip_prefix("/slurm/")?;
                let (v, tail) = rest.split_once('/')?;
                (tail == "job/submit" && v.starts_with('v')).then(|| v.to_string())
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The newest version both sides speak.
    pub fn newest_common(offered: &[String]) -> Option<ApiVersion> {
        offered.iter().filter_map(|v| Self::parse(v)).max()
    }

    /// `POST` here to submit.
    pub fn submit_path(self) -> String {
        format!("/slurm/{}/job/submit", self.as_str())
    }

    /// `GET` (state) and `DELETE` (cancel) here.
    pub fn job_path(self, job_id: &str) -> String {
        format!("/slurm/{}/job/{job_id}", self.as_str())
    }

    /// `GET` here: slurmctld answers (with our credentials).
    pub fn ping_path(self) -> String {
        format!("/slurm/{}/ping", self.as_str())
    }

    /// The body of `POST job/submit`.
    pub fn submit_body(self, req: &JobRequest<'_>) -> Value {
        let r = req.resources;
        let mut job = serde_json::Map::new();
        job.insert("name".into(), json!(r.name));
        job.insert("tasks_per_node".into(), json!(1));
        // As sbatch's `--no-requeue` (see JobResources::sbatch_options).
        job.insert("requeue".into(), json!(false));
        job.insert("cpus_per_task".into(), json!(r.cpus_per_task));
        job.insert("current_working_directory".into(), json!(req.cwd));
        job.insert("standard_output".into(), json!(r.stdout));
        job.insert("standard_error".into(), json!(r.stderr));
        if let Some(p) = &r.partition {
            job.insert("partition".into(), json!(p));
        }
        if let Some(a) = &r.account {
            job.insert("account".into(), json!(a));
        }
        match self {
            ApiVersion::V0_0_38 => {
                job.insert("nodes".into(), json!([r.nodes, r.nodes]));
                job.insert("environment".into(), json!(req.environment));
                if let Some(m) = req.memory_mib {
                    job.insert("memory_per_node".into(), json!(m));
                }
                if let Some(t) = req.time_minutes {
                    job.insert("time_limit".into(), json!(t));
                }
                if r.gpus > 0 {
                    job.insert("gres".into(), json!(format!("gpu:{}", r.gpus)));
                }
            }
            ApiVersion::V0_0_40 | ApiVersion::V0_0_41 => {
                job.insert("nodes".into(), json!(r.nodes.to_string()));
                let env: Vec<String> = req
                    .environment
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                job.insert("environment".into(), json!(env));
                if let Some(m) = req.memory_mib {
                    job.insert("memory_per_node".into(), no_val(m));
                }
                if let Some(t) = req.time_minutes {
                    job.insert("time_limit".into(), no_val(u64::from(t)));
                }
                if r.gpus > 0 {
                    job.insert(
                        "tres_per_node".into(),
                        json!(format!("gres/gpu:{}", r.gpus)),
                    );
                }
            }
        }
        match self {
            ApiVersion::V0_0_38 | ApiVersion::V0_0_40 => {
                json!({"script": req.script, "job": Value::Object(job)})
            }
            ApiVersion::V0_0_41 => {
                job.insert("script".into(), json!(req.script));
                json!({"job": Value::Object(job)})
            }
        }
    }

    /// The job id of a submit answer.
    ///
    /// # Errors
    /// What is missing, when there is no job id.
    pub fn submitted_job_id(self, answer: &Value) -> Result<u64, String> {
        answer
            .get("job_id")
            .and_then(Value::as_u64)
            .or_else(|| {
                answer
                    .get("result")
                    .and_then(|r| r.get("job_id"))
                    .and_then(Value::as_u64)
            })
            .ok_or_else(|| format!("no `job_id` in the {} submit answer", self.as_str()))
    }

    /// The job of a `GET job/{id}` answer; `Ok(None)` when `jobs` is empty.
    ///
    /// # Errors
    /// What is malformed (no `jobs` array, no state).
    pub fn job(self, answer: &Value) -> Result<Option<RestJob>, String> {
        let jobs = answer
            .get("jobs")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("no `jobs` array in the {} answer", self.as_str()))?;
        let Some(j) = jobs.first() else {
            return Ok(None);
        };
        let state = match (self, j.get("job_state")) {
            (ApiVersion::V0_0_38, Some(Value::String(s))) => s.clone(),
            (ApiVersion::V0_0_40 | ApiVersion::V0_0_41, Some(Value::Array(a))) => {
                let names: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
                SHOWN_FLAGS
                    .iter()
                    .find(|f| names.contains(f))
                    .copied()
                    .or_else(|| names.first().copied())
                    .ok_or_else(|| "empty `job_state`".to_string())?
                    .to_string()
            }
            (_, other) => {
                return Err(format!(
                    "`job_state` is {} in a {} answer",
                    other.map_or("missing".to_string(), |v| v.to_string()),
                    self.as_str()
                ));
            }
        };
        let exit = match (self, j.get("exit_code")) {
            (_, None | Some(Value::Null)) => None,
            (ApiVersion::V0_0_38, Some(v)) => v.as_i64().and_then(ExitStatus::from_wait_status),
            (ApiVersion::V0_0_40 | ApiVersion::V0_0_41, Some(v)) => verbose_exit(v),
        };
        let text = |k: &str| {
            j.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let host = text("batch_host")
            .or_else(|| text("nodes"))
            .and_then(|n| super::super::slurm_job::first_host(&n));
        Ok(Some(RestJob {
            state,
            exit,
            host,
            reason: text("state_reason"),
        }))
    }
}

/// `{"status":["ERROR"],"return_code":{"number":3},"signal":{"id":{"number":0}}}`.
fn verbose_exit(v: &Value) -> Option<ExitStatus> {
    let status: Vec<&str> = v
        .get("status")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if status.contains(&"PENDING") {
        return None;
    }
    let signal = v
        .get("signal")
        .and_then(|s| s.get("id"))
        .and_then(read_no_val)
        .and_then(|n| i32::try_from(n).ok());
    let code = v
        .get("return_code")
        .and_then(read_no_val)
        .and_then(|n| i32::try_from(n).ok());
    match (status.contains(&"SIGNALED"), signal, code) {
        (true, Some(s), _) if s > 0 => ExitStatus::from_parts(0, s),
        (_, _, Some(c)) => ExitStatus::from_parts(c, 0),
        (_, Some(s), None) if s > 0 => ExitStatus::from_parts(0, s),
        _ => None,
    }
}

/// The `errors` of an answer (the same shape in every version).
pub fn errors(answer: &Value) -> Vec<RestErrorEntry> {
    answer
        .get("errors")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| {
                    let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    let join = |parts: Vec<String>| {
                        parts
                            .into_iter()
                            .filter(|p| !p.is_empty())
                            .collect::<Vec<_>>()
                            .join(": ")
                    };
                    RestErrorEntry {
                        number: e.get("error_number").and_then(Value::as_i64).unwrap_or(-1),
                        text: join(vec![s("source"), s("error"), s("description")]),
                        cause: join(vec![s("source"), s("error")]),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}
