//! What a client can make the API's HTTP server hold (vendor/tiny_http's
//! reactor): idle and slow-header connections cost no thread, are closed
//! after their timeouts, do not slow other clients; oversized heads get 431;
//! at `max_connections` the connection waiting longest makes room. And the
//! API starts from any directory, with its built-in recipes.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aif_testbed::conn_probe::{
    Closed, open_idle, open_slow_headers, raise_nofile, rss_kib, threads, wait_closed,
};
use aif_testbed::metric_value;
use aif_testbed::{free_port, wait_until};
use common::{Api, shipped_recipes};

const IDLE: usize = 1000;
const SLOW: usize = 100;
const WORKERS: usize = 4;

/// GET `path` on a fresh connection; the answer must come within `limit`.
fn get_within(addr: SocketAddr, path: &str, limit: Duration) -> (u16, Duration) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(limit))
        .http_status_as_error(false)
        .build()
        .into();
    let t = Instant::now();
    let resp = agent
        .get(&format!("http://{addr}{path}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {path} did not answer within {limit:?}: {e}"));
    (resp.status().as_u16(), t.elapsed())
}

/// `aif_api_http_connections_open`, asked on a connection the server closes
/// after its answer (so it never waits in the server afterwards).
fn open_now(addr: SocketAddr) -> f64 {
    let mut s = TcpStream::connect(addr).expect("connect");
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    metric_value(&text, "aif_api_http_connections_open", &[]).unwrap_or(-1.0)
}

