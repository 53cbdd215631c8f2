//! The Slurm backends' settings: `[slurm]` (with `[slurm.ssh]` of
//! [`super::ssh_settings`]: the `slurm` backend's commands, locally or on a
//! login node), with their checks. The
//! `slurm-rest` backend's `[slurm.rest]` is [`super::slurm_rest::settings`].

use std::path::PathBuf;

use serde::Deserialize;

use super::settings::SettingsError;
use super::slurm_job::JobDefaults;
use super::slurm_rest::settings::SlurmRestSettings;
pub use super::ssh_settings::SshSettings;

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

impl SlurmSettings {
    /// What every job asks for besides the recipe's resources.
    pub fn job_defaults(&self) -> JobDefaults {
        JobDefaults {
            partition: self.partition.clone(),
            account: self.account.clone(),
        }
    }

    /// Checks what every backend reads of `[slurm]`: the command timeout is
    /// in 1..=600 seconds.
    ///
    /// # Errors
    /// [`SettingsError`] naming `slurm.command_timeout_seconds`.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(t) = self.command_timeout_seconds
            && !(1..=600).contains(&t)
        {
            return Err(SettingsError::new(
                "slurm.command_timeout_seconds",
                format!("{t} is not in 1..=600"),
            ));
        }
        Ok(())
    }

    /// The `slurm-rest` backend's checks: it needs `[slurm.rest]` (checked by
    /// [`SlurmRestSettings::validate`]), and takes none of the settings only
    /// commands can honour (`extra_args`, `env`, `[slurm.ssh]`).
    ///
    /// # Errors
    /// [`SettingsError`] naming the key at fault.
    pub fn validate_for_rest(&self) -> Result<(), SettingsError> {
        let Some(rest) = &self.rest else {
            return Err(SettingsError::new(
                "slurm.rest",
                "backend slurm-rest needs [slurm.rest] with `url` (and `user`, `token_file`)",
            ));
        };
        if !self.extra_args.is_empty() {
            return Err(SettingsError::new(
                "slurm.extra_args",
                "sbatch arguments; slurmrestd takes none (use partition/account, or backend slurm)",
            ));
        }
        if !self.env.is_empty() {
            return Err(SettingsError::new(
                "slurm.env",
                "the environment of Slurm commands; slurm-rest runs none (the jobs' is slurm.rest.environment)",
            ));
        }
        if self.ssh.is_some() {
            return Err(SettingsError::new(
                "slurm.ssh",
                "runs Slurm commands over SSH; to reach slurmrestd through a login node use [slurm.rest.ssh]",
            ));
        }
        rest.validate()
    }
}
