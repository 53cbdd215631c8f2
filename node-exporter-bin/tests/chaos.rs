//! Chaos: nothing taken is lost (DESIGN.md §5, §6).
//!
//! The exporter samples 8 simulated GPUs at 5 Hz and delivers through its SSH
//! tunnels to both sinks: the Pushgateway (latest state) and Prometheus's
//! remote-write receiver (history, out-of-order window 30 min). Over about
//! two minutes: Prometheus is stopped for 30 s; sshd is killed and restarted;
//! the exporter is killed with SIGKILL and restarted on the same buffer; the
//! Pushgateway is restarted. At the end every series in Prometheus holds
//! exactly one sample per committed tick, at the tick's own timestamp, and
//! the Pushgateway holds the newest batch.

mod support;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aif_testbed::sshd::{KeyFormat, KeyKind, Sshd};
use aif_testbed::{
    Prometheus, Pushgateway, free_port, metric_value, raw_samples, raw_series, wait_until,
};
use gpu_metrics::buffer::{Buffer, BufferConfig};
use gpu_metrics::source::{GpuSource, SimulatedSource};
use support::Exporter;

const SEED: u64 = 7;

struct Bed {
    prom: Prometheus,
    pgw: Pushgateway,
    sshd: Sshd,
    key: std::path::PathBuf,
    known_hosts: std::path::PathBuf,
    tmp: tempfile::TempDir,
}

impl Bed {
    fn exporter(&self, run: &str) -> Exporter {
        let dir = self.tmp.path().join(run);
        std::fs::create_dir_all(&dir).expect("run dir");
        let listen = format!("127.0.0.1:{}", free_port());
        let port = self.sshd.port().to_string();
        let user = self.sshd.user();
        let buffer = self.tmp.path().join("buffer.db");
        let pgw = self.pgw.url();
        let rw = self.prom.remote_write_url();
        let seed = SEED.to_string();
        let args = [
            "--source",
            "simulated",
            "--gpus",
            "8",
            "--seed",
            &seed,
            "--interval",
            "200ms",
            "--instance",
            "node-chaos",
            "--pushgateway",
            &pgw,
            "--remote-write",
            &rw,
            "--push-retry-initial",
            "100ms",
            "--push-retry-max",
            "2s",
            "--push-timeout",
            "3s",
            "--ssh-host",
            "127.0.0.1",
            "--ssh-port",
            &port,
            "--ssh-user",
            &user,
            "--ssh-identity",
            self.key.to_str().expect("utf8"),
            "--ssh-known-hosts",
            self.known_hosts.to_str().expect("utf8"),
            "--listen",
            &listen,
            "--buffer",
            buffer.to_str().expect("utf8"),
        ];
        Exporter::start(&dir, &args)
    }
}

fn scraped(exp: &Exporter, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metric_value(&exp.scrape(), name, labels)
}

fn pending(exp: &Exporter, sink: &str) -> Option<f64> {
    scraped(
        exp,
        "aif_exporter_buffer_pending_batches",
        &[("sink", sink)],
    )
}

