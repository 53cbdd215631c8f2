//! Shared helpers: spawn the real `aif-bench-api` on a free 127.0.0.1 port and
//! talk to it with ureq.

#![allow(dead_code)]

pub mod slurm;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aif_testbed::{free_port, wait_until};
use serde_json::Value;

/// The binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_aif-bench-api"))
}

/// The recipes shipped with the crate.
pub fn shipped_recipes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes")
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A ureq agent that returns 4xx/5xx as answers.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .allow_non_standard_methods(true)
        .max_redirects(0)
        .build()
        .into()
}

/// Sends one request.
pub fn request(url: &str, method: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Answer {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let req = builder
        .body(body.map(<[u8]>::to_vec).unwrap_or_default())
        .expect("request");
    let mut resp = agent()
        .run(req)
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    Answer {
        status,
        headers,
        body,
    }
}

/// A running `aif-bench-api`.
pub struct Api {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub args: Vec<String>,
    pub envs: Vec<(String, String)>,
    pub token: Option<String>,
    child: Option<Child>,
}

impl Api {
    /// Starts one with `extra` flags (after `--listen --db --log-dir`), the
    /// given config TOML (may be empty) and recipes directory.
    pub fn start(
        recipes: &Path,
        config_toml: &str,
        extra: &[&str],
        envs: &[(String, String)],
    ) -> Api {
        let dir = tempfile::Builder::new()
            .prefix("aif-api-test-")
            .tempdir()
            .expect("tempdir");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, config_toml).expect("config");
        let port = free_port();
        let mut args: Vec<String> = vec![
            "--config".into(),
            config.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--db".into(),
            dir.path().join("state.sqlite").display().to_string(),
            "--log-dir".into(),
            dir.path().join("logs").display().to_string(),
            "--recipes".into(),
            recipes.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut api = Api {
            dir,
            port,
            args,
            envs: envs.to_vec(),
            token: None,
            child: None,
        };
        api.spawn();
        api
    }

    fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("api.log"))
            .expect("log");
        let mut cmd = Command::new(binary());
        cmd.args(&self.args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn aif-bench-api");
        self.child = Some(child);
        let url = self.url("/health");
        let mut exited = false;
        let up = wait_until(Duration::from_secs(30), || {
            if let Some(c) = self.child.as_mut()
                && matches!(c.try_wait(), Ok(Some(_)))
            {
                exited = true;
                return true;
            }
            aif_testbed::http_get(&url).is_ok_and(|(s, _)| s == 200)
        });
        assert!(
            up && !exited,
            "aif-bench-api did not come up; log:\n{}",
            self.log()
        );
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("aif-bench-api is running").id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("api.log")).unwrap_or_default()
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    fn auth_headers(&self) -> Vec<(String, String)> {
        self.token
            .iter()
            .map(|t| ("Authorization".to_string(), format!("Bearer {t}")))
            .collect()
    }

    pub fn get(&self, path: &str) -> Answer {
        request(&self.url(path), "GET", &[], None)
    }

    pub fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        let auth = self.auth_headers();
        let mut headers: Vec<(&str, &str)> =
            auth.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let bytes = body.map(|b| serde_json::to_vec(b).expect("json"));
        if bytes.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        request(&self.url(path), method, &headers, bytes.as_deref())
    }

    pub fn post(&self, path: &str, body: &Value) -> Answer {
        self.send("POST", path, Some(body))
    }

    /// GET /api/v1/services/{id} as JSON.
    pub fn service(&self, id: &str) -> Value {
        let a = self.get(&format!("/api/v1/services/{id}"));
        assert_eq!(a.status, 200, "{}", a.body);
        a.json()
    }

    /// Waits until the service has `status`; panics with its record and the
    /// log otherwise.
    pub fn wait_service(&self, id: &str, status: &str, timeout: Duration) -> Value {
        let mut last = Value::Null;
        let ok = wait_until(timeout, || {
            last = self.service(id);
            last["status"] == status
        });
        assert!(
            ok,
            "service {id} never became {status}: {last:#}\nlog:\n{}",
            self.log()
        );
        last
    }

    /// Creates a service; asserts 201.
    pub fn create_service(&self, recipe: &str, params: Value) -> Value {
        let a = self.post(
            "/api/v1/services",
            &serde_json::json!({"recipe": recipe, "params": params}),
        );
        assert_eq!(a.status, 201, "{}\nlog:\n{}", a.body, self.log());
        a.json()
    }

    /// SIGKILL (for restart tests).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again with the same flags, directory and port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Cancels every open service (so nothing outlives the test), then stops.
    pub fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        for id in open_service_ids(&self.get("/api/v1/services")) {
            let _ = self.send("DELETE", &format!("/api/v1/services/{id}"), None);
        }
        if let Some(c) = self.child.take() {
            terminate(c);
        }
    }
}

