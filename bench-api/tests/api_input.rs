//! Strict input, CORS, auth, OpenAPI and metrics, against the real binary
//! (local backend, the shipped `sleep` recipe as a service without endpoint).

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{Api, request, shipped_recipes};
use serde_json::{Value, json};

/// (route, body, expected status, expected `field`, error message prefix).
type BodyCase<'a> = (&'a str, Value, u16, Option<&'a str>, &'a str);

/// (headers, body, expected status, error message prefix).
type RawCase<'a> = (&'a [(&'a str, &'a str)], &'a [u8], u16, &'a str);

/// (method, path, expected status, expected `Allow`, error message prefix).
type RouteCase<'a> = (&'a str, String, u16, Option<&'a str>, &'a str);

fn assert_error_shape(what: &str, a: &common::Answer) {
    let v: Value = serde_json::from_str(&a.body)
        .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {}", a.body));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {}", a.body));
    assert!(
        obj.keys().all(|k| k == "error" || k == "field"),
        "{what}: extra keys: {}",
        a.body
    );
    assert!(
        obj["error"].as_str().is_some_and(|s| !s.is_empty()),
        "{what}: no message: {}",
        a.body
    );
    assert!(
        a.header("Content-Type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{what}: content type {:?}",
        a.header("Content-Type")
    );
}

/// Checks one refusal: status, error shape, `field` when `field` is given
/// (`Some(None)`: no field) and the message prefix (never empty). Returns
/// what did not match, empty when all did.
fn refusal_mismatch(
    what: &str,
    a: &common::Answer,
    status: u16,
    field: Option<Option<&str>>,
    prefix: &str,
) -> Option<String> {
    assert!(
        !prefix.is_empty(),
        "{what}: the case needs a message prefix"
    );
    if a.status != status {
        return Some(format!(
            "{what}: status {} (want {status}): {}",
            a.status, a.body
        ));
    }
    assert_error_shape(what, a);
    let v = a.json();
    if let Some(field) = field
        && v["field"].as_str() != field
    {
        return Some(format!("{what}: field (want {field:?}): {}", a.body));
    }
    if !v["error"].as_str().unwrap_or("").starts_with(prefix) {
        return Some(format!(
            "{what}: message (want prefix {prefix:?}): {}",
            a.body
        ));
    }
    None
}

