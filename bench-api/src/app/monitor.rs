//! The monitor: one [`App::tick`] per poll interval asks the backend for
//! every open service, runs health checks, fails services that stay
//! `starting` too long and ends runs whose time is up;
//! [`App::reconcile_on_start`] squares the state with the backend after a
//! start. Service transitions (and the runs they end) are recorded here.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::App;
use crate::backend::{Ending, JobState};
use crate::model::{Service, Status};
use crate::state::Transition;

impl App {
    /// Reconciles with the backend after a start: launches that were cut off
    /// are failed, runs that were cut off are failed, and every other open
    /// service is asked for at the backend (a job that ended meanwhile is
    /// shown ended with its exit state).
    pub fn reconcile_on_start(&self) {
        match self.store.list_services(Some(&[
            Status::Pending,
            Status::Starting,
            Status::Running,
            Status::Unknown,
        ])) {
            Ok(services) => {
                for s in services.iter().filter(|s| s.backend_ref.is_none()) {
                    self.transition(
                        &s.id,
                        Status::Failed,
                        Some("launch interrupted: the API stopped while starting it"),
                        None,
                    );
                }
                log::info!(
                    "reconcile: {} open services to check with the {} backend",
                    services.len(),
                    self.backend.kind()
                );
            }
            Err(e) => log::error!("reconcile: cannot list services: {e}"),
        }
        match self
            .store
            .list_runs(None, Some(&[Status::Pending, Status::Running]))
        {
            Ok(runs) => {
                for r in runs {
                    if self.store.run_job(&r.id).ok().flatten().is_some() {
                        // Its generator may still run (or have written its
                        // result): the monitor collects it.
                        continue;
                    }
                    log::warn!(
                        "reconcile: run {} was cut off by an API restart; marking it failed",
                        r.id
                    );
                    if let Err(e) = self.store.transition_run(
                        &r.id,
                        Status::Failed,
                        Some("interrupted: the API restarted during the run"),
                    ) {
                        log::error!("reconcile: run {}: {e}", r.id);
                    }
                }
            }
            Err(e) => log::error!("reconcile: cannot list runs: {e}"),
        }
        self.tick();
    }

    fn transition(&self, id: &str, to: Status, detail: Option<&str>, exit_code: Option<i32>) {
        match self.store.transition_service(id, to, detail, exit_code) {
            Ok(Transition::Changed(s)) => log::info!(
                "service {id}: {}{}",
                s.status.as_str(),
                detail.map(|d| format!(" ({d})")).unwrap_or_default()
            ),
            Ok(_) => {}
            Err(e) => log::error!("service {id}: cannot record {}: {e}", to.as_str()),
        }
        if to != Status::Starting {
            self.starting_since
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
        }
        if to.is_terminal() || to == Status::Unknown {
            let status = if to == Status::Cancelled {
                Status::Cancelled
            } else {
                Status::Failed
            };
            let why = format!(
                "service {id} {}{}",
                to.as_str(),
                detail.map(|d| format!(": {d}")).unwrap_or_default()
            );
            self.cancel_runs_of(id, status, &why);
        }
    }

    fn healthy(&self, svc: &Service, path: &str) -> bool {
        let Some(port) = svc.port else { return true };
        let host = self.backend.health_host(svc.host.as_deref());
        if let Some(ok) = self
            .backend
            .probe_http(&host, port, path, self.config.health_timeout)
        {
            return ok;
        }
        let url = format!("http://{host}:{port}{path}");
        match self.health_agent.get(&url).call() {
            Ok(resp) => resp.status().is_success(),
            Err(_) => false,
        }
    }

