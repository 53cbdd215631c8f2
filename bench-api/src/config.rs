//! Configuration: command-line flags and a TOML file with the same keys; flags
//! win. Every bad key or value is an error that names the key (exit code 2).
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! db = "/var/lib/aif-bench-api/state.sqlite"
//! recipes = "/etc/aif-bench-api/recipes"  # over the built-in ones
//! backend = "slurm"                    # or "local", "slurm-rest"
//! cors_origin = ["https://grafana.example.org"]
//! token_file = "/etc/aif-bench-api/token"
//! pushgateway = "http://monitor:9091"
//! remote_write = "http://monitor:9090/api/v1/write"  # also handed to the exporters
//! workers = 8
//! max_connections = 1024                # open HTTP connections at once
//! idle_timeout_ms = 10000               # keep-alive connection without a request
//! header_timeout_ms = 10000             # a request head must arrive within this
//! metrics_retention_seconds = 86400     # /metrics shows ended services/runs this long
//! log_dir = "/var/lib/aif-bench-api/logs"
//! poll_interval_ms = 1000
//! kill_grace_seconds = 10
//! exporter_binary = "/opt/aif/bin/aif-node-exporter"
//! exporter_source = "auto"             # or "nvml", "simulated"
//! loadgen_binary = "/opt/aif/bin/aif-loadgen"
//! prometheus = "http://monitor:9090"   # energy per benchmark run
//! # Reverse tunnel (needs [slurm.ssh]): the login node's 127.0.0.1:19091 leads
//! # to the Pushgateway (19092 to remote_write) while services or runs exist.
//! reverse_tunnel = 19091
//! reverse_tunnel_remote_write_port = 19092
//! reverse_tunnel_bind = "127.0.0.1"      # where sshd listens; others need GatewayPorts
//! reverse_tunnel_advertise = "login01"   # the login node as the compute nodes name it
//! reverse_tunnel_linger_seconds = 60     # held this long after the last one ended
//!
//! [slurm]
//! partition = "gpu"
//! account = "proj123"
//! extra_args = ["--qos=normal"]
//! log_dir = "aif-bench-logs"          # on the cluster, relative to the login home
//! command_timeout_seconds = 30
//! env = { SLURM_CONF = "/etc/slurm/slurm.conf" }
//!
//! [slurm.ssh]                          # omit to run sbatch/squeue/scancel locally
//! host = "login.cluster.example.org"
//! port = 22
//! user = "svc-bench"
//! identity_file = "/etc/aif-bench-api/id_ed25519"
//! known_hosts = "/etc/aif-bench-api/known_hosts"
//! accept_new = false
//!
//! [slurm.rest]                         # backend = "slurm-rest": slurmrestd
//! url = "http://127.0.0.1:6820"        # or "unix:/run/slurmrestd/slurmrestd.socket"
//! user = "svc-bench"                   # X-SLURM-USER-NAME
//! token_file = "/etc/aif-bench-api/slurm.jwt"  # `scontrol token` output; omit for rest_auth/local
//! api_version = "v0.0.40"              # default: the newest both sides speak
//! timeout_seconds = 30
//! environment = { PATH = "/usr/local/bin:/usr/bin:/bin" }  # the jobs' environment
//!
//! [slurm.rest.ssh]                     # reach `url` from the login node (SSH local forward)
//! host = "login.cluster.example.org"
//! user = "svc-bench"
//! identity_file = "/etc/aif-bench-api/id_ed25519"
//! known_hosts = "/etc/aif-bench-api/known_hosts"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use gpu_metrics::ssh::{SshConfig, SshError};
use serde::Deserialize;

use crate::auth::Token;

/// Why the configuration was refused (the process exits with code 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML, or has an unknown key or a wrong type.
    #[error("config {path}: key `{key}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The key (`slurm.ssh.port`), or `.` for the file as a whole.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A value is not acceptable.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// The key (flags are named by their TOML key).
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// Command-line flags (each also a TOML key; a flag wins over the file).
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "aif-bench-api",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("AIF_GIT_COMMIT"), ")"),
    about = "HTTP API behind the Grafana buttons: services and benchmark runs"
)]
pub struct Cli {
    /// TOML config file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Listen address (default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// SQLite state database (default ./aif-bench-api.sqlite).
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Directory of recipe TOML files that add to or override the built-in
    /// ones by name (default: the built-in recipes only).
    #[arg(long, value_name = "DIR")]
    pub recipes: Option<PathBuf>,
    /// Where services run: local, slurm (commands) or slurm-rest
    /// (slurmrestd) (default local).
    #[arg(long, value_name = "local|slurm|slurm-rest")]
    pub backend: Option<String>,
    /// An allowed CORS origin (repeatable), e.g. `https://grafana.example.org`.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origin: Vec<String>,
    /// File holding the bearer token mutating routes require.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Pushgateway URL handed to node exporters started beside GPU services.
    #[arg(long, value_name = "URL")]
    pub pushgateway: Option<String>,
    /// Worker threads answering requests (default 8).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Directory for service logs of the local backend.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Prometheus base URL asked for the energy of each benchmark run.
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// Open HTTP connections at once (default 1024); at the bound the one
    /// waiting longest is closed to admit a new one.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Remote-write URL handed to node exporters started beside GPU services
    /// (with `--pushgateway`; they deliver to both).
    #[arg(long, value_name = "URL")]
    pub remote_write: Option<String>,
    /// Hold an SSH remote forward on the Slurm login node (`[slurm.ssh]`)
    /// while services or runs exist there: the login node's
    /// `BIND:PORT` leads to the Pushgateway, and the exporters and load
    /// generators the API starts push there (for nodes that cannot reach the
    /// monitoring host).
    #[arg(long, value_name = "PORT")]
    pub reverse_tunnel: Option<u16>,
    /// Login-node port forwarded to `--remote-write` (required with both).
    #[arg(long, value_name = "PORT")]
    pub reverse_tunnel_remote_write_port: Option<u16>,
    /// Address sshd listens on for the forward (default 127.0.0.1: reachable
    /// from the login node only; compute nodes need a non-loopback address
    /// and `GatewayPorts clientspecified` in the login node's sshd).
    #[arg(long, value_name = "ADDR")]
    pub reverse_tunnel_bind: Option<String>,
    /// Host the compute nodes reach the forward on (default: the bind
    /// address, or `[slurm.ssh] host` when that is a wildcard).
    #[arg(long, value_name = "HOST")]
    pub reverse_tunnel_advertise: Option<String>,
}

