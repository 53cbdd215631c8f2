//! Benchmark runs that measure: the API's side of `aif-loadgen`, the part
//! that needs no [`crate::app::App`] (the generator's argv and pseudo-recipe,
//! the `load_nodes` checks, the parts' files). The App drives the runs' jobs
//! with it in `app/run_jobs.rs`:
//!
//! - **start**: a run's choices become an `aif-loadgen` argv (every value a
//!   whole argument), launched through the same [`Backend`] as services (a
//!   child process under the supervisor locally, an `sbatch` job on Slurm),
//!   keyed by the run id. It writes `result.json` and `progress.json` where
//!   [`Backend::job_file`] says; the API reads them with
//!   [`Backend::read_job_file`] (a local read, or `cat` through the Slurm
//!   runner, here or over SSH).
//! - **monitor** (every tick): queued → `pending`, active → `running` with its
//!   progress, ended → result collected, status from the exit (`completed`
//!   only for exit 0 with a result after the full duration).
//! - **stop**: a cancel, or the end of the service, signals the generator
//!   (SIGTERM: it writes its partial result within a second, collected after).
//! - **energy**: with `--prometheus`, once Prometheus has samples past the
//!   window, the GPUs' energy over it is added to the result ([`crate::energy`]).

use std::path::Path;

use serde_json::{Value, json};

use crate::model::{ArrivalKind, LoadMode, Run, RunSpec, Workload};
use crate::recipes::{Recipe, Resources};
use crate::validate::ApiError;

/// Most `prompts` a run may carry, longest prompt in characters, most
/// nodes a run's load may come from: [`crate::limits`] (the one table of
/// request limits), here under their old paths.
pub use crate::limits::{MAX_LOAD_NODES, MAX_PROMPT_CHARS, MAX_PROMPTS};

/// Seconds a run sends load: the warm-up, then `duration_seconds`.
pub fn total_seconds(spec: &RunSpec) -> i64 {
    spec.warmup_seconds + spec.duration_seconds
}

/// Time after the duration the generator's requests may still finish.
pub const DRAIN_SECONDS: i64 = 30;

/// The `aif-loadgen` command line of a run.
pub fn loadgen_argv(
    binary: &Path,
    run: &Run,
    url: &str,
    result_path: &Path,
    progress_path: &Path,
    pushgateway: Option<&str>,
) -> Vec<String> {
    let s = &run.spec;
    let mut a: Vec<String> = vec![binary.to_string_lossy().into_owned()];
    let mut push = |k: &str, v: String| {
        a.push(k.to_string());
        a.push(v);
    };
    push("--url", url.to_string());
    push("--duration", format!("{}s", total_seconds(s)));
    push("--warmup", format!("{}s", s.warmup_seconds));
    push("--drain-timeout", format!("{DRAIN_SECONDS}s"));
    push("--run-id", run.id.clone());
    push("--service-id", run.service_id.clone());
    push("--result-file", result_path.to_string_lossy().into_owned());
    push(
        "--progress-file",
        progress_path.to_string_lossy().into_owned(),
    );
    push("--progress-every", "0s".into());
    push("--path", s.path.clone());
    match s.mode {
        LoadMode::ClosedLoop => push("--concurrency", s.concurrency.to_string()),
        LoadMode::OpenLoop => {
            push(
                "--request-rate",
                s.requests_per_second.unwrap_or(1).to_string(),
            );
            let arrivals = s.arrivals.unwrap_or(ArrivalKind::Poisson);
            push("--arrivals", arrivals.as_str().into());
            if let Some(b) = s.burstiness {
                push("--burstiness", b.to_string());
            }
            if let Some(m) = s.max_concurrency {
                push("--max-concurrency", m.to_string());
            }
        }
    }
    let workload = match s.workload {
        Workload::Http => "http",
        Workload::OpenaiCompletions => "completions",
        Workload::OpenaiChat => "chat",
    };
    push("--workload", workload.into());
    if let Some(m) = &s.model {
        push("--model", m.clone());
    }
    if let Some(n) = s.max_tokens {
        push("--max-tokens", n.to_string());
    }
    if let Some(t) = s.temperature {
        push("--temperature", t.to_string());
    }
    for p in s.prompts.iter().flatten() {
        push("--prompt", p.clone());
    }
    if let Some(n) = s.synthetic_prompt_words {
        push("--synthetic-prompt-words", n.to_string());
    }
    if let Some(g) = &s.goodput {
        let mut slos = Vec::new();
        for (name, v) in [
            ("ttft", g.ttft_ms),
            ("tpot", g.tpot_ms),
            ("e2el", g.e2el_ms),
        ] {
            if let Some(v) = v {
                slos.push(format!("{name}:{v}"));
            }
        }
        a.push("--goodput".into());
        a.extend(slos);
    }
    if let Some(p) = pushgateway {
        a.push("--pushgateway".into());
        a.push(p.to_string());
    }
    if s.load_nodes > 1 {
        // Each task takes its share and its index from SLURM_PROCID; the
        // job script adds the shared `--start-at`.
        a.push("--parts".into());
        a.push(s.load_nodes.to_string());
    }
    a
}

