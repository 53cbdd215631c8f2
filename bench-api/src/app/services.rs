//! The service routes: list, get, Prometheus targets, create, set status,
//! cancel (`/api/v1/services...`).

use super::{App, Payload, Reply, service_not_found, status_filter};
use crate::backend::{LaunchSpec, Runnable};
use crate::model::{CreateService, Service, SetServiceStatus, Status};
use crate::state::Transition;
use crate::validate::{ApiError, parse_json, parse_query};
use gpu_metrics::clock::{new_id, now_ms, rfc3339};

impl App {
    /// `GET /api/v1/services[?status=a,b]`.
    pub fn list_services(&self, query: &str) -> Result<Reply, ApiError> {
        let q = parse_query(query, &["status"])?;
        let filter = match q.first() {
            Some((_, v)) => Some(status_filter(v, "status")?),
            None => None,
        };
        Ok(Reply {
            status: 200,
            payload: Payload::SharedJson(self.store.list_services_json(filter.as_deref())?),
            headers: Vec::new(),
        })
    }

    /// `GET /api/v1/services/{id}`.
    pub fn get_service(&self, id: &str) -> Result<Reply, ApiError> {
        let svc = self
            .store
            .get_service(id, true)?
            .ok_or_else(|| service_not_found(id))?;
        Reply::json(200, &svc)
    }

    /// `GET /api/v1/services/targets`: Prometheus HTTP SD.
    pub fn service_targets(&self) -> Result<Reply, ApiError> {
        let running = self.store.list_services(Some(&[Status::Running]))?;
        let groups: Vec<serde_json::Value> = running
            .iter()
            .filter_map(|s| {
                let port = s.port?;
                let host = s.host.clone().unwrap_or_else(|| "127.0.0.1".into());
                Some(serde_json::json!({
                    "targets": [format!("{host}:{port}")],
                    "labels": {
                        "service_id": s.id,
                        "recipe": s.recipe,
                        "backend": s.backend,
                    }
                }))
            })
            .collect();
        Reply::json(200, &groups)
    }

    /// `POST /api/v1/services`.
    pub fn create_service(&self, body: &[u8]) -> Result<Reply, ApiError> {
        let req: CreateService = parse_json(body)?;
        let recipe = self.recipes.get(&req.recipe).ok_or_else(|| {
            ApiError::field(
                404,
                "recipe",
                format!(
                    "no recipe `{}`; available: {}",
                    req.recipe,
                    self.recipes
                        .all()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        let resolved = recipe.resolve(&req.params)?;
        let runnable = self.backend.runnable(recipe);
        if runnable.state == Runnable::No {
            return Err(ApiError::field(
                409,
                "recipe",
                format!(
                    "recipe `{}` cannot run on the {} backend: {}",
                    recipe.name,
                    self.backend.kind(),
                    runnable.reason
                ),
            ));
        }
        if self.backend.kind() == "local"
            && let Some(port) = resolved.port
        {
            let active = self.store.list_services(Some(&[
                Status::Pending,
                Status::Starting,
                Status::Running,
            ]))?;
            if let Some(other) = active
                .iter()
                .find(|s| s.port == Some(port) && s.backend == "local")
            {
                return Err(ApiError::field(
                    409,
                    "params.port",
                    format!(
                        "port {port} is in use by service {} ({})",
                        other.id,
                        other.status.as_str()
                    ),
                ));
            }
        }
        let id = new_id("svc");
        let now = now_ms();
        let svc = Service {
            id: id.clone(),
            recipe: recipe.name.clone(),
            params: resolved.params.clone(),
            status: Status::Pending,
            backend: self.backend.kind().to_string(),
            backend_ref: None,
            host: None,
            port: resolved.port,
            exit_code: None,
            detail: None,
            created_at: rfc3339(now),
            updated_at: rfc3339(now),
            history: None,
        };
        self.store.insert_service(&svc, now)?;
        let spec = LaunchSpec {
            service_id: &id,
            recipe,
            argv: &resolved.argv,
            port: resolved.port,
            tasks: 1,
            urls: &[],
        };
        self.hold_reverse_tunnel();
        match self.backend.launch(&spec) {
            Ok(launched) => {
                self.store.set_service_location(
                    &id,
                    Some(&launched.backend_ref),
                    launched.host.as_deref(),
                )?;
                log::info!(
                    "service {id} ({}) created on {} as {}",
                    recipe.name,
                    self.backend.kind(),
                    launched.backend_ref
                );
            }
            Err(e) => {
                self.metrics.launch_failed();
                let detail = format!("launch failed: {e}");
                log::error!("service {id} ({}): {detail}", recipe.name);
                self.store
                    .transition_service(&id, Status::Failed, Some(&detail), None)?;
                return Err(ApiError::new(
                    502,
                    format!("service {id} could not be started: {e}"),
                ));
            }
        }
        let svc = self
            .store
            .get_service(&id, false)?
            .ok_or_else(|| service_not_found(&id))?;
        let mut reply = Reply::json(201, &svc)?;
        reply
            .headers
            .push(("Location", format!("/api/v1/services/{id}")));
        Ok(reply)
    }

    /// `POST /api/v1/services/{id}/status`.
    pub fn set_service_status(&self, id: &str, body: &[u8]) -> Result<Reply, ApiError> {
        let req: SetServiceStatus = parse_json(body)?;
        if req.status != "cancelled" {
            return Err(ApiError::bad_field(
                "status",
                format!(
                    "`{}` cannot be set by a client; the only settable status is `cancelled`",
                    req.status
                ),
            ));
        }
        self.cancel_service(id, "cancelled by client (POST status)")
    }

    /// `DELETE /api/v1/services/{id}`.
    pub fn delete_service(&self, id: &str) -> Result<Reply, ApiError> {
        self.cancel_service(id, "cancelled by client (DELETE)")
    }

    fn cancel_service(&self, id: &str, why: &str) -> Result<Reply, ApiError> {
        let svc = self
            .store
            .get_service(id, false)?
            .ok_or_else(|| service_not_found(id))?;
        if svc.status == Status::Cancelled {
            return Reply::json(200, &svc);
        }
        if svc.status.is_terminal() {
            return Err(ApiError::new(
                409,
                format!(
                    "service {id} already ended ({}); nothing to cancel",
                    svc.status.as_str()
                ),
            ));
        }
        // Record the intent first: the monitor must not report the job it sees
        // dying from our signal as failed.
        let svc = match self
            .store
            .transition_service(id, Status::Cancelled, Some(why), None)?
        {
            Transition::Changed(s) => s,
            Transition::Unchanged(s) if s.status == Status::Cancelled => {
                return Reply::json(200, &s);
            }
            Transition::Unchanged(s) => {
                return Err(ApiError::new(
                    409,
                    format!(
                        "service {id} already ended ({}); nothing to cancel",
                        s.status.as_str()
                    ),
                ));
            }
            Transition::NotFound => return Err(service_not_found(id)),
        };
        self.starting_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        self.cancel_runs_of(id, Status::Cancelled, "service cancelled");
        if let Some(r) = &svc.backend_ref
            && let Err(e) = self.backend.cancel(id, r)
        {
            log::error!(
                "service {id}: cancel on {} failed: {e}",
                self.backend.kind()
            );
            return Err(ApiError::new(
                502,
                format!("service {id} is marked cancelled, but the backend could not stop it: {e}"),
            ));
        }
        log::info!("service {id}: {why}");
        Reply::json(200, &svc)
    }
}
