//! The exporter against a real Pushgateway: pushes land, outages are survived,
//! rejections are not retried forever, basic auth, the buffer cap, bad
//! configuration (DESIGN.md §5, §6).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use aif_testbed::{Pushgateway, free_port, metric_value, wait_until};
use gpu_metrics::buffer::{Buffer, BufferConfig};
use support::{Exporter, run_to_end};

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("aif-exp-")
        .tempdir()
        .expect("tempdir")
}

fn pgw_value(pgw: &Pushgateway, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    pgw.metrics_text()
        .ok()
        .and_then(|t| metric_value(&t, name, labels))
}

#[test]
fn pushes_land_and_sigterm_flushes_and_exits_0() {
    let pgw = Pushgateway::start().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp();
    let buffer = dir.path().join("buf.db");
    let mut exp = Exporter::start(
        dir.path(),
        &[
            "--source",
            "simulated",
            "--gpus",
            "8",
            "--interval",
            "100ms",
            "--buffer",
            buffer.to_str().expect("utf8"),
            "--pushgateway",
            &pgw.url(),
            "--instance",
            "node-a",
            "--label",
            "run_id=r1",
        ],
    );
    let landed = wait_until(Duration::from_secs(15), || {
        (0..8).all(|g| {
            let gpu = g.to_string();
            pgw_value(
                &pgw,
                "aif_gpu_up",
                &[
                    ("instance", "node-a"),
                    ("job", "aif_gpu"),
                    ("run_id", "r1"),
                    ("gpu", &gpu),
                ],
            ) == Some(1.0)
        })
    });
    assert!(
        landed,
        "8 GPUs never landed:\n{}",
        pgw.metrics_text().unwrap_or_default()
    );
    let text = pgw.metrics_text().expect("metrics");
    assert!(
        metric_value(
            &text,
            "aif_gpu_power_watts",
            &[("instance", "node-a"), ("gpu", "7")]
        )
        .is_some()
    );
    // Self-metrics travel with the batch (a push reports the pushes before it).
    assert!(wait_until(Duration::from_secs(15), || {
        pgw_value(
            &pgw,
            "aif_exporter_pushes_total",
            &[("instance", "node-a"), ("result", "ok")],
        )
        .is_some_and(|v| v >= 1.0)
    }));
    let status = exp.terminate();
    assert_eq!(status.code(), Some(0), "{}", exp.log_text());
    // Flushed: nothing left unsent for the sink.
    let buf = Buffer::open(BufferConfig::new(&buffer, ["pushgateway"])).expect("reopen");
    let stats = buf.stats().expect("stats");
    assert_eq!(
        stats.sinks[0].pending.batches,
        0,
        "{stats:?}\n{}",
        exp.log_text()
    );
}

#[test]
fn delete_on_exit_removes_the_group() {
    let pgw = Pushgateway::start().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp();
    let mut exp = Exporter::start(
        dir.path(),
        &[
            "--source",
            "simulated",
            "--gpus",
            "2",
            "--interval",
            "100ms",
            "--buffer",
            dir.path().join("b.db").to_str().expect("utf8"),
            "--pushgateway",
            &pgw.url(),
            "--instance",
            "node-del",
            "--delete-on-exit",
        ],
    );
    assert!(wait_until(Duration::from_secs(15), || {
        pgw_value(&pgw, "aif_gpu_up", &[("instance", "node-del")]).is_some()
    }));
    assert_eq!(exp.terminate().code(), Some(0));
    let text = pgw.metrics_text().expect("metrics");
    assert!(
        !text.contains("instance=\"node-del\""),
        "group not deleted:\n{text}"
    );
    assert!(
        exp.log_text().contains("pushgateway group deleted"),
        "{}",
        exp.log_text()
    );
}

