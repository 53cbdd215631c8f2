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
//! exporter_interval = "1s"             # the exporters' --interval (10ms at least)
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
//!
//! The module is split by concern:
//!
//! - this file: [`Config`], the resolved configuration, and [`Config::load`],
//!   which puts the parts together (defaults, flags over the file, the
//!   checks of the keys that belong to no backend);
//! - `cli.rs`: the command line ([`Cli`]);
//! - `file.rs`: the TOML file's keys and its parsing;
//! - `tunnel.rs`: the reverse-tunnel keys and their checks against the rest
//!   ([`ReverseTunnelConfig`]).
//!
//! Each backend owns its settings and their checks ([`SlurmSettings`],
//! [`SshSettings`] in [`crate::backend::slurm_settings`], [`SlurmRestSettings`]
//! in [`crate::backend::slurm_rest::settings`], [`ExporterSettings`] in
//! [`crate::backend::exporter`]); they are re-exported here, and their errors
//! become [`ConfigError::Invalid`]. The dependency points one way: config →
//! backend.

mod cli;
mod file;
#[cfg(test)]
mod tests;
mod tunnel;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::cli::Cli;
use self::file::{FileConfig, parse_file};
pub use self::tunnel::{ReverseTunnelConfig, TunnelForward};
use self::tunnel::{TunnelKeys, reverse_tunnel};
use crate::auth::Token;
pub use crate::backend::exporter::ExporterSettings;
use crate::backend::settings::SettingsError;
pub use crate::backend::slurm_rest::settings::SlurmRestSettings;
pub use crate::backend::slurm_settings::{SlurmSettings, SshSettings};

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

/// A backend's settings check names the key as a config error does.
impl From<SettingsError> for ConfigError {
    fn from(e: SettingsError) -> Self {
        ConfigError::Invalid {
            key: e.key,
            message: e.message,
        }
    }
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
        let exporter = ExporterSettings {
            binary: file
                .exporter_binary
                .unwrap_or_else(|| PathBuf::from("aif-node-exporter")),
            interval: file.exporter_interval.unwrap_or_else(|| "1s".into()),
            source: file.exporter_source.unwrap_or_else(|| "auto".into()),
        };
        exporter.validate()?;
        let loadgen_binary = file.loadgen_binary.unwrap_or_else(default_loadgen);
        let prometheus = match cli.prometheus.clone().or(file.prometheus) {
            Some(url) => Some(
                gpu_metrics::sink::normalize_base_url(&url)
                    .map_err(|e| ConfigError::invalid("prometheus", e.to_string()))?,
            ),
            None => None,
        };
        let slurm = file.slurm.unwrap_or_default();
        slurm.validate()?;
        if backend == BackendKind::SlurmRest {
            slurm.validate_for_rest()?;
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
            exporter,
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