    /// One pass: ask the backend for every open service, run health checks,
    /// fail services that stay `starting` too long, end runs whose time is up.
    pub fn tick(&self) {
        self.backend.housekeeping();
        let open = match self.store.list_services(Some(&[
            Status::Pending,
            Status::Starting,
            Status::Running,
            Status::Unknown,
        ])) {
            Ok(s) => s,
            Err(e) => {
                log::error!("monitor: cannot list services: {e}");
                return;
            }
        };
        let jobs: Vec<(&str, &str)> = open
            .iter()
            .filter_map(|s| s.backend_ref.as_deref().map(|r| (s.id.as_str(), r)))
            .collect();
        let states = if jobs.is_empty() {
            HashMap::new()
        } else {
            self.backend.states(&jobs)
        };
        for svc in &open {
            let Some(state) = states.get(&svc.id) else {
                continue;
            };
            match state {
                Err(e) if e.state_unknowable() => {
                    log::warn!("monitor: service {}: cannot get state: {e}", svc.id);
                    self.unknown(svc, &format!("cannot get the state: {e}"));
                }
                Err(e) => log::warn!("monitor: service {}: cannot get state: {e}", svc.id),
                Ok(JobState::Queued) => {
                    if svc.status != Status::Pending {
                        self.transition(&svc.id, Status::Pending, Some("queued"), None);
                    }
                }
                Ok(JobState::Active { host }) => self.on_active(svc, host.as_deref()),
                Ok(JobState::Ended(ending)) => {
                    let (status, detail, code) = match ending {
                        Ending::Exited(0) => {
                            (Status::Completed, "exited with code 0".to_string(), Some(0))
                        }
                        Ending::Exited(c) => {
                            let tail = svc
                                .backend_ref
                                .as_deref()
                                .map(|r| self.stderr_tail(&svc.id, r))
                                .unwrap_or_default();
                            (
                                Status::Failed,
                                format!("exited with code {c}{tail}"),
                                Some(*c),
                            )
                        }
                        Ending::Signalled(s) => (
                            Status::Failed,
                            format!("killed by signal {s}"),
                            Some(128 + s),
                        ),
                        Ending::Cancelled => (
                            Status::Cancelled,
                            "cancelled outside the API".to_string(),
                            None,
                        ),
                        Ending::SchedulerFailure(why) => (Status::Failed, why.clone(), None),
                    };
                    self.transition(&svc.id, status, Some(&detail), code);
                }
                Ok(JobState::Missing) => self.unknown(
                    svc,
                    "the backend has no trace of the job and no exit state was recorded",
                ),
            }
        }
        let runs_open = self.monitor_runs();
        if let Some(t) = &self.reverse_tunnel {
            t.update(!open.is_empty() || runs_open);
        }
    }

    /// Makes `svc` `unknown` because of `detail`; one that already is gets
    /// the new reason (the last poll's, not the first one's: a reason that
    /// stopped holding is not shown any longer).
    fn unknown(&self, svc: &Service, detail: &str) {
        if svc.status != Status::Unknown {
            self.transition(&svc.id, Status::Unknown, Some(detail), None);
            return;
        }
        match self
            .store
            .set_service_detail(&svc.id, Status::Unknown, detail)
        {
            Ok(true) => log::info!("service {}: unknown ({detail})", svc.id),
            Ok(false) => {}
            Err(e) => log::error!("service {}: cannot record its detail: {e}", svc.id),
        }
    }

    fn on_active(&self, svc: &Service, host: Option<&str>) {
        if let Some(h) = host
            && svc.host.as_deref() != Some(h)
            && let Err(e) = self.store.set_service_location(&svc.id, None, Some(h))
        {
            log::error!("service {}: cannot record host: {e}", svc.id);
        }
        let recipe = self.recipes.get(&svc.recipe);
        let health_path = recipe.and_then(|r| r.health_path.clone());
        match svc.status {
            Status::Pending | Status::Unknown => {
                self.transition(
                    &svc.id,
                    Status::Starting,
                    Some("process running; waiting for health check"),
                    None,
                );
                self.starting_since
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(svc.id.clone(), Instant::now());
                self.check_starting(
                    svc,
                    host,
                    health_path.as_deref(),
                    recipe.map_or(600, |r| r.startup_timeout_seconds),
                );
            }
            Status::Starting => {
                self.check_starting(
                    svc,
                    host,
                    health_path.as_deref(),
                    recipe.map_or(600, |r| r.startup_timeout_seconds),
                );
            }
            _ => {}
        }
    }