/// `[slurm.ssh]`: run Slurm commands on a login node over SSH.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSettings {
    /// Login node.
    pub host: String,
    /// SSH port.
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// User to log in as.
    pub user: String,
    /// Private key file.
    pub identity_file: PathBuf,
    /// `known_hosts` the server key must match.
    pub known_hosts: PathBuf,
    /// Append an unknown host's key instead of refusing it.
    #[serde(default)]
    pub accept_new: bool,
    /// Seconds between SSH keepalives on an idle session (default 15): a
    /// silently dead login node or link is noticed after about three
    /// unanswered ones (at least the connect timeout), and the reverse
    /// tunnel logs in again.
    #[serde(default = "default_keepalive_seconds")]
    pub keepalive_seconds: u64,
}

fn default_ssh_port() -> u16 {
    22
}

fn default_keepalive_seconds() -> u64 {
    15
}

impl SshSettings {
    /// The session settings for the login node; Slurm commands and the
    /// reverse tunnel log in with the same ones.
    ///
    /// # Errors
    /// [`SshError::InvalidConfig`] naming the bad field (empty host, bad user
    /// name, …).
    pub fn ssh_config(&self, timeout: Duration) -> Result<SshConfig, SshError> {
        SshConfig::builder(&self.host, &self.user, &self.identity_file)
            .port(self.port)
            .known_hosts(&self.known_hosts)
            .accept_new(self.accept_new)
            .connect_timeout(timeout.min(Duration::from_secs(15)))
            .exec_timeout(Some(timeout))
            .keepalive_interval(Some(Duration::from_secs(self.keepalive_seconds)))
            .build()
    }
}

/// `[slurm]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmSettings {
    /// `--partition`.
    #[serde(default)]
    pub partition: Option<String>,
    /// `--account`.
    #[serde(default)]
    pub account: Option<String>,
    /// More `sbatch` arguments, each a whole argument.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// Directory for job output on the cluster (default: the API's `log_dir`
    /// when Slurm runs locally, `aif-bench-logs` in the login home over SSH).
    #[serde(default)]
    pub log_dir: Option<PathBuf>,
    /// Limit for one Slurm command (default 30 s).
    #[serde(default)]
    pub command_timeout_seconds: Option<u64>,
    /// Environment for Slurm commands (`SLURM_CONF`, …), passed through `env`.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Run Slurm commands on a login node over SSH.
    #[serde(default)]
    pub ssh: Option<SshSettings>,
    /// slurmrestd, for `backend = "slurm-rest"`.
    #[serde(default)]
    pub rest: Option<SlurmRestSettings>,
}

/// `[slurm.rest]`: the `slurm-rest` backend's slurmrestd.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmRestSettings {
    /// `http://host:port` (as seen from the login node with `ssh`) or
    /// `unix:/path/to/slurmrestd.socket`.
    pub url: String,
    /// `X-SLURM-USER-NAME`: the user jobs run as.
    #[serde(default)]
    pub user: Option<String>,
    /// File holding the JWT (`scontrol token` output); re-read when it
    /// changes. Without it: `rest_auth/local` (Unix socket only).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Pin an API version (`v0.0.38`, `v0.0.40`, `v0.0.41`) instead of
    /// discovering it.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Limit for one request (default 30 s).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// The jobs' environment (slurmrestd passes none of its own; default
    /// `PATH=/usr/local/bin:/usr/bin:/bin`).
    #[serde(default)]
    pub environment: Option<std::collections::BTreeMap<String, String>>,
    /// Reach `url` through an SSH local forward to this login node.
    #[serde(default)]
    pub ssh: Option<SshSettings>,
}

/// The TOML file: the same keys as the flags, plus tuning.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    db: Option<PathBuf>,
    recipes: Option<PathBuf>,
    backend: Option<String>,
    cors_origin: Option<Vec<String>>,
    token_file: Option<PathBuf>,
    pushgateway: Option<String>,
    workers: Option<usize>,
    max_connections: Option<usize>,
    idle_timeout_ms: Option<u64>,
    header_timeout_ms: Option<u64>,
    metrics_retention_seconds: Option<u64>,
    log_dir: Option<PathBuf>,
    poll_interval_ms: Option<u64>,
    kill_grace_seconds: Option<u64>,
    health_timeout_ms: Option<u64>,
    exporter_binary: Option<PathBuf>,
    exporter_interval: Option<String>,
    exporter_source: Option<String>,
    loadgen_binary: Option<PathBuf>,
    prometheus: Option<String>,
    slurm: Option<SlurmSettings>,
    remote_write: Option<String>,
    reverse_tunnel: Option<u16>,
    reverse_tunnel_remote_write_port: Option<u16>,
    reverse_tunnel_bind: Option<String>,
    reverse_tunnel_advertise: Option<String>,
    reverse_tunnel_linger_seconds: Option<u64>,
}

