//! SSH sessions (DESIGN.md §7): connect, verify the host key against
//! `known_hosts`, log in with a key file, run commands.
//!
//! Built on `ssh2` (libssh2). Host keys are checked by this crate's own
//! [`known_hosts`] reader (plain, `[host]:port`, wildcard and hashed
//! `|1|salt|hash` entries): an unknown host is refused with its fingerprint
//! printed as `ssh` prints it, unless [`SshConfig::accept_new`] is set (then
//! the key is appended); a changed key is always refused.
//!
//! ```no_run
//! use gpu_metrics::ssh::{SshConfig, SshSession};
//!
//! # fn main() -> Result<(), gpu_metrics::ssh::SshError> {
//! let config = SshConfig::builder("login1.cluster", "svc-aif", "/etc/aif/id_ed25519")
//!     .port(22)
//!     .build()?;
//! let session = SshSession::connect(&config)?;
//! let out = session.exec(&["squeue".into(), "--me".into(), "--noheader".into()])?;
//! assert_eq!(out.status, 0);
//! # Ok(())
//! # }
//! ```
//!
//! Tunnels built on the same sessions are in [`crate::tunnel`].

pub mod known_hosts;

use std::fmt;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ssh2::{ErrorCode, MethodType, Session};

pub use known_hosts::{
    HostKeyStatus, KnownHosts, fingerprint_sha256, key_type_label, key_type_of_blob, lookup_name,
};

/// Default SSH port.
pub const DEFAULT_PORT: u16 = 22;
/// Default connect (and handshake, login) timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default keepalive interval.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

// libssh2 error codes (libssh2.h) that this module tells apart.
pub(crate) const ERR_EAGAIN: i32 = -37;
const ERR_FILE: i32 = -16;
const ERR_AUTHENTICATION_FAILED: i32 = -18;
const ERR_PUBLICKEY_UNVERIFIED: i32 = -19;
const ERR_KEYFILE_AUTH_FAILED: i32 = -48;
const ERR_CHANNEL_FAILURE: i32 = -21;
const ERR_CHANNEL_REQUEST_DENIED: i32 = -22;
const ERR_CHANNEL_UNKNOWN: i32 = -23;
const ERR_CHANNEL_WINDOW_EXCEEDED: i32 = -24;
const ERR_CHANNEL_PACKET_EXCEEDED: i32 = -25;
const ERR_CHANNEL_CLOSED: i32 = -26;
const ERR_CHANNEL_EOF_SENT: i32 = -27;
const ERR_REQUEST_DENIED: i32 = -32;

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

/// `~/.ssh/known_hosts` of the current user (`$HOME`, else the password
/// database).
pub fn default_known_hosts() -> PathBuf {
    home_dir().join(".ssh").join("known_hosts")
}

fn home_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    // SAFETY: getpwuid returns a pointer into static storage or null; we copy
    // the directory out at once and do not keep the pointer.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if !pw.is_null() && !(*pw).pw_dir.is_null() {
            let dir = std::ffi::CStr::from_ptr((*pw).pw_dir);
            return PathBuf::from(std::ffi::OsStr::from_encoded_bytes_unchecked(
                dir.to_bytes(),
            ));
        }
    }
    PathBuf::from("/")
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

