//! The slurmrestd client: transport (ureq over TCP, maybe over the SSH
//! local forward, or over a Unix socket through
//! [`gpu_metrics::transport::UnixConnector`]), authentication (JWT
//! headers from a token file, or `rest_auth/local` on a socket), version
//! discovery, and the translation of answers into [`SlurmRestError`]s.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use gpu_metrics::sink::Secret;
use serde_json::Value;

use super::version::{
    ApiVersion, ESLURM_INVALID_JOB_ID, RestErrorEntry, SLURM_PROTOCOL_AUTHENTICATION_ERROR, errors,
};

/// The most an answer may hold (an OpenAPI document of four API versions is
/// about 2 MiB).
pub const MAX_ANSWER_BYTES: u64 = 16 * 1024 * 1024;
/// How much of a body an error shows.
const EXCERPT: usize = 300;

/// Why a slurmrestd request failed.
#[derive(Debug, thiserror::Error)]
pub enum SlurmRestError {
    /// The token file could not be read.
    #[error("slurm-rest: cannot read token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The token file does not hold one JWT: write one (`scontrol token`).
    #[error(
        "slurm-rest: token file {path} {reason}; write a token of user `{user}` there (`scontrol token username={user} lifespan=…`)"
    )]
    TokenInvalid {
        /// The file.
        path: PathBuf,
        /// `X-SLURM-USER-NAME`.
        user: String,
        /// What is wrong (`is empty`, `does not hold a JWT …`).
        reason: &'static str,
    },
    /// The token's `exp` has passed: renew it (`scontrol token`).
    #[error(
        "slurm-rest: the token in {path} expired {ago_s} s ago; write a new one (`scontrol token username={user} lifespan=…`)"
    )]
    TokenExpired {
        /// The file.
        path: PathBuf,
        /// `X-SLURM-USER-NAME`.
        user: String,
        /// Seconds since it expired.
        ago_s: u64,
    },
    /// slurmrestd or slurmctld refused the credentials (HTTP 401/403, or an
    /// authentication error in the answer).
    #[error("slurm-rest: {url} refused the credentials of user `{user}` (HTTP {status}): {detail}")]
    Unauthorized {
        /// The request.
        url: String,
        /// `X-SLURM-USER-NAME` (or the socket's user).
        user: String,
        /// HTTP status.
        status: u16,
        /// What the server said, and what to do.
        detail: String,
    },
    /// The connection failed or timed out.
    #[error("slurm-rest: {url}: {detail}")]
    Transport {
        /// The request.
        url: String,
        /// The transport error.
        detail: String,
    },
    /// An HTTP error status without Slurm errors we know.
    #[error("slurm-rest: {url}: HTTP {status}: {body_excerpt}")]
    Http {
        /// The request.
        url: String,
        /// HTTP status.
        status: u16,
        /// The start of the body.
        body_excerpt: String,
    },
    /// Slurm reported errors (`errors` of the answer).
    #[error("slurm-rest: {url}: HTTP {status}: {errors}")]
    Slurm {
        /// The request.
        url: String,
        /// HTTP status.
        status: u16,
        /// The errors, `source: error: description; …`.
        errors: String,
        /// The first error number.
        number: i64,
    },
    /// The answer is not what the API version promises.
    #[error("slurm-rest: {url}: unexpected answer: {reason}")]
    BadAnswer {
        /// The request.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The server offers no API version we speak.
    #[error(
        "slurm-rest: {url} offers API versions {offered:?}; this client speaks v0.0.38, v0.0.40, v0.0.41"
    )]
    UnsupportedVersions {
        /// The discovery URL.
        url: String,
        /// What it offers.
        offered: Vec<String>,
    },
    /// A recipe value slurmrestd needs as a number could not be converted.
    #[error("slurm-rest: resources.{field} `{value}` cannot be given to slurmrestd")]
    Unconvertible {
        /// `memory` or `time_limit`.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// The settings cannot make a client (normally caught by the config check).
    #[error("slurm-rest: config key `{key}`: {reason}")]
    Config {
        /// The key (`slurm.rest.url`).
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The SSH local forward to the login node could not start.
    #[error("slurm-rest: SSH forward to {destination}: {source}")]
    Tunnel {
        /// `user@host:port`.
        destination: String,
        /// The SSH error.
        source: Box<gpu_metrics::ssh::SshError>,
    },
}

impl SlurmRestError {
    /// True when the credentials are at fault (renewing the token helps, not
    /// retrying): the service state cannot be known until then.
    pub fn is_credential_error(&self) -> bool {
        matches!(
            self,
            SlurmRestError::TokenFile { .. }
                | SlurmRestError::TokenInvalid { .. }
                | SlurmRestError::TokenExpired { .. }
                | SlurmRestError::Unauthorized { .. }
        )
    }
}

/// Where slurmrestd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `http://host:port` (maybe the loopback end of the SSH forward).
    Http(String),
    /// A Unix socket (`unix:/run/slurmrestd.socket`).
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Http(u) => f.write_str(u),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// `http://host:port` → (`host`, `port`), parsed by
/// [`gpu_metrics::url::parse_http_url`] (an IPv6 host without its brackets);
/// no path, no userinfo, no https (ureq is built without TLS here: reach a
/// TLS-only slurmrestd through the SSH forward).
///
/// # Errors
/// What is wrong with `url`.
pub fn host_port(url: &str) -> Result<(String, u16), &'static str> {
    use gpu_metrics::url::{Scheme, UrlError};
    let u = match gpu_metrics::url::parse_http_url(url) {
        Ok(u) if u.scheme == Scheme::Https => {
            return Err(
                "https is not supported; use http:// on the login node's loopback through [slurm.rest.ssh]",
            );
        }
        Ok(u) => u,
        Err(UrlError::NoScheme | UrlError::UnsupportedScheme { .. }) => {
            return Err("must be http://host:port or unix:/path");
        }
        Err(UrlError::NoHost) => return Err("must be http://host:port"),
        Err(UrlError::BadPort { .. }) => return Err("the port must be 1..=65535"),
        Err(UrlError::Userinfo | UrlError::Fragment | UrlError::Invalid { .. }) => {
            return Err("must be http://host:port with no path");
        }
    };
    if !matches!(u.path_and_query.as_str(), "" | "/") {
        return Err("must be http://host:port with no path");
    }
    if !u.port_given {
        return Err("must name the port (slurmrestd has no default)");
    }
    Ok((u.host, u.port))
}

