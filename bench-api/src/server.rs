//! The HTTP server: `tiny_http` with a fixed pool of worker threads, the
//! request pipeline (route → auth → body limits → handler), CORS, and the last
//! line of defence (`catch_unwind`) around every request.

use std::io::Read;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::app::{App, Payload, Reply};
use crate::backend::local::LocalBackend;
use crate::backend::runner::{CommandRunner, LocalRunner, SshRunner};
use crate::backend::slurm::{ExporterPlan, SlurmBackend};
use crate::backend::{Backend, BackendError};
use crate::config::{BackendKind, Config};
use crate::recipes::{Catalogue, RecipeError};
use crate::routes::{self, Body, Handler, Match, Method};
use crate::state::{StateError, Store};
use crate::validate::{ApiError, MAX_BODY_BYTES};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The recipes are invalid (a configuration error: exit code 2).
    #[error(transparent)]
    Recipes(#[from] RecipeError),
    /// The state database could not be opened.
    #[error(transparent)]
    State(#[from] StateError),
    /// The backend could not be set up.
    #[error("backend: {0}")]
    Backend(#[from] BackendError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {message}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        message: String,
    },
    /// This program's own path is unknown (needed for the local supervisor).
    #[error("cannot find this program's path: {0}")]
    CurrentExe(std::io::Error),
}

/// A running server.
pub struct Server {
    http: Arc<tiny_http::Server>,
    app: Arc<App>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    monitor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn build_backend(config: &Config) -> Result<Box<dyn Backend>, StartError> {
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
        config.slurm.clone(),
        log_dir,
        exporter,
        environment,
        tunnel,
    )))
}

impl Server {
    /// Loads recipes, opens the state, reconciles with the backend, binds, and
    /// starts the workers and the monitor.
    ///
    /// # Errors
    /// [`StartError`].
    pub fn start(config: Config) -> Result<Server, StartError> {
        let backend = build_backend(&config)?;
        Self::start_with_backend(config, backend)
    }

    /// As [`Server::start`], with a backend of the caller's (embedding, tests).
    ///
    /// # Errors
    /// [`StartError`].
    pub fn start_with_backend(
        config: Config,
        backend: Box<dyn Backend>,
    ) -> Result<Server, StartError> {
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
        let listen = config.listen;
        let workers_n = config.workers;
        let limits = config.http_limits.clone();
        let poll = config.poll_interval;
        let app = Arc::new(App::new(config, store, recipes, backend));
        app.reconcile_on_start();
        let listener = std::net::TcpListener::bind(listen).map_err(|e| StartError::Bind {
            addr: listen,
            message: e.to_string(),
        })?;
        set_nodelay(&listener);
        let http = tiny_http::Server::from_listener_with_limits(listener, None, limits.clone())
            .map_err(|e| StartError::Bind {
                addr: listen,
                message: e.to_string(),
            })?;
        let addr = http.server_addr().to_ip().unwrap_or(listen);
        let http = Arc::new(http);
        app.metrics.attach_http(&http);
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::with_capacity(workers_n);
        for i in 0..workers_n {
            let http = Arc::clone(&http);
            let app = Arc::clone(&app);
            let stop = Arc::clone(&stop);
            let handle = std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match http.recv() {
                            Ok(req) => handle(&app, req),
                            Err(e) => {
                                if stop.load(Ordering::Relaxed) {
                                    break;
                                }
                                log::warn!("http: accept failed: {e}");
                            }
                        }
                    }
                })
                .map_err(|e| StartError::Bind {
                    addr,
                    message: format!("cannot start worker thread: {e}"),
                })?;
            workers.push(handle);
        }
        let monitor = {
            let app = Arc::clone(&app);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("monitor".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let step = Duration::from_millis(10).min(poll);
                        let until = Instant::now() + poll;
                        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(step);
                        }
                        if std::panic::catch_unwind(AssertUnwindSafe(|| app.tick())).is_err() {
                            log::error!("monitor: a tick panicked; continuing");
                        }
                        app.metrics.ticked();
                    }
                })
                .ok()
        };
        log::info!(
            "aif-bench-api {} listening on http://{addr} ({} workers, {} connections at most, idle/header timeout {:?}/{:?}, backend {}, auth {}, CORS origins: {})",
            env!("CARGO_PKG_VERSION"),
            workers_n,
            limits.max_connections,
            limits.idle_timeout,
            limits.header_timeout,
            app.backend.kind(),
            if app.config.token.is_some() {
                "bearer token"
            } else {
                "off"
            },
            if app.config.cors_origins.is_empty() {
                "none".to_string()
            } else {
                app.config.cors_origins.join(" ")
            },
        );
        Ok(Server {
            http,
            app,
            addr,
            stop,
            workers,
            monitor,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The application (for tests and embedding).
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Blocks until the workers end (they run until [`Server::shutdown`]).
    pub fn wait(mut self) {
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }

    /// Stops accepting, ends the workers and the monitor.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.http.unblock();
        for _ in 0..self.workers.len() {
            self.http.unblock();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(m) = self.monitor.take() {
            let _ = m.join();
        }
    }
}

/// Sets `TCP_NODELAY` on the listening socket; Linux hands it on to every
/// accepted connection. tiny_http writes the head and the body of an answer
/// separately, and with Nagle's algorithm the body then waits for the
/// client's delayed ACK (~40 ms per keep-alive request).
fn set_nodelay(listener: &std::net::TcpListener) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt(2) on a socket we own, with a pointer to a c_int
    // that outlives the call and its exact size.
    let r = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        log::warn!(
            "cannot set TCP_NODELAY: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn header<'a>(req: &'a tiny_http::Request, name: &str) -> Option<&'a str> {
    req.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

fn is_json(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return false };
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts.all(|p| {
        let p = p.trim();
        match p.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
                v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            }
            _ => true,
        }
    })
}

