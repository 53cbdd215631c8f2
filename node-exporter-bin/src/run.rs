//! The long-running mode: buffer, sinks, optional `/metrics` endpoint, signals.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use gpu_metrics::Namer;
use gpu_metrics::agent::{self, AgentError, AgentOptions, PUSHGATEWAY_SINK, REMOTE_WRITE_SINK};
use gpu_metrics::buffer::{Buffer, BufferConfig, BufferError};
use gpu_metrics::naming::attribution_labels;
use gpu_metrics::sink::{BuildError, PushgatewayBuilder, RemoteWriteBuilder};
use gpu_metrics::source::GpuSource;
use gpu_metrics::ssh::SshError;
use gpu_metrics::tunnel::{
    LocalForward, TUNNEL_RECONNECTS_METRIC, TUNNEL_UP_METRIC, TunnelOptions,
};
use metrics_exporter_prometheus::PrometheusBuilder;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::Config;

/// Why the exporter stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The buffer could not be opened.
    #[error("cannot open the buffer: {0}")]
    Buffer(#[from] BufferError),
    /// The Pushgateway settings were refused.
    #[error("invalid value for `pushgateway`: {0}")]
    Pushgateway(BuildError),
    /// The remote-write settings were refused.
    #[error("invalid value for `remote_write`: {0}")]
    RemoteWrite(BuildError),
    /// The agent could not start.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The `/metrics` listener could not bind.
    #[error("cannot listen on {addr} (key `listen`): {reason}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
    /// The SSH tunnel could not be set up (invalid settings, local bind).
    #[error("cannot start the SSH tunnel: {0}")]
    Tunnel(#[from] SshError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

impl RunError {
    /// 2 for configuration errors, 1 for runtime failures.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Pushgateway(_) | RunError::RemoteWrite(_) => 2,
            _ => 1,
        }
    }
}

/// Serves `GET /metrics` until the server is unblocked.
/// What one client of `--listen` may hold: a scraper needs one connection;
/// waiting connections cost a file descriptor each, never a thread (one
/// reactor thread waits on them all, one thread answers), and at the bound the
/// one waiting longest is closed to admit a new one.
fn listen_limits() -> tiny_http::Limits {
    tiny_http::Limits {
        max_connections: 64,
        max_pending_requests: 16,
        idle_timeout: Duration::from_secs(10),
        header_timeout: Duration::from_secs(10),
        max_header_bytes: 8 * 1024,
        max_buffered_body: 1024,
        io_timeout: Duration::from_secs(10),
    }
}

fn serve_metrics(server: Arc<tiny_http::Server>, agent: Arc<agent::AgentHandle>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let (status, body, content_type) = match (request.method(), request.url()) {
                (tiny_http::Method::Get, "/metrics") => (
                    200,
                    agent.metrics_text(),
                    "text/plain; version=0.0.4; charset=utf-8",
                ),
                (tiny_http::Method::Get, "/") => (
                    200,
                    "aif-node-exporter: metrics at /metrics\n".to_string(),
                    "text/plain; charset=utf-8",
                ),
                _ => (404, "not found\n".to_string(), "text/plain; charset=utf-8"),
            };
            let header = tiny_http::Header::from_bytes("Content-Type", content_type)
                .expect("static header is valid");
            let response = tiny_http::Response::from_string(body)
                .with_status_code(status)
                .with_header(header);
            if let Err(e) = request.respond(response) {
                log::debug!("metrics client went away: {e}");
            }
        }
    })
}

