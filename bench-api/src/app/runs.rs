//! The benchmark run routes: list, get, create (its body checked by
//! [`CreateRun::validate`]), cancel (`/api/v1/benchmarks...`); and ending
//! the runs of a service that ends.

use super::{App, Reply, run_not_found, status_filter};
use crate::limits::REASON_CHARS;
use crate::model::{CancelRequest, CreateRun, Run, Status};
use crate::state::Transition;
use crate::validate::{ApiError, parse_json, parse_query};
use gpu_metrics::clock::{new_id, now_ms, rfc3339};

impl App {
    /// Ends the open runs of `service_id` as `to`, because of `why`, and
    /// stops their load generators.
    pub(super) fn cancel_runs_of(&self, service_id: &str, to: Status, why: &str) {
        match self
            .store
            .list_runs(Some(service_id), Some(&[Status::Pending, Status::Running]))
        {
            Ok(runs) => {
                for r in runs {
                    match self.store.transition_run(&r.id, to, Some(why)) {
                        Ok(Transition::Changed(_)) => {
                            log::info!("run {}: {} ({why})", r.id, to.as_str());
                            self.stop_run_job(&r.id);
                        }
                        Ok(_) => {}
                        Err(e) => log::error!("run {}: cannot end: {e}", r.id),
                    }
                }
            }
            Err(e) => log::error!("cannot list runs of {service_id}: {e}"),
        }
    }

    /// `GET /api/v1/benchmarks[?service_id=..&status=..]`.
    pub fn list_runs(&self, query: &str) -> Result<Reply, ApiError> {
        let q = parse_query(query, &["service_id", "status"])?;
        let mut service_id = None;
        let mut filter = None;
        for (k, v) in &q {
            match k.as_str() {
                "service_id" => service_id = Some(v.as_str()),
                _ => filter = Some(status_filter(v, "status")?),
            }
        }
        let runs = self.store.list_runs(service_id, filter.as_deref())?;
        let views = runs
            .iter()
            .map(|r| self.run_view(r))
            .collect::<Result<Vec<_>, _>>()?;
        Reply::json(200, &views)
    }

    /// `GET /api/v1/benchmarks/{id}`.
    pub fn get_run(&self, id: &str) -> Result<Reply, ApiError> {
        let run = self
            .store
            .get_run(id, true)?
            .ok_or_else(|| run_not_found(id))?;
        Reply::json(200, &self.run_view(&run)?)
    }

    /// `POST /api/v1/benchmarks`.
    pub fn create_run(&self, body: &[u8]) -> Result<Reply, ApiError> {
        let req: CreateRun = parse_json(body)?;
        let spec = req.validate()?;
        let svc = self
            .store
            .get_service(&req.service_id, false)?
            .ok_or_else(|| {
                ApiError::field(
                    404,
                    "service_id",
                    format!("no service `{}`", req.service_id),
                )
            })?;
        if svc.status != Status::Running {
            return Err(ApiError::field(
                409,
                "service_id",
                format!("service {} is {}, not running", svc.id, svc.status.as_str()),
            ));
        }
        crate::benchmark::check_load_nodes(&spec, self.backend.kind())?;
        let id = new_id("run");
        let now = now_ms();
        let run = Run {
            id: id.clone(),
            service_id: svc.id.clone(),
            status: Status::Pending,
            spec,
            created_at: rfc3339(now),
            started_at: None,
            ended_at: None,
            detail: None,
            result: None,
            history: None,
        };
        self.store.insert_run(&run, now)?;
        let run = self.launch_run(&run, &svc)?;
        let mut reply = Reply::json(201, &self.run_view(&run)?)?;
        reply
            .headers
            .push(("Location", format!("/api/v1/benchmarks/{id}")));
        Ok(reply)
    }

    /// `POST /api/v1/benchmarks/{id}/cancel`.
    pub fn cancel_run(&self, id: &str, body: &[u8]) -> Result<Reply, ApiError> {
        let req: CancelRequest = if body.iter().all(u8::is_ascii_whitespace) {
            CancelRequest::default()
        } else {
            parse_json(body)?
        };
        let detail = match &req.reason {
            Some(r)
                if !REASON_CHARS.contains_len(r.chars().count())
                    || r.chars().any(char::is_control) =>
            {
                return Err(ApiError::bad_field(
                    REASON_CHARS.field,
                    format!(
                        "`reason` must be at most {} printable characters",
                        REASON_CHARS.max
                    ),
                ));
            }
            Some(r) => format!("cancelled by client: {r}"),
            None => "cancelled by client".into(),
        };
        match self
            .store
            .transition_run(id, Status::Cancelled, Some(&detail))?
        {
            Transition::Changed(r) => {
                log::info!("run {id}: {detail}");
                self.stop_run_job(id);
                Reply::json(200, &self.run_view(&r)?)
            }
            Transition::Unchanged(r) if r.status == Status::Cancelled => Reply::json(200, &r),
            Transition::Unchanged(r) => Err(ApiError::new(
                409,
                format!(
                    "run {id} already ended ({}); nothing to cancel",
                    r.status.as_str()
                ),
            )),
            Transition::NotFound => Err(run_not_found(id)),
        }
    }
}
