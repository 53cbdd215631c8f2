//! SSH tunnels (DESIGN.md §7): a **local forward** for the exporter (reach the
//! Pushgateway or Prometheus through a gateway host) and a **remote forward**
//! for the API (like `ssh -R 9091:pushgateway:9091 node`).
//!
//! ## Why a loopback listener, not a custom connector
//!
//! [`LocalForward`] listens on `127.0.0.1:0` and carries every accepted TCP
//! connection over its own `direct-tcpip` channel; the HTTP sinks simply use
//! `http://127.0.0.1:PORT` ([`LocalForward::local_addr`]). The alternative, a
//! ureq `Connector`/`Transport` that opens a channel per request, was rejected:
//!
//! - **The sinks stay unaware of SSH.** They keep ureq's own connection
//!   handling, timeouts and pooling, and can be tested (and configured) the same
//!   with or without a tunnel; anything that speaks TCP (a second sink, `curl`
//!   while debugging on the node) can use the tunnel.
//! - **libssh2 sessions are not thread-safe.** One session is driven by one
//!   pump thread that owns it and multiplexes all channels with `poll(2)` in
//!   non-blocking mode. A connector would hand channels to the sinks' threads,
//!   so every read and write would contend on the session lock, and a blocking
//!   read on one channel would stall the others.
//! - **Reconnects are invisible to the sinks.** The listener and its port stay
//!   the same across reconnects; while the session is down, new connections
//!   are accepted and closed at once, so a sink sees a fast connection error
//!   and applies its own backoff (and its data stays in the write-ahead buffer).
//!
//! The cost is one loopback hop and one file descriptor pair per connection,
//! negligible for a few pushes per second. The port is bound to loopback only;
//! other local users can connect to it, as with `ssh -L` (use a dedicated
//! gateway account restricted with `permitopen=` in authorized_keys).
//!
//! ## Reconnects
//!
//! When the session dies (gateway rebooted, network cut: noticed by a failed
//! read, a keepalive, or `TCP_USER_TIMEOUT`), the pump logs in again with
//! exponential backoff and full jitter ([`crate::retry`], 500 ms doubling to
//! 30 s by default): never a hot loop, never a panic. A session that stays up longer
//! than the backoff cap resets the backoff. Permanent errors (changed host
//! key, refused key) are retried the same way, so that fixing the gateway side
//! is enough, and logged each time.
//!
//! ## Metrics
//!
//! [`TunnelStats`] holds atomics for [`TUNNEL_UP_METRIC`] and
//! [`TUNNEL_RECONNECTS_METRIC`] (and a few more); the exporter publishes them.

mod pump;

use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::retry::BackoffPolicy;
use crate::ssh::{SshConfig, SshError};

/// Gauge name for "the tunnel's session is up" (0/1).
pub const TUNNEL_UP_METRIC: &str = "aif_exporter_tunnel_up";
/// Counter name for "sessions re-established after a failure".
pub const TUNNEL_RECONNECTS_METRIC: &str = "aif_exporter_tunnel_reconnects_total";

/// How a tunnel starts and retries.
#[derive(Debug, Clone)]
pub struct TunnelOptions {
    /// Retry policy for logging in again (validated by `start_with`).
    pub backoff: BackoffPolicy,
    /// When true (default), `start_with` logs in before returning and returns
    /// the error of that first attempt. When false it returns at once and the
    /// first login happens in the background with the same backoff (for an
    /// exporter that must start while the gateway is down).
    pub wait_for_first_login: bool,
    /// Local listen address of a [`LocalForward`] (default `127.0.0.1:0`: a free
    /// port on loopback).
    pub local_addr: SocketAddr,
    /// Address the server listens on for a [`RemoteForward`] (default
    /// `localhost`: the server's loopback, as `ssh -R` does without
    /// `GatewayPorts`).
    pub remote_bind_host: String,
}

impl Default for TunnelOptions {
    fn default() -> Self {
        TunnelOptions {
            backoff: BackoffPolicy::default(),
            wait_for_first_login: true,
            local_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            remote_bind_host: "localhost".to_string(),
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    up: AtomicBool,
    stop: AtomicBool,
    reconnects: AtomicU64,
    login_attempts: AtomicU64,
    login_failures: AtomicU64,
    channels_opened: AtomicU64,
    channels_failed: AtomicU64,
    channels_active: AtomicU64,
    refused_while_down: AtomicU64,
    remote_port: AtomicU16,
    last_error: Mutex<Option<Arc<SshError>>>,
}

impl Shared {
    fn set_last_error(&self, e: SshError) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(e));
    }
}