/// Everything that can go wrong with SSH. No variant carries a passphrase.
///
/// [`SshError::is_retryable`] tells transient failures (network, server
/// restarting) from the ones that need an operator (host key, login, config).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SshError {
    /// A configuration field is invalid.
    #[error("invalid SSH configuration: {field}: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The host name did not resolve.
    #[error("cannot resolve SSH host {host}:{port}: {source}")]
    Resolve {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Resolver error.
        source: io::Error,
    },
    /// The TCP connection failed (refused, unreachable, timed out).
    #[error("cannot connect to SSH server {host}:{port}: {source}")]
    Connect {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Socket error.
        source: io::Error,
    },
    /// The SSH handshake (banner, key exchange) failed.
    #[error("SSH handshake with {host}:{port} failed: {source}")]
    Handshake {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// libssh2's error.
        source: ssh2::Error,
    },
    /// The server offered no host key we can read.
    #[error("SSH server {host}:{port} offered no usable host key")]
    NoHostKey {
        /// Host.
        host: String,
        /// Port.
        port: u16,
    },
    /// The host is not in known_hosts (and `accept_new` is off).
    #[error(
        "host key verification failed: the authenticity of host '{}' can't be established: \
         {} key fingerprint is {fingerprint}; not in {}: add it (ssh-keyscan -p {port} {host}) \
         or set accept_new",
        lookup_name(host, *port), key_type_label(key_type), known_hosts.display()
    )]
    HostKeyUnknown {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// The key's type as in known_hosts (`ssh-ed25519`, `ssh-rsa`, …).
        key_type: String,
        /// `SHA256:…`, as `ssh` prints it.
        fingerprint: String,
        /// The file that was searched.
        known_hosts: PathBuf,
    },
    /// The host is known with another key: possible man-in-the-middle.
    #[error(
        "host key verification failed: REMOTE HOST IDENTIFICATION HAS CHANGED for '{}': \
         it offered {} key {fingerprint}, which differs from {}:{line}",
        lookup_name(host, *port), key_type_label(key_type), known_hosts.display()
    )]
    HostKeyChanged {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// The type of the key the server offered.
        key_type: String,
        /// Its `SHA256:…` fingerprint.
        fingerprint: String,
        /// The known_hosts file.
        known_hosts: PathBuf,
        /// The line that holds the known key.
        line: usize,
    },
    /// The key the server offered is marked `@revoked`.
    #[error(
        "host key verification failed: {} key {fingerprint} of '{}' is revoked in {}:{line}",
        key_type_label(key_type), lookup_name(host, *port), known_hosts.display()
    )]
    HostKeyRevoked {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Key type.
        key_type: String,
        /// `SHA256:…` fingerprint.
        fingerprint: String,
        /// The known_hosts file.
        known_hosts: PathBuf,
        /// The `@revoked` line.
        line: usize,
    },
    /// The known_hosts file could not be read or appended to.
    #[error("cannot {op} known_hosts file {}: {source}", path.display())]
    KnownHosts {
        /// The file.
        path: PathBuf,
        /// `read` or `append to`.
        op: &'static str,
        /// I/O error.
        source: io::Error,
    },
    /// The identity file is missing or unreadable.
    #[error("cannot read SSH identity file {}: {source}", path.display())]
    Identity {
        /// The file.
        path: PathBuf,
        /// I/O error.
        source: io::Error,
    },
    /// The identity file could not be used: unknown format, or a wrong or
    /// missing passphrase.
    #[error("SSH identity file {} is unusable (format or passphrase): {reason}", path.display())]
    IdentityUnusable {
        /// The file.
        path: PathBuf,
        /// libssh2's message (never contains the passphrase).
        reason: String,
    },
    /// The server refused the key for this user.
    #[error(
        "SSH authentication failed for {user}@{host} with key {}: {reason}",
        identity.display()
    )]
    AuthFailed {
        /// The user.
        user: String,
        /// Host.
        host: String,
        /// The key file that was offered.
        identity: PathBuf,
        /// libssh2's message.
        reason: String,
    },
    /// An SSH operation on an established session failed (the connection
    /// dropped, or a timeout).
    #[error("SSH {op} on {host}:{port} failed: {source}")]
    Session {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// What was being done (`open channel`, `exec`, `read`, …).
        op: &'static str,
        /// libssh2's error.
        source: ssh2::Error,
    },
    /// I/O on the SSH connection's socket failed.
    #[error("SSH {op} on {host}:{port} failed: {source}")]
    Io {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// What was being done.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The server refused to open a forwarding channel or listener
    /// (`AllowTcpForwarding no`, `PermitOpen`, port in use).
    #[error("SSH server {host}:{port} refused {what}: {source}")]
    ForwardRefused {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// What was asked (`direct-tcpip to pgw:9091`, `listen on port 9091`).
        what: String,
        /// libssh2's error.
        source: ssh2::Error,
    },
    /// A local socket for a tunnel could not be bound.
    #[error("cannot bind local tunnel socket {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// I/O error.
        source: io::Error,
    },
    /// `exec` was called with an unusable argument list.
    #[error("invalid command for SSH exec: {reason}")]
    InvalidCommand {
        /// What is wrong (empty argv, NUL byte in argument N).
        reason: String,
    },
    /// The remote command did not finish within `exec_timeout`.
    #[error("remote command {program} on {host} did not finish within {timeout:?}")]
    ExecTimeout {
        /// Host.
        host: String,
        /// The program (argv\[0\]) only, not its arguments.
        program: String,
        /// The timeout.
        timeout: Duration,
    },
}

