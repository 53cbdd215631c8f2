//! The multi-host testbed (DESIGN.md §2, §9): the site's network boundary
//! reproduced with network namespaces, and torn down again.
//!
//! Needs root and `ip` (Debian `iproute2`); `curl` for the pushes and
//! `openssh-server`/`openssh-client` for the sshd test.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use aif_testbed::netns::{LOGIN_CLUSTER_SIDE, LOGIN_MONITOR_SIDE, sweep_leftovers};
use aif_testbed::sshd::{KeyFormat, KeyKind};
use aif_testbed::{
    Pushgateway, Sshd, SshdOptions, TestbedError, Topology, require_binary, wait_until,
};

fn build(nodes: usize) -> Topology {
    let t = Instant::now();
    let topo = Topology::build(nodes).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "topology {} ({} nodes) built in {:?}",
        topo.netns("monitor"),
        nodes,
        t.elapsed()
    );
    topo
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `curl -XPUT` of one gauge to `base/metrics/job/boundary/instance/<host>`,
/// run on `host`.
fn push(topo: &Topology, host: &str, base: &str) -> (Output, Duration) {
    let t = Instant::now();
    let out = topo
        .exec(
            host,
            require_binary("curl", "curl").unwrap_or_else(|e| panic!("{e}")),
        )
        .args([
            "-sS",
            "-v",
            "-m",
            "3",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-XPUT",
        ])
        .args([
            "--data-binary",
            "# TYPE boundary_value gauge\nboundary_value 1\n",
        ])
        .arg(format!("{base}/metrics/job/boundary/instance/{host}"))
        .output()
        .expect("run curl");
    (out, t.elapsed())
}

/// A TCP connection from `from` to `to` (1 s timeout), made inside `from`.
fn connect(topo: &Topology, from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    topo.run_in(from, || {
        TcpStream::connect_timeout(&to, Duration::from_secs(1))
    })
    .expect("enter namespace")
}

/// A listener on `ip:0` inside `host`.
fn listen(topo: &Topology, host: &str, ip: impl Into<IpAddr>) -> TcpListener {
    let ip = ip.into();
    topo.run_in(host, || TcpListener::bind((ip, 0)))
        .expect("enter namespace")
        .unwrap_or_else(|e| panic!("bind {ip} in {host}: {e}"))
}

fn accept_from(listener: &TcpListener) -> IpAddr {
    listener.accept().expect("accept").1.ip()
}