/// Live counters of one tunnel, cheap to clone and read from any thread.
#[derive(Debug, Clone)]
pub struct TunnelStats {
    shared: Arc<Shared>,
}

impl TunnelStats {
    /// True while a logged-in session carries the tunnel
    /// ([`TUNNEL_UP_METRIC`]).
    pub fn up(&self) -> bool {
        self.shared.up.load(Ordering::SeqCst)
    }

    /// Sessions established after the first one ([`TUNNEL_RECONNECTS_METRIC`]).
    pub fn reconnects(&self) -> u64 {
        self.shared.reconnects.load(Ordering::SeqCst)
    }

    /// Login attempts so far, the first one included.
    pub fn login_attempts(&self) -> u64 {
        self.shared.login_attempts.load(Ordering::SeqCst)
    }

    /// Login attempts that failed.
    pub fn login_failures(&self) -> u64 {
        self.shared.login_failures.load(Ordering::SeqCst)
    }

    /// Forwarded connections opened (channels established).
    pub fn channels_opened(&self) -> u64 {
        self.shared.channels_opened.load(Ordering::SeqCst)
    }

    /// Forwarded connections that could not be opened (the far side refused).
    pub fn channels_failed(&self) -> u64 {
        self.shared.channels_failed.load(Ordering::SeqCst)
    }

    /// Forwarded connections open now.
    pub fn channels_active(&self) -> u64 {
        self.shared.channels_active.load(Ordering::SeqCst)
    }

    /// Local connections closed at once because the session was down.
    pub fn refused_while_down(&self) -> u64 {
        self.shared.refused_while_down.load(Ordering::SeqCst)
    }

