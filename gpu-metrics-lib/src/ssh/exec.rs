//! Running a command: [`SshSession::exec`] and its [`ExecOutput`].

use std::fmt;
use std::io::{self, Read};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::connect::{Connection, duration_ms};
use super::error::is_eagain;
use super::poll::wait_socket;
use super::{SshConfig, SshError};
use crate::shell::shell_join;

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
    ///
    /// [`shell_quote`]: crate::shell::shell_quote
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

impl SshSession {
    /// `GET path` of `http://host:port` as the SSH server's host sees it:
    /// over a `direct-tcpip` channel opened from the server (as `ssh -W`), an
    /// HTTP/1.0 request whose status code is returned; `Ok(None)` when the
    /// answer is not HTTP. For the hosts only the server reaches (compute
    /// nodes behind a login node). The whole exchange is bounded by
    /// `timeout`; the body is not read.
    ///
    /// # Errors
    /// `InvalidCommand` for a path that does not start with `/` or holds
    /// spaces or control characters, or a host with them; `ForwardRefused`
    /// when the server refuses the channel (nothing listens there,
    /// `AllowTcpForwarding no`); `Session` when reading fails or times out;
    /// login errors from a reconnect.
    pub fn http_status(
        &self,
        host: &str,
        port: u16,
        path: &str,
        timeout: Duration,
    ) -> Result<Option<u16>, SshError> {
        let bad = |c: char| c.is_control() || c.is_whitespace();
        if !path.starts_with('/') || path.chars().any(bad) {
            return Err(SshError::InvalidCommand {
                reason: format!("HTTP path {path:?} must start with / and hold no spaces"),
            });
        }
        if host.is_empty() || host.chars().any(bad) {
            return Err(SshError::InvalidCommand {
                reason: format!("host {host:?} is empty or holds spaces"),
            });
        }
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn: &Connection = match &mut *guard {
            Some(c) => c,
            slot @ None => slot.insert(Connection::establish(&self.config)?),
        };
        let session = &conn.session;
        session.set_blocking(true);
        session.set_timeout(duration_ms(timeout));
        let (gw_host, gw_port) = (self.config.host.clone(), self.config.port);
        let mut channel = match session.channel_direct_tcpip(host, port, None) {
            Ok(c) => c,
            Err(source) => {
                let e = SshError::ForwardRefused {
                    host: gw_host,
                    port: gw_port,
                    what: format!("direct-tcpip to {host}:{port}"),
                    source,
                };
                if session_broken(session) {
                    *guard = None;
                }
                return Err(e);
            }
        };
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let request =
            format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        let io_err = |op: &'static str, source: io::Error| SshError::Io {
            host: self.config.host.clone(),
            port: self.config.port,
            op,
            source,
        };
        let deadline = Instant::now() + timeout;
        let result = (|| {
            use std::io::Write;
            channel
                .write_all(request.as_bytes())
                .map_err(|e| io_err("write HTTP request", e))?;
            let mut head = Vec::with_capacity(256);
            let mut buf = [0u8; 1024];
            while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
                if Instant::now() >= deadline {
                    return Err(io_err(
                        "read HTTP status",
                        io::Error::new(io::ErrorKind::TimedOut, "no status line in time"),
                    ));
                }
                match channel.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                    Err(e) => return Err(io_err("read HTTP status", e)),
                }
            }
            let line = String::from_utf8_lossy(&head);
            let mut words = line.split_whitespace();
            Ok(match (words.next(), words.next()) {
                (Some(v), Some(code)) if v.starts_with("HTTP/1.") => code.parse().ok(),
                _ => None,
            })
        })();
        let _ = channel.close();
        if result.as_ref().is_err_and(SshError::is_retryable) && session_broken(session) {
            *guard = None;
        }
        result
    }
}

/// True when the session itself no longer answers (a keepalive cannot be
/// sent), as opposed to one refused channel.
fn session_broken(session: &ssh2::Session) -> bool {
    session.keepalive_send().is_err()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SshSession>();
        assert_send_sync::<SshConfig>();
    }
}
