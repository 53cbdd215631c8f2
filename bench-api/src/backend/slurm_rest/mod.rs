//! The slurmrestd backend: a service is a batch job submitted over Slurm's
//! REST API, for sites that expose slurmrestd but allow no command execution.
//!
//! - start: `POST /slurm/vX/job/submit` with the same script and resources as
//!   the `slurm` backend's `sbatch` ([`super::slurm_job`]);
//! - state: `GET /slurm/vX/job/{id}`, mapped by the same function as `squeue`
//!   and `sacct` ([`super::slurm_job::job_state`]);
//! - cancel: `DELETE /slurm/vX/job/{id}`.
//!
//! The version is discovered from the server's OpenAPI document (or pinned);
//! what differs between versions is all in [`version`]. Authentication is a
//! JWT (`scontrol token`) from a file re-read when it changes, or
//! `rest_auth/local` on a Unix socket; the URL may go through an SSH local
//! forward to the login node's loopback (host key verified).
//!
//! Slurm forgets an ended job after `MinJobAge` (300 s by default); without
//! accounting (slurmdbd) a job the API asks for later is `Missing`, as with
//! the `slurm` backend without `sacct -c`.

pub mod client;
pub mod settings;
pub mod version;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

pub use client::{Auth, Endpoint, SlurmRestClient, SlurmRestError, TokenFile};
use version::{ApiVersion, ESLURM_ALREADY_DONE, ESLURM_INVALID_JOB_ID, JobRequest};

use super::slurm_job::{ExporterPlan, JobDefaults, JobResources, job_script, job_state};
use super::{Backend, BackendError, JobState, LaunchSpec, Launched};

/// Slurm jobs through slurmrestd.
pub struct SlurmRestBackend {
    client: SlurmRestClient,
    settings: JobDefaults,
    log_dir: PathBuf,
    exporter: Option<ExporterPlan>,
    environment: BTreeMap<String, String>,
    /// Keeps the SSH local forward open while the backend lives.
    _tunnel: Option<gpu_metrics::tunnel::LocalForward>,
}

impl std::fmt::Debug for SlurmRestBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlurmRestBackend")
            .field("client", &self.client)
            .field("log_dir", &self.log_dir)
            .finish_non_exhaustive()
    }
}

fn valid_job_id(r: &str) -> bool {
    !r.is_empty() && r.len() <= 20 && r.bytes().all(|b| b.is_ascii_digit())
}

impl SlurmRestBackend {
    /// A backend submitting through `client`, job output in `log_dir` (a path
    /// on the cluster), the job environment `environment`.
    pub fn new(
        client: SlurmRestClient,
        settings: JobDefaults,
        log_dir: PathBuf,
        exporter: Option<ExporterPlan>,
        environment: BTreeMap<String, String>,
        tunnel: Option<gpu_metrics::tunnel::LocalForward>,
    ) -> SlurmRestBackend {
        SlurmRestBackend {
            client,
            settings,
            log_dir,
            exporter,
            environment,
            _tunnel: tunnel,
        }
    }

    /// The script as submitted (`#!/bin/sh` and [`job_script`]: what
    /// `sbatch --wrap` makes of the `slurm` backend's).
    pub fn script(&self, spec: &LaunchSpec<'_>) -> String {
        format!("#!/bin/sh\n{}", job_script(spec, self.exporter.as_ref()))
    }

    /// The `POST job/submit` body for `spec` in version `v`.
    ///
    /// # Errors
    /// A memory or time limit that cannot be given as a number.
    pub fn submit_body(
        &self,
        v: ApiVersion,
        spec: &LaunchSpec<'_>,
    ) -> Result<serde_json::Value, SlurmRestError> {
        let resources = JobResources::of(spec, &self.settings, &self.log_dir);
        let memory_mib =
            resources
                .memory_mib()
                .transpose()
                .map_err(|value| SlurmRestError::Unconvertible {
                    field: "memory",
                    value,
                })?;
        let time_minutes = resources
            .time_limit_minutes()
            .transpose()
            .map_err(|value| SlurmRestError::Unconvertible {
                field: "time_limit",
                value,
            })?;
        let script = self.script(spec);
        let cwd = self.log_dir.to_string_lossy();
        Ok(v.submit_body(&JobRequest {
            script: &script,
            resources: &resources,
            cwd: &cwd,
            environment: &self.environment,
            memory_mib,
            time_minutes,
        }))
    }

