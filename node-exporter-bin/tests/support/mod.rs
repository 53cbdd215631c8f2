//! Spawning `aif-node-exporter` in tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use aif_testbed::netns::in_netns;
use aif_testbed::{Topology, http_get, wait_until};

pub const EXE: &str = env!("CARGO_BIN_EXE_aif-node-exporter");

/// A running exporter; killed on drop, its log printed if the test failed.
pub struct Exporter {
    child: Option<Child>,
    pub log: PathBuf,
    pub listen: Option<String>,
    /// The network namespace it runs in (`None`: the test's own); its
    /// `--listen` address is scraped from inside it.
    netns: Option<String>,
}

impl Exporter {
    /// Starts the exporter with `args`; stderr goes to `dir/exporter.log`.
    pub fn start(dir: &Path, args: &[&str]) -> Exporter {
        Self::spawn(Command::new(EXE), None, dir, args)
    }

    /// [`Exporter::start`] on `host` of `topo` (`ip netns exec`, which execs
    /// the exporter: its network, its `/etc/hosts`, and [`Exporter::pid`] is
    /// the exporter's); [`Exporter::scrape`] is made from inside that host.
    pub fn start_in(topo: &Topology, host: &str, dir: &Path, args: &[&str]) -> Exporter {
        let netns = topo.netns(host).to_string();
        Self::spawn(topo.exec(host, EXE), Some(netns), dir, args)
    }

    fn spawn(mut cmd: Command, netns: Option<String>, dir: &Path, args: &[&str]) -> Exporter {
        let log = dir.join("exporter.log");
        let out = std::fs::File::create(&log).expect("log file");
        let listen = args
            .iter()
            .position(|a| *a == "--listen")
            .map(|i| args[i + 1].to_string());
        let child = cmd
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("SLURM_JOB_ID")
            .env_remove("AIF_PUSHGATEWAY_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn aif-node-exporter");
        Exporter {
            child: Some(child),
            log,
            listen,
            netns,
        }
    }

    /// The exporter's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exporter's own `/metrics` (needs `--listen`).
    pub fn scrape(&self) -> String {
        let addr = self.listen.as_ref().expect("started with --listen");
        let url = format!("http://{addr}/metrics");
        match in_netns(self.netns.as_deref(), || http_get(&url)) {
            Ok(Ok((200, body))) => body,
            _ => String::new(),
        }
    }

    /// Sends SIGTERM and waits (up to 20 s) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child's PID.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let mut status = None;
        wait_until(Duration::from_secs(20), || {
            status = child.try_wait().expect("try_wait");
            status.is_some()
        });
        match status {
            Some(s) => s,
            None => {
                let _ = child.kill();
                panic!(
                    "exporter did not exit within 20 s of SIGTERM:\n{}",
                    self.log_text()
                );
            }
        }
    }

    /// SIGKILL, no cleanup.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- exporter log ({}) ---\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// Runs the exporter to completion with `args`; returns (status, stderr).
pub fn run_to_end(args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(EXE)
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("spawn");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
