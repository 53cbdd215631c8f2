//! Benchmark runs that measure: the API's side of `aif-loadgen`.
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
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::app::App;
use crate::backend::{Ending, JobState, LaunchSpec};
use crate::energy::{self, Energy};
use crate::model::{
    ArrivalKind, CreateRun, LoadMode, Run, RunSpec, Service, Status, Workload, now_ms, rfc3339,
};
use crate::recipes::{Recipe, Resources};
use crate::state::{RunJob, Transition};
use crate::validate::{ApiError, in_range};

/// Most `prompts` a run may carry (they travel as arguments: at most
/// 16 × 1024 characters keeps a Slurm `--wrap` script under Linux's 128 KiB
/// limit for one argument).
pub const MAX_PROMPTS: usize = 16;

/// Longest prompt, in characters.
pub const MAX_PROMPT_CHARS: usize = 1024;

/// Most nodes a run's load may come from (`load_nodes`).
pub const MAX_LOAD_NODES: i64 = 64;

/// Seconds a run sends load: the warm-up, then `duration_seconds`.
pub fn total_seconds(spec: &RunSpec) -> i64 {
    spec.warmup_seconds + spec.duration_seconds
}

/// Time after the duration the generator's requests may still finish.
pub const DRAIN_SECONDS: i64 = 30;

fn only_for(field: &str, what: &str) -> ApiError {
    ApiError::bad_field(field, format!("`{field}` is for {what}"))
}

