//! Configuration: TOML file + flags (flags win), validated into [`Config`].
//!
//! Every error names the key (`interval`, `buffer_max_bytes`, …) and the value,
//! and makes the process exit with code 2 before anything is started.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gpu_metrics::buffer::{Durability, MIN_MAX_BYTES, parse_size};
use gpu_metrics::naming::{HostLabel, LabelError, NameScheme, parse_label};
use gpu_metrics::retry::{BackoffPolicy, BackoffPolicyError};
use gpu_metrics::sink::Secret;
use gpu_metrics::ssh::{SshArgs, SshArgsError, SshConfig};
use gpu_metrics::units::parse_duration;
use serde::Deserialize;

use crate::cli::Cli;

/// The TOML file: the same keys as the flags, `_` for `-`. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    source: Option<String>,
    gpus: Option<usize>,
    seed: Option<u64>,
    nvml_lib: Option<PathBuf>,
    processes: Option<bool>,
    once: Option<bool>,
    metric_names: Option<String>,
    dcgm_host_label: Option<String>,
    /// `[labels]` table: `run_id = "r42"`.
    labels: Option<BTreeMap<String, String>>,
    interval: Option<String>,
    buffer: Option<PathBuf>,
    buffer_max_bytes: Option<String>,
    durability: Option<String>,
    pushgateway: Option<String>,
    job: Option<String>,
    instance: Option<String>,
    pushgateway_user: Option<String>,
    pushgateway_password_file: Option<PathBuf>,
    remote_write: Option<String>,
    remote_write_user: Option<String>,
    remote_write_password_file: Option<PathBuf>,
    remote_write_bearer_token_file: Option<PathBuf>,
    remote_write_max_samples: Option<usize>,
    push_retry_initial: Option<String>,
    push_retry_max: Option<String>,
    push_timeout: Option<String>,
    delete_on_exit: Option<bool>,
    listen: Option<String>,
    ssh_host: Option<String>,
    ssh_port: Option<u16>,
    ssh_user: Option<String>,
    ssh_identity: Option<PathBuf>,
    ssh_known_hosts: Option<PathBuf>,
    ssh_accept_new: Option<bool>,
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has an unknown key / wrong type.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said (names the key).
        message: String,
    },
    /// A key has a value that cannot be used.
    #[error("invalid value for `{key}`: {reason}")]
    Invalid {
        /// The key (flag name with `_`).
        key: &'static str,
        /// What is wrong, naming the value.
        reason: String,
    },
    /// A key that only makes sense with another one.
    #[error("`{key}` needs `{needs}`")]
    Needs {
        /// The key given.
        key: &'static str,
        /// The key it needs.
        needs: &'static str,
    },
}

fn invalid(key: &'static str, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.to_string(),
    }
}

/// Where readings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceChoice {
    /// NVML, with a clear error when it is missing.
    Auto,
    /// NVML.
    Nvml,
    /// Simulated GPUs.
    Simulated,
}

/// The Pushgateway target.
#[derive(Debug, Clone)]
pub struct PushgatewayConfig {
    /// Base URL (`http://host:port[/prefix]`), without trailing `/`.
    pub url: String,
    /// `job` grouping label.
    pub job: String,
    /// `instance` grouping label.
    pub instance: String,
    /// Basic-auth user.
    pub user: Option<String>,
    /// Basic-auth password (from the file, or `AIF_PUSHGATEWAY_PASSWORD`).
    pub password: Option<Secret>,
    /// DELETE the group on clean shutdown.
    pub delete_on_exit: bool,
    /// Retry policy.
    pub backoff: BackoffPolicy,
    /// Overall timeout of one push.
    pub timeout: Duration,
}

/// The remote-write receiver.
#[derive(Debug, Clone)]
pub struct RemoteWriteConfig {
    /// The endpoint, without trailing `/`.
    pub url: String,
    /// Basic-auth user.
    pub user: Option<String>,
    /// Basic-auth password (from the file, or `AIF_REMOTE_WRITE_PASSWORD`).
    pub password: Option<Secret>,
    /// Bearer token (from the file).
    pub bearer_token: Option<Secret>,
    /// Most samples in one request.
    pub max_samples: usize,
}