/// `aif-loadgen` beside this program's binary when it is there, else on `PATH`.
fn default_loadgen() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("aif-loadgen")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("aif-loadgen"))
}

/// Which backend runs services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Child processes of the API.
    Local,
    /// Slurm jobs (sbatch, squeue, sacct, scancel).
    Slurm,
    /// Slurm jobs through slurmrestd.
    SlurmRest,
}

/// The node exporter started beside GPU services on Slurm.
#[derive(Debug, Clone, PartialEq)]
pub struct ExporterSettings {
    /// Path of `aif-node-exporter` on the compute nodes.
    pub binary: PathBuf,
    /// `--interval`.
    pub interval: String,
    /// `--source` (`auto`, `nvml`, `simulated`; key `exporter_source`).
    pub source: String,
}

/// One forward of the reverse tunnel: the login node's `bind:port` leads to
/// `target_host:target_port` (as this host resolves it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelForward {
    /// `pushgateway` or `remote_write` (the `forward` label on `/metrics`).
    pub name: &'static str,
    /// Port on the login node.
    pub port: u16,
    /// Where connections go, as this host names it.
    pub target_host: String,
    /// Its port.
    pub target_port: u16,
    /// The URL jobs on the cluster are given (`http://ADVERTISE:PORT/path`).
    pub job_url: String,
}

/// The SSH remote forward the API holds on the Slurm login node (DESIGN.md
/// §7), like `ssh -R 19091:pushgateway:9091 login`.
#[derive(Debug, Clone)]
pub struct ReverseTunnelConfig {
    /// The login node (`[slurm.ssh]`).
    pub ssh: SshConfig,
    /// Address sshd listens on (`reverse_tunnel_bind`).
    pub bind: String,
    /// Host the compute nodes use (`reverse_tunnel_advertise`).
    pub advertise: String,
    /// The Pushgateway's forward, then the remote-write receiver's.
    pub forwards: Vec<TunnelForward>,
    /// How long the forward stays after the last service or run ended, so an
    /// exporter's `--delete-on-exit` still gets through.
    pub linger: Duration,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// SQLite database.
    pub db: PathBuf,
    /// Directory of recipes over the built-in ones.
    pub recipes: Option<PathBuf>,
    /// Backend.
    pub backend: BackendKind,
    /// Allowed CORS origins.
    pub cors_origins: Vec<String>,
    /// Bearer token for mutating routes.
    pub token: Option<Token>,
    /// Pushgateway for node exporters.
    pub pushgateway: Option<String>,
    /// Worker threads.
    pub workers: usize,
    /// What one HTTP client may hold (connections, head size, time).
    pub http_limits: tiny_http::Limits,
    /// Local service logs.
    pub log_dir: PathBuf,
    /// How long `/metrics` still shows a service or run after it ended
    /// (`metrics_retention_seconds`, default 1 day); open ones always.
    pub metrics_retention: Duration,
    /// How often services and runs are checked (`poll_interval_ms`; default
    /// 500 ms for local, 2000 ms for Slurm).
    pub poll_interval: Duration,
    /// SIGTERM → SIGKILL grace for local cancels.
    pub kill_grace: Duration,
    /// Timeout of one health check.
    pub health_timeout: Duration,
    /// Node exporter beside GPU services.
    pub exporter: ExporterSettings,
    /// The load generator benchmark runs start (key `loadgen_binary`; on
    /// Slurm, its path on the compute nodes).
    pub loadgen_binary: PathBuf,
    /// Prometheus base URL, for the energy of runs (`--prometheus`).
    pub prometheus: Option<String>,
    /// Slurm settings.
    pub slurm: SlurmSettings,
    /// Remote-write URL for node exporters (`--remote-write`).
    pub remote_write: Option<String>,
    /// The reverse tunnel on the login node (`--reverse-tunnel`).
    pub reverse_tunnel: Option<ReverseTunnelConfig>,
}

