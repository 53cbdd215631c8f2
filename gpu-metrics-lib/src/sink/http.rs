//! What the sinks' HTTP clients share: how a failure is handled
//! ([`FailureClass`]), the settings both builders hold ([`HttpSettings`]) and
//! the error of building either ([`BuildError`]), URL checks, secrets and
//! `Authorization` headers, the ureq agent and its caching resolver.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::retry::{BackoffPolicy, BackoffPolicyError};

/// How a failed delivery must be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// This payload will never be accepted: log, count, move on.
    Permanent,
    /// The sink is misconfigured (auth, path): log loudly, keep the data, retry
    /// at the maximum backoff.
    Configuration,
    /// Transient: retry with exponential backoff and full jitter.
    Retryable,
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

/// Which client a [`BuildError`] is about; its messages start with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// [`super::PushgatewayBuilder`].
    Pushgateway,
    /// [`super::RemoteWriteBuilder`].
    RemoteWrite,
}

impl SinkKind {
    /// `pushgateway` or `remote-write`, as the error messages say it.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Pushgateway => "pushgateway",
            SinkKind::RemoteWrite => "remote-write",
        }
    }

    /// What follows `job`/`instance` in [`BuildError::Empty`]'s message.
    fn label_word(self) -> &'static str {
        match self {
            SinkKind::Pushgateway => "",
            SinkKind::RemoteWrite => " label",
        }
    }
}

impl fmt::Display for SinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a sink client could not be built (or a URL was refused by
/// [`normalize_base_url`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The URL lacks `http://` (or `https://`).
    #[error("{sink} URL {url:?} must start with http:// or https://")]
    BadScheme {
        /// The client.
        sink: SinkKind,
        /// The URL as given.
        url: String,
    },
    /// The URL has no host, a bad port, credentials, a query, a fragment or a
    /// space.
    #[error("{sink} URL {url:?} {reason}")]
    BadUrl {
        /// The client.
        sink: SinkKind,
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The URL has no path (a remote-write receiver's endpoint is never `/`).
    #[error(
        "{sink} URL {url:?} has no path (e.g. /api/v1/write for Prometheus and VictoriaMetrics)"
    )]
    NoPath {
        /// The client.
        sink: SinkKind,
        /// The URL as given.
        url: String,
    },
    /// `https://` without the `tls` feature.
    #[error("{sink} URL {url:?} is https but this build has no TLS (enable the `tls` feature)")]
    NoTls {
        /// The client.
        sink: SinkKind,
        /// The URL as given.
        url: String,
    },
    /// Empty job or instance.
    #[error("{sink} {what}{} must not be empty", sink.label_word())]
    Empty {
        /// The client.
        sink: SinkKind,
        /// `job` or `instance`.
        what: &'static str,
    },
    /// A zero timeout.
    #[error("{sink} {what} timeout must be greater than zero")]
    ZeroTimeout {
        /// The client.
        sink: SinkKind,
        /// `connect` or `overall`.
        what: &'static str,
    },
    /// A remote-write `max_samples` of 0.
    #[error("{sink} max samples per request must be at least 1")]
    ZeroMaxSamples {
        /// The client.
        sink: SinkKind,
    },
    /// Both basic auth and a bearer token.
    #[error("{sink} takes basic auth or a bearer token, not both")]
    TwoAuths {
        /// The client.
        sink: SinkKind,
    },
    /// An unusable retry policy.
    #[error("{sink} retry policy: {source}")]
    Backoff {
        /// The client.
        sink: SinkKind,
        /// What is wrong with the policy.
        source: BackoffPolicyError,
    },
}

impl BuildError {
    /// The client the error is about.
    pub fn sink(&self) -> SinkKind {
        match self {
            BuildError::BadScheme { sink, .. }
            | BuildError::BadUrl { sink, .. }
            | BuildError::NoPath { sink, .. }
            | BuildError::NoTls { sink, .. }
            | BuildError::Empty { sink, .. }
            | BuildError::ZeroTimeout { sink, .. }
            | BuildError::ZeroMaxSamples { sink }
            | BuildError::TwoAuths { sink }
            | BuildError::Backoff { sink, .. } => *sink,
        }
    }
}

