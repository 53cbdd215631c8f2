//! SSH sessions and tunnels against a real private sshd and a real
//! Pushgateway (DESIGN.md §7, §9). Everything on 127.0.0.1.
//!
//! `TEST_LOG=1` prints the library's log lines with timestamps.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

use aif_testbed::sshd::{
    KeyFormat, KeyKind, KeyPair, SshdOptions, fingerprint, generate_key, hash_known_hosts,
};
use aif_testbed::{Pushgateway, Sshd, free_port, http_get, wait_until};
use gpu_metrics::ssh::{SshConfig, SshError, SshSession};
use gpu_metrics::tunnel::{LocalForward, RemoteForward, TunnelOptions};

const WAIT: Duration = Duration::from_secs(30);

struct StderrLogger {
    start: Instant,
}

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info || m.target().starts_with("gpu_metrics")
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!(
                "[{:>8.3}s {:<5} {}] {}",
                self.start.elapsed().as_secs_f64(),
                r.level(),
                std::thread::current().name().unwrap_or("?"),
                r.args()
            );
        }
    }
    fn flush(&self) {}
}

fn init_log() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let logger = Box::leak(Box::new(StderrLogger {
                start: Instant::now(),
            }));
            let _ = log::set_logger(logger);
            log::set_max_level(log::LevelFilter::Debug);
        }
    });
}

/// A private sshd, an authorized ed25519 key (OpenSSH format) and a
/// known_hosts file that holds the server's key.
struct Bed {
    sshd: Sshd,
    key: KeyPair,
    known_hosts: PathBuf,
    tmp: tempfile::TempDir,
}

fn bed() -> Bed {
    bed_with(SshdOptions::default())
}

fn bed_with(options: SshdOptions) -> Bed {
    init_log();
    let sshd = Sshd::start_with(options).expect("sshd");
    let key = sshd
        .client_key("id_ed25519", KeyKind::Ed25519, KeyFormat::OpenSsh, None)
        .expect("client key");
    let tmp = tempfile::tempdir().expect("tempdir");
    let known_hosts = tmp.path().join("known_hosts");
    sshd.write_known_hosts(&known_hosts).expect("known_hosts");
    Bed {
        sshd,
        key,
        known_hosts,
        tmp,
    }
}

impl Bed {
    fn config(&self) -> SshConfig {
        config_for(&self.sshd, &self.key.private, &self.known_hosts)
    }
}

fn config_for(sshd: &Sshd, identity: &Path, known_hosts: &Path) -> SshConfig {
    SshConfig::builder("127.0.0.1", sshd.user(), identity)
        .port(sshd.port())
        .known_hosts(known_hosts)
        .connect_timeout(Duration::from_secs(5))
        .keepalive_interval(Some(Duration::from_secs(5)))
        .build()
        .expect("config")
}

fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// PUT a text exposition to `base` (a Pushgateway URL); the status.
fn push(agent: &ureq::Agent, base: &str, instance: &str, value: u32) -> Result<u16, ureq::Error> {
    let resp = agent
        .put(&format!("{base}/metrics/job/test/instance/{instance}"))
        .header("Content-Type", "text/plain; version=0.0.4")
        .send(format!(
            "# TYPE tunnel_test_value gauge\ntunnel_test_value {value}\n"
        ))?;
    Ok(resp.status().as_u16())
}