impl Config {
    /// Reads the file named by `--config` (if any) and merges the flags over it.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key at fault.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                parse_file(path, &text)?
            }
            None => FileConfig::default(),
        };
        Self::merge(cli, file)
    }

    fn merge(cli: &Cli, file: FileConfig) -> Result<Config, ConfigError> {
        let listen_text = cli
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_text.parse().map_err(|e| {
            ConfigError::invalid("listen", format!("`{listen_text}` is not IP:PORT ({e})"))
        })?;
        let db = cli
            .db
            .clone()
            .or(file.db)
            .unwrap_or_else(|| PathBuf::from("aif-bench-api.sqlite"));
        let recipes = cli.recipes.clone().or(file.recipes);
        if let Some(dir) = &recipes
            && !dir.is_dir()
        {
            return Err(ConfigError::invalid(
                "recipes",
                format!("{} is not a directory", dir.display()),
            ));
        }
        let backend = match cli.backend.clone().or(file.backend).as_deref() {
            None | Some("local") => BackendKind::Local,
            Some("slurm") => BackendKind::Slurm,
            Some("slurm-rest") => BackendKind::SlurmRest,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "backend",
                    format!("`{other}` is not one of: local, slurm, slurm-rest"),
                ));
            }
        };
        let cors_origins = if cli.cors_origin.is_empty() {
            file.cors_origin.unwrap_or_default()
        } else {
            cli.cors_origin.clone()
        };
        for o in &cors_origins {
            check_origin(o)
                .map_err(|m| ConfigError::invalid("cors_origin", format!("`{o}`: {m}")))?;
        }
        let token = match cli.token_file.clone().or(file.token_file) {
            Some(path) => Some(read_token(&path)?),
            None => None,
        };
        // The same rule as the node exporter's, which receives this URL.
        let pushgateway = match cli.pushgateway.clone().or(file.pushgateway) {
            Some(url) => Some(
                gpu_metrics::sink::normalize_base_url(&url)
                    .map_err(|e| ConfigError::invalid("pushgateway", e.to_string()))?,
            ),
            None => None,
        };
        let workers = cli.workers.or(file.workers).unwrap_or(8);
        if !(1..=256).contains(&workers) {
            return Err(ConfigError::invalid(
                "workers",
                format!("{workers} is not in 1..=256"),
            ));
        }
        let http_limits = http_limits(
            cli.max_connections.or(file.max_connections),
            file.idle_timeout_ms,
            file.header_timeout_ms,
        )?;
        let log_dir = cli.log_dir.clone().or(file.log_dir).unwrap_or_else(|| {
            db.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .join("aif-bench-logs")
        });
        // Slurm answers through squeue (maybe over SSH): ask it less often.
        let poll_ms = file
            .poll_interval_ms
            .unwrap_or(if backend != BackendKind::Local {
                2000
            } else {
                500
            });
        if !(10..=60_000).contains(&poll_ms) {
            return Err(ConfigError::invalid(
                "poll_interval_ms",
                format!("{poll_ms} is not in 10..=60000"),
            ));
        }
        let grace = file.kill_grace_seconds.unwrap_or(10);
        if grace > 600 {
            return Err(ConfigError::invalid(
                "kill_grace_seconds",
                format!("{grace} is over 600"),
            ));
        }
        let health_ms = file.health_timeout_ms.unwrap_or(2000);
        if !(10..=60_000).contains(&health_ms) {
            return Err(ConfigError::invalid(
                "health_timeout_ms",
                format!("{health_ms} is not in 10..=60000"),
            ));
        }
        let retention = file.metrics_retention_seconds.unwrap_or(86_400);
        if retention > 90 * 86_400 {
            return Err(ConfigError::invalid(
                "metrics_retention_seconds",
                format!("{retention} is over 7776000 (90 days)"),
            ));
        }
        let interval = file.exporter_interval.unwrap_or_else(|| "1s".into());
        let exporter_source = file.exporter_source.unwrap_or_else(|| "auto".into());
        if !matches!(exporter_source.as_str(), "auto" | "nvml" | "simulated") {
            return Err(ConfigError::invalid(
                "exporter_source",
                format!("`{exporter_source}` is not one of: auto, nvml, simulated"),
            ));
        }
        let loadgen_binary = file.loadgen_binary.unwrap_or_else(default_loadgen);
        let prometheus = match cli.prometheus.clone().or(file.prometheus) {
            Some(url) => Some(
                gpu_metrics::sink::normalize_base_url(&url)
                    .map_err(|e| ConfigError::invalid("prometheus", e.to_string()))?,
            ),
            None => None,
        };
        let slurm = file.slurm.unwrap_or_default();
        if let Some(t) = slurm.command_timeout_seconds
            && !(1..=600).contains(&t)
        {
            return Err(ConfigError::invalid(
                "slurm.command_timeout_seconds",
                format!("{t} is not in 1..=600"),
            ));
        }
        if backend == BackendKind::SlurmRest {
            check_slurm_rest(&slurm)?;
        }
        let remote_write = match cli.remote_write.clone().or(file.remote_write) {
            Some(url) => Some(
                gpu_metrics::sink::normalize_base_url(&url)
                    .map_err(|e| ConfigError::invalid("remote_write", e.to_string()))?,
            ),
            None => None,
        };
        let tunnel = TunnelKeys {
            port: cli.reverse_tunnel.or(file.reverse_tunnel),
            remote_write_port: cli
                .reverse_tunnel_remote_write_port
                .or(file.reverse_tunnel_remote_write_port),
            bind: cli.reverse_tunnel_bind.clone().or(file.reverse_tunnel_bind),
            advertise: cli
                .reverse_tunnel_advertise
                .clone()
                .or(file.reverse_tunnel_advertise),
            linger_seconds: file.reverse_tunnel_linger_seconds,
        };
        let reverse_tunnel = reverse_tunnel(
            tunnel,
            backend,
            &slurm,
            pushgateway.as_deref(),
            remote_write.as_deref(),
        )?;
        Ok(Config {
            listen,
            db,
            recipes,
            backend,
            cors_origins,
            token,
            pushgateway,
            workers,
            http_limits,
            log_dir,
            metrics_retention: Duration::from_secs(retention),
            poll_interval: Duration::from_millis(poll_ms),
            kill_grace: Duration::from_secs(grace),
            health_timeout: Duration::from_millis(health_ms),
            exporter: ExporterSettings {
                binary: file
                    .exporter_binary
                    .unwrap_or_else(|| PathBuf::from("aif-node-exporter")),
                interval,
                source: exporter_source,
            },
            loadgen_binary,
            prometheus,
            slurm,
            remote_write,
            reverse_tunnel,
        })
    }

    /// The Pushgateway URL handed to the jobs the API starts (exporters, load
    /// generators): the reverse tunnel's on the login node when there is one,
    /// else `--pushgateway`.
    pub fn job_pushgateway(&self) -> Option<&str> {
        self.job_url("pushgateway", self.pushgateway.as_deref())
    }

    /// The remote-write URL handed to the exporters the API starts, as
    /// [`Config::job_pushgateway`].
    pub fn job_remote_write(&self) -> Option<&str> {
        self.job_url("remote_write", self.remote_write.as_deref())
    }

    fn job_url<'a>(&'a self, name: &str, direct: Option<&'a str>) -> Option<&'a str> {
        match &self.reverse_tunnel {
            Some(t) => t
                .forwards
                .iter()
                .find(|f| f.name == name)
                .map(|f| f.job_url.as_str())
                .or(direct),
            None => direct,
        }
    }
}

