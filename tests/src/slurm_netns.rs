//! A real Slurm cluster on the namespace topology ([`crate::Topology`],
//! DESIGN.md §2, §9): `slurmctld` on `login`, one `slurmd` per node
//! namespace, one `munged` whose socket every namespace reaches as a file.
//!
//! ```text
//!  host namespace            login (198.19.0.1)            node1 (198.19.0.11)  node2 (198.19.0.12) …
//!  munged ─ $T/mr/munge.sock slurmctld :6817                slurmd -N node1 :6818 slurmd -N node2 :6818
//!           (a file: seen by  sinfo/sbatch/srun/… (command)  └ slurmstepd → job    └ …
//!            every namespace)
//! ```
//!
//! - **One `slurm.conf`** in `$T`: `SlurmctldHost=login(198.19.0.1)` (login's
//!   cluster-side address), one `NodeName=nodeN NodeAddr=198.19.0.(10+N)` line
//!   per node, `SlurmdSpoolDir=$T/spool/%n`, `SlurmdPidFile=$T/run/slurmd-%n.pid`,
//!   `SlurmdLogFile=$T/log/slurmd-%n.log` (Debian's 22.05 substitutes `%n` with
//!   the `-N` name; no `--enable-multiple-slurmd` is needed because each slurmd
//!   is alone in its namespace). Ports are Slurm's defaults, 6817 and 6818, the
//!   same for every slurmd and every topology: each namespace has its own.
//!   Otherwise as [`crate::SlurmCluster`]: `CommunicationParameters=NoInAddrAny,
//!   NoCtldInAddrAny`, `proctrack/linuxproc`, `task/none`, `jobcomp/filetxt`
//!   (`sacct -c`), two fake GPUs per node (`Gres=gpu:2`), plus
//!   `SlurmdTimeout` and `MessageTimeout` from [`NetnsSlurmOptions`].
//! - **A hostname per host.** Every daemon and client command runs through
//!   `ip netns exec` (its network and its `/etc/hosts`) inside a fresh UTS
//!   namespace whose hostname is the host's (`login`, `nodeN`). Slurm 22.05
//!   needs it: slurmctld refuses to start unless `gethostname()` names a
//!   `SlurmctldHost` ("This host (vm/vm) not a valid controller"), and with
//!   `NoInAddrAny` slurmd, srun and sbatch bind to the address of
//!   `gethostname()` (not `NodeAddr`), which a namespace's hosts file does not
//!   know ("slurm_set_addr: Unable to resolve \"vm\"" and then "Unable to bind
//!   listen port (6818)" in slurmd, "unable to initialize step launch listening
//!   socket" in srun). Jobs inherit it: `srun hostname` says `node1`.
//! - **cgroups.** `ip netns exec` mounts a fresh `/sys` for the namespace, with
//!   nothing on `/sys/fs/cgroup`, and slurmd 22.05 always loads a cgroup plugin;
//!   autodetection then fails ("No filesystem mounted on /sys/fs/cgroup",
//!   "Unable to initialize cgroup plugin", "slurmd initialization failed").
//!   `cgroup.conf` names `CgroupPlugin=cgroup/v1`, whose `init()` touches no
//!   file system; with `proctrack/linuxproc`, `task/none` and
//!   `jobacct_gather/none` no controller is ever used (any host, v1 or v2).
//! - **munge.** One `munged` in the host namespace (user `munge`), its socket
//!   under `$T/mr` (`AuthInfo=socket=…`): a Unix socket is a file, so the
//!   daemons and commands in every namespace reach it.
//! - **Ready** when `sinfo` on `login` lists every node `idle` (30 s).
//! - **Drop** cancels the jobs, then stops every slurmd, slurmctld and munged
//!   by PID. Declare the [`crate::Topology`] first so that it drops last; when
//!   it went first its teardown has already SIGKILLed the daemons inside its
//!   namespaces, and the drop only reaps them and stops munged.
//!
//! Needs root (namespaces) and Debian's `slurmctld`, `slurmd`, `slurm-client`,
//! `munge`, `util-linux`, `iproute2`.
//!
//! ```no_run
//! use aif_testbed::{NetnsSlurm, Topology};
//! let topo = Topology::build(2).unwrap_or_else(|e| panic!("{e}"));
//! let slurm = NetnsSlurm::start(&topo, 2).unwrap_or_else(|e| panic!("{e}"));
//! let out = slurm.command("login", "srun").args(["-N2", "hostname"]).output().unwrap();
//! assert!(String::from_utf8_lossy(&out.stdout).contains("node2"));
//! ```

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{Topology, in_netns, ip_binary};
use crate::process::{
    TestbedError, keep_if_panicking, port_open, require_binary, spawn_logged, terminate, wait_until,
};
use crate::slurm::{Munge, mknod_char};