/// Panics listing every mismatch (all cases run first, so one run shows all).
fn assert_no_mismatch(mismatches: &[String]) {
    assert!(
        mismatches.is_empty(),
        "{} case(s) failed:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// POSTs each case's body as JSON and checks the refusal.
fn assert_body_refusals(api: &Api, cases: &[BodyCase<'_>]) {
    let mismatches: Vec<String> = cases
        .iter()
        .filter_map(|(route, body, status, field, prefix)| {
            let what = format!("POST {route} {body}");
            refusal_mismatch(&what, &api.post(route, body), *status, Some(*field), prefix)
        })
        .collect();
    assert_no_mismatch(&mismatches);
}

/// No handler panicked while the test ran, and the server still answers.
fn assert_still_healthy(api: &Api) {
    assert_eq!(api.get("/health").status, 200);
    assert!(
        !api.log().contains("panicked"),
        "a handler panicked:\n{}",
        api.log()
    );
}

fn running_sleep_service(api: &Api) -> String {
    // A run needs an endpoint to load: the demo HTTP service (not `sleep`).
    let svc = api.create_service("demo-http", json!({"port": aif_testbed::free_port()}));
    let id = svc["id"].as_str().expect("id").to_string();
    api.wait_service(&id, "running", Duration::from_secs(30));
    id
}

#[test]
fn bad_benchmark_run_bodies_get_a_clear_error() {
    let api = Api::start(&shipped_recipes(), "", &[], &[]);
    let sid = running_sleep_service(&api);
    let route = "/api/v1/benchmarks";
    let cases: Vec<BodyCase<'_>> = vec![
        (
            route,
            json!({"service_id": sid, "duration_seconds": 5, "load_nodes": 0}),
            400,
            Some("load_nodes"),
            "`load_nodes` must be between 1 and 64, got 0",
        ),
        (
            route,
            json!({"service_id": sid, "duration_seconds": 5, "concurrency": 4, "load_nodes": 2}),
            409,
            Some("load_nodes"),
            "`load_nodes` 2 needs a Slurm backend (this API runs `local`: one host)",
        ),
        (
            route,
            json!({"service_id": sid, "duration_minutes": 5}),
            400,
            Some("duration_minutes"),
            "unknown field `duration_minutes`",
        ),
        (
            route,
            json!({"service_id": sid}),
            400,
            Some("duration_seconds"),
            "missing field `duration_seconds`",
        ),
        (
            route,
            json!({"service_id": sid, "duration_seconds": "60"}),
            400,
            Some("duration_seconds"),
            "invalid type",
        ),
        (
            route,
            json!({"service_id": sid, "duration_seconds": 1.5}),
            400,
            Some("duration_seconds"),
            "invalid type",
        ),
        (
            route,
            json!({"service_id": sid, "duration_seconds": null}),
            400,
            Some("duration_seconds"),
            "`duration_seconds` is null; omit it to use its default",
        ),
        (
            route,
            json!({"service_id": sid, "duration_seconds": 0}),
            400,
            Some("duration_seconds"),
            "`duration_seconds` must be between 1 and 86400",
        ),
        (
            route,
            json!({"service_id": sid, "duration_seconds": 86401}),
            400,
            Some("duration_seconds"),
            "`duration_seconds` must be between",
        ),
        (
            route,
            json!({"service_id": sid, "duration_seconds": -5}),
            400,
            Some("duration_seconds"),
            "`duration_seconds` must be between 1 and 86400, got -5",
        ),
        (
            route,
            json!({"service_id": sid, "duration_seconds": 60, "concurrency": 0}),
            400,
            Some("concurrency"),
            "`concurrency` must be between 1 and 1024",
        ),
        (
            route,
            json!({"service_id": sid, "duration_seconds": 60, "concurrency": 1025}),
            400,
            Some("concurrency"),
            "`concurrency` must be between 1 and 1024, got 1025",
        ),
        (
            route,
            json!({"service_id": sid, "duration_seconds": 60, "concurrency": "8"}),
            400,
            Some("concurrency"),
            "invalid type",
        ),
        (
            route,
            json!({"service_id": sid, "duration_seconds": 60, "mode": "open_loop"}),
            400,
            Some("requests_per_second"),
            "missing field `requests_per_second`",
        ),
        (
            route,
            json!({"service_id": sid, "duration_seconds": 60, "mode": "burst"}),
            400,
            Some("mode"),
            "unknown variant",
        ),
        (
            route,
            json!({"service_id": sid, "duration_seconds": 60, "requests_per_second": 5}),
            400,
            Some("requests_per_second"),
            "`requests_per_second` is for mode `open_loop`; closed_loop uses `concurrency`",
        ),
        (
            route,
            json!({"service_id": sid, "duration_seconds": 60, "path": "no-slash"}),
            400,
            Some("path"),
            "`path` must start with `/` and hold no spaces",
        ),
        (
            route,
            json!({"service_id": 7, "duration_seconds": 60}),
            400,
            Some("service_id"),
            "invalid type",
        ),
        (
            route,
            json!({"service_id": "svc-0000000000000000", "duration_seconds": 60}),
            404,
            Some("service_id"),
            "no service",
        ),
        (route, json!([1, 2]), 400, None, "invalid type"),
        (route, json!("text"), 400, None, "invalid type"),
    ];
    assert_body_refusals(&api, &cases);

    // A JSON content type with parameters is fine.
    let a = request(
        &api.url(route),
        "POST",
        &[("Content-Type", "application/json; charset=utf-8")],
        Some(
            json!({"service_id": sid, "duration_seconds": 30})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    assert_still_healthy(&api);
}

#[test]
fn bad_service_bodies_get_a_clear_error() {
    let api = Api::start(&shipped_recipes(), "", &[], &[]);
    let route = "/api/v1/services";
    let cases: Vec<BodyCase<'_>> = vec![
        (
            route,
            json!({}),
            400,
            Some("recipe"),
            "missing field `recipe`",
        ),
        (
            route,
            json!({"recipe": "nope"}),
            404,
            Some("recipe"),
            "no recipe `nope`",
        ),
        (
            route,
            json!({"recipe": "sleep", "extra": 1}),
            400,
            Some("extra"),
            "unknown field `extra`",
        ),
        (
            route,
            json!({"recipe": "sleep", "params": []}),
            400,
            Some("params"),
            "invalid type",
        ),
        (
            route,
            json!({"recipe": "sleep", "params": {"secs": 1}}),
            400,
            Some("params.secs"),
            "unknown parameter `secs`",
        ),
        (
            route,
            json!({"recipe": "sleep", "params": {"seconds": "1"}}),
            400,
            Some("params.seconds"),
            "`seconds` must be an integer, got \"1\"",
        ),
        (
            route,
            json!({"recipe": "sleep", "params": {"seconds": 0}}),
            400,
            Some("params.seconds"),
            "`params.seconds` must be between 1 and 86400, got 0",
        ),
        (
            route,
            json!({"recipe": "sleep", "params": {"seconds": 86401}}),
            400,
            Some("params.seconds"),
            "`params.seconds` must be between 1 and 86400, got 86401",
        ),
        (
            route,
            json!({"recipe": ["sleep"]}),
            400,
            Some("recipe"),
            "invalid type",
        ),
    ];
    assert_body_refusals(&api, &cases);
    assert_still_healthy(&api);
}

#[test]
fn bad_status_route_bodies_get_a_clear_error() {
    let api = Api::start(&shipped_recipes(), "", &[], &[]);
    let sid = running_sleep_service(&api);
    let status_route = format!("/api/v1/services/{sid}/status");
    let cases: Vec<BodyCase<'_>> = vec![
        (
            status_route.as_str(),
            json!({"status": "running"}),
            400,
            Some("status"),
            "`running` cannot be set by a client; the only settable status is `cancelled`",
        ),
        (
            status_route.as_str(),
            json!({"status": "cancelled", "why": 1}),
            400,
            Some("why"),
            "unknown field `why`",
        ),
        (
            status_route.as_str(),
            json!({}),
            400,
            Some("status"),
            "missing field `status`",
        ),
        (
            "/api/v1/services/svc-0000000000000000/status",
            json!({"status": "cancelled"}),
            404,
            None,
            "no service",
        ),
    ];
    assert_body_refusals(&api, &cases);
    // None of the refusals touched the service.
    assert_eq!(api.service(&sid)["status"], "running");
    assert_still_healthy(&api);
}

#[test]
fn bad_cancel_bodies_get_a_clear_error() {
    let api = Api::start(&shipped_recipes(), "", &[], &[]);
    let route = "/api/v1/benchmarks/run-0000000000000000/cancel";
    let cases: Vec<BodyCase<'_>> = vec![
        (route, json!({}), 404, None, "no benchmark run"),
        (
            route,
            json!({"reasons": "x"}),
            400,
            Some("reasons"),
            "unknown field",
        ),
    ];
    assert_body_refusals(&api, &cases);
    assert_still_healthy(&api);
}

#[test]
fn malformed_bodies_and_content_types_get_a_clear_error() {
    let api = Api::start(&shipped_recipes(), "", &[], &[]);
    // Raw bodies: malformed JSON, trailing data, empty, wrong content types.
    let url = api.url("/api/v1/benchmarks");
    let json_ct = [("Content-Type", "application/json")];
    let raw_cases: Vec<RawCase<'_>> = vec![
        (&json_ct, b"{\"service_id\": ", 400, "malformed JSON"),
        (
            &json_ct,
            b"{\"service_id\": \"x\", \"duration_seconds\": 5} trailing",
            400,
            "malformed JSON",
        ),
        (&json_ct, b"", 400, "malformed JSON"),
        (&json_ct, b"\xff\xfe", 400, "malformed JSON"),
        (
            &[("Content-Type", "text/plain")],
            b"{}",
            415,
            "Content-Type must be application/json",
        ),
        (
            &[("Content-Type", "application/x-www-form-urlencoded")],
            b"a=1",
            415,
            "Content-Type",
        ),
        (
            &[("Content-Type", "application/json; charset=latin1")],
            b"{}",
            415,
            "Content-Type",
        ),
        (&[], b"{}", 415, "Content-Type"),
    ];
    let mismatches: Vec<String> = raw_cases
        .iter()
        .filter_map(|(headers, body, status, prefix)| {
            let what = format!(
                "POST /api/v1/benchmarks {headers:?} {:?}",
                String::from_utf8_lossy(body)
            );
            let a = request(&url, "POST", headers, Some(body));
            refusal_mismatch(&what, &a, *status, None, prefix)
        })
        .collect();
    assert_no_mismatch(&mismatches);

    // Body over 1 MiB: 413.
    let mut big = b"{\"service_id\": \"".to_vec();
    big.resize(1024 * 1024 + 1, b'a');
    let a = request(&url, "POST", &json_ct, Some(&big));
    assert_no_mismatch(
        &refusal_mismatch(
            "1 MiB + 1",
            &a,
            413,
            None,
            "request body is larger than 1048576 bytes (1 MiB)",
        )
        .into_iter()
        .collect::<Vec<_>>(),
    );
    assert_still_healthy(&api);
}