/// The `reverse_tunnel*` keys as given.
#[derive(Debug, Default)]
struct TunnelKeys {
    port: Option<u16>,
    remote_write_port: Option<u16>,
    bind: Option<String>,
    advertise: Option<String>,
    linger_seconds: Option<u64>,
}

/// A host name or address for `key`: 1..=253 characters, no space, control,
/// `/`, `@` or quote (it ends up in a URL and on the SSH wire).
fn check_tunnel_host(key: &str, host: &str) -> Result<(), ConfigError> {
    if host.is_empty()
        || host.len() > 253
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/@'\"\\?#".contains(c))
    {
        return Err(ConfigError::invalid(
            key,
            format!("`{host}` is not a host name or address"),
        ));
    }
    Ok(())
}

/// Validates the reverse-tunnel keys against the rest: it needs the Slurm
/// backend over SSH (the login node it is held on), `--pushgateway` (its
/// target, plain `http://`), a fixed port (jobs carry it in their command
/// line, across API restarts), and a port of its own for `--remote-write`.
fn reverse_tunnel(
    keys: TunnelKeys,
    backend: BackendKind,
    slurm: &SlurmSettings,
    pushgateway: Option<&str>,
    remote_write: Option<&str>,
) -> Result<Option<ReverseTunnelConfig>, ConfigError> {
    let Some(port) = keys.port else {
        for (key, given) in [
            (
                "reverse_tunnel_remote_write_port",
                keys.remote_write_port.is_some(),
            ),
            ("reverse_tunnel_bind", keys.bind.is_some()),
            ("reverse_tunnel_advertise", keys.advertise.is_some()),
            (
                "reverse_tunnel_linger_seconds",
                keys.linger_seconds.is_some(),
            ),
        ] {
            if given {
                return Err(ConfigError::invalid(
                    key,
                    "goes with `reverse_tunnel` (the login-node port), which is not set",
                ));
            }
        }
        return Ok(None);
    };
    const KEY: &str = "reverse_tunnel";
    let ssh = match (backend, &slurm.ssh) {
        (BackendKind::Slurm, Some(ssh)) => ssh,
        _ => {
            return Err(ConfigError::invalid(
                KEY,
                "needs backend `slurm` with [slurm.ssh] (the login node the forward is held on)",
            ));
        }
    };
    if port == 0 {
        return Err(ConfigError::invalid(
            KEY,
            "0 is not a port; jobs carry the port in their command line, so it must be fixed (1..=65535)",
        ));
    }
    let ssh_config = ssh
        .ssh_config(Duration::from_secs(
            slurm.command_timeout_seconds.unwrap_or(30),
        ))
        .map_err(|e| ConfigError::invalid("slurm.ssh", e.to_string()))?;
    let bind = keys.bind.unwrap_or_else(|| "127.0.0.1".into());
    check_tunnel_host("reverse_tunnel_bind", &bind)?;
    let advertise = match keys.advertise {
        Some(a) => a,
        // A wildcard is no address to connect to: the login node's own name.
        None if matches!(bind.as_str(), "0.0.0.0" | "::" | "*") => ssh.host.clone(),
        None => bind.clone(),
    };
    check_tunnel_host("reverse_tunnel_advertise", &advertise)?;
    let authority = |p: u16| {
        if advertise.contains(':') && !advertise.starts_with('[') {
            format!("[{advertise}]:{p}")
        } else {
            format!("{advertise}:{p}")
        }
    };
    let forward = |name: &'static str, key: &str, url: &str, port: u16| {
        let (target_host, target_port, path) = crate::loadgen::plan::split_http_url(url)
            .ok_or_else(|| {
                ConfigError::invalid(
                    key,
                    format!(
                        "`{url}` must be plain http://host[:port][/path] with `reverse_tunnel` \
                         (jobs reach it as http://{}{{path}})",
                        authority(port)
                    ),
                )
            })?;
        let target_host = target_host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok::<_, ConfigError>(TunnelForward {
            name,
            port,
            target_host,
            target_port,
            job_url: format!("http://{}{path}", authority(port)),
        })
    };
    let pgw = pushgateway.ok_or_else(|| {
        ConfigError::invalid(KEY, "needs `pushgateway` (where the forward leads)")
    })?;
    let mut forwards = vec![forward("pushgateway", "pushgateway", pgw, port)?];
    match (remote_write, keys.remote_write_port) {
        (Some(url), Some(rw_port)) => {
            if rw_port == 0 || rw_port == port {
                return Err(ConfigError::invalid(
                    "reverse_tunnel_remote_write_port",
                    format!(
                        "{rw_port} must be a port in 1..=65535 other than `reverse_tunnel` ({port})"
                    ),
                ));
            }
            forwards.push(forward("remote_write", "remote_write", url, rw_port)?);
        }
        (Some(_), None) => {
            return Err(ConfigError::invalid(
                "reverse_tunnel_remote_write_port",
                "missing: with `remote_write` and `reverse_tunnel` the remote-write receiver needs a login-node port of its own",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                "reverse_tunnel_remote_write_port",
                "goes with `remote_write`, which is not set",
            ));
        }
        (None, None) => {}
    }
    let linger = keys.linger_seconds.unwrap_or(60);
    if linger > 3600 {
        return Err(ConfigError::invalid(
            "reverse_tunnel_linger_seconds",
            format!("{linger} is over 3600"),
        ));
    }
    Ok(Some(ReverseTunnelConfig {
        ssh: ssh_config,
        bind,
        advertise,
        forwards,
        linger: Duration::from_secs(linger),
    }))
}

