//! [`SshError`], and how libssh2's error codes are told apart.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ssh2::ErrorCode;

use super::known_hosts::{key_type_label, lookup_name};

// libssh2 error codes (libssh2.h) that this module tells apart.
pub(crate) const ERR_EAGAIN: i32 = -37;
pub(super) const ERR_FILE: i32 = -16;
pub(super) const ERR_AUTHENTICATION_FAILED: i32 = -18;
pub(super) const ERR_PUBLICKEY_UNVERIFIED: i32 = -19;
pub(super) const ERR_KEYFILE_AUTH_FAILED: i32 = -48;
const ERR_CHANNEL_FAILURE: i32 = -21;
const ERR_CHANNEL_REQUEST_DENIED: i32 = -22;
const ERR_CHANNEL_UNKNOWN: i32 = -23;
const ERR_CHANNEL_WINDOW_EXCEEDED: i32 = -24;
const ERR_CHANNEL_PACKET_EXCEEDED: i32 = -25;
const ERR_CHANNEL_CLOSED: i32 = -26;
const ERR_CHANNEL_EOF_SENT: i32 = -27;
const ERR_REQUEST_DENIED: i32 = -32;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
