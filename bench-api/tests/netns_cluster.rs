//! Issue 16, test 2.2 "Across it": the usual site of DESIGN.md §2 on the
//! namespace topology (`aif_testbed::Topology`, `NetnsSlurm`).
//!
//! - `monitor`: Pushgateway, Prometheus (remote-write receiver) and
//!   `aif-bench-api` itself (`ip netns exec`), backend `slurm` driven over SSH
//!   to `login` (sshd on login's monitor-side address, host name `login`).
//! - The API's reverse tunnel is bound on login's cluster-facing address
//!   (`GatewayPorts clientspecified`) and advertised to the jobs as
//!   `http://198.19.0.1:PORT`: the nodes have no route to `monitor`.
//! - A GPU service of `nodes = 2` gets one real `aif-node-exporter`
//!   (`--source simulated`) on each node; both nodes' series must reach the
//!   Pushgateway and Prometheus (remote-write), labelled with `service_id`,
//!   `slurm_job_id` and each node's `instance`.

mod common;

use std::net::IpAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use aif_testbed::netns::{free_port_in, in_netns};
use aif_testbed::{
    KeyFormat, KeyKind, NetnsSlurm, Prometheus, Pushgateway, Sshd, SshdOptions, Topology,
    instant_vector, metric_value, wait_until,
};
use common::{Answer, recipes_with, request};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

/// A GPU service over two nodes; no health path (the API could not reach a
/// node from `monitor` to probe it): `running` once its job runs.
const GPU_2NODES_RECIPE: &str = r#"
name = "gpu-http-2nodes"
description = "HTTP server on two nodes' (fake) GPUs"
category = "test"
argv = ["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
port = "{port}"
startup_timeout_seconds = 60
[resources]
nodes = 2
gpus = 1
cpus = 1
memory = "256M"
[parameters.port]
type = "integer"
min = 1024
max = 65535
"#;

/// `aif-bench-api` running inside `monitor`'s namespace; every request is
/// made from inside it too. Stopped (services cancelled first) on drop.
struct NsApi {
    netns: String,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl NsApi {
    fn start(
        topo: &Topology,
        host: &str,
        recipes: &std::path::Path,
        toml: &str,
        extra: &[&str],
    ) -> NsApi {
        let netns = topo.netns(host).to_string();
        let dir = tempfile::Builder::new()
            .prefix("aif-api-netns-")
            .tempdir()
            .expect("tempdir");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, toml).expect("config");
        let port = free_port_in(&netns, IpAddr::from([127, 0, 0, 1])).expect("port in monitor");
        let log = std::fs::File::create(dir.path().join("api.log")).expect("log");
        let mut cmd = topo.exec(host, common::binary());
        cmd.arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--db")
            .arg(dir.path().join("state.sqlite"))
            .arg("--log-dir")
            .arg(dir.path().join("logs"))
            .arg("--recipes")
            .arg(recipes)
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("SLURM_CONF")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let child = cmd.spawn().expect("spawn aif-bench-api in monitor");
        let mut api = NsApi {
            netns,
            port,
            dir,
            child: Some(child),
        };
        let mut exited = false;
        let up = wait_until(Duration::from_secs(30), || {
            if let Some(c) = api.child.as_mut()
                && matches!(c.try_wait(), Ok(Some(_)))
            {
                exited = true;
                return true;
            }
            let url = api.url("/health");
            in_netns(Some(&api.netns), || aif_testbed::http_get(&url))
                .is_ok_and(|r| r.is_ok_and(|(s, _)| s == 200))
        });
        assert!(
            up && !exited,
            "aif-bench-api did not come up in {}; log:\n{}",
            api.netns,
            api.log()
        );
        api
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("api.log")).unwrap_or_default()
    }

    fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        let url = self.url(path);
        let bytes = body.map(|b| serde_json::to_vec(b).expect("json"));
        let headers: Vec<(&str, &str)> = if bytes.is_some() {
            vec![("Content-Type", "application/json")]
        } else {
            Vec::new()
        };
        in_netns(Some(&self.netns), || {
            request(&url, method, &headers, bytes.as_deref())
        })
        .expect("enter monitor")
    }

    fn get(&self, path: &str) -> Answer {
        self.send("GET", path, None)
    }

    fn service(&self, id: &str) -> Value {
        let a = self.get(&format!("/api/v1/services/{id}"));
        assert_eq!(a.status, 200, "{}", a.body);
        a.json()
    }

    fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        if matches!(c.try_wait(), Ok(None)) {
            let a = self.get("/api/v1/services");
            if a.status == 200 {
                for s in a.json().as_array().cloned().unwrap_or_default() {
                    let st = s["status"].as_str().unwrap_or("");
                    if !matches!(st, "completed" | "failed" | "cancelled") {
                        let id = s["id"].as_str().unwrap_or("");
                        let _ = self.send("DELETE", &format!("/api/v1/services/{id}"), None);
                    }
                }
            }
            // SAFETY: kill(2) on the PID of our own child (`ip netns exec`
            // execs the API, so it is the API's).
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
}