/// Runs until SIGTERM or SIGINT, then shuts down cleanly.
///
/// # Errors
/// [`RunError`] when something cannot be started.
pub fn run(config: Config, source: Box<dyn GpuSource>, namer: Namer) -> Result<(), RunError> {
    let mut signals = Signals::new([SIGTERM, SIGINT]).map_err(RunError::Signals)?;

    let recorder = PrometheusBuilder::new().build_recorder();
    let self_metrics = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        log::warn!("a metrics recorder was already installed; self-metrics go there");
    }
    agent::describe_self_metrics();

    // With an SSH gateway, each sink goes to the local end of its own
    // forward; the first login happens in the background so the node starts
    // even while the gateway is down (samples are buffered meanwhile).
    let open_forward = |f: &crate::config::Forward, ssh: &gpu_metrics::ssh::SshConfig| {
        LocalForward::start_with(
            ssh,
            &f.remote_host,
            f.remote_port,
            TunnelOptions {
                wait_for_first_login: false,
                ..TunnelOptions::default()
            },
        )
    };
    let mut tunnels: Vec<LocalForward> = Vec::new();
    let mut through_tunnel =
        |forward: Option<&crate::config::Forward>, direct: &str| -> Result<String, SshError> {
            match (forward, &config.ssh) {
                (Some(f), Some(s)) => {
                    let t = open_forward(f, &s.ssh)?;
                    let url = format!("http://{}{}", t.local_addr(), f.path);
                    tunnels.push(t);
                    Ok(url)
                }
                _ => Ok(direct.to_string()),
            }
        };
    let connect_timeout = config.push_timeout.min(std::time::Duration::from_secs(5));
    let pushgateway = match &config.pushgateway {
        Some(pg) => {
            let forward = config.ssh.as_ref().and_then(|s| s.pushgateway.as_ref());
            let base = through_tunnel(forward, &pg.url)?;
            let mut b = PushgatewayBuilder::new(base)
                .job(pg.job.clone())
                .instance(pg.instance.clone())
                .grouping(attribution_labels(&config.labels))
                .backoff(pg.backoff)
                .timeout(pg.timeout)
                .connect_timeout(connect_timeout);
            if let Some(user) = &pg.user {
                b = b.basic_auth(user.clone(), pg.password.clone().unwrap_or_default());
            }
            Some(b.build().map_err(RunError::Pushgateway)?)
        }
        None => None,
    };
    let remote_write = match &config.remote_write {
        Some(rw) => {
            let forward = config.ssh.as_ref().and_then(|s| s.remote_write.as_ref());
            let url = through_tunnel(forward, &rw.url)?;
            let mut b = RemoteWriteBuilder::new(url)
                .job(config.job.clone())
                .instance(config.instance.clone())
                .backoff(config.backoff)
                .timeout(config.push_timeout)
                .connect_timeout(connect_timeout)
                .max_samples_per_request(rw.max_samples);
            if let Some(user) = &rw.user {
                b = b.basic_auth(user.clone(), rw.password.clone().unwrap_or_default());
            }
            if let Some(token) = &rw.bearer_token {
                b = b.bearer_token(token.clone());
            }
            Some(b.build().map_err(RunError::RemoteWrite)?)
        }
        None => None,
    };
    let mut sinks: Vec<&str> = Vec::new();
    if pushgateway.is_some() {
        sinks.push(PUSHGATEWAY_SINK);
    }
    if remote_write.is_some() {
        sinks.push(REMOTE_WRITE_SINK);
    }
    let buffer = Buffer::open(BufferConfig {
        path: config.buffer.clone(),
        max_bytes: config.buffer_max_bytes,
        durability: config.durability,
        sinks: sinks.iter().map(|s| s.to_string()).collect(),
    })?;
    if let Some(p) = buffer.recovered_from() {
        log::error!(
            "buffer was unreadable and was moved aside to {}; started a fresh one",
            p.display()
        );
    }
    let server = match config.listen {
        Some(addr) => Some(Arc::new(
            tiny_http::Server::http_with_limits(addr, listen_limits()).map_err(|e| {
                RunError::Listen {
                    addr,
                    reason: e.to_string(),
                }
            })?,
        )),
        None => None,
    };
    log::info!(
        "aif-node-exporter started: source={} gpus={} interval={:?} buffer={} durability={} pushgateway={} remote_write={} tunnel={} listen={}",
        source.kind(),
        source.device_count(),
        config.interval,
        config.buffer.display(),
        config.durability.as_str(),
        pushgateway.as_ref().map_or("none", |p| p.group_url()),
        remote_write.as_ref().map_or("none", |r| r.url()),
        config.ssh.as_ref().map_or_else(
            || "none".to_string(),
            |s| {
                let to: Vec<String> = [&s.pushgateway, &s.remote_write]
                    .into_iter()
                    .flatten()
                    .map(|f| format!("{}:{}", f.remote_host, f.remote_port))
                    .collect();
                format!("{} -> {}", s.ssh.destination(), to.join(", "))
            }
        ),
        config
            .listen
            .map_or_else(|| "none".to_string(), |a| a.to_string()),
    );
    let handle = Arc::new(agent::start(
        source,
        namer,
        buffer,
        AgentOptions {
            interval: config.interval,
            pushgateway,
            remote_write,
            delete_on_exit: config
                .pushgateway
                .as_ref()
                .is_some_and(|p| p.delete_on_exit),
            self_metrics: Some(self_metrics),
            on_tick: (!tunnels.is_empty()).then(|| {
                let stats: Vec<_> = tunnels.iter().map(LocalForward::stats).collect();
                Box::new(move || {
                    let up = stats.iter().all(|s| s.up());
                    metrics::gauge!(TUNNEL_UP_METRIC).set(if up { 1.0 } else { 0.0 });
                    metrics::counter!(TUNNEL_RECONNECTS_METRIC)
                        .absolute(stats.iter().map(|s| s.reconnects()).sum());
                }) as Box<dyn FnMut() + Send>
            }),
            ..AgentOptions::default()
        },
    )?);
    let http = server
        .as_ref()
        .map(|s| serve_metrics(Arc::clone(s), Arc::clone(&handle)));

    if let Some(sig) = signals.forever().next() {
        log::info!("signal {sig} received: finishing the tick, flushing, exiting");
    }
    if let Some(s) = &server {
        s.unblock();
    }
    if let Some(t) = http {
        let _ = t.join();
    }
    match Arc::try_unwrap(handle) {
        Ok(h) => h.shutdown(),
        Err(_) => log::error!("agent still referenced at shutdown; exiting without flush"),
    }
    drop(tunnels);
    log::info!("aif-node-exporter stopped");
    Ok(())
}
