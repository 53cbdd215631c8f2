//! The application: state, recipes, backend, and the handlers behind the
//! routes; plus the monitor that moves services and runs through their
//! lifecycle and reconciles with the backend at start.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::{Backend, Ending, JobState, LaunchSpec, Runnable};
use crate::config::Config;
use crate::cors::Cors;
use crate::metrics::ApiMetrics;
use crate::model::{
    CancelRequest, CreateRun, CreateService, LoadMode, Run, RunSpec, Service, SetServiceStatus,
    Status, Workload, new_id, now_ms, rfc3339,
};
use crate::recipes::{Catalogue, Recipe};
use crate::state::{StateError, Store, Transition};
use crate::tunnel::ReverseTunnel;
use crate::validate::{ApiError, in_range, parse_json, parse_query};

/// A response body.
#[derive(Debug, Clone)]
pub enum Payload {
    /// JSON bytes.
    Json(Vec<u8>),
    /// Shared JSON bytes (cached lists).
    SharedJson(Arc<Vec<u8>>),
    /// Prometheus text.
    Text(String),
    /// Nothing (204).
    Empty,
}

/// A recipe as `GET /api/v1/recipes` lists it: its fields, and whether this
/// API's backend can run it.
#[derive(Debug, serde::Serialize)]
struct RecipeView<'a> {
    #[serde(flatten)]
    recipe: &'a Recipe,
    /// `yes`, `no` or `unknown`.
    runnable: Runnable,
    /// Why, always given.
    runnable_reason: String,
}

/// A successful answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub payload: Payload,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json<T: serde::Serialize>(status: u16, value: &T) -> Result<Reply, ApiError> {
        let body = serde_json::to_vec(value)
            .map_err(|e| ApiError::internal(format!("cannot encode answer: {e}")))?;
        Ok(Reply {
            status,
            payload: Payload::Json(body),
            headers: Vec::new(),
        })
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> Self {
        log::error!("state database error: {e}");
        ApiError::internal(format!("state database error: {e}"))
    }
}

/// Everything the handlers and the monitor share.
pub struct App {
    /// The configuration.
    pub config: Config,
    /// SQLite state.
    pub store: Store,
    /// Recipes.
    pub recipes: Catalogue,
    /// Where services run.
    pub backend: Box<dyn Backend>,
    /// The API's own counters.
    pub metrics: ApiMetrics,
    /// Allowed origins.
    pub cors: Cors,
    /// The remote forward on the Slurm login node (`--reverse-tunnel`).
    pub reverse_tunnel: Option<ReverseTunnel>,
    openapi_json: Vec<u8>,
    started: Instant,
    starting_since: Mutex<HashMap<String, Instant>>,
    health_agent: ureq::Agent,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("backend", &self.backend.kind())
            .finish_non_exhaustive()
    }
}

fn status_filter(value: &str, field: &str) -> Result<Vec<Status>, ApiError> {
    value
        .split(',')
        .map(|s| {
            Status::parse(s).ok_or_else(|| {
                ApiError::bad_field(
                    field,
                    format!(
                        "`{s}` is not a status; expected one of: {}",
                        Status::ALL.map(|s| s.as_str()).join(", ")
                    ),
                )
            })
        })
        .collect()
}

impl App {
    /// Assembles the application.
    pub fn new(config: Config, store: Store, recipes: Catalogue, backend: Box<dyn Backend>) -> App {
        let openapi_json =
            serde_json::to_vec_pretty(&crate::openapi::document(config.token.is_some(), &recipes))
                .unwrap_or_default();
        let health_agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.health_timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        App {
            cors: Cors::new(config.cors_origins.clone()),
            reverse_tunnel: config.reverse_tunnel.clone().map(ReverseTunnel::new),
            config,
            store,
            recipes,
            backend,
            metrics: ApiMetrics::default(),
            openapi_json,
            started: Instant::now(),
            starting_since: Mutex::new(HashMap::new()),
            health_agent,
        }
    }

