//! The application: everything the handlers and the monitor share, the
//! handlers behind the routes, and the monitor that moves services and runs
//! through their lifecycle and reconciles with the backend at start.
//!
//! Design note: [`App`] is one struct with its methods spread over files by
//! concern, each file an `impl App` block:
//! - `mod.rs` (this file): [`App`] itself, its construction from the
//!   configuration ([`App::from_config`], [`App::open`], [`App::new`]) and
//!   the backend wiring ([`build_backend`]: local processes, Slurm through a
//!   command runner here or over SSH, or the slurmrestd client); the answer
//!   types [`Reply`] and [`Payload`]; the small routes (`/health`, recipes,
//!   `/openapi.json`, `/metrics`); and the helpers the other files share.
//! - `services.rs`: the service routes (list, get, targets, create, status,
//!   cancel).
//! - `runs.rs`: the benchmark run routes (list, get, create, cancel), their
//!   validation, and ending the runs of a service that ends.
//! - `monitor.rs`: the monitor: [`App::tick`], [`App::reconcile_on_start`],
//!   health checks, `unknown` and the service transitions.
//!
//! Launching, watching and collecting a run's load generator live in
//! [`crate::benchmark`] (another `impl App` block); the HTTP side (workers,
//! routing, limits) is [`crate::server`].

