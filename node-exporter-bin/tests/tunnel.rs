//! The exporter through an SSH tunnel to a real private sshd (DESIGN.md §7),
//! on the site's topology (`aif_testbed::Topology`, DESIGN.md §2): the
//! Pushgateway on `monitor`, sshd on `login` (on its cluster-side address,
//! `198.19.0.1`), the exporter on `node1`. `node1` has no route to `monitor`
//! and does not resolve its name, so whatever lands went through the tunnel.
//!
//! Every test builds its own one-node topology (about 0.1 s, see the line
//! each prints): one test kills and restarts its sshd, others watch theirs
//! refuse logins, so they share nothing; namespaces are named per topology
//! and torn down on drop.
//!
//! Needs root, `ip` (Debian `iproute2`), `openssh-server`/`openssh-client`,
//! `prometheus-pushgateway`; `getent` (libc-bin).

mod support;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use aif_testbed::netns::{LOGIN_CLUSTER_SIDE, MONITOR_ADDR, free_port_in};
use aif_testbed::sshd::{KeyFormat, KeyKind, KeyPair, Sshd, fingerprint, generate_key};
use aif_testbed::{Pushgateway, SshdOptions, Topology, metric_value, wait_until};
use support::Exporter;

/// The Pushgateway's host as `login` knows it (`/etc/hosts` there: `monitor`'s
/// address). `node1` does not resolve it, and has no route to that address.
const GATEWAY_SIDE_NAME: &str = "monitor";

/// The host the exporter runs on.
const NODE: &str = "node1";

struct Bed {
    sshd: Sshd,
    pgw: Pushgateway,
    /// `http://monitor:PORT`: what the exporter is told to push to.
    pgw_url: String,
    user: String,
    key: KeyPair,
    known_hosts: PathBuf,
    tmp: tempfile::TempDir,
    /// Last: dropped after the servers running inside it.
    topo: Topology,
}

fn bed() -> Bed {
    let t = Instant::now();
    let topo = Topology::build(1).unwrap_or_else(|e| panic!("{e}"));
    let built = t.elapsed();
    let t = Instant::now();
    let pgw = Pushgateway::start_in(topo.netns("monitor"), MONITOR_ADDR.into())
        .unwrap_or_else(|e| panic!("{e}"));
    let pgw_ready = t.elapsed();
    let t = Instant::now();
    let sshd = Sshd::start_with(SshdOptions {
        netns: Some(topo.netns("login").to_string()),
        listen: LOGIN_CLUSTER_SIDE.into(),
        hostname: Some("login".into()),
        ..SshdOptions::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "topology {} built in {built:?}; pushgateway {} ready in {pgw_ready:?}; \
         sshd {} in login ready in {:?}",
        topo.netns("monitor"),
        pgw.addr(),
        sshd.addr(),
        t.elapsed()
    );
    let tmp = tempfile::Builder::new()
        .prefix("aif-exp-ssh-")
        .tempdir()
        .expect("tmp");
    let key = sshd
        .client_key("client_ed25519", KeyKind::Ed25519, KeyFormat::OpenSsh, None)
        .unwrap_or_else(|e| panic!("{e}"));
    let known_hosts = tmp.path().join("known_hosts");
    sshd.write_known_hosts(&known_hosts)
        .unwrap_or_else(|e| panic!("{e}"));
    Bed {
        pgw_url: format!("http://{GATEWAY_SIDE_NAME}:{}", pgw.addr().port()),
        user: sshd.user(),
        sshd,
        pgw,
        key,
        known_hosts,
        tmp,
        topo,
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- sshd log (login, {}) ---\n{}\n--- pushgateway log (monitor, {}) ---\n{}",
                self.sshd.addr(),
                self.sshd.log_text(),
                self.pgw.addr(),
                self.pgw.log_text()
            );
        }
    }
}

impl Bed {
    /// Starts the exporter on `node1` pushing through the tunnel to `login`'s
    /// sshd; `--pushgateway` names the Pushgateway as `login` sees it.
    fn exporter(
        &self,
        instance: &str,
        user: &str,
        identity: &Path,
        known_hosts: &Path,
        extra: &[&str],
    ) -> Exporter {
        let host = LOGIN_CLUSTER_SIDE.to_string();
        let port = self.sshd.port().to_string();
        let mut args = vec![
            "--ssh-host",
            &host,
            "--ssh-port",
            &port,
            "--ssh-user",
            user,
            "--ssh-identity",
            identity.to_str().expect("utf8"),
            "--ssh-known-hosts",
            known_hosts.to_str().expect("utf8"),
        ];
        args.extend(extra.iter());
        self.start_exporter(instance, &self.pgw_url, &args)
    }