/// How requests authenticate.
#[derive(Debug)]
pub enum Auth {
    /// `X-SLURM-USER-NAME` + `X-SLURM-USER-TOKEN` (rest_auth/jwt), the token
    /// read from `path` and read again whenever the file changes.
    Jwt(TokenFile),
    /// `rest_auth/local`: slurmrestd knows the socket's peer; no headers.
    Local {
        /// For messages only.
        user: String,
    },
}

impl Auth {
    fn user(&self) -> &str {
        match self {
            Auth::Jwt(t) => &t.user,
            Auth::Local { user } => user,
        }
    }
}

struct CachedToken {
    modified: Option<SystemTime>,
    len: u64,
    token: Secret,
    expires: Option<u64>,
}

/// A token file (`scontrol token` output, or the bare token), re-read when its
/// modification time or size changes. Never shown (`Debug` names the file).
pub struct TokenFile {
    path: PathBuf,
    user: String,
    cache: Mutex<Option<CachedToken>>,
}

impl std::fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenFile")
            .field("path", &self.path)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The `exp` claim of a JWT (not verified: only slurmctld can).
///
/// # Errors
/// What is wrong when `token` is not three base64url parts with a JSON payload.
pub fn jwt_expiry(token: &str) -> Result<Option<u64>, &'static str> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("does not hold a JWT (three base64url parts joined by `.`)");
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| "does not hold a JWT (its payload is not base64url)")?;
    let claims: Value = serde_json::from_slice(&bytes)
        .map_err(|_| "does not hold a JWT (its payload is not JSON)")?;
    Ok(claims.get("exp").and_then(Value::as_u64))
}