#[test]
fn outage_then_restart_delivers_the_newest_state_and_counts_superseded() {
    let mut pgw = Pushgateway::start().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp();
    let listen = format!("127.0.0.1:{}", free_port());
    let interval = Duration::from_millis(100);
    let retry_max = Duration::from_secs(2);
    let exp = Exporter::start(
        dir.path(),
        &[
            "--source",
            "simulated",
            "--gpus",
            "8",
            "--interval",
            "100ms",
            "--buffer",
            dir.path().join("b.db").to_str().expect("utf8"),
            "--pushgateway",
            &pgw.url(),
            "--instance",
            "node-o",
            "--push-retry-initial",
            "200ms",
            "--push-retry-max",
            "2s",
            "--push-timeout",
            "2s",
            "--listen",
            &listen,
        ],
    );
    let samples_pushed = |pgw: &Pushgateway| {
        pgw_value(pgw, "aif_exporter_samples_total", &[("instance", "node-o")]).unwrap_or(-1.0)
    };
    assert!(wait_until(Duration::from_secs(15), || samples_pushed(&pgw) >= 1.0));

    pgw.kill();
    // The exporter notices: failed pushes are counted, sampling goes on.
    assert!(
        wait_until(Duration::from_secs(15), || {
            metric_value(
                &exp.scrape(),
                "aif_exporter_pushes_total",
                &[("result", "unreachable")],
            )
            .is_some_and(|v| v >= 2.0)
        }),
        "no failed push counted:\n{}",
        exp.scrape()
    );
    // Batches are kept while the sink is down.
    assert!(
        wait_until(Duration::from_secs(15), || {
            metric_value(
                &exp.scrape(),
                "aif_exporter_buffer_pending_batches",
                &[("sink", "pushgateway")],
            )
            .is_some_and(|v| v >= 5.0)
        }),
        "batches not kept during the outage:\n{}",
        exp.scrape()
    );
    let samples_before_restart =
        metric_value(&exp.scrape(), "aif_exporter_samples_total", &[]).expect("samples");

    pgw.restart().unwrap_or_else(|e| panic!("{e}"));
    let restarted = Instant::now();
    let fresh = wait_until(Duration::from_secs(20), || {
        samples_pushed(&pgw) >= samples_before_restart
    });
    let took = restarted.elapsed();
    assert!(fresh, "newest state never arrived:\n{}", exp.log_text());
    // Not a timed assertion on speed: the contract is one interval plus the
    // backoff cap, with generous room for a loaded CI machine.
    assert!(
        took <= interval + retry_max + Duration::from_secs(8),
        "took {took:?} to deliver after restart"
    );
    let superseded = |t: &str| {
        metric_value(
            t,
            "aif_exporter_superseded_batches_total",
            &[("sink", "pushgateway")],
        )
    };
    assert!(
        wait_until(Duration::from_secs(10), || superseded(&exp.scrape())
            .is_some_and(|v| v >= 1.0)),
        "superseded batches not counted:\n{}",
        exp.scrape()
    );
}

