//! Raw command-line values. Every flag is optional here so that a TOML file can
//! supply it; [`crate::config`] merges (flags win) and validates.

use std::path::PathBuf;

use clap::Parser;
use gpu_metrics::ssh::SshArgs;

/// The AI-factory GPU node agent: samples GPUs, keeps every sample on local disk
/// and pushes it to a Prometheus Pushgateway, directly or through an SSH tunnel.
#[derive(Debug, Parser, Default)]
#[command(
    name = "aif-node-exporter",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("AIF_GIT_COMMIT"), ")"),
    about,
    long_about = None
)]
pub struct Cli {
    /// TOML configuration file; every flag has a key of the same name with `_`
    /// for `-`. Flags win over the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where readings come from: `nvml` (real GPUs), `simulated`, or `auto`
    /// (NVML; fails with a clear error when NVML is missing). [default: auto]
    #[arg(long, value_name = "auto|nvml|simulated")]
    pub source: Option<String>,

    /// Number of simulated GPUs (simulated source only). [default: 8]
    #[arg(long, value_name = "N")]
    pub gpus: Option<usize>,

    /// Seed of the simulated GPUs' curves. [default: 1]
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Path of the NVML library. [default: libnvidia-ml.so.1]
    #[arg(long, value_name = "PATH")]
    pub nvml_lib: Option<PathBuf>,

    /// Also export per-process GPU memory (one NVML call per GPU per tick);
    /// `--processes=false` turns off a `processes = true` from the file.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub processes: Option<bool>,

    /// Metric names: `native` (aif_gpu_*) or `dcgm` (dcgm-exporter's). [default: native]
    #[arg(long, value_name = "native|dcgm")]
    pub metric_names: Option<String>,

    /// dcgm mode's host label: `hostname` (current dcgm-exporter) or
    /// `Hostname` (dashboards written before its May 2026 rename). [default: hostname]
    #[arg(long, value_name = "hostname|Hostname")]
    pub dcgm_host_label: Option<String>,

    /// Attribution label added to every series (repeatable), e.g. `run_id=r42`.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,

    /// Sample once, print the exposition text to stdout, exit 0 (`--once=false`
    /// overrides the file).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub once: Option<bool>,

    /// Sampling interval, e.g. `100ms`, `1s`. [default: 1s]
    #[arg(long, value_name = "DURATION")]
    pub interval: Option<String>,

    /// Write-ahead buffer file. [default: ./aif-node-exporter.db]
    #[arg(long, value_name = "PATH")]
    pub buffer: Option<PathBuf>,

    /// Cap on the buffer's size on disk, e.g. `256MiB`. [default: 256MiB]
    #[arg(long, value_name = "SIZE")]
    pub buffer_max_bytes: Option<String>,

    /// `full` (fsync every commit: survives power loss) or `normal` (survives a
    /// crash of the process). [default: normal]
    #[arg(long, value_name = "full|normal")]
    pub durability: Option<String>,

    /// Pushgateway base URL, e.g. `http://monitor:9091`.
    #[arg(long, value_name = "URL")]
    pub pushgateway: Option<String>,

    /// Remote-write receiver (history, oldest first, original timestamps), the
    /// full endpoint, e.g. `http://prometheus:9090/api/v1/write` (Prometheus
    /// with `--web.enable-remote-write-receiver`) or
    /// `http://victoria:8428/api/v1/write`.
    #[arg(long, value_name = "URL")]
    pub remote_write: Option<String>,

    /// Basic-auth user for the remote-write receiver.
    #[arg(long, value_name = "USER")]
    pub remote_write_user: Option<String>,

    /// File holding the remote-write basic-auth password (or set
    /// AIF_REMOTE_WRITE_PASSWORD).
    #[arg(long, value_name = "PATH")]
    pub remote_write_password_file: Option<PathBuf>,

    /// File holding a bearer token for the remote-write receiver.
    #[arg(long, value_name = "PATH")]
    pub remote_write_bearer_token_file: Option<PathBuf>,

    /// Most samples in one remote-write request. [default: 2000]
    #[arg(long, value_name = "N")]
    pub remote_write_max_samples: Option<usize>,

    /// `job` label: the Pushgateway grouping key and every remote-written
    /// series. [default: aif_gpu]
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,

    /// `instance` label: the Pushgateway grouping key and every remote-written
    /// series. [default: the host name]
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,

    /// Basic-auth user for the Pushgateway.
    #[arg(long, value_name = "USER")]
    pub pushgateway_user: Option<String>,

    /// File holding the basic-auth password (or set AIF_PUSHGATEWAY_PASSWORD).
    #[arg(long, value_name = "PATH")]
    pub pushgateway_password_file: Option<PathBuf>,

    /// First retry delay ceiling after a failed push or remote write
    /// (exponential backoff with full jitter). [default: 500ms]
    #[arg(long, value_name = "DURATION")]
    pub push_retry_initial: Option<String>,

    /// Largest retry delay ceiling. [default: 30s]
    #[arg(long, value_name = "DURATION")]
    pub push_retry_max: Option<String>,

    /// Overall timeout of one push or remote-write request (connect timeout is
    /// the smaller of this and 5s). [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub push_timeout: Option<String>,

    /// Delete this node's group from the Pushgateway on clean shutdown
    /// (`--delete-on-exit=false` overrides the file).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub delete_on_exit: Option<bool>,

    /// Also serve `/metrics` for pull scraping on this address, e.g. `127.0.0.1:9400`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// The SSH gateway (`--ssh-*`): pushes and remote writes travel through
    /// tunnels opened to it.
    #[command(flatten)]
    pub ssh: SshArgs,
}