/// Reads at most `MAX_BODY_BYTES + 1` bytes.
fn read_body(req: &mut tiny_http::Request) -> Result<Vec<u8>, ApiError> {
    if req.body_length().is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    req.as_reader()
        .take(MAX_BODY_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| ApiError::new(400, format!("cannot read request body: {e}")))?;
    if body.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    Ok(body)
}

fn too_large() -> ApiError {
    ApiError::new(
        413,
        format!("request body is larger than {MAX_BODY_BYTES} bytes (1 MiB)"),
    )
}

/// Routes one request to its handler. Returns the route label for metrics.
fn dispatch(app: &App, req: &mut tiny_http::Request) -> (&'static str, Result<Reply, ApiError>) {
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let method_name = req.method().as_str().to_string();
    if method_name == "OPTIONS" {
        let methods = routes::methods_for(path);
        if methods.is_empty() {
            return (
                "unmatched",
                Err(ApiError::not_found(format!("no route {path}"))),
            );
        }
        let allow = routes::allow_header(&methods);
        let mut headers = app.cors.preflight_headers(header(req, "Origin"), &allow);
        headers.push(("Allow", allow));
        return (
            "preflight",
            Ok(Reply {
                status: 204,
                payload: Payload::Empty,
                headers,
            }),
        );
    }
    let route = match routes::resolve(Method::parse(&method_name), path) {
        Match::Found(route, id) => (route, id),
        Match::MethodNotAllowed(methods) => {
            let allow = routes::allow_header(&methods);
            return (
                "unmatched",
                Err(ApiError::new(
                    405,
                    format!("method {method_name} is not allowed on {path}; allowed: {allow}"),
                )
                .with_header("Allow", allow)),
            );
        }
        Match::NotFound => {
            return (
                "unmatched",
                Err(ApiError::not_found(format!(
                    "no route {method_name} {path}"
                ))),
            );
        }
    };
    let (route, id) = route;
    let label = route.pattern;
    if route.mutating
        && let Some(token) = &app.config.token
        && !token.accepts(header(req, "Authorization"))
    {
        return (
            label,
            Err(
                ApiError::new(401, "this route needs `Authorization: Bearer <token>`")
                    .with_header("WWW-Authenticate", "Bearer"),
            ),
        );
    }
    let body = match route.body {
        Body::None => Vec::new(),
        Body::Json(_) | Body::OptionalJson(_) => {
            if req.body_length().is_some_and(|n| n > MAX_BODY_BYTES) {
                return (label, Err(too_large()));
            }
            let content_type = header(req, "Content-Type");
            let has_body = req.body_length().is_none_or(|n| n > 0)
                && (req.body_length().is_some() || header(req, "Transfer-Encoding").is_some());
            let needs_json = matches!(route.body, Body::Json(_)) || has_body;
            if needs_json && !is_json(content_type) {
                return (
                    label,
                    Err(ApiError::new(
                        415,
                        format!(
                            "Content-Type must be application/json, got {}",
                            content_type.map_or("none".to_string(), |c| format!("`{c}`"))
                        ),
                    )),
                );
            }
            match read_body(req) {
                Ok(b) => b,
                Err(e) => return (label, Err(e)),
            }
        }
    };
    let id = id.as_deref().unwrap_or("");
    let result = match route.handler {
        Handler::Health => app.health(),
        Handler::ListRecipes => app.list_recipes(),
        Handler::ListServices => app.list_services(query),
        Handler::CreateService => app.create_service(&body),
        Handler::ServiceTargets => app.service_targets(),
        Handler::GetService => app.get_service(id),
        Handler::SetServiceStatus => app.set_service_status(id, &body),
        Handler::DeleteService => app.delete_service(id),
        Handler::ListRuns => app.list_runs(query),
        Handler::CreateRun => app.create_run(&body),
        Handler::GetRun => app.get_run(id),
        Handler::CancelRun => app.cancel_run(id, &body),
        Handler::Metrics => app.render_metrics(),
        Handler::OpenApi => app.openapi(),
    };
    (label, result)
}

