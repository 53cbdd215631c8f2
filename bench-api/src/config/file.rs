//! The TOML file: [`FileConfig`], the same keys as the flags plus tuning, and
//! its parsing (an unknown key or a wrong type is an error naming the key).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;
use crate::backend::slurm_settings::SlurmSettings;

/// The TOML file: the same keys as the flags, plus tuning.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) listen: Option<String>,
    pub(super) db: Option<PathBuf>,
    pub(super) recipes: Option<PathBuf>,
    pub(super) backend: Option<String>,
    pub(super) cors_origin: Option<Vec<String>>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) pushgateway: Option<String>,
    pub(super) workers: Option<usize>,
    pub(super) max_connections: Option<usize>,
    pub(super) idle_timeout_ms: Option<u64>,
    pub(super) header_timeout_ms: Option<u64>,
    pub(super) metrics_retention_seconds: Option<u64>,
    pub(super) log_dir: Option<PathBuf>,
    pub(super) poll_interval_ms: Option<u64>,
    pub(super) kill_grace_seconds: Option<u64>,
    pub(super) health_timeout_ms: Option<u64>,
    pub(super) exporter_binary: Option<PathBuf>,
    pub(super) exporter_interval: Option<String>,
    pub(super) exporter_source: Option<String>,
    pub(super) loadgen_binary: Option<PathBuf>,
    pub(super) prometheus: Option<String>,
    pub(super) slurm: Option<SlurmSettings>,
    pub(super) remote_write: Option<String>,
    pub(super) reverse_tunnel: Option<u16>,
    pub(super) reverse_tunnel_remote_write_port: Option<u16>,
    pub(super) reverse_tunnel_bind: Option<String>,
    pub(super) reverse_tunnel_advertise: Option<String>,
    pub(super) reverse_tunnel_linger_seconds: Option<u64>,
}

/// Parses the TOML file `text` (read from `path`, for the errors), naming
/// the key at fault (`slurm.ssh.port`, or `.` for the file as a whole).
pub(super) fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
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