/// Waits until the remote-write sink has nothing pending (the gauge refreshes
/// every 5 s) and has sent something since `sent_before`.
fn caught_up(exp: &Exporter, what: &str, sent_before: f64) {
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(90), || {
            pending(exp, "remote_write") == Some(0.0)
                && scraped(
                    exp,
                    "aif_exporter_samples_sent_total",
                    &[("sink", "remote_write")],
                )
                .is_some_and(|v| v > sent_before)
        }),
        "remote-write did not catch up after {what}:\n{}\n{}",
        exp.scrape(),
        exp.log_text()
    );
    eprintln!(
        "chaos: caught up after {what} in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}

fn sent(exp: &Exporter) -> f64 {
    scraped(
        exp,
        "aif_exporter_samples_sent_total",
        &[("sink", "remote_write")],
    )
    .unwrap_or(0.0)
}

/// The sample count of every `aif_gpu_*` series: `(labels, count)`.
fn counts(prom: &Prometheus) -> Vec<(String, u64)> {
    raw_series(
        &prom.url(),
        r#"{__name__=~"aif_gpu_.+",job="aif_gpu",instance="node-chaos"}"#,
        "1h",
    )
    .expect("query")
    .into_iter()
    .map(|(labels, samples)| (labels, samples.len() as u64))
    .collect()
}

fn committed(buffer: &Path) -> i64 {
    let buf = Buffer::open(BufferConfig::new(buffer, ["pushgateway", "remote_write"]))
        .expect("reopen the buffer");
    buf.head().get()
}

#[test]
fn outages_kills_and_restarts_lose_no_committed_tick() {
    let started = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("aif-chaos-")
        .tempdir()
        .expect("tmp");
    let sshd = Sshd::start().unwrap_or_else(|e| panic!("{e}"));
    let key = sshd
        .client_key("client_ed25519", KeyKind::Ed25519, KeyFormat::OpenSsh, None)
        .unwrap_or_else(|e| panic!("{e}"))
        .private;
    let known_hosts = tmp.path().join("known_hosts");
    sshd.write_known_hosts(&known_hosts)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut bed = Bed {
        prom: Prometheus::start("").unwrap_or_else(|e| panic!("{e}")),
        pgw: Pushgateway::start().unwrap_or_else(|e| panic!("{e}")),
        sshd,
        key,
        known_hosts,
        tmp,
    };

    let mut exp = bed.exporter("run1");
    caught_up(&exp, "start", 0.0);

    // 1. Prometheus down for 30 s: at 5 Hz, 150 batches pile up.
    bed.prom.stop();
    let down = Instant::now();
    assert!(
        wait_until(Duration::from_secs(60), || pending(&exp, "remote_write")
            .is_some_and(|p| p >= 150.0)),
        "no backlog while Prometheus is down:\n{}",
        exp.scrape()
    );
    bed.prom.restart().unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "chaos: Prometheus was down {:.1}s",
        down.elapsed().as_secs_f64()
    );
    caught_up(&exp, "the Prometheus outage", sent(&exp));

    // 2. The gateway goes away and comes back.
    bed.sshd.kill();
    assert!(
        wait_until(Duration::from_secs(30), || scraped(
            &exp,
            "aif_exporter_tunnel_up",
            &[]
        ) == Some(0.0)
            && pending(&exp, "remote_write").is_some_and(|p| p >= 10.0)),
        "tunnel loss not seen:\n{}",
        exp.scrape()
    );
    bed.sshd.restart().unwrap_or_else(|e| panic!("{e}"));
    caught_up(&exp, "the sshd restart", sent(&exp));

    // 3. SIGKILL, then a new process on the same buffer.
    exp.kill();
    let mut exp = bed.exporter("run2");
    caught_up(&exp, "the exporter's SIGKILL", 0.0);

    // 4. The Pushgateway restarts (it persists to its file). The persisted
    // group is there again at once, so only a push time later than the
    // moment the old process was gone shows the exporter pushing again.
    bed.pgw.stop();
    let restarted_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64();
    bed.pgw.restart().unwrap_or_else(|e| panic!("{e}"));
    let group = [("job", "aif_gpu"), ("instance", "node-chaos")];
    let persisted = bed
        .pgw
        .metrics_text()
        .ok()
        .and_then(|t| metric_value(&t, "push_time_seconds", &group));
    let mut pushed_at = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            pushed_at = bed
                .pgw
                .metrics_text()
                .ok()
                .and_then(|t| metric_value(&t, "push_time_seconds", &group));
            pushed_at.is_some_and(|t| t > restarted_at)
        }),
        "no push after the Pushgateway restart at {restarted_at} \
         (push_time_seconds {pushed_at:?}, persisted {persisted:?}):\n{}",
        exp.log_text()
    );
    eprintln!(
        "chaos: Pushgateway restarted at {restarted_at:.3}; persisted push time \
         {persisted:?}, first push after it at {pushed_at:?}"
    );
    let exposed = scraped(&exp, "aif_exporter_buffer_committed_batches_total", &[]);
    let lateness = scraped(&exp, "aif_exporter_tick_lateness_seconds", &[]);

    // A clean stop flushes both sinks.
    assert_eq!(exp.terminate().code(), Some(0), "{}", exp.log_text());
    let ticks = committed(&bed.tmp.path().join("buffer.db"));
    assert!(ticks >= 200, "only {ticks} ticks committed");

    // Every series: one sample per committed tick.
    let mut per_series = Vec::new();
    let ok = wait_until(Duration::from_secs(30), || {
        per_series = counts(&bed.prom);
        per_series.len() >= 8 * 15 && per_series.iter().all(|(_, n)| *n == ticks as u64)
    });
    let (min, max) = per_series
        .iter()
        .fold((u64::MAX, 0), |(lo, hi), (_, n)| (lo.min(*n), hi.max(*n)));
    eprintln!(
        "chaos: {ticks} ticks committed (exporter exposed {exposed:?} before its last ticks); \
         {} series in Prometheus, samples per series min {min} max {max}; \
         tick lateness (last 5 s window) {lateness:?} s; test took {:.0}s",
        per_series.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        ok,
        "series whose sample count is not {ticks}: {:?}",
        per_series
            .iter()
            .filter(|(_, n)| *n != ticks as u64)
            .take(5)
            .collect::<Vec<_>>()
    );

    // The timestamps are the ticks': power is a pure function of the tick
    // time in the simulation, so each value must be the one for its time.
    let power = raw_samples(
        &bed.prom.url(),
        r#"aif_gpu_power_watts{gpu="3",instance="node-chaos"}"#,
        "1h",
    )
    .expect("query");
    assert_eq!(power.len() as i64, ticks);
    assert!(
        power.windows(2).all(|w| w[0].0 < w[1].0),
        "duplicate or unordered timestamps"
    );
    let mut sim = SimulatedSource::new(8, SEED).expect("sim");
    for (ts, value) in &power {
        let want = f64::from(
            sim.sample(*ts).expect("sample")[3]
                .power_usage_mw
                .expect("power"),
        ) / 1000.0;
        assert!(
            (value - want).abs() < 1e-9,
            "sample at {ts} is {value} W, the tick at that time read {want} W"
        );
    }

    // The Pushgateway holds the newest state: the last batch's reading.
    let newest = power.last().expect("samples").1;
    let text = bed.pgw.metrics_text().expect("pushgateway");
    assert_eq!(
        metric_value(
            &text,
            "aif_gpu_power_watts",
            &[("instance", "node-chaos"), ("gpu", "3")]
        ),
        Some(newest),
        "{text}"
    );
}