    fn check_starting(
        &self,
        svc: &Service,
        host: Option<&str>,
        health_path: Option<&str>,
        timeout_s: u64,
    ) {
        let mut probe = svc.clone();
        if host.is_some() {
            probe.host = host.map(str::to_string);
        }
        let ok = match health_path {
            Some(p) => self.healthy(&probe, p),
            None => true,
        };
        if ok {
            let detail = match health_path {
                Some(p) => format!("health check {p} passed"),
                None => "process running (recipe has no health check)".into(),
            };
            self.transition(&svc.id, Status::Running, Some(&detail), None);
            return;
        }
        let since = *self
            .starting_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(svc.id.clone())
            .or_insert_with(Instant::now);
        if since.elapsed() > Duration::from_secs(timeout_s) {
            let detail = format!("health check did not pass within {timeout_s} s; stopped");
            self.transition(&svc.id, Status::Failed, Some(&detail), None);
            if let Some(r) = &svc.backend_ref
                && let Err(e) = self.backend.cancel(&svc.id, r)
            {
                log::error!("service {}: cannot stop after failed start: {e}", svc.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Payload;
    use crate::backend::slurm_rest::SlurmRestError;
    use crate::backend::{Backend, BackendError, LaunchSpec, Launched};
    use crate::config::Config;
    use crate::recipes::Catalogue;
    use crate::state::Store;
    use std::sync::Mutex;

    /// Answers each poll with the next scripted state.
    struct Scripted(Mutex<Vec<Result<JobState, BackendError>>>);

    impl Backend for Scripted {
        fn kind(&self) -> &'static str {
            "slurm-rest"
        }
        fn launch(&self, _: &LaunchSpec<'_>) -> Result<Launched, BackendError> {
            Ok(Launched {
                backend_ref: "1".into(),
                host: None,
            })
        }
        fn states(&self, jobs: &[(&str, &str)]) -> HashMap<String, Result<JobState, BackendError>> {
            let next = self.0.lock().unwrap().remove(0);
            jobs.first()
                .map(|(s, _)| (s.to_string(), next))
                .into_iter()
                .collect()
        }
        fn cancel(&self, _: &str, _: &str) -> Result<(), BackendError> {
            Ok(())
        }
    }

    fn refused(what: &str) -> Result<JobState, BackendError> {
        Err(SlurmRestError::Unauthorized {
            url: "http://slurmrestd/slurm/v0.0.38/job/1".into(),
            user: "svc".into(),
            status: 500,
            detail: what.into(),
        }
        .into())
    }

    #[test]
    fn an_unknown_service_shows_the_last_reason_not_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let cli = crate::Cli {
            db: Some(dir.path().join("s.sqlite")),
            ..crate::Cli::default()
        };
        let config = Config::load(&cli).unwrap();
        let store = Store::open(&config.db).unwrap();
        let script = vec![
            refused("first reason"),
            refused("second reason"),
            Ok(JobState::Missing),
            Ok(JobState::Active { host: None }),
        ];
        let app = App::new(
            config,
            store,
            Catalogue::load(None).unwrap(),
            Box::new(Scripted(Mutex::new(script))),
        );
        let created = app.create_service(br#"{"recipe": "sleep"}"#).unwrap();
        let Payload::Json(body) = created.payload else {
            panic!("JSON")
        };
        let created: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let id = created["id"].as_str().unwrap().to_string();
        let seen = |want: Status, has: &str| {
            app.tick();
            let s = app.store.get_service(&id, false).unwrap().unwrap();
            let detail = s.detail.clone().unwrap_or_default();
            assert_eq!(s.status, want, "{detail}");
            assert!(detail.contains(has), "{detail}");
            detail
        };
        seen(Status::Unknown, "first reason");
        let d = seen(Status::Unknown, "second reason");
        assert!(!d.contains("first reason"), "{d}");
        let d = seen(Status::Unknown, "no trace of the job");
        assert!(!d.contains("refused"), "{d}");
        // Found running: the reason says so.
        let d = seen(Status::Running, "process running");
        assert!(!d.contains("no trace"), "{d}");
    }
}