#[test]
fn unknown_routes_and_methods_get_a_clear_error() {
    let api = Api::start(&shipped_recipes(), "", &[], &[]);
    // A service that exists (it need not run: no route below acts on it).
    let sid = api.create_service("sleep", json!({}))["id"]
        .as_str()
        .expect("id")
        .to_string();
    let route_cases: Vec<RouteCase<'_>> = vec![
        ("GET", "/nope".into(), 404, None, "no route GET /nope"),
        (
            "GET",
            "/api/v1/nope".into(),
            404,
            None,
            "no route GET /api/v1/nope",
        ),
        (
            "GET",
            "/api/v1/services/svc-0000000000000000".into(),
            404,
            None,
            "no service",
        ),
        (
            "DELETE",
            "/api/v1/services/svc-0000000000000000".into(),
            404,
            None,
            "no service",
        ),
        (
            "GET",
            "/api/v1/benchmarks/run-0000000000000000".into(),
            404,
            None,
            "no benchmark run",
        ),
        (
            "PUT",
            "/api/v1/services".into(),
            405,
            Some("GET, POST, OPTIONS"),
            "method PUT is not allowed on /api/v1/services; allowed: GET, POST, OPTIONS",
        ),
        (
            "DELETE",
            "/api/v1/benchmarks".into(),
            405,
            Some("GET, POST, OPTIONS"),
            "method DELETE is not allowed on /api/v1/benchmarks; allowed: GET, POST, OPTIONS",
        ),
        (
            "POST",
            "/health".into(),
            405,
            Some("GET, OPTIONS"),
            "method POST is not allowed on /health; allowed: GET, OPTIONS",
        ),
        (
            "PATCH",
            format!("/api/v1/services/{sid}"),
            405,
            Some("GET, DELETE, OPTIONS"),
            "method PATCH is not allowed on /api/v1/services/svc-",
        ),
    ];
    let mismatches: Vec<String> = route_cases
        .iter()
        .filter_map(|(method, path, status, allow, prefix)| {
            let what = format!("{method} {path}");
            let a = api.send(method, path, None);
            if let Some(allow) = allow
                && a.header("Allow") != Some(*allow)
            {
                return Some(format!(
                    "{what}: Allow {:?} (want {allow})",
                    a.header("Allow")
                ));
            }
            refusal_mismatch(&what, &a, *status, None, prefix)
        })
        .collect();
    assert_no_mismatch(&mismatches);
    assert_still_healthy(&api);
}

