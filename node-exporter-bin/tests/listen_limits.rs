//! What clients can make the exporter's `--listen` endpoint hold: with 1 000
//! idle and 100 slow-header connections open, `/metrics` still answers at once,
//! the exporter keeps its threads, its RSS grows by less than 2 MiB, and every
//! connection is closed: beyond the bound (64) at once, the rest after the
//! 10 s idle/header timeout.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aif_testbed::conn_probe::{
    Closed, open_fds, open_idle, open_slow_headers, raise_nofile, rss_kib, threads, wait_closed,
};
use aif_testbed::{free_port, wait_until};
use support::Exporter;

const IDLE: usize = 1000;
const SLOW: usize = 100;
/// `listen_limits()` in `src/run.rs`.
const TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn idle_and_slow_connections_cost_no_thread_and_little_memory() {
    assert!(
        raise_nofile(4096) >= 2 * (IDLE + SLOW) as u64 + 200,
        "RLIMIT_NOFILE too low"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let exp = Exporter::start(
        dir.path(),
        &[
            "--source",
            "simulated",
            "--gpus",
            "2",
            "--interval",
            "1s",
            "--buffer",
            dir.path().join("b.db").to_str().expect("utf8"),
            "--listen",
            &listen,
        ],
    );
    let pid = exp.pid();
    assert!(
        wait_until(Duration::from_secs(15), || exp
            .scrape()
            .contains("aif_gpu_up")),
        "{}",
        exp.log_text()
    );
    let addr: SocketAddr = listen.parse().expect("addr");
    let threads_before = threads(pid);
    let rss_before = rss_kib(pid);
    let fds_before = open_fds(pid);

    let opened = Instant::now();
    let mut idle = open_idle(addr, IDLE);
    let mut slow = open_slow_headers(addr, SLOW, "/metrics");
    // Established (in the kernel's queue) once connect returns; the server
    // accepts them right after, so their timeouts run from about here.
    let all_open = Instant::now();
    // The exporter accepted them all (holding at most its bound of 64).
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(1)))
        .build()
        .into();
    let mut worst = Duration::ZERO;
    for _ in 0..4 {
        let t = Instant::now();
        let body = agent
            .get(&format!("http://{addr}/metrics"))
            .call()
            .unwrap_or_else(|e| panic!("/metrics did not answer within 1 s: {e}"))
            .body_mut()
            .read_to_string()
            .expect("body");
        assert!(body.contains("aif_gpu_up"), "{body}");
        worst = worst.max(t.elapsed());
    }
    let threads_loaded = threads(pid);
    let rss_loaded = rss_kib(pid);
    let fds_loaded = open_fds(pid);
    eprintln!(
        "probe: threads {threads_before} -> {threads_loaded}, RSS {rss_before} -> {rss_loaded} KiB, \
         fds {fds_before} -> {fds_loaded}, worst /metrics {worst:?} with {IDLE} idle + {SLOW} slow-header connections"
    );
    assert!(
        threads_loaded <= threads_before,
        "{threads_loaded} threads ({threads_before} before)"
    );
    assert!(
        rss_loaded < rss_before + 2048,
        "RSS grew from {rss_before} KiB to {rss_loaded} KiB"
    );
    assert!(
        fds_loaded <= fds_before + 64 + 1,
        "{fds_loaded} fds held ({fds_before} before): the bound is 64 connections"
    );
    // Everything is closed by the timeout (plus slack); unfinished heads that
    // were kept until then get 408.
    let deadline = all_open + TIMEOUT + Duration::from_secs(3);
    let closed: Vec<Closed> = wait_closed(&mut idle, deadline)
        .into_iter()
        .chain(wait_closed(&mut slow, deadline))
        .collect();
    let open = closed.iter().filter(|c| **c == Closed::No).count();
    assert_eq!(open, 0, "left open after {:?}", opened.elapsed());
    let timed_out = closed
        .iter()
        .filter(|c| matches!(c, Closed::Yes(b) if b.starts_with(b"HTTP/1.1 408 ")))
        .count();
    assert!(timed_out > 0, "no slow head was answered 408");
    eprintln!(
        "probe: all closed after {:?}, {timed_out} with 408",
        opened.elapsed()
    );
}
