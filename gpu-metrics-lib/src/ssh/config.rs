//! Where and how to log in: [`SshConfig`], its builder and checks, and the
//! key's [`Passphrase`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::SshError;

/// Default SSH port.
pub const DEFAULT_PORT: u16 = 22;
/// Default connect (and handshake, login) timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default keepalive interval.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// A key passphrase. Its `Debug` output is redacted and it has no `Display`,
/// so it cannot end up in a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Passphrase(String);

impl Passphrase {
    /// Wraps a passphrase.
    pub fn new(secret: impl Into<String>) -> Self {
        Passphrase(secret.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// Where and how to log in. Build it with [`SshConfig::builder`] (which
/// validates), or fill the fields and call [`SshConfig::validate`].
#[derive(Clone)]
pub struct SshConfig {
    /// Host name or IP address of the SSH server (the gateway, login node).
    pub host: String,
    /// Its port (default 22).
    pub port: u16,
    /// The user to log in as.
    pub user: String,
    /// Private key file: ed25519 or RSA, OpenSSH or PEM format.
    pub identity_file: PathBuf,
    /// Passphrase of the key, if it has one. Never logged.
    pub passphrase: Option<Passphrase>,
    /// The known_hosts file (default `~/.ssh/known_hosts`).
    pub known_hosts: PathBuf,
    /// Accept and append the key of a host that is not in known_hosts yet
    /// (OpenSSH's `StrictHostKeyChecking=accept-new`). A changed key is
    /// refused regardless.
    pub accept_new: bool,
    /// Timeout for the TCP connect, and separately for the handshake and login.
    pub connect_timeout: Duration,
    /// How often to send a keepalive when the connection is idle; `None`
    /// disables keepalives. At least 1 s (libssh2 counts whole seconds).
    pub keepalive_interval: Option<Duration>,
    /// Longest time [`SshSession::exec`] waits for a command; `None` (default)
    /// waits for as long as it runs. On a timeout the connection is abandoned
    /// (the next call logs in again) and, as with `ssh host cmd` without a tty,
    /// the remote command may run on.
    ///
    /// [`SshSession::exec`]: super::SshSession::exec
    pub exec_timeout: Option<Duration>,
}

impl fmt::Debug for SshConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("identity_file", &self.identity_file)
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .field("known_hosts", &self.known_hosts)
            .field("accept_new", &self.accept_new)
            .field("connect_timeout", &self.connect_timeout)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("exec_timeout", &self.exec_timeout)
            .finish()
    }
}

/// `~/.ssh/known_hosts` of the current user, from the password database
/// ([`super::current_user`]: `getpwuid_r(geteuid())`, not `$HOME`). When
/// the user has no entry, `/.ssh/known_hosts`, which will not exist: the
/// session then fails naming that path, and `known_hosts` must be given.
pub fn default_known_hosts() -> PathBuf {
    super::args::current_user()
        .map(|u| u.home)
        .unwrap_or_else(|_| PathBuf::from("/"))
        .join(".ssh")
        .join("known_hosts")
}

impl SshConfig {
    /// Starts a builder with the three required settings; the rest default.
    pub fn builder(
        host: impl Into<String>,
        user: impl Into<String>,
        identity_file: impl Into<PathBuf>,
    ) -> SshConfigBuilder {
        SshConfigBuilder {
            config: SshConfig {
                host: host.into(),
                port: DEFAULT_PORT,
                user: user.into(),
                identity_file: identity_file.into(),
                passphrase: None,
                known_hosts: default_known_hosts(),
                accept_new: false,
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                keepalive_interval: Some(DEFAULT_KEEPALIVE_INTERVAL),
                exec_timeout: None,
            },
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`SshError::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<(), SshError> {
        let bad = |field: &'static str, reason: &str| {
            Err(SshError::InvalidConfig {
                field,
                reason: reason.to_string(),
            })
        };
        let host = self.host.as_str();
        if host.is_empty() {
            return bad("host", "must not be empty");
        }
        if host.starts_with('-')
            || host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '@')
        {
            return bad(
                "host",
                "must be a host name or IP address (no spaces, '@' or leading '-')",
            );
        }
        if self.port == 0 {
            return bad("port", "must be 1..=65535");
        }
        if self.user.is_empty() {
            return bad("user", "must not be empty");
        }
        if self.user.starts_with('-')
            || self
                .user
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '@' || c == ':')
        {
            return bad(
                "user",
                "must be a user name (no spaces, '@', ':' or leading '-')",
            );
        }
        if self.identity_file.as_os_str().is_empty() {
            return bad("identity_file", "must be set");
        }
        if self.known_hosts.as_os_str().is_empty() {
            return bad("known_hosts", "must be set");
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout", "must be greater than zero");
        }
        if self.connect_timeout > Duration::from_secs(3600) {
            return bad("connect_timeout", "must be at most one hour");
        }
        if let Some(k) = self.keepalive_interval
            && (k < Duration::from_secs(1) || k > Duration::from_secs(86_400))
        {
            return bad("keepalive_interval", "must be between 1 s and 1 day");
        }
        if self.exec_timeout.is_some_and(|t| t.is_zero()) {
            return bad("exec_timeout", "must be greater than zero");
        }
        Ok(())
    }

    /// `user@host:port`, for messages.
    pub fn destination(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

/// Builds a validated [`SshConfig`].
#[derive(Debug, Clone)]
pub struct SshConfigBuilder {
    config: SshConfig,
}

impl SshConfigBuilder {
    /// The server's port (default 22).
    pub fn port(mut self, port: u16) -> Self {
        self.config.port = port;
        self
    }

    /// The passphrase of the identity file.
    pub fn passphrase(mut self, passphrase: Passphrase) -> Self {
        self.config.passphrase = Some(passphrase);
        self
    }

    /// The known_hosts file (default `~/.ssh/known_hosts`).
    pub fn known_hosts(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.known_hosts = path.into();
        self
    }

    /// Accept and record the key of a host not in known_hosts yet.
    pub fn accept_new(mut self, accept: bool) -> Self {
        self.config.accept_new = accept;
        self
    }

    /// Timeout for connect, handshake and login (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Keepalive interval (default 15 s); `None` disables keepalives.
    pub fn keepalive_interval(mut self, interval: Option<Duration>) -> Self {
        self.config.keepalive_interval = interval;
        self
    }

    /// Longest time a command run by [`SshSession::exec`] may take.
    ///
    /// [`SshSession::exec`]: super::SshSession::exec
    pub fn exec_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.exec_timeout = timeout;
        self
    }

    /// Validates and returns the configuration.
    ///
    /// # Errors
    /// [`SshError::InvalidConfig`] as [`SshConfig::validate`].
    pub fn build(self) -> Result<SshConfig, SshError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation() {
        let ok = SshConfig::builder("gw", "u", "/k").build().unwrap();
        assert_eq!(ok.port, 22);
        assert!(ok.known_hosts.ends_with(".ssh/known_hosts"));
        let err = |b: SshConfigBuilder| match b.build() {
            Err(SshError::InvalidConfig { field, .. }) => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        };
        assert_eq!(err(SshConfig::builder("", "u", "/k")), "host");
        assert_eq!(
            err(SshConfig::builder("-oProxyCommand=x", "u", "/k")),
            "host"
        );
        assert_eq!(err(SshConfig::builder("gw", "u", "/k").port(0)), "port");
        assert_eq!(err(SshConfig::builder("gw", "a b", "/k")), "user");
        assert_eq!(err(SshConfig::builder("gw", "u", "")), "identity_file");
        assert_eq!(
            err(SshConfig::builder("gw", "u", "/k").connect_timeout(Duration::ZERO)),
            "connect_timeout"
        );
        assert_eq!(
            err(SshConfig::builder("gw", "u", "/k")
                .keepalive_interval(Some(Duration::from_millis(10)))),
            "keepalive_interval"
        );
    }

    #[test]
    fn passphrase_is_redacted() {
        let c = SshConfig::builder("gw", "u", "/k")
            .passphrase(Passphrase::new("hunter2"))
            .build()
            .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
    }
}
