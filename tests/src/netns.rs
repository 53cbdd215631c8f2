//! The site of DESIGN.md §2 on one machine: hosts as network namespaces
//! (`ip netns`), linked by veth pairs, with per-host names (DESIGN.md §9).
//!
//! ```text
//!  ┌ monitor ─────────┐  198.18.0.0/30   ┌ login ───────────────────────┐  198.19.0.0/24   ┌ node1 ──────────┐
//!  │ login0           ├──────────────────┤ monitor0          br0 (bridge)├──── node1 ───────┤ login0          │
//!  │ 198.18.0.1       │   veth pair      │ 198.18.0.2        198.19.0.1 │                  │ 198.19.0.11     │
//!  └──────────────────┘                  │ ip_forward = 0               ├──── node2 ───────┤ node2: .12 …    │
//!                                        └──────────────────────────────┘                  └─────────────────┘
//! ```
//!
//! - **Links.** `monitor`–`login` is one veth pair on `198.18.0.0/30`. The
//!   nodes share one segment, `198.19.0.0/24`: a bridge `br0` inside `login`
//!   (login's address on it) with one veth per node (port `nodeN` in `login`,
//!   `login0` in the node), so nodes also reach each other, as on a real
//!   cluster network. Node `i` (1-based, as in its name) is `198.19.0.(10+i)`.
//! - **The boundary.** Only connected routes exist (no default route
//!   anywhere): `monitor` knows `198.18.0.0/30`, the nodes `198.19.0.0/24`,
//!   `login` both; `login` does not forward (`net.ipv4.ip_forward = 0` and
//!   IPv6 forwarding 0, written explicitly in its namespace). So a node has no
//!   route to `monitor` ("Network is unreachable") and `monitor` reaches the
//!   cluster only through a process on `login` (sshd).
//! - **Nothing leaves the machine.** The veths are created directly inside the
//!   namespaces (`ip -n A link add … peer … netns B`): no interface of ours
//!   ever exists in the host's namespace, and no namespace has a link to it.
//! - **Names.** Every host has `/etc/netns/NAME/hosts`, which `ip netns exec`
//!   bind-mounts over `/etc/hosts`: `monitor` resolves `monitor`,
//!   `pushgateway`, `prometheus` (its own address) and `login`
//!   (`198.18.0.2`); `login` resolves `monitor`, itself (`198.19.0.1`) and
//!   every node; a node resolves `login` (`198.19.0.1`) and every node. Each
//!   also gets `/etc/netns/NAME/resolv.conf` with only `nameserver 127.0.0.1`
//!   (`timeout:1 attempts:1`): with `hosts: files dns`, a name missing from
//!   the file would otherwise be asked of the host's DNS servers. In the
//!   namespace 127.0.0.1 is the namespace's own loopback where nothing listens,
//!   so the lookup fails at once (and no route leads out anyway).
//! - **Unique per run.** Namespaces are `aif-<pid>-<n>-<host>` (`n` counts
//!   the topologies of this process), so parallel test processes never
//!   collide; interface names are per namespace and need no uniqueness.
//! - **Teardown.** Dropping the [`Topology`] (also while a panic unwinds)
//!   kills what still runs inside its namespaces, deletes them (their veths and
//!   the bridge go with them) and removes `/etc/netns/NAME`. Every
//!   [`Topology::build`] first sweeps leftovers of runs whose pid is gone
//!   (`/proc/PID` absent), e.g. after a SIGKILL.
//!
//! Processes see the topology through [`Topology::exec`] (`ip netns exec`:
//! network **and** the per-host `/etc/hosts`); code of the test itself through
//! [`Topology::run_in`] (a helper thread that `setns(2)`es into the
//! namespace: its sockets are the host's, by address, but name lookups use
//! the machine's own `/etc/hosts`). Servers of the testbed start inside a
//! namespace with [`crate::Pushgateway::start_in`] and
//! [`crate::SshdOptions`]`{ netns, listen, .. }`; their readiness is probed
//! from inside the namespace. Drop servers before their topology (declare the
//! `Topology` first).
//!
//! Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and `ip` (Debian `iproute2`);
//! without them [`Topology::build`] fails saying which is missing.
//!
//! ```no_run
//! use aif_testbed::{Pushgateway, Topology};
//! let topo = Topology::build(2).unwrap_or_else(|e| panic!("{e}"));
//! let pgw = Pushgateway::start_in(topo.netns("monitor"), topo.monitor_addr().into())
//!     .unwrap_or_else(|e| panic!("{e}"));
//! // From node1 the Pushgateway is out of reach:
//! let out = topo.exec("node1", "curl").args(["-sS", "-m", "3", &pgw.url()]).output().unwrap();
//! assert!(!out.status.success());
//! ```

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::process::{TestbedError, require_binary, wait_until};