    /// `GET /health`.
    pub fn health(&self) -> Result<Reply, ApiError> {
        Reply::json(
            200,
            &serde_json::json!({
                "status": "ok",
                "version": env!("CARGO_PKG_VERSION"),
                "backend": self.backend.kind(),
                "uptime_seconds": self.started.elapsed().as_secs(),
            }),
        )
    }

    /// `GET /api/v1/recipes`: every recipe with `runnable` and
    /// `runnable_reason`, checked now (a program installed since the last
    /// call is seen).
    pub fn list_recipes(&self) -> Result<Reply, ApiError> {
        let views: Vec<RecipeView<'_>> = self
            .recipes
            .all()
            .map(|recipe| {
                let r = self.backend.runnable(recipe);
                RecipeView {
                    recipe,
                    runnable: r.state,
                    runnable_reason: r.reason,
                }
            })
            .collect();
        Reply::json(200, &views)
    }

    /// `GET /openapi.json`.
    pub fn openapi(&self) -> Result<Reply, ApiError> {
        Ok(Reply {
            status: 200,
            payload: Payload::Json(self.openapi_json.clone()),
            headers: Vec::new(),
        })
    }

    /// `GET /metrics`.
    pub fn render_metrics(&self) -> Result<Reply, ApiError> {
        let since = now_ms() - self.config.metrics_retention.as_millis() as i64;
        let view = self.store.metrics_view(since)?;
        let mut text = self.metrics.render(&view);
        if let Some(t) = &self.reverse_tunnel {
            t.render(&mut text);
        }
        Ok(Reply {
            status: 200,
            payload: Payload::Text(text),
            headers: Vec::new(),
        })
    }

    /// `GET /api/v1/services[?status=a,b]`.
    pub fn list_services(&self, query: &str) -> Result<Reply, ApiError> {
        let q = parse_query(query, &["status"])?;
        let filter = match q.first() {
            Some((_, v)) => Some(status_filter(v, "status")?),
            None => None,
        };
        Ok(Reply {
            status: 200,
            payload: Payload::SharedJson(self.store.list_services_json(filter.as_deref())?),
            headers: Vec::new(),
        })
    }

    /// `GET /api/v1/services/{id}`.
    pub fn get_service(&self, id: &str) -> Result<Reply, ApiError> {
        let svc = self
            .store
            .get_service(id, true)?
            .ok_or_else(|| service_not_found(id))?;
        Reply::json(200, &svc)
    }

    /// `GET /api/v1/services/targets`: Prometheus HTTP SD.
    pub fn service_targets(&self) -> Result<Reply, ApiError> {
        let running = self.store.list_services(Some(&[Status::Running]))?;
        let groups: Vec<serde_json::Value> = running
            .iter()
            .filter_map(|s| {
                let port = s.port?;
                let host = s.host.clone().unwrap_or_else(|| "127.0.0.1".into());
                Some(serde_json::json!({
                    "targets": [format!("{host}:{port}")],
                    "labels": {
                        "service_id": s.id,
                        "recipe": s.recipe,
                        "backend": s.backend,
                    }
                }))
            })
            .collect();
        Reply::json(200, &groups)
    }

