//! The browser path of the Start-benchmark form in headless Chromium (driven
//! through chromedriver's WebDriver HTTP API): a page served from one origin runs
//! the built panel's `getPayload` and its `fetch` exactly as Business Forms does,
//! against the real `aif-bench-api` on another origin. With the page's origin in
//! the API's `--cors-origin` the run is created with `duration_seconds: 300`;
//! from an origin not allowed the browser blocks the call and the page shows the
//! error. Screenshots of both states: `target/dashboards-artifacts/`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::Duration;

use aif_dashboards::{crate_dir, repo_dir};
use aif_testbed::{ServerProcess, free_port, require_binary, wait_until};
use base64::Engine;
use serde_json::{Value, json};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// `(status, JSON body)` of one request.
fn call(method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("Content-Type", "application/json")
        .body(body.map(|b| b.to_string()).unwrap_or_default())
        .expect("request");
    let mut resp = agent()
        .run(req)
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Serves the page, its script and the built dashboard on 127.0.0.1 (one thread
/// a connection, a request line and headers of at most 16 KiB, GET only).
fn serve_page() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind page server");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || answer(stream));
        }
    });
    port
}

fn answer(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new((&stream).take(16 * 1024));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(n) if n > 2 => continue,
            _ => break,
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or("/");
    let (file, kind) = match path {
        "/" => (crate_dir().join("tests/browser/page.html"), "text/html"),
        "/page.js" => (crate_dir().join("tests/browser/page.js"), "text/javascript"),
        "/administration.json" => (
            crate_dir().join("dist/administration.json"),
            "application/json",
        ),
        _ => (PathBuf::new(), ""),
    };
    let (status, body) = match std::fs::read(&file) {
        Ok(b) if !kind.is_empty() => ("200 OK", b),
        _ => ("404 Not Found", b"not found".to_vec()),
    };
    let kind = if kind.is_empty() { "text/plain" } else { kind };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

/// One WebDriver session on headless Chromium.
struct Browser {
    base: String,
    session: String,
    _driver: ServerProcess,
}

impl Browser {
    fn start() -> Self {
        let chromium = require_binary("chromium", "chromium").expect("Chromium");
        let driver_bin = require_binary("chromedriver", "chromium-driver").expect("chromedriver");
        let port = free_port();
        let mut cmd = Command::new(driver_bin);
        cmd.arg(format!("--port={port}"));
        let dir = tempfile::tempdir().expect("tempdir");
        let mut driver =
            ServerProcess::spawn("chromedriver", cmd, dir).expect("spawn chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        driver
            .wait_ready(Duration::from_secs(30), || {
                aif_testbed::http_get(&format!("{base}/status")).is_ok_and(|(s, _)| s == 200)
            })
            .expect("chromedriver ready");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1000,700"]
            }
        }}});
        let (status, v) = call("POST", &format!("{base}/session"), Some(&caps));
        assert_eq!(status, 200, "new WebDriver session: {v}");
        let session = v["value"]["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        Browser {
            base,
            session,
            _driver: driver,
        }
    }

    fn session_url(&self) -> String {
        format!("{}/session/{}", self.base, self.session)
    }

    fn url(&self, rest: &str) -> String {
        format!("{}/{rest}", self.session_url())
    }

    fn open(&self, url: &str) {
        let (s, v) = call("POST", &self.url("url"), Some(&json!({ "url": url })));
        assert_eq!(s, 200, "navigate to {url}: {v}");
    }

    fn script(&self, js: &str) -> Value {
        let (s, v) = call(
            "POST",
            &self.url("execute/sync"),
            Some(&json!({"script": js, "args": []})),
        );
        assert_eq!(s, 200, "script: {v}");
        v["value"].clone()
    }

    /// Waits for the page to finish; `(kind, text)` of what it shows.
    fn outcome(&self) -> (String, String) {
        let mut last = Value::Null;
        let done = wait_until(Duration::from_secs(30), || {
            last = self.script(
                "const s = document.getElementById('status'); return [s.dataset.done, s.textContent];",
            );
            last[0].as_str().is_some_and(|d| !d.is_empty())
        });
        assert!(done, "the page never finished: {last}");
        (
            last[0].as_str().unwrap_or("").to_string(),
            last[1].as_str().unwrap_or("").to_string(),
        )
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let (s, v) = call("GET", &self.url("screenshot"), None);
        assert_eq!(s, 200, "screenshot: {v}");
        let png = base64::engine::general_purpose::STANDARD
            .decode(v["value"].as_str().expect("base64 png"))
            .expect("decode screenshot");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let dir = repo_dir().join("target/dashboards-artifacts");
        std::fs::create_dir_all(&dir).expect("artifact dir");
        let path = dir.join(name);
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session: chromedriver closes Chromium.
        let _ = agent().delete(&self.session_url()).call();
    }
}