impl Drop for NsApi {
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

/// Lines of exposition `text` of metric `name` carrying every `labels` pair.
fn series_with<'a>(text: &'a str, name: &str, labels: &[(&str, &str)]) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .collect()
}

/// The job's state as `squeue` on login says it (`None` once it is gone).
fn squeue_state(slurm: &NetnsSlurm, job: &str) -> Option<String> {
    let out = slurm
        .command("login", "squeue")
        .args(["-h", "-j", job, "-o", "%T"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!s.is_empty()).then_some(s)
}

#[test]
fn two_node_gpu_service_on_the_namespace_cluster_pushes_from_both_nodes_through_the_reverse_tunnel()
{
    let t0 = Instant::now();
    // Declared first: dropped last.
    let topo = Topology::build(2).unwrap_or_else(|e| panic!("{e}"));
    let slurm = NetnsSlurm::start(&topo, 2).unwrap_or_else(|e| panic!("{e}"));
    let monitor = topo.netns("monitor").to_string();
    let login = topo.netns("login").to_string();
    let pgw = Pushgateway::start_in(&monitor, topo.monitor_addr().into())
        .unwrap_or_else(|e| panic!("{e}"));
    let prom = Prometheus::start_in(&monitor, topo.monitor_addr().into(), "")
        .unwrap_or_else(|e| panic!("{e}"));
    let sshd = Sshd::start_with(SshdOptions {
        netns: Some(login.clone()),
        listen: topo.login_monitor_side().into(),
        hostname: Some("login".into()),
        extra_config: vec!["GatewayPorts clientspecified".into()],
        ..SshdOptions::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "testbed (topology, slurm, pushgateway, prometheus, sshd) up in {:?}",
        t0.elapsed()
    );

    let work = tempfile::Builder::new()
        .prefix("aif-netns-cluster-")
        .tempdir()
        .expect("tempdir");
    {
        // The jobs (root on the nodes) write their logs here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    let key = sshd
        .client_key("id_api", KeyKind::Ed25519, KeyFormat::OpenSsh, None)
        .expect("client key");
    let known_hosts = work.path().join("known_hosts");
    sshd.write_known_hosts(&known_hosts).expect("known_hosts");
    let cluster_side = topo.login_cluster_side();
    let tunnel_port = free_port_in(&login, cluster_side.into()).expect("port on login");
    let rw_port = loop {
        let p = free_port_in(&login, cluster_side.into()).expect("port on login");
        if p != tunnel_port {
            break p;
        }
    };
    let exporter = common::exporter_binary();
    let toml = format!(
        "poll_interval_ms = 200\n\
         exporter_binary = \"{exporter}\"\n\
         exporter_source = \"simulated\"\n\
         reverse_tunnel_linger_seconds = 10\n\
         [slurm]\nlog_dir = \"{logs}\"\nenv = {{ SLURM_CONF = \"{conf}\" }}\n\
         [slurm.ssh]\nhost = \"{host}\"\nport = {port}\nuser = \"{user}\"\n\
         identity_file = \"{key}\"\nknown_hosts = \"{kh}\"\n",
        exporter = exporter.display(),
        logs = work.path().join("slurm-logs").display(),
        conf = slurm.conf_path().display(),
        host = sshd.addr().ip(),
        port = sshd.port(),
        user = sshd.user(),
        key = key.private.display(),
        kh = known_hosts.display(),
    );
    let recipes = recipes_with(&[("gpu-http-2nodes.toml", GPU_2NODES_RECIPE)]);
    let tunnel = tunnel_port.to_string();
    let rw = rw_port.to_string();
    let bind = cluster_side.to_string();
    let api = NsApi::start(
        &topo,
        "monitor",
        recipes.path(),
        &toml,
        &[
            "--backend",
            "slurm",
            "--pushgateway",
            &pgw.url(),
            "--remote-write",
            &prom.remote_write_url(),
            "--reverse-tunnel",
            &tunnel,
            "--reverse-tunnel-remote-write-port",
            &rw,
            "--reverse-tunnel-bind",
            &bind,
            "--reverse-tunnel-advertise",
            &bind,
        ],
    );

    // Start the service.
    let created = Instant::now();
    let a = api.send(
        "POST",
        "/api/v1/services",
        Some(&json!({"recipe": "gpu-http-2nodes", "params": {"port": 18080}})),
    );
    assert_eq!(a.status, 201, "{}\n{}", a.body, api.log());
    let sid = a.json()["id"].as_str().expect("id").to_string();
    let mut svc = Value::Null;
    let running = wait_until(WAIT, || {
        svc = api.service(&sid);
        svc["status"] == "running" || svc["status"] == "failed"
    });
    assert!(
        running && svc["status"] == "running",
        "service never running: {svc:#}\n{}\n{}",
        api.log(),
        slurm.log_text()
    );
    let to_running = created.elapsed();
    let job = svc["backend_ref"].as_str().expect("job id").to_string();
    println!("service {sid} (job {job}) running after {to_running:?}: {svc}");

    // The reverse tunnel is up, bound on login's cluster side.
    let tunnel_up = |forward: &str, port: u16| {
        metric_value(
            &api.get("/metrics").body,
            "aif_api_reverse_tunnel_up",
            &[("forward", forward), ("port", &port.to_string())],
        )
    };
    assert!(
        wait_until(WAIT, || tunnel_up("pushgateway", tunnel_port) == Some(1.0)
            && tunnel_up("remote_write", rw_port) == Some(1.0)),
        "reverse tunnel not up:\n{}\n{}\n{}",
        api.get("/metrics").body,
        api.log(),
        sshd.log_text()
    );

    // sshd listens for it on login's cluster side (where the nodes reach it).
    let on_login = |port: u16| {
        in_netns(Some(&login), || {
            aif_testbed::port_open(std::net::SocketAddr::from((cluster_side, port)))
        })
        .unwrap_or(false)
    };
    assert!(on_login(tunnel_port) && on_login(rw_port));

    // Both nodes' exporter series reach the Pushgateway, through the tunnel.
    let nodes = ["node1", "node2"];
    let metric = "aif_gpu_power_watts";
    let in_pgw = |node: &str| {
        let text = pgw.metrics_text().unwrap_or_default();
        !series_with(
            &text,
            metric,
            &[
                ("instance", node),
                ("service_id", &sid),
                ("slurm_job_id", &job),
            ],
        )
        .is_empty()
    };
    let mut pgw_seen: Vec<(String, Duration)> = Vec::new();
    let all_pgw = wait_until(WAIT, || {
        for n in nodes {
            if !pgw_seen.iter().any(|(m, _)| m == n) && in_pgw(n) {
                pgw_seen.push((n.to_string(), created.elapsed()));
            }
        }
        pgw_seen.len() == nodes.len()
    });
    let log_dir = work.path().join("slurm-logs");
    let job_logs = || -> String {
        std::fs::read_dir(&log_dir)
            .map(|d| {
                d.flatten()
                    .map(|e| {
                        format!(
                            "--- {} ---\n{}\n",
                            e.path().display(),
                            std::fs::read_to_string(e.path()).unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        all_pgw,
        "Pushgateway has {metric} of {pgw_seen:?} only (of {nodes:?}):\n{}\njob logs:\n{}\n{}",
        series_with(&pgw.metrics_text().unwrap_or_default(), metric, &[]).join("\n"),
        job_logs(),
        api.log()
    );
    println!("Pushgateway: series per node first seen at {pgw_seen:?} after creation");

    // ... and Prometheus, by remote-write through the second forward; asked
    // from inside monitor.
    let q = format!(
        "count by (instance, service_id, slurm_job_id) ({metric}{{service_id=\"{sid}\",slurm_job_id=\"{job}\"}})"
    );
    let prom_url = prom.url();
    let prom_instances = || -> Vec<String> {
        in_netns(Some(&monitor), || instant_vector(&prom_url, &q))
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(labels, _)| {
                let v: Value = serde_json::from_str(&labels).ok()?;
                v["instance"].as_str().map(str::to_string)
            })
            .collect()
    };
    let mut prom_seen: Vec<(String, Duration)> = Vec::new();
    let all_prom = wait_until(WAIT, || {
        for n in prom_instances() {
            if !prom_seen.iter().any(|(m, _)| *m == n) {
                prom_seen.push((n, created.elapsed()));
            }
        }
        nodes.iter().all(|n| prom_seen.iter().any(|(m, _)| m == n))
    });
    assert!(
        all_prom,
        "Prometheus has {prom_seen:?} (of {nodes:?}) for {q}\n{}\n{}",
        job_logs(),
        prom.log_text()
    );
    println!("Prometheus: series per node first seen at {prom_seen:?} after creation");
    let both = pgw_seen
        .iter()
        .chain(prom_seen.iter())
        .map(|(_, d)| *d)
        .max()
        .expect("seen");
    println!(
        "figures: time to running {to_running:?}; both nodes' series in Pushgateway and Prometheus {both:?} after creation"
    );

    // Cancel; the job ends.
    let a = api.send("DELETE", &format!("/api/v1/services/{sid}"), None);
    assert_eq!(a.status, 200, "{}", a.body);
    let cancelled = Instant::now();
    assert!(
        wait_until(WAIT, || squeue_state(&slurm, &job).is_none()),
        "job {job} still {:?}",
        squeue_state(&slurm, &job)
    );
    println!(
        "job {job} gone from squeue {:?} after the cancel",
        cancelled.elapsed()
    );
    assert_eq!(api.service(&sid)["status"], "cancelled");
    // With --delete-on-exit both exporters remove their groups as they stop
    // (the tunnel lingers 10 s after the last service, long enough).
    let gone = wait_until(Duration::from_secs(30), || !nodes.iter().any(|n| in_pgw(n)));
    assert!(
        gone,
        "exporter groups still in the Pushgateway after cancel:\n{}\njob logs:\n{}",
        series_with(&pgw.metrics_text().unwrap_or_default(), metric, &[]).join("\n"),
        job_logs()
    );
    println!(
        "both exporter groups deleted from the Pushgateway {:?} after the cancel",
        cancelled.elapsed()
    );
}
