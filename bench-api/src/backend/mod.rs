//! Where services run: one [`Backend`] trait, three implementations
//! ([`local`], [`slurm`]: commands here or over SSH, [`slurm_rest`]:
//! slurmrestd).
//!
//! - [`local::LocalBackend`]: child processes of the API, each in its own
//!   process group, logs to files, exit state recorded on disk so it survives an
//!   API restart.
//! - [`slurm::SlurmBackend`]: Slurm jobs (`sbatch`, `squeue`, `sacct -c`,
//!   `scancel`), through a [`runner::CommandRunner`] that runs them here or on a
//!   login node over SSH.
//! - [`slurm_rest::SlurmRestBackend`]: the same Slurm jobs through slurmrestd
//!   (JWT or `rest_auth/local`), maybe over an SSH local forward.
//!
//! Both Slurm backends share the script, the resources and the state mapping
//! ([`slurm_job`]).
//!
//! The API's monitor asks for [`JobState`]s and turns them into statuses; health
//! checks and timeouts are the monitor's, not the backend's.

pub mod exporter;
pub mod local;
pub mod runner;
pub mod settings;
pub mod slurm;
pub mod slurm_job;
pub mod slurm_rest;
pub mod slurm_settings;
pub mod ssh_settings;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::recipes::Recipe;

/// Why a backend operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A process could not be spawned or a file written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A command (sbatch, squeue, …) failed.
    #[error(transparent)]
    Command(#[from] runner::RunnerError),
    /// A command answered something that could not be understood.
    #[error("unexpected output of {command}: {output}")]
    BadOutput {
        /// The command.
        command: String,
        /// What it printed.
        output: String,
    },
    /// The backend reference stored for a service is not one this backend made.
    #[error("invalid backend reference `{0}`")]
    BadRef(String),
    /// A slurmrestd request failed (shared: one failure may answer for
    /// several jobs).
    #[error(transparent)]
    Rest(std::sync::Arc<slurm_rest::SlurmRestError>),
}

impl From<slurm_rest::SlurmRestError> for BackendError {
    fn from(e: slurm_rest::SlurmRestError) -> Self {
        BackendError::Rest(std::sync::Arc::new(e))
    }
}

impl BackendError {
    /// True when the backend cannot tell a job's state until someone acts
    /// (renews a token): the monitor shows the service `unknown` with this
    /// error rather than keeping its last status.
    pub fn state_unknowable(&self) -> bool {
        matches!(self, BackendError::Rest(e) if e.is_credential_error())
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct LaunchSpec<'a> {
    /// The service id (job name, log file names, exporter label).
    pub service_id: &'a str,
    /// The recipe (resources, health path).
    pub recipe: &'a Recipe,
    /// The resolved command line.
    pub argv: &'a [String],
    /// The endpoint's port.
    pub port: Option<u16>,
    /// Copies of `argv` to run, one per node, started together (a benchmark
    /// run's `load_nodes`; 1 for services). Above 1 the Slurm job is one
    /// step of this many tasks, each given `--start-at` (ms since the epoch)
    /// a few seconds ahead; the local backend runs only 1.
    pub tasks: u32,
    /// The URLs handed to the job, with what each is for (`"Pushgateway"`,
    /// `"the endpoint URL of the service"`): on Slurm every node of the job checks
    /// with its own resolver that their hosts resolve before anything
    /// starts, and the job fails naming the host otherwise.
    pub urls: &'a [(&'a str, String)],
}

/// Where a service was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    /// Process-group id or Slurm job id.
    pub backend_ref: String,
    /// Host, when already known.
    pub host: Option<String>,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signalled(i32),
    /// Cancelled (`scancel`, or a cancel of ours).
    Cancelled,
    /// Failed in the scheduler (timeout, node failure, out of memory, …).
    SchedulerFailure(String),
}

/// What the backend knows of a job now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for resources.
    Queued,
    /// Its process runs (not necessarily healthy yet), on `host`.
    Active {
        /// Host, when known.
        host: Option<String>,
    },
    /// Over.
    Ended(Ending),
    /// The backend has no trace of it.
    Missing,
}

/// Whether a backend can run a recipe's program, as far as it can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runnable {
    /// Its program was found where the service would run.
    Yes,
    /// Its program is missing: starting it is refused (409).
    No,
    /// Not checked from here (Slurm: the program is looked up on the
    /// compute node), or the program is a parameter.
    Unknown,
}

impl Runnable {
    /// Every value, as the OpenAPI `enum` lists them.
    pub const ALL: [Runnable; 3] = [Runnable::Yes, Runnable::No, Runnable::Unknown];