/// `monitor`'s address (on the `monitor`–`login` link, `198.18.0.0/30`).
pub const MONITOR_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// `login`'s address on `monitor`'s link.
pub const LOGIN_MONITOR_SIDE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// `login`'s address on the cluster segment (`198.19.0.0/24`, bridge `br0`).
pub const LOGIN_CLUSTER_SIDE: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
/// The `monitor`–`login` link's prefix length.
pub const MONITOR_LINK_PREFIX: u8 = 30;
/// The cluster segment's prefix length.
pub const CLUSTER_PREFIX: u8 = 24;
/// The most nodes a topology holds (`198.19.0.11` … `198.19.0.250`).
pub const MAX_NODES: usize = 240;

/// Where `ip` keeps named namespaces.
const RUN_NETNS: &str = "/run/netns";
/// Where `ip netns exec` finds per-namespace files for `/etc`.
const ETC_NETNS: &str = "/etc/netns";
const PREFIX: &str = "aif-";

/// The address of node `i` (1-based): `198.19.0.(10+i)`.
///
/// # Panics
/// When `i` is 0 or above [`MAX_NODES`].
pub fn node_addr(i: usize) -> Ipv4Addr {
    assert!(
        (1..=MAX_NODES).contains(&i),
        "node index {i} out of 1..={MAX_NODES}"
    );
    Ipv4Addr::new(198, 19, 0, 10 + i as u8)
}

/// `ip` (Debian `iproute2`), looked up once.
///
/// # Errors
/// [`TestbedError::MissingBinary`] naming `iproute2`.
pub fn ip_binary() -> Result<PathBuf, TestbedError> {
    static IP: OnceLock<Option<PathBuf>> = OnceLock::new();
    IP.get_or_init(|| require_binary("ip", "iproute2").ok())
        .clone()
        .ok_or_else(|| TestbedError::MissingBinary {
            binary: "ip".to_string(),
            package: "iproute2".to_string(),
        })
}

/// A `Command` running `program` in namespace `netns` (`ip netns exec NETNS
/// program`; `ip` execs it, so the child's PID is the program's), or directly
/// when `netns` is `None`.
pub fn command_in(netns: Option<&str>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match netns {
        None => Command::new(program),
        Some(ns) => {
            let ip = ip_binary().unwrap_or_else(|_| PathBuf::from("ip"));
            let mut cmd = Command::new(ip);
            cmd.arg("netns").arg("exec").arg(ns).arg(program);
            cmd
        }
    }
}