/// `backend = "slurm-rest"` needs `[slurm.rest]`, and takes none of the
/// settings only commands can honour.
fn check_slurm_rest(slurm: &SlurmSettings) -> Result<(), ConfigError> {
    let Some(rest) = &slurm.rest else {
        return Err(ConfigError::invalid(
            "slurm.rest",
            "backend slurm-rest needs [slurm.rest] with `url` (and `user`, `token_file`)",
        ));
    };
    if !slurm.extra_args.is_empty() {
        return Err(ConfigError::invalid(
            "slurm.extra_args",
            "sbatch arguments; slurmrestd takes none (use partition/account, or backend slurm)",
        ));
    }
    if !slurm.env.is_empty() {
        return Err(ConfigError::invalid(
            "slurm.env",
            "the environment of Slurm commands; slurm-rest runs none (the jobs' is slurm.rest.environment)",
        ));
    }
    if slurm.ssh.is_some() {
        return Err(ConfigError::invalid(
            "slurm.ssh",
            "runs Slurm commands over SSH; to reach slurmrestd through a login node use [slurm.rest.ssh]",
        ));
    }
    let unix = rest.url.starts_with("unix:");
    if unix {
        if rest
            .url
            .trim_start_matches("unix:")
            .trim_start_matches("//")
            .is_empty()
        {
            return Err(ConfigError::invalid(
                "slurm.rest.url",
                "`unix:` needs a socket path",
            ));
        }
        if rest.ssh.is_some() {
            return Err(ConfigError::invalid(
                "slurm.rest.ssh",
                "forwards TCP; it cannot be used with a unix: URL",
            ));
        }
    } else {
        crate::backend::slurm_rest::client::host_port(&rest.url)
            .map_err(|m| ConfigError::invalid("slurm.rest.url", format!("`{}`: {m}", rest.url)))?;
    }
    match (&rest.token_file, &rest.user) {
        (Some(_), None) => {
            return Err(ConfigError::invalid(
                "slurm.rest.user",
                "required with token_file (X-SLURM-USER-NAME, the token's user)",
            ));
        }
        (None, _) if !unix => {
            return Err(ConfigError::invalid(
                "slurm.rest.token_file",
                "required for an http:// URL (rest_auth/jwt); rest_auth/local needs a unix: URL",
            ));
        }
        _ => {}
    }
    if let Some(u) = &rest.user
        && (u.is_empty() || u.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(ConfigError::invalid(
            "slurm.rest.user",
            format!("`{u}` is not a user name"),
        ));
    }
    if let Some(path) = &rest.token_file {
        std::fs::metadata(path).map_err(|e| {
            ConfigError::invalid(
                "slurm.rest.token_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
    }
    if let Some(v) = &rest.api_version
        && crate::backend::slurm_rest::version::ApiVersion::parse(v).is_none()
    {
        return Err(ConfigError::invalid(
            "slurm.rest.api_version",
            format!("`{v}` is not one of: v0.0.38, v0.0.40, v0.0.41"),
        ));
    }
    if let Some(t) = rest.timeout_seconds
        && !(1..=600).contains(&t)
    {
        return Err(ConfigError::invalid(
            "slurm.rest.timeout_seconds",
            format!("{t} is not in 1..=600"),
        ));
    }
    if let Some(env) = &rest.environment {
        for k in env.keys() {
            if k.is_empty() || k.contains('=') || k.chars().any(|c| c.is_control()) {
                return Err(ConfigError::invalid(
                    "slurm.rest.environment",
                    format!("`{k}` is not a variable name"),
                ));
            }
        }
    }
    Ok(())
}

/// The HTTP bounds from `max_connections`, `idle_timeout_ms`, `header_timeout_ms`.
fn http_limits(
    max_connections: Option<usize>,
    idle_ms: Option<u64>,
    header_ms: Option<u64>,
) -> Result<tiny_http::Limits, ConfigError> {
    let max_connections = max_connections.unwrap_or(1024);
    if !(1..=65_536).contains(&max_connections) {
        return Err(ConfigError::invalid(
            "max_connections",
            format!("{max_connections} is not in 1..=65536"),
        ));
    }
    let ms = |key: &str, v: Option<u64>| {
        let v = v.unwrap_or(10_000);
        if (10..=600_000).contains(&v) {
            Ok(Duration::from_millis(v))
        } else {
            Err(ConfigError::invalid(
                key,
                format!("{v} is not in 10..=600000"),
            ))
        }
    };
    Ok(tiny_http::Limits {
        max_connections,
        // Requests read and waiting for a worker: beyond, 503.
        max_pending_requests: 256,
        idle_timeout: ms("idle_timeout_ms", idle_ms)?,
        header_timeout: ms("header_timeout_ms", header_ms)?,
        max_header_bytes: 16 * 1024,
        // Request bodies are small JSON: read them in the reactor, so a
        // client trickling one holds no worker.
        max_buffered_body: 64 * 1024,
        io_timeout: Duration::from_secs(30),
    })
}

fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    let de = toml::de::Deserializer::parse(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        key: ".".into(),
        message: e.message().to_string(),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let parent = e.path().to_string();
        let message = e.inner().message().to_string();
        let name = message
            .strip_prefix("unknown field `")
            .or_else(|| message.strip_prefix("missing field `"))
            .and_then(|r| r.split('`').next());
        let key = match name {
            Some(n) => crate::validate::join_path(&parent, n),
            None => parent,
        };
        ConfigError::Parse {
            path: path.to_path_buf(),
            key,
            message,
        }
    })
}

/// An origin is `scheme://host[:port]`: no path, no trailing slash.
fn check_origin(o: &str) -> Result<(), &'static str> {
    let rest = o
        .strip_prefix("http://")
        .or_else(|| o.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ', '*']) {
        return Err("must be scheme://host[:port] with no path or wildcard");
    }
    Ok(())
}