    /// The name used in JSON (`yes`, `no`, `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            Runnable::Yes => "yes",
            Runnable::No => "no",
            Runnable::Unknown => "unknown",
        }
    }
}

/// [`Runnable`] with the reason, always given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runnability {
    /// The answer.
    pub state: Runnable,
    /// Why (the program's path, what is missing, why it was not checked).
    pub reason: String,
}

impl Runnability {
    /// `yes`, because `reason`.
    pub fn yes(reason: impl Into<String>) -> Runnability {
        Runnability {
            state: Runnable::Yes,
            reason: reason.into(),
        }
    }

    /// `no`, because `reason`.
    pub fn no(reason: impl Into<String>) -> Runnability {
        Runnability {
            state: Runnable::No,
            reason: reason.into(),
        }
    }

    /// `unknown`, because `reason`.
    pub fn unknown(reason: impl Into<String>) -> Runnability {
        Runnability {
            state: Runnable::Unknown,
            reason: reason.into(),
        }
    }
}

/// The program a recipe runs: its argv's first element, or `Err(parameter)`
/// when that is a `{parameter}` (known only once a client gives it).
pub fn recipe_program(recipe: &Recipe) -> Result<&str, &str> {
    let first = recipe.argv.first().map_or("", String::as_str);
    match first.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        Some(param) => Err(param),
        None => Ok(first),
    }
}

/// A place services run.
pub trait Backend: Send + Sync {
    /// `local`, `slurm` or `slurm-rest`.
    fn kind(&self) -> &'static str;

    /// Whether `recipe`'s program can run here (`GET /api/v1/recipes`; a
    /// `no` refuses `POST /api/v1/services` with 409). The default is
    /// `unknown`: a backend that starts jobs elsewhere cannot see their
    /// `PATH` and does not guess.
    fn runnable(&self, recipe: &Recipe) -> Runnability {
        match recipe_program(recipe) {
            Ok(program) => Runnability::unknown(format!(
                "not checked: the {} backend's jobs look `{program}` up where they run, not here",
                self.kind()
            )),
            Err(param) => Runnability::unknown(format!(
                "not checked: the program is the parameter `{param}`"
            )),
        }
    }

    /// Starts a service.
    ///
    /// # Errors
    /// When it could not be started.
    fn launch(&self, spec: &LaunchSpec<'_>) -> Result<Launched, BackendError>;

    /// The state of several jobs at once (one `squeue` for all): `jobs` are
    /// `(service_id, backend_ref)` pairs; the answer is keyed by service id.
    fn states(&self, jobs: &[(&str, &str)]) -> HashMap<String, Result<JobState, BackendError>>;

    /// Stops a job (idempotent: an ended job is fine).
    ///
    /// # Errors
    /// When the stop request itself failed.
    fn cancel(&self, service_id: &str, backend_ref: &str) -> Result<(), BackendError>;

    /// The host to health-check a service on (`127.0.0.1` for local).
    fn health_host(&self, host: Option<&str>) -> String {
        match host {
            None | Some("localhost") => "127.0.0.1".to_string(),
            Some(h) => h.to_string(),
        }
    }

    /// Whether `GET path` on a service's `host:port` answers 2xx, asked
    /// from where the backend reaches the nodes (the login node, over SSH);
    /// `None` when the API should ask directly.
    fn probe_http(&self, host: &str, port: u16, path: &str, timeout: Duration) -> Option<bool> {
        let _ = (host, port, path, timeout);
        None
    }

    /// Periodic chores (reaping children); called by the monitor every tick.
    fn housekeeping(&self) {}

    /// Where a job launched under `key` (a service or run id) writes its file
    /// `name`, as the job sees the path; read back with [`Backend::read_job_file`].
    fn job_file(&self, key: &str, name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("{key}.{name}"))
    }

    /// Where the job of `key` (a service or run id) started as
    /// `backend_ref` writes its stderr.
    fn stderr_file(&self, key: &str, backend_ref: &str) -> PathBuf {
        let _ = backend_ref;
        self.job_file(key, "stderr.log")
    }

    /// Reads a file a job wrote; `Ok(None)` while it does not exist.
    ///
    /// # Errors
    /// When it exists but cannot be read (or the command reading it failed).
    fn read_job_file(&self, path: &Path) -> Result<Option<String>, BackendError> {
        read_local_file(path)
    }
}

/// Reads `path` here; `Ok(None)` when it does not exist.
///
/// # Errors
/// [`BackendError::Io`] for any other failure.
pub fn read_local_file(path: &Path) -> Result<Option<String>, BackendError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(BackendError::Io {
            what: format!("read {}", path.display()),
            source,
        }),
    }
}