/// Checks the choices [`crate::app`] does not and fills them into `spec`.
///
/// # Errors
/// `400` naming the field.
pub fn complete_spec(req: &CreateRun, mut spec: RunSpec) -> Result<RunSpec, ApiError> {
    let open = spec.mode == LoadMode::OpenLoop;
    match (open, req.arrivals, req.burstiness) {
        (false, Some(_), _) => return Err(only_for("arrivals", "mode `open_loop`")),
        (false, None, Some(_)) => return Err(only_for("burstiness", "`arrivals: gamma`")),
        (true, Some(ArrivalKind::Gamma), None) => {
            return Err(ApiError::bad_field(
                "burstiness",
                "missing field `burstiness` (required for `arrivals: gamma`)",
            ));
        }
        (true, Some(ArrivalKind::Gamma), Some(b)) => {
            if !(b.is_finite() && b > 0.0 && b <= 1000.0) {
                return Err(ApiError::bad_field(
                    "burstiness",
                    "`burstiness` must be > 0 and at most 1000",
                ));
            }
        }
        (true, _, Some(_)) => return Err(only_for("burstiness", "`arrivals: gamma`")),
        (true, _, None) | (false, None, None) => {}
    }
    if open {
        spec.arrivals = Some(req.arrivals.unwrap_or(ArrivalKind::Poisson));
        spec.burstiness = req.burstiness;
    }
    if let Some(m) = req.max_concurrency {
        if !open {
            return Err(only_for(
                "max_concurrency",
                "mode `open_loop` (closed_loop uses `concurrency`)",
            ));
        }
        in_range("max_concurrency", m, 1, 10_000)?;
        spec.max_concurrency = Some(m);
    }
    if open && req.concurrency.is_some() {
        return Err(only_for(
            "concurrency",
            "mode `closed_loop` (open_loop caps requests in flight with `max_concurrency`)",
        ));
    }
    let warmup = req.warmup_seconds.unwrap_or(0);
    in_range("warmup_seconds", warmup, 0, 3600)?;
    spec.warmup_seconds = warmup;
    let openai = spec.workload != Workload::Http;
    let what = "workloads `openai_completions` and `openai_chat`";
    for (given, field) in [
        (req.prompts.is_some(), "prompts"),
        (
            req.synthetic_prompt_words.is_some(),
            "synthetic_prompt_words",
        ),
        (req.temperature.is_some(), "temperature"),
    ] {
        if given && !openai {
            return Err(only_for(field, what));
        }
    }
    if let Some(p) = &req.prompts {
        if req.synthetic_prompt_words.is_some() {
            return Err(ApiError::bad_field(
                "synthetic_prompt_words",
                "give `prompts` or `synthetic_prompt_words`, not both",
            ));
        }
        if p.is_empty() || p.len() > MAX_PROMPTS {
            return Err(ApiError::bad_field(
                "prompts",
                format!("`prompts` must hold 1..={MAX_PROMPTS} prompts"),
            ));
        }
        if let Some(i) = p
            .iter()
            .position(|s| s.is_empty() || s.chars().count() > MAX_PROMPT_CHARS || s.contains('\0'))
        {
            return Err(ApiError::bad_field(
                format!("prompts[{i}]"),
                format!("a prompt must be 1..={MAX_PROMPT_CHARS} characters without NUL"),
            ));
        }
        spec.prompts = Some(p.clone());
    }
    if let Some(n) = req.synthetic_prompt_words {
        in_range("synthetic_prompt_words", n, 1, 4096)?;
    }
    if openai && spec.prompts.is_none() {
        spec.synthetic_prompt_words = Some(req.synthetic_prompt_words.unwrap_or(128));
    }
    if let Some(t) = req.temperature {
        if !(t.is_finite() && (0.0..=2.0).contains(&t)) {
            return Err(ApiError::bad_field(
                "temperature",
                "`temperature` must be in 0..=2",
            ));
        }
        spec.temperature = Some(t);
    }
    if let Some(g) = &req.goodput {
        for (v, field, needs_openai) in [
            (g.ttft_ms, "goodput.ttft_ms", true),
            (g.tpot_ms, "goodput.tpot_ms", true),
            (g.e2el_ms, "goodput.e2el_ms", false),
        ] {
            let Some(v) = v else { continue };
            if needs_openai && !openai {
                return Err(only_for(field, what));
            }
            if !(v.is_finite() && v > 0.0 && v <= 86_400_000.0) {
                return Err(ApiError::bad_field(
                    field,
                    format!("`{field}` must be > 0 ms"),
                ));
            }
        }
        if g.ttft_ms.is_none() && g.tpot_ms.is_none() && g.e2el_ms.is_none() {
            return Err(ApiError::bad_field(
                "goodput",
                "`goodput` needs at least one of ttft_ms, tpot_ms, e2el_ms",
            ));
        }
        spec.goodput = Some(*g);
    }
    let load_nodes = req.load_nodes.unwrap_or(1);
    in_range("load_nodes", load_nodes, 1, MAX_LOAD_NODES)?;
    spec.load_nodes = load_nodes;
    Ok(spec)
}

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
fn loadgen_recipe(spec: &RunSpec) -> Recipe {
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

fn read_json(app: &App, path: &str) -> Option<Value> {
    match app.backend.read_job_file(Path::new(path)) {
        Ok(Some(text)) => serde_json::from_str(&text).ok(),
        Ok(None) => None,
        Err(e) => {
            log::warn!("cannot read {path}: {e}");
            None
        }
    }
}

impl App {
    /// Launches the generator of a freshly inserted run against `svc`.
    ///
    /// # Errors
    /// `409` when the service has no endpoint, `502` when the backend failed.
    pub fn launch_run(&self, run: &Run, svc: &Service) -> Result<Run, ApiError> {
        let id = run.id.as_str();
        let fail = |detail: String| {
            if let Err(e) = self.store.transition_run(id, Status::Failed, Some(&detail)) {
                log::error!("run {id}: cannot record failure: {e}");
            }
        };
        let Some(port) = svc.port else {
            let why = format!(
                "service {} has no endpoint (its recipe has no port)",
                svc.id
            );
            fail(why.clone());
            return Err(ApiError::field(409, "service_id", why));
        };
        let host = self.backend.health_host(svc.host.as_deref());
        let url = format!("http://{host}:{port}");
        // One file per generator: `%t` becomes its index (SLURM_PROCID).
        let (result_name, progress_name) = if run.spec.load_nodes > 1 {
            ("result-%t.json", "progress-%t.json")
        } else {
            ("result.json", "progress.json")
        };
        let result_path = self.backend.job_file(id, result_name);
        let progress_path = self.backend.job_file(id, progress_name);
        let argv = loadgen_argv(
            &self.config.loadgen_binary,
            run,
            &url,
            &result_path,
            &progress_path,
            self.config.job_pushgateway(),
        );
        let recipe = loadgen_recipe(&run.spec);
        let mut urls = vec![("the endpoint URL of the service", url.clone())];
        if let Some(p) = self.config.job_pushgateway() {
            urls.push(("the Pushgateway URL", p.to_string()));
        }
        let spec = LaunchSpec {
            service_id: id,
            recipe: &recipe,
            argv: &argv,
            port: None,
            tasks: u32::try_from(run.spec.load_nodes).unwrap_or(1),
            urls: &urls,
        };
        self.hold_reverse_tunnel();
        let launched = match self.backend.launch(&spec) {
            Ok(l) => l,
            Err(e) => {
                self.metrics.launch_failed();
                let detail = format!("the load generator could not be started: {e}");
                log::error!("run {id}: {detail}");
                fail(detail);
                return Err(ApiError::new(
                    502,
                    format!("run {id}: the load generator could not be started: {e}"),
                ));
            }
        };
        let planned_end = now_ms() + total_seconds(&run.spec) * 1000;
        self.store.insert_run_job(&RunJob {
            run_id: id.to_string(),
            backend_ref: launched.backend_ref.clone(),
            result_path: result_path.to_string_lossy().into_owned(),
            progress_path: progress_path.to_string_lossy().into_owned(),
            planned_end_ms: planned_end,
            progress: None,
            collected: false,
            energy_pending: false,
        })?;
        let run = if self.backend.kind() == "local" {
            match self
                .store
                .transition_run(id, Status::Running, Some("load generator running"))?
            {
                Transition::Changed(r) | Transition::Unchanged(r) => r,
                Transition::NotFound => {
                    return Err(ApiError::not_found(format!("no benchmark run `{id}`")));
                }
            }
        } else {
            self.store
                .get_run(id, false)?
                .ok_or_else(|| ApiError::not_found(format!("no benchmark run `{id}`")))?
        };
        log::info!(
            "run {id} started against service {} at {url}: duration_seconds={}, effective end {} ({} on {} as {}; {:?}, workload {:?})",
            svc.id,
            run.spec.duration_seconds,
            rfc3339(planned_end),
            self.config.loadgen_binary.display(),
            self.backend.kind(),
            launched.backend_ref,
            run.spec.mode,
            run.spec.workload,
        );
        Ok(run)
    }

    /// Signals the generator of a run (cancel, or its service ended).
    pub fn stop_run_job(&self, run_id: &str) {
        match self.store.run_job(run_id) {
            Ok(Some(job)) if !job.collected => {
                if let Err(e) = self.backend.cancel(run_id, &job.backend_ref) {
                    log::error!("run {run_id}: cannot stop the load generator: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => log::error!("run {run_id}: {e}"),
        }
    }

    /// A run as served: the record plus `planned_end_at` and `progress`.
    ///
    /// # Errors
    /// State database errors.
    pub fn run_view(&self, run: &Run) -> Result<Value, ApiError> {
        let mut v = serde_json::to_value(run)
            .map_err(|e| ApiError::internal(format!("cannot encode run: {e}")))?;
        let job = self.store.run_job(&run.id)?;
        let started = self.store.run_started_ms(&run.id)?;
        if let Value::Object(m) = &mut v {
            let planned = started
                .map(|s| s + total_seconds(&run.spec) * 1000)
                .or(job.as_ref().map(|j| j.planned_end_ms));
            m.insert("planned_end_at".into(), json!(planned.map(rfc3339)));
            let mut progress = match job.as_ref().and_then(|j| j.progress.clone()) {
                Some(Value::Object(p)) => p,
                _ => Map::new(),
            };
            if let (Some(s), Status::Running) = (started, run.status) {
                let elapsed = (now_ms() - s).max(0) as f64 / 1000.0;
                let planned = total_seconds(&run.spec) as f64;
                progress.insert(
                    "elapsed_seconds".into(),
                    json!((elapsed * 10.0).round() / 10.0),
                );
                progress.insert("planned_seconds".into(), json!(planned));
                progress.insert(
                    "remaining_seconds".into(),
                    json!(((planned - elapsed).max(0.0) * 10.0).round() / 10.0),
                );
            }
            m.insert(
                "progress".into(),
                if progress.is_empty() {
                    Value::Null
                } else {
                    Value::Object(progress)
                },
            );
        }
        Ok(v)
    }

    /// One pass over the generator jobs: states, progress, results, energy.
    /// Returns whether any generator job was still uncollected at its start
    /// (`true` when they could not be listed: unknown counts as work).
    pub fn monitor_runs(&self) -> bool {
        let jobs = match self.store.open_run_jobs() {
            Ok(j) => j,
            Err(e) => {
                log::error!("monitor: cannot list run jobs: {e}");
                return true;
            }
        };
        let live: Vec<(&str, &str)> = jobs
            .iter()
            .filter(|j| !j.collected)
            .map(|j| (j.run_id.as_str(), j.backend_ref.as_str()))
            .collect();
        let states = if live.is_empty() {
            Default::default()
        } else {
            self.backend.states(&live)
        };
        for job in &jobs {
            let run = match self.store.get_run(&job.run_id, false) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    log::error!("run {}: {e}", job.run_id);
                    continue;
                }
            };
            if job.collected {
                self.try_energy(job, &run);
                continue;
            }
            match states.get(&job.run_id) {
                None => {}
                Some(Err(e)) => log::warn!("run {}: cannot get the generator's state: {e}", run.id),
                Some(Ok(JobState::Queued)) => {}
                Some(Ok(JobState::Active { host })) => {
                    if run.status == Status::Pending {
                        let detail = format!(
                            "load generator running{}",
                            host.as_deref()
                                .map(|h| format!(" on {h}"))
                                .unwrap_or_default()
                        );
                        if let Ok(Transition::Changed(_)) =
                            self.store
                                .transition_run(&run.id, Status::Running, Some(&detail))
                        {
                            log::info!(
                                "run {}: running, duration_seconds={}, effective end {}",
                                run.id,
                                run.spec.duration_seconds,
                                rfc3339(now_ms() + total_seconds(&run.spec) * 1000)
                            );
                        }
                    }
                    if let Some(p) = self.read_progress(job, &run)
                        && let Err(e) = self.store.set_run_progress(&run.id, &p)
                    {
                        log::error!("run {}: {e}", run.id);
                    }
                }
                Some(Ok(JobState::Ended(ending))) => self.collect(job, &run, ending),
                Some(Ok(JobState::Missing)) => {
                    let _ = self.store.transition_run(
                        &run.id,
                        Status::Failed,
                        Some("the load generator's job vanished without a trace"),
                    );
                    let _ = self.store.set_run_job_done(&run.id, true, false);
                }
            }
        }
        !live.is_empty()
    }

    fn collect(&self, job: &RunJob, run: &Run, ending: &Ending) {
        let id = run.id.as_str();
        let (mut result, missing) = self.read_result(job, run);
        if let Some(p) = self.read_progress(job, run) {
            let _ = self.store.set_run_progress(id, &p);
        }
        let by_signal = result
            .as_ref()
            .is_some_and(|r| r.get("ended_by").and_then(Value::as_str) == Some("signal"));
        let (status, detail) = match (ending, &result) {
            (Ending::Exited(0), Some(r)) if !by_signal => (
                Status::Completed,
                format!(
                    "ran its duration: {} requests completed, {} failed",
                    r.get("completed").cloned().unwrap_or(Value::Null),
                    r.get("failed").cloned().unwrap_or(Value::Null)
                ),
            ),
            (Ending::Exited(0), Some(_)) => (
                Status::Failed,
                "the load generator was stopped by a signal before its end (partial result kept)"
                    .to_string(),
            ),
            (Ending::Exited(0), None) if missing.is_some() => {
                (Status::Failed, missing.clone().unwrap_or_default())
            }
            (Ending::Exited(0), None) => (
                Status::Failed,
                "the load generator exited without writing its result".to_string(),
            ),
            (Ending::Exited(c), _) => {
                let tail = self.stderr_tail(id, &job.backend_ref);
                (
                    Status::Failed,
                    format!("the load generator exited with code {c}{tail}"),
                )
            }
            (Ending::Signalled(s), _) => (
                Status::Failed,
                format!("the load generator was killed by signal {s}"),
            ),
            (Ending::Cancelled, _) => (Status::Cancelled, "cancelled outside the API".into()),
            (Ending::SchedulerFailure(w), _) => {
                (Status::Failed, format!("load generator job: {w}"))
            }
        };
        let mut energy_pending = false;
        if let Some(r) = result.as_mut() {
            match &self.config.prometheus {
                Some(_) => {
                    r.insert("energy_status".into(), json!("pending"));
                    energy_pending = true;
                }
                None => {
                    r.extend(energy::result_fields(
                        &Energy::Unavailable(energy::Unavailable::NotConfigured),
                        r,
                    ));
                }
            }
            if let Err(e) = self.store.set_run_result(id, &Value::Object(r.clone())) {
                log::error!("run {id}: cannot store the result: {e}");
            }
        }
        match self.store.transition_run(id, status, Some(&detail)) {
            Ok(Transition::Changed(_)) => log::info!("run {id}: {} ({detail})", status.as_str()),
            Ok(_) => log::info!(
                "run {id}: load generator ended; result {}",
                if result.is_some() {
                    "collected"
                } else {
                    "missing"
                }
            ),
            Err(e) => log::error!("run {id}: {e}"),
        }
        if let Err(e) = self.store.set_run_job_done(id, true, energy_pending) {
            log::error!("run {id}: {e}");
        }
    }

    /// `": LAST LINE"` of a job's stderr, or nothing when it has none.
    pub fn stderr_tail(&self, key: &str, backend_ref: &str) -> String {
        self.backend
            .read_job_file(&self.backend.stderr_file(key, backend_ref))
            .ok()
            .flatten()
            .and_then(|t| {
                t.lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(str::to_string)
            })
            .map(|l| format!(": {l}"))
            .unwrap_or_default()
    }

    /// A run's progress: its generator's, or its generators' merged
    /// ([`merge_progress`]) when it has several.
    fn read_progress(&self, job: &RunJob, run: &Run) -> Option<Value> {
        if run.spec.load_nodes <= 1 {
            return read_json(self, &job.progress_path);
        }
        let parts: Vec<Value> = (0..run.spec.load_nodes)
            .filter_map(|i| read_json(self, &part_path(&job.progress_path, i)))
            .collect();
        merge_progress(&parts)
    }

    /// A run's result: its generator's, or its generators' merged into one
    /// ([`crate::loadgen::merge::merge_parts`]: percentiles from the merged
    /// histograms, per-node counts under `nodes`); with why there is none
    /// when some of several generators wrote none or they cannot be merged.
    fn read_result(&self, job: &RunJob, run: &Run) -> (Option<Map<String, Value>>, Option<String>) {
        let n = run.spec.load_nodes;
        if n <= 1 {
            return match read_json(self, &job.result_path) {
                Some(Value::Object(m)) => (Some(m), None),
                _ => (None, None),
            };
        }
        let mut parts = Vec::new();
        let mut missing = Vec::new();
        for i in 0..n {
            match read_json(self, &part_path(&job.result_path, i)) {
                Some(Value::Object(m)) => parts.push(m),
                _ => missing.push(i),
            }
        }
        let why = if missing.is_empty() {
            match crate::loadgen::merge::merge_parts(&parts) {
                Ok(m) => return (Some(m), None),
                Err(e) => format!("the {n} load generators' results cannot be merged: {e}"),
            }
        } else {
            format!(
                "load generator(s) {missing:?} of {n} (SLURM_PROCID) exited without writing their result"
            )
        };
        log::error!("run {}: {why}", run.id);
        (None, Some(why))
    }

    fn try_energy(&self, job: &RunJob, run: &Run) {
        let Some(prometheus) = &self.config.prometheus else {
            let _ = self.store.set_run_job_done(&run.id, true, false);
            return;
        };
        let Some(Value::Object(mut result)) = run.result.clone() else {
            let _ = self.store.set_run_job_done(&run.id, true, false);
            return;
        };
        let window = match (
            result.get("window_start_ms").and_then(Value::as_i64),
            result.get("window_end_ms").and_then(Value::as_i64),
        ) {
            (Some(a), Some(b)) if b > a => (a, b),
            _ => {
                result.extend(energy::result_fields(
                    &Energy::Unavailable(energy::Unavailable::NoWindow),
                    &result,
                ));
                let _ = self.store.set_run_result(&run.id, &Value::Object(result));
                let _ = self.store.set_run_job_done(&run.id, true, false);
                return;
            }
        };
        let slurm_job = match self.store.get_service(&run.service_id, false) {
            Ok(Some(s)) if s.backend == "slurm" => s.backend_ref,
            _ => None,
        };
        let e = energy::measure(
            prometheus,
            Duration::from_secs(10),
            &run.service_id,
            slurm_job.as_deref(),
            window,
            now_ms(),
        );
        if e == Energy::NotYet {
            return;
        }
        match &e {
            Energy::Measured {
                joules,
                gpus,
                per_node,
                ..
            } => log::info!(
                "run {}: energy {joules:.1} J on {gpus} GPUs of {} node(s) over {:.1} s",
                run.id,
                per_node.len(),
                (window.1 - window.0) as f64 / 1000.0
            ),
            Energy::Unavailable(why) => log::warn!("run {}: energy unavailable: {why}", run.id),
            Energy::NotYet => {}
        }
        let fields = energy::result_fields(&e, &result);
        result.extend(fields);
        if let Err(err) = self.store.set_run_result(&run.id, &Value::Object(result)) {
            log::error!("run {}: {err}", run.id);
        }
        let _ = job;
        let _ = self.store.set_run_job_done(&run.id, true, false);
    }
}
