//! Slurm on the multi-host testbed (DESIGN.md §2, §9): slurmctld on `login`,
//! one slurmd per node namespace, jobs confined to their node's network.
//!
//! Needs root, `ip` (Debian `iproute2`), Debian's `slurmctld`, `slurmd`,
//! `slurm-client`, `munge`, and `curl`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aif_testbed::{NetnsSlurm, NetnsSlurmOptions, Topology, require_binary, wait_until};

/// The topology and the cluster on it; the topology is declared first, so
/// it drops last.
fn cluster(nodes: usize) -> (Topology, NetnsSlurm) {
    let t = Instant::now();
    let topo = Topology::build(nodes).unwrap_or_else(|e| panic!("{e}"));
    let built = t.elapsed();
    let t = Instant::now();
    let slurm = NetnsSlurm::start(&topo, nodes).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "topology {} built in {built:?}; slurm ({} nodes) idle in {:?}, SLURM_CONF={}",
        topo.netns("login"),
        nodes,
        t.elapsed(),
        slurm.conf_path().display()
    );
    (topo, slurm)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `prog args` on `login` (client commands), its output; panics when it
/// cannot be run.
fn on_login(slurm: &NetnsSlurm, prog: &str, args: &[&str]) -> Output {
    slurm
        .command("login", prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {prog}: {e}"))
}

/// The job's state as `sacct -c` (jobcomp/filetxt) reports it, once it has
/// one.
fn sacct_state(slurm: &NetnsSlurm, job: &str) -> Option<String> {
    let out = on_login(
        slurm,
        "sacct",
        &["-c", "-n", "-X", "-j", job, "-o", "State"],
    );
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

#[test]
fn slurm_spans_two_node_namespaces() {
    let (topo, slurm) = cluster(2);
    let states = slurm.node_states();
    println!("sinfo on login: {states:?}");
    assert_eq!(
        states,
        vec![
            ("node1".to_string(), "idle".to_string()),
            ("node2".to_string(), "idle".to_string())
        ]
    );

    let out_file = slurm.dir().join("job-%j.out");
    let t = Instant::now();
    let out = on_login(
        &slurm,
        "sbatch",
        &[
            "--parsable",
            "-N",
            "2",
            "--ntasks-per-node=1",
            "-o",
            &out_file.display().to_string(),
            "--wrap",
            "srun -l hostname; srun -l ip -4 -o addr show scope global",
        ],
    );
    assert!(out.status.success(), "sbatch: {}", text(&out));
    let job = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut state = None;
    let done = wait_until(Duration::from_secs(30), || {
        state = sacct_state(&slurm, &job);
        state.is_some()
    });
    let took = t.elapsed();
    let output = std::fs::read_to_string(slurm.dir().join(format!("job-{job}.out")))
        .unwrap_or_else(|e| panic!("job output: {e}\n{}", slurm.log_text()));
    println!("job {job}: {state:?} after {took:?}; output:\n{output}");
    assert!(done, "job {job} did not finish\n{}", slurm.log_text());
    assert_eq!(state.as_deref(), Some("COMPLETED"));

    // Task 0 on node1, task 1 on node2, each seeing only its own node's
    // address: they ran inside their node's namespace.
    let lines: Vec<&str> = output.lines().map(str::trim).collect();
    assert!(lines.contains(&"0: node1"), "{output}");
    assert!(lines.contains(&"1: node2"), "{output}");
    for (task, i) in [("0", 1), ("1", 2)] {
        let mine = format!("inet {}/", topo.node_addr(i));
        let other = format!("inet {}/", topo.node_addr(3 - i));
        let addrs: Vec<&&str> = lines
            .iter()
            .filter(|l| l.starts_with(&format!("{task}: ")) && l.contains(" inet "))
            .collect();
        assert_eq!(addrs.len(), 1, "task {task}: {addrs:?}");
        assert!(addrs[0].contains(&mine), "task {task}: {addrs:?}");
        assert!(!addrs[0].contains(&other), "task {task}: {addrs:?}");
    }
    // The node runs had the same SlurmdPort, each in its own namespace.
    for i in 1..=2 {
        let ss = topo
            .exec(&format!("node{i}"), "ss")
            .args(["-Hltn"])
            .output()
            .expect("ss");
        let ss = String::from_utf8_lossy(&ss.stdout);
        println!("node{i} listens: {}", ss.trim());
        assert!(ss.contains(&format!("{}:6818", topo.node_addr(i))), "{ss}");
    }
}

/// Stops a [`monitor_listener`] when dropped.
struct Listening(Arc<AtomicBool>);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A minimal HTTP server on `monitor`'s address that answers `200 ok`; its
/// address, and the guard that stops it.
fn monitor_listener(topo: &Topology) -> (SocketAddr, Listening) {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let ip = topo.monitor_addr();
    let listener = topo
        .run_in("monitor", || TcpListener::bind((ip, 0)))
        .expect("enter monitor")
        .expect("bind on monitor");
    let addr = listener.local_addr().expect("local addr");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        while !stopped.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(
                        b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (addr, Listening(stop))
}

#[test]
fn a_job_on_a_node_cannot_reach_monitor() {
    let (topo, slurm) = cluster(2);
    let (addr, _listening) = monitor_listener(&topo);
    let url = format!("http://{addr}/");
    let curl = require_binary("curl", "curl").unwrap_or_else(|e| panic!("{e}"));

    // From login: reachable.
    let t = Instant::now();
    let out = topo
        .exec("login", &curl)
        .args(["-sS", "-m", "3", &url])
        .output()
        .expect("curl on login");
    println!(
        "login -> {url}: {:?} in {:?}: {}",
        out.status,
        t.elapsed(),
        text(&out).trim()
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");

    // From a job step on node1: no route.
    let t = Instant::now();
    let curl_s = curl.display().to_string();
    let out = on_login(
        &slurm,
        "srun",
        &[
            "-w",
            "node1",
            "-N1",
            "-n1",
            "bash",
            "-c",
            &format!(
                "hostname; ip route get {} 2>&1; {curl_s} -sS -m 3 {url}",
                addr.ip()
            ),
        ],
    );
    let said = text(&out);
    println!(
        "job on node1 -> {url}: {:?} in {:?}:\n{}",
        out.status,
        t.elapsed(),
        said.trim()
    );
    assert!(!out.status.success(), "{said}");
    assert!(said.starts_with("node1"), "{said}");
    assert!(said.contains("Network is unreachable"), "{said}");
    assert!(!said.contains("\nok"), "{said}");
}

#[test]
fn killing_a_slurmd_marks_its_node_down() {
    let (_topo, mut slurm) = cluster(2);
    let opts = NetnsSlurmOptions::default();
    let pid = slurm.slurmd_pid("node2").expect("slurmd of node2 runs");
    assert!(slurm.kill_slurmd("node2"));
    let t = Instant::now();
    let mut not_responding = None;
    let mut last = String::new();
    let down = wait_until(Duration::from_secs(40), || {
        last = slurm.node_state("node2").unwrap_or_default();
        if not_responding.is_none() && last.ends_with('*') {
            not_responding = Some(t.elapsed());
        }
        last.starts_with("down")
    });
    let down_after = t.elapsed();
    let scontrol = on_login(&slurm, "scontrol", &["show", "node", "node2"]);
    let scontrol = String::from_utf8_lossy(&scontrol.stdout);
    let state_line = scontrol
        .split_whitespace()
        .find(|w| w.starts_with("State="))
        .unwrap_or("")
        .to_string();
    let reason = scontrol
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("Reason="))
        .unwrap_or("")
        .to_string();
    println!(
        "SIGKILL slurmd of node2 (pid {pid}); SlurmdTimeout={} MessageTimeout={}: \
         NOT_RESPONDING after {not_responding:?}, DOWN after {down_after:?} ({state_line}, {reason}); \
         node1: {:?}",
        opts.slurmd_timeout_s,
        opts.message_timeout_s,
        slurm.node_state("node1")
    );
    assert!(
        down,
        "node2 not down after {down_after:?}: {last}\n{}",
        slurm.log_text()
    );
    assert!(state_line.contains("DOWN"), "{scontrol}");
    assert!(state_line.contains("NOT_RESPONDING"), "{scontrol}");
    assert_eq!(slurm.node_state("node1").as_deref(), Some("idle"));
}

#[test]
fn dropping_the_topology_first_still_stops_every_daemon() {
    let (topo, slurm) = cluster(1);
    let pids = slurm.daemon_pids();
    assert_eq!(pids.len(), 3, "{pids:?}");
    let t = Instant::now();
    drop(topo);
    let topo_took = t.elapsed();
    let t = Instant::now();
    drop(slurm);
    let slurm_took = t.elapsed();
    println!("{pids:?}: topology dropped in {topo_took:?}, then the cluster in {slurm_took:?}");
    for (what, pid) in &pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{what} (pid {pid}) still there"
        );
    }
    assert!(slurm_took < Duration::from_secs(5), "{slurm_took:?}");
}
