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
use crate::backend::Backend;
use crate::config::Config;
use crate::routes::{self, Body, Handler, Match, Method};
use crate::validate::{ApiError, MAX_BODY_BYTES};

pub use crate::start::StartError;

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

impl Server {
    /// Builds the application from the configuration ([`App::from_config`]:
    /// the backend, the recipes, the state), reconciles with the backend,
    /// binds, and starts the workers and the monitor.
    ///
    /// # Errors
    /// [`StartError`].
    pub fn start(config: Config) -> Result<Server, StartError> {
        Self::serve(App::from_config(config)?)
    }

    /// As [`Server::start`], with a backend of the caller's (embedding, tests).
    ///
    /// # Errors
    /// [`StartError`].
    pub fn start_with_backend(
        config: Config,
        backend: Box<dyn Backend>,
    ) -> Result<Server, StartError> {
        Self::serve(App::open(config, backend)?)
    }

    /// Reconciles `app` with its backend, binds, and starts the workers and
    /// the monitor.
    fn serve(app: App) -> Result<Server, StartError> {
        let listen = app.config.listen;
        let workers_n = app.config.workers;
        let limits = app.config.http_limits.clone();
        let poll = app.config.poll_interval;
        let app = Arc::new(app);
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
    use crate::backend::{BackendError, JobState, LaunchSpec, Launched};
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