/// The `User-Agent` of both sinks unless set otherwise.
pub const DEFAULT_USER_AGENT: &str = concat!("aif-node-exporter/", env!("CARGO_PKG_VERSION"));

/// What both sink builders hold: the URL, authentication, timeouts, retry
/// policy and `User-Agent`. Validated when the client is built.
#[derive(Debug, Clone)]
pub(crate) struct HttpSettings {
    pub(crate) url: String,
    pub(crate) basic: Option<(String, Secret)>,
    pub(crate) bearer: Option<Secret>,
    pub(crate) connect_timeout: Duration,
    pub(crate) timeout: Duration,
    pub(crate) backoff: BackoffPolicy,
    pub(crate) user_agent: String,
}

impl HttpSettings {
    /// `url`, no authentication, a 5 s connect timeout, `timeout` overall,
    /// [`BackoffPolicy::default`] and [`DEFAULT_USER_AGENT`].
    pub(crate) fn new(url: String, timeout: Duration) -> Self {
        HttpSettings {
            url,
            basic: None,
            bearer: None,
            connect_timeout: Duration::from_secs(5),
            timeout,
            backoff: BackoffPolicy::default(),
            user_agent: DEFAULT_USER_AGENT.to_string(),
        }
    }

    /// The URL, checked by [`normalize_base_url`]'s rule (and, with
    /// `needs_path`, required to have a path), refused as `https://`
    /// without the `tls` feature.
    pub(crate) fn checked_url(
        &self,
        sink: SinkKind,
        needs_path: bool,
    ) -> Result<String, BuildError> {
        let url = normalize_url(sink, &self.url)?;
        let after_scheme = url.split_once("://").map_or("", |(_, r)| r);
        if needs_path && !after_scheme.contains('/') {
            return Err(BuildError::NoPath { sink, url });
        }
        if url.starts_with("https://") && !cfg!(feature = "tls") {
            return Err(BuildError::NoTls { sink, url });
        }
        Ok(url)
    }

    /// Both timeouts are greater than zero.
    pub(crate) fn check_timeouts(&self, sink: SinkKind) -> Result<(), BuildError> {
        if self.connect_timeout.is_zero() {
            return Err(BuildError::ZeroTimeout {
                sink,
                what: "connect",
            });
        }
        if self.timeout.is_zero() {
            return Err(BuildError::ZeroTimeout {
                sink,
                what: "overall",
            });
        }
        Ok(())
    }

    /// The retry policy is usable.
    pub(crate) fn check_backoff(&self, sink: SinkKind) -> Result<(), BuildError> {
        self.backoff
            .validate()
            .map_err(|source| BuildError::Backoff { sink, source })
    }

    /// The `Authorization` header value: `Basic …`, `Bearer …` or none.
    pub(crate) fn auth_header(&self, sink: SinkKind) -> Result<Option<Secret>, BuildError> {
        Ok(match (&self.basic, &self.bearer) {
            (Some(_), Some(_)) => return Err(BuildError::TwoAuths { sink }),
            (Some((u, p)), None) => Some(basic_auth(u, p)),
            (None, Some(t)) => Some(Secret::new(format!("Bearer {}", t.expose()))),
            (None, None) => None,
        })
    }

    /// A ureq agent with explicit connect and overall timeouts, statuses as
    /// values (not errors), the `User-Agent`, and the caching resolver. A
    /// sink talks to one host over one connection: one idle connection is
    /// kept, with 16 KiB buffers each way (ureq's default is 128 KiB,
    /// resident for as long as the connection is pooled; our requests'
    /// headers and the receivers' answers are far smaller, and bodies stream
    /// through).
    pub(crate) fn agent(&self) -> ureq::Agent {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(self.connect_timeout))
            .timeout_global(Some(self.timeout))
            .http_status_as_error(false)
            .max_idle_connections(1)
            .max_idle_connections_per_host(1)
            .input_buffer_size(16 * 1024)
            .output_buffer_size(16 * 1024)
            .user_agent(self.user_agent.as_str())
            .build();
        ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::default(),
            CachingResolver::default(),
        )
    }
}

