//! Starting, waiting for and stopping server processes.

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a testbed server could not be started.
#[derive(Debug)]
pub enum TestbedError {
    /// The server's binary is not installed.
    MissingBinary {
        /// The binary looked for.
        binary: String,
        /// The Debian package that provides it.
        package: String,
    },
    /// The server did not become ready in time.
    NotReady {
        /// Which server.
        what: String,
        /// How long we waited.
        waited: Duration,
        /// The end of its log.
        log_tail: String,
    },
    /// A setup command was refused for want of privilege (the multi-host
    /// testbed's `ip netns add`, `ip link add` …).
    NotPrivileged {
        /// The command line.
        command: String,
        /// What it said.
        stderr: String,
    },
    /// A setup command failed for another reason.
    Setup {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it said.
        stderr: String,
    },
    /// An I/O error while setting up.
    Io(std::io::Error),
}

impl std::fmt::Display for TestbedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TestbedError::MissingBinary { binary, package } => write!(
                f,
                "{binary} is not installed: install the Debian package `{package}` \
                 (apt-get install {package}, or run the README's test command)"
            ),
            TestbedError::NotReady {
                what,
                waited,
                log_tail,
            } => write!(
                f,
                "{what} was not ready after {waited:?}; end of its log:\n{log_tail}"
            ),
            TestbedError::NotPrivileged { command, stderr } => write!(
                f,
                "`{command}` failed: {stderr}; the multi-host tests need root \
                 (CAP_SYS_ADMIN, CAP_NET_ADMIN)"
            ),
            TestbedError::Setup {
                command,
                status,
                stderr,
            } => write!(f, "`{command}` failed ({status}): {stderr}"),
            TestbedError::Io(e) => write!(f, "testbed I/O error: {e}"),
        }
    }
}

impl std::error::Error for TestbedError {}

impl From<std::io::Error> for TestbedError {
    fn from(e: std::io::Error) -> Self {
        TestbedError::Io(e)
    }
}

/// Finds `binary` (a path, or a name looked up on `PATH` and in the sbin
/// directories) or returns [`TestbedError::MissingBinary`] naming `package`.
///
/// # Errors
/// [`TestbedError::MissingBinary`] when it is nowhere to be found.
pub fn require_binary(binary: &str, package: &str) -> Result<PathBuf, TestbedError> {
    let candidate = Path::new(binary);
    if candidate.is_absolute() {
        if candidate.exists() {
            return Ok(candidate.to_path_buf());
        }
    } else {
        let path = std::env::var("PATH").unwrap_or_default();
        for dir in path
            .split(':')
            .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
        {
            let p = Path::new(dir).join(binary);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(TestbedError::MissingBinary {
        binary: binary.to_string(),
        package: package.to_string(),
    })
}

/// A free TCP port on 127.0.0.1 (bound, then released for the server to take).
///
/// # Panics
/// When no port can be bound on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; returns
/// whether it held. This is how tests wait: for a condition, never a fixed sleep.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True when something accepts TCP connections on `addr`.
pub fn port_open(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A running server: its child process, its directory and its log.
///
/// Dropping it kills the process (SIGTERM, then SIGKILL after 5 s) and waits for
/// it. If the current thread is panicking, the directory is kept for post-mortem
/// and its path printed.
#[derive(Debug)]
pub struct ServerProcess {
    what: String,
    child: Option<Child>,
    log: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl ServerProcess {
    /// Spawns `cmd` with stdout and stderr appended to `dir/<what>.log`.
    ///
    /// # Errors
    /// When the log cannot be created or the process cannot be spawned.
    pub fn spawn(what: &str, cmd: Command, dir: tempfile::TempDir) -> Result<Self, TestbedError> {
        let log = dir.path().join(format!("{what}.log"));
        let child = spawn_logged(what, cmd, File::create(&log)?)?;
        Ok(ServerProcess {
            what: what.to_string(),
            child: Some(child),
            log,
            dir: Some(dir),
        })
    }

    /// The server's private directory.
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// The PID of the server process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The whole log so far.
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The last `n` bytes of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let s = self.log_text();
        let start = s.len().saturating_sub(n);
        let start = (start..s.len())
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(s.len());
        s[start..].to_string()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Waits until `ready` holds or `timeout` passes; fails with the log tail
    /// when the process exits or the time runs out.
    ///
    /// # Errors
    /// [`TestbedError::NotReady`] with the end of the log.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), TestbedError> {
        let start = Instant::now();
        let mut exited = false;
        let ok = wait_until(timeout, || {
            if !self.is_running() {
                exited = true;
                return true;
            }
            ready()
        });
        if ok && !exited {
            return Ok(());
        }
        Err(TestbedError::NotReady {
            what: if exited {
                format!("{} (exited)", self.what)
            } else {
                self.what.clone()
            },
            waited: start.elapsed(),
            log_tail: self.log_tail(4000),
        })
    }

    /// Stops the process: SIGTERM, then SIGKILL after 5 s; waits for it.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(&self.what, child);
        }
    }

    /// Kills the process with SIGKILL at once (for outage tests) and waits.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Replaces the stopped process by a new one spawned from `cmd`, with the
    /// same directory and log (appended).
    ///
    /// # Errors
    /// When the process cannot be spawned.
    pub fn respawn(&mut self, cmd: Command) -> Result<(), TestbedError> {
        self.stop();
        let log = File::options().append(true).open(&self.log)?;
        self.child = Some(spawn_logged(&self.what, cmd, log)?);
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
        if let Some(kept) = keep_if_panicking(&mut self.dir) {
            eprintln!(
                "testbed: {} failed test: kept {} (log {})",
                self.what,
                kept.display(),
                self.log.display()
            );
        }
    }
}

/// Spawns `cmd` with stdin from `/dev/null` and stdout and stderr both to
/// `log` (already opened: created or appended), and logs its PID as `what`.
///
/// # Errors
/// When `log` cannot be duplicated or the process cannot be spawned.
pub(crate) fn spawn_logged(what: &str, mut cmd: Command, log: File) -> Result<Child, TestbedError> {
    let err = log.try_clone()?;
    cmd.stdin(Stdio::null()).stdout(log).stderr(err);
    let child = cmd.spawn()?;
    log::info!("testbed: started {what} pid={}", child.id());
    Ok(child)
}

/// Stops `child`: SIGTERM, then SIGKILL after 5 s; waits for it and logs it
/// as `what`.
pub(crate) fn terminate(what: &str, mut child: Child) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) on a PID we spawned and have not reaped yet.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let exited = wait_until(Duration::from_secs(5), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let _ = child.wait();
    log::info!("testbed: stopped {what} pid={pid}");
}

/// When the current thread is panicking (a failed test), takes `dir` out so
/// that it is not deleted and returns its path, for post-mortem.
pub(crate) fn keep_if_panicking(dir: &mut Option<tempfile::TempDir>) -> Option<PathBuf> {
    if std::thread::panicking() {
        dir.take().map(tempfile::TempDir::keep)
    } else {
        None
    }
}

/// An HTTP GET to `url` with a 5 s timeout; `(status, body)`.
///
/// # Errors
/// Transport errors (connection refused, timeout).
pub fn http_get(url: &str) -> Result<(u16, String), ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent.get(url).call()?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string()?;
    Ok((status, body))
}