/// Where one local forward leads, as the gateway resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Host.
    pub remote_host: String,
    /// Port.
    pub remote_port: u16,
    /// The URL's path (may be empty).
    pub path: String,
}

/// The SSH gateway and the forwards opened through it (one per sink).
#[derive(Debug, Clone)]
pub struct SshSettings {
    /// Login to the gateway (validated).
    pub ssh: SshConfig,
    /// The Pushgateway's forward.
    pub pushgateway: Option<Forward>,
    /// The remote-write receiver's forward.
    pub remote_write: Option<Forward>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Source choice.
    pub source: SourceChoice,
    /// Simulated GPU count.
    pub gpus: usize,
    /// Simulated seed.
    pub seed: u64,
    /// NVML library path.
    pub nvml_lib: Option<PathBuf>,
    /// Per-process collection.
    pub processes: bool,
    /// Metric naming scheme.
    pub scheme: NameScheme,
    /// dcgm mode's host label name.
    pub dcgm_host_label: HostLabel,
    /// Attribution labels from `--label` / `[labels]`.
    pub labels: Vec<(String, String)>,
    /// Sample once and print.
    pub once: bool,
    /// Sampling interval.
    pub interval: Duration,
    /// Buffer file.
    pub buffer: PathBuf,
    /// Buffer cap in bytes.
    pub buffer_max_bytes: u64,
    /// Buffer durability.
    pub durability: Durability,
    /// Pushgateway sink.
    pub pushgateway: Option<PushgatewayConfig>,
    /// Remote-write sink.
    pub remote_write: Option<RemoteWriteConfig>,
    /// `job` label (Pushgateway group, remote-written series).
    pub job: String,
    /// `instance` label (Pushgateway group, remote-written series).
    pub instance: String,
    /// Retry policy of every sink.
    pub backoff: BackoffPolicy,
    /// Overall timeout of one delivery request.
    pub push_timeout: Duration,
    /// Pull endpoint.
    pub listen: Option<SocketAddr>,
    /// SSH tunnel.
    pub ssh: Option<SshSettings>,
}

/// Checks a Pushgateway URL with the library's rule
/// ([`gpu_metrics::sink::normalize_base_url`]), naming `key` on error.
///
/// # Errors
/// [`ConfigError::Invalid`] naming `key`.
pub fn validate_base_url(key: &'static str, url: &str) -> Result<String, ConfigError> {
    gpu_metrics::sink::normalize_base_url(url).map_err(|e| invalid(key, e))
}

pub use gpu_metrics::url::split_http_url;

/// The host name of this machine (`instance` default, dcgm mode's host label).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

fn read_file_config(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().replace('\n', " "),
    })
}

fn label_error(e: LabelError) -> ConfigError {
    invalid("label", e)
}