/// `job` and `instance` are not empty.
pub(crate) fn check_labels(sink: SinkKind, job: &str, instance: &str) -> Result<(), BuildError> {
    if job.is_empty() {
        return Err(BuildError::Empty { sink, what: "job" });
    }
    if instance.is_empty() {
        return Err(BuildError::Empty {
            sink,
            what: "instance",
        });
    }
    Ok(())
}

/// `Basic base64(user:password)`.
fn basic_auth(user: &str, password: &Secret) -> Secret {
    Secret::new(format!(
        "Basic {}",
        STANDARD.encode(format!("{user}:{}", password.expose()))
    ))
}

/// Checks a Pushgateway base URL (`http://host[:port][/prefix]`, or `https://`)
/// and returns it without a trailing `/`. Shared by every program that takes
/// such a URL, so they accept and refuse the same ones.
///
/// # Errors
/// [`BuildError::BadScheme`] or [`BuildError::BadUrl`] (for
/// [`SinkKind::Pushgateway`]).
pub fn normalize_base_url(url: &str) -> Result<String, BuildError> {
    normalize_url(SinkKind::Pushgateway, url)
}

/// [`normalize_base_url`] with errors about `sink`: the URL as
/// [`crate::url::parse_http_url`] accepts it, without a query, and returned
/// with its scheme in lower case and no trailing `/`.
fn normalize_url(sink: SinkKind, url: &str) -> Result<String, BuildError> {
    use crate::url::UrlError;
    let bad = |reason| BuildError::BadUrl {
        sink,
        url: url.to_string(),
        reason,
    };
    const QUERY: &str = "must not contain a query, fragment or space";
    let parsed = crate::url::parse_http_url(url).map_err(|e| match e {
        UrlError::NoScheme | UrlError::UnsupportedScheme { .. } => BuildError::BadScheme {
            sink,
            url: url.to_string(),
        },
        UrlError::NoHost => bad("has no host"),
        UrlError::Userinfo => bad("must not carry credentials (use basic-auth settings)"),
        UrlError::BadPort { .. } => bad("has an invalid port"),
        UrlError::Fragment => bad(QUERY),
        UrlError::Invalid { .. } if url.contains(['?', '#', ' ']) => bad(QUERY),
        UrlError::Invalid { .. } => bad("is not a valid URL"),
    })?;
    if parsed.query().is_some() {
        return Err(bad(QUERY));
    }
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    Ok(format!(
        "{}://{}",
        parsed.scheme,
        rest.trim_end_matches('/')
    ))
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

/// How long a resolved host name is reused.
pub(crate) const DNS_TTL: Duration = Duration::from_secs(60);

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

/// The body of an answer (at most 64 KiB, trailing whitespace trimmed; empty
/// if unreadable), for error messages.
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

#[cfg(test)]
mod tests {
    use super::*;

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
        // The scheme in any case (RFC 3986), given back in lower case.
        assert_eq!(
            normalize_base_url("HTTPS://Pgw/P/").as_deref(),
            Ok("https://Pgw/P")
        );
        for bad in [
            "pgw:9091",
            "http://",
            "http://:9091",
            "http://pgw:x",
            "http://pgw?a=1",
            "http://u:p@pgw",
            "http://pgw/p#f",
            "http://pgw:0",
            "http://[::1",
            "ftp://pgw",
        ] {
            assert!(normalize_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_name_the_client() {
        let e = normalize_base_url("pgw:9091").unwrap_err();
        assert_eq!(
            e.to_string(),
            "pushgateway URL \"pgw:9091\" must start with http:// or https://"
        );
        let empty = |sink| BuildError::Empty { sink, what: "job" }.to_string();
        assert_eq!(
            empty(SinkKind::Pushgateway),
            "pushgateway job must not be empty"
        );
        assert_eq!(
            empty(SinkKind::RemoteWrite),
            "remote-write job label must not be empty"
        );
    }
}