#[test]
fn bad_query_strings_get_a_clear_error() {
    let api = Api::start(&shipped_recipes(), "", &[], &[]);
    // (path, expected `field`, error message prefix); all 400.
    let cases: [(&str, &str, &str); 3] = [
        (
            "/api/v1/services?status=bogus",
            "status",
            "`bogus` is not a status; expected one of: pending, starting, running, completed, failed, cancelled, unknown",
        ),
        (
            "/api/v1/services?colour=red",
            "colour",
            "unknown query parameter `colour`, expected one of: ",
        ),
        (
            "/api/v1/benchmarks?status=running&status=failed",
            "status",
            "query parameter `status` given twice",
        ),
    ];
    let mismatches: Vec<String> = cases
        .iter()
        .filter_map(|(path, field, prefix)| {
            let what = format!("GET {path}");
            refusal_mismatch(&what, &api.get(path), 400, Some(Some(*field)), prefix)
        })
        .collect();
    assert_no_mismatch(&mismatches);
    assert_still_healthy(&api);
}

#[test]
fn oversized_and_abandoned_requests_leave_the_server_up() {
    let api = Api::start(&shipped_recipes(), "", &[], &[]);
    // A declared body far beyond memory: 413 without reading it, server stays up.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", api.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"POST /api/v1/services HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000000\r\n\r\n{")
        .expect("write");
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).expect("answer");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    drop(s);
    // A client that hangs up mid-request.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", api.port)).expect("connect");
    s.write_all(b"POST /api/v1/services HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"re")
        .expect("write");
    drop(s);

    assert_still_healthy(&api);
}

