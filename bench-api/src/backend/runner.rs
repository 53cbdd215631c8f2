//! Running commands (`sbatch`, `squeue`, …) here or on a login node over SSH,
//! behind one small trait so the Slurm backend does not care where. Commands
//! are argv lists; over SSH every argument is quoted by `gpu_metrics::ssh`.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gpu_metrics::ssh::{SshConfig, SshSession};

use super::ssh_settings::SshSettings;

/// Why a command could not be run.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The argv is empty.
    #[error("empty command")]
    Empty,
    /// The program could not be started here.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// It ran past the limit and was killed.
    #[error("{program} did not finish within {after:?}")]
    Timeout {
        /// The program.
        program: String,
        /// The limit.
        after: Duration,
    },
    /// The SSH session failed (connect, host key, login, transport).
    #[error("ssh {destination}: {source}")]
    Ssh {
        /// `user@host:port`.
        destination: String,
        /// The SSH error.
        source: Box<gpu_metrics::ssh::SshError>,
    },
}

/// What a command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit status (128 + N for signal N).
    pub status: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CommandOutput {
    /// True for status 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// Runs argv commands somewhere.
pub trait CommandRunner: Send + Sync {
    /// Runs `argv` and collects its output.
    ///
    /// # Errors
    /// When it could not be run at all (a non-zero exit is an `Ok`).
    fn run(&self, argv: &[String]) -> Result<CommandOutput, RunnerError>;

    /// Where commands run (`local`, `ssh user@host:port`), for logs.
    fn describe(&self) -> String;

    /// The HTTP status of `GET path` on `host:port` as seen from where the
    /// commands run; `None` when that is here (ask directly). `Ok(None)`:
    /// it answered, but not HTTP.
    fn http_status(
        &self,
        host: &str,
        port: u16,
        path: &str,
        timeout: Duration,
    ) -> Option<Result<Option<u16>, RunnerError>> {
        let _ = (host, port, path, timeout);
        None
    }
}

/// Runs commands as child processes of the API, with a time limit.
#[derive(Debug, Clone)]
pub struct LocalRunner {
    timeout: Duration,
}

impl LocalRunner {
    /// A runner that kills commands after `timeout`.
    pub fn new(timeout: Duration) -> LocalRunner {
        LocalRunner { timeout }
    }
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

impl CommandRunner for LocalRunner {
    fn run(&self, argv: &[String]) -> Result<CommandOutput, RunnerError> {
        let (program, args) = argv.split_first().ok_or(RunnerError::Empty)?;
        let spawn_err = |source| RunnerError::Spawn {
            program: program.clone(),
            source,
        };
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        let out = child.stdout.take().map(drain);
        let err = child.stderr.take().map(drain);
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait().map_err(spawn_err)? {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(RunnerError::Timeout {
                        program: program.clone(),
                        after: self.timeout,
                    });
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        let status = {
            use std::os::unix::process::ExitStatusExt;
            status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
        };
        Ok(CommandOutput {
            status,
            stdout: out.and_then(|h| h.join().ok()).unwrap_or_default(),
            stderr: err.and_then(|h| h.join().ok()).unwrap_or_default(),
        })
    }

    fn describe(&self) -> String {
        "local".to_string()
    }
}

/// Runs commands on a login node through `gpu_metrics::ssh` (host key checked
/// against `known_hosts`). Logs in on first use and keeps the session.
pub struct SshRunner {
    config: SshConfig,
    session: Mutex<Option<Arc<SshSession>>>,
}

impl std::fmt::Debug for SshRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshRunner")
            .field("destination", &self.config.destination())
            .finish()
    }
}

impl SshRunner {
    /// A runner for `settings`, each command limited to `timeout`.
    ///
    /// # Errors
    /// When the settings are invalid (empty host, bad user name, …).
    pub fn new(settings: &SshSettings, timeout: Duration) -> Result<SshRunner, RunnerError> {
        let config = settings
            .ssh_config(timeout)
            .map_err(|source| RunnerError::Ssh {
                destination: format!("{}@{}:{}", settings.user, settings.host, settings.port),
                source: Box::new(source),
            })?;
        Ok(SshRunner {
            config,
            session: Mutex::new(None),
        })
    }

    fn session(&self) -> Result<Arc<SshSession>, RunnerError> {
        let mut guard = self.session.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = guard.as_ref() {
            return Ok(Arc::clone(s));
        }
        let session =
            Arc::new(
                SshSession::connect(&self.config).map_err(|source| RunnerError::Ssh {
                    destination: self.config.destination(),
                    source: Box::new(source),
                })?,
            );
        log::info!("ssh: logged in to {}", self.config.destination());
        *guard = Some(Arc::clone(&session));
        Ok(session)
    }
}

impl CommandRunner for SshRunner {
    fn run(&self, argv: &[String]) -> Result<CommandOutput, RunnerError> {
        if argv.is_empty() {
            return Err(RunnerError::Empty);
        }
        let session = self.session()?;
        match session.exec(argv) {
            Ok(out) => Ok(CommandOutput {
                status: out.status,
                stdout: out.stdout,
                stderr: out.stderr,
            }),
            Err(source) => {
                if source.is_retryable() {
                    // Log in afresh next time.
                    *self.session.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                Err(RunnerError::Ssh {
                    destination: self.config.destination(),
                    source: Box::new(source),
                })
            }
        }
    }

    fn describe(&self) -> String {
        format!("ssh {}", self.config.destination())
    }

    /// Through a `direct-tcpip` channel from the login node: the compute
    /// nodes may be reachable from there only.
    fn http_status(
        &self,
        host: &str,
        port: u16,
        path: &str,
        timeout: Duration,
    ) -> Option<Result<Option<u16>, RunnerError>> {
        let session = match self.session() {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        Some(
            session
                .http_status(host, port, path, timeout)
                .map_err(|source| RunnerError::Ssh {
                    destination: self.config.destination(),
                    source: Box::new(source),
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_runner_collects_output_and_status() {
        let r = LocalRunner::new(Duration::from_secs(10));
        let out = r
            .run(&[
                "sh".into(),
                "-c".into(),
                "echo out; echo err >&2; exit 3".into(),
            ])
            .unwrap();
        assert_eq!(
            (out.status, out.stdout.as_str(), out.stderr.as_str()),
            (3, "out\n", "err\n")
        );
        assert!(matches!(
            r.run(&["/nonexistent/x".into()]),
            Err(RunnerError::Spawn { .. })
        ));
        let r = LocalRunner::new(Duration::from_millis(200));
        assert!(matches!(
            r.run(&["sleep".into(), "5".into()]),
            Err(RunnerError::Timeout { .. })
        ));
    }
}
