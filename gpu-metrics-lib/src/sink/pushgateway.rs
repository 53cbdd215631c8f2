//! The Pushgateway client (DESIGN.md §6): one group per node, latest state only.
//!
//! - `PUT {base}/metrics/job/{job}/instance/{instance}[/{label}/{value}]…`; a value
//!   that is empty or has a character outside `[A-Za-z0-9._~-]` is sent as
//!   `{label}@base64/{urlsafe-base64}` (`=` for the empty value).
//! - Body: text exposition ending in `\n`,
//!   `Content-Type: text/plain; version=0.0.4`.
//! - Status classes: 2xx ok; 400 (and other 4xx not below) permanent for that
//!   payload; 401/403/404/405 configuration errors; 408 (request timeout),
//!   429, 5xx, connect/read errors and timeouts retryable. See
//!   [`PushError::class`] and [`status_class`].
//! - Explicit connect and overall timeouts; optional basic auth whose password
//!   never reaches a log or a `Debug` output.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;

use super::http::{BuildError, FailureClass, HttpSettings, Secret, SinkKind, read_body};
use crate::retry::BackoffPolicy;
use crate::sample::Labels;

/// Why a push (or delete) failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The Pushgateway refused this payload (400, or another 4xx not listed
    /// as a configuration error).
    #[error("pushgateway rejected the payload: HTTP {status}: {body}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Response body (the Pushgateway says what is wrong).
        body: String,
    },
    /// Authentication or path problem (401, 403, 404, 405).
    #[error("pushgateway configuration error: HTTP {status} for {url}: {body}")]
    Configuration {
        /// HTTP status.
        status: u16,
        /// The URL (no credentials in it).
        url: String,
        /// Response body.
        body: String,
    },
    /// Timeout, overload or server error (408, 429, 5xx).
    #[error("pushgateway unavailable: HTTP {status}")]
    Unavailable {
        /// HTTP status.
        status: u16,
    },
    /// Connection refused, reset, DNS, timeout.
    #[error("pushgateway unreachable at {url}: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
}

impl PushError {
    /// The handling class of this error.
    pub fn class(&self) -> FailureClass {
        match self {
            PushError::Rejected { .. } => FailureClass::Permanent,
            PushError::Configuration { .. } => FailureClass::Configuration,
            PushError::Unavailable { .. } | PushError::Transport { .. } => FailureClass::Retryable,
        }
    }

    /// Short label value for `aif_exporter_pushes_total{result}`.
    pub fn result_label(&self) -> &'static str {
        match self {
            PushError::Rejected { .. } => "rejected",
            PushError::Configuration { .. } => "config_error",
            PushError::Unavailable { .. } => "unavailable",
            PushError::Transport { .. } => "unreachable",
        }
    }
}

/// Builds a [`PushgatewayClient`]; validated in [`PushgatewayBuilder::build`].
#[derive(Debug, Clone)]
pub struct PushgatewayBuilder {
    http: HttpSettings,
    job: String,
    instance: String,
    grouping: Labels,
}

impl PushgatewayBuilder {
    /// A builder for the Pushgateway at `base_url` (e.g. `http://monitor:9091`),
    /// job `aif_gpu`, instance `localhost`, 5 s connect and 10 s overall timeouts.
    pub fn new(base_url: impl Into<String>) -> Self {
        PushgatewayBuilder {
            http: HttpSettings::new(base_url.into(), Duration::from_secs(10)),
            job: "aif_gpu".into(),
            instance: "localhost".into(),
            grouping: Labels::new(),
        }
    }

    /// The `job` grouping label.
    pub fn job(mut self, job: impl Into<String>) -> Self {
        self.job = job.into();
        self
    }

