//! The App's side of benchmark runs' jobs ([`crate::benchmark`] has the
//! pure half): launch a run's generator, follow it each tick, collect its
//! result (merging the parts of a several-node run), then its energy.

use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::App;
use crate::backend::{Ending, JobState, LaunchSpec};
use crate::benchmark::{loadgen_argv, loadgen_recipe, merge_progress, part_path, total_seconds};
use crate::energy::{self, Energy};
use crate::model::{Run, Service, Status};
use crate::state::{RunJob, Transition};
use crate::validate::ApiError;
use gpu_metrics::clock::{now_ms, rfc3339};

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
        )
        .inspect_err(|e| fail(e.error.clone()))?;
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
    /// ([`aif_loadgen::merge::merge_parts`]: percentiles from the merged
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
            match aif_loadgen::merge::merge_parts(&parts) {
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
