//! A real Prometheus Pushgateway (`prometheus-pushgateway`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::{ServerProcess, TestbedError, free_port, http_get, require_binary};

/// A running Pushgateway on 127.0.0.1.
#[derive(Debug)]
pub struct Pushgateway {
    server: ServerProcess,
    binary: PathBuf,
    addr: SocketAddr,
    web_config: Option<PathBuf>,
}

impl Pushgateway {
    /// Starts one on a free port and waits for `/-/ready`.
    ///
    /// # Errors
    /// Missing `prometheus-pushgateway` package, or not ready within 15 s.
    pub fn start() -> Result<Self, TestbedError> {
        Self::start_with_web_config(None)
    }

    /// Starts one with `--web.config.file` holding `web_config_yaml` (basic auth,
    /// for example `basic_auth_users: {user: <bcrypt hash>}`).
    ///
    /// # Errors
    /// As [`Pushgateway::start`].
    pub fn start_with_web_config(web_config_yaml: Option<&str>) -> Result<Self, TestbedError> {
        let binary = require_binary("prometheus-pushgateway", "prometheus-pushgateway")?;
        let dir = tempfile::Builder::new().prefix("aif-pgw-").tempdir()?;
        let web_config = match web_config_yaml {
            Some(yaml) => {
                let p = dir.path().join("web-config.yml");
                std::fs::write(&p, yaml)?;
                Some(p)
            }
            None => None,
        };
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let cmd = Self::command(&binary, addr, dir.path(), web_config.as_deref());
        let server = ServerProcess::spawn("pushgateway", cmd, dir)?;
        let mut pgw = Pushgateway {
            server,
            binary,
            addr,
            web_config,
        };
        pgw.wait_ready()?;
        Ok(pgw)
    }

    fn command(
        binary: &std::path::Path,
        addr: SocketAddr,
        dir: &std::path::Path,
        web_config: Option<&std::path::Path>,
    ) -> Command {
        let mut cmd = Command::new(binary);
        cmd.arg(format!("--web.listen-address={addr}"))
            .arg(format!(
                "--persistence.file={}",
                dir.join("pgw.data").display()
            ))
            .arg("--log.level=info");
        if let Some(p) = web_config {
            cmd.arg(format!("--web.config.file={}", p.display()));
        }
        cmd
    }

    fn wait_ready(&mut self) -> Result<(), TestbedError> {
        let url = format!("http://{}/-/ready", self.addr);
        let auth = self.web_config.is_some();
        self.server.wait_ready(Duration::from_secs(15), || {
            // With basic auth every path answers 401 once it is up.
            matches!(http_get(&url), Ok((200, _)))
                || (auth && matches!(http_get(&url), Ok((401, _))))
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The body of `GET /metrics` (what Prometheus would scrape).
    ///
    /// # Errors
    /// Transport errors, or a status other than 200 (as an I/O error).
    pub fn metrics_text(&self) -> Result<String, TestbedError> {
        match http_get(&format!("{}/metrics", self.url())) {
            Ok((200, body)) => Ok(body),
            Ok((status, body)) => Err(TestbedError::Io(std::io::Error::other(format!(
                "GET /metrics: {status}: {body}"
            )))),
            Err(e) => Err(TestbedError::Io(std::io::Error::other(e.to_string()))),
        }
    }

    /// Stops the process (the port becomes free; persistence is flushed).
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Kills the process with SIGKILL.
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// Starts it again on the same port and directory, and waits until ready.
    ///
    /// # Errors
    /// As [`Pushgateway::start`].
    pub fn restart(&mut self) -> Result<(), TestbedError> {
        let cmd = Self::command(
            &self.binary,
            self.addr,
            self.server.dir(),
            self.web_config.as_deref(),
        );
        self.server.respawn(cmd)?;
        self.wait_ready()
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        self.server.log_text()
    }
}