#[test]
fn a_rejected_payload_is_dropped_not_retried_forever() {
    let pgw = Pushgateway::start().unwrap_or_else(|e| panic!("{e}"));
    // Another group already has aif_gpu_up as a counter: the Pushgateway refuses
    // our gauge of the same name with 400 (inconsistent metric types).
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let st = agent
        .put(&format!("{}/metrics/job/other/instance/x", pgw.url()))
        .header("Content-Type", "text/plain; version=0.0.4")
        .send("# TYPE aif_gpu_up counter\naif_gpu_up 1\n")
        .expect("put")
        .status();
    assert_eq!(st.as_u16(), 200);
    let dir = tmp();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut exp = Exporter::start(
        dir.path(),
        &[
            "--source",
            "simulated",
            "--gpus",
            "2",
            "--interval",
            "100ms",
            "--buffer",
            dir.path().join("b.db").to_str().expect("utf8"),
            "--pushgateway",
            &pgw.url(),
            "--instance",
            "node-r",
            "--listen",
            &listen,
        ],
    );
    assert!(
        wait_until(Duration::from_secs(15), || {
            metric_value(
                &exp.scrape(),
                "aif_exporter_dropped_batches_total",
                &[("reason", "rejected")],
            )
            .is_some_and(|v| v >= 5.0)
        }),
        "{}",
        exp.log_text()
    );
    let status = exp.terminate();
    assert_eq!(status.code(), Some(0));
    let log = exp.log_text();
    assert!(
        log.contains("pushgateway refused 1 batch(es)") && log.contains("400"),
        "{log}"
    );
    // Each batch was tried once: rejected pushes never exceed batches sampled,
    // and nothing piles up for the sink.
    let buf =
        Buffer::open(BufferConfig::new(dir.path().join("b.db"), ["pushgateway"])).expect("open");
    let stats = buf.stats().expect("stats");
    let appended = buf.head().get();
    // Each rejected batch was tried exactly once: the batch timestamps in the
    // rejection lines are all different and in order (a batch retried after
    // its 400 would show up twice). Lines read `… rejected batch ID (ts=T) …`
    // or `… refused N batch(es) (T..=T ms) …`.
    let digits = |s: &str| -> i64 {
        s.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or_else(|_| panic!("no timestamp at {s:?}"))
    };
    let rejected: Vec<i64> = log
        .lines()
        .filter(|l| l.contains("pushgateway rejected batch") || l.contains("pushgateway refused "))
        .map(
            |l| match (l.split_once("(ts="), l.split_once(" batch(es) (")) {
                (Some((_, rest)), _) | (None, Some((_, rest))) => digits(rest),
                (None, None) => panic!("no batch timestamp in {l}"),
            },
        )
        .collect();
    assert!(rejected.len() >= 5, "{log}");
    assert!(
        rejected.len() as i64 <= appended,
        "{} rejections for {appended} batches",
        rejected.len()
    );
    assert!(
        rejected.windows(2).all(|w| w[0] < w[1]),
        "a batch was pushed again after its 400: {rejected:?}"
    );
    assert!(stats.sinks[0].pending.batches <= 1, "{stats:?}");
}

#[test]
fn basic_auth_wrong_password_is_a_configuration_error_right_password_lands() {
    let htpasswd =
        aif_testbed::require_binary("htpasswd", "apache2-utils").unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(htpasswd)
        .args(["-nbBC", "10", "aif", "s3cret-pw"])
        .output()
        .expect("htpasswd");
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).expect("utf8");
    let hash = line
        .trim()
        .split_once(':')
        .expect("user:hash")
        .1
        .to_string();
    let pgw =
        Pushgateway::start_with_web_config(Some(&format!("basic_auth_users:\n  aif: '{hash}'\n")))
            .unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-password\n").expect("write");
    let mut exp = Exporter::start(
        dir.path(),
        &[
            "--source",
            "simulated",
            "--gpus",
            "1",
            "--interval",
            "100ms",
            "--buffer",
            dir.path().join("b1.db").to_str().expect("utf8"),
            "--pushgateway",
            &pgw.url(),
            "--instance",
            "node-auth",
            "--pushgateway-user",
            "aif",
            "--pushgateway-password-file",
            wrong.to_str().expect("utf8"),
        ],
    );
    assert!(
        wait_until(Duration::from_secs(15), || exp
            .log_text()
            .contains("pushgateway configuration error")),
        "{}",
        exp.log_text()
    );
    assert_eq!(exp.terminate().code(), Some(0));
    let log = exp.log_text();
    assert!(log.contains("401"), "{log}");
    assert!(
        !log.contains("not-the-password"),
        "password leaked into the log"
    );

    let right = dir.path().join("right");
    std::fs::write(&right, "s3cret-pw\n").expect("write");
    let mut exp = Exporter::start(
        dir.path(),
        &[
            "--source",
            "simulated",
            "--gpus",
            "1",
            "--interval",
            "100ms",
            "--buffer",
            dir.path().join("b2.db").to_str().expect("utf8"),
            "--pushgateway",
            &pgw.url(),
            "--instance",
            "node-auth",
            "--pushgateway-user",
            "aif",
            "--pushgateway-password-file",
            right.to_str().expect("utf8"),
        ],
    );
    let authed_get = || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        agent
            .get(&format!("{}/metrics", pgw.url()))
            .header("Authorization", "Basic YWlmOnMzY3JldC1wdw==")
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .unwrap_or_default()
    };
    assert!(
        wait_until(Duration::from_secs(15), || metric_value(
            &authed_get(),
            "aif_gpu_up",
            &[("instance", "node-auth")]
        )
        .is_some()),
        "{}",
        exp.log_text()
    );
    assert_eq!(exp.terminate().code(), Some(0));
    assert!(
        !exp.log_text().contains("s3cret-pw"),
        "password leaked into the log"
    );
}

