//! The exporter through an SSH tunnel to a real private sshd (DESIGN.md §7).

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use aif_testbed::sshd::{KeyFormat, KeyKind, KeyPair, Sshd, fingerprint, generate_key};
use aif_testbed::{
    FAKE_HOSTS_ENV, Pushgateway, SshdOptions, fake_hosts_lib, free_port, metric_value, wait_until,
};
use support::Exporter;

/// The Pushgateway's name as the gateway knows it. Only the sshd resolves it
/// (to 127.0.0.1, through the fake-hosts shim); for the exporter the name does
/// not exist, so a push that did not go through the tunnel cannot land.
const GATEWAY_ONLY_HOST: &str = "pushgateway.behind-the-gateway.invalid";

struct Bed {
    sshd: Sshd,
    pgw: Pushgateway,
    pgw_url: String,
    user: String,
    key: KeyPair,
    known_hosts: PathBuf,
    shim: String,
    tmp: tempfile::TempDir,
}

fn bed() -> Bed {
    let shim = fake_hosts_lib()
        .unwrap_or_else(|e| panic!("{e}"))
        .to_str()
        .expect("utf8")
        .to_string();
    let sshd = Sshd::start_with(SshdOptions {
        env: vec![
            ("LD_PRELOAD".into(), shim.clone()),
            (
                FAKE_HOSTS_ENV.into(),
                format!("{GATEWAY_ONLY_HOST}=127.0.0.1"),
            ),
        ],
        ..SshdOptions::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let pgw = Pushgateway::start().unwrap_or_else(|e| panic!("{e}"));
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
        pgw_url: format!("http://{GATEWAY_ONLY_HOST}:{}", pgw.addr().port()),
        user: sshd.user(),
        sshd,
        pgw,
        key,
        known_hosts,
        shim,
        tmp,
    }
}

impl Bed {
    /// Starts the exporter pushing through the tunnel; `--pushgateway` names the
    /// Pushgateway as the gateway sees it.
    fn exporter(
        &self,
        instance: &str,
        user: &str,
        identity: &Path,
        known_hosts: &Path,
        extra: &[&str],
    ) -> Exporter {
        let port = self.sshd.port().to_string();
        let mut args = vec![
            "--ssh-host",
            "127.0.0.1",
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
        self.start_exporter(instance, &args)
    }

    /// The exporter pushing to [`GATEWAY_ONLY_HOST`] (a name unknown to it),
    /// with `extra` arguments (the tunnel's, or none for a direct push).
    fn start_exporter(&self, instance: &str, extra: &[&str]) -> Exporter {
        let listen = format!("127.0.0.1:{}", free_port());
        let buffer = self.tmp.path().join(format!("{instance}.db"));
        let mut args = vec![
            "--source",
            "simulated",
            "--gpus",
            "2",
            "--interval",
            "100ms",
            "--pushgateway",
            &self.pgw_url,
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
        let unknown = format!("{GATEWAY_ONLY_HOST}=");
        Exporter::start_with_env(
            self.tmp.path(),
            &args,
            &[("LD_PRELOAD", &self.shim), (FAKE_HOSTS_ENV, &unknown)],
        )
    }

    fn landed(&self, instance: &str) -> bool {
        self.pgw.metrics_text().is_ok_and(|t| {
            metric_value(&t, "aif_gpu_up", &[("instance", instance), ("gpu", "1")]) == Some(1.0)
        })
    }
}

fn scraped(exp: &Exporter, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metric_value(&exp.scrape(), name, labels)
}

#[test]
fn without_the_tunnel_the_exporter_cannot_reach_the_pushgateway() {
    // The premise of the tunnel tests: the address the exporter is given
    // resolves only on the gateway, so whatever lands went through the tunnel.
    let bed = bed();
    let exp = bed.start_exporter("node-direct", &[]);
    assert!(
        wait_until(Duration::from_secs(20), || exp.log_text().contains(
            &format!("pushgateway unreachable at http://{GATEWAY_ONLY_HOST}")
        )),
        "{}",
        exp.log_text()
    );
    assert!(!bed.landed("node-direct"));
    // And the gateway does resolve it (the exporter below pushes through it).
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
    assert!(exp.log_text().contains("@127.0.0.1:"), "{}", exp.log_text());

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
        recorded.contains(&format!("[127.0.0.1]:{} {host_key}", bed.sshd.port())),
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
    let line = format!("[127.0.0.1]:{} {}\n", bed.sshd.port(), other.public_key());
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