#[test]
fn idle_and_slow_connections_hold_no_thread_and_are_closed_in_time() {
    assert!(
        raise_nofile(4096) >= 2 * (IDLE + SLOW) as u64 + 200,
        "RLIMIT_NOFILE too low"
    );
    let timeout_ms = 2000;
    let api = Api::start(
        &shipped_recipes(),
        &format!("idle_timeout_ms = {timeout_ms}\nheader_timeout_ms = {timeout_ms}\n"),
        &[
            "--workers",
            &WORKERS.to_string(),
            "--max-connections",
            "4096",
        ],
        &[],
    );
    let pid = api.pid();
    let addr: SocketAddr = format!("127.0.0.1:{}", api.port).parse().expect("addr");
    assert_eq!(api.get("/health").status, 200);
    let threads_before = threads(pid);
    let rss_before = rss_kib(pid);

    let opened = Instant::now();
    let mut idle = open_idle(addr, IDLE);
    let mut slow = open_slow_headers(addr, SLOW, "/health");
    // Established (in the kernel's queue) once connect returns; the server
    // accepts them right after, so their timeouts run from about here.
    let all_open = Instant::now();
    // The kernel completes a connect before the server accepts it: wait
    // until the server holds them all.
    let open = || {
        metric_value(
            &api.get("/metrics").body,
            "aif_api_http_connections_open",
            &[],
        )
    };
    assert!(
        wait_until(Duration::from_secs(10), || open()
            .is_some_and(|n| n >= (IDLE + SLOW) as f64)),
        "the server did not accept all {} connections: {:?} open",
        IDLE + SLOW,
        open()
    );
    let threads_loaded = threads(pid);
    let rss_loaded = rss_kib(pid);
    // While they are all open, other clients are answered at once.
    let mut worst = Duration::ZERO;
    for path in ["/health", "/metrics", "/health", "/metrics"] {
        let (status, took) = get_within(addr, path, Duration::from_secs(1));
        assert_eq!(status, 200, "{path}");
        worst = worst.max(took);
    }
    let loaded_for = opened.elapsed();
    assert!(
        loaded_for < Duration::from_millis(timeout_ms),
        "the probe took {loaded_for:?}, longer than the timeout it tests"
    );
    // Workers + main + monitor + reactor, whatever the connections.
    assert!(
        threads_loaded <= WORKERS + 3 && threads_loaded <= threads_before,
        "{threads_loaded} threads with {} connections open ({threads_before} before)",
        IDLE + SLOW
    );
    eprintln!(
        "probe: threads {threads_before} -> {threads_loaded}, RSS {rss_before} -> {rss_loaded} KiB, \
         worst /health|/metrics {worst:?} with {IDLE} idle + {SLOW} slow-header connections"
    );
    // Every one is closed within its timeout (plus scheduling slack): idle
    // ones silently, unfinished heads with 408.
    let deadline = all_open + Duration::from_millis(timeout_ms) + Duration::from_secs(3);
    let idle_closed = wait_closed(&mut idle, deadline);
    let slow_closed = wait_closed(&mut slow, deadline);
    let closed_at = opened.elapsed();
    let still_open = idle_closed
        .iter()
        .chain(&slow_closed)
        .filter(|c| **c == Closed::No)
        .count();
    assert_eq!(still_open, 0, "connections left open after {closed_at:?}");
    for c in &slow_closed {
        let Closed::Yes(bytes) = c else { continue };
        assert!(
            bytes.starts_with(b"HTTP/1.1 408 "),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    assert!(
        closed_at >= Duration::from_millis(timeout_ms) - Duration::from_millis(100),
        "closed after {closed_at:?}, before the {timeout_ms} ms timeout"
    );
    assert!(wait_until(Duration::from_secs(5), || threads(pid) <= threads_before));
    eprintln!("probe: all {} closed after {closed_at:?}", IDLE + SLOW);
}

#[test]
fn a_trickled_body_holds_no_worker_and_times_out() {
    let api = Api::start(
        &shipped_recipes(),
        "header_timeout_ms = 1500\n",
        &["--workers", "1"],
        &[],
    );
    let addr: SocketAddr = format!("127.0.0.1:{}", api.port).parse().expect("addr");
    // Three clients start a 5 000-byte body and stall: with one worker,
    // /health is still answered, and each stalled one gets 408.
    let started = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(b"POST /api/v1/services HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"recipe\"")
                .expect("write");
            s
        })
        .collect();
    let (status, _) = get_within(addr, "/health", Duration::from_secs(1));
    assert_eq!(status, 200);
    // A body too large for the reactor's buffer is read by the worker, but
    // it too must arrive within the header timeout: 400, then closed.
    let mut big = TcpStream::connect(addr).expect("connect");
    big.write_all(b"POST /api/v1/services HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"recipe\"")
        .expect("write");
    let closed = wait_closed(
        std::slice::from_mut(&mut big),
        Instant::now() + Duration::from_secs(5),
    );
    let Closed::Yes(bytes) = &closed[0] else {
        panic!("a stalled large body held its worker")
    };
    assert!(
        bytes.starts_with(b"HTTP/1.1 400 "),
        "{:?}",
        String::from_utf8_lossy(bytes)
    );
    let closed = wait_closed(&mut stalled, started + Duration::from_secs(6));
    for c in closed {
        let Closed::Yes(bytes) = c else {
            panic!("a stalled body was not timed out")
        };
        assert!(
            bytes.starts_with(b"HTTP/1.1 408 "),
            "{:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

#[test]
fn an_unread_body_holds_the_worker_at_most_briefly() {
    let api = Api::start(&shipped_recipes(), "", &["--workers", "1"], &[]);
    let addr: SocketAddr = format!("127.0.0.1:{}", api.port).parse().expect("addr");
    let cases: [&[u8]; 2] = [
        // Waits for `100 Continue`, gets 415: nothing to drain.
        b"POST /api/v1/services HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n",
        // Over 1 MiB, 413 at once; the client then stalls mid-body.
        b"POST /api/v1/services HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n{\"recipe\": ",
    ];
    for (i, head) in cases.iter().enumerate() {
        let started = Instant::now();
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(head).expect("write");
        // The answer comes, then the server closes: the worker is free again
        // within the drain limit (1 s), not the 30 s socket timeout.
        let closed = wait_closed(
            std::slice::from_mut(&mut s),
            started + Duration::from_secs(5),
        );
        let Closed::Yes(bytes) = &closed[0] else {
            panic!("case {i}: still open after 5 s")
        };
        let want: &[u8] = if i == 0 {
            b"HTTP/1.1 415 "
        } else {
            b"HTTP/1.1 413 "
        };
        assert!(
            bytes.starts_with(want),
            "case {i}: {:?}",
            String::from_utf8_lossy(bytes)
        );
        let (status, _) = get_within(addr, "/health", Duration::from_secs(1));
        assert_eq!(status, 200, "case {i}");
    }
}

#[test]
fn oversized_heads_get_431_and_keep_alive_serves_many_requests() {
    let api = Api::start(&shipped_recipes(), "", &[], &[]);
    let addr: SocketAddr = format!("127.0.0.1:{}", api.port).parse().expect("addr");
    let mut s = TcpStream::connect(addr).expect("connect");
    let big = "a".repeat(20 * 1024);
    s.write_all(format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .expect("write");
    let mut got = Vec::new();
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.read_to_end(&mut got);
    assert!(
        got.starts_with(b"HTTP/1.1 431 "),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    // One keep-alive connection, three requests (two pipelined, one with a body).
    let mut s = TcpStream::connect(addr).expect("connect");
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    s.write_all(
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /api/v1/recipes HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .expect("write");
    s.write_all(b"POST /api/v1/services HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        .expect("write");
    let mut all = String::new();
    s.read_to_string(&mut all).expect("read");
    let statuses: Vec<&str> = all
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &all[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "200", "400"], "{all}");
}

#[test]
fn at_max_connections_the_longest_waiting_makes_room() {
    let api = Api::start(&shipped_recipes(), "", &["--max-connections", "8"], &[]);
    let addr: SocketAddr = format!("127.0.0.1:{}", api.port).parse().expect("addr");
    // Only the probe itself is open (earlier clients' connections are gone),
    // then the first idle one; it waits longest.
    assert!(wait_until(Duration::from_secs(5), || open_now(addr) == 1.0));
    let mut first = open_idle(addr, 1);
    assert!(wait_until(Duration::from_secs(5), || open_now(addr) == 2.0));
    let mut rest = open_idle(addr, 7);
    // A ninth client is served; the first was closed for it, the others not.
    let (status, _) = get_within(addr, "/health", Duration::from_secs(5));
    assert_eq!(status, 200);
    let closed = wait_closed(&mut first, Instant::now() + Duration::from_secs(5));
    assert_eq!(closed, [Closed::Yes(Vec::new())]);
    for s in &mut rest {
        s.set_nonblocking(true).expect("nonblocking");
        let mut b = [0u8; 1];
        let r = s.read(&mut b);
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a younger connection was closed: {r:?}"
        );
    }
    let text = api.get("/metrics").body;
    assert!(
        metric_value(
            &text,
            "aif_api_http_connections_closed_total",
            &[("reason", "evicted")]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
}

#[test]
fn starts_from_any_directory_with_built_in_recipes() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let log = std::fs::File::create(cwd.path().join("api.log")).expect("log");
    let mut child = Command::new(common::binary())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .current_dir(cwd.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn");
    let url = format!("http://127.0.0.1:{port}/api/v1/recipes");
    let up = wait_until(Duration::from_secs(30), || {
        matches!(child.try_wait(), Ok(Some(_))) || aif_testbed::http_get(&url).is_ok()
    });
    let recipes = aif_testbed::http_get(&url);
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(cwd.path().join("api.log")).unwrap_or_default();
    assert!(up, "{text}");
    let (status, body) = recipes.unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).expect("json");
    let names: Vec<(&str, &str)> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or(""),
                r["source"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for name in ["demo-http", "sleep", "vllm", "ollama"] {
        assert!(names.contains(&(name, "builtin")), "{name}: {names:?}");
    }
    // The state database landed in that directory.
    assert!(cwd.path().join("aif-bench-api.sqlite").exists());
}