/// slurmctld's port (Slurm's default; login has its own namespace).
pub const SLURMCTLD_PORT: u16 = 6817;
/// Every slurmd's port (Slurm's default; each node has its own namespace).
pub const SLURMD_PORT: u16 = 6818;

/// How [`NetnsSlurm::start_with`] sets the cluster up.
#[derive(Debug, Clone, Copy)]
pub struct NetnsSlurmOptions {
    /// `SlurmdTimeout`: how long slurmctld waits for a silent slurmd before it
    /// sets the node DOWN. Default 10 s.
    pub slurmd_timeout_s: u16,
    /// `MessageTimeout`. slurmctld also retries a refused connection once a
    /// second for `min(MessageTimeout, 10)` s, so a killed slurmd is noticed
    /// that much later; default 5 s (Slurm's is 10).
    pub message_timeout_s: u16,
}

impl Default for NetnsSlurmOptions {
    fn default() -> Self {
        NetnsSlurmOptions {
            slurmd_timeout_s: 10,
            message_timeout_s: 5,
        }
    }
}

/// One daemon: its name, process (`None` once killed) and stdout/stderr log.
#[derive(Debug)]
struct Daemon {
    what: String,
    child: Option<Child>,
    out: PathBuf,
}

/// A running Slurm cluster on a [`Topology`]'s namespaces (see the module
/// documentation).
#[derive(Debug)]
pub struct NetnsSlurm {
    dir: Option<tempfile::TempDir>,
    conf: PathBuf,
    ip: PathBuf,
    /// `(host, namespace)` of every host of the topology.
    hosts: Vec<(String, String)>,
    /// `node1` … in order, each with its address.
    nodes: Vec<(String, Ipv4Addr)>,
    slurmd: PathBuf,
    munged: Option<Daemon>,
    slurmctld: Option<Daemon>,
    /// One per node, in the order of `nodes`.
    slurmds: Vec<Daemon>,
}

/// Gives the child its own UTS namespace named `hostname` before it execs
/// (`unshare(CLONE_NEWUTS)`, `sethostname`); needs CAP_SYS_ADMIN.
pub(crate) fn with_hostname(cmd: &mut Command, hostname: &str) {
    let name = hostname.as_bytes().to_vec();
    // SAFETY: the closure runs in the forked child before exec and only makes
    // two system calls on memory prepared before the fork (no allocation).
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWUTS) != 0
                || libc::sethostname(name.as_ptr().cast(), name.len()) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

impl NetnsSlurm {
    /// Starts munged (host namespace), slurmctld (`login`) and one slurmd on
    /// each of `node1` … `node<nodes>`, and waits until `sinfo` on `login`
    /// shows them all idle.
    ///
    /// # Errors
    /// A missing binary (naming its Debian package), no `munge` user, or not
    /// ready within 30 s (with the end of the daemons' logs).
    ///
    /// # Panics
    /// When `nodes` is 0 or more than the topology has.
    pub fn start(topo: &Topology, nodes: usize) -> Result<NetnsSlurm, TestbedError> {
        Self::start_with(topo, nodes, NetnsSlurmOptions::default())
    }

