//! A real Prometheus Pushgateway (`prometheus-pushgateway`), on 127.0.0.1 or,
//! with [`Pushgateway::start_in`], on a host's address inside a network
//! namespace of [`crate::netns`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::netns::{command_in, free_port_in, in_netns, ip_binary};
use crate::process::{ServerProcess, TestbedError, free_port, http_get, require_binary};

/// A running Pushgateway on 127.0.0.1 (or inside a network namespace).
#[derive(Debug)]
pub struct Pushgateway {
    server: ServerProcess,
    binary: PathBuf,
    addr: SocketAddr,
    web_config: Option<PathBuf>,
    /// The network namespace it runs in (`None`: the test's own).
    netns: Option<String>,
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
        Self::start_inner(web_config_yaml, None, IpAddr::from([127, 0, 0, 1]))
    }

    /// Starts one inside network namespace `netns` (e.g.
    /// [`crate::Topology::netns`]`("monitor")`), listening on `ip` there, and
    /// waits for `/-/ready` probed from inside that namespace. Its
    /// [`Pushgateway::url`] is reachable only from that namespace (and from
    /// those routed to it); [`Pushgateway::metrics_text`] reads it from inside.
    ///
    /// # Errors
    /// As [`Pushgateway::start`], or `ip` missing (package `iproute2`), or the
    /// namespace cannot be entered.
    pub fn start_in(netns: &str, ip: IpAddr) -> Result<Self, TestbedError> {
        ip_binary()?;
        Self::start_inner(None, Some(netns), ip)
    }

    fn start_inner(
        web_config_yaml: Option<&str>,
        netns: Option<&str>,
        ip: IpAddr,
    ) -> Result<Self, TestbedError> {
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
        let port = match netns {
            Some(ns) => free_port_in(ns, ip)?,
            None => free_port(),
        };
        let addr = SocketAddr::new(ip, port);
        let cmd = Self::command(&binary, addr, dir.path(), web_config.as_deref(), netns);
        let server = ServerProcess::spawn("pushgateway", cmd, dir)?;
        let mut pgw = Pushgateway {
            server,
            binary,
            addr,
            web_config,
            netns: netns.map(str::to_string),
        };
        pgw.wait_ready()?;
        Ok(pgw)
    }

    fn command(
        binary: &std::path::Path,
        addr: SocketAddr,
        dir: &std::path::Path,
        web_config: Option<&std::path::Path>,
        netns: Option<&str>,
    ) -> Command {
        let mut cmd = command_in(netns, binary);
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
        let netns = self.netns.clone();
        self.server.wait_ready(Duration::from_secs(15), || {
            // With basic auth every path answers 401 once it is up.
            match get_in(netns.as_deref(), &url) {
                Ok((200, _)) => true,
                Ok((401, _)) => auth,
                _ => false,
            }
        })
    }

    /// `http://ADDR:PORT` (`http://127.0.0.1:PORT` unless started in a
    /// namespace).
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
        match get_in(self.netns.as_deref(), &format!("{}/metrics", self.url())) {
            Ok((200, body)) => Ok(body),
            Ok((status, body)) => Err(TestbedError::Io(std::io::Error::other(format!(
                "GET /metrics: {status}: {body}"
            )))),
            Err(e) => Err(TestbedError::Io(e)),
        }
    }

    /// The network namespace it runs in, if any.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
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
            self.netns.as_deref(),
        );
        self.server.respawn(cmd)?;
        self.wait_ready()
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        self.server.log_text()
    }
}

/// `GET url` from inside `netns` (or from here with `None`).
fn get_in(netns: Option<&str>, url: &str) -> std::io::Result<(u16, String)> {
    in_netns(netns, || http_get(url))?.map_err(|e| std::io::Error::other(e.to_string()))
}