impl Config {
    /// Merges the file named by `--config` (if any) with the flags, flags
    /// winning, and validates every value.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first key that is wrong.
    pub fn resolve(cli: Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(p) => read_file_config(p)?,
            None => FileConfig::default(),
        };
        let source = match cli.source.or(file.source).as_deref().unwrap_or("auto") {
            "auto" => SourceChoice::Auto,
            "nvml" => SourceChoice::Nvml,
            "simulated" => SourceChoice::Simulated,
            other => {
                return Err(invalid(
                    "source",
                    format!("{other:?} is not one of: auto, nvml, simulated"),
                ));
            }
        };
        let gpus = cli.gpus.or(file.gpus).unwrap_or(8);
        if gpus == 0 || gpus > gpu_metrics::source::MAX_SIMULATED_GPUS {
            return Err(invalid(
                "gpus",
                format!(
                    "{gpus} is out of range 1..={}",
                    gpu_metrics::source::MAX_SIMULATED_GPUS
                ),
            ));
        }
        let scheme = cli
            .metric_names
            .or(file.metric_names)
            .as_deref()
            .unwrap_or("native")
            .parse::<NameScheme>()
            .map_err(|e| invalid("metric_names", e))?;
        let dcgm_host_label = match cli.dcgm_host_label.or(file.dcgm_host_label) {
            Some(text) => text
                .parse::<HostLabel>()
                .map_err(|e| invalid("dcgm_host_label", e))?,
            None => HostLabel::default(),
        };
        let mut labels = Vec::new();
        for (k, v) in file.labels.unwrap_or_default() {
            labels.push(parse_label(&format!("{k}={v}")).map_err(label_error)?);
        }
        for arg in &cli.labels {
            let (k, v) = parse_label(arg).map_err(label_error)?;
            labels.retain(|(ek, _)| *ek != k);
            labels.push((k, v));
        }
        let interval_text = cli
            .interval
            .or(file.interval)
            .unwrap_or_else(|| "1s".into());
        let interval = parse_duration(&interval_text).map_err(|e| invalid("interval", e))?;
        if interval < Duration::from_millis(10) {
            return Err(invalid(
                "interval",
                format!("{interval_text:?} is below the 10ms minimum"),
            ));
        }
        let delete_on_exit = cli.delete_on_exit.or(file.delete_on_exit).unwrap_or(false);
        let user = cli.pushgateway_user.or(file.pushgateway_user);
        let password_file = cli
            .pushgateway_password_file
            .or(file.pushgateway_password_file);
        let password = read_secret(
            "pushgateway_password_file",
            password_file.as_deref(),
            Some("AIF_PUSHGATEWAY_PASSWORD"),
        )?;
        if password.is_some() && user.is_none() {
            return Err(ConfigError::Needs {
                key: "pushgateway_password_file",
                needs: "pushgateway_user",
            });
        }
        let duration_key = |key: &'static str, v: Option<String>, default: Duration| match v {
            Some(text) => parse_duration(&text).map_err(|e| invalid(key, e)),
            None => Ok(default),
        };
        let backoff = BackoffPolicy {
            initial: duration_key(
                "push_retry_initial",
                cli.push_retry_initial.or(file.push_retry_initial),
                Duration::from_millis(500),
            )?,
            max: duration_key(
                "push_retry_max",
                cli.push_retry_max.or(file.push_retry_max),
                Duration::from_secs(30),
            )?,
            factor: 2.0,
        };
        backoff.validate().map_err(|e| match e {
            BackoffPolicyError::MaxBelowInitial { initial, max } => invalid(
                "push_retry_max",
                format!("{max:?} is below push_retry_initial {initial:?}"),
            ),
            other => invalid("push_retry_initial", other),
        })?;
        let push_timeout = duration_key(
            "push_timeout",
            cli.push_timeout.or(file.push_timeout),
            Duration::from_secs(10),
        )?;
        let job = non_empty(
            "job",
            cli.job.or(file.job).unwrap_or_else(|| "aif_gpu".into()),
        )?;
        let instance = non_empty(
            "instance",
            cli.instance.or(file.instance).unwrap_or_else(hostname),
        )?;
        let remote_write = match cli.remote_write.or(file.remote_write) {
            Some(url) => {
                let url = gpu_metrics::sink::RemoteWriteBuilder::new(url.clone())
                    .build()
                    .map_err(|e| invalid("remote_write", e))?
                    .url()
                    .to_string();
                let user = cli.remote_write_user.or(file.remote_write_user);
                let password = read_secret(
                    "remote_write_password_file",
                    cli.remote_write_password_file
                        .or(file.remote_write_password_file)
                        .as_deref(),
                    Some("AIF_REMOTE_WRITE_PASSWORD"),
                )?;
                if password.is_some() && user.is_none() {
                    return Err(ConfigError::Needs {
                        key: "remote_write_password_file",
                        needs: "remote_write_user",
                    });
                }
                let bearer_token = read_secret(
                    "remote_write_bearer_token_file",
                    cli.remote_write_bearer_token_file
                        .or(file.remote_write_bearer_token_file)
                        .as_deref(),
                    None,
                )?;
                if bearer_token.is_some() && user.is_some() {
                    return Err(invalid(
                        "remote_write_bearer_token_file",
                        "give basic auth (remote_write_user) or a bearer token, not both",
                    ));
                }
                let max_samples = cli
                    .remote_write_max_samples
                    .or(file.remote_write_max_samples)
                    .unwrap_or(gpu_metrics::sink::DEFAULT_MAX_SAMPLES_PER_REQUEST);
                if !(1..=1_000_000).contains(&max_samples) {
                    return Err(invalid(
                        "remote_write_max_samples",
                        format!("{max_samples} is out of range 1..=1000000"),
                    ));
                }
                Some(RemoteWriteConfig {
                    url,
                    user,
                    password,
                    bearer_token,
                    max_samples,
                })
            }
            None => {
                for (key, given) in [
                    ("remote_write_user", cli.remote_write_user.is_some()),
                    (
                        "remote_write_bearer_token_file",
                        cli.remote_write_bearer_token_file.is_some(),
                    ),
                    (
                        "remote_write_max_samples",
                        cli.remote_write_max_samples.is_some(),
                    ),
                ] {
                    if given {
                        return Err(ConfigError::Needs {
                            key,
                            needs: "remote_write",
                        });
                    }
                }
                None
            }
        };
        let pushgateway = match cli.pushgateway.or(file.pushgateway) {
            Some(url) => Some(PushgatewayConfig {
                url: validate_base_url("pushgateway", &url)?,
                job: job.clone(),
                instance: instance.clone(),
                user,
                password,
                delete_on_exit,
                backoff,
                timeout: push_timeout,
            }),
            None => {
                if delete_on_exit {
                    return Err(ConfigError::Needs {
                        key: "delete_on_exit",
                        needs: "pushgateway",
                    });
                }
                None
            }
        };
        let listen = match cli.listen.or(file.listen) {
            Some(a) => Some(a.parse::<SocketAddr>().map_err(|e| {
                invalid(
                    "listen",
                    format!("{a:?} is not an address like 127.0.0.1:9400: {e}"),
                )
            })?),
            None => None,
        };
        // Strays are checked on the flags only: a file may keep `ssh_user`
        // and friends with `ssh_host` commented out.
        if file.ssh_host.is_none()
            && let Some(flag) = cli.ssh.given_without_host()
        {
            return Err(ConfigError::Needs {
                key: flag.key(),
                needs: "ssh_host",
            });
        }
        let ssh_args = cli.ssh.or(SshArgs {
            ssh_host: file.ssh_host,
            ssh_port: file.ssh_port,
            ssh_user: file.ssh_user,
            ssh_identity: file.ssh_identity,
            ssh_known_hosts: file.ssh_known_hosts,
            ssh_accept_new: file.ssh_accept_new,
        });
        let ssh = match ssh_args.to_config().map_err(|e| match e {
            SshArgsError::NeedsIdentity => ConfigError::Needs {
                key: "ssh_host",
                needs: "ssh_identity",
            },
            other => invalid(other.flag().key(), other),
        })? {
            Some(ssh) => {
                if pushgateway.is_none() && remote_write.is_none() {
                    return Err(ConfigError::Needs {
                        key: "ssh_host",
                        needs: "pushgateway or remote_write",
                    });
                }
                let forward = |key: &'static str, url: &str| {
                    split_http_url(url)
                        .map(|(remote_host, remote_port, path)| Forward {
                            remote_host,
                            remote_port,
                            path,
                        })
                        .ok_or_else(|| {
                            invalid(
                                key,
                                format!(
                                    "{url:?}: through the SSH tunnel the URL must be http://HOST[:PORT][/PATH] \
                                     (the tunnel encrypts; TLS to the far end is not supported)"
                                ),
                            )
                        })
                };
                let pushgateway_forward = pushgateway
                    .as_ref()
                    .map(|pg| forward("pushgateway", &pg.url))
                    .transpose()?;
                let remote_write_forward = remote_write
                    .as_ref()
                    .map(|rw| forward("remote_write", &rw.url))
                    .transpose()?;
                Some(SshSettings {
                    ssh,
                    pushgateway: pushgateway_forward,
                    remote_write: remote_write_forward,
                })
            }
            None => None,
        };
        let buffer_max_bytes = match cli.buffer_max_bytes.or(file.buffer_max_bytes) {
            Some(text) => {
                let bytes = parse_size(&text).map_err(|e| invalid("buffer_max_bytes", e))?;
                if bytes < MIN_MAX_BYTES {
                    return Err(invalid(
                        "buffer_max_bytes",
                        format!("{text:?} is below the minimum of {MIN_MAX_BYTES} bytes"),
                    ));
                }
                bytes
            }
            None => gpu_metrics::buffer::DEFAULT_MAX_BYTES,
        };
        let durability = match cli.durability.or(file.durability) {
            Some(text) => text
                .parse::<Durability>()
                .map_err(|e| invalid("durability", e))?,
            None => Durability::Normal,
        };
        Ok(Config {
            source,
            gpus,
            seed: cli.seed.or(file.seed).unwrap_or(1),
            nvml_lib: cli.nvml_lib.or(file.nvml_lib),
            processes: cli.processes.or(file.processes).unwrap_or(false),
            scheme,
            dcgm_host_label,
            labels,
            once: cli.once.or(file.once).unwrap_or(false),
            interval,
            buffer: cli
                .buffer
                .or(file.buffer)
                .unwrap_or_else(|| PathBuf::from("aif-node-exporter.db")),
            buffer_max_bytes,
            durability,
            pushgateway,
            remote_write,
            job,
            instance,
            backoff,
            push_timeout,
            listen,
            ssh,
        })
    }
}