    /// As [`NetnsSlurm::start`], with `options`.
    ///
    /// # Errors
    /// As [`NetnsSlurm::start`].
    ///
    /// # Panics
    /// As [`NetnsSlurm::start`].
    pub fn start_with(
        topo: &Topology,
        nodes: usize,
        options: NetnsSlurmOptions,
    ) -> Result<NetnsSlurm, TestbedError> {
        assert!(
            (1..=topo.nodes()).contains(&nodes),
            "nodes must be in 1..={} (the topology's), not {nodes}",
            topo.nodes()
        );
        let ip = ip_binary()?;
        require_binary("munged", "munge")?;
        let slurmctld = require_binary("slurmctld", "slurmctld")?;
        let slurmd = require_binary("slurmd", "slurmd")?;
        for client in [
            "sinfo", "sbatch", "srun", "squeue", "scontrol", "scancel", "sacct",
        ] {
            require_binary(client, "slurm-client")?;
        }
        require_binary("setpriv", "util-linux")?;

        let dir = tempfile::Builder::new()
            .prefix("aif-netns-slurm-")
            .tempdir()?;
        let t = dir.path().to_path_buf();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o755))?;
        for d in ["state", "spool", "log", "run"] {
            std::fs::create_dir_all(t.join(d))?;
        }
        let munge = Munge::prepare(&t)?;
        let nodes: Vec<(String, Ipv4Addr)> = (1..=nodes)
            .map(|i| (format!("node{i}"), topo.node_addr(i)))
            .collect();
        for (name, _) in &nodes {
            std::fs::create_dir_all(t.join("spool").join(name))?;
        }

        let gpu_files = if mknod_char(&t.join("gpu0")) && mknod_char(&t.join("gpu1")) {
            vec![t.join("gpu0"), t.join("gpu1")]
        } else {
            vec![PathBuf::from("/dev/null"), PathBuf::from("/dev/zero")]
        };
        let mut gres = String::new();
        let mut node_lines = String::new();
        for (name, addr) in &nodes {
            for f in &gpu_files {
                gres.push_str(&format!("NodeName={name} Name=gpu File={}\n", f.display()));
            }
            node_lines.push_str(&format!(
                "NodeName={name} NodeAddr={addr} CPUs=2 RealMemory=1024 Gres=gpu:2 State=UNKNOWN\n"
            ));
        }
        std::fs::write(t.join("gres.conf"), gres)?;
        std::fs::write(
            t.join("cgroup.conf"),
            "# ip netns exec mounts a fresh /sys (nothing on /sys/fs/cgroup), where\n\
             # autodetection fails; cgroup/v1's init() touches no file system and no\n\
             # controller is used (proctrack/linuxproc, task/none).\n\
             CgroupPlugin=cgroup/v1\n",
        )?;
        let node_names: Vec<String> = nodes.iter().map(|(n, _)| n.clone()).collect();
        let conf = t.join("slurm.conf");
        std::fs::write(
            &conf,
            format!(
                "ClusterName=aif\n\
                 SlurmctldHost=login({login})\n\
                 SlurmctldPort={SLURMCTLD_PORT}\n\
                 SlurmdPort={SLURMD_PORT}\n\
                 AuthType=auth/munge\n\
                 CredType=cred/munge\n\
                 AuthInfo=socket={sock}\n\
                 CommunicationParameters=NoInAddrAny,NoCtldInAddrAny\n\
                 SlurmUser=root\n\
                 SlurmdUser=root\n\
                 StateSaveLocation={t}/state\n\
                 SlurmdSpoolDir={t}/spool/%n\n\
                 SlurmctldPidFile={t}/run/slurmctld.pid\n\
                 SlurmdPidFile={t}/run/slurmd-%n.pid\n\
                 SlurmctldLogFile={t}/log/slurmctld.log\n\
                 SlurmdLogFile={t}/log/slurmd-%n.log\n\
                 ProctrackType=proctrack/linuxproc\n\
                 TaskPlugin=task/none\n\
                 MpiDefault=none\n\
                 JobCompType=jobcomp/filetxt\n\
                 JobCompLoc={t}/jobcomp.txt\n\
                 JobAcctGatherType=jobacct_gather/none\n\
                 MailProg=/bin/true\n\
                 ReturnToService=2\n\
                 SchedulerType=sched/backfill\n\
                 SelectType=select/cons_tres\n\
                 KillWait=5\n\
                 SlurmdTimeout={slurmd_timeout}\n\
                 MessageTimeout={message_timeout}\n\
                 GresTypes=gpu\n\
                 {node_lines}\
                 PartitionName=debug Nodes={all} Default=YES MaxTime=INFINITE State=UP\n",
                login = topo.login_cluster_side(),
                sock = munge.sock.display(),
                t = t.display(),
                slurmd_timeout = options.slurmd_timeout_s,
                message_timeout = options.message_timeout_s,
                all = node_names.join(","),
            ),
        )?;

        let hosts = topo
            .host_names()
            .into_iter()
            .map(|h| {
                let ns = topo.netns(&h).to_string();
                (h, ns)
            })
            .collect();
        let mut cluster = NetnsSlurm {
            dir: Some(dir),
            conf: conf.clone(),
            ip,
            hosts,
            nodes,
            slurmd,
            munged: None,
            slurmctld: None,
            slurmds: Vec::new(),
        };
        cluster.munged = Some(cluster.spawn("munged", munge.command()?)?);
        let timeout = Duration::from_secs(10);
        if !wait_until(timeout, || munge.sock.exists()) {
            return Err(cluster.not_ready("munged", timeout));
        }

        let mut cmd = cluster.command("login", &slurmctld);
        cmd.arg("-D").arg("-f").arg(&conf);
        cluster.slurmctld = Some(cluster.spawn("slurmctld", cmd)?);
        let ctld = SocketAddr::from((topo.login_cluster_side(), SLURMCTLD_PORT));
        let login_ns = cluster.netns("login").to_string();
        let listening = wait_until(timeout, || {
            cluster.exited().is_none()
                && in_netns(Some(&login_ns), || port_open(ctld)).unwrap_or(false)
        });
        if !listening || cluster.exited().is_some() {
            return Err(cluster.not_ready("slurmctld", timeout));
        }

        for i in 0..cluster.nodes.len() {
            let name = cluster.nodes[i].0.clone();
            let cmd = cluster.slurmd_command(&name);
            let d = cluster.spawn(&format!("slurmd-{name}"), cmd)?;
            cluster.slurmds.push(d);
        }
        let timeout = Duration::from_secs(30);
        let start = Instant::now();
        let idle = wait_until(timeout, || {
            cluster.exited().is_some() || {
                let states = cluster.node_states();
                cluster
                    .nodes
                    .iter()
                    .all(|(n, _)| states.iter().any(|(m, s)| m == n && s == "idle"))
            }
        });
        if !idle || cluster.exited().is_some() {
            let what = match cluster.exited() {
                Some(d) => format!("{d} (exited)"),
                None => format!("slurm nodes {node_names:?} idle"),
            };
            return Err(cluster.not_ready(&what, timeout));
        }
        log::info!(
            "testbed: netns slurm cluster ready in {:?}, SLURM_CONF={}",
            start.elapsed(),
            conf.display()
        );
        Ok(cluster)
    }

    fn spawn(&self, what: &str, cmd: Command) -> Result<Daemon, TestbedError> {
        let out = self.dir().join(format!("{what}.out"));
        let log = File::options().create(true).append(true).open(&out)?;
        let child = spawn_logged(what, cmd, log)?;
        Ok(Daemon {
            what: what.to_string(),
            child: Some(child),
            out,
        })
    }

    fn slurmd_command(&self, node: &str) -> Command {
        let mut cmd = self.command(node, &self.slurmd);
        cmd.arg("-D").arg("-N").arg(node).arg("-f").arg(&self.conf);
        cmd
    }

    /// The first daemon that has exited although it should run.
    fn exited(&mut self) -> Option<String> {
        self.munged
            .iter_mut()
            .chain(self.slurmctld.iter_mut())
            .chain(self.slurmds.iter_mut())
            .find_map(|d| {
                let gone = d
                    .child
                    .as_mut()
                    .is_some_and(|c| !matches!(c.try_wait(), Ok(None)));
                gone.then(|| d.what.clone())
            })
    }

    fn not_ready(&mut self, what: &str, waited: Duration) -> TestbedError {
        let mut tail = String::new();
        for (p, s) in self.logs() {
            let start = s.len().saturating_sub(1500);
            let start = (start..s.len())
                .find(|i| s.is_char_boundary(*i))
                .unwrap_or(s.len());
            tail.push_str(&format!("--- {} ---\n{}\n", p.display(), &s[start..]));
        }
        TestbedError::NotReady {
            what: what.to_string(),
            waited,
            log_tail: tail,
        }
    }

    /// Every log file and its text: the daemons' stdout/stderr, then Slurm's
    /// own log files and munged's.
    fn logs(&self) -> Vec<(PathBuf, String)> {
        let t = self.dir();
        let mut paths: Vec<PathBuf> = self
            .munged
            .iter()
            .chain(self.slurmctld.iter())
            .chain(self.slurmds.iter())
            .map(|d| d.out.clone())
            .collect();
        paths.push(t.join("log/slurmctld.log"));
        paths.extend(self.nodes.iter().map(|(n, _)| self.slurmd_log(n)));
        paths.push(t.join("mr/munged.log"));
        paths
            .into_iter()
            .filter_map(|p| std::fs::read_to_string(&p).ok().map(|s| (p, s)))
            .collect()
    }

    /// The namespace of `host`.
    ///
    /// # Panics
    /// When the topology has no such host.
    fn netns(&self, host: &str) -> &str {
        self.hosts
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, ns)| ns.as_str())
            .unwrap_or_else(|| panic!("no host {host:?} in the topology"))
    }

    fn node_index(&self, node: &str) -> usize {
        self.nodes
            .iter()
            .position(|(n, _)| n == node)
            .unwrap_or_else(|| panic!("{node:?} runs no slurmd (nodes {:?})", self.node_names()))
    }

    /// A `Command` running `program` (e.g. `sbatch`, `squeue`, `sinfo`,
    /// `srun`, `sacct`, `scancel`, `scontrol`, or any other) on `host`, as the
    /// daemons run: `ip netns exec NS program` (its network and `/etc/hosts`)
    /// in a UTS namespace named `host`, with `SLURM_CONF` set. Client
    /// commands belong on `login`.
    ///
    /// # Panics
    /// When the topology has no such host.
    pub fn command(&self, host: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(&self.ip);
        cmd.arg("netns")
            .arg("exec")
            .arg(self.netns(host))
            .arg(program)
            .env("SLURM_CONF", &self.conf);
        with_hostname(&mut cmd, host);
        cmd
    }

    /// `(node, state)` for every node as `sinfo -h -N -o '%N %T'` on `login`
    /// says (`idle`, `allocated`, `idle*` when not responding, `down*` …);
    /// empty when slurmctld does not answer.
    pub fn node_states(&self) -> Vec<(String, String)> {
        self.command("login", "sinfo")
            .args(["-h", "-N", "-o", "%N %T"])
            .stderr(Stdio::null())
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter_map(|l| l.split_once(' '))
                    .map(|(n, s)| (n.to_string(), s.trim().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `node`'s state as [`NetnsSlurm::node_states`] gives it.
    pub fn node_state(&self, node: &str) -> Option<String> {
        self.node_states()
            .into_iter()
            .find(|(n, _)| n == node)
            .map(|(_, s)| s)
    }

    /// The cluster's directory (world-readable; jobs may write there).
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// `slurm.conf`.
    pub fn conf_path(&self) -> &Path {
        &self.conf
    }

    /// The job completion log (`jobcomp/filetxt`, what `sacct -c` reads).
    pub fn jobcomp_path(&self) -> PathBuf {
        self.dir().join("jobcomp.txt")
    }

    /// Environment for client commands (`SLURM_CONF`); [`NetnsSlurm::command`]
    /// sets it already.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("SLURM_CONF".to_string(), self.conf.display().to_string())]
    }

    /// `node1` … that run a slurmd.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|(n, _)| n.clone()).collect()
    }

    /// `node`'s slurmd log (`SlurmdLogFile`).
    pub fn slurmd_log(&self, node: &str) -> PathBuf {
        self.dir().join(format!("log/slurmd-{node}.log"))
    }

    /// The PID of `node`'s slurmd, while it runs.
    ///
    /// # Panics
    /// When `node` runs no slurmd of this cluster.
    pub fn slurmd_pid(&self, node: &str) -> Option<u32> {
        self.slurmds[self.node_index(node)]
            .child
            .as_ref()
            .map(Child::id)
    }

    /// `(daemon, pid)` of every daemon started and not killed: `munged`,
    /// `slurmctld`, `slurmd-node1` …
    pub fn daemon_pids(&self) -> Vec<(String, u32)> {
        self.munged
            .iter()
            .chain(self.slurmctld.iter())
            .chain(self.slurmds.iter())
            .filter_map(|d| d.child.as_ref().map(|c| (d.what.clone(), c.id())))
            .collect()
    }

    /// SIGKILLs `node`'s slurmd (no goodbye to slurmctld, as when a node
    /// dies) and reaps it; returns whether it was running. Its jobs' steps
    /// (slurmstepd) live on.
    ///
    /// # Panics
    /// When `node` runs no slurmd of this cluster.
    pub fn kill_slurmd(&mut self, node: &str) -> bool {
        let i = self.node_index(node);
        match self.slurmds[i].child.take() {
            Some(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
                log::info!("testbed: killed slurmd of {node} pid={}", child.id());
                true
            }
            None => false,
        }
    }

    /// Starts `node`'s slurmd again (after [`NetnsSlurm::kill_slurmd`]),
    /// appending to its logs; does not wait (with `ReturnToService=2` the node
    /// becomes idle once it registers: poll [`NetnsSlurm::node_state`]).
    ///
    /// # Errors
    /// When it cannot be spawned.
    ///
    /// # Panics
    /// When `node` runs no slurmd of this cluster, or its slurmd still runs.
    pub fn start_slurmd(&mut self, node: &str) -> Result<(), TestbedError> {
        let i = self.node_index(node);
        assert!(
            self.slurmds[i].child.is_none(),
            "the slurmd of {node} still runs"
        );
        let cmd = self.slurmd_command(node);
        let what = format!("slurmd-{node}");
        self.slurmds[i] = self.spawn(&what, cmd)?;
        Ok(())
    }

    /// Changes `SlurmdTimeout` of the running cluster: rewrites the line in
    /// `slurm.conf` and runs `scontrol reconfigure` on `login` (slurmctld
    /// re-reads it, and tells every slurmd). A test can thus let a partition
    /// pass unnoticed (a production-like timeout), then have a killed node
    /// noticed quickly.
    ///
    /// # Errors
    /// When the file cannot be rewritten or `scontrol` fails.
    pub fn set_slurmd_timeout(&self, seconds: u16) -> Result<(), TestbedError> {
        let conf = std::fs::read_to_string(&self.conf)?;
        let conf: String = conf
            .lines()
            .map(|l| {
                if l.starts_with("SlurmdTimeout=") {
                    format!("SlurmdTimeout={seconds}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(&self.conf, conf)?;
        let out = self
            .command("login", "scontrol")
            .arg("reconfigure")
            .output()?;
        if !out.status.success() {
            return Err(TestbedError::Io(std::io::Error::other(format!(
                "scontrol reconfigure (SlurmdTimeout={seconds}): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))));
        }
        log::info!("testbed: SlurmdTimeout={seconds} (scontrol reconfigure)");
        Ok(())
    }

    /// The daemons' logs (their stdout/stderr, then Slurm's and munged's log
    /// files).
    pub fn log_text(&self) -> String {
        self.logs()
            .into_iter()
            .map(|(p, s)| format!("--- {} ---\n{s}", p.display()))
            .collect()
    }

    /// Cancels every job (when `login` still exists), then stops every slurmd,
    /// slurmctld and munged (SIGTERM, SIGKILL after 5 s).
    pub fn stop(&mut self) {
        let ctld_runs = self
            .slurmctld
            .as_mut()
            .and_then(|d| d.child.as_mut())
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if ctld_runs && Path::new("/run/netns").join(self.netns("login")).exists() {
            let ids = |s: &NetnsSlurm| -> Option<Vec<String>> {
                s.command("login", "squeue")
                    .args(["-h", "-o", "%i"])
                    .stderr(Stdio::null())
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| {
                        String::from_utf8_lossy(&o.stdout)
                            .split_whitespace()
                            .map(str::to_string)
                            .collect()
                    })
            };
            if let Some(jobs) = ids(self).filter(|j| !j.is_empty()) {
                let _ = self
                    .command("login", "scancel")
                    .arg("--full")
                    .args(&jobs)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                wait_until(Duration::from_secs(10), || {
                    ids(self).is_some_and(|j| j.is_empty())
                });
            }
        }
        let mut all: Vec<Daemon> = std::mem::take(&mut self.slurmds);
        all.extend(self.slurmctld.take());
        all.extend(self.munged.take());
        for d in all {
            if let Some(mut child) = d.child {
                // Already gone (e.g. the topology's teardown killed it): reaped
                // now, and its PID never signalled again.
                if matches!(child.try_wait(), Ok(None)) {
                    terminate(&d.what, child);
                }
            }
        }
    }
}

impl Drop for NetnsSlurm {
    fn drop(&mut self) {
        self.stop();
        if let Some(kept) = keep_if_panicking(&mut self.dir) {
            eprintln!(
                "testbed: netns slurm cluster of a failed test: kept {}",
                kept.display()
            );
        }
    }
}
