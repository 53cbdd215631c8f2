//! `aif-loadgen --parts`: two processes sharing one run as the N tasks of a
//! Slurm step would (same argv, `--start-at` ahead), against a stub on
//! 127.0.0.1 that counts requests and notes when the first one arrived; their
//! results merged with `merge_parts`. And the refusals of `--parts`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aif_loadgen::merge::merge_parts;
use aif_testbed::wait_until;
use serde_json::{Map, Value};

fn loadgen() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_aif-loadgen"));
    c.env("RUST_LOG", "warn").env_remove("SLURM_PROCID");
    c
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// HTTP/1.1 keep-alive stub: `200 ok` to every request; counts them and
/// keeps the wall-clock arrival (ms) of the earliest.
struct Stub {
    port: u16,
    count: Arc<AtomicU64>,
    first_ms: Arc<AtomicI64>,
}

impl Stub {
    fn start() -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let count = Arc::new(AtomicU64::new(0));
        let first_ms = Arc::new(AtomicI64::new(i64::MAX));
        let (c, f) = (Arc::clone(&count), Arc::clone(&first_ms));
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (c, f) = (Arc::clone(&c), Arc::clone(&f));
                std::thread::spawn(move || serve(conn, &c, &f));
            }
        });
        Stub {
            port,
            count,
            first_ms,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Reads one request (head and `Content-Length` body); false at the end.
fn read_request(r: &mut BufReader<TcpStream>) -> bool {
    let mut len = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).is_ok()
}

fn serve(conn: TcpStream, count: &AtomicU64, first_ms: &AtomicI64) {
    let _ = conn.set_nodelay(true);
    let Ok(mut w) = conn.try_clone() else { return };
    let mut r = BufReader::new(conn);
    while read_request(&mut r) {
        first_ms.fetch_min(now_ms(), Ordering::AcqRel);
        count.fetch_add(1, Ordering::AcqRel);
        if w.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok",
        )
        .is_err()
        {
            return;
        }
    }
}

fn read_result(path: &Path) -> Map<String, Value> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match serde_json::from_slice(&bytes).expect("result JSON") {
        Value::Object(m) => m,
        other => panic!("result is not an object: {other}"),
    }
}

fn u(m: &Map<String, Value>, k: &str) -> u64 {
    m.get(k)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{k} missing: {m:?}"))
}

#[test]
fn two_parts_share_a_run_and_merge() {
    let stub = Stub::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let pattern = dir.path().join("result-%t.json");
    let start_at = now_ms() + 2000;
    let start_s = start_at.to_string();
    let url = stub.url();
    let argv = [
        "--url",
        &url,
        "--concurrency",
        "4",
        "--duration",
        "2s",
        "--warmup",
        "500ms",
        "--parts",
        "2",
        "--start-at",
        &start_s,
        "--run-id",
        "run-parts-e2e",
        "--seed",
        "11",
        "--progress-every",
        "0s",
        "--result-file",
        pattern.to_str().expect("utf8 path"),
    ];
    let mut children: Vec<Child> = (0..2)
        .map(|i| {
            loadgen()
                .args(argv)
                .args(["--part-index", &i.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn aif-loadgen")
        })
        .collect();
    let mut codes = [None, None];
    let ended = wait_until(Duration::from_secs(60), || {
        for (c, code) in children.iter_mut().zip(codes.iter_mut()) {
            if code.is_none() {
                *code = c.try_wait().expect("try_wait").map(|s| s.code());
            }
        }
        codes.iter().all(Option::is_some)
    });
    if !ended {
        for c in &mut children {
            let _ = c.kill();
        }
        panic!("the parts did not end within 60 s");
    }
    for (i, c) in children.iter_mut().enumerate() {
        let mut stderr = String::new();
        if let Some(mut e) = c.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        assert_eq!(codes[i], Some(Some(0)), "part {i}: {stderr}");
    }

    let parts: Vec<Map<String, Value>> = (0..2)
        .map(|i| read_result(&dir.path().join(format!("result-{i}.json"))))
        .collect();
    let served = stub.count.load(Ordering::Acquire);
    let mut accounted = 0;
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p["part"]["index"], i, "{p:?}");
        assert_eq!(p["part"]["count"], 2);
        assert!(p["part"]["host"].is_string(), "{p:?}");
        assert_eq!(p["part"]["start_late_ms"], 0, "part {i} started late");
        assert_eq!(p["max_concurrency"], 2, "4 clients over 2 parts");
        assert_eq!(p["window_start_ms"], start_at + 500, "start + warm-up");
        assert_eq!(p["seed"], 11 + i as u64);
        assert!(p["recorder"].is_object());
        // Every request the part started is in one of these: measured
        // (completed or failed), warm-up, or abandoned in flight.
        accounted +=
            u(p, "completed") + u(p, "failed") + u(p, "warmup_requests") + u(p, "incomplete");
        assert_eq!((u(p, "failed"), u(p, "incomplete")), (0, 0), "{p:?}");
        assert!(
            u(p, "completed") > 0 && u(p, "warmup_requests") > 0,
            "{p:?}"
        );
    }
    eprintln!("two parts: server counted {served}, the parts accounted for {accounted}");
    assert_eq!(served, accounted);
    let first = stub.first_ms.load(Ordering::Acquire);
    assert!(
        first >= start_at,
        "a request arrived at {first}, {} ms before --start-at",
        start_at - first
    );

    // Either order.
    let merged = merge_parts(&[parts[1].clone(), parts[0].clone()]).expect("merge");
    assert_eq!(
        u(&merged, "completed"),
        u(&parts[0], "completed") + u(&parts[1], "completed")
    );
    assert_eq!(
        u(&merged, "warmup_requests"),
        u(&parts[0], "warmup_requests") + u(&parts[1], "warmup_requests")
    );
    assert_eq!(merged["max_concurrency"], 4);
    assert_eq!(merged["load_nodes"], 2);
    assert_eq!(merged["nodes"].as_array().map(Vec::len), Some(2));
    assert_eq!(merged["nodes"][1]["completed"], parts[1]["completed"]);
    assert_eq!(merged["run_id"], "run-parts-e2e");
    assert!(merged["p99_e2el_ms"].is_number(), "{merged:?}");
    assert!(!merged.contains_key("recorder") && !merged.contains_key("part"));
}

/// Exit code and stderr of a run refused before sending.
fn refused(args: &[&str]) -> (i32, String) {
    let out = loadgen().args(args).output().expect("run aif-loadgen");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn parts_refuse_what_cannot_be_shared() {
    // Nothing listens there: a refused run sends nothing anyway.
    let base = ["--url", "http://127.0.0.1:9", "--duration", "1s"];
    let with = |extra: &[&str]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        refused(&v)
    };
    let (code, err) = with(&["--parts", "2", "--part-index", "0", "--concurrency", "1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--concurrency"), "{err}");

    let (code, err) = with(&["--parts", "2", "--concurrency", "2"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--part-index") && err.contains("SLURM_PROCID"),
        "{err}"
    );

    let (code, err) = with(&[
        "--parts",
        "2",
        "--part-index",
        "1",
        "--concurrency",
        "2",
        "--result-file",
        "/tmp/aif-loadgen-parts-no-pattern.json",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--result-file") && err.contains("%t"), "{err}");
}