/// Runs `f` on a helper thread that has entered network namespace `netns`
/// (`setns(2)` on `/run/netns/NETNS`); sockets it opens belong to that
/// namespace (and stay there when handed back). With `None`, runs `f` here.
///
/// # Errors
/// The namespace cannot be opened or entered.
pub fn in_netns<T: Send>(netns: Option<&str>, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    let Some(ns) = netns else {
        return Ok(f());
    };
    let file = std::fs::File::open(Path::new(RUN_NETNS).join(ns))?;
    std::thread::scope(|s| {
        let handle = s.spawn(move || {
            // SAFETY: setns(2) on an open namespace file; it changes only this
            // helper thread, which ends when `f` returns.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(f())
        });
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// A free TCP port on `ip` inside namespace `netns` (bound there, then
/// released for the server to take).
///
/// # Errors
/// The namespace cannot be entered or nothing can be bound on `ip`.
pub fn free_port_in(netns: &str, ip: std::net::IpAddr) -> std::io::Result<u16> {
    in_netns(Some(netns), || {
        std::net::TcpListener::bind((ip, 0)).and_then(|l| l.local_addr())
    })?
    .map(|a| a.port())
}

/// The hosts and links of DESIGN.md §2 as network namespaces; dropping it
/// tears them down (see the module documentation).
#[derive(Debug)]
pub struct Topology {
    ip: PathBuf,
    prefix: String,
    nodes: usize,
    /// `(host, namespace)` for every host, `monitor` first.
    hosts: Vec<(String, String)>,
    /// Namespaces created so far (deleted on drop).
    created: Vec<String>,
}

impl Topology {
    /// Builds `monitor`, `login` and `node1` … `node<nodes>`, and waits until
    /// every link is up.
    ///
    /// # Errors
    /// [`TestbedError::MissingBinary`] without `ip`;
    /// [`TestbedError::NotPrivileged`] without root; [`TestbedError::Setup`]
    /// when another `ip` command fails; [`TestbedError::NotReady`] when a link
    /// does not come up within 10 s. What was built is torn down again.
    ///
    /// # Panics
    /// When `nodes` exceeds [`MAX_NODES`].
    pub fn build(nodes: usize) -> Result<Topology, TestbedError> {
        assert!(nodes <= MAX_NODES, "at most {MAX_NODES} nodes, not {nodes}");
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let ip = ip_binary()?;
        sweep_leftovers(&ip);
        let prefix = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut names = vec!["monitor".to_string(), "login".to_string()];
        names.extend((1..=nodes).map(|i| format!("node{i}")));
        let hosts = names
            .into_iter()
            .map(|h| {
                let ns = format!("{prefix}-{h}");
                (h, ns)
            })
            .collect();
        let mut topo = Topology {
            ip,
            prefix,
            nodes,
            hosts,
            created: Vec::new(),
        };
        topo.create()?;
        Ok(topo)
    }

    fn create(&mut self) -> Result<(), TestbedError> {
        let hosts: Vec<String> = self.host_names();
        for host in &hosts {
            let ns = self.netns(host).to_string();
            if let Err(e) = self.ip_cmd(&["netns", "add", &ns]) {
                // A refused `ip netns add` may leave its mount point behind.
                let _ = std::fs::remove_file(Path::new(RUN_NETNS).join(&ns));
                return Err(e);
            }
            self.created.push(ns.clone());
            self.write_etc(host, &ns)?;
            self.ip_cmd(&["-n", &ns, "link", "set", "dev", "lo", "up"])?;
        }
        let mon = self.netns("monitor").to_string();
        let login = self.netns("login").to_string();
        // login must not forward: written explicitly (a new namespace may
        // inherit the host's settings with net.core.devconf_inherit_init_net).
        in_netns(Some(&login), || -> std::io::Result<()> {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "0\n")?;
            let v6 = Path::new("/proc/sys/net/ipv6/conf/all/forwarding");
            if v6.exists() {
                std::fs::write(v6, "0\n")?;
            }
            Ok(())
        })??;
        // monitor — login.
        self.ip_cmd(&[
            "-n", &mon, "link", "add", "login0", "type", "veth", "peer", "name", "monitor0",
            "netns", &login,
        ])?;
        let a = format!("{MONITOR_ADDR}/{MONITOR_LINK_PREFIX}");
        self.ip_cmd(&["-n", &mon, "addr", "add", &a, "dev", "login0"])?;
        let a = format!("{LOGIN_MONITOR_SIDE}/{MONITOR_LINK_PREFIX}");
        self.ip_cmd(&["-n", &login, "addr", "add", &a, "dev", "monitor0"])?;
        self.ip_cmd(&["-n", &mon, "link", "set", "dev", "login0", "up"])?;
        self.ip_cmd(&["-n", &login, "link", "set", "dev", "monitor0", "up"])?;
        // login's cluster bridge and one veth per node.
        self.ip_cmd(&[
            "-n",
            &login,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        let a = format!("{LOGIN_CLUSTER_SIDE}/{CLUSTER_PREFIX}");
        self.ip_cmd(&["-n", &login, "addr", "add", &a, "dev", "br0"])?;
        self.ip_cmd(&["-n", &login, "link", "set", "dev", "br0", "up"])?;
        for i in 1..=self.nodes {
            let node = format!("node{i}");
            let ns = self.netns(&node).to_string();
            self.ip_cmd(&[
                "-n", &login, "link", "add", &node, "type", "veth", "peer", "name", "login0",
                "netns", &ns,
            ])?;
            self.ip_cmd(&["-n", &login, "link", "set", "dev", &node, "master", "br0"])?;
            self.ip_cmd(&["-n", &login, "link", "set", "dev", &node, "up"])?;
            let a = format!("{}/{CLUSTER_PREFIX}", node_addr(i));
            self.ip_cmd(&["-n", &ns, "addr", "add", &a, "dev", "login0"])?;
            self.ip_cmd(&["-n", &ns, "link", "set", "dev", "login0", "up"])?;
        }
        let mut expected: Vec<(String, String)> = vec![
            ("monitor".into(), "login0".into()),
            ("login".into(), "monitor0".into()),
            ("login".into(), "br0".into()),
        ];
        for i in 1..=self.nodes {
            expected.push(("login".into(), format!("node{i}")));
            expected.push((format!("node{i}"), "login0".into()));
        }
        self.wait_up(&expected)
    }

    /// Waits until every `(host, interface)` reports `state UP` (a veth only
    /// does when both ends are up) and, for a node's port on login's bridge,
    /// `state forwarding`.
    fn wait_up(&self, expected: &[(String, String)]) -> Result<(), TestbedError> {
        let start = std::time::Instant::now();
        let mut last = String::new();
        let ok = wait_until(Duration::from_secs(10), || {
            last.clear();
            for (host, dev) in expected {
                let ns = self.netns(host);
                let out = Command::new(&self.ip)
                    .args(["-n", ns, "-d", "-o", "link", "show", "dev", dev])
                    .output();
                let text = out
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                let port_ok = host != "login"
                    || !dev.starts_with("node")
                    || text.contains("state forwarding");
                if !text.contains("state UP") || !port_ok {
                    last = format!("{host}: {}", text.trim());
                    return false;
                }
            }
            true
        });
        if ok {
            Ok(())
        } else {
            Err(TestbedError::NotReady {
                what: format!("links {expected:?} of {}", self.prefix),
                waited: start.elapsed(),
                log_tail: last,
            })
        }
    }

    fn write_etc(&self, host: &str, ns: &str) -> Result<(), TestbedError> {
        let dir = Path::new(ETC_NETNS).join(ns);
        std::fs::create_dir_all(&dir)?;
        let mut hosts = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost\n");
        let nodes = |s: &mut String| {
            for i in 1..=self.nodes {
                s.push_str(&format!("{}\tnode{i}\n", node_addr(i)));
            }
        };
        match host {
            "monitor" => {
                hosts.push_str(&format!("{MONITOR_ADDR}\tmonitor pushgateway prometheus\n"));
                hosts.push_str(&format!("{LOGIN_MONITOR_SIDE}\tlogin\n"));
            }
            "login" => {
                hosts.push_str(&format!("{MONITOR_ADDR}\tmonitor\n"));
                hosts.push_str(&format!("{LOGIN_CLUSTER_SIDE}\tlogin\n"));
                nodes(&mut hosts);
            }
            _ => {
                hosts.push_str(&format!("{LOGIN_CLUSTER_SIDE}\tlogin\n"));
                nodes(&mut hosts);
            }
        }
        std::fs::write(dir.join("hosts"), hosts)?;
        std::fs::write(
            dir.join("resolv.conf"),
            "# aif-testbed: no DNS inside the test's namespaces (nothing listens here)\n\
             nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )?;
        Ok(())
    }

    fn ip_cmd(&self, args: &[&str]) -> Result<(), TestbedError> {
        run_ip(&self.ip, args)
    }

    /// `monitor`, `login`, `node1` … in that order.
    pub fn host_names(&self) -> Vec<String> {
        self.hosts.iter().map(|(h, _)| h.clone()).collect()
    }

    /// How many nodes.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// The namespace of `host` (`monitor`, `login`, `nodeN`), e.g.
    /// `aif-4242-0-monitor`: what `ip netns exec` and
    /// [`crate::Pushgateway::start_in`] take.
    ///
    /// # Panics
    /// When there is no such host.
    pub fn netns(&self, host: &str) -> &str {
        self.hosts
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, ns)| ns.as_str())
            .unwrap_or_else(|| panic!("no host {host:?} in {:?}", self.host_names()))
    }

    /// `monitor`'s address.
    pub fn monitor_addr(&self) -> Ipv4Addr {
        MONITOR_ADDR
    }

    /// `login`'s address as `monitor` sees it.
    pub fn login_monitor_side(&self) -> Ipv4Addr {
        LOGIN_MONITOR_SIDE
    }

    /// `login`'s address as the nodes see it.
    pub fn login_cluster_side(&self) -> Ipv4Addr {
        LOGIN_CLUSTER_SIDE
    }

    /// Node `i`'s address (1-based: `node_addr(1)` is `node1`).
    ///
    /// # Panics
    /// When there is no node `i`.
    pub fn node_addr(&self, i: usize) -> Ipv4Addr {
        assert!(
            (1..=self.nodes).contains(&i),
            "no node{i} (nodes 1..={})",
            self.nodes
        );
        node_addr(i)
    }

    /// A `Command` running `program` on `host` (`ip netns exec NS program`):
    /// its network and its `/etc/hosts` and `/etc/resolv.conf`.
    ///
    /// # Panics
    /// When there is no such host.
    pub fn exec(&self, host: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(&self.ip);
        cmd.arg("netns")
            .arg("exec")
            .arg(self.netns(host))
            .arg(program);
        cmd
    }

    /// Runs `f` on a thread inside `host`'s network namespace (see
    /// [`in_netns`]); name lookups there use the machine's `/etc/hosts`.
    ///
    /// # Errors
    /// The namespace cannot be entered.
    ///
    /// # Panics
    /// When there is no such host.
    pub fn run_in<T: Send>(&self, host: &str, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
        in_netns(Some(self.netns(host)), f)
    }

    /// The namespace and interface of `host`'s link toward the other side:
    /// `nodeN` → its `login0` (to the cluster bridge), `login` → `monitor0`,
    /// `monitor` → `login0`.
    fn link_of(&self, host: &str) -> (String, &'static str) {
        let dev = if host == "login" {
            "monitor0"
        } else {
            "login0"
        };
        (self.netns(host).to_string(), dev)
    }

    /// Cuts `host`'s link (`ip link set dev X down` in its namespace): a node's
    /// link to the cluster segment, or `login`'s (or `monitor`'s) end of the
    /// `monitor`–`login` link. The host itself then gets "Network is
    /// unreachable" at once; its peers see a dead wire (connections stall, new
    /// ones time out), as when a cable is pulled at that host.
    ///
    /// # Errors
    /// [`TestbedError::Setup`] when `ip` fails.
    pub fn link_down(&self, host: &str) -> Result<(), TestbedError> {
        let (ns, dev) = self.link_of(host);
        self.ip_cmd(&["-n", &ns, "link", "set", "dev", dev, "down"])
    }

    /// Restores what [`Topology::link_down`] cut (the connected route comes
    /// back with the link) and waits until the link is up again (both ends:
    /// it is not when the other end was cut too).
    ///
    /// # Errors
    /// [`TestbedError::Setup`] when `ip` fails, [`TestbedError::NotReady`] when
    /// the link does not come up within 10 s.
    pub fn link_up(&self, host: &str) -> Result<(), TestbedError> {
        let (ns, dev) = self.link_of(host);
        self.ip_cmd(&["-n", &ns, "link", "set", "dev", dev, "up"])?;
        let peer: (String, String) = match host {
            "login" => ("monitor".into(), "login0".into()),
            "monitor" => ("login".into(), "monitor0".into()),
            node => ("login".into(), node.to_string()),
        };
        self.wait_up(&[(host.to_string(), dev.to_string()), peer])
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in std::mem::take(&mut self.created) {
            teardown(&self.ip, &ns);
        }
    }
}

/// Runs `ip ARGS`; maps a refusal for want of privilege to
/// [`TestbedError::NotPrivileged`], any other failure to [`TestbedError::Setup`].
fn run_ip(ip: &Path, args: &[&str]) -> Result<(), TestbedError> {
    let command = format!("ip {}", args.join(" "));
    let out = Command::new(ip).args(args).output()?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if stderr.contains("Operation not permitted") || stderr.contains("Permission denied") {
        Err(TestbedError::NotPrivileged { command, stderr })
    } else {
        Err(TestbedError::Setup {
            command,
            status: out.status,
            stderr,
        })
    }
}

/// Kills what still runs in `ns`, deletes it and its `/etc/netns` files.
fn teardown(ip: &Path, ns: &str) {
    if let Ok(out) = Command::new(ip).args(["netns", "pids", ns]).output() {
        let pids: Vec<libc::pid_t> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if !pids.is_empty() {
            log::warn!("testbed: killing {pids:?}, still running in namespace {ns}");
        }
        for pid in pids {
            // SAFETY: kill(2) on processes inside a namespace this process made.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    if let Err(e) = run_ip(ip, &["netns", "del", ns]) {
        eprintln!("testbed: cannot delete namespace {ns}: {e}");
    }
    let dir = Path::new(ETC_NETNS).join(ns);
    if dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&dir)
    {
        eprintln!("testbed: cannot remove {}: {e}", dir.display());
    }
}

/// The pid in a name of ours (`aif-<pid>-<n>-<host>`), if it is one.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut parts = rest.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    parts.next()?.parse::<usize>().ok()?;
    parts.next().filter(|h| !h.is_empty())?;
    Some(pid)
}

/// Removes namespaces and `/etc/netns` dirs of ours whose owning process is
/// gone; returns the names removed.
pub fn sweep_leftovers(ip: &Path) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for dir in [RUN_NETNS, ETC_NETNS] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if let Some(name) = e.file_name().to_str()
                    && let Some(pid) = owner_pid(name)
                    && !Path::new(&format!("/proc/{pid}")).exists()
                    && !names.iter().any(|n| n == name)
                {
                    names.push(name.to_string());
                }
            }
        }
    }
    for name in &names {
        log::info!("testbed: removing leftover namespace {name}");
        if Path::new(RUN_NETNS).join(name).exists() {
            teardown(ip, name);
        } else {
            let _ = std::fs::remove_dir_all(Path::new(ETC_NETNS).join(name));
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_reads_only_our_names() {
        assert_eq!(owner_pid("aif-4242-0-monitor"), Some(4242));
        assert_eq!(owner_pid("aif-4242-17-node12"), Some(4242));
        assert_eq!(owner_pid("aif-4242-0-"), None);
        assert_eq!(owner_pid("aif-x-0-monitor"), None);
        assert_eq!(owner_pid("other-4242-0-monitor"), None);
    }

    #[test]
    fn node_addresses() {
        assert_eq!(node_addr(1), Ipv4Addr::new(198, 19, 0, 11));
        assert_eq!(node_addr(MAX_NODES), Ipv4Addr::new(198, 19, 0, 250));
    }
}