impl TokenFile {
    /// The token of `user` in `path` (read on first use).
    pub fn new(path: PathBuf, user: String) -> TokenFile {
        TokenFile {
            path,
            user,
            cache: Mutex::new(None),
        }
    }

    /// The current token, read again when the file changed.
    ///
    /// # Errors
    /// An unreadable file, no JWT in it, or an expired one.
    pub fn token(&self) -> Result<Secret, SlurmRestError> {
        let meta = std::fs::metadata(&self.path).map_err(|source| SlurmRestError::TokenFile {
            path: self.path.clone(),
            source,
        })?;
        let (modified, len) = (meta.modified().ok(), meta.len());
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = cache
            .as_ref()
            .is_some_and(|c| c.modified == modified && c.len == len && modified.is_some());
        if !fresh {
            let read = self.read()?;
            log::info!(
                "slurm-rest: token of user {} read from {}{}",
                self.user,
                self.path.display(),
                read.1
                    .map(|e| format!(" (expires in {} s)", e.saturating_sub(now_s())))
                    .unwrap_or_default()
            );
            *cache = Some(CachedToken {
                modified,
                len,
                token: read.0,
                expires: read.1,
            });
        }
        let c = cache.as_ref().ok_or_else(|| SlurmRestError::TokenInvalid {
            path: self.path.clone(),
            user: self.user.clone(),
            reason: "is empty",
        })?;
        if let Some(exp) = c.expires
            && exp <= now_s()
        {
            return Err(SlurmRestError::TokenExpired {
                path: self.path.clone(),
                user: self.user.clone(),
                ago_s: now_s() - exp,
            });
        }
        Ok(c.token.clone())
    }

    fn read(&self) -> Result<(Secret, Option<u64>), SlurmRestError> {
        let text =
            std::fs::read_to_string(&self.path).map_err(|source| SlurmRestError::TokenFile {
                path: self.path.clone(),
                source,
            })?;
        let invalid = |reason| SlurmRestError::TokenInvalid {
            path: self.path.clone(),
            user: self.user.clone(),
            reason,
        };
        let t = text.trim();
        // `scontrol token` prints `SLURM_JWT=…`.
        let t = t.strip_prefix("SLURM_JWT=").unwrap_or(t);
        if t.is_empty() {
            return Err(invalid("is empty"));
        }
        if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("must hold one token without spaces"));
        }
        let exp = jwt_expiry(t).map_err(invalid)?;
        Ok((Secret::new(t), exp))
    }
}

/// An answer: status and body.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: String,
}

/// A slurmrestd client for one endpoint and identity.
pub struct SlurmRestClient {
    endpoint: Endpoint,
    auth: Auth,
    agent: ureq::Agent,
    pinned: Option<ApiVersion>,
    version: Mutex<Option<ApiVersion>>,
}

impl std::fmt::Debug for SlurmRestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlurmRestClient")
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth)
            .field("pinned", &self.pinned)
            .finish_non_exhaustive()
    }
}

fn excerpt(body: &str) -> String {
    let t = body.trim();
    match t.char_indices().nth(EXCERPT) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_string(),
    }
}

/// `source: error` of each entry, without Slurm's description (which, for
/// an error without a number, is the operation's generic text).
fn unspecified(errs: &[RestErrorEntry]) -> String {
    let causes: Vec<&str> = errs
        .iter()
        .map(|e| e.cause.as_str())
        .filter(|c| !c.is_empty())
        .collect();
    if causes.is_empty() {
        "error -1".into()
    } else {
        causes.join("; ")
    }
}