    /// The exporter on `node1` pushing to `url`, with `extra` arguments (the
    /// tunnel's, or none for a direct push). Its log and buffer are in a
    /// directory of its own, `tmp/<instance>/`.
    fn start_exporter(&self, instance: &str, url: &str, extra: &[&str]) -> Exporter {
        let netns = self.topo.netns(NODE);
        let port = free_port_in(netns, IpAddr::from([127, 0, 0, 1]))
            .unwrap_or_else(|e| panic!("free port in {netns}: {e}"));
        let listen = format!("127.0.0.1:{port}");
        let dir = self.tmp.path().join(instance);
        std::fs::create_dir_all(&dir).expect("exporter dir");
        let buffer = dir.join("buffer.db");
        let mut args = vec![
            "--source",
            "simulated",
            "--gpus",
            "2",
            "--interval",
            "100ms",
            "--pushgateway",
            url,
            "--instance",
            instance,
            "--push-retry-initial",
            "100ms",
            "--push-retry-max",
            "1s",
            "--push-timeout",
            "2s",
            "--listen",
            &listen,
            "--buffer",
            buffer.to_str().expect("utf8"),
        ];
        args.extend(extra.iter());
        Exporter::start_in(&self.topo, NODE, &dir, &args)
    }

    fn landed(&self, instance: &str) -> bool {
        self.pgw.metrics_text().is_ok_and(|t| {
            metric_value(&t, "aif_gpu_up", &[("instance", instance), ("gpu", "1")]) == Some(1.0)
        })
    }