fn read_sysctl(topo: &Topology, host: &str, key: &str) -> String {
    let out = topo
        .exec(host, "cat")
        .arg(format!("/proc/sys/{}", key.replace('.', "/")))
        .output()
        .expect("cat");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn names_gone(names: &[String]) -> Result<(), String> {
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    for n in names {
        if list.split_whitespace().any(|w| w == n) {
            return Err(format!("{n} still in `ip netns list`:\n{list}"));
        }
        for dir in ["/etc/netns", "/run/netns"] {
            if Path::new(dir).join(n).exists() {
                return Err(format!("{dir}/{n} still exists"));
            }
        }
    }
    Ok(())
}

#[test]
fn the_boundary_is_real() {
    let started = Instant::now();
    let topo = build(2);
    let t = Instant::now();
    let pgw = Pushgateway::start_in(topo.netns("monitor"), topo.monitor_addr().into())
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "pushgateway on {} in monitor, ready in {:?}",
        pgw.addr(),
        t.elapsed()
    );
    let port = pgw.addr().port();

    // node1 → monitor, by address: no route.
    let (out, took) = push(&topo, "node1", &pgw.url());
    let said = text(&out);
    let line = said
        .lines()
        .find(|l| l.contains("unreachable") || l.starts_with("curl:"))
        .unwrap_or("");
    println!(
        "node1 → {}: exit {:?} after {took:?}: {line}",
        pgw.url(),
        out.status.code()
    );
    assert_eq!(
        out.status.code(),
        Some(7),
        "curl must fail to connect:\n{said}"
    );
    assert!(said.contains("Network is unreachable"), "{said}");
    let route = topo
        .exec("node1", "ip")
        .args(["route", "get", &topo.monitor_addr().to_string()])
        .output()
        .expect("ip route get");
    println!(
        "node1: ip route get {}: {}",
        topo.monitor_addr(),
        text(&route).trim()
    );
    assert!(!route.status.success());
    assert!(text(&route).contains("Network is unreachable"));

    // node1 → monitor, by the monitor's name for it: not even resolved.
    let (out, took) = push(&topo, "node1", &format!("http://pushgateway:{port}"));
    println!(
        "node1 → http://pushgateway:{port}: exit {:?} after {took:?}: {}",
        out.status.code(),
        text(&out)
            .lines()
            .find(|l| l.starts_with("curl:"))
            .unwrap_or("")
    );
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));

    // monitor → its own Pushgateway by name, login → by monitor's name there.
    for (host, base) in [
        ("monitor", format!("http://pushgateway:{port}")),
        ("login", format!("http://monitor:{port}")),
    ] {
        let (out, took) = push(&topo, host, &base);
        println!(
            "{host} → {base}: HTTP {} in {took:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    }
    let metrics = pgw.metrics_text().unwrap_or_else(|e| panic!("{e}"));
    for host in ["monitor", "login"] {
        let series = format!("boundary_value{{instance=\"{host}\",job=\"boundary\"}} 1");
        assert!(
            metrics.lines().any(|l| l == series),
            "{series} missing:\n{metrics}"
        );
    }
    assert!(!metrics.contains("instance=\"node1\""), "{metrics}");
    println!("pushgateway holds the series of monitor and login, none of node1");

    // Names per host.
    let getent = |host: &str, name: &str| {
        topo.exec(host, "getent")
            .args(["hosts", name])
            .output()
            .expect("getent")
    };
    let on_node = getent("node1", "pushgateway");
    let on_monitor = getent("monitor", "pushgateway");
    println!(
        "getent hosts pushgateway: node1 exit {:?}, monitor exit {:?}: {}",
        on_node.status.code(),
        on_monitor.status.code(),
        text(&on_monitor).trim()
    );
    assert_eq!(on_node.status.code(), Some(2), "{}", text(&on_node));
    assert!(on_monitor.status.success());
    assert!(text(&on_monitor).starts_with(&topo.monitor_addr().to_string()));
    let login_on_node = text(&getent("node1", "login"));
    let login_on_monitor = text(&getent("monitor", "login"));
    let node1_on_login = text(&getent("login", "node1"));
    println!(
        "login on node1: {}; login on monitor: {}; node1 on login: {}",
        login_on_node.trim(),
        login_on_monitor.trim(),
        node1_on_login.trim()
    );
    assert!(login_on_node.starts_with(&LOGIN_CLUSTER_SIDE.to_string()));
    assert!(login_on_monitor.starts_with(&LOGIN_MONITOR_SIDE.to_string()));
    assert!(node1_on_login.starts_with(&topo.node_addr(1).to_string()));
    assert_eq!(getent("monitor", "node1").status.code(), Some(2));
    println!("the_boundary_is_real: {:?}", started.elapsed());
}

#[test]
fn login_reaches_both_sides_but_does_not_forward() {
    let started = Instant::now();
    let topo = build(2);
    let on_monitor = listen(&topo, "monitor", topo.monitor_addr());
    let on_node1 = listen(&topo, "node1", topo.node_addr(1));
    let monitor_port = on_monitor.local_addr().unwrap();
    let node1_port = on_node1.local_addr().unwrap();

    let t = Instant::now();
    connect(&topo, "login", monitor_port).unwrap_or_else(|e| panic!("login → monitor: {e}"));
    let peer = accept_from(&on_monitor);
    println!(
        "login → monitor {monitor_port}: connected in {:?} from {peer}",
        t.elapsed()
    );
    assert_eq!(peer, IpAddr::from(LOGIN_MONITOR_SIDE));
    let t = Instant::now();
    connect(&topo, "login", node1_port).unwrap_or_else(|e| panic!("login → node1: {e}"));
    let peer = accept_from(&on_node1);
    println!(
        "login → node1 {node1_port}: connected in {:?} from {peer}",
        t.elapsed()
    );
    assert_eq!(peer, IpAddr::from(LOGIN_CLUSTER_SIDE));
    connect(&topo, "node2", node1_port).unwrap_or_else(|e| panic!("node2 → node1: {e}"));
    assert_eq!(accept_from(&on_node1), IpAddr::from(topo.node_addr(2)));
    println!("node2 → node1: connected (one cluster segment)");

    let forward = read_sysctl(&topo, "login", "net.ipv4.ip_forward");
    println!("login: net.ipv4.ip_forward = {forward}");
    assert_eq!(forward, "0");

    for (from, to) in [("monitor", node1_port), ("node1", monitor_port)] {
        let err = connect(&topo, from, to).expect_err("must not connect");
        println!("{from} → {to}: {err}");
        assert_eq!(err.raw_os_error(), Some(libc::ENETUNREACH), "{err}");
    }

    // Even a monitor (and a node) routed through login gets nowhere: login
    // drops what is not its own. The control: with forwarding on, the same
    // routes connect, so it is ip_forward = 0 that stops them.
    let route = |host: &str, op: &str, net: &str, via: IpAddr| {
        let out = topo
            .exec(host, "ip")
            .args(["route", op, net, "via", &via.to_string()])
            .output()
            .expect("ip route");
        assert!(out.status.success(), "{}", text(&out));
    };
    route("monitor", "add", "198.19.0.0/24", LOGIN_MONITOR_SIDE.into());
    route("node1", "add", "198.18.0.0/30", LOGIN_CLUSTER_SIDE.into());
    let t = Instant::now();
    let err = connect(&topo, "monitor", node1_port).expect_err("login must not forward");
    println!(
        "monitor → node1 routed via login, ip_forward 0: {err} after {:?}",
        t.elapsed()
    );
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    let set_forward = |v: &str| {
        topo.run_in("login", || {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", v)
        })
        .expect("enter login")
        .expect("write ip_forward");
    };
    set_forward("1");
    let control = connect(&topo, "monitor", node1_port);
    set_forward("0");
    route("monitor", "del", "198.19.0.0/24", LOGIN_MONITOR_SIDE.into());
    route("node1", "del", "198.18.0.0/30", LOGIN_CLUSTER_SIDE.into());
    control.unwrap_or_else(|e| panic!("control, ip_forward 1: {e}"));
    assert_eq!(accept_from(&on_node1), IpAddr::from(topo.monitor_addr()));
    println!("control: with ip_forward 1 the same routes connect; set back to 0");
    assert_eq!(read_sysctl(&topo, "login", "net.ipv4.ip_forward"), "0");
    println!(
        "login_reaches_both_sides_but_does_not_forward: {:?}",
        started.elapsed()
    );
}

#[test]
fn link_down_cuts_a_node_and_link_up_restores_it() {
    let started = Instant::now();
    let topo = build(1);
    let on_node1 = listen(&topo, "node1", topo.node_addr(1));
    let node1 = on_node1.local_addr().unwrap();
    let on_monitor = listen(&topo, "monitor", topo.monitor_addr());
    let monitor = on_monitor.local_addr().unwrap();
    connect(&topo, "login", node1).expect("before the cut");
    accept_from(&on_node1);

    topo.link_down("node1").unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    let err = connect(&topo, "login", node1).expect_err("node1 cut");
    println!("node1 down: login → node1: {err} after {:?}", t.elapsed());
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    let err = connect(&topo, "node1", (LOGIN_CLUSTER_SIDE, 22).into()).expect_err("cut");
    println!("node1 down: node1 → login: {err}");
    assert_eq!(err.raw_os_error(), Some(libc::ENETUNREACH), "{err}");
    let t = Instant::now();
    topo.link_up("node1").unwrap_or_else(|e| panic!("{e}"));
    connect(&topo, "login", node1).unwrap_or_else(|e| panic!("after link_up: {e}"));
    accept_from(&on_node1);
    println!(
        "node1 up again: login → node1 connects ({:?} incl. link wait)",
        t.elapsed()
    );

    topo.link_down("login").unwrap_or_else(|e| panic!("{e}"));
    let err = connect(&topo, "monitor", monitor).err();
    assert!(err.is_none(), "monitor reaches itself: {err:?}");
    accept_from(&on_monitor);
    let err = connect(&topo, "login", monitor).expect_err("login's monitor link cut");
    println!("login's monitor link down: login → monitor: {err}");
    assert_eq!(err.raw_os_error(), Some(libc::ENETUNREACH), "{err}");
    topo.link_up("login").unwrap_or_else(|e| panic!("{e}"));
    connect(&topo, "login", monitor).unwrap_or_else(|e| panic!("after link_up: {e}"));
    println!(
        "link_down_cuts_a_node_and_link_up_restores_it: {:?}",
        started.elapsed()
    );
}

#[test]
fn sshd_in_login_is_reached_from_monitor_by_name() {
    let started = Instant::now();
    let topo = build(1);
    let t = Instant::now();
    let sshd = Sshd::start_with(SshdOptions {
        netns: Some(topo.netns("login").to_string()),
        listen: topo.login_monitor_side().into(),
        ..SshdOptions::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "sshd on {} in login, ready in {:?}",
        sshd.addr(),
        t.elapsed()
    );
    assert!(
        sshd.known_hosts_lines()
            .starts_with(&format!("[{}]:", LOGIN_MONITOR_SIDE))
    );

    let mut banner = [0u8; 8];
    connect(&topo, "monitor", sshd.addr())
        .expect("monitor → login sshd")
        .read_exact(&mut banner)
        .expect("banner");
    assert_eq!(&banner, b"SSH-2.0-");
    let err = connect(&topo, "node1", sshd.addr()).expect_err("node1 → login's monitor side");
    println!("node1 → {}: {err}", sshd.addr());
    assert_eq!(err.raw_os_error(), Some(libc::ENETUNREACH));

    // A real session, by the name `login` as monitor resolves it.
    let ssh = require_binary("ssh", "openssh-client").unwrap_or_else(|e| panic!("{e}"));
    let key = sshd
        .client_key("monitor_key", KeyKind::Ed25519, KeyFormat::OpenSsh, None)
        .unwrap_or_else(|e| panic!("{e}"));
    let known = sshd.dir().join("known_hosts_by_name");
    std::fs::write(
        &known,
        format!(
            "[login]:{} {}\n",
            sshd.port(),
            sshd.host_keys()[0].public_key()
        ),
    )
    .expect("known_hosts");
    let t = Instant::now();
    let out = topo
        .exec("monitor", ssh)
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .arg("-i")
        .arg(&key.private)
        .args(["-p", &sshd.port().to_string()])
        .arg(format!("{}@login", sshd.user()))
        .arg("cat /proc/sys/net/ipv4/ip_forward; getent hosts node1")
        .output()
        .expect("ssh");
    println!(
        "monitor: ssh login (in {:?}) says: {}",
        t.elapsed(),
        text(&out).trim().replace('\n', " | ")
    );
    assert!(
        out.status.success(),
        "{}\nsshd log:\n{}",
        text(&out),
        sshd.log_text()
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("0\n"), "{said}");
    assert!(said.contains(&topo.node_addr(1).to_string()), "{said}");
    assert!(wait_until(Duration::from_secs(5), || sshd
        .count_log_lines("Accepted publickey")
        >= 1));
    println!(
        "sshd_in_login_is_reached_from_monitor_by_name: {:?}",
        started.elapsed()
    );
}

#[test]
fn teardown_leaves_nothing() {
    let started = Instant::now();
    let topo = build(2);
    let names: Vec<String> = topo
        .host_names()
        .iter()
        .map(|h| topo.netns(h).to_string())
        .collect();
    assert!(names_gone(&names).is_err(), "built, so present");
    // No interface of ours exists in the machine's own namespace.
    let host_links = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    let host_links = String::from_utf8_lossy(&host_links.stdout).into_owned();
    for dev in ["login0", "monitor0"] {
        assert!(
            !host_links.contains(&format!(": {dev}@")),
            "{dev} in the host's namespace:\n{host_links}"
        );
    }
    println!(
        "host namespace: {} interfaces, none of ours",
        host_links.lines().count()
    );
    let mut sleeper = topo
        .exec("node1", "sleep")
        .arg("600")
        .spawn()
        .expect("sleep in node1");
    let t = Instant::now();
    drop(topo);
    println!("dropped {names:?} in {:?}", t.elapsed());
    names_gone(&names).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        wait_until(Duration::from_secs(5), || matches!(
            sleeper.try_wait(),
            Ok(Some(_))
        )),
        "the process left in node1 was not ended"
    );
    println!("the process left running in node1 was killed");

    // Dropped while a panic unwinds.
    let mut in_panic = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let topo = Topology::build(1).unwrap_or_else(|e| panic!("{e}"));
        in_panic = topo
            .host_names()
            .iter()
            .map(|h| topo.netns(h).to_string())
            .collect();
        panic!("deliberate panic with a live topology");
    }));
    assert!(result.is_err());
    assert_eq!(in_panic.len(), 3);
    names_gone(&in_panic).unwrap_or_else(|e| panic!("after the panic: {e}"));
    println!("torn down during a panic: {in_panic:?}");

    // A leftover of a dead process is swept.
    let mut dead = std::process::Command::new("true").spawn().expect("true");
    let dead_pid = dead.id();
    dead.wait().expect("wait");
    let leftover = format!("aif-{dead_pid}-0-monitor");
    if !Path::new(&format!("/proc/{dead_pid}")).exists() {
        let ip = require_binary("ip", "iproute2").unwrap_or_else(|e| panic!("{e}"));
        let out = std::process::Command::new(&ip)
            .args(["netns", "add", &leftover])
            .output()
            .expect("ip netns add");
        assert!(out.status.success(), "{}", text(&out));
        std::fs::create_dir_all(Path::new("/etc/netns").join(&leftover)).expect("mkdir");
        let swept = sweep_leftovers(&ip);
        println!("sweep removed {swept:?}");
        names_gone(std::slice::from_ref(&leftover)).unwrap_or_else(|e| panic!("{e}"));
    }
    println!("teardown_leaves_nothing: {:?}", started.elapsed());
}

