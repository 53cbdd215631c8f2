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

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;

use crate::retry::{BackoffPolicy, BackoffPolicyError};
use crate::sample::Labels;

/// How a failed push must be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushClass {
    /// This payload will never be accepted: log, count, move on.
    Permanent,
    /// The sink is misconfigured (auth, path): log loudly, keep the data, retry
    /// at the maximum backoff.
    Configuration,
    /// Transient: retry with exponential backoff and full jitter.
    Retryable,
}

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
    pub fn class(&self) -> PushClass {
        match self {
            PushError::Rejected { .. } => PushClass::Permanent,
            PushError::Configuration { .. } => PushClass::Configuration,
            PushError::Unavailable { .. } | PushError::Transport { .. } => PushClass::Retryable,
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

/// Why a Pushgateway client could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushgatewayConfigError {
    /// The base URL lacks `http://` (or `https://` with the `tls` feature).
    #[error("pushgateway URL {url:?} must start with http:// or https://")]
    BadScheme {
        /// The URL as given.
        url: String,
    },
    /// The URL has no host, a bad port, a query, a fragment or a space.
    #[error("pushgateway URL {url:?} {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `https://` without the `tls` feature.
    #[error(
        "pushgateway URL {url:?} is https but this build has no TLS (enable the `tls` feature)"
    )]
    NoTls {
        /// The URL as given.
        url: String,
    },
    /// Empty job or instance.
    #[error("pushgateway {what} must not be empty")]
    Empty {
        /// `job` or `instance`.
        what: &'static str,
    },
    /// A zero timeout.
    #[error("pushgateway {what} timeout must be greater than zero")]
    ZeroTimeout {
        /// `connect` or `overall`.
        what: &'static str,
    },
    /// A password without a user.
    #[error("pushgateway password given without a user")]
    PasswordWithoutUser,
    /// An unusable retry policy.
    #[error("pushgateway retry policy: {0}")]
    Backoff(#[from] BackoffPolicyError),
}

/// A secret string: never printed.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Builds a [`PushgatewayClient`]; validated in [`PushgatewayBuilder::build`].
#[derive(Debug, Clone)]
pub struct PushgatewayBuilder {
    base_url: String,
    job: String,
    instance: String,
    grouping: Labels,
    user: Option<String>,
    password: Option<Secret>,
    connect_timeout: Duration,
    timeout: Duration,
    backoff: BackoffPolicy,
}