#[test]
fn cors_answers_configured_origins_only() {
    let api = Api::start(
        &shipped_recipes(),
        "cors_origin = [\"http://file-config.example\"]\n",
        &[
            "--cors-origin",
            "http://grafana.example:3000",
            "--cors-origin",
            "https://other.example",
        ],
        &[],
    );
    let url = api.url("/api/v1/services");
    let a = request(
        &url,
        "GET",
        &[("Origin", "http://grafana.example:3000")],
        None,
    );
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("Access-Control-Allow-Origin"),
        Some("http://grafana.example:3000")
    );
    assert_eq!(a.header("Vary"), Some("Origin"));
    let a = request(&url, "GET", &[("Origin", "https://other.example")], None);
    assert_eq!(
        a.header("Access-Control-Allow-Origin"),
        Some("https://other.example")
    );
    // Flags replace the file's list.
    for origin in [
        "http://evil.example",
        "http://file-config.example",
        "http://grafana.example:3001",
        "null",
    ] {
        let a = request(&url, "GET", &[("Origin", origin)], None);
        assert_eq!(a.status, 200);
        assert!(
            a.headers
                .iter()
                .all(|(k, _)| !k.to_ascii_lowercase().starts_with("access-control-")),
            "{origin}: {:?}",
            a.headers
        );
        // The answer depends on the origin: caches must key on it.
        assert_eq!(a.header("Vary"), Some("Origin"), "{origin}");
    }
    let a = request(&url, "GET", &[], None);
    assert_eq!(
        a.header("Vary"),
        Some("Origin"),
        "no Origin: {:?}",
        a.headers
    );
    let vary = |a: &common::Answer, name: &str| {
        a.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .count()
    };
    // Errors carry CORS headers too, so the browser can show them.
    let a = request(
        &api.url("/nope"),
        "GET",
        &[("Origin", "http://grafana.example:3000")],
        None,
    );
    assert_eq!(
        (a.status, a.header("Access-Control-Allow-Origin")),
        (404, Some("http://grafana.example:3000"))
    );
    // Preflight.
    let pre = [
        ("Origin", "http://grafana.example:3000"),
        ("Access-Control-Request-Method", "POST"),
        (
            "Access-Control-Request-Headers",
            "content-type, authorization",
        ),
    ];
    let a = request(&url, "OPTIONS", &pre, None);
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(
        a.header("Access-Control-Allow-Origin"),
        Some("http://grafana.example:3000")
    );
    assert_eq!(
        a.header("Access-Control-Allow-Methods"),
        Some("GET, POST, OPTIONS")
    );
    let allowed_headers = a
        .header("Access-Control-Allow-Headers")
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(allowed_headers.contains("content-type") && allowed_headers.contains("authorization"));
    assert_eq!(a.header("Vary"), Some("Origin"));
    assert_eq!(
        (vary(&a, "Vary"), vary(&a, "Access-Control-Allow-Origin")),
        (1, 1),
        "each once: {:?}",
        a.headers
    );
    let a = request(&api.url("/api/v1/services/svc-1"), "OPTIONS", &pre, None);
    assert_eq!(
        a.header("Access-Control-Allow-Methods"),
        Some("GET, DELETE, OPTIONS")
    );
    let a = request(
        &url,
        "OPTIONS",
        &[
            ("Origin", "http://evil.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        None,
    );
    assert!(
        a.headers
            .iter()
            .all(|(k, _)| !k.to_ascii_lowercase().starts_with("access-control-")),
        "{:?}",
        a.headers
    );
    assert_eq!(a.header("Vary"), Some("Origin"));
    let a = request(&api.url("/nope"), "OPTIONS", &pre, None);
    assert_eq!(a.status, 404);
}

#[test]
fn mutating_routes_need_the_token_reads_stay_open() {
    let secret = "t0ken-Sup3r-s3cret";
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{secret}\n")).expect("token");
    let mut api = Api::start(
        &shipped_recipes(),
        "",
        &["--token-file", token_file.to_str().expect("utf8")],
        &[],
    );
    let body = json!({"recipe": "sleep", "params": {"seconds": 3600}});
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer t0ken-Sup3r-s3cre"),
        Some(secret),
        Some("Basic dDB rZW4="),
    ] {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        let a = request(
            &api.url("/api/v1/services"),
            "POST",
            &headers,
            Some(body.to_string().as_bytes()),
        );
        assert_eq!(a.status, 401, "{auth:?}: {}", a.body);
        assert_eq!(a.header("WWW-Authenticate"), Some("Bearer"));
        assert_error_shape("401", &a);
    }
    for (method, path) in [
        ("DELETE", "/api/v1/services/svc-0000000000000000"),
        ("POST", "/api/v1/services/svc-0000000000000000/status"),
        ("POST", "/api/v1/benchmarks"),
        ("POST", "/api/v1/benchmarks/run-0000000000000000/cancel"),
    ] {
        let a = request(
            &api.url(path),
            method,
            &[("Content-Type", "application/json")],
            Some(b"{}"),
        );
        assert_eq!(a.status, 401, "{method} {path}: {}", a.body);
    }
    for path in [
        "/health",
        "/api/v1/services",
        "/api/v1/recipes",
        "/api/v1/benchmarks",
        "/metrics",
        "/openapi.json",
        "/api/v1/services/targets",
    ] {
        assert_eq!(api.get(path).status, 200, "{path}");
    }
    api.token = Some(secret.to_string());
    let svc = api.create_service("sleep", json!({"seconds": 3600}));
    let id = svc["id"].as_str().expect("id");
    let a = api.send("DELETE", &format!("/api/v1/services/{id}"), None);
    assert_eq!(a.status, 200, "{}", a.body);
    api.stop();
    assert!(!api.log().contains(secret), "the token was logged");
}