    /// Why the session last failed (or could not be established), if it did.
    pub fn last_error(&self) -> Option<Arc<SshError>> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The running pump thread and the way to stop it.
#[derive(Debug)]
struct Handle {
    /// The counters the pump updates (and the stop flag).
    stats: TunnelStats,
    waker: UnixStream,
    thread: Option<JoinHandle<()>>,
}

impl Handle {
    /// Stops the pump thread and waits for it. Idempotent.
    fn stop(&mut self) {
        let shared = &self.stats.shared;
        shared.stop.store(true, Ordering::SeqCst);
        let _ = std::io::Write::write(&mut &self.waker, &[1]);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        shared.up.store(false, Ordering::SeqCst);
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A local forward: `127.0.0.1:PORT` → (SSH gateway) → `remote_host:remote_port`.
///
/// Stops (and closes every forwarded connection) when dropped.
#[derive(Debug)]
pub struct LocalForward {
    local_addr: SocketAddr,
    handle: Handle,
}

impl LocalForward {
    /// Logs in to `config`'s host and forwards a new loopback port to
    /// `remote_host:remote_port` (as seen from the gateway), with default
    /// [`TunnelOptions`].
    ///
    /// # Errors
    /// The first login's error (`HostKeyUnknown`, `AuthFailed`, `Connect`, …),
    /// an invalid configuration, or [`SshError::Bind`].
    pub fn start(
        config: &SshConfig,
        remote_host: &str,
        remote_port: u16,
    ) -> Result<LocalForward, SshError> {
        Self::start_with(config, remote_host, remote_port, TunnelOptions::default())
    }

    /// As [`LocalForward::start`], with `options`.
    ///
    /// # Errors
    /// As [`LocalForward::start`]; with `wait_for_first_login = false` only an
    /// invalid configuration or [`SshError::Bind`].
    pub fn start_with(
        config: &SshConfig,
        remote_host: &str,
        remote_port: u16,
        options: TunnelOptions,
    ) -> Result<LocalForward, SshError> {
        config.validate()?;
        validate_backoff(&options.backoff)?;
        check_host(
            "remote_host",
            remote_host,
            "must be a host name or IP address",
        )?;
        if remote_port == 0 {
            return Err(SshError::InvalidConfig {
                field: "remote_port",
                reason: "must be 1..=65535".to_string(),
            });
        }
        let listener = TcpListener::bind(options.local_addr).map_err(|source| SshError::Bind {
            addr: options.local_addr,
            source,
        })?;
        let local_addr = listener.local_addr().map_err(|source| SshError::Bind {
            addr: options.local_addr,
            source,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| SshError::Bind {
                addr: local_addr,
                source,
            })?;
        let mode = pump::Mode::Local {
            listener,
            remote_host: remote_host.to_string(),
            remote_port,
        };
        let label = format!(
            "gateway={} remote={remote_host}:{remote_port} local={local_addr}",
            config.destination()
        );
        let handle = pump::spawn(config.clone(), mode, options, label, "aif-tunnel-local")?;
        Ok(LocalForward { local_addr, handle })
    }

    /// The loopback address to connect to (`http://{local_addr}` for HTTP);
    /// the same for the whole life of the forward.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// True while the SSH session is up.
    pub fn is_up(&self) -> bool {
        self.handle.stats.up()
    }

    /// Sessions re-established after a failure.
    pub fn reconnects(&self) -> u64 {
        self.handle.stats.reconnects()
    }

    /// A handle on the counters, for publishing as metrics.
    pub fn stats(&self) -> TunnelStats {
        self.handle.stats.clone()
    }

    /// Stops the pump thread, closes every forwarded connection and the
    /// listener, and logs out. Idempotent.
    pub fn stop(&mut self) {
        self.handle.stop();
    }
}

/// A remote forward: the SSH server listens on `remote_bind_port` (on its
/// loopback by default) and every connection made there is piped to
/// `local_target` from this host, like `ssh -R PORT:target`.
///
/// Stops (cancelling the server's listener) when dropped.
#[derive(Debug)]
pub struct RemoteForward {
    target: SocketAddr,
    handle: Handle,
}

impl RemoteForward {
    /// Logs in and asks the server to listen on `remote_bind_port` (0: the
    /// server picks one, see [`RemoteForward::remote_port`]; the same port is
    /// asked for again after a reconnect).
    ///
    /// # Errors
    /// The first login's error, [`SshError::ForwardRefused`] when the server
    /// will not listen (`AllowTcpForwarding`, port in use), or an invalid
    /// configuration.
    pub fn start(
        config: &SshConfig,
        remote_bind_port: u16,
        local_target: SocketAddr,
    ) -> Result<RemoteForward, SshError> {
        Self::start_with(
            config,
            remote_bind_port,
            local_target,
            TunnelOptions::default(),
        )
    }

    /// As [`RemoteForward::start`], with `options`.
    ///
    /// # Errors
    /// As [`RemoteForward::start`]; with `wait_for_first_login = false` only an
    /// invalid configuration.
    pub fn start_with(
        config: &SshConfig,
        remote_bind_port: u16,
        local_target: SocketAddr,
        options: TunnelOptions,
    ) -> Result<RemoteForward, SshError> {
        config.validate()?;
        validate_backoff(&options.backoff)?;
        check_host(
            "remote_bind_host",
            &options.remote_bind_host,
            "must be a host name or address",
        )?;
        let label = format!(
            "gateway={} listen={}:{remote_bind_port} target={local_target}",
            config.destination(),
            options.remote_bind_host
        );
        let mode = pump::Mode::Remote {
            bind_host: options.remote_bind_host.clone(),
            bind_port: remote_bind_port,
            target: local_target,
        };
        let handle = pump::spawn(config.clone(), mode, options, label, "aif-tunnel-remote")?;
        Ok(RemoteForward {
            target: local_target,
            handle,
        })
    }

    /// The port the server listens on (0 until the first successful listen).
    pub fn remote_port(&self) -> u16 {
        self.handle.stats.shared.remote_port.load(Ordering::SeqCst)
    }

    /// Where accepted connections are piped to.
    pub fn local_target(&self) -> SocketAddr {
        self.target
    }

    /// True while the session is up and the server listens.
    pub fn is_up(&self) -> bool {
        self.handle.stats.up()
    }

    /// Sessions re-established after a failure.
    pub fn reconnects(&self) -> u64 {
        self.handle.stats.reconnects()
    }

    /// A handle on the counters, for publishing as metrics.
    pub fn stats(&self) -> TunnelStats {
        self.handle.stats.clone()
    }

    /// Cancels the listener, closes every piped connection, logs out.
    /// Idempotent.
    pub fn stop(&mut self) {
        self.handle.stop();
    }
}

/// Checks the tunnel's retry policy, as an [`SshError::InvalidConfig`] for
/// the field `backoff`.
fn validate_backoff(policy: &BackoffPolicy) -> Result<(), SshError> {
    policy.validate().map_err(|e| SshError::InvalidConfig {
        field: "backoff",
        reason: e.to_string(),
    })
}

/// Rejects an empty host or one with NUL, space or newline, as an
/// [`SshError::InvalidConfig`] for `field` with `reason`.
fn check_host(field: &'static str, host: &str, reason: &str) -> Result<(), SshError> {
    if host.is_empty() || host.contains(['\0', ' ', '\n']) {
        return Err(SshError::InvalidConfig {
            field,
            reason: reason.to_string(),
        });
    }
    Ok(())
}

/// Longest a pump waits in `poll(2)` when nothing happens (stop requests wake
/// it at once through its waker).
const IDLE_POLL: Duration = Duration::from_secs(1);
