//! `[slurm.ssh]` (and `[slurm.rest.ssh]`): how the API logs in to the login
//! node, shared by the Slurm command runner, the reverse tunnel and the
//! slurm-rest forward. Depends on no other backend module.

use std::path::PathBuf;
use std::time::Duration;

use gpu_metrics::ssh::{SshConfig, SshError};
use serde::Deserialize;

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