mod monitor;
mod run_jobs;
mod runs;
mod services;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::local::LocalBackend;
use crate::backend::runner::{CommandRunner, LocalRunner, SshRunner};
use crate::backend::slurm::{ExporterPlan, SlurmBackend};
use crate::backend::{Backend, BackendError, Runnable};
use crate::config::{BackendKind, Config};
use crate::cors::Cors;
use crate::metrics::ApiMetrics;
use crate::model::Status;
use crate::recipes::{Catalogue, Recipe};
use crate::start::StartError;
use crate::state::{StateError, Store};
use crate::tunnel::ReverseTunnel;
use crate::validate::ApiError;
use gpu_metrics::clock::now_ms;

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
    /// Builds the backend the configuration names ([`build_backend`]), then
    /// the application over it ([`App::open`]).
    ///
    /// # Errors
    /// [`StartError`]: the backend cannot be set up, the recipes are invalid,
    /// or the state database cannot be opened.
    pub fn from_config(config: Config) -> Result<App, StartError> {
        let backend = build_backend(&config)?;
        App::open(config, backend)
    }

    /// Loads the recipes, opens the state database, and assembles the
    /// application over `backend` (one of the caller's: embedding, tests).
    ///
    /// # Errors
    /// [`StartError`]: the recipes are invalid or the state database cannot
    /// be opened.
    pub fn open(config: Config, backend: Box<dyn Backend>) -> Result<App, StartError> {
        let recipes = Catalogue::load(config.recipes.as_deref())?;
        log::info!(
            "loaded {} recipes (built-in{})",
            recipes.len(),
            config
                .recipes
                .as_ref()
                .map_or(String::new(), |d| format!(" and {}", d.display()))
        );
        let store = Store::open(&config.db)?;
        Ok(App::new(config, store, recipes, backend))
    }

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

    /// Opens the reverse tunnel (if configured and not open) before a job is
    /// launched, so its first push finds the login node listening.
    pub fn hold_reverse_tunnel(&self) {
        if let Some(t) = &self.reverse_tunnel {
            t.hold();
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

/// The backend `config` names: local processes (with the node exporter
/// beside GPU services when there is a Pushgateway), Slurm through a command
/// runner (here, or over SSH to the login node), or slurmrestd
/// (`slurm-rest`, through an SSH forward when `[slurm.rest.ssh]` is set).
///
/// # Errors
/// [`StartError::CurrentExe`] when this program's path is unknown (the local
/// supervisor needs it), [`StartError::Backend`] when the backend cannot be
/// set up.
pub fn build_backend(config: &Config) -> Result<Box<dyn Backend>, StartError> {
    match config.backend {
        BackendKind::Local => {
            let exe = std::env::current_exe().map_err(StartError::CurrentExe)?;
            let local = LocalBackend::new(&config.log_dir, exe, config.kill_grace)?;
            Ok(Box::new(match exporter_plan(config) {
                Some(plan) => local.with_exporter(plan),
                None => local,
            }))
        }
        BackendKind::SlurmRest => build_slurm_rest(config),
        BackendKind::Slurm => {
            let timeout = Duration::from_secs(config.slurm.command_timeout_seconds.unwrap_or(30));
            let (runner, default_log_dir): (Box<dyn CommandRunner>, std::path::PathBuf) =
                match &config.slurm.ssh {
                    Some(ssh) => (
                        Box::new(SshRunner::new(ssh, timeout).map_err(BackendError::from)?),
                        "aif-bench-logs".into(),
                    ),
                    None => (Box::new(LocalRunner::new(timeout)), local_log_dir(config)?),
                };
            let log_dir = config.slurm.log_dir.clone().unwrap_or(default_log_dir);
            let exporter = exporter_plan(config);
            if exporter.is_none() {
                log::warn!(
                    "slurm: no pushgateway configured; GPU services start without a node exporter"
                );
            }
            log::info!("slurm: commands run via {}", runner.describe());
            Ok(Box::new(SlurmBackend::new(
                runner,
                config.slurm.clone(),
                log_dir,
                exporter,
            )))
        }
    }
}

/// The node exporter GPU jobs start beside the service, when there is a
/// Pushgateway (through the reverse tunnel's port on the login node when
/// there is one).
fn exporter_plan(config: &Config) -> Option<ExporterPlan> {
    config.job_pushgateway().map(|pgw| ExporterPlan {
        settings: config.exporter.clone(),
        pushgateway: pgw.to_string(),
        remote_write: config.job_remote_write().map(str::to_string),
    })
}

/// `log_dir` here, created, as an absolute path (jobs run elsewhere).
fn local_log_dir(config: &Config) -> Result<std::path::PathBuf, BackendError> {
    std::fs::create_dir_all(&config.log_dir).map_err(|source| BackendError::Io {
        what: format!("create {}", config.log_dir.display()),
        source,
    })?;
    Ok(config
        .log_dir
        .canonicalize()
        .unwrap_or_else(|_| config.log_dir.clone()))
}

/// The `slurm-rest` backend: the client (through the SSH forward when
/// `[slurm.rest.ssh]` is set) and the job settings.
fn build_slurm_rest(config: &Config) -> Result<Box<dyn Backend>, StartError> {
    use crate::backend::slurm_rest::{
        Auth, Endpoint, SlurmRestBackend, SlurmRestClient, SlurmRestError, TokenFile, client,
        version::ApiVersion,
    };
    let Some(rest) = config.slurm.rest.as_ref() else {
        return Err(BackendError::from(SlurmRestError::Config {
            key: "slurm.rest",
            reason: "missing".into(),
        })
        .into());
    };
    let timeout = Duration::from_secs(rest.timeout_seconds.unwrap_or(30));
    let mut tunnel = None;
    let endpoint = if let Some(path) = rest.url.strip_prefix("unix:") {
        Endpoint::Unix(std::path::PathBuf::from(path.trim_start_matches("//")))
    } else if let Some(ssh) = &rest.ssh {
        let (host, port) = client::host_port(&rest.url).map_err(|m| {
            BackendError::from(SlurmRestError::Config {
                key: "slurm.rest.url",
                reason: format!("`{}`: {m}", rest.url),
            })
        })?;
        let destination = format!("{}@{}:{}", ssh.user, ssh.host, ssh.port);
        let ssh_err = |source| {
            BackendError::from(SlurmRestError::Tunnel {
                destination: destination.clone(),
                source: Box::new(source),
            })
        };
        let cfg = ssh.ssh_config(timeout).map_err(ssh_err)?;
        let fwd = gpu_metrics::tunnel::LocalForward::start(&cfg, &host, port).map_err(ssh_err)?;
        let local = format!("http://{}", fwd.local_addr());
        log::info!(
            "slurm-rest: {} reached through the SSH forward {local} via {destination}",
            rest.url
        );
        tunnel = Some(fwd);
        Endpoint::Http(local)
    } else {
        Endpoint::Http(rest.url.trim_end_matches('/').to_string())
    };
    let auth = match &rest.token_file {
        Some(path) => Auth::Jwt(TokenFile::new(
            path.clone(),
            rest.user.clone().unwrap_or_default(),
        )),
        None => Auth::Local {
            user: rest
                .user
                .clone()
                .unwrap_or_else(|| "the socket's user".to_string()),
        },
    };
    let pinned = rest.api_version.as_deref().and_then(ApiVersion::parse);
    let client = SlurmRestClient::new(endpoint, auth, timeout, pinned);
    let log_dir = match &config.slurm.log_dir {
        Some(d) => d.clone(),
        None => local_log_dir(config)?,
    };
    let exporter = exporter_plan(config);
    let environment = rest.environment.clone().unwrap_or_else(|| {
        [(
            "PATH".to_string(),
            "/usr/local/bin:/usr/bin:/bin".to_string(),
        )]
        .into()
    });
    log::info!(
        "slurm-rest: {} as user {} ({}), job output in {}",
        client.endpoint(),
        client.user(),
        pinned.map_or("API version discovered on first use", |v| v.as_str()),
        log_dir.display()
    );
    Ok(Box::new(SlurmRestBackend::new(
        client,
        config.slurm.job_defaults(),
        log_dir,
        exporter,
        environment,
        tunnel,
    )))
}