/// Deletes the demo service when the test ends, passed or failed (the local
/// backend's services outlive the API process by design).
struct ServiceGuard(String);

impl Drop for ServiceGuard {
    fn drop(&mut self) {
        let _ = agent().delete(&self.0).call();
    }
}

#[test]
#[ignore = "needs bench-api's preflight fix: OPTIONS answers carry Access-Control-Allow-Origin twice, so Chromium refuses every allowed cross-origin POST (see the branch's report)"]
fn start_benchmark_through_the_browser_with_and_without_cors() {
    let page_port = serve_page();
    let allowed_origin = format!("http://127.0.0.1:{page_port}");
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(common::binary("aif-bench-api", "aif-bench-api"));
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{api_port}"))
        .arg("--db")
        .arg(dir.path().join("api.sqlite"))
        .arg("--log-dir")
        .arg(dir.path().join("logs"))
        .arg("--recipes")
        .arg(repo_dir().join("bench-api/recipes"))
        .arg("--backend")
        .arg("local")
        .arg("--cors-origin")
        .arg(&allowed_origin);
    let mut api_proc = ServerProcess::spawn("aif-bench-api", cmd, dir).expect("spawn API");
    api_proc
        .wait_ready(Duration::from_secs(30), || {
            aif_testbed::http_get(&format!("{api}/health")).is_ok_and(|(s, _)| s == 200)
        })
        .expect("API ready");

    // A running service to load (Python's http.server).
    let (s, svc) = call(
        "POST",
        &format!("{api}/api/v1/services"),
        Some(&json!({"recipe": "demo-http", "params": {"port": free_port()}})),
    );
    assert_eq!(s, 201, "start demo service: {svc}");
    let service_id = svc["id"].as_str().expect("service id").to_string();
    let _service = ServiceGuard(format!("{api}/api/v1/services/{service_id}"));
    let running = wait_until(Duration::from_secs(60), || {
        call("GET", &format!("{api}/api/v1/services/{service_id}"), None).1["status"] == "running"
    });
    assert!(
        running,
        "demo service never ran:\n{}",
        api_proc.log_tail(3000)
    );

    let values = json!({
        "service_id": service_id, "duration_minutes": 5, "mode": "closed_loop",
        "concurrency": 2, "workload": "http"
    })
    .to_string();
    let query = format!(
        "?api={}&values={}",
        aif_testbed::url_encode(&api),
        aif_testbed::url_encode(&values)
    );
    let browser = Browser::start();

    // 1. Origin allowed: the run is created with duration_seconds 300.
    browser.open(&format!("{allowed_origin}/{query}"));
    let (kind, text) = browser.outcome();
    let shot = browser.screenshot("browser-cors-allowed.png");
    assert_eq!(
        kind,
        "success",
        "page shows: {text} (screenshot {})",
        shot.display()
    );
    let (_, runs) = call("GET", &format!("{api}/api/v1/benchmarks"), None);
    let runs = runs.as_array().cloned().unwrap_or_default();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["duration_seconds"], 300, "{}", runs[0]);
    assert_eq!(runs[0]["service_id"], service_id.as_str());
    let run_id = runs[0]["id"].as_str().unwrap_or("").to_string();
    assert!(
        text.contains(&run_id),
        "the page names the run {run_id}: {text}"
    );

    // 2. Another origin (localhost is not 127.0.0.1): the browser blocks the call.
    browser.open(&format!("http://localhost:{page_port}/{query}"));
    let (kind, text) = browser.outcome();
    let shot = browser.screenshot("browser-cors-blocked.png");
    assert_eq!(
        kind,
        "error",
        "page shows: {text} (screenshot {})",
        shot.display()
    );
    assert!(
        text.contains("Failed to fetch"),
        "the fetch error is shown: {text}"
    );
    let (_, after) = call("GET", &format!("{api}/api/v1/benchmarks"), None);
    assert_eq!(
        after.as_array().map(Vec::len),
        Some(1),
        "a blocked call created no run: {after}"
    );

    let (s, v) = call(
        "POST",
        &format!("{api}/api/v1/benchmarks/{run_id}/cancel"),
        Some(&json!({})),
    );
    assert!(s < 300, "cancel {run_id}: {s} {v}");
}