    fn state(&self, v: ApiVersion, id: &str) -> Result<JobState, SlurmRestError> {
        let path = v.job_path(id);
        let answer = match self.client.call(v, "GET", &path, None) {
            Ok(a) => a,
            Err(e) if client::is_invalid_job(&e) => return Ok(JobState::Missing),
            Err(e) => return Err(e),
        };
        let job = v.job(&answer).map_err(|reason| SlurmRestError::BadAnswer {
            url: format!("{}{path}", self.client.endpoint()),
            reason,
        })?;
        Ok(match job {
            None => JobState::Missing,
            Some(j) => match job_state(&j.state, j.exit, j.host.clone()) {
                Some(s) => s,
                None => {
                    log::warn!(
                        "slurm-rest: job {id}: unknown state `{}` ({:?})",
                        j.state,
                        j.reason
                    );
                    JobState::Missing
                }
            },
        })
    }
}

impl Backend for SlurmRestBackend {
    fn kind(&self) -> &'static str {
        "slurm-rest"
    }

    fn launch(&self, spec: &LaunchSpec<'_>) -> Result<Launched, BackendError> {
        let v = self.client.version()?;
        let body = self.submit_body(v, spec)?;
        let path = v.submit_path();
        let answer = self.client.call(v, "POST", &path, Some(&body))?;
        let id = v
            .submitted_job_id(&answer)
            .map_err(|reason| SlurmRestError::BadAnswer {
                url: format!("{}{path}", self.client.endpoint()),
                reason,
            })?;
        log::info!(
            "slurm-rest: submitted service {} ({}) as job {id} via {} ({}, user {})",
            spec.service_id,
            spec.recipe.name,
            self.client.endpoint(),
            v.as_str(),
            self.client.user()
        );
        Ok(Launched {
            backend_ref: id.to_string(),
            host: None,
        })
    }

    fn states(&self, jobs: &[(&str, &str)]) -> HashMap<String, Result<JobState, BackendError>> {
        let mut out = HashMap::new();
        let v = match self.client.version() {
            Ok(v) => Some(v),
            Err(e) => {
                let e = std::sync::Arc::new(e);
                for (sid, _) in jobs {
                    out.insert(
                        (*sid).to_string(),
                        Err(BackendError::Rest(std::sync::Arc::clone(&e))),
                    );
                }
                None
            }
        };
        let Some(v) = v else {
            return out;
        };
        for (sid, r) in jobs {
            let state = if valid_job_id(r) {
                self.state(v, r).map_err(BackendError::from)
            } else {
                Err(BackendError::BadRef((*r).to_string()))
            };
            out.insert((*sid).to_string(), state);
        }
        out
    }

    fn cancel(&self, service_id: &str, backend_ref: &str) -> Result<(), BackendError> {
        if !valid_job_id(backend_ref) {
            return Err(BackendError::BadRef(backend_ref.to_string()));
        }
        let v = self.client.version()?;
        match self
            .client
            .call(v, "DELETE", &v.job_path(backend_ref), None)
        {
            Ok(_) => {}
            Err(SlurmRestError::Slurm { number, .. })
                if number == ESLURM_INVALID_JOB_ID || number == ESLURM_ALREADY_DONE => {}
            Err(e) => return Err(e.into()),
        }
        log::info!("slurm-rest: cancelled job {backend_ref} (service {service_id})");
        Ok(())
    }

    fn job_file(&self, key: &str, name: &str) -> PathBuf {
        self.log_dir.join(format!("{key}.{name}"))
    }

    fn stderr_file(&self, key: &str, backend_ref: &str) -> PathBuf {
        crate::backend::slurm_job::job_log_path(&self.log_dir, key, backend_ref, "err")
    }
}

#[cfg(test)]
mod tests;