fn pushed_value(pgw: &Pushgateway, instance: &str) -> Option<String> {
    let text = pgw.metrics_text().ok()?;
    let prefix = format!("tunnel_test_value{{instance=\"{instance}\",job=\"test\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
}

fn host_key_public_file(sshd: &Sshd) -> PathBuf {
    sshd.host_keys()[0].public.clone()
}

// ---------------------------------------------------------------- exec

#[test]
fn exec_passes_arguments_verbatim_and_returns_the_exit_status() {
    let bed = bed();
    let session = SshSession::connect(&bed.config()).expect("connect");
    let out = session
        .exec(&argv(&["printf", "%s", "a b'c"]))
        .expect("exec");
    assert_eq!(out.stdout, "a b'c");
    assert_eq!(out.status, 0);
    assert!(out.success());

    let out = session
        .exec(&argv(&["sh", "-c", "echo oops >&2; exit 3"]))
        .expect("exec");
    assert_eq!(
        (out.status, out.stderr.as_str(), out.stdout.as_str()),
        (3, "oops\n", "")
    );
    assert_eq!(session.exec(&argv(&["false"])).expect("exec").status, 1);
    let out = session
        .exec(&argv(&["sh", "-c", "kill -TERM $$"]))
        .expect("exec");
    assert_eq!(out.status, 128 + 15);

    // Shell metacharacters reach the program as plain bytes.
    let out = session
        .exec(&argv(&[
            "printf", "%s|", "$(id)", "`id`", "*", "x;y", "", "a\nb", "'",
        ]))
        .expect("exec");
    assert_eq!(out.stdout, "$(id)|`id`|*|x;y||a\nb|'|");

    // A lot on both stdout and stderr at once does not stall.
    let out = session
        .exec(&argv(&[
            "sh",
            "-c",
            "head -c 3000000 /dev/zero >&2; head -c 3000000 /dev/zero",
        ]))
        .expect("exec");
    assert_eq!((out.stdout.len(), out.stderr.len()), (3_000_000, 3_000_000));

    assert!(matches!(
        session.exec(&[]),
        Err(SshError::InvalidCommand { .. })
    ));
    assert!(matches!(
        session.exec(&argv(&["echo", "a\0b"])),
        Err(SshError::InvalidCommand { .. })
    ));
}

#[test]
fn exec_logs_in_again_after_the_server_restarted() {
    let mut bed = bed();
    let session = SshSession::connect(&bed.config()).expect("connect");
    assert_eq!(session.exec(&argv(&["true"])).expect("exec").status, 0);
    bed.sshd.kill();
    bed.sshd.restart().expect("restart");
    let out = session
        .exec(&argv(&["echo", "back"]))
        .expect("exec after restart");
    assert_eq!(out.stdout, "back\n");
}

#[test]
fn exec_timeout_is_reported_and_the_session_recovers() {
    let bed = bed();
    let mut config = bed.config();
    config.exec_timeout = Some(Duration::from_secs(1));
    let session = SshSession::connect(&config).expect("connect");
    let err = session
        .exec(&argv(&["sleep", "30"]))
        .expect_err("must time out");
    assert!(
        matches!(&err, SshError::ExecTimeout { program, .. } if program == "sleep"),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(
        session.exec(&argv(&["echo", "ok"])).expect("exec").stdout,
        "ok\n"
    );
}

#[test]
fn one_session_serves_several_threads() {
    let bed = bed();
    let session = std::sync::Arc::new(SshSession::connect(&bed.config()).expect("connect"));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let session = std::sync::Arc::clone(&session);
            std::thread::spawn(move || {
                (0..5)
                    .map(|j| {
                        session
                            .exec(&argv(&["printf", "%s", &format!("{i}-{j}")]))
                            .map(|o| o.stdout)
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let outs = h.join().expect("thread").expect("exec");
        let expected: Vec<String> = (0..5).map(|j| format!("{i}-{j}")).collect();
        assert_eq!(outs, expected);
    }
}

// ---------------------------------------------------------------- host keys

#[test]
fn unknown_host_key_is_refused_with_its_sha256_fingerprint() {
    let bed = bed();
    let pgw = Pushgateway::start().expect("pushgateway");
    let empty = bed.tmp.path().join("empty_known_hosts");
    let config = config_for(&bed.sshd, &bed.key.private, &empty);
    let expected_fp = fingerprint(&host_key_public_file(&bed.sshd)).expect("ssh-keygen -l");

    let err = SshSession::connect(&config).expect_err("unknown host must be refused");
    let text = err.to_string();
    match &err {
        SshError::HostKeyUnknown {
            key_type,
            fingerprint,
            port,
            ..
        } => {
            assert_eq!(key_type, "ssh-ed25519");
            assert_eq!(fingerprint, &expected_fp);
            assert_eq!(*port, bed.sshd.port());
        }
        other => panic!("expected HostKeyUnknown, got {other:?}"),
    }
    assert!(
        text.contains(&format!("ED25519 key fingerprint is {expected_fp}")),
        "{text}"
    );
    assert!(!err.is_retryable());

    // The forward refuses too, and forwards nothing.
    let err = LocalForward::start(&config, "127.0.0.1", pgw.addr().port()).expect_err("refused");
    assert!(matches!(err, SshError::HostKeyUnknown { .. }), "{err}");
    assert!(err.to_string().contains(&expected_fp));
    let options = TunnelOptions {
        wait_for_first_login: false,
        ..TunnelOptions::default()
    };
    let fwd = LocalForward::start_with(&config, "127.0.0.1", pgw.addr().port(), options)
        .expect("background");
    assert!(wait_until(WAIT, || fwd.stats().last_error().is_some()));
    assert!(matches!(
        fwd.stats().last_error().as_deref(),
        Some(SshError::HostKeyUnknown { .. })
    ));
    assert!(!fwd.is_up());
    let status = push(
        &agent(),
        &format!("http://{}", fwd.local_addr()),
        "refused",
        1,
    );
    assert!(status.is_err(), "nothing may be forwarded: {status:?}");
    assert_eq!(fwd.stats().channels_opened(), 0);
    assert_eq!(pushed_value(&pgw, "refused"), None);
    // Nothing was written to known_hosts.
    assert!(
        !empty.exists()
            || std::fs::read_to_string(&empty)
                .unwrap_or_default()
                .is_empty()
    );
}

#[test]
fn accept_new_appends_the_key_in_openssh_format() {
    let bed = bed();
    let kh = bed.tmp.path().join("new_known_hosts");
    std::fs::write(&kh, "# existing\nother.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB5ZkN1dJ5mE7a7pB4+xQ+U9F3fJt0HcVx2oKWB0tC3n").expect("write");
    let mut config = config_for(&bed.sshd, &bed.key.private, &kh);
    config.accept_new = true;
    let session = SshSession::connect(&config).expect("accept-new connects");
    assert_eq!(session.exec(&argv(&["true"])).expect("exec").status, 0);

    let text = std::fs::read_to_string(&kh).expect("read");
    let expected = format!(
        "[127.0.0.1]:{} {}",
        bed.sshd.port(),
        bed.sshd.host_keys()[0].public_key()
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[2], expected);

    // Now known: strict checking accepts it, and nothing more is appended.
    config.accept_new = false;
    SshSession::connect(&config).expect("known now");
    assert_eq!(std::fs::read_to_string(&kh).expect("read"), text);
}

#[test]
fn changed_host_key_is_refused_even_with_accept_new() {
    let bed = bed();
    let other = generate_key(
        &bed.tmp.path().join("other_host_key"),
        KeyKind::Ed25519,
        KeyFormat::OpenSsh,
        None,
    )
    .expect("key");
    let kh = bed.tmp.path().join("changed_known_hosts");
    let line = format!("[127.0.0.1]:{} {}\n", bed.sshd.port(), other.public_key());
    std::fs::write(&kh, &line).expect("write");
    let mut config = config_for(&bed.sshd, &bed.key.private, &kh);
    config.accept_new = true;
    let err = SshSession::connect(&config).expect_err("changed key must be refused");
    match &err {
        SshError::HostKeyChanged {
            fingerprint, line, ..
        } => {
            assert_eq!(
                fingerprint,
                &aif_testbed::sshd::fingerprint(&host_key_public_file(&bed.sshd)).expect("fp")
            );
            assert_eq!(*line, 1);
        }
        other => panic!("expected HostKeyChanged, got {other:?}"),
    }
    assert!(err.to_string().contains("CHANGED"), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(
        std::fs::read_to_string(&kh).expect("read"),
        line,
        "file must be untouched"
    );
    let err = LocalForward::start(&config, "127.0.0.1", 9).expect_err("forward refused");
    assert!(matches!(err, SshError::HostKeyChanged { .. }), "{err}");
}

#[test]
fn hashed_known_hosts_entry_is_accepted() {
    let bed = bed();
    hash_known_hosts(&bed.known_hosts).expect("ssh-keygen -H");
    let text = std::fs::read_to_string(&bed.known_hosts).expect("read");
    assert!(text.starts_with("|1|"), "not hashed: {text}");
    assert!(!text.contains("127.0.0.1"));
    let session = SshSession::connect(&bed.config()).expect("hashed entry accepted");
    assert_eq!(session.exec(&argv(&["true"])).expect("exec").status, 0);
}

#[test]
fn known_rsa_host_key_is_preferred_over_an_unknown_ed25519_one() {
    // The server has both; known_hosts only the RSA one: the client must ask
    // for RSA instead of calling the ed25519 key "changed".
    let bed = bed_with(SshdOptions {
        host_keys: vec![KeyKind::Ed25519, KeyKind::Rsa],
        ..SshdOptions::default()
    });
    let rsa = &bed.sshd.host_keys()[1];
    std::fs::write(
        &bed.known_hosts,
        format!("[127.0.0.1]:{} {}\n", bed.sshd.port(), rsa.public_key()),
    )
    .expect("write");
    let session = SshSession::connect(&bed.config()).expect("RSA host key");
    assert_eq!(session.exec(&argv(&["true"])).expect("exec").status, 0);
}

// ---------------------------------------------------------------- authentication

#[test]
fn rsa_pem_and_ed25519_openssh_keys_authenticate() {
    let bed = bed();
    let keys = [
        ("rsa_pem", KeyKind::Rsa, KeyFormat::Pem, None),
        ("rsa_openssh", KeyKind::Rsa, KeyFormat::OpenSsh, None),
        (
            "ed25519_openssh",
            KeyKind::Ed25519,
            KeyFormat::OpenSsh,
            None,
        ),
        (
            "ed25519_secret",
            KeyKind::Ed25519,
            KeyFormat::OpenSsh,
            Some("s3cret pass"),
        ),
        (
            "rsa_pem_secret",
            KeyKind::Rsa,
            KeyFormat::Pem,
            Some("s3cret pass"),
        ),
    ];
    for (name, kind, format, passphrase) in keys {
        let key = bed
            .sshd
            .client_key(name, kind, format, passphrase)
            .expect("key");
        let head = std::fs::read_to_string(&key.private).expect("read key");
        match format {
            KeyFormat::Pem => assert!(
                head.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
                "{name}"
            ),
            KeyFormat::OpenSsh => assert!(
                head.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"),
                "{name}"
            ),
        }
        let mut config = config_for(&bed.sshd, &key.private, &bed.known_hosts);
        if let Some(p) = passphrase {
            config.passphrase = Some(gpu_metrics::ssh::Passphrase::new(p));
            assert!(!format!("{config:?}").contains(p));
        }
        let session = SshSession::connect(&config).unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = session.exec(&argv(&["printf", "%s", name])).expect("exec");
        assert_eq!(out.stdout, name);
        if let Some(p) = passphrase {
            config.passphrase = Some(gpu_metrics::ssh::Passphrase::new("wrong"));
            let err = SshSession::connect(&config).expect_err("wrong passphrase");
            assert!(!err.to_string().contains(p) && !format!("{err:?}").contains(p));
            assert!(!err.is_retryable(), "{name}: {err}");
        }
    }
}

#[test]
fn wrong_key_or_wrong_user_is_a_clear_auth_failure() {
    let bed = bed();
    let stranger = generate_key(
        &bed.tmp.path().join("stranger"),
        KeyKind::Ed25519,
        KeyFormat::OpenSsh,
        None,
    )
    .expect("key");
    let config = config_for(&bed.sshd, &stranger.private, &bed.known_hosts);
    let err = SshSession::connect(&config).expect_err("unauthorized key");
    match &err {
        SshError::AuthFailed {
            user,
            host,
            identity,
            ..
        } => {
            assert_eq!(user, &bed.sshd.user());
            assert_eq!(host, "127.0.0.1");
            assert_eq!(identity, &stranger.private);
        }
        other => panic!("expected AuthFailed, got {other:?}"),
    }
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains("authentication failed") && text.contains("stranger"),
        "{text}"
    );

    let mut config = bed.config();
    config.user = "aif-no-such-user".to_string();
    let err = SshSession::connect(&config).expect_err("unknown user");
    assert!(
        matches!(&err, SshError::AuthFailed { user, .. } if user == "aif-no-such-user"),
        "{err:?}"
    );
    assert!(wait_until(WAIT, || bed
        .sshd
        .count_log_lines("Invalid user aif-no-such-user")
        >= 1));

    let mut config = bed.config();
    config.identity_file = bed.tmp.path().join("missing_key");
    assert!(matches!(
        SshSession::connect(&config),
        Err(SshError::Identity { .. })
    ));

    let err = LocalForward::start(
        &config_for(&bed.sshd, &stranger.private, &bed.known_hosts),
        "127.0.0.1",
        9,
    )
    .expect_err("forward with a refused key");
    assert!(matches!(err, SshError::AuthFailed { .. }), "{err}");
}

#[test]
fn failing_login_is_retried_with_backoff_not_in_a_hot_loop() {
    let bed = bed();
    let mut config = bed.config();
    config.user = "aif-no-such-user".to_string();
    let options = TunnelOptions {
        wait_for_first_login: false,
        ..TunnelOptions::default()
    };
    let fwd = LocalForward::start_with(&config, "127.0.0.1", 9, options).expect("background start");
    let stats = fwd.stats();
    assert!(wait_until(WAIT, || stats.login_failures() >= 1));
    assert!(
        matches!(
            stats.last_error().as_deref(),
            Some(SshError::AuthFailed { .. })
        ),
        "{:?}",
        stats.last_error()
    );
    // Observe for 10 s: with 500 ms doubling and full jitter, 5–7 attempts
    // are typical and more than 10 has a probability below 1e-5; a hot loop
    // would make hundreds.
    let hot = wait_until(Duration::from_secs(10), || stats.login_attempts() > 10);
    let attempts = stats.login_attempts();
    let connections = bed.sshd.count_log_lines("Connection from 127.0.0.1");
    eprintln!("failing login: {attempts} attempts in ~10 s, sshd saw {connections} connections");
    assert!(!hot, "hot loop: {attempts} attempts");
    assert!(attempts >= 2, "no retry: {attempts}");
    assert!(
        connections <= attempts as usize + 1,
        "{connections} connections for {attempts} attempts"
    );
    assert!(!fwd.is_up());
    assert_eq!(fwd.reconnects(), 0);
}

// ---------------------------------------------------------------- local forward

#[test]
fn pushes_travel_through_the_local_forward_and_land() {
    let bed = bed();
    let pgw = Pushgateway::start().expect("pushgateway");
    let mut fwd =
        LocalForward::start(&bed.config(), "127.0.0.1", pgw.addr().port()).expect("forward");
    assert!(fwd.is_up());
    assert!(fwd.local_addr().ip().is_loopback());
    assert_ne!(fwd.local_addr().port(), pgw.addr().port());
    let base = format!("http://{}", fwd.local_addr());
    let agent = agent();
    for v in 1..=5 {
        assert_eq!(push(&agent, &base, "x", v).expect("push"), 200);
        assert_eq!(
            pushed_value(&pgw, "x").as_deref(),
            Some(v.to_string().as_str())
        );
    }
    // Several connections at once, and a larger body.
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let base = base.clone();
            std::thread::spawn(move || {
                let agent = self::agent();
                let mut body = String::new();
                for s in 0..2000 {
                    body.push_str(&format!("tunnel_bulk{{series=\"{s}\"}} {i}\n"));
                }
                agent
                    .put(&format!("{base}/metrics/job/bulk/instance/{i}"))
                    .header("Content-Type", "text/plain; version=0.0.4")
                    .send(body)
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("thread").expect("bulk push"), 200);
    }
    let text = pgw.metrics_text().expect("metrics");
    assert!(text.contains("tunnel_bulk{instance=\"3\",job=\"bulk\",series=\"1999\"} 3"));
    assert!(fwd.stats().channels_opened() >= 1);
    assert_eq!(fwd.reconnects(), 0);

    fwd.stop();
    assert!(!fwd.is_up());
    let addr: SocketAddr = fwd.local_addr();
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "listener closed"
    );
}

#[test]
fn local_forward_reconnects_after_the_sshd_is_killed_and_restarted() {
    let mut bed = bed();
    let pgw = Pushgateway::start().expect("pushgateway");
    let fwd = LocalForward::start(&bed.config(), "127.0.0.1", pgw.addr().port()).expect("forward");
    let base = format!("http://{}", fwd.local_addr());
    let agent = agent();
    assert_eq!(push(&agent, &base, "r", 1).expect("push"), 200);

    let killed = Instant::now();
    bed.sshd.kill();
    assert!(wait_until(WAIT, || !fwd.is_up()), "forward did not notice");
    let noticed = killed.elapsed();
    // While down, the local port stays bound and connections fail fast.
    let down = push(&agent, &base, "r", 2);
    assert!(
        down.is_err() || down.as_ref().is_ok_and(|s| *s != 200),
        "{down:?}"
    );

    bed.sshd.restart().expect("restart sshd");
    let restarted = Instant::now();
    assert!(
        wait_until(WAIT, || fwd.is_up() && fwd.reconnects() >= 1),
        "no reconnect: {:?}",
        fwd.stats().last_error()
    );
    eprintln!(
        "reconnect: down noticed {:?} after kill; up again {:?} after restart; {} login attempts, {} failed",
        noticed,
        restarted.elapsed(),
        fwd.stats().login_attempts(),
        fwd.stats().login_failures()
    );
    assert_eq!(
        format!("http://{}", fwd.local_addr()),
        base,
        "port must not change"
    );
    assert_eq!(
        push(&agent, &base, "r", 3).expect("push after reconnect"),
        200
    );
    assert_eq!(pushed_value(&pgw, "r").as_deref(), Some("3"));
    assert_eq!(fwd.reconnects(), 1);
}

#[test]
fn forward_to_a_closed_port_fails_that_connection_only() {
    let bed = bed();
    let pgw = Pushgateway::start().expect("pushgateway");
    let closed = free_port();
    let fwd = LocalForward::start(&bed.config(), "127.0.0.1", closed).expect("forward");
    let r = push(&agent(), &format!("http://{}", fwd.local_addr()), "c", 1);
    assert!(r.is_err(), "{r:?}");
    assert!(fwd.is_up(), "the session survives a refused channel");
    assert_eq!(fwd.stats().channels_failed(), 1);
    drop(pgw);
}

// ---------------------------------------------------------------- remote forward

#[test]
fn remote_forward_reaches_the_pushgateway_from_the_far_side() {
    let bed = bed();
    let pgw = Pushgateway::start().expect("pushgateway");
    let port = free_port();
    let mut fwd = RemoteForward::start(&bed.config(), port, pgw.addr()).expect("remote forward");
    assert!(fwd.is_up());
    assert_eq!(fwd.remote_port(), port);
    let (status, body) =
        http_get(&format!("http://127.0.0.1:{port}/-/ready")).expect("GET through -R");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        push(&agent(), &format!("http://127.0.0.1:{port}"), "far", 7).expect("push"),
        200
    );
    assert_eq!(pushed_value(&pgw, "far").as_deref(), Some("7"));
    assert!(fwd.stats().channels_opened() >= 2);

    fwd.stop();
    assert!(
        wait_until(WAIT, || TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_millis(200)
        )
        .is_err()),
        "server still listens after stop"
    );
}

#[test]
fn remote_forward_with_port_zero_reports_the_bound_port_and_survives_a_restart() {
    let mut bed = bed();
    let pgw = Pushgateway::start().expect("pushgateway");
    let fwd = RemoteForward::start(&bed.config(), 0, pgw.addr()).expect("remote forward");
    let port = fwd.remote_port();
    assert_ne!(port, 0);
    let ready = |p: u16| {
        matches!(
            http_get(&format!("http://127.0.0.1:{p}/-/ready")),
            Ok((200, _))
        )
    };
    assert!(ready(port));
    bed.sshd.kill();
    assert!(wait_until(WAIT, || !fwd.is_up()));
    bed.sshd.restart().expect("restart");
    assert!(wait_until(WAIT, || fwd.is_up() && fwd.reconnects() >= 1));
    assert_eq!(fwd.remote_port(), port, "same port after reconnect");
    assert!(wait_until(WAIT, || ready(port)));
}

#[test]
fn stopping_a_background_forward_while_it_backs_off_is_prompt() {
    let bed = bed();
    let mut config = bed.config();
    config.port = free_port(); // nothing listens there
    let options = TunnelOptions {
        wait_for_first_login: false,
        ..TunnelOptions::default()
    };
    let mut fwd = LocalForward::start_with(&config, "127.0.0.1", 9, options).expect("start");
    assert!(wait_until(WAIT, || fwd.stats().login_failures() >= 2));
    assert!(matches!(
        fwd.stats().last_error().as_deref(),
        Some(SshError::Connect { .. })
    ));
    assert!(fwd.stats().last_error().is_some_and(|e| e.is_retryable()));
    // Connections while down are closed at once, not left hanging.
    let mut s = TcpStream::connect(fwd.local_addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 1];
    // Closed: EOF or a reset. A read that times out (WouldBlock/TimedOut)
    // means the connection was left hanging, which is the failure.
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            ) => {}
        other => panic!("connection while down was not closed: {other:?}"),
    }
    assert!(wait_until(WAIT, || fwd.stats().refused_while_down() >= 1));
    fwd.stop();
    assert!(!fwd.is_up());
}
