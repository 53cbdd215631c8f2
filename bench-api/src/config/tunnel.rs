//! The reverse tunnel's settings (`reverse_tunnel*` keys) and their checks
//! against the rest of the configuration: the backend, `[slurm.ssh]`,
//! `pushgateway` and `remote_write`. The forward itself is
//! [`crate::tunnel`].

use std::time::Duration;

use gpu_metrics::ssh::SshConfig;

use super::{BackendKind, ConfigError};
use crate::backend::slurm_settings::SlurmSettings;

/// One forward of the reverse tunnel: the login node's `bind:port` leads to
/// `target_host:target_port` (as this host resolves it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelForward {
    /// `pushgateway` or `remote_write` (the `forward` label on `/metrics`).
    pub name: &'static str,
    /// Port on the login node.
    pub port: u16,
    /// Where connections go, as this host names it.
    pub target_host: String,
    /// Its port.
    pub target_port: u16,
    /// The URL jobs on the cluster are given (`http://ADVERTISE:PORT/path`).
    pub job_url: String,
}

/// The SSH remote forward the API holds on the Slurm login node (DESIGN.md
/// §7), like `ssh -R 19091:pushgateway:9091 login`.
#[derive(Debug, Clone)]
pub struct ReverseTunnelConfig {
    /// The login node (`[slurm.ssh]`).
    pub ssh: SshConfig,
    /// Address sshd listens on (`reverse_tunnel_bind`).
    pub bind: String,
    /// Host the compute nodes use (`reverse_tunnel_advertise`).
    pub advertise: String,
    /// The Pushgateway's forward, then the remote-write receiver's.
    pub forwards: Vec<TunnelForward>,
    /// How long the forward stays after the last service or run ended, so an
    /// exporter's `--delete-on-exit` still gets through.
    pub linger: Duration,
}

/// The `reverse_tunnel*` keys as given.
#[derive(Debug, Default)]
pub(super) struct TunnelKeys {
    pub(super) port: Option<u16>,
    pub(super) remote_write_port: Option<u16>,
    pub(super) bind: Option<String>,
    pub(super) advertise: Option<String>,
    pub(super) linger_seconds: Option<u64>,
}

/// A host name or address for `key`: 1..=253 characters, no space, control,
/// `/`, `@` or quote (it ends up in a URL and on the SSH wire).
fn check_tunnel_host(key: &str, host: &str) -> Result<(), ConfigError> {
    if host.is_empty()
        || host.len() > 253
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/@'\"\\?#".contains(c))
    {
        return Err(ConfigError::invalid(
            key,
            format!("`{host}` is not a host name or address"),
        ));
    }
    Ok(())
}

/// Validates the reverse-tunnel keys against the rest: it needs the Slurm
/// backend over SSH (the login node it is held on), `--pushgateway` (its
/// target, plain `http://`), a fixed port (jobs carry it in their command
/// line, across API restarts), and a port of its own for `--remote-write`.
pub(super) fn reverse_tunnel(
    keys: TunnelKeys,
    backend: BackendKind,
    slurm: &SlurmSettings,
    pushgateway: Option<&str>,
    remote_write: Option<&str>,
) -> Result<Option<ReverseTunnelConfig>, ConfigError> {
    let Some(port) = keys.port else {
        for (key, given) in [
            (
                "reverse_tunnel_remote_write_port",
                keys.remote_write_port.is_some(),
            ),
            ("reverse_tunnel_bind", keys.bind.is_some()),
            ("reverse_tunnel_advertise", keys.advertise.is_some()),
            (
                "reverse_tunnel_linger_seconds",
                keys.linger_seconds.is_some(),
            ),
        ] {
            if given {
                return Err(ConfigError::invalid(
                    key,
                    "goes with `reverse_tunnel` (the login-node port), which is not set",
                ));
            }
        }
        return Ok(None);
    };
    const KEY: &str = "reverse_tunnel";
    let ssh = match (backend, &slurm.ssh) {
        (BackendKind::Slurm, Some(ssh)) => ssh,
        _ => {
            return Err(ConfigError::invalid(
                KEY,
                "needs backend `slurm` with [slurm.ssh] (the login node the forward is held on)",
            ));
        }
    };
    if port == 0 {
        return Err(ConfigError::invalid(
            KEY,
            "0 is not a port; jobs carry the port in their command line, so it must be fixed (1..=65535)",
        ));
    }
    let ssh_config = ssh
        .ssh_config(Duration::from_secs(
            slurm.command_timeout_seconds.unwrap_or(30),
        ))
        .map_err(|e| ConfigError::invalid("slurm.ssh", e.to_string()))?;
    let bind = keys.bind.unwrap_or_else(|| "127.0.0.1".into());
    check_tunnel_host("reverse_tunnel_bind", &bind)?;
    let advertise = match keys.advertise {
        Some(a) => a,
        // A wildcard is no address to connect to: the login node's own name.
        None if matches!(bind.as_str(), "0.0.0.0" | "::" | "*") => ssh.host.clone(),
        None => bind.clone(),
    };
    check_tunnel_host("reverse_tunnel_advertise", &advertise)?;
    let authority = |p: u16| {
        if advertise.contains(':') && !advertise.starts_with('[') {
            format!("[{advertise}]:{p}")
        } else {
            format!("{advertise}:{p}")
        }
    };
    let forward = |name: &'static str, key: &str, url: &str, port: u16| {
        let (target_host, target_port, path) =
            gpu_metrics::url::split_http_url(url).ok_or_else(|| {
                ConfigError::invalid(
                    key,
                    format!(
                        "`{url}` must be plain http://host[:port][/path] with `reverse_tunnel` \
                         (jobs reach it as http://{}{{path}})",
                        authority(port)
                    ),
                )
            })?;
        Ok::<_, ConfigError>(TunnelForward {
            name,
            port,
            target_host,
            target_port,
            job_url: format!("http://{}{path}", authority(port)),
        })
    };
    let pgw = pushgateway.ok_or_else(|| {
        ConfigError::invalid(KEY, "needs `pushgateway` (where the forward leads)")
    })?;
    let mut forwards = vec![forward("pushgateway", "pushgateway", pgw, port)?];
    match (remote_write, keys.remote_write_port) {
        (Some(url), Some(rw_port)) => {
            if rw_port == 0 || rw_port == port {
                return Err(ConfigError::invalid(
                    "reverse_tunnel_remote_write_port",
                    format!(
                        "{rw_port} must be a port in 1..=65535 other than `reverse_tunnel` ({port})"
                    ),
                ));
            }
            forwards.push(forward("remote_write", "remote_write", url, rw_port)?);
        }
        (Some(_), None) => {
            return Err(ConfigError::invalid(
                "reverse_tunnel_remote_write_port",
                "missing: with `remote_write` and `reverse_tunnel` the remote-write receiver needs a login-node port of its own",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                "reverse_tunnel_remote_write_port",
                "goes with `remote_write`, which is not set",
            ));
        }
        (None, None) => {}
    }
    let linger = keys.linger_seconds.unwrap_or(60);
    if linger > 3600 {
        return Err(ConfigError::invalid(
            "reverse_tunnel_linger_seconds",
            format!("{linger} is over 3600"),
        ));
    }
    Ok(Some(ReverseTunnelConfig {
        ssh: ssh_config,
        bind,
        advertise,
        forwards,
        linger: Duration::from_secs(linger),
    }))
}