fn read_token(path: &Path) -> Result<Token, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::invalid("token_file", format!("cannot read {}: {e}", path.display()))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ConfigError::invalid(
            "token_file",
            format!("{} is empty", path.display()),
        ));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::invalid(
            "token_file",
            format!("{} must hold one token without spaces", path.display()),
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o004 != 0
        {
            log::warn!("token file {} is world-readable", path.display());
        }
    }
    Ok(Token::new(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli_with(dir: &Path, config: &str) -> Cli {
        let path = dir.join("c.toml");
        std::fs::write(&path, config).unwrap();
        Cli {
            config: Some(path),
            recipes: Some(dir.to_path_buf()),
            ..Cli::default()
        }
    }

    #[test]
    fn unknown_and_bad_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("lisen = \"127.0.0.1:1\"", "lisen"),
            ("listen = 5", "listen"),
            ("listen = \"nope\"", "listen"),
            ("backend = \"k8s\"", "backend"),
            ("workers = 0", "workers"),
            ("max_connections = 0", "max_connections"),
            (
                "metrics_retention_seconds = 99999999",
                "metrics_retention_seconds",
            ),
            ("idle_timeout_ms = 1", "idle_timeout_ms"),
            ("header_timeout_ms = 700000", "header_timeout_ms"),
            ("cors_origin = [\"grafana\"]", "cors_origin"),
            ("[slurm]\nparition = \"x\"", "slurm.parition"),
            (
                "[slurm.ssh]\nhost = \"h\"\nuser = \"u\"\nidentity_file = \"i\"\nknown_hosts = \"k\"\nport = \"22\"",
                "slurm.ssh.port",
            ),
            ("token_file = \"/nonexistent/token\"", "token_file"),
            ("backend = \"slurm-rest\"", "slurm.rest"),
            (
                "backend = \"slurm-rest\"\n[slurm.rest]\nurl = \"http://h:6820\"",
                "slurm.rest.token_file",
            ),
            (
                "backend = \"slurm-rest\"\n[slurm.rest]\nurl = \"https://h:6820\"\nuser = \"u\"\ntoken_file = \"/dev/null\"",
                "slurm.rest.url",
            ),
            (
                "backend = \"slurm-rest\"\n[slurm.rest]\nurl = \"http://h:6820\"\ntoken_file = \"/dev/null\"",
                "slurm.rest.user",
            ),
            (
                "backend = \"slurm-rest\"\n[slurm.rest]\nurl = \"unix:/s\"\napi_version = \"v0.0.39\"",
                "slurm.rest.api_version",
            ),
            (
                "backend = \"slurm-rest\"\n[slurm]\nextra_args = [\"-q\"]\n[slurm.rest]\nurl = \"unix:/s\"",
                "slurm.extra_args",
            ),
            (
                "backend = \"slurm-rest\"\n[slurm.rest]\nurl = \"unix:/s\"\ntimeout = 3",
                "slurm.rest.timeout",
            ),
        ];
        for (text, key) in cases {
            let e = Config::load(&cli_with(dir.path(), text)).unwrap_err();
            let shown = e.to_string();
            assert!(shown.contains(&format!("`{key}`")), "{text}: {shown}");
        }
    }

    const SSH: &str = "[slurm.ssh]\nhost = \"login01\"\nuser = \"u\"\nidentity_file = \"i\"\nknown_hosts = \"k\"\n";

    #[test]
    fn reverse_tunnel_is_checked_against_backend_ssh_and_targets() {
        let dir = tempfile::tempdir().unwrap();
        let pgw = "pushgateway = \"http://monitor:9091/pgw\"\n";
        let slurm = "backend = \"slurm\"\n";
        let cases = [
            // Needs the Slurm backend over SSH and a Pushgateway.
            (format!("{pgw}reverse_tunnel = 19091\n"), "reverse_tunnel"),
            (
                format!("{pgw}{slurm}reverse_tunnel = 19091\n"),
                "reverse_tunnel",
            ),
            (
                format!("{slurm}reverse_tunnel = 19091\n{SSH}"),
                "reverse_tunnel",
            ),
            (
                format!("{pgw}{slurm}reverse_tunnel = 0\n{SSH}"),
                "reverse_tunnel",
            ),
            (
                format!("{pgw}{slurm}reverse_tunnel = 70000\n{SSH}"),
                "reverse_tunnel",
            ),
            // The target must be plain http (the nodes get http://ADVERTISE:PORT).
            (
                format!(
                    "pushgateway = \"https://monitor:9091\"\n{slurm}reverse_tunnel = 19091\n{SSH}"
                ),
                "pushgateway",
            ),
            (
                format!("{pgw}{slurm}reverse_tunnel = 19091\nreverse_tunnel_bind = \"a b\"\n{SSH}"),
                "reverse_tunnel_bind",
            ),
            (
                format!(
                    "{pgw}{slurm}reverse_tunnel = 19091\nreverse_tunnel_advertise = \"h/x\"\n{SSH}"
                ),
                "reverse_tunnel_advertise",
            ),
            // remote_write needs its own port, and the port needs remote_write.
            (
                format!(
                    "{pgw}{slurm}remote_write = \"http://m:9090/api/v1/write\"\nreverse_tunnel = 19091\n{SSH}"
                ),
                "reverse_tunnel_remote_write_port",
            ),
            (
                format!(
                    "{pgw}{slurm}remote_write = \"http://m:9090/api/v1/write\"\nreverse_tunnel = 19091\nreverse_tunnel_remote_write_port = 19091\n{SSH}"
                ),
                "reverse_tunnel_remote_write_port",
            ),
            (
                format!(
                    "{pgw}{slurm}reverse_tunnel = 19091\nreverse_tunnel_remote_write_port = 19092\n{SSH}"
                ),
                "reverse_tunnel_remote_write_port",
            ),
            // Tunnel keys without the tunnel.
            (
                format!("{pgw}reverse_tunnel_advertise = \"x\"\n"),
                "reverse_tunnel_advertise",
            ),
            (
                format!(
                    "{pgw}{slurm}reverse_tunnel = 19091\nreverse_tunnel_linger_seconds = 4000\n{SSH}"
                ),
                "reverse_tunnel_linger_seconds",
            ),
            ("remote_write = \"ftp://x\"".to_string(), "remote_write"),
        ];
        for (text, key) in cases {
            let e = Config::load(&cli_with(dir.path(), &text)).unwrap_err();
            let shown = e.to_string();
            assert!(shown.contains(&format!("`{key}`")), "{text}: {shown}");
        }
    }

    #[test]
    fn reverse_tunnel_hands_jobs_the_login_node_address() {
        let dir = tempfile::tempdir().unwrap();
        let base = format!(
            "backend = \"slurm\"\npushgateway = \"http://monitor:9091/pgw/\"\nremote_write = \"http://[fd00::1]:9090/api/v1/write\"\n{SSH}"
        );
        // Without the tunnel jobs get the URLs as given.
        let c = Config::load(&cli_with(dir.path(), &base)).unwrap();
        assert!(c.reverse_tunnel.is_none());
        assert_eq!(c.job_pushgateway(), Some("http://monitor:9091/pgw"));
        assert_eq!(
            c.job_remote_write(),
            Some("http://[fd00::1]:9090/api/v1/write")
        );
        // Loopback by default: the login node's 127.0.0.1.
        let mut cli = cli_with(dir.path(), &base);
        cli.reverse_tunnel = Some(19091);
        cli.reverse_tunnel_remote_write_port = Some(19092);
        let c = Config::load(&cli).unwrap();
        let t = c.reverse_tunnel.as_ref().unwrap();
        assert_eq!(
            (t.bind.as_str(), t.advertise.as_str()),
            ("127.0.0.1", "127.0.0.1")
        );
        assert_eq!(t.linger, Duration::from_secs(60));
        assert_eq!(c.job_pushgateway(), Some("http://127.0.0.1:19091/pgw"));
        assert_eq!(
            c.job_remote_write(),
            Some("http://127.0.0.1:19092/api/v1/write")
        );
        assert_eq!(
            (
                t.forwards[1].target_host.as_str(),
                t.forwards[1].target_port
            ),
            ("fd00::1", 9090)
        );
        // A wildcard bind advertises the login node's name; an explicit
        // advertise wins (an IPv6 one is bracketed).
        cli.reverse_tunnel_bind = Some("0.0.0.0".into());
        let c = Config::load(&cli).unwrap();
        assert_eq!(c.job_pushgateway(), Some("http://login01:19091/pgw"));
        cli.reverse_tunnel_advertise = Some("fd00::2".into());
        let c = Config::load(&cli).unwrap();
        assert_eq!(c.job_pushgateway(), Some("http://[fd00::2]:19091/pgw"));
    }

    #[test]
    fn slurm_rest_settings_load() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("jwt");
        std::fs::write(&token, "x.y.z").unwrap();
        let text = format!(
            "backend = \"slurm-rest\"\n[slurm]\npartition = \"gpu\"\n[slurm.rest]\nurl = \"http://127.0.0.1:6820\"\nuser = \"svc\"\ntoken_file = \"{}\"\napi_version = \"v0.0.40\"\n[slurm.rest.ssh]\nhost = \"login\"\nuser = \"svc\"\nidentity_file = \"/k\"\nknown_hosts = \"/kh\"\n",
            token.display()
        );
        let c = Config::load(&cli_with(dir.path(), &text)).unwrap();
        assert_eq!(c.backend, BackendKind::SlurmRest);
        assert_eq!(c.poll_interval, Duration::from_millis(2000));
        let rest = c.slurm.rest.unwrap();
        assert_eq!(rest.api_version.as_deref(), Some("v0.0.40"));
        assert_eq!(rest.ssh.unwrap().port, 22);
        // A Unix socket without a token: rest_auth/local.
        let c = Config::load(&cli_with(
            dir.path(),
            "backend = \"slurm-rest\"\n[slurm.rest]\nurl = \"unix:/run/slurmrestd.socket\"\n",
        ))
        .unwrap();
        assert!(c.slurm.rest.unwrap().token_file.is_none());
    }

    #[test]
    fn flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let mut cli = cli_with(
            dir.path(),
            "listen = \"127.0.0.1:1\"\ncors_origin = [\"http://a:3000\"]\n",
        );
        cli.listen = Some("127.0.0.1:2".into());
        let c = Config::load(&cli).unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.cors_origins, vec!["http://a:3000".to_string()]);
        cli.cors_origin = vec!["https://b".into()];
        assert_eq!(
            Config::load(&cli).unwrap().cors_origins,
            vec!["https://b".to_string()]
        );
    }
}