fn to_response(
    reply: Result<Reply, ApiError>,
    cors: Vec<(&'static str, String)>,
) -> (u16, tiny_http::Response<std::io::Cursor<Vec<u8>>>) {
    let (status, content_type, body, mut headers) = match reply {
        Ok(r) => {
            let (ct, body) = match r.payload {
                Payload::Json(b) => ("application/json", b),
                Payload::SharedJson(b) => ("application/json", b.as_ref().clone()),
                Payload::Text(t) => ("text/plain; version=0.0.4; charset=utf-8", t.into_bytes()),
                Payload::Empty => ("", Vec::new()),
            };
            (r.status, ct, body, r.headers)
        }
        Err(e) => {
            let mut h = Vec::new();
            if let Some((k, v)) = &e.header {
                h.push((*k, v.clone()));
            }
            (e.status, "application/json", e.body(), h)
        }
    };
    headers.extend(cors);
    let mut resp = tiny_http::Response::from_data(body).with_status_code(status);
    if !content_type.is_empty() {
        headers.push(("Content-Type", content_type.to_string()));
    }
    headers.push(("Cache-Control", "no-store".to_string()));
    for (k, v) in headers {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            resp.add_header(h);
        }
    }
    (status, resp)
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Answers one request; never panics (a handler panic becomes a logged 500).
fn handle(app: &App, mut req: tiny_http::Request) {
    let start = Instant::now();
    let method = req.method().as_str().to_string();
    let path = req.url().split('?').next().unwrap_or("").to_string();
    let peer = req.remote_addr().copied();
    let (label, reply) =
        match std::panic::catch_unwind(AssertUnwindSafe(|| dispatch(app, &mut req))) {
            Ok(r) => r,
            Err(p) => {
                app.metrics.panicked();
                log::error!(
                    "handler panicked on {method} {path}: {}",
                    panic_message(p.as_ref())
                );
                ("panic", Err(ApiError::internal("internal error (logged)")))
            }
        };
    if let Err(e) = &reply
        && e.status >= 500
    {
        log::error!("{method} {path} → {}: {}", e.status, e.error);
    }
    let cors = app.cors.response_headers(
        req.headers()
            .iter()
            .find(|h| h.field.equiv("Origin"))
            .map(|h| h.value.as_str()),
    );
    let (status, resp) = to_response(reply, cors);
    let method_label = match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    // Counted before the answer is written, so that a client that reads
    // /metrics right after its answer sees its own request counted.
    app.metrics
        .observe(label, method_label, status, start.elapsed().as_secs_f64());
    let sent = std::panic::catch_unwind(AssertUnwindSafe(move || req.respond(resp)));
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            app.metrics.disconnected();
            log::info!(
                "client {peer:?} hung up before the answer to {method} {path} was written: {e}"
            );
        }
        Err(p) => {
            app.metrics.panicked();
            log::error!(
                "writing the answer to {method} {path} panicked: {}",
                panic_message(p.as_ref())
            );
        }
    }
    log::debug!("{method} {path} → {status} in {:?}", start.elapsed());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{JobState, LaunchSpec, Launched};
    use std::collections::HashMap;

    /// A backend whose launch panics: the last line of defence must turn it
    /// into a logged 500, and the worker must go on serving.
    struct PanickingBackend;

    impl Backend for PanickingBackend {
        fn kind(&self) -> &'static str {
            "local"
        }
        fn launch(&self, _: &LaunchSpec<'_>) -> Result<Launched, BackendError> {
            panic!("backend exploded")
        }
        fn states(&self, _: &[(&str, &str)]) -> HashMap<String, Result<JobState, BackendError>> {
            HashMap::new()
        }
        fn cancel(&self, _: &str, _: &str) -> Result<(), BackendError> {
            Ok(())
        }
    }

    #[test]
    fn a_panicking_handler_answers_500_json_and_the_server_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let cli = crate::Cli {
            listen: Some("127.0.0.1:0".into()),
            db: Some(dir.path().join("s.sqlite")),
            recipes: Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes")),
            workers: Some(1),
            ..crate::Cli::default()
        };
        let config = Config::load(&cli).unwrap();
        let server = Server::start_with_backend(config, Box::new(PanickingBackend)).unwrap();
        let base = format!("http://{}", server.addr());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        for _ in 0..3 {
            let mut resp = agent
                .post(&format!("{base}/api/v1/services"))
                .header("Content-Type", "application/json")
                .send(r#"{"recipe": "sleep"}"#)
                .unwrap();
            assert_eq!(resp.status().as_u16(), 500);
            let body: serde_json::Value =
                serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
            assert_eq!(
                body,
                serde_json::json!({"error": "internal error (logged)"})
            );
        }
        let mut resp = agent.get(&format!("{base}/metrics")).call().unwrap();
        let text = resp.body_mut().read_to_string().unwrap();
        assert!(text.contains("aif_api_handler_panics_total 3"), "{text}");
        assert_eq!(
            agent
                .get(&format!("{base}/health"))
                .call()
                .unwrap()
                .status()
                .as_u16(),
            200
        );
        server.shutdown();
    }
}