impl SshError {
    /// True for transient failures worth retrying (network, server down or
    /// restarting, timeouts); false for those that need someone to change
    /// something (configuration, host key, key file, authorization).
    pub fn is_retryable(&self) -> bool {
        match self {
            SshError::Resolve { .. }
            | SshError::Connect { .. }
            | SshError::Handshake { .. }
            | SshError::Session { .. }
            | SshError::Io { .. }
            | SshError::ExecTimeout { .. } => true,
            // The server may refuse a listen while the previous session's
            // listener still holds the port.
            SshError::ForwardRefused { .. } => true,
            SshError::InvalidConfig { .. }
            | SshError::NoHostKey { .. }
            | SshError::HostKeyUnknown { .. }
            | SshError::HostKeyChanged { .. }
            | SshError::HostKeyRevoked { .. }
            | SshError::KnownHosts { .. }
            | SshError::Identity { .. }
            | SshError::IdentityUnusable { .. }
            | SshError::AuthFailed { .. }
            | SshError::Bind { .. }
            | SshError::InvalidCommand { .. } => false,
        }
    }
}

/// The libssh2 error code of `e`, if it is a session error.
pub(crate) fn session_code(e: &ssh2::Error) -> Option<i32> {
    match e.code() {
        ErrorCode::Session(c) => Some(c),
        ErrorCode::SFTP(_) => None,
    }
}

/// True when `e` concerns one channel only; anything else means the session
/// (transport) is broken.
pub(crate) fn is_channel_error(e: &ssh2::Error) -> bool {
    matches!(
        session_code(e),
        Some(
            ERR_CHANNEL_FAILURE
                | ERR_CHANNEL_REQUEST_DENIED
                | ERR_CHANNEL_UNKNOWN
                | ERR_CHANNEL_WINDOW_EXCEEDED
                | ERR_CHANNEL_PACKET_EXCEEDED
                | ERR_CHANNEL_CLOSED
                | ERR_CHANNEL_EOF_SENT
                | ERR_REQUEST_DENIED
        )
    )
}

pub(crate) fn is_eagain(e: &ssh2::Error) -> bool {
    session_code(e) == Some(ERR_EAGAIN)
}