fn joined(errs: &[RestErrorEntry]) -> String {
    errs.iter()
        .map(|e| e.text.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

impl SlurmRestClient {
    /// A client; `pinned` skips discovery.
    pub fn new(
        endpoint: Endpoint,
        auth: Auth,
        timeout: Duration,
        pinned: Option<ApiVersion>,
    ) -> SlurmRestClient {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_idle_connections(2)
            .user_agent(concat!("aif-bench-api/", env!("CARGO_PKG_VERSION")));
        let agent = match &endpoint {
            Endpoint::Http(_) => config.build().new_agent(),
            // The socket is the only place to go: no proxy, no name lookup
            // (the request URL's host is only the `Host` header).
            Endpoint::Unix(sock) => ureq::Agent::with_parts(
                config.proxy(None).build(),
                gpu_metrics::transport::UnixConnector {
                    path: sock.clone(),
                    timeout,
                },
                gpu_metrics::transport::FixedResolver(vec![std::net::SocketAddr::from((
                    [127, 0, 0, 1],
                    80,
                ))]),
            ),
        };
        SlurmRestClient {
            endpoint,
            auth,
            agent,
            pinned,
            version: Mutex::new(pinned),
        }
    }

    /// The endpoint, for messages.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The user requests run as.
    pub fn user(&self) -> &str {
        self.auth.user()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint)
    }

    /// One request; the body is JSON when given.
    ///
    /// # Errors
    /// Credentials ([`SlurmRestError::TokenExpired`], …), transport, or a 401/403.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, SlurmRestError> {
        let url = self.url(path);
        let token = match &self.auth {
            Auth::Jwt(t) => Some(t.token()?),
            Auth::Local { .. } => None,
        };
        let mut headers: Vec<(&str, String)> = Vec::new();
        if let Some(t) = &token {
            headers.push(("X-SLURM-USER-NAME", self.auth.user().to_string()));
            headers.push(("X-SLURM-USER-TOKEN", t.expose().to_string()));
        }
        let payload = body.map(Value::to_string);
        let target = match &self.endpoint {
            Endpoint::Http(_) => url.clone(),
            Endpoint::Unix(_) => {
                headers.push(("Accept", "application/json".into()));
                format!("http://localhost{path}")
            }
        };
        let answer = self.http(method, &url, &target, &headers, payload.as_deref())?;
        log::debug!(
            "slurm-rest: {method} {url} as {} → {}",
            self.auth.user(),
            answer.status
        );
        if answer.status == 401 || answer.status == 403 {
            return Err(SlurmRestError::Unauthorized {
                url,
                user: self.auth.user().to_string(),
                status: answer.status,
                detail: format!(
                    "{}; check the token file (a new one: `scontrol token username={}`) and the user name",
                    excerpt(&answer.body),
                    self.auth.user()
                ),
            });
        }
        Ok(answer)
    }

    /// `method` `target` (the endpoint's URL, or `http://localhost/…` on the
    /// Unix socket); errors name `url`.
    fn http(
        &self,
        method: &str,
        url: &str,
        target: &str,
        headers: &[(&str, String)],
        payload: Option<&str>,
    ) -> Result<Answer, SlurmRestError> {
        let transport = |e: ureq::Error| SlurmRestError::Transport {
            url: url.to_string(),
            detail: e.to_string(),
        };
        let result = match (method, payload) {
            ("POST", Some(p)) => {
                let mut req = self
                    .agent
                    .post(target)
                    .header("Content-Type", "application/json");
                for (k, v) in headers {
                    req = req.header(*k, v);
                }
                req.send(p)
            }
            ("DELETE", _) => {
                let mut req = self.agent.delete(target);
                for (k, v) in headers {
                    req = req.header(*k, v);
                }
                req.call()
            }
            ("GET", None) => {
                let mut req = self.agent.get(target);
                for (k, v) in headers {
                    req = req.header(*k, v);
                }
                req.call()
            }
            (other, body) => {
                return Err(SlurmRestError::Transport {
                    url: url.to_string(),
                    detail: format!(
                        "no such request: {other} {} a body",
                        if body.is_some() { "with" } else { "without" }
                    ),
                });
            }
        };
        let mut resp = result.map_err(transport)?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .map_err(transport)?;
        Ok(Answer { status, body })
    }

    /// The API version to use: pinned, or discovered once from the server's
    /// OpenAPI document (`/openapi/v3`, else `/openapi`) as the newest one
    /// both sides speak.
    ///
    /// # Errors
    /// The server could not be asked, or offers no version we speak.
    pub fn version(&self) -> Result<ApiVersion, SlurmRestError> {
        if let Some(v) = *self.version.lock().unwrap_or_else(|e| e.into_inner()) {
            return Ok(v);
        }
        let mut last = None;
        for path in ["/openapi/v3", "/openapi"] {
            let a = self.request("GET", path, None)?;
            if a.status != 200 {
                last = Some(SlurmRestError::Http {
                    url: self.url(path),
                    status: a.status,
                    body_excerpt: excerpt(&a.body),
                });
                continue;
            }
            #[derive(serde::Deserialize)]
            struct Doc {
                paths: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
            }
            let doc: Doc =
                serde_json::from_str(&a.body).map_err(|e| SlurmRestError::BadAnswer {
                    url: self.url(path),
                    reason: format!("not an OpenAPI document: {e}"),
                })?;
            let offered = ApiVersion::offered(doc.paths.keys().map(String::as_str));
            let Some(v) = ApiVersion::newest_common(&offered) else {
                return Err(SlurmRestError::UnsupportedVersions {
                    url: self.url(path),
                    offered,
                });
            };
            log::info!(
                "slurm-rest: {} offers {offered:?}; using {}",
                self.endpoint,
                v.as_str()
            );
            *self.version.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
            return Ok(v);
        }
        Err(last.unwrap_or(SlurmRestError::BadAnswer {
            url: self.url("/openapi"),
            reason: "no OpenAPI document".into(),
        }))
    }

    /// A JSON request of API version `v`: `Ok` with the answer when it is a
    /// 2xx JSON document without `errors`; a Slurm error otherwise. A failure
    /// that slurmctld gives no reason for ("Unspecified error", Slurm 22.05's
    /// answer to a token it refused) is checked with a ping: when that fails
    /// too, the credentials are reported as refused.
    ///
    /// # Errors
    /// [`SlurmRestError`].
    pub fn call(
        &self,
        v: ApiVersion,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, SlurmRestError> {
        let url = self.url(path);
        let a = self.request(method, path, body)?;
        let json: Option<Value> = serde_json::from_str(&a.body).ok();
        let errs = json.as_ref().map(errors).unwrap_or_default();
        if (200..300).contains(&a.status) && errs.is_empty() {
            return json.ok_or_else(|| SlurmRestError::BadAnswer {
                url,
                reason: format!("not JSON: {}", excerpt(&a.body)),
            });
        }
        if errs.is_empty() {
            return Err(SlurmRestError::Http {
                url,
                status: a.status,
                body_excerpt: excerpt(&a.body),
            });
        }
        let auth = errs.iter().any(|e| {
            e.number == SLURM_PROTOCOL_AUTHENTICATION_ERROR
                || e.text.to_ascii_lowercase().contains("authentication")
        });
        if auth {
            return Err(SlurmRestError::Unauthorized {
                url,
                user: self.auth.user().to_string(),
                status: a.status,
                detail: format!(
                    "{}; the token is wrong or expired; a new one: `scontrol token username={}`",
                    joined(&errs),
                    self.auth.user()
                ),
            });
        }
        if errs.iter().all(|e| e.number == -1) && !self.ping_ok(v) {
            // Slurm 22.05 answers a refused token with its generic text for
            // the operation ("Unable to find JobId=1" for a job that runs):
            // only the call and "Unspecified error" are facts, not the text.
            return Err(SlurmRestError::Unauthorized {
                url,
                user: self.auth.user().to_string(),
                status: a.status,
                detail: format!(
                    "slurmctld gave no reason ({}) and refused a ping as well: the token is wrong or expired (or slurmctld is down); the job's own state is not known; a new token: `scontrol token username={}`",
                    unspecified(&errs),
                    self.auth.user()
                ),
            });
        }
        Err(SlurmRestError::Slurm {
            url,
            status: a.status,
            errors: joined(&errs),
            number: errs.first().map_or(-1, |e| e.number),
        })
    }

    fn ping_ok(&self, v: ApiVersion) -> bool {
        self.request("GET", &v.ping_path(), None)
            .is_ok_and(|a| a.status == 200)
    }
}

/// True when `e` says the controller has no such job.
pub fn is_invalid_job(e: &SlurmRestError) -> bool {
    matches!(e, SlurmRestError::Slurm { number, .. } if *number == ESLURM_INVALID_JOB_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(exp: u64) -> String {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.sig",
            enc(r#"{"alg":"HS256","typ":"JWT"}"#),
            enc(&format!(r#"{{"exp":{exp},"iat":1,"sun":"svc"}}"#))
        )
    }

    #[test]
    fn token_file_is_reread_when_it_changes_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwt");
        let first = jwt(now_s() + 600);
        std::fs::write(&path, format!("SLURM_JWT={first}\n")).unwrap();
        let tf = TokenFile::new(path.clone(), "svc".into());
        assert_eq!(tf.token().unwrap().expose(), first);
        let shown = format!("{tf:?}");
        assert!(!shown.contains(&first), "{shown}");
        // Expired: a clear error naming the file and how to renew.
        std::fs::write(&path, jwt(now_s() - 30)).unwrap();
        let e = tf.token().unwrap_err();
        assert!(matches!(e, SlurmRestError::TokenExpired { .. }), "{e}");
        assert!(e.is_credential_error());
        assert!(e.to_string().contains("scontrol token username=svc"), "{e}");
        // Renewed (same length, so the change is seen by mtime or size).
        let renewed = format!("{}x", jwt(now_s() + 900));
        std::fs::write(&path, &renewed).unwrap();
        assert_eq!(tf.token().unwrap().expose(), renewed);
        std::fs::write(&path, "not a jwt").unwrap();
        assert!(matches!(
            tf.token().unwrap_err(),
            SlurmRestError::TokenInvalid { .. }
        ));
    }

    #[test]
    fn a_token_file_without_a_jwt_says_how_to_write_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwt");
        let tf = TokenFile::new(path.clone(), "svc".into());
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        for (text, why) in [
            ("", "is empty"),
            ("\n", "is empty"),
            ("SLURM_JWT=\n", "is empty"),
            ("hello", "does not hold a JWT"),
            ("hello\n", "does not hold a JWT"),
            ("a.b", "does not hold a JWT"),
            ("a.b.c.d", "does not hold a JWT"),
            ("a.!!.c", "does not hold a JWT"),
            (&format!("x.{}.y", enc("not json")), "does not hold a JWT"),
            ("one two", "without spaces"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = tf.token().unwrap_err();
            assert!(
                matches!(e, SlurmRestError::TokenInvalid { .. }),
                "{text:?}: {e}"
            );
            assert!(e.is_credential_error());
            let m = e.to_string();
            assert!(
                m.contains(&path.display().to_string())
                    && m.contains(why)
                    && m.contains("scontrol token username=svc")
                    && m.contains("user `svc`"),
                "{text:?}: {m}"
            );
        }
        // A JWT with a trailing newline is fine.
        let good = jwt(now_s() + 600);
        std::fs::write(&path, format!("{good}\n")).unwrap();
        assert_eq!(tf.token().unwrap().expose(), good);
    }

    #[test]
    fn host_port_needs_http_a_host_and_a_port_and_nothing_else() {
        assert_eq!(host_port("http://h:6820"), Ok(("h".into(), 6820)));
        assert_eq!(host_port("http://h:6820/"), Ok(("h".into(), 6820)));
        assert_eq!(host_port("HTTP://h:6820"), Ok(("h".into(), 6820)));
        assert_eq!(host_port("http://[::1]:6820"), Ok(("::1".into(), 6820)));
        for (bad, why) in [
            ("https://h:6820", "https is not supported"),
            ("h:6820", "must be http://host:port or unix:/path"),
            ("ftp://h:6820", "must be http://host:port or unix:/path"),
            ("http://h", "must name the port"),
            ("http://[::1]", "must name the port"),
            ("http://h:0", "1..=65535"),
            ("http://h:x", "1..=65535"),
            ("http://:6820", "must be http://host:port"),
            ("http://h:6820/x", "with no path"),
            ("http://h:6820?x", "with no path"),
            ("http://u@h:6820", "with no path"),
            ("http://h:6820/#x", "with no path"),
        ] {
            let e = host_port(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