impl PushgatewayBuilder {
    /// A builder for the Pushgateway at `base_url` (e.g. `http://monitor:9091`),
    /// job `aif_gpu`, instance `localhost`, 5 s connect and 10 s overall timeouts.
    pub fn new(base_url: impl Into<String>) -> Self {
        PushgatewayBuilder {
            base_url: base_url.into(),
            job: "aif_gpu".into(),
            instance: "localhost".into(),
            grouping: Labels::new(),
            user: None,
            password: None,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            backoff: BackoffPolicy::default(),
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
        self.user = Some(user.into());
        self.password = Some(password);
        self
    }

    /// Connect timeout.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Overall timeout of one request.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Retry policy (default [`BackoffPolicy::default`]; validated by
    /// [`PushgatewayBuilder::build`]).
    pub fn backoff(mut self, policy: BackoffPolicy) -> Self {
        self.backoff = policy;
        self
    }

    /// The same settings against another base URL (e.g. the local end of an
    /// SSH tunnel).
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    /// Validates and builds the client.
    ///
    /// # Errors
    /// [`PushgatewayConfigError`] naming what is wrong.
    pub fn build(self) -> Result<PushgatewayClient, PushgatewayConfigError> {
        let base = normalize_base_url(&self.base_url)?;
        if base.starts_with("https://") && !cfg!(feature = "tls") {
            return Err(PushgatewayConfigError::NoTls { url: base });
        }
        if self.job.is_empty() {
            return Err(PushgatewayConfigError::Empty { what: "job" });
        }
        if self.instance.is_empty() {
            return Err(PushgatewayConfigError::Empty { what: "instance" });
        }
        if self.connect_timeout.is_zero() {
            return Err(PushgatewayConfigError::ZeroTimeout { what: "connect" });
        }
        if self.timeout.is_zero() {
            return Err(PushgatewayConfigError::ZeroTimeout { what: "overall" });
        }
        self.backoff.validate()?;
        let auth_header = match (&self.user, &self.password) {
            (Some(u), p) => Some(super::http::basic_auth(u, p.as_ref())),
            (None, Some(_)) => return Err(PushgatewayConfigError::PasswordWithoutUser),
            (None, None) => None,
        };
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
        let agent = super::http::agent(self.connect_timeout, self.timeout);
        Ok(PushgatewayClient {
            agent,
            group_url: url,
            auth_header,
            backoff: self.backoff,
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

/// Checks a Pushgateway base URL (`http://host[:port][/prefix]`, or `https://`)
/// and returns it without a trailing `/`. Shared by every program that takes
/// such a URL, so they accept and refuse the same ones.
///
/// # Errors
/// [`PushgatewayConfigError::BadScheme`] or [`PushgatewayConfigError::BadUrl`].
pub fn normalize_base_url(url: &str) -> Result<String, PushgatewayConfigError> {
    let bad = |reason| PushgatewayConfigError::BadUrl {
        url: url.to_string(),
        reason,
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| PushgatewayConfigError::BadScheme {
            url: url.to_string(),
        })?;
    let host_port = rest.split('/').next().unwrap_or("");
    if host_port.is_empty() || host_port.starts_with(':') {
        return Err(bad("has no host"));
    }
    if host_port.contains('@') {
        return Err(bad("must not carry credentials (use basic-auth settings)"));
    }
    if let Some((_, port)) = host_port.rsplit_once(':')
        && !host_port.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(bad("has an invalid port"));
    }
    if url.contains(['?', '#', ' ']) {
        return Err(bad("must not contain a query, fragment or space"));
    }
    Ok(url.trim_end_matches('/').to_string())
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

/// Name resolution for the sink's agent: IP literals without any lookup, host
/// names through ureq's resolver and cached for [`DNS_TTL`].
///
/// ureq's default resolver honours the request timeout by resolving on a new
/// thread, for every request: at one push a second that thread was the
/// largest single cost of a push. Pushes go to one host, so a small cache
/// removes it; a changed DNS record is picked up within the TTL.
#[derive(Debug, Default)]
pub(crate) struct CachingResolver {
    inner: ureq::unversioned::resolver::DefaultResolver,
    cache: std::sync::Mutex<Option<(String, std::time::Instant, Vec<std::net::SocketAddr>)>>,
}

/// How long a resolved Pushgateway host name is reused.
pub const DNS_TTL: Duration = Duration::from_secs(60);

impl ureq::unversioned::resolver::Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let fill = |addrs: &[std::net::SocketAddr]| {
            let mut out = self.empty();
            for a in addrs.iter().take(16) {
                out.push(*a);
            }
            out
        };
        let authority = uri.authority().ok_or(ureq::Error::HostNotFound)?;
        let port = authority
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(fill(&[std::net::SocketAddr::new(ip, port)]));
        }
        let key = format!("{host}:{port}");
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((k, at, addrs)) = cache.as_ref()
            && *k == key
            && at.elapsed() < DNS_TTL
        {
            return Ok(fill(addrs));
        }
        let resolved = self.inner.resolve(uri, config, timeout)?;
        *cache = Some((
            key,
            std::time::Instant::now(),
            resolved.iter().copied().collect(),
        ));
        Ok(resolved)
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
pub fn status_class(status: u16) -> Option<PushClass> {
    match status {
        200..=299 => None,
        401 | 403 | 404 | 405 => Some(PushClass::Configuration),
        408 | 429 | 500..=599 => Some(PushClass::Retryable),
        _ => Some(PushClass::Permanent),
    }
}

pub(crate) fn read_body(resp: &mut ureq::http::Response<ureq::Body>) -> String {
    let mut body = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    body.truncate(body.trim_end().len());
    body
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
            Some(PushClass::Configuration) => Err(PushError::Configuration {
                status,
                url: self.group_url.clone(),
                body: read_body(&mut resp),
            }),
            Some(PushClass::Retryable) => Err(PushError::Unavailable { status }),
            Some(PushClass::Permanent) => Err(PushError::Rejected {
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
            Err(PushgatewayConfigError::BadScheme { .. })
        ));
        assert!(matches!(
            PushgatewayBuilder::new("http://x").job("").build(),
            Err(PushgatewayConfigError::Empty { what: "job" })
        ));
        assert!(matches!(
            PushgatewayBuilder::new("http://x")
                .timeout(Duration::ZERO)
                .build(),
            Err(PushgatewayConfigError::ZeroTimeout { .. })
        ));
    }

    #[test]
    fn base_urls_are_checked_and_normalized() {
        assert_eq!(
            normalize_base_url("http://pgw:9091/").as_deref(),
            Ok("http://pgw:9091")
        );
        assert_eq!(
            normalize_base_url("http://[::1]:9091/p").as_deref(),
            Ok("http://[::1]:9091/p")
        );
        for bad in [
            "pgw:9091",
            "http://",
            "http://:9091",
            "http://pgw:x",
            "http://pgw?a=1",
            "http://u:p@pgw",
        ] {
            assert!(normalize_base_url(bad).is_err(), "{bad}");
        }
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
        assert_eq!(status_class(400), Some(PushClass::Permanent));
        // 408 Request Timeout: the server gave up waiting for our request;
        // sending it again is the remedy, not dropping the batch.
        assert_eq!(status_class(408), Some(PushClass::Retryable));
        assert_eq!(status_class(429), Some(PushClass::Retryable));
        for s in [401, 403, 404, 405] {
            assert_eq!(status_class(s), Some(PushClass::Configuration), "{s}");
        }
        for s in 500..=599 {
            assert_eq!(status_class(s), Some(PushClass::Retryable), "{s}");
        }
        for s in [301, 409, 413, 415, 422] {
            assert_eq!(status_class(s), Some(PushClass::Permanent), "{s}");
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
            PushClass::Permanent
        );
        assert_eq!(
            PushError::Configuration {
                status: 401,
                url: String::new(),
                body: String::new()
            }
            .class(),
            PushClass::Configuration
        );
        assert_eq!(
            PushError::Unavailable { status: 503 }.class(),
            PushClass::Retryable
        );
        assert_eq!(
            PushError::Transport {
                url: String::new(),
                reason: String::new()
            }
            .class(),
            PushClass::Retryable
        );
    }
}