    /// The `instance` grouping label.
    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = instance.into();
        self
    }

    /// Extra grouping labels (the attribution labels, so that runs and jobs do
    /// not overwrite each other's groups).
    pub fn grouping(mut self, labels: Labels) -> Self {
        self.grouping = labels;
        self
    }

    /// Basic auth.
    pub fn basic_auth(mut self, user: impl Into<String>, password: Secret) -> Self {
        self.http.basic = Some((user.into(), password));
        self
    }

    /// Connect timeout.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.http.connect_timeout = d;
        self
    }

    /// Overall timeout of one request.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.http.timeout = d;
        self
    }

    /// Retry policy (default [`BackoffPolicy::default`]; validated by
    /// [`PushgatewayBuilder::build`]).
    pub fn backoff(mut self, policy: BackoffPolicy) -> Self {
        self.http.backoff = policy;
        self
    }

    /// The `User-Agent` header (default [`super::DEFAULT_USER_AGENT`]).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.http.user_agent = user_agent.into();
        self
    }

    /// The same settings against another base URL (e.g. the local end of an
    /// SSH tunnel).
    pub fn with_url(mut self, base_url: impl Into<String>) -> Self {
        self.http.url = base_url.into();
        self
    }

    /// Validates and builds the client.
    ///
    /// # Errors
    /// [`BuildError`] naming what is wrong.
    pub fn build(self) -> Result<PushgatewayClient, BuildError> {
        const SINK: SinkKind = SinkKind::Pushgateway;
        let base = self.http.checked_url(SINK, false)?;
        super::http::check_labels(SINK, &self.job, &self.instance)?;
        self.http.check_timeouts(SINK)?;
        self.http.check_backoff(SINK)?;
        let auth_header = self.http.auth_header(SINK)?;
        let mut url = format!("{base}/metrics/");
        url.push_str(&group_segment("job", &self.job));
        url.push('/');
        url.push_str(&group_segment("instance", &self.instance));
        for (k, v) in self.grouping.iter() {
            if k == "job" || k == "instance" {
                continue;
            }
            url.push('/');
            url.push_str(&group_segment(k, v));
        }
        Ok(PushgatewayClient {
            agent: self.http.agent(),
            group_url: url,
            auth_header,
            backoff: self.http.backoff,
            builder: PushgatewayBuilderNoSecret {
                job: self.job,
                instance: self.instance,
            },
        })
    }
}

#[derive(Debug, Clone)]
struct PushgatewayBuilderNoSecret {
    job: String,
    instance: String,
}

/// One grouping-key path segment pair: `label/value` or `label@base64/…`.
pub fn group_segment(label: &str, value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if plain {
        format!("{label}/{value}")
    } else if value.is_empty() {
        format!("{label}@base64/=")
    } else {
        format!("{label}@base64/{}", URL_SAFE.encode(value))
    }
}

/// A configured Pushgateway group: push and delete.
#[derive(Debug, Clone)]
pub struct PushgatewayClient {
    agent: ureq::Agent,
    group_url: String,
    auth_header: Option<Secret>,
    backoff: BackoffPolicy,
    builder: PushgatewayBuilderNoSecret,
}

/// How a Pushgateway answer with HTTP `status` is handled (DESIGN.md §6):
/// `None` for 2xx (delivered); 401/403/404/405 are configuration errors;
/// 408 (the server timed the request out), 429 and 5xx are retryable; any
/// other status (400 and the remaining 1xx/3xx/4xx) is permanent for that
/// payload.
pub fn status_class(status: u16) -> Option<FailureClass> {
    match status {
        200..=299 => None,
        401 | 403 | 404 | 405 => Some(FailureClass::Configuration),
        408 | 429 | 500..=599 => Some(FailureClass::Retryable),
        _ => Some(FailureClass::Permanent),
    }
}

impl PushgatewayClient {
    /// The group URL pushes go to (no credentials in it).
    pub fn group_url(&self) -> &str {
        &self.group_url
    }

    /// The retry policy.
    pub fn backoff(&self) -> BackoffPolicy {
        self.backoff
    }

    /// The job name.
    pub fn job(&self) -> &str {
        &self.builder.job
    }

    /// The instance name.
    pub fn instance(&self) -> &str {
        &self.builder.instance
    }