#[test]
fn openapi_lists_every_served_route_and_metrics_lint() {
    let api = Api::start(&shipped_recipes(), "", &[], &[]);
    let doc = api.get("/openapi.json").json();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.0")),
        "{doc}"
    );
    let paths = doc["paths"].as_object().expect("paths");
    let mut described = 0;
    for (pattern, ops) in paths {
        for (method, op) in ops.as_object().expect("ops") {
            described += 1;
            assert!(op["responses"].is_object(), "{method} {pattern}");
            // Served: the router knows it (a missing id is a 404 about the id, not the route).
            let path = pattern.replace("{id}", "x-0");
            let body = if method == "post" {
                Some(b"{}".as_slice())
            } else {
                None
            };
            let a = request(
                &api.url(&path),
                &method.to_ascii_uppercase(),
                &[("Content-Type", "application/json")],
                body,
            );
            assert_ne!(
                a.status, 405,
                "{method} {pattern} is described but not served: {}",
                a.body
            );
            assert!(
                !a.body.contains("no route"),
                "{method} {pattern} is described but not served: {}",
                a.body
            );
        }
    }
    assert_eq!(described, aif_bench_api::routes::ROUTES.len());
    for r in aif_bench_api::routes::ROUTES {
        assert!(
            doc["paths"][r.pattern][r.method.as_str().to_ascii_lowercase()].is_object(),
            "{} {} missing from openapi.json",
            r.method.as_str(),
            r.pattern
        );
    }
    let err = &doc["components"]["schemas"]["Error"];
    assert_eq!(err["required"], json!(["error"]));

    let svc = api.create_service("demo-http", json!({"port": aif_testbed::free_port()}));
    let id = svc["id"].as_str().expect("id").to_string();
    api.wait_service(&id, "running", Duration::from_secs(30));
    let run = api.post(
        "/api/v1/benchmarks",
        &json!({"service_id": id, "duration_seconds": 3600}),
    );
    assert_eq!(run.status, 201, "{}", run.body);
    let m = api.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.header("Content-Type")
            .is_some_and(|c| c.starts_with("text/plain"))
    );
    assert!(
        m.body.contains(&format!(
            "aif_service_status{{service_id=\"{id}\",recipe=\"demo-http\",status=\"running\"}} 1"
        )),
        "{}",
        m.body
    );
    if !m.body.contains("aif_benchmark_runs{status=\"running\"} 1") {
        let rid = run.json()["id"].as_str().unwrap_or_default().to_string();
        panic!(
            "no running run on /metrics:\n{}\nthe run now: {}\nAPI log:\n{}",
            m.body,
            api.get(&format!("/api/v1/benchmarks/{rid}")).body,
            api.log()
        );
    }
    assert!(
        m.body.contains(
            "aif_api_requests_total{route=\"/api/v1/benchmarks\",method=\"POST\",status=\"201\"} 1"
        ),
        "{}",
        m.body
    );
    let report = aif_testbed::promtool_check_metrics(&m.body).expect("promtool");
    assert_eq!(
        report.code,
        Some(0),
        "promtool check metrics:\n{}",
        report.output
    );
    let health = api.get("/health").json();
    assert_eq!(
        (health["status"].as_str(), health["version"].as_str()),
        (Some("ok"), Some(env!("CARGO_PKG_VERSION")))
    );
    let recipes = api.get("/api/v1/recipes").json();
    let names: Vec<&str> = recipes
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    for n in ["vllm", "ollama", "demo-http", "sleep"] {
        assert!(names.contains(&n), "{names:?}");
    }
}