/// Whether this API can send `spec`'s load from its `load_nodes` nodes: `409`
/// on the local backend (one host) for more than one, `400` naming the field
/// when the clients cannot be shared (each node needs one of its own).
/// Checked once the service is known, so that a body the schema accepts is
/// refused only for what the schema cannot say.
///
/// # Errors
/// As above.
pub fn check_load_nodes(spec: &RunSpec, backend: &str) -> Result<(), ApiError> {
    let n = spec.load_nodes;
    if n <= 1 {
        return Ok(());
    }
    if backend == "local" {
        return Err(ApiError::field(
            409,
            "load_nodes",
            format!("`load_nodes` {n} needs a Slurm backend (this API runs `local`: one host)"),
        ));
    }
    let clients = match spec.mode {
        LoadMode::ClosedLoop => Some(("concurrency", spec.concurrency)),
        LoadMode::OpenLoop => spec.max_concurrency.map(|m| ("max_concurrency", m)),
    };
    if let Some((field, c)) = clients
        && c < n
    {
        return Err(ApiError::bad_field(
            field,
            format!(
                "`{field}` {c} cannot be shared by `load_nodes` {n}: each node needs at least one client"
            ),
        ));
    }
    Ok(())
}

/// The file of part `index` of a run whose path holds `%t` (one generator
/// per node writes one each); the path itself when it has none.
pub fn part_path(path: &str, index: i64) -> String {
    path.replace("%t", &index.to_string())
}

/// The per-node progress files of a run merged into one: the first node's
/// object, with the request counts, in-flight requests and clients summed.
pub fn merge_progress(parts: &[Value]) -> Option<Value> {
    let mut first = parts.first()?.clone();
    if let Value::Object(m) = &mut first {
        for key in [
            "requests_completed",
            "requests_failed",
            "warmup_requests",
            "in_flight",
            "clients",
        ] {
            let sum: u64 = parts.iter().filter_map(|p| p[key].as_u64()).sum();
            m.insert(key.into(), json!(sum));
        }
        m.insert("load_nodes".into(), json!(parts.len()));
    }
    Some(first)
}

/// The pseudo-recipe a generator job is launched with (1 CPU, 512 MiB, no GPU, a
/// Slurm time limit of the duration plus the drain and a minute).
pub fn loadgen_recipe(spec: &RunSpec) -> Recipe {
    let limit = total_seconds(spec) + DRAIN_SECONDS + 60;
    Recipe {
        name: "aif-loadgen".into(),
        description: "load generator of a benchmark run".into(),
        category: "benchmark".into(),
        argv: Vec::new(),
        port: None,
        health_path: None,
        startup_timeout_seconds: 600,
        resources: Resources {
            nodes: u32::try_from(spec.load_nodes).unwrap_or(1),
            gpus: 0,
            cpus: 1,
            // Explicit: without it Slurm may give the job the whole node's memory.
            memory: Some("512M".into()),
            time_limit: Some(format!(
                "{}:{:02}:{:02}",
                limit / 3600,
                (limit / 60) % 60,
                limit % 60
            )),
        },
        parameters: Default::default(),
        source: "aif-bench-api (benchmark run)".into(),
    }
}
