//! A real Prometheus server (`prometheus`) with the remote-write receiver, and
//! `promtool`.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::netns::{command_in, free_port_in, in_netns, ip_binary};
use crate::process::{ServerProcess, TestbedError, free_port, http_get, require_binary};

/// A running Prometheus on 127.0.0.1, remote-write receiver enabled, with an
/// out-of-order window (30 min unless told) so late history is accepted.
#[derive(Debug)]
pub struct Prometheus {
    server: ServerProcess,
    binary: std::path::PathBuf,
    addr: SocketAddr,
    /// The network namespace it runs in (`None`: the test's own).
    netns: Option<String>,
}

impl Prometheus {
    /// Starts one with `scrape_configs_yaml` appended to its configuration
    /// (empty for none) and a 30 min out-of-order window, and waits for
    /// `/-/ready`.
    ///
    /// # Errors
    /// Missing `prometheus` package, or not ready within 30 s.
    pub fn start(scrape_configs_yaml: &str) -> Result<Self, TestbedError> {
        Self::start_with_window(scrape_configs_yaml, "30m")
    }

    /// As [`Prometheus::start`] with `storage.tsdb.out_of_order_time_window`
    /// set to `window` (e.g. `"10m"`; `"0s"` disables it).
    ///
    /// # Errors
    /// As [`Prometheus::start`].
    pub fn start_with_window(
        scrape_configs_yaml: &str,
        window: &str,
    ) -> Result<Self, TestbedError> {
        Self::start_inner(
            scrape_configs_yaml,
            window,
            None,
            IpAddr::from([127, 0, 0, 1]),
        )
    }

    /// Starts one inside network namespace `netns` (e.g.
    /// [`crate::Topology::netns`]`("monitor")`), listening on `ip` there, with
    /// `scrape_configs_yaml` and a 30 min out-of-order window, and waits for
    /// `/-/ready` probed from inside that namespace. Its [`Prometheus::url`]
    /// is reachable only from there; [`Prometheus::query`] asks from inside.
    ///
    /// # Errors
    /// As [`Prometheus::start`], or `ip` missing (package `iproute2`), or the
    /// namespace cannot be entered.
    pub fn start_in(
        netns: &str,
        ip: IpAddr,
        scrape_configs_yaml: &str,
    ) -> Result<Self, TestbedError> {
        ip_binary()?;
        Self::start_inner(scrape_configs_yaml, "30m", Some(netns), ip)
    }

