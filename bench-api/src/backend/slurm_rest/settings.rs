//! `[slurm.rest]`: the `slurm-rest` backend's slurmrestd, and its checks.

use std::path::PathBuf;

use serde::Deserialize;

use super::client::host_port;
use super::version::ApiVersion;
use crate::backend::settings::SettingsError;
use crate::backend::ssh_settings::SshSettings;

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

impl SlurmRestSettings {
    /// Checks the table: a `unix:` socket path or an `http://host:port` URL
    /// (the SSH forward only with the latter), a token with its user (and
    /// one for HTTP), the pinned version, the timeout (1..=600 s) and the
    /// environment's names.
    ///
    /// # Errors
    /// [`SettingsError`] naming the `slurm.rest.*` key at fault.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let unix = self.url.starts_with("unix:");
        if unix {
            if self
                .url
                .trim_start_matches("unix:")
                .trim_start_matches("//")
                .is_empty()
            {
                return Err(SettingsError::new(
                    "slurm.rest.url",
                    "`unix:` needs a socket path",
                ));
            }
            if self.ssh.is_some() {
                return Err(SettingsError::new(
                    "slurm.rest.ssh",
                    "forwards TCP; it cannot be used with a unix: URL",
                ));
            }
        } else {
            host_port(&self.url).map_err(|m| {
                SettingsError::new("slurm.rest.url", format!("`{}`: {m}", self.url))
            })?;
        }
        match (&self.token_file, &self.user) {
            (Some(_), None) => {
                return Err(SettingsError::new(
                    "slurm.rest.user",
                    "required with token_file (X-SLURM-USER-NAME, the token's user)",
                ));
            }
            (None, _) if !unix => {
                return Err(SettingsError::new(
                    "slurm.rest.token_file",
                    "required for an http:// URL (rest_auth/jwt); rest_auth/local needs a unix: URL",
                ));
            }
            _ => {}
        }
        if let Some(u) = &self.user
            && (u.is_empty() || u.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(SettingsError::new(
                "slurm.rest.user",
                format!("`{u}` is not a user name"),
            ));
        }
        if let Some(path) = &self.token_file {
            std::fs::metadata(path).map_err(|e| {
                SettingsError::new(
                    "slurm.rest.token_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
        }
        if let Some(v) = &self.api_version
            && ApiVersion::parse(v).is_none()
        {
            return Err(SettingsError::new(
                "slurm.rest.api_version",
                format!("`{v}` is not one of: v0.0.38, v0.0.40, v0.0.41"),
            ));
        }
        if let Some(t) = self.timeout_seconds
            && !(1..=600).contains(&t)
        {
            return Err(SettingsError::new(
                "slurm.rest.timeout_seconds",
                format!("{t} is not in 1..=600"),
            ));
        }
        if let Some(env) = &self.environment {
            for k in env.keys() {
                if k.is_empty() || k.contains('=') || k.chars().any(|c| c.is_control()) {
                    return Err(SettingsError::new(
                        "slurm.rest.environment",
                        format!("`{k}` is not a variable name"),
                    ));
                }
            }
        }
        Ok(())
    }
}
