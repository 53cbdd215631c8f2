//! The command line: [`Cli`], each flag also a TOML key of the file (`file.rs`).

use std::path::PathBuf;

use clap::Parser;

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