#[test]
fn bad_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recipes = shipped_recipes();
    let cases: Vec<(String, Vec<String>, &str)> = vec![
        ("lisen = \"127.0.0.1:1\"\n".into(), vec![], "lisen"),
        ("listen = 8080\n".into(), vec![], "listen"),
        (
            "[slurm]\npartiton = \"gpu\"\n".into(),
            vec![],
            "slurm.partiton",
        ),
        (
            String::new(),
            vec!["--backend".into(), "kubernetes".into()],
            "backend",
        ),
        (
            String::new(),
            vec!["--cors-origin".into(), "*".into()],
            "cors_origin",
        ),
        (
            String::new(),
            vec!["--token-file".into(), "/nonexistent/token".into()],
            "token_file",
        ),
        (
            String::new(),
            vec!["--recipes".into(), "/nonexistent/recipes".into()],
            "recipes",
        ),
    ];
    for (i, (toml, args, key)) in cases.iter().enumerate() {
        let config = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&config, toml).expect("config");
        let mut cmd = std::process::Command::new(common::binary());
        cmd.arg("--config").arg(&config);
        if !args.iter().any(|a| a == "--recipes") {
            cmd.arg("--recipes").arg(&recipes);
        }
        let out = cmd
            .arg("--db")
            .arg(dir.path().join("s.sqlite"))
            .args(args)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{toml} {args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("`{key}`")),
            "{toml} {args:?}: {stderr}"
        );
    }
    // A recipe with an unknown key: exit 2 naming file and key.
    let bad = dir.path().join("bad-recipes");
    std::fs::create_dir_all(&bad).expect("dir");
    std::fs::write(bad.join("x.toml"), "name = \"x\"\ndescription = \"d\"\ncategory = \"c\"\nargv = [\"true\"]\ncolour = \"red\"\n").expect("recipe");
    let out = std::process::Command::new(common::binary())
        .arg("--recipes")
        .arg(&bad)
        .arg("--db")
        .arg(dir.path().join("s2.sqlite"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("x.toml") && stderr.contains("colour"),
        "{stderr}"
    );
}