/// An authenticated libssh2 session and the socket under it (crate-internal:
/// [`SshSession`] and the tunnels own one each).
pub(crate) struct Connection {
    pub(crate) session: Session,
    pub(crate) fd: RawFd,
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Connection {
    /// Connects, verifies the host key, logs in. The session is left in
    /// blocking mode with the connect timeout set.
    pub(crate) fn establish(config: &SshConfig) -> Result<Connection, SshError> {
        config.validate()?;
        let host = config.host.clone();
        let port = config.port;
        // Fail early on a missing key file, before touching the network.
        std::fs::metadata(&config.identity_file).map_err(|source| SshError::Identity {
            path: config.identity_file.clone(),
            source,
        })?;
        let known = KnownHosts::load(&config.known_hosts)?;

        let stream = connect_tcp(&host, port, config.connect_timeout)?;
        tune_socket(&stream, config);
        let fd = stream.as_raw_fd();

        let mut session = Session::new().map_err(|source| SshError::Handshake {
            host: host.clone(),
            port,
            source,
        })?;
        session.set_tcp_stream(stream);
        session.set_blocking(true);
        session.set_timeout(duration_ms(config.connect_timeout));
        prefer_known_host_key_types(&session, &known.known_key_types(&host, port));
        session.handshake().map_err(|source| SshError::Handshake {
            host: host.clone(),
            port,
            source,
        })?;

        verify_host_key(config, &session, &known)?;

        if let Some(k) = config.keepalive_interval {
            session.set_keepalive(true, u32::try_from(k.as_secs()).unwrap_or(u32::MAX).max(1));
        }

        let passphrase = config.passphrase.as_ref().map(Passphrase::expose);
        if let Err(e) =
            session.userauth_pubkey_file(&config.user, None, &config.identity_file, passphrase)
        {
            return Err(auth_error(config, e));
        }
        if !session.authenticated() {
            return Err(SshError::AuthFailed {
                user: config.user.clone(),
                host,
                identity: config.identity_file.clone(),
                reason: "server did not complete authentication".to_string(),
            });
        }
        log::debug!("ssh: logged in to {}", config.destination());
        Ok(Connection {
            session,
            fd,
            host,
            port,
        })
    }

    pub(crate) fn session_err(&self, op: &'static str, source: ssh2::Error) -> SshError {
        SshError::Session {
            host: self.host.clone(),
            port: self.port,
            op,
            source,
        }
    }

    /// Politely ends the session (best effort, bounded by the session timeout).
    pub(crate) fn disconnect(&self, why: &str) {
        self.session.set_blocking(true);
        self.session.set_timeout(2000);
        let _ = self.session.disconnect(None, why, None);
    }
}

fn auth_error(config: &SshConfig, e: ssh2::Error) -> SshError {
    let reason = e.message().to_string();
    match session_code(&e) {
        Some(ERR_FILE | ERR_KEYFILE_AUTH_FAILED) => SshError::IdentityUnusable {
            path: config.identity_file.clone(),
            reason,
        },
        Some(ERR_AUTHENTICATION_FAILED | ERR_PUBLICKEY_UNVERIFIED) => SshError::AuthFailed {
            user: config.user.clone(),
            host: config.host.clone(),
            identity: config.identity_file.clone(),
            reason,
        },
        _ => SshError::Session {
            host: config.host.clone(),
            port: config.port,
            op: "authentication",
            source: e,
        },
    }
}

fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, SshError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|source| SshError::Resolve {
            host: host.to_string(),
            port,
            source,
        })?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no addresses");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(SshError::Connect {
        host: host.to_string(),
        port,
        source: last,
    })
}

/// TCP keepalive and a user timeout, so a silently dead peer (no RST) is
/// noticed once keepalive packets stop being acknowledged.
fn tune_socket(stream: &TcpStream, config: &SshConfig) {
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let user_timeout = config
        .keepalive_interval
        .map_or(config.connect_timeout * 3, |k| {
            (k * 3).max(config.connect_timeout)
        });
    let ms = libc::c_uint::try_from(user_timeout.as_millis()).unwrap_or(libc::c_uint::MAX);
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with pointers to live locals of
    // the sizes passed.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_KEEPALIVE,
            (&raw const on).cast(),
            std::mem::size_of_val(&on) as libc::socklen_t,
        );
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&raw const ms).cast(),
            std::mem::size_of_val(&ms) as libc::socklen_t,
        );
    }
}

pub(crate) fn duration_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}

/// Puts host key algorithms whose key types known_hosts already holds for
/// this host first, so a server with several host keys offers the known one
/// (as OpenSSH does) and strict checking does not see a "changed" key.
fn prefer_known_host_key_types(session: &Session, known_types: &[String]) {
    if known_types.is_empty() {
        return;
    }
    let Ok(supported) = session.supported_algs(MethodType::HostKey) else {
        return;
    };
    let algs_for = |key_type: &str| -> Vec<&'static str> {
        supported
            .iter()
            .copied()
            .filter(|alg| match key_type {
                "ssh-rsa" => matches!(*alg, "rsa-sha2-512" | "rsa-sha2-256" | "ssh-rsa"),
                t => *alg == t,
            })
            .collect()
    };
    let mut order: Vec<&'static str> = Vec::new();
    for t in known_types {
        for alg in algs_for(t) {
            if !order.contains(&alg) {
                order.push(alg);
            }
        }
    }
    if order.is_empty() {
        return;
    }
    for alg in &supported {
        if !order.contains(alg) {
            order.push(alg);
        }
    }
    if let Err(e) = session.method_pref(MethodType::HostKey, &order.join(",")) {
        log::debug!("ssh: cannot set host key preference: {e}");
    }
}