    /// `program args` run on `host`.
    fn on(&self, host: &str, program: &str, args: &[&str]) -> Output {
        self.topo
            .exec(host, program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program} on {host}: {e}"))
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn scraped(exp: &Exporter, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metric_value(&exp.scrape(), name, labels)
}

/// The `pushgateway unreachable at URL: reason` lines of `log`.
fn unreachable_lines(log: &str, url: &str) -> Vec<String> {
    let needle = format!("pushgateway unreachable at {url}");
    log.lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn without_the_tunnel_the_exporter_cannot_reach_the_pushgateway() {
    // The premise of the tunnel tests: the Pushgateway the exporter is given
    // is out of node1's reach (its name unknown there, its address without a
    // route), so whatever lands went through the tunnel.
    let bed = bed();
    let monitor = MONITOR_ADDR.to_string();
    let port = bed.pgw.addr().port();

    // The name: login resolves it, node1 does not.
    let on_login = bed.on("login", "getent", &["hosts", GATEWAY_SIDE_NAME]);
    assert!(
        on_login.status.success() && text(&on_login).contains(&monitor),
        "login must resolve {GATEWAY_SIDE_NAME}: {}",
        text(&on_login)
    );
    let on_node = bed.on(NODE, "getent", &["hosts", GATEWAY_SIDE_NAME]);
    assert_eq!(
        on_node.status.code(),
        Some(2),
        "{NODE} must not resolve {GATEWAY_SIDE_NAME}: {}",
        text(&on_node)
    );
    // The address: no route from node1.
    let route = bed.on(NODE, "ip", &["route", "get", &monitor]);
    assert!(
        !route.status.success() && text(&route).contains("Network is unreachable"),
        "{NODE} must have no route to {monitor}: {}",
        text(&route)
    );

    // The exporter given the name: every push fails to resolve it.
    let by_name = bed.start_exporter("node-direct", &bed.pgw_url, &[]);
    // The exporter given the address: every push fails to connect.
    let by_addr_url = format!("http://{monitor}:{port}");
    let by_addr = bed.start_exporter("node-direct-addr", &by_addr_url, &[]);
    for (exp, url) in [(&by_name, &bed.pgw_url), (&by_addr, &by_addr_url)] {
        assert!(
            wait_until(Duration::from_secs(20), || {
                unreachable_lines(&exp.log_text(), url).len() >= 2
                    && scraped(
                        exp,
                        "aif_exporter_pushes_total",
                        &[("result", "unreachable")],
                    )
                    .is_some_and(|v| v >= 2.0)
            }),
            "no failed pushes to {url}:\n{}\n{}",
            exp.scrape(),
            exp.log_text()
        );
    }
    let name_failures = unreachable_lines(&by_name.log_text(), &bed.pgw_url);
    println!("{NODE} → {}: {}", bed.pgw_url, name_failures[0]);
    assert!(
        name_failures
            .iter()
            .all(|l| l.contains("failed to lookup address information")),
        "the name must fail to resolve on {NODE}:\n{}",
        name_failures.join("\n")
    );
    let addr_failures = unreachable_lines(&by_addr.log_text(), &by_addr_url);
    println!("{NODE} → {by_addr_url}: {}", addr_failures[0]);
    assert!(
        addr_failures
            .iter()
            .all(|l| l.contains("Network is unreachable")),
        "the address must have no route:\n{}",
        addr_failures.join("\n")
    );
    assert!(!bed.landed("node-direct"));
    assert!(!bed.landed("node-direct-addr"));

    // And login does resolve and reach it (the exporter below pushes through
    // the tunnel, to the same URL as `by_name`).
    let through = bed.exporter(
        "node-via",
        &bed.user,
        &bed.key.private,
        &bed.known_hosts,
        &[],
    );
    assert!(
        wait_until(Duration::from_secs(20), || bed.landed("node-via")),
        "{}",
        through.log_text()
    );
}

#[test]
fn pushes_travel_through_the_tunnel_and_survive_an_sshd_restart() {
    let mut bed = bed();
    let exp = bed.exporter("node-t", &bed.user, &bed.key.private, &bed.known_hosts, &[]);
    assert!(
        wait_until(Duration::from_secs(20), || bed.landed("node-t")),
        "{}",
        exp.log_text()
    );
    // The gauge is refreshed once per tick.
    assert!(
        wait_until(Duration::from_secs(5), || scraped(
            &exp,
            "aif_exporter_tunnel_up",
            &[]
        ) == Some(1.0)),
        "{}",
        exp.scrape()
    );
    let at = format!("@{LOGIN_CLUSTER_SIDE}:{}", bed.sshd.port());
    assert!(
        exp.log_text().contains(&at),
        "{at} not in the log:\n{}",
        exp.log_text()
    );

    // The Pushgateway stays up; only the gateway goes away. Pushes now fail
    // (they only ever went through the tunnel) and samples are kept.
    bed.sshd.kill();
    assert!(
        wait_until(Duration::from_secs(20), || {
            scraped(&exp, "aif_exporter_tunnel_up", &[]) == Some(0.0)
                && scraped(
                    &exp,
                    "aif_exporter_pushes_total",
                    &[("result", "unreachable")],
                )
                .is_some_and(|v| v >= 1.0)
        }),
        "tunnel loss not seen:\n{}\n{}",
        exp.scrape(),
        exp.log_text()
    );
    assert!(wait_until(Duration::from_secs(10), || {
        scraped(
            &exp,
            "aif_exporter_buffer_pending_batches",
            &[("sink", "pushgateway")],
        )
        .is_some_and(|v| v >= 3.0)
    }));
    let samples_during_outage = scraped(&exp, "aif_exporter_samples_total", &[]).expect("samples");

    bed.sshd.restart().unwrap_or_else(|e| panic!("{e}"));
    let pushed_samples = |bed: &Bed| {
        bed.pgw
            .metrics_text()
            .ok()
            .and_then(|t| metric_value(&t, "aif_exporter_samples_total", &[("instance", "node-t")]))
            .unwrap_or(0.0)
    };
    assert!(
        wait_until(Duration::from_secs(40), || pushed_samples(&bed)
            >= samples_during_outage),
        "buffered state never arrived after the restart:\n{}",
        exp.log_text()
    );
    assert!(wait_until(Duration::from_secs(5), || {
        scraped(&exp, "aif_exporter_tunnel_up", &[]) == Some(1.0)
            && scraped(&exp, "aif_exporter_tunnel_reconnects_total", &[]).is_some_and(|v| v >= 1.0)
    }));
    assert!(!exp.log_text().contains("panicked"), "{}", exp.log_text());
}

#[test]
fn unknown_host_key_is_refused_with_its_fingerprint_and_nothing_is_pushed() {
    let bed = bed();
    let empty = bed.tmp.path().join("empty_known_hosts");
    std::fs::write(&empty, "").expect("write");
    let host_pub = bed.sshd.host_keys()[0].public.clone();
    let fp = fingerprint(&host_pub).unwrap_or_else(|e| panic!("{e}"));
    let exp = bed.exporter("node-unknown", &bed.user, &bed.key.private, &empty, &[]);
    assert!(
        wait_until(Duration::from_secs(20), || exp.log_text().contains(&fp)),
        "fingerprint {fp} not in the log:\n{}",
        exp.log_text()
    );
    assert!(
        !bed.landed("node-unknown"),
        "pushed through an unverified host"
    );
    // The endpoint may come up just after the first login attempt failed.
    assert!(
        wait_until(Duration::from_secs(10), || scraped(
            &exp,
            "aif_exporter_tunnel_up",
            &[]
        ) == Some(0.0)),
        "{}",
        exp.scrape()
    );
    assert_eq!(
        std::fs::read_to_string(&empty).expect("read"),
        "",
        "known_hosts must be untouched"
    );

    // With --ssh-accept-new the key is recorded and pushes land.
    let accepting = bed.tmp.path().join("accept_known_hosts");
    std::fs::write(&accepting, "").expect("write");
    let exp = bed.exporter(
        "node-accept",
        &bed.user,
        &bed.key.private,
        &accepting,
        &["--ssh-accept-new"],
    );
    assert!(
        wait_until(Duration::from_secs(20), || bed.landed("node-accept")),
        "{}",
        exp.log_text()
    );
    let recorded = std::fs::read_to_string(&accepting).expect("read");
    let host_key = bed.sshd.host_keys()[0].public_key();
    assert!(
        recorded.contains(&format!(
            "[{LOGIN_CLUSTER_SIDE}]:{} {host_key}",
            bed.sshd.port()
        )),
        "{recorded}"
    );
}

#[test]
fn changed_host_key_is_refused_even_with_accept_new() {
    let bed = bed();
    let other = generate_key(
        &bed.tmp.path().join("impostor"),
        KeyKind::Ed25519,
        KeyFormat::OpenSsh,
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let kh = bed.tmp.path().join("changed_known_hosts");
    let line = format!(
        "[{LOGIN_CLUSTER_SIDE}]:{} {}\n",
        bed.sshd.port(),
        other.public_key()
    );
    std::fs::write(&kh, &line).expect("write");
    let exp = bed.exporter(
        "node-changed",
        &bed.user,
        &bed.key.private,
        &kh,
        &["--ssh-accept-new"],
    );
    assert!(
        wait_until(Duration::from_secs(20), || exp
            .log_text()
            .contains("CHANGED")),
        "{}",
        exp.log_text()
    );
    assert!(!bed.landed("node-changed"));
    assert_eq!(
        std::fs::read_to_string(&kh).expect("read"),
        line,
        "known_hosts must be untouched"
    );
}

#[test]
fn wrong_user_is_an_authentication_error_retried_with_backoff() {
    let bed = bed();
    let stranger = generate_key(
        &bed.tmp.path().join("stranger"),
        KeyKind::Ed25519,
        KeyFormat::OpenSsh,
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for (instance, user, identity) in [
        (
            "node-wrong-key",
            bed.user.as_str(),
            stranger.private.as_path(),
        ),
        (
            "node-wrong-user",
            "aif-no-such-user",
            bed.key.private.as_path(),
        ),
    ] {
        let exp = bed.exporter(instance, user, identity, &bed.known_hosts, &[]);
        assert!(
            wait_until(Duration::from_secs(20), || exp
                .log_text()
                .contains("authentication")),
            "{instance}: no authentication error:\n{}",
            exp.log_text()
        );
        // Five failed logins: each logs the delay it drew, which must stay
        // under the policy's ceiling (500 ms doubling, 30 s cap), and the
        // attempts must really be that far apart (a hot loop is not).
        let failures = |text: &str| -> Vec<u128> {
            text.lines()
                .filter(|l| l.contains("tunnel login failed"))
                .map(|l| {
                    l.split(" delay=")
                        .nth(1)
                        .and_then(|d| d.split("ms").next())
                        .and_then(|d| d.parse().ok())
                        .unwrap_or_else(|| panic!("no delay in {l}"))
                })
                .collect()
        };
        let mut first_seen = None;
        assert!(
            wait_until(Duration::from_secs(60), || {
                let n = failures(&exp.log_text()).len();
                if n >= 1 && first_seen.is_none() {
                    first_seen = Some(std::time::Instant::now());
                }
                n >= 5
            }),
            "{instance}: fewer than 5 login attempts in 60 s:\n{}",
            exp.log_text()
        );
        let between = first_seen.expect("first failure seen").elapsed();
        let delays = failures(&exp.log_text());
        for (k, d) in delays.iter().enumerate() {
            let ceiling = (500u128 << k.min(16)).min(30_000);
            assert!(
                *d <= ceiling,
                "{instance}: attempt {k} waited {d} ms, above the ceiling {ceiling} ms"
            );
        }
        // Between the first and the fifth failure lie the first four delays
        // (on average 3.75 s). The first sighting may lag its line by a poll
        // and by scheduling on a busy machine: 500 ms of slack, still far
        // below what a loop that logs delays without waiting them would need.
        let waited: u128 = delays[..4].iter().sum();
        assert!(
            between.as_millis() + 500 >= waited,
            "{instance}: 5 attempts in {between:?}, but the delays drawn sum to {waited} ms"
        );
        assert!(!bed.landed(instance));
    }
}
