//! The reverse tunnel (DESIGN.md §7, `--reverse-tunnel`): an SSH remote
//! forward the API holds on the Slurm login node, like
//! `ssh -R 19091:pushgateway:9091 login`, for compute nodes that cannot open
//! connections to the monitoring host but can reach the login node.
//!
//! - **What:** one [`RemoteForward`] per target (the Pushgateway, and the
//!   remote-write receiver when `--remote-write` is set), each its own SSH
//!   session to `[slurm.ssh]`'s host; the login node listens on
//!   `reverse_tunnel_bind:PORT` and pipes every connection to the target as
//!   this host resolves it. Jobs are handed `http://ADVERTISE:PORT/path`
//!   ([`crate::config::Config::job_pushgateway`]).
//! - **When:** held while the cluster has open services or uncollected run
//!   jobs, opened before a launch (so the job's first push finds it) and by
//!   the monitor (so after an API restart, reconcile reopens it for the jobs
//!   still running); closed once none has been open for `linger` (default
//!   60 s, so an exporter's `--delete-on-exit` after a cancel still gets
//!   through).
//! - **Drops:** the library's pump logs in again with [`gpu_metrics::retry`]
//!   backoff (full jitter, 500 ms doubling to 30 s) and asks for the same port;
//!   a failure to open (the target's name does not resolve) is retried by the
//!   monitor with the same backoff. Nothing here blocks on the network: the
//!   first login happens in the background.
//! - **Seen:** `aif_api_reverse_tunnel_{held,up,reconnects_total,opens_total,
//!   connections_total}{forward,port}` on `/metrics`.

use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gpu_metrics::retry::{Backoff, BackoffPolicy, random_seed};
use gpu_metrics::ssh::SshError;
use gpu_metrics::tunnel::{RemoteForward, TunnelOptions};

use crate::config::{ReverseTunnelConfig, TunnelForward};

/// Why a forward could not be opened (the monitor tries again with backoff).
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The target's host name did not resolve.
    #[error("forward {forward}: cannot resolve {host}:{port}: {reason}")]
    Resolve {
        /// `pushgateway` or `remote_write`.
        forward: &'static str,
        /// The target host.
        host: String,
        /// The target port.
        port: u16,
        /// The resolver's answer.
        reason: String,
    },
    /// The library refused to start the forward.
    #[error("forward {forward}: {source}")]
    Start {
        /// `pushgateway` or `remote_write`.
        forward: &'static str,
        /// The SSH error.
        source: Box<SshError>,
    },
}

/// Counters of one forward across its openings.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    opens: u64,
    reconnects: u64,
    connections: u64,
}

#[derive(Debug)]
struct State {
    /// The open forwards, in the order of the configuration; empty when not held.
    open: Vec<RemoteForward>,
    /// Counters of forwards closed before (the open ones add theirs).
    closed: Vec<Totals>,
    /// Last time work existed on the cluster.
    last_wanted: Option<Instant>,
    /// After a failed open: not before this.
    retry_at: Option<Instant>,
    backoff: Backoff,
}

/// The reverse tunnel of a Slurm-over-SSH API.
#[derive(Debug)]
pub struct ReverseTunnel {
    config: ReverseTunnelConfig,
    state: Mutex<State>,
}