fn verify_host_key(
    config: &SshConfig,
    session: &Session,
    known: &KnownHosts,
) -> Result<(), SshError> {
    let (host, port) = (&config.host, config.port);
    let Some((blob, _)) = session.host_key() else {
        return Err(SshError::NoHostKey {
            host: host.clone(),
            port,
        });
    };
    let key_type = key_type_of_blob(blob).unwrap_or("unknown").to_string();
    let fingerprint = fingerprint_sha256(blob);
    match known.check(host, port, blob) {
        HostKeyStatus::Match { .. } => Ok(()),
        HostKeyStatus::Revoked { line } => Err(SshError::HostKeyRevoked {
            host: host.clone(),
            port,
            key_type,
            fingerprint,
            known_hosts: config.known_hosts.clone(),
            line,
        }),
        HostKeyStatus::Mismatch { line } => Err(SshError::HostKeyChanged {
            host: host.clone(),
            port,
            key_type,
            fingerprint,
            known_hosts: config.known_hosts.clone(),
            line,
        }),
        HostKeyStatus::NotFound if config.accept_new => {
            KnownHosts::append(&config.known_hosts, host, port, blob)?;
            log::info!(
                "ssh: permanently added '{}' ({} {}) to {}",
                lookup_name(host, port),
                key_type,
                fingerprint,
                config.known_hosts.display()
            );
            Ok(())
        }
        HostKeyStatus::NotFound => Err(SshError::HostKeyUnknown {
            host: host.clone(),
            port,
            key_type,
            fingerprint,
            known_hosts: config.known_hosts.clone(),
        }),
    }
}