#[test]
fn cap_holds_with_the_sink_down_and_evictions_are_counted() {
    let dir = tmp();
    let buffer = dir.path().join("cap.db");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let listen = format!("127.0.0.1:{}", free_port());
    let mut exp = Exporter::start(
        dir.path(),
        &[
            "--source",
            "simulated",
            "--gpus",
            "64",
            "--interval",
            "10ms",
            "--buffer",
            buffer.to_str().expect("utf8"),
            "--buffer-max-bytes",
            "1MiB",
            "--pushgateway",
            &dead,
            "--listen",
            &listen,
        ],
    );
    assert!(
        wait_until(Duration::from_secs(60), || {
            metric_value(
                &exp.scrape(),
                "aif_exporter_evicted_batches_total",
                &[("reason", "cap")],
            )
            .is_some_and(|v| v >= 20.0)
        }),
        "no eviction:\n{}",
        exp.scrape()
    );
    assert_eq!(exp.terminate().code(), Some(0));
    let files: u64 = ["", "-wal", "-shm"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", buffer.display())).ok())
        .map(|m| m.len())
        .sum();
    let cap = 1u64 << 20;
    assert!(
        files <= cap + gpu_metrics::buffer::CAP_SLACK_BYTES,
        "file set {files} B exceeds cap {cap} + slack {}",
        gpu_metrics::buffer::CAP_SLACK_BYTES
    );
    let buf = Buffer::open(BufferConfig::new(&buffer, ["pushgateway"])).expect("open");
    let stats = buf.stats().expect("stats");
    let appended = stats.last_id.expect("some batches").get() as u64;
    assert!(stats.evicted.cap > 0);
    assert_eq!(stats.evicted.cap, appended - stats.batches, "{stats:?}");
}

#[test]
fn bad_configuration_exits_2_naming_the_key_and_starts_nothing() {
    let dir = tmp();
    let buffer = dir.path().join("never.db");
    let b = buffer.to_str().expect("utf8");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "source = \"simulated\"\npushgatway = \"http://x\"\n").expect("write");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--config", cfg.to_str().expect("utf8")], "pushgatway"),
        (vec!["--interval", "fast"], "interval"),
        (vec!["--interval", "10"], "interval"),
        (vec!["--buffer-max-bytes", "12 parsecs"], "buffer_max_bytes"),
        (vec!["--pushgateway", "127.0.0.1:9091"], "pushgateway"),
        (vec!["--durability", "eventually"], "durability"),
        (
            vec!["--push-retry-max", "1ms", "--push-retry-initial", "1s"],
            "push_retry_max",
        ),
    ];
    for (extra, key) in cases {
        let mut args = vec!["--source", "simulated", "--buffer", b];
        args.extend(extra.iter());
        let (code, err) = run_to_end(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(key), "{args:?} must name {key}: {err}");
        assert!(!buffer.exists(), "{args:?} created the buffer");
    }
}