impl ReverseTunnel {
    /// A tunnel for `config`, not yet open.
    pub fn new(config: ReverseTunnelConfig) -> ReverseTunnel {
        if is_loopback(&config.bind) && !is_loopback(&config.advertise) {
            log::warn!(
                "reverse tunnel: sshd on {} will listen on loopback ({}) only, but jobs are told {}: \
                 compute nodes will be refused; set reverse_tunnel_bind (and GatewayPorts clientspecified)",
                config.ssh.destination(),
                config.bind,
                config.advertise
            );
        }
        let closed = vec![Totals::default(); config.forwards.len()];
        ReverseTunnel {
            config,
            state: Mutex::new(State {
                open: Vec::new(),
                closed,
                last_wanted: None,
                retry_at: None,
                backoff: Backoff::new(BackoffPolicy::default(), random_seed()),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Work exists (or is about to be launched) on the cluster: opens the
    /// forwards if they are not open (unless a failed open is backing off).
    pub fn hold(&self) {
        let mut st = self.lock();
        st.last_wanted = Some(Instant::now());
        if !st.open.is_empty() || st.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        match self.open_all() {
            Ok(open) => {
                for t in &mut st.closed {
                    t.opens += 1;
                }
                st.open = open;
                st.retry_at = None;
                st.backoff.reset();
            }
            Err(e) => {
                let delay = st.backoff.next_delay();
                st.retry_at = Some(Instant::now() + delay);
                log::error!(
                    "reverse tunnel: cannot open on {}: {e}; retrying in {} ms",
                    self.config.ssh.destination(),
                    delay.as_millis()
                );
            }
        }
    }

    /// The monitor's pass: `wanted` when the cluster has open services or
    /// run jobs. Holds the forwards while wanted, closes them once nothing
    /// was wanted for the configured linger.
    pub fn update(&self, wanted: bool) {
        if wanted {
            self.hold();
            return;
        }
        let mut st = self.lock();
        if st.open.is_empty() {
            st.retry_at = None;
            return;
        }
        let idle = st.last_wanted.map_or(Duration::MAX, |t| t.elapsed());
        if idle >= self.config.linger {
            Self::close_all(&mut st);
            log::info!(
                "reverse tunnel closed on {}: no services or runs for {} s",
                self.config.ssh.destination(),
                idle.as_secs()
            );
        }
    }

    /// True while the API holds the forwards open.
    pub fn is_held(&self) -> bool {
        !self.lock().open.is_empty()
    }

    fn open_all(&self) -> Result<Vec<RemoteForward>, TunnelError> {
        let mut open = Vec::with_capacity(self.config.forwards.len());
        for f in &self.config.forwards {
            let target = resolve(f)?;
            let options = TunnelOptions {
                wait_for_first_login: false,
                remote_bind_host: self.config.bind.clone(),
                ..TunnelOptions::default()
            };
            let fwd = RemoteForward::start_with(&self.config.ssh, f.port, target, options)
                .map_err(|source| TunnelError::Start {
                    forward: f.name,
                    source: Box::new(source),
                })?;
            log::info!(
                "reverse tunnel opening: {} listens on {}:{} -> {} ({target}); jobs use {}",
                self.config.ssh.destination(),
                self.config.bind,
                f.port,
                f.name,
                f.job_url
            );
            open.push(fwd);
        }
        Ok(open)
    }

    fn close_all(st: &mut State) {
        for (i, mut fwd) in std::mem::take(&mut st.open).into_iter().enumerate() {
            let s = fwd.stats();
            st.closed[i].reconnects += s.reconnects();
            st.closed[i].connections += s.channels_opened();
            fwd.stop();
        }
    }

    /// Writes the tunnel's families in the text format, one series per
    /// forward, labelled `forward` and `port` (on the login node).
    pub fn render(&self, out: &mut String) {
        let st = self.lock();
        let rows: Vec<Row> = self
            .config
            .forwards
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let mut row = Row {
                    forward: f.name,
                    port: f.port,
                    held: false,
                    up: false,
                    totals: st.closed[i],
                };
                if let Some(fwd) = st.open.get(i) {
                    let s = fwd.stats();
                    row.held = true;
                    row.up = s.up();
                    row.totals.reconnects += s.reconnects();
                    row.totals.connections += s.channels_opened();
                }
                row
            })
            .collect();
        drop(st);
        for (name, kind, help, value) in FAMILIES {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for row in &rows {
                let _ = writeln!(
                    out,
                    "{name}{{forward=\"{}\",port=\"{}\"}} {}",
                    row.forward,
                    row.port,
                    value(row)
                );
            }
        }
    }
}

/// One forward's figures for `/metrics`.
#[derive(Debug)]
struct Row {
    forward: &'static str,
    port: u16,
    held: bool,
    up: bool,
    totals: Totals,
}

/// A metric family: name, type, help, and its value for a forward.
type Family = (&'static str, &'static str, &'static str, fn(&Row) -> u64);

const FAMILIES: [Family; 5] = [
    (
        "aif_api_reverse_tunnel_held",
        "gauge",
        "1 while the API holds the remote forward on the login node (services or runs exist there).",
        |r| u64::from(r.held),
    ),
    (
        "aif_api_reverse_tunnel_up",
        "gauge",
        "1 while the forward's SSH session is up and the login node listens on its port.",
        |r| u64::from(r.up),
    ),
    (
        "aif_api_reverse_tunnel_reconnects_total",
        "counter",
        "SSH sessions of the forward re-established after a drop.",
        |r| r.totals.reconnects,
    ),
    (
        "aif_api_reverse_tunnel_opens_total",
        "counter",
        "Times the API opened the forward (first service or run after none).",
        |r| r.totals.opens,
    ),
    (
        "aif_api_reverse_tunnel_connections_total",
        "counter",
        "Connections made to the login node's port and piped to the target.",
        |r| r.totals.connections,
    ),
];

/// `127.x.y.z`, `::1` or `localhost`.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The first address `f`'s target resolves to.
fn resolve(f: &TunnelForward) -> Result<SocketAddr, TunnelError> {
    let err = |reason: String| TunnelError::Resolve {
        forward: f.name,
        host: f.target_host.clone(),
        port: f.target_port,
        reason,
    };
    (f.target_host.as_str(), f.target_port)
        .to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("no address".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpu_metrics::ssh::SshConfig;

    fn tunnel() -> ReverseTunnel {
        let forward = |name, port| TunnelForward {
            name,
            port,
            target_host: "127.0.0.1".into(),
            target_port: 9,
            job_url: format!("http://login01:{port}"),
        };
        ReverseTunnel::new(ReverseTunnelConfig {
            ssh: SshConfig::builder("login01", "svc", "/nonexistent/key")
                .build()
                .unwrap(),
            bind: "127.0.0.1".into(),
            advertise: "login01".into(),
            forwards: vec![
                forward("pushgateway", 19091),
                forward("remote_write", 19092),
            ],
            linger: Duration::ZERO,
        })
    }

    #[test]
    fn loopback_names() {
        for h in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["0.0.0.0", "10.0.0.1", "login01", "::"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn not_held_until_wanted_and_every_family_has_a_series_per_forward() {
        let t = tunnel();
        t.update(false);
        assert!(!t.is_held());
        let mut out = String::new();
        t.render(&mut out);
        for (name, kind, _, _) in FAMILIES {
            assert!(out.contains(&format!("# TYPE {name} {kind}\n")), "{out}");
            for (forward, port) in [("pushgateway", 19091), ("remote_write", 19092)] {
                let series = format!("{name}{{forward=\"{forward}\",port=\"{port}\"}} 0\n");
                assert!(out.contains(&series), "{series} missing in\n{out}");
            }
        }
    }
}