    fn classify(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(), PushError> {
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                return Err(PushError::Transport {
                    url: self.group_url.clone(),
                    reason: e.to_string(),
                });
            }
        };
        let status = resp.status().as_u16();
        match status_class(status) {
            None => Ok(()),
            Some(FailureClass::Configuration) => Err(PushError::Configuration {
                status,
                url: self.group_url.clone(),
                body: read_body(&mut resp),
            }),
            Some(FailureClass::Retryable) => Err(PushError::Unavailable { status }),
            Some(FailureClass::Permanent) => Err(PushError::Rejected {
                status,
                body: read_body(&mut resp),
            }),
        }
    }

    /// `PUT`s `text` (text exposition; a missing final `\n` is added) to the group.
    ///
    /// # Errors
    /// [`PushError`]; see [`PushError::class`] for how to handle it.
    pub fn push(&self, text: &str) -> Result<(), PushError> {
        let mut req = self
            .agent
            .put(&self.group_url)
            .header("Content-Type", "text/plain; version=0.0.4");
        if let Some(auth) = &self.auth_header {
            req = req.header("Authorization", auth.expose());
        }
        let result = if text.ends_with('\n') {
            req.send(text.as_bytes())
        } else {
            req.send(format!("{text}\n").as_bytes())
        };
        self.classify(result)
    }

    /// `DELETE`s the group, so stale values do not linger after shutdown.
    ///
    /// # Errors
    /// [`PushError`].
    pub fn delete(&self) -> Result<(), PushError> {
        let mut req = self.agent.delete(&self.group_url);
        if let Some(auth) = &self.auth_header {
            req = req.header("Authorization", auth.expose());
        }
        self.classify(req.call())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_key_uses_base64_where_needed() {
        assert_eq!(group_segment("job", "aif_gpu"), "job/aif_gpu");
        assert_eq!(group_segment("run_id", ""), "run_id@base64/=");
        assert_eq!(group_segment("path", "a/b"), "path@base64/YS9i");
        assert_eq!(
            group_segment("x", "a b?"),
            format!("x@base64/{}", URL_SAFE.encode("a b?"))
        );
    }

    #[test]
    fn build_validates_and_builds_the_group_url() {
        let c = PushgatewayBuilder::new("http://127.0.0.1:9091/")
            .job("aif_gpu")
            .instance("node-01")
            .grouping(Labels::from_pairs([
                ("slurm_job_id", "42"),
                ("run_id", "a/b"),
            ]))
            .build()
            .expect("build");
        assert_eq!(
            c.group_url(),
            "http://127.0.0.1:9091/metrics/job/aif_gpu/instance/node-01/run_id@base64/YS9i/slurm_job_id/42"
        );
        assert!(matches!(
            PushgatewayBuilder::new("127.0.0.1:9091").build(),
            Err(BuildError::BadScheme { .. })
        ));
        assert!(matches!(
            PushgatewayBuilder::new("http://x").job("").build(),
            Err(BuildError::Empty { what: "job", .. })
        ));
        assert!(matches!(
            PushgatewayBuilder::new("http://x")
                .timeout(Duration::ZERO)
                .build(),
            Err(BuildError::ZeroTimeout { .. })
        ));
    }

    #[test]
    fn password_never_shows_in_debug() {
        let c = PushgatewayBuilder::new("http://x")
            .basic_auth("u", Secret::new("hunter2"))
            .build()
            .expect("build");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(
            !dbg.contains(&base64::engine::general_purpose::STANDARD.encode("u:hunter2")),
            "{dbg}"
        );
    }

    #[test]
    fn every_status_has_the_class_design_gives_it() {
        assert_eq!(status_class(200), None);
        assert_eq!(status_class(202), None);
        assert_eq!(status_class(400), Some(FailureClass::Permanent));
        // 408 Request Timeout: the server gave up waiting for our request;
        // sending it again is the remedy, not dropping the batch.
        assert_eq!(status_class(408), Some(FailureClass::Retryable));
        assert_eq!(status_class(429), Some(FailureClass::Retryable));
        for s in [401, 403, 404, 405] {
            assert_eq!(status_class(s), Some(FailureClass::Configuration), "{s}");
        }
        for s in 500..=599 {
            assert_eq!(status_class(s), Some(FailureClass::Retryable), "{s}");
        }
        for s in [301, 409, 413, 415, 422] {
            assert_eq!(status_class(s), Some(FailureClass::Permanent), "{s}");
        }
    }

    #[test]
    fn error_classes() {
        assert_eq!(
            PushError::Rejected {
                status: 400,
                body: String::new()
            }
            .class(),
            FailureClass::Permanent
        );
        assert_eq!(
            PushError::Configuration {
                status: 401,
                url: String::new(),
                body: String::new()
            }
            .class(),
            FailureClass::Configuration
        );
        assert_eq!(
            PushError::Unavailable { status: 503 }.class(),
            FailureClass::Retryable
        );
        assert_eq!(
            PushError::Transport {
                url: String::new(),
                reason: String::new()
            }
            .class(),
            FailureClass::Retryable
        );
    }
}