/// Set in the child run of [`without_privilege_build_says_what_is_missing`].
const UNPRIVILEGED_CHILD: &str = "AIF_NETNS_UNPRIVILEGED_CHILD";

#[test]
fn without_privilege_build_says_what_is_missing() {
    if std::env::var_os(UNPRIVILEGED_CHILD).is_some() {
        // The child: root's uid, but no capability at all.
        match Topology::build(1) {
            Ok(topo) => panic!("built {} without capabilities", topo.netns("monitor")),
            Err(e) => {
                println!("UNPRIVILEGED: {e}");
                assert!(matches!(e, TestbedError::NotPrivileged { .. }), "{e:?}");
                assert!(
                    e.to_string()
                        .contains("need root (CAP_SYS_ADMIN, CAP_NET_ADMIN)")
                );
            }
        }
        return;
    }
    let started = Instant::now();
    let setpriv = require_binary("setpriv", "util-linux").unwrap_or_else(|e| panic!("{e}"));
    let out = std::process::Command::new(setpriv)
        .args(["--inh-caps=-all", "--bounding-set=-all", "--"])
        .arg(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "without_privilege_build_says_what_is_missing",
            "--nocapture",
        ])
        .env(UNPRIVILEGED_CHILD, "1")
        .output()
        .expect("run the test binary without capabilities");
    let said = text(&out);
    let line = said
        .lines()
        .find(|l| l.starts_with("UNPRIVILEGED: "))
        .unwrap_or("");
    println!("without capabilities: {line}");
    assert!(out.status.success(), "{said}");
    assert!(line.contains("`ip netns add"), "{said}");
    println!(
        "without_privilege_build_says_what_is_missing: {:?}",
        started.elapsed()
    );
}
