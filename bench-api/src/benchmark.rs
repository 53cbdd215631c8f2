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

use aif_loadgen::plan::Args;
use serde_json::{Value, json};

use crate::model::{ArrivalKind, LoadMode, Run, RunSpec, Workload};
use crate::recipes::{Recipe, Resources};
use crate::validate::ApiError;

/// Most `prompts` a run may carry, longest prompt in characters, most
/// nodes a run's load may come from: [`crate::limits`] (the one table of
/// request limits), here under their old paths.
pub use crate::limits::{MAX_LOAD_NODES, MAX_PROMPT_CHARS, MAX_PROMPTS};

/// Seconds a run sends load: the warm-up, then `duration_seconds`; for a
/// sweep, an upper bound: its most steps, each with its drain.
pub fn total_seconds(spec: &RunSpec) -> i64 {
    let one = spec.warmup_seconds + spec.duration_seconds;
    match &spec.sweep {
        None => one,
        Some(s) => (one + DRAIN_SECONDS) * s.max_steps(spec),
    }
}

/// Time after the duration the generator's requests may still finish.
pub const DRAIN_SECONDS: i64 = 30;

/// The `aif-loadgen` flags of a run, as the load generator's own [`Args`]
/// (its [`Args::to_argv`] is the command line; parsing that gives these
/// `Args` back, the contract the crate tests).
///
/// # Errors
/// `400` naming the field when a count does not fit the generator's type
/// (only a spec that skipped [`crate::model::CreateRun::validate`] can hold one).
pub fn loadgen_args(
    run: &Run,
    url: &str,
    result_path: &Path,
    progress_path: &Path,
    pushgateway: Option<&str>,
) -> Result<Args, ApiError> {
    let s = &run.spec;
    let count = |field: &str, v: Option<i64>| -> Result<Option<usize>, ApiError> {
        v.map(|v| whole(field, v)).transpose()
    };
    let (concurrency, max_concurrency) = match s.mode {
        LoadMode::ClosedLoop => (count("concurrency", Some(s.concurrency))?, None),
        LoadMode::OpenLoop => (None, count("max_concurrency", s.max_concurrency)?),
    };
    let (request_rate, arrivals, burstiness) = match s.mode {
        LoadMode::ClosedLoop => (None, None, None),
        LoadMode::OpenLoop => (
            Some(s.requests_per_second.unwrap_or(1) as f64),
            Some(
                s.arrivals
                    .unwrap_or(ArrivalKind::Poisson)
                    .as_str()
                    .to_string(),
            ),
            s.burstiness,
        ),
    };
    let workload = match s.workload {
        Workload::Http => "http",
        Workload::OpenaiCompletions => "completions",
        Workload::OpenaiChat => "chat",
    };
    let goodput = s
        .goodput
        .iter()
        .flat_map(|g| {
            [
                ("ttft", g.ttft_ms),
                ("tpot", g.tpot_ms),
                ("e2el", g.e2el_ms),
            ]
            .into_iter()
            .filter_map(|(name, v)| v.map(|v| format!("{name}:{v}")))
        })
        .collect();
    let mut args = Args {
        url: Some(url.to_string()),
        concurrency,
        request_rate,
        arrivals,
        burstiness,
        max_concurrency,
        duration: Some(format!("{}s", total_seconds(s))),
        warmup: Some(format!("{}s", s.warmup_seconds)),
        drain_timeout: Some(format!("{DRAIN_SECONDS}s")),
        workload: Some(workload.to_string()),
        path: Some(s.path.clone()),
        prompts: s.prompts.iter().flatten().cloned().collect(),
        synthetic_prompt_words: count("synthetic_prompt_words", s.synthetic_prompt_words)?,
        model: s.model.clone(),
        max_tokens: s.max_tokens.map(|v| whole("max_tokens", v)).transpose()?,
        temperature: s.temperature,
        goodput,
        result_file: Some(result_path.to_path_buf()),
        progress_file: Some(progress_path.to_path_buf()),
        progress_every: Some("0s".to_string()),
        run_id: Some(run.id.clone()),
        service_id: Some(run.service_id.clone()),
        pushgateway: pushgateway.map(str::to_string),
        // Each task takes its share and its index from SLURM_PROCID; the
        // job script adds the shared `--start-at`.
        parts: count("load_nodes", (s.load_nodes > 1).then_some(s.load_nodes))?,
        ..Args::default()
    };
    crate::run_options::apply(s, &mut args);
    Ok(args)
}

/// `v` as the generator's integer type, or `400` naming `field`.
fn whole<T: TryFrom<i64>>(field: &str, v: i64) -> Result<T, ApiError> {
    T::try_from(v).map_err(|_| {
        ApiError::field(
            400,
            field,
            format!("`{field}` {v} is out of the generator's range"),
        )
    })
}

/// The `aif-loadgen` command line of a run: `binary`, then
/// [`loadgen_args`]'s [`Args::to_argv`].
///
/// # Errors
/// As [`loadgen_args`].
pub fn loadgen_argv(
    binary: &Path,
    run: &Run,
    url: &str,
    result_path: &Path,
    progress_path: &Path,
    pushgateway: Option<&str>,
) -> Result<Vec<String>, ApiError> {
    let args = loadgen_args(run, url, result_path, progress_path, pushgateway)?;
    Ok(std::iter::once(binary.to_string_lossy().into_owned())
        .chain(args.to_argv())
        .collect())
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
    if spec.sweep.is_some() {
        return Err(ApiError::bad_field(
            "load_nodes",
            format!(
                "`load_nodes` {n} does not go with `sweep`: a capacity search runs from one node"
            ),
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