    fn start_inner(
        scrape_configs_yaml: &str,
        window: &str,
        netns: Option<&str>,
        ip: IpAddr,
    ) -> Result<Self, TestbedError> {
        let binary = require_binary("prometheus", "prometheus")?;
        let dir = tempfile::Builder::new().prefix("aif-prom-").tempdir()?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 storage:\n  tsdb:\n    out_of_order_time_window: {window}\n{scrape_configs_yaml}"
            ),
        )?;
        let port = match netns {
            Some(ns) => free_port_in(ns, ip)?,
            None => free_port(),
        };
        let addr = SocketAddr::new(ip, port);
        let cmd = Self::command(&binary, addr, dir.path(), netns);
        let server = ServerProcess::spawn("prometheus", cmd, dir)?;
        let mut prom = Prometheus {
            server,
            binary,
            addr,
            netns: netns.map(str::to_string),
        };
        prom.wait_ready()?;
        Ok(prom)
    }

    fn command(
        binary: &std::path::Path,
        addr: SocketAddr,
        dir: &std::path::Path,
        netns: Option<&str>,
    ) -> Command {
        let mut cmd = command_in(netns, binary);
        cmd.arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--web.enable-remote-write-receiver")
        .arg("--log.level=info");
        cmd
    }

    fn wait_ready(&mut self) -> Result<(), TestbedError> {
        let url = format!("http://{}/-/ready", self.addr);
        let netns = self.netns.clone();
        self.server.wait_ready(Duration::from_secs(30), || {
            matches!(
                in_netns(netns.as_deref(), || http_get(&url)),
                Ok(Ok((200, _)))
            )
        })
    }

    /// Stops the process (SIGTERM; the TSDB is closed cleanly, the port freed).
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Starts it again on the same port and data directory; waits until ready.
    ///
    /// # Errors
    /// As [`Prometheus::start`].
    pub fn restart(&mut self) -> Result<(), TestbedError> {
        let cmd = Self::command(
            &self.binary,
            self.addr,
            self.server.dir(),
            self.netns.as_deref(),
        );
        self.server.respawn(cmd)?;
        self.wait_ready()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/api/v1/write`.
    pub fn remote_write_url(&self) -> String {
        format!("{}/api/v1/write", self.url())
    }

    /// Runs an instant PromQL query; returns the raw JSON body.
    ///
    /// # Errors
    /// Transport errors or a non-200 status.
    pub fn query(&self, promql: &str) -> Result<String, TestbedError> {
        let url = self.url();
        in_netns(self.netns.as_deref(), || query_api(&url, promql))?
    }

    /// The network namespace it runs in, if any.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        self.server.log_text()
    }
}

/// Percent-encodes a query parameter value.
pub fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET {base}/api/v1/query?query=…` (Prometheus and VictoriaMetrics speak
/// the same query API); the raw JSON body.
///
/// # Errors
/// Transport errors or a non-200 status.
pub fn query_api(base: &str, promql: &str) -> Result<String, TestbedError> {
    match http_get(&format!("{base}/api/v1/query?query={}", url_encode(promql))) {
        Ok((200, body)) => Ok(body),
        Ok((s, body)) => Err(TestbedError::Io(std::io::Error::other(format!(
            "query {promql}: {s}: {body}"
        )))),
        Err(e) => Err(TestbedError::Io(std::io::Error::other(e.to_string()))),
    }
}

/// One series of a range query: its labels as JSON text and its samples as
/// `(timestamp ms, value)` in time order.
pub type RawSeries = (String, Vec<(i64, f64)>);

/// Every raw sample of `selector` over the last `range` (e.g. `1h`), per
/// series: `(labels as JSON text, [(timestamp ms, value)])`, samples in time
/// order (a range query of `selector[range]`).
///
/// # Errors
/// Transport errors, a non-200 status, or a body that is not a matrix.
pub fn raw_series(base: &str, selector: &str, range: &str) -> Result<Vec<RawSeries>, TestbedError> {
    let body = query_api(base, &format!("{selector}[{range}]"))?;
    let bad = |what: &str| TestbedError::Io(std::io::Error::other(format!("{what}: {body}")));
    let json: serde_json::Value = serde_json::from_str(&body).map_err(|_| bad("not JSON"))?;
    let mut out = Vec::new();
    for series in json["data"]["result"]
        .as_array()
        .ok_or_else(|| bad("no result"))?
    {
        let mut samples = Vec::new();
        for v in series["values"]
            .as_array()
            .ok_or_else(|| bad("not a matrix"))?
        {
            let ts = v[0].as_f64().ok_or_else(|| bad("bad timestamp"))?;
            let value = v[1]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .ok_or_else(|| bad("bad value"))?;
            samples.push(((ts * 1000.0).round() as i64, value));
        }
        out.push((series["metric"].to_string(), samples));
    }
    Ok(out)
}

/// Every raw sample of `selector` over the last `range`, across all matching
/// series, as `(timestamp ms, value)` sorted by time then value.
///
/// # Errors
/// As [`raw_series`].
pub fn raw_samples(
    base: &str,
    selector: &str,
    range: &str,
) -> Result<Vec<(i64, f64)>, TestbedError> {
    let mut out: Vec<(i64, f64)> = raw_series(base, selector, range)?
        .into_iter()
        .flat_map(|(_, s)| s)
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    Ok(out)
}

/// The series of an instant query: `(labels as JSON text, value)`.
///
/// # Errors
/// As [`raw_samples`].
pub fn instant_vector(base: &str, promql: &str) -> Result<Vec<(String, f64)>, TestbedError> {
    let body = query_api(base, promql)?;
    let bad = |what: &str| TestbedError::Io(std::io::Error::other(format!("{what}: {body}")));
    let json: serde_json::Value = serde_json::from_str(&body).map_err(|_| bad("not JSON"))?;
    json["data"]["result"]
        .as_array()
        .ok_or_else(|| bad("no result"))?
        .iter()
        .map(|s| {
            let v = s["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| bad("bad value"))?;
            Ok((s["metric"].to_string(), v))
        })
        .collect()
}

/// The outcome of `promtool check metrics`.
#[derive(Debug)]
pub struct PromtoolReport {
    /// Exit code (0: no finding).
    pub code: Option<i32>,
    /// Everything it printed (findings are on stderr).
    pub output: String,
}

/// Pipes `text` through `promtool check metrics`.
///
/// # Errors
/// Missing `prometheus` package (which ships promtool), or I/O errors.
pub fn promtool_check_metrics(text: &str) -> Result<PromtoolReport, TestbedError> {
    let promtool = require_binary("promtool", "prometheus")?;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no stdin"))?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    Ok(PromtoolReport {
        code: out.status.code(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}