    /// `POST /api/v1/services`.
    pub fn create_service(&self, body: &[u8]) -> Result<Reply, ApiError> {
        let req: CreateService = parse_json(body)?;
        let recipe = self.recipes.get(&req.recipe).ok_or_else(|| {
            ApiError::field(
                404,
                "recipe",
                format!(
                    "no recipe `{}`; available: {}",
                    req.recipe,
                    self.recipes
                        .all()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        let resolved = recipe.resolve(&req.params)?;
        let runnable = self.backend.runnable(recipe);
        if runnable.state == Runnable::No {
            return Err(ApiError::field(
                409,
                "recipe",
                format!(
                    "recipe `{}` cannot run on the {} backend: {}",
                    recipe.name,
                    self.backend.kind(),
                    runnable.reason
                ),
            ));
        }
        if self.backend.kind() == "local"
            && let Some(port) = resolved.port
        {
            let active = self.store.list_services(Some(&[
                Status::Pending,
                Status::Starting,
                Status::Running,
            ]))?;
            if let Some(other) = active
                .iter()
                .find(|s| s.port == Some(port) && s.backend == "local")
            {
                return Err(ApiError::field(
                    409,
                    "params.port",
                    format!(
                        "port {port} is in use by service {} ({})",
                        other.id,
                        other.status.as_str()
                    ),
                ));
            }
        }
        let id = new_id("svc");
        let now = now_ms();
        let svc = Service {
            id: id.clone(),
            recipe: recipe.name.clone(),
            params: resolved.params.clone(),
            status: Status::Pending,
            backend: self.backend.kind().to_string(),
            backend_ref: None,
            host: None,
            port: resolved.port,
            exit_code: None,
            detail: None,
            created_at: rfc3339(now),
            updated_at: rfc3339(now),
            history: None,
        };
        self.store.insert_service(&svc, now)?;
        let spec = LaunchSpec {
            service_id: &id,
            recipe,
            argv: &resolved.argv,
            port: resolved.port,
            tasks: 1,
            urls: &[],
        };
        self.hold_reverse_tunnel();
        match self.backend.launch(&spec) {
            Ok(launched) => {
                self.store.set_service_location(
                    &id,
                    Some(&launched.backend_ref),
                    launched.host.as_deref(),
                )?;
                log::info!(
                    "service {id} ({}) created on {} as {}",
                    recipe.name,
                    self.backend.kind(),
                    launched.backend_ref
                );
            }
            Err(e) => {
                self.metrics.launch_failed();
                let detail = format!("launch failed: {e}");
                log::error!("service {id} ({}): {detail}", recipe.name);
                self.store
                    .transition_service(&id, Status::Failed, Some(&detail), None)?;
                return Err(ApiError::new(
                    502,
                    format!("service {id} could not be started: {e}"),
                ));
            }
        }
        let svc = self
            .store
            .get_service(&id, false)?
            .ok_or_else(|| service_not_found(&id))?;
        let mut reply = Reply::json(201, &svc)?;
        reply
            .headers
            .push(("Location", format!("/api/v1/services/{id}")));
        Ok(reply)
    }

    /// `POST /api/v1/services/{id}/status`.
    pub fn set_service_status(&self, id: &str, body: &[u8]) -> Result<Reply, ApiError> {
        let req: SetServiceStatus = parse_json(body)?;
        if req.status != "cancelled" {
            return Err(ApiError::bad_field(
                "status",
                format!(
                    "`{}` cannot be set by a client; the only settable status is `cancelled`",
                    req.status
                ),
            ));
        }
        self.cancel_service(id, "cancelled by client (POST status)")
    }

    /// `DELETE /api/v1/services/{id}`.
    pub fn delete_service(&self, id: &str) -> Result<Reply, ApiError> {
        self.cancel_service(id, "cancelled by client (DELETE)")
    }

    fn cancel_service(&self, id: &str, why: &str) -> Result<Reply, ApiError> {
        let svc = self
            .store
            .get_service(id, false)?
            .ok_or_else(|| service_not_found(id))?;
        if svc.status == Status::Cancelled {
            return Reply::json(200, &svc);
        }
        if svc.status.is_terminal() {
            return Err(ApiError::new(
                409,
                format!(
                    "service {id} already ended ({}); nothing to cancel",
                    svc.status.as_str()
                ),
            ));
        }
        // Record the intent first: the monitor must not report the job it sees
        // dying from our signal as failed.
        let svc = match self
            .store
            .transition_service(id, Status::Cancelled, Some(why), None)?
        {
            Transition::Changed(s) => s,
            Transition::Unchanged(s) if s.status == Status::Cancelled => {
                return Reply::json(200, &s);
            }
            Transition::Unchanged(s) => {
                return Err(ApiError::new(
                    409,
                    format!(
                        "service {id} already ended ({}); nothing to cancel",
                        s.status.as_str()
                    ),
                ));
            }
            Transition::NotFound => return Err(service_not_found(id)),
        };
        self.starting_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        self.cancel_runs_of(id, Status::Cancelled, "service cancelled");
        if let Some(r) = &svc.backend_ref
            && let Err(e) = self.backend.cancel(id, r)
        {
            log::error!(
                "service {id}: cancel on {} failed: {e}",
                self.backend.kind()
            );
            return Err(ApiError::new(
                502,
                format!("service {id} is marked cancelled, but the backend could not stop it: {e}"),
            ));
        }
        log::info!("service {id}: {why}");
        Reply::json(200, &svc)
    }

    fn cancel_runs_of(&self, service_id: &str, to: Status, why: &str) {
        match self
            .store
            .list_runs(Some(service_id), Some(&[Status::Pending, Status::Running]))
        {
            Ok(runs) => {
                for r in runs {
                    match self.store.transition_run(&r.id, to, Some(why)) {
                        Ok(Transition::Changed(_)) => {
                            log::info!("run {}: {} ({why})", r.id, to.as_str());
                            self.stop_run_job(&r.id);
                        }
                        Ok(_) => {}
                        Err(e) => log::error!("run {}: cannot end: {e}", r.id),
                    }
                }
            }
            Err(e) => log::error!("cannot list runs of {service_id}: {e}"),
        }
    }

    /// `GET /api/v1/benchmarks[?service_id=..&status=..]`.
    pub fn list_runs(&self, query: &str) -> Result<Reply, ApiError> {
        let q = parse_query(query, &["service_id", "status"])?;
        let mut service_id = None;
        let mut filter = None;
        for (k, v) in &q {
            match k.as_str() {
                "service_id" => service_id = Some(v.as_str()),
                _ => filter = Some(status_filter(v, "status")?),
            }
        }
        let runs = self.store.list_runs(service_id, filter.as_deref())?;
        let views = runs
            .iter()
            .map(|r| self.run_view(r))
            .collect::<Result<Vec<_>, _>>()?;
        Reply::json(200, &views)
    }

    /// `GET /api/v1/benchmarks/{id}`.
    pub fn get_run(&self, id: &str) -> Result<Reply, ApiError> {
        let run = self
            .store
            .get_run(id, true)?
            .ok_or_else(|| run_not_found(id))?;
        Reply::json(200, &self.run_view(&run)?)
    }

    fn validate_run(req: &CreateRun) -> Result<RunSpec, ApiError> {
        in_range("duration_seconds", req.duration_seconds, 1, 86_400)?;
        let concurrency = req.concurrency.unwrap_or(1);
        in_range("concurrency", concurrency, 1, 1024)?;
        let mode = req.mode.unwrap_or(LoadMode::ClosedLoop);
        match (mode, req.requests_per_second) {
            (LoadMode::OpenLoop, None) => {
                return Err(ApiError::bad_field(
                    "requests_per_second",
                    "missing field `requests_per_second` (required for mode `open_loop`)",
                ));
            }
            (LoadMode::OpenLoop, Some(r)) => in_range("requests_per_second", r, 1, 100_000)?,
            (LoadMode::ClosedLoop, Some(_)) => {
                return Err(ApiError::bad_field(
                    "requests_per_second",
                    "`requests_per_second` is for mode `open_loop`; closed_loop uses `concurrency`",
                ));
            }
            (LoadMode::ClosedLoop, None) => {}
        }
        let workload = req.workload.unwrap_or(Workload::Http);
        let path = match &req.path {
            Some(p) => {
                if !p.starts_with('/')
                    || p.chars().count() > 2048
                    || p.chars().any(|c| c.is_control() || c == ' ')
                {
                    return Err(ApiError::bad_field(
                        "path",
                        "`path` must start with `/` and hold no spaces",
                    ));
                }
                p.clone()
            }
            None if workload == Workload::OpenaiCompletions => "/v1/completions".into(),
            None if workload == Workload::OpenaiChat => "/v1/chat/completions".into(),
            None => "/".into(),
        };
        if workload == Workload::Http && (req.model.is_some() || req.max_tokens.is_some()) {
            let field = if req.model.is_some() {
                "model"
            } else {
                "max_tokens"
            };
            return Err(ApiError::bad_field(
                field,
                format!("`{field}` is for workload `openai_completions`"),
            ));
        }
        if let Some(m) = &req.model
            && (m.is_empty() || m.chars().count() > 256 || m.chars().any(char::is_control))
        {
            return Err(ApiError::bad_field(
                "model",
                "`model` must be 1..=256 printable characters",
            ));
        }
        if let Some(t) = req.max_tokens {
            in_range("max_tokens", t, 1, 32_768)?;
        }
        let spec = RunSpec {
            duration_seconds: req.duration_seconds,
            concurrency,
            mode,
            requests_per_second: req.requests_per_second,
            workload,
            path,
            model: req.model.clone(),
            max_tokens: req.max_tokens,
            ..RunSpec::default()
        };
        crate::benchmark::complete_spec(req, spec)
    }

    /// `POST /api/v1/benchmarks`.
    pub fn create_run(&self, body: &[u8]) -> Result<Reply, ApiError> {
        let req: CreateRun = parse_json(body)?;
        let spec = Self::validate_run(&req)?;
        let svc = self
            .store
            .get_service(&req.service_id, false)?
            .ok_or_else(|| {
                ApiError::field(
                    404,
                    "service_id",
                    format!("no service `{}`", req.service_id),
                )
            })?;
        if svc.status != Status::Running {
            return Err(ApiError::field(
                409,
                "service_id",
                format!("service {} is {}, not running", svc.id, svc.status.as_str()),
            ));
        }
        crate::benchmark::check_load_nodes(&spec, self.backend.kind())?;
        let id = new_id("run");
        let now = now_ms();
        let run = Run {
            id: id.clone(),
            service_id: svc.id.clone(),
            status: Status::Pending,
            spec,
            created_at: rfc3339(now),
            started_at: None,
            ended_at: None,
            detail: None,
            result: None,
            history: None,
        };
        self.store.insert_run(&run, now)?;
        let run = self.launch_run(&run, &svc)?;
        let mut reply = Reply::json(201, &self.run_view(&run)?)?;
        reply
            .headers
            .push(("Location", format!("/api/v1/benchmarks/{id}")));
        Ok(reply)
    }

    /// `POST /api/v1/benchmarks/{id}/cancel`.
    pub fn cancel_run(&self, id: &str, body: &[u8]) -> Result<Reply, ApiError> {
        let req: CancelRequest = if body.iter().all(u8::is_ascii_whitespace) {
            CancelRequest::default()
        } else {
            parse_json(body)?
        };
        let detail = match &req.reason {
            Some(r) if r.chars().count() > 1024 || r.chars().any(char::is_control) => {
                return Err(ApiError::bad_field(
                    "reason",
                    "`reason` must be at most 1024 printable characters",
                ));
            }
            Some(r) => format!("cancelled by client: {r}"),
            None => "cancelled by client".into(),
        };
        match self
            .store
            .transition_run(id, Status::Cancelled, Some(&detail))?
        {
            Transition::Changed(r) => {
                log::info!("run {id}: {detail}");
                self.stop_run_job(id);
                Reply::json(200, &self.run_view(&r)?)
            }
            Transition::Unchanged(r) if r.status == Status::Cancelled => Reply::json(200, &r),
            Transition::Unchanged(r) => Err(ApiError::new(
                409,
                format!(
                    "run {id} already ended ({}); nothing to cancel",
                    r.status.as_str()
                ),
            )),
            Transition::NotFound => Err(run_not_found(id)),
        }
    }

    // ---- monitor -------------------------------------------------------

    /// Reconciles with the backend after a start: launches that were cut off
    /// are failed, runs that were cut off are failed, and every other open
    /// service is asked for at the backend (a job that ended meanwhile is
    /// shown ended with its exit state).
    pub fn reconcile_on_start(&self) {
        match self.store.list_services(Some(&[
            Status::Pending,
            Status::Starting,
            Status::Running,
            Status::Unknown,
        ])) {
            Ok(services) => {
                for s in services.iter().filter(|s| s.backend_ref.is_none()) {
                    self.transition(
                        &s.id,
                        Status::Failed,
                        Some("launch interrupted: the API stopped while starting it"),
                        None,
                    );
                }
                log::info!(
                    "reconcile: {} open services to check with the {} backend",
                    services.len(),
                    self.backend.kind()
                );
            }
            Err(e) => log::error!("reconcile: cannot list services: {e}"),
        }
        match self
            .store
            .list_runs(None, Some(&[Status::Pending, Status::Running]))
        {
            Ok(runs) => {
                for r in runs {
                    if self.store.run_job(&r.id).ok().flatten().is_some() {
                        // Its generator may still run (or have written its
                        // result): the monitor collects it.
                        continue;
                    }
                    log::warn!(
                        "reconcile: run {} was cut off by an API restart; marking it failed",
                        r.id
                    );
                    if let Err(e) = self.store.transition_run(
                        &r.id,
                        Status::Failed,
                        Some("interrupted: the API restarted during the run"),
                    ) {
                        log::error!("reconcile: run {}: {e}", r.id);
                    }
                }
            }
            Err(e) => log::error!("reconcile: cannot list runs: {e}"),
        }
        self.tick();
    }

    fn transition(&self, id: &str, to: Status, detail: Option<&str>, exit_code: Option<i32>) {
        match self.store.transition_service(id, to, detail, exit_code) {
            Ok(Transition::Changed(s)) => log::info!(
                "service {id}: {}{}",
                s.status.as_str(),
                detail.map(|d| format!(" ({d})")).unwrap_or_default()
            ),
            Ok(_) => {}
            Err(e) => log::error!("service {id}: cannot record {}: {e}", to.as_str()),
        }
        if to != Status::Starting {
            self.starting_since
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
        }
        if to.is_terminal() || to == Status::Unknown {
            let status = if to == Status::Cancelled {
                Status::Cancelled
            } else {
                Status::Failed
            };
            let why = format!(
                "service {id} {}{}",
                to.as_str(),
                detail.map(|d| format!(": {d}")).unwrap_or_default()
            );
            self.cancel_runs_of(id, status, &why);
        }
    }

    fn healthy(&self, svc: &Service, path: &str) -> bool {
        let Some(port) = svc.port else { return true };
        let host = self.backend.health_host(svc.host.as_deref());
        if let Some(ok) = self
            .backend
            .probe_http(&host, port, path, self.config.health_timeout)
        {
            return ok;
        }
        let url = format!("http://{host}:{port}{path}");
        match self.health_agent.get(&url).call() {
            Ok(resp) => resp.status().is_success(),
            Err(_) => false,
        }
    }

    /// One pass: ask the backend for every open service, run health checks,
    /// fail services that stay `starting` too long, end runs whose time is up.
    pub fn tick(&self) {
        self.backend.housekeeping();
        let open = match self.store.list_services(Some(&[
            Status::Pending,
            Status::Starting,
            Status::Running,
            Status::Unknown,
        ])) {
            Ok(s) => s,
            Err(e) => {
                log::error!("monitor: cannot list services: {e}");
                return;
            }
        };
        let jobs: Vec<(&str, &str)> = open
            .iter()
            .filter_map(|s| s.backend_ref.as_deref().map(|r| (s.id.as_str(), r)))
            .collect();
        let states = if jobs.is_empty() {
            HashMap::new()
        } else {
            self.backend.states(&jobs)
        };
        for svc in &open {
            let Some(state) = states.get(&svc.id) else {
                continue;
            };
            match state {
                Err(e) if e.state_unknowable() => {
                    log::warn!("monitor: service {}: cannot get state: {e}", svc.id);
                    self.unknown(svc, &format!("cannot get the state: {e}"));
                }
                Err(e) => log::warn!("monitor: service {}: cannot get state: {e}", svc.id),
                Ok(JobState::Queued) => {
                    if svc.status != Status::Pending {
                        self.transition(&svc.id, Status::Pending, Some("queued"), None);
                    }
                }
                Ok(JobState::Active { host }) => self.on_active(svc, host.as_deref()),
                Ok(JobState::Ended(ending)) => {
                    let (status, detail, code) = match ending {
                        Ending::Exited(0) => {
                            (Status::Completed, "exited with code 0".to_string(), Some(0))
                        }
                        Ending::Exited(c) => {
                            let tail = svc
                                .backend_ref
                                .as_deref()
                                .map(|r| self.stderr_tail(&svc.id, r))
                                .unwrap_or_default();
                            (
                                Status::Failed,
                                format!("exited with code {c}{tail}"),
                                Some(*c),
                            )
                        }
                        Ending::Signalled(s) => (
                            Status::Failed,
                            format!("killed by signal {s}"),
                            Some(128 + s),
                        ),
                        Ending::Cancelled => (
                            Status::Cancelled,
                            "cancelled outside the API".to_string(),
                            None,
                        ),
                        Ending::SchedulerFailure(why) => (Status::Failed, why.clone(), None),
                    };
                    self.transition(&svc.id, status, Some(&detail), code);
                }
                Ok(JobState::Missing) => self.unknown(
                    svc,
                    "the backend has no trace of the job and no exit state was recorded",
                ),
            }
        }
        let runs_open = self.monitor_runs();
        if let Some(t) = &self.reverse_tunnel {
            t.update(!open.is_empty() || runs_open);
        }
    }

    /// Makes `svc` `unknown` because of `detail`; one that already is gets
    /// the new reason (the last poll's, not the first one's: a reason that
    /// stopped holding is not shown any longer).
    fn unknown(&self, svc: &Service, detail: &str) {
        if svc.status != Status::Unknown {
            self.transition(&svc.id, Status::Unknown, Some(detail), None);
            return;
        }
        match self
            .store
            .set_service_detail(&svc.id, Status::Unknown, detail)
        {
            Ok(true) => log::info!("service {}: unknown ({detail})", svc.id),
            Ok(false) => {}
            Err(e) => log::error!("service {}: cannot record its detail: {e}", svc.id),
        }
    }

    /// Opens the reverse tunnel (if configured and not open) before a job is
    /// launched, so its first push finds the login node listening.
    pub fn hold_reverse_tunnel(&self) {
        if let Some(t) = &self.reverse_tunnel {
            t.hold();
        }
    }

    fn on_active(&self, svc: &Service, host: Option<&str>) {
        if let Some(h) = host
            && svc.host.as_deref() != Some(h)
            && let Err(e) = self.store.set_service_location(&svc.id, None, Some(h))
        {
            log::error!("service {}: cannot record host: {e}", svc.id);
        }
        let recipe = self.recipes.get(&svc.recipe);
        let health_path = recipe.and_then(|r| r.health_path.clone());
        match svc.status {
            Status::Pending | Status::Unknown => {
                self.transition(
                    &svc.id,
                    Status::Starting,
                    Some("process running; waiting for health check"),
                    None,
                );
                self.starting_since
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(svc.id.clone(), Instant::now());
                self.check_starting(
                    svc,
                    host,
                    health_path.as_deref(),
                    recipe.map_or(600, |r| r.startup_timeout_seconds),
                );
            }
            Status::Starting => {
                self.check_starting(
                    svc,
                    host,
                    health_path.as_deref(),
                    recipe.map_or(600, |r| r.startup_timeout_seconds),
                );
            }
            _ => {}
        }
    }

    fn check_starting(
        &self,
        svc: &Service,
        host: Option<&str>,
        health_path: Option<&str>,
        timeout_s: u64,
    ) {
        let mut probe = svc.clone();
        if host.is_some() {
            probe.host = host.map(str::to_string);
        }
        let ok = match health_path {
            Some(p) => self.healthy(&probe, p),
            None => true,
        };
        if ok {
            let detail = match health_path {
                Some(p) => format!("health check {p} passed"),
                None => "process running (recipe has no health check)".into(),
            };
            self.transition(&svc.id, Status::Running, Some(&detail), None);
            return;
        }
        let since = *self
            .starting_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(svc.id.clone())
            .or_insert_with(Instant::now);
        if since.elapsed() > Duration::from_secs(timeout_s) {
            let detail = format!("health check did not pass within {timeout_s} s; stopped");
            self.transition(&svc.id, Status::Failed, Some(&detail), None);
            if let Some(r) = &svc.backend_ref
                && let Err(e) = self.backend.cancel(&svc.id, r)
            {
                log::error!("service {}: cannot stop after failed start: {e}", svc.id);
            }
        }
    }

    /// A map of the recipes (name → description), for logs.
    pub fn recipe_names(&self) -> BTreeMap<String, String> {
        self.recipes
            .all()
            .map(|r| (r.name.clone(), r.description.clone()))
            .collect()
    }
}

fn service_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no service `{id}`"))
}

fn run_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no benchmark run `{id}`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::slurm_rest::SlurmRestError;
    use crate::backend::{BackendError, Launched};

    /// Answers each poll with the next scripted state.
    struct Scripted(Mutex<Vec<Result<JobState, BackendError>>>);

    impl Backend for Scripted {
        fn kind(&self) -> &'static str {
            "slurm-rest"
        }
        fn launch(&self, _: &LaunchSpec<'_>) -> Result<Launched, BackendError> {
            Ok(Launched {
                backend_ref: "1".into(),
                host: None,
            })
        }
        fn states(&self, jobs: &[(&str, &str)]) -> HashMap<String, Result<JobState, BackendError>> {
            let next = self.0.lock().unwrap().remove(0);
            jobs.first()
                .map(|(s, _)| (s.to_string(), next))
                .into_iter()
                .collect()
        }
        fn cancel(&self, _: &str, _: &str) -> Result<(), BackendError> {
            Ok(())
        }
    }

    fn refused(what: &str) -> Result<JobState, BackendError> {
        Err(SlurmRestError::Unauthorized {
            url: "http://slurmrestd/slurm/v0.0.38/job/1".into(),
            user: "svc".into(),
            status: 500,
            detail: what.into(),
        }
        .into())
    }

    #[test]
    fn an_unknown_service_shows_the_last_reason_not_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let cli = crate::Cli {
            db: Some(dir.path().join("s.sqlite")),
            ..crate::Cli::default()
        };
        let config = Config::load(&cli).unwrap();
        let store = Store::open(&config.db).unwrap();
        let script = vec![
            refused("first reason"),
            refused("second reason"),
            Ok(JobState::Missing),
            Ok(JobState::Active { host: None }),
        ];
        let app = App::new(
            config,
            store,
            Catalogue::load(None).unwrap(),
            Box::new(Scripted(Mutex::new(script))),
        );
        let created = app.create_service(br#"{"recipe": "sleep"}"#).unwrap();
        let Payload::Json(body) = created.payload else {
            panic!("JSON")
        };
        let created: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let id = created["id"].as_str().unwrap().to_string();
        let seen = |want: Status, has: &str| {
            app.tick();
            let s = app.store.get_service(&id, false).unwrap().unwrap();
            let detail = s.detail.clone().unwrap_or_default();
            assert_eq!(s.status, want, "{detail}");
            assert!(detail.contains(has), "{detail}");
            detail
        };
        seen(Status::Unknown, "first reason");
        let d = seen(Status::Unknown, "second reason");
        assert!(!d.contains("first reason"), "{d}");
        let d = seen(Status::Unknown, "no trace of the job");
        assert!(!d.contains("refused"), "{d}");
        // Found running: the reason says so.
        let d = seen(Status::Running, "process running");
        assert!(!d.contains("no trace"), "{d}");
    }
}
