//! A real VictoriaMetrics single-node server (`victoria-metrics`): a
//! remote-write receiver that takes samples of any age within its retention.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::process::{ServerProcess, TestbedError, free_port, http_get, require_binary};

/// A running VictoriaMetrics on 127.0.0.1 with its data in a temporary
/// directory.
#[derive(Debug)]
pub struct VictoriaMetrics {
    server: ServerProcess,
    addr: SocketAddr,
}

impl VictoriaMetrics {
    /// Starts one on a free port (retention 10 years, so test data of any
    /// age is kept) and waits for `/health`.
    ///
    /// # Errors
    /// Missing `victoria-metrics` package, or not ready within 30 s.
    pub fn start() -> Result<Self, TestbedError> {
        let binary = require_binary("victoria-metrics", "victoria-metrics")?;
        let dir = tempfile::Builder::new().prefix("aif-vm-").tempdir()?;
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut cmd = Command::new(binary);
        cmd.arg(format!("-httpListenAddr={addr}"))
            .arg(format!(
                "-storageDataPath={}",
                dir.path().join("vm").display()
            ))
            .arg("-retentionPeriod=10y")
            // Make freshly written samples searchable at once.
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache");
        let mut server = ServerProcess::spawn("victoria-metrics", cmd, dir)?;
        let url = format!("http://{addr}/health");
        server.wait_ready(Duration::from_secs(30), || {
            matches!(http_get(&url), Ok((200, _)))
        })?;
        Ok(VictoriaMetrics { server, addr })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/api/v1/write`.
    pub fn remote_write_url(&self) -> String {
        format!("{}/api/v1/write", self.url())
    }

    /// Runs an instant query (PromQL/MetricsQL); the raw JSON body.
    ///
    /// # Errors
    /// Transport errors or a non-200 status.
    pub fn query(&self, promql: &str) -> Result<String, TestbedError> {
        crate::prometheus::query_api(&self.url(), promql)
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        self.server.log_text()
    }
}
