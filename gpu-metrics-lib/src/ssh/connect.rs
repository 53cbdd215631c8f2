//! Connecting: TCP with keepalive, the SSH handshake, the host-key check
//! against known_hosts, and public-key login.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use ssh2::{MethodType, Session};

use super::error::{
    ERR_AUTHENTICATION_FAILED, ERR_FILE, ERR_KEYFILE_AUTH_FAILED, ERR_PUBLICKEY_UNVERIFIED,
    session_code,
};
use super::known_hosts::{
    HostKeyStatus, KnownHosts, fingerprint_sha256, key_type_of_blob, lookup_name,
};
use super::{Passphrase, SshConfig, SshError};

/// An authenticated libssh2 session and the socket under it (crate-internal:
/// [`SshSession`](super::SshSession) and the tunnels own one each).
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