/// Quotes one argument for a POSIX shell: wrapped in single quotes, each `'`
/// written as `'\''`. The result is always one word, taken literally.
pub fn shell_quote(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Joins `argv` into one command line for a POSIX shell, every argument
/// quoted by [`shell_quote`].
pub fn shell_join(argv: &[String]) -> String {
    argv.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a remote command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit status; 128 + N when the command was killed by signal N (as a
    /// shell reports it).
    pub status: i32,
    /// Standard output (invalid UTF-8 replaced).
    pub stdout: String,
    /// Standard error (invalid UTF-8 replaced).
    pub stderr: String,
}

impl ExecOutput {
    /// True when the status is 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// A logged-in SSH session for running commands.
///
/// `Send + Sync`; calls on one session are serialised (libssh2 sessions are
/// not thread-safe). Open several sessions for parallel commands. When the
/// connection has dropped, the next [`SshSession::exec`] logs in again once
/// before giving up (only before the command was started, so nothing runs
/// twice).
pub struct SshSession {
    config: SshConfig,
    conn: Mutex<Option<Connection>>,
}

impl fmt::Debug for SshSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshSession")
            .field("destination", &self.config.destination())
            .finish_non_exhaustive()
    }
}

impl SshSession {
    /// Connects, verifies the host key, and logs in.
    ///
    /// # Errors
    /// Any [`SshError`]: `InvalidConfig`, `Resolve`, `Connect`, `Handshake`,
    /// `HostKeyUnknown`/`HostKeyChanged`/`HostKeyRevoked`, `KnownHosts`,
    /// `Identity`/`IdentityUnusable`, `AuthFailed`.
    pub fn connect(config: &SshConfig) -> Result<SshSession, SshError> {
        let conn = Connection::establish(config)?;
        Ok(SshSession {
            config: config.clone(),
            conn: Mutex::new(Some(conn)),
        })
    }

    /// The configuration this session was opened with.
    pub fn config(&self) -> &SshConfig {
        &self.config
    }

    /// Runs `argv` on the remote host and collects its output and exit status.
    ///
    /// SSH carries one command string that the remote user's login shell
    /// parses, so every argument is quoted with [`shell_quote`]: the remote
    /// program receives exactly `argv`, whatever characters it holds. (The
    /// login shell must be POSIX-compatible: sh, bash, dash, zsh, ksh.)
    ///
    /// # Errors
    /// `InvalidCommand` for an empty `argv` or a NUL byte; `Session`/`Io` when
    /// the connection fails (after one reconnect attempt if it failed before the
    /// command started); `ExecTimeout` when `exec_timeout` passes; login errors
    /// from a reconnect.
    pub fn exec(&self, argv: &[String]) -> Result<ExecOutput, SshError> {
        let Some(program) = argv.first() else {
            return Err(SshError::InvalidCommand {
                reason: "argv is empty".to_string(),
            });
        };
        if let Some(i) = argv.iter().position(|a| a.contains('\0')) {
            return Err(SshError::InvalidCommand {
                reason: format!("argument {i} contains a NUL byte"),
            });
        }
        let command = shell_join(argv);
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut reconnected = false;
        loop {
            if guard.is_none() {
                *guard = Some(Connection::establish(&self.config)?);
                reconnected = true;
            }
            let Some(conn) = guard.as_ref() else { continue };
            match start_command(conn, &self.config, &command) {
                Ok(channel) => {
                    let result = collect_output(conn, &self.config, program, channel);
                    if result.as_ref().is_err_and(SshError::is_retryable) {
                        // The connection is suspect: log in afresh next time.
                        *guard = None;
                    }
                    return result;
                }
                Err(e) => {
                    *guard = None;
                    if reconnected || !e.is_retryable() {
                        return Err(e);
                    }
                    log::warn!(
                        "ssh: {} connection lost ({e}); logging in again",
                        self.config.destination()
                    );
                }
            }
        }
    }
}

fn start_command(
    conn: &Connection,
    config: &SshConfig,
    command: &str,
) -> Result<ssh2::Channel, SshError> {
    conn.session.set_blocking(true);
    conn.session
        .set_timeout(duration_ms(config.connect_timeout));
    let mut channel = conn
        .session
        .channel_session()
        .map_err(|e| conn.session_err("open session channel", e))?;
    channel
        .exec(command)
        .map_err(|e| conn.session_err("exec", e))?;
    Ok(channel)
}

fn collect_output(
    conn: &Connection,
    config: &SshConfig,
    program: &str,
    mut channel: ssh2::Channel,
) -> Result<ExecOutput, SshError> {
    let deadline = config.exec_timeout.map(|t| Instant::now() + t);
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    let session = &conn.session;
    session.set_blocking(false);
    let io_err = |op: &'static str, source: io::Error| SshError::Io {
        host: conn.host.clone(),
        port: conn.port,
        op,
        source,
    };
    // Read stdout and stderr in turn without blocking, so that a command that
    // fills one of them does not stall waiting for the other to be read.
    loop {
        let mut progress = false;
        for (stream_id, sink) in [(0, &mut stdout), (1, &mut stderr)] {
            let mut stream = channel.stream(stream_id);
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        sink.extend_from_slice(&buf[..n]);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        session.set_blocking(true);
                        return Err(io_err("read command output", e));
                    }
                }
            }
        }
        if channel.eof() {
            break;
        }
        if progress {
            continue;
        }
        let mut wait = Duration::from_secs(1);
        if let Some(d) = deadline {
            let now = Instant::now();
            if now >= d {
                // sshd holds the channel open while the command runs, so a
                // polite close would wait for it: abandon the connection
                // instead (the caller drops it). As with `ssh host cmd`
                // without a tty, the remote command may run on.
                session.set_blocking(true);
                session.set_timeout(200);
                drop(channel);
                return Err(SshError::ExecTimeout {
                    host: conn.host.clone(),
                    program: program.to_string(),
                    timeout: config.exec_timeout.unwrap_or_default(),
                });
            }
            wait = wait.min(d - now);
        }
        match session.keepalive_send() {
            Ok(_) => {}
            Err(e) if is_eagain(&e) => {}
            Err(e) => {
                session.set_blocking(true);
                return Err(conn.session_err("keepalive", e));
            }
        }
        wait_socket(conn.fd, session, wait).map_err(|e| io_err("poll", e))?;
    }
    session.set_blocking(true);
    session.set_timeout(duration_ms(config.connect_timeout));
    channel
        .wait_close()
        .map_err(|e| conn.session_err("close channel", e))?;
    let mut status = channel
        .exit_status()
        .map_err(|e| conn.session_err("exit status", e))?;
    if let Ok(sig) = channel.exit_signal()
        && let Some(name) = sig.exit_signal
    {
        status = 128 + signal_number(&name);
    }
    Ok(ExecOutput {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

fn signal_number(name: &str) -> i32 {
    match name.trim_start_matches("SIG") {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "ABRT" => 6,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        _ => 127,
    }
}

/// Waits until the SSH socket is ready in the direction libssh2 is blocked
/// on (readable by default), or `timeout`.
pub(crate) fn wait_socket(fd: RawFd, session: &Session, timeout: Duration) -> io::Result<()> {
    let mut events = libc::POLLIN;
    if matches!(
        session.block_directions(),
        ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
    ) {
        events |= libc::POLLOUT;
    }
    let mut fds = [libc::pollfd {
        fd,
        events,
        revents: 0,
    }];
    poll(&mut fds, timeout).map(|_| ())
}

/// `poll(2)` over `fds`, retried on EINTR; the number of ready descriptors.
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<usize> {
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    loop {
        // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if rc >= 0 {
            return Ok(rc as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_is_posix_single_quotes() {
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("abc"), "'abc'");
        assert_eq!(shell_quote("a b'c"), "'a b'\\''c'");
        assert_eq!(
            shell_quote("$(rm -rf /); `x` \"y\" \\ *"),
            "'$(rm -rf /); `x` \"y\" \\ *'"
        );
        assert_eq!(shell_quote("'"), "''\\'''");
        assert_eq!(
            shell_join(&["printf".into(), "%s".into(), "a b'c".into()]),
            "'printf' '%s' 'a b'\\''c'"
        );
    }

    #[test]
    fn quoting_round_trips_through_sh() {
        let args: Vec<String> = vec![
            "a b'c".into(),
            String::new(),
            "$HOME `id` $(id) \"q\" \\n\n\t;|&<>*?[]{}~!#".into(),
            "''''".into(),
            "ünïcode ✓".into(),
        ];
        let mut argv = vec!["printf".to_string(), "%s\\0".to_string()];
        argv.extend(args.iter().cloned());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(shell_join(&argv))
            .output()
            .unwrap();
        let got: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .split('\0')
            .map(str::to_string)
            .collect();
        let mut expected = args.clone();
        expected.push(String::new());
        assert_eq!(got, expected);
    }

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

    #[test]
    fn retryable_split() {
        let e = SshError::Connect {
            host: "h".into(),
            port: 22,
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert!(e.is_retryable());
        let e = SshError::AuthFailed {
            user: "u".into(),
            host: "h".into(),
            identity: "/k".into(),
            reason: "denied".into(),
        };
        assert!(!e.is_retryable());
        let e = SshError::HostKeyUnknown {
            host: "127.0.0.1".into(),
            port: 2222,
            key_type: "ssh-ed25519".into(),
            fingerprint: "SHA256:abc".into(),
            known_hosts: "/kh".into(),
        };
        let text = e.to_string();
        assert!(text.contains("'[127.0.0.1]:2222'"), "{text}");
        assert!(
            text.contains("ED25519 key fingerprint is SHA256:abc"),
            "{text}"
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn session_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SshSession>();
        assert_send_sync::<SshConfig>();
    }
}