/// A secret from `file` (trailing newline removed), else from the
/// environment variable `env` when set and non-empty.
fn read_secret(
    key: &'static str,
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<Option<Secret>, ConfigError> {
    if let Some(p) = file {
        let text = std::fs::read_to_string(p)
            .map_err(|e| invalid(key, format!("cannot read {}: {e}", p.display())))?;
        let secret = text.trim_end_matches(['\n', '\r']);
        if secret.is_empty() {
            return Err(invalid(key, format!("{} is empty", p.display())));
        }
        return Ok(Some(Secret::new(secret)));
    }
    Ok(env
        .and_then(|name| std::env::var(name).ok())
        .filter(|v| !v.is_empty())
        .map(Secret::new))
}

fn non_empty(key: &'static str, value: String) -> Result<String, ConfigError> {
    if value.trim().is_empty() {
        Err(invalid(key, "must not be empty"))
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn resolve(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["aif-node-exporter"];
        argv.extend_from_slice(args);
        Config::resolve(Cli::try_parse_from(argv).expect("clap"))
    }

    fn key_of(e: ConfigError) -> &'static str {
        match e {
            ConfigError::Invalid { key, .. } | ConfigError::Needs { key, .. } => key,
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn splits_http_urls() {
        assert_eq!(
            split_http_url("http://pgw.internal:9091/prefix/"),
            Some(("pgw.internal".into(), 9091, "/prefix".into()))
        );
        assert_eq!(
            split_http_url("http://pgw"),
            Some(("pgw".into(), 80, String::new()))
        );
        assert_eq!(
            split_http_url("http://[::1]:9091"),
            Some(("::1".into(), 9091, String::new()))
        );
        assert_eq!(split_http_url("https://pgw:9091"), None);
        assert_eq!(split_http_url("http://u:p@pgw:9091"), None);
        assert_eq!(split_http_url("http://pgw:x"), None);
    }

    #[test]
    fn defaults() {
        let c = resolve(&[]).expect("defaults");
        assert_eq!(c.source, SourceChoice::Auto);
        assert_eq!(c.gpus, 8);
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.scheme, NameScheme::Native);
        assert!(c.pushgateway.is_none());
    }

    #[test]
    fn bad_values_name_their_key() {
        assert_eq!(
            key_of(resolve(&["--interval", "soon"]).unwrap_err()),
            "interval"
        );
        assert_eq!(key_of(resolve(&["--source", "gpu"]).unwrap_err()), "source");
        assert_eq!(
            key_of(resolve(&["--metric-names", "x"]).unwrap_err()),
            "metric_names"
        );
        assert_eq!(key_of(resolve(&["--label", "nokv"]).unwrap_err()), "label");
        assert_eq!(key_of(resolve(&["--gpus", "0"]).unwrap_err()), "gpus");
        assert_eq!(
            key_of(resolve(&["--pushgateway", "monitor:9091"]).unwrap_err()),
            "pushgateway"
        );
        assert_eq!(
            key_of(resolve(&["--listen", "nowhere"]).unwrap_err()),
            "listen"
        );
        assert_eq!(
            key_of(resolve(&["--delete-on-exit"]).unwrap_err()),
            "delete_on_exit"
        );
        assert_eq!(
            key_of(resolve(&["--ssh-host", "gw"]).unwrap_err()),
            "ssh_host"
        );
    }

    #[test]
    fn file_then_flags_win() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "interval = \"250ms\"\njob = \"filejob\"\npushgateway = \"http://127.0.0.1:9091/\"\n[labels]\nrun_id = \"a\"\n",
        )
        .expect("write");
        let c = resolve(&[
            "--config",
            p.to_str().expect("utf8"),
            "--job",
            "flagjob",
            "--label",
            "run_id=b",
        ])
        .expect("ok");
        assert_eq!(c.interval, Duration::from_millis(250));
        let pg = c.pushgateway.expect("pgw");
        assert_eq!(pg.job, "flagjob");
        assert_eq!(pg.url, "http://127.0.0.1:9091");
        assert_eq!(c.labels, vec![("run_id".to_string(), "b".to_string())]);
    }

    #[test]
    fn unknown_file_key_is_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "intervall = \"1s\"\n").expect("write");
        let e = resolve(&["--config", p.to_str().expect("utf8")]).unwrap_err();
        assert!(e.to_string().contains("intervall"), "{e}");
    }

    #[test]
    fn boolean_flags_win_over_the_file_both_ways() {
        let dir = tempfile::tempdir().expect("tmp");
        let on = dir.path().join("on.toml");
        std::fs::write(
            &on,
            "processes = true\nonce = true\npushgateway = \"http://127.0.0.1:9091\"\ndelete_on_exit = true\n",
        )
        .expect("write");
        let file = |extra: &[&str]| {
            let mut args = vec!["--config", on.to_str().expect("utf8")];
            args.extend_from_slice(extra);
            resolve(&args).expect("ok")
        };
        let c = file(&[]);
        assert!(c.processes && c.once, "the file's true holds");
        assert!(c.pushgateway.as_ref().expect("pgw").delete_on_exit);
        let c = file(&[
            "--processes=false",
            "--once=false",
            "--delete-on-exit=false",
        ]);
        assert!(!c.processes && !c.once, "flags turn the file's true off");
        assert!(!c.pushgateway.as_ref().expect("pgw").delete_on_exit);
        let off = dir.path().join("off.toml");
        std::fs::write(&off, "processes = false\nonce = false\n").expect("write");
        let c = resolve(&[
            "--config",
            off.to_str().expect("utf8"),
            "--processes",
            "--once",
        ])
        .expect("ok");
        assert!(c.processes && c.once, "flags turn the file's false on");
        assert!(Cli::try_parse_from(["x", "--processes=maybe"]).is_err());
    }

    #[test]
    fn remote_write_is_validated_and_named() {
        let c = resolve(&["--remote-write", "http://127.0.0.1:9090/api/v1/write/"]).expect("ok");
        let rw = c.remote_write.expect("rw");
        assert_eq!(rw.url, "http://127.0.0.1:9090/api/v1/write");
        assert_eq!(rw.max_samples, 2000);
        assert!(c.pushgateway.is_none(), "remote-write alone is fine");
        for (args, key) in [
            (
                &["--remote-write", "127.0.0.1:9090/api/v1/write"][..],
                "remote_write",
            ),
            (
                &["--remote-write", "http://127.0.0.1:9090"][..],
                "remote_write",
            ),
            (
                &[
                    "--remote-write",
                    "http://h:1/w",
                    "--remote-write-max-samples",
                    "0",
                ][..],
                "remote_write_max_samples",
            ),
            (
                &["--remote-write-max-samples", "10"][..],
                "remote_write_max_samples",
            ),
            (&["--remote-write-user", "u"][..], "remote_write_user"),
        ] {
            assert_eq!(key_of(resolve(args).unwrap_err()), key, "{args:?}");
        }
        let dir = tempfile::tempdir().expect("tmp");
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").expect("write");
        let both = resolve(&[
            "--remote-write",
            "http://h:1/w",
            "--remote-write-user",
            "u",
            "--remote-write-bearer-token-file",
            token.to_str().expect("utf8"),
        ])
        .unwrap_err();
        assert_eq!(key_of(both), "remote_write_bearer_token_file");
        let c = resolve(&[
            "--remote-write",
            "http://h:1/w",
            "--remote-write-bearer-token-file",
            token.to_str().expect("utf8"),
        ])
        .expect("ok");
        let rw = c.remote_write.expect("rw");
        assert_eq!(rw.bearer_token.expect("token").expose(), "s3cret");
        assert!(!format!("{:?}", c.ssh).contains("s3cret"));
    }

    #[test]
    fn ssh_flags_merge_with_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "pushgateway = \"http://pgw:9091\"\nssh_host = \"gw\"\nssh_port = 2222\n\
             ssh_identity = \"/k\"\nssh_accept_new = true\n",
        )
        .expect("write");
        let cfg = p.to_str().expect("utf8");
        let me = gpu_metrics::ssh::current_user().expect("current user");
        let ssh = resolve(&["--config", cfg]).expect("ok").ssh.expect("ssh");
        assert_eq!(ssh.ssh.destination(), format!("{}@gw:2222", me.name));
        assert_eq!(ssh.ssh.known_hosts, me.known_hosts());
        assert!(ssh.ssh.accept_new);
        let fw = ssh.pushgateway.expect("forward");
        assert_eq!((fw.remote_host.as_str(), fw.remote_port), ("pgw", 9091));
        let ssh = resolve(&[
            "--config",
            cfg,
            "--ssh-user",
            "svc",
            "--ssh-known-hosts",
            "/kh",
            "--ssh-accept-new=false",
        ])
        .expect("ok")
        .ssh
        .expect("ssh");
        assert_eq!(ssh.ssh.destination(), "svc@gw:2222");
        assert_eq!(ssh.ssh.known_hosts, PathBuf::from("/kh"));
        assert!(!ssh.ssh.accept_new, "the flag turns the file's true off");
        let c = resolve(&[
            "--pushgateway",
            "http://pgw:9091",
            "--ssh-host",
            "gw",
            "--ssh-identity",
            "/k",
            "--ssh-accept-new",
        ])
        .expect("ok");
        assert!(c.ssh.expect("ssh").ssh.accept_new);
        assert_eq!(
            key_of(resolve(&["--ssh-port", "1"]).unwrap_err()),
            "ssh_port"
        );
        assert_eq!(
            key_of(resolve(&["--config", cfg, "--ssh-user", "a b"]).unwrap_err()),
            "ssh_user"
        );
        assert!(Cli::try_parse_from(["x", "--ssh-accept-new=maybe"]).is_err());
    }

    #[test]
    fn dcgm_host_label_is_parsed_and_named() {
        assert_eq!(
            resolve(&[]).expect("ok").dcgm_host_label,
            HostLabel::Hostname
        );
        let c = resolve(&["--dcgm-host-label", "Hostname"]).expect("ok");
        assert_eq!(c.dcgm_host_label, HostLabel::LegacyHostname);
        assert_eq!(
            key_of(resolve(&["--dcgm-host-label", "host"]).unwrap_err()),
            "dcgm_host_label"
        );
    }
}