/// The ids of the services a `GET /api/v1/services` answer lists as not
/// ended (none when it is not a 200).
pub fn open_service_ids(list: &Answer) -> Vec<String> {
    if list.status != 200 {
        return Vec::new();
    }
    list.json()
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| {
            !matches!(
                s["status"].as_str().unwrap_or(""),
                "completed" | "failed" | "cancelled"
            )
        })
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .collect()
}

/// SIGTERM to a child API (or a program that exec'd it), SIGKILL when it has
/// not exited 5 s later, then reaps it.
pub fn terminate(mut c: Child) {
    if matches!(c.try_wait(), Ok(None)) {
        // SAFETY: kill(2) on the PID of our own child.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        if !wait_until(Duration::from_secs(5), || {
            matches!(c.try_wait(), Ok(Some(_)))
        }) {
            let _ = c.kill();
        }
    }
    let _ = c.wait();
}

impl Drop for Api {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "aif-bench-api log ({}):\n{}",
                self.dir.path().display(),
                self.log()
            );
        }
        self.stop();
    }
}

/// Writes `files` (name, TOML) into a fresh recipes directory that also holds
/// the shipped recipes.
pub fn recipes_with(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("aif-recipes-")
        .tempdir()
        .expect("tempdir");
    for entry in std::fs::read_dir(shipped_recipes()).expect("shipped recipes") {
        let p = entry.expect("entry").path();
        std::fs::copy(&p, dir.path().join(p.file_name().expect("name"))).expect("copy");
    }
    for (name, text) in extra {
        std::fs::write(dir.path().join(name), text).expect("recipe");
    }
    dir
}

/// A recipe that waits until the file `{flag}` exists, then exits with `{code}`.
pub const EXIT_AFTER_RECIPE: &str = r#"
name = "exit-after"
description = "Waits for a flag file, then exits with a code"
category = "test"
argv = ["python3", "-c", "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.05)\nsys.exit(int(sys.argv[2]))", "{flag}", "{code}"]
[resources]
cpus = 1
[parameters.flag]
type = "string"
max_length = 4096
[parameters.code]
type = "integer"
default = 0
min = 0
max = 255
"#;

/// The `[slurm]` and `[slurm.ssh]` TOML that drive `cluster` through `sshd`
/// (the "login node"): a client key authorized there and a known_hosts
/// holding its host key, both made in `work`; job logs in `work/slurm-logs`.
pub fn slurm_over_ssh(
    sshd: &aif_testbed::Sshd,
    cluster: &aif_testbed::SlurmCluster,
    work: &Path,
) -> String {
    let key = sshd
        .client_key(
            "id_api",
            aif_testbed::KeyKind::Ed25519,
            aif_testbed::KeyFormat::OpenSsh,
            None,
        )
        .expect("client key");
    let known_hosts = work.join("known_hosts");
    sshd.write_known_hosts(&known_hosts).expect("known_hosts");
    format!(
        "[slurm]\nlog_dir = \"{logs}\"\nenv = {{ SLURM_CONF = \"{conf}\" }}\n\
         [slurm.ssh]\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"{user}\"\nidentity_file = \"{key}\"\nknown_hosts = \"{kh}\"\n",
        logs = work.join("slurm-logs").display(),
        conf = cluster.conf_path().display(),
        port = sshd.port(),
        user = sshd.user(),
        key = key.private.display(),
        kh = known_hosts.display(),
    )
}

/// True while the process group exists.
pub fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

/// `aif-node-exporter` of this workspace, built when it is not there yet.
pub fn exporter_binary() -> PathBuf {
    let dir = binary();
    let exe = dir.parent().expect("target dir").join("aif-node-exporter");
    if !exe.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "aif-node-exporter"])
            .status()
            .expect("cargo build -p aif-node-exporter");
        assert!(status.success(), "cannot build aif-node-exporter");
    }
    assert!(exe.is_file(), "{} missing", exe.display());
    exe
}

/// The true energy (J) of `gpus` simulated GPUs of seed 1 (the exporter's
/// defaults: every exporter the API starts has these curves) over
/// `[from_ms, to_ms]`, integrated at 5 ms steps.
pub fn simulated_energy(gpus: usize, from_ms: i64, to_ms: i64) -> f64 {
    use gpu_metrics::source::{GpuSource, SimulatedSource};
    let mut src = SimulatedSource::new(gpus, 1).expect("simulated");
    let total = |r: &[gpu_metrics::source::GpuReading]| -> f64 {
        r.iter().map(|g| g.energy_mj.expect("energy") as f64).sum()
    };
    let start = total(&src.sample(from_ms).expect("sample"));
    let mut t = from_ms;
    let mut last = start;
    while t < to_ms {
        t = (t + 5).min(to_ms);
        last = total(&src.sample(t).expect("sample"));
    }
    (last - start) / 1000.0
}
