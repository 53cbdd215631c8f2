//! The testbed itself: each server starts, answers and stops (DESIGN.md §9).

use std::time::Duration;

use aif_testbed::{Prometheus, Pushgateway, TestbedError, require_binary, wait_until};

fn put(url: &str, body: &str) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    agent
        .put(url)
        .header("Content-Type", "text/plain; version=0.0.4")
        .send(body)
        .expect("PUT")
        .status()
        .as_u16()
}

#[test]
fn pushgateway_accepts_a_push_and_serves_it() {
    let pgw = Pushgateway::start().unwrap_or_else(|e| panic!("{e}"));
    let status = put(
        &format!("{}/metrics/job/testbed/instance/n1", pgw.url()),
        "# TYPE testbed_value gauge\ntestbed_value 42\n",
    );
    assert_eq!(status, 200);
    let text = pgw.metrics_text().expect("metrics");
    assert!(
        text.lines()
            .any(|l| l == "testbed_value{instance=\"n1\",job=\"testbed\"} 42"),
        "{text}"
    );
}

#[test]
fn pushgateway_restarts_on_the_same_port() {
    let mut pgw = Pushgateway::start().unwrap_or_else(|e| panic!("{e}"));
    let addr = pgw.addr();
    pgw.stop();
    assert!(!aif_testbed::port_open(addr));
    pgw.restart().unwrap_or_else(|e| panic!("{e}"));
    assert!(aif_testbed::port_open(addr));
}

#[test]
fn prometheus_scrapes_the_pushgateway() {
    let pgw = Pushgateway::start().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        put(
            &format!("{}/metrics/job/testbed/instance/n2", pgw.url()),
            "# TYPE testbed_scraped gauge\ntestbed_scraped 7\n",
        ),
        200
    );
    let prom = Prometheus::start(&format!(
        "scrape_configs:\n  - job_name: pushgateway\n    honor_labels: true\n    static_configs:\n      - targets: ['{}']\n",
        pgw.addr()
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let mut last = String::new();
    let found = wait_until(Duration::from_secs(20), || {
        last = prom
            .query("testbed_scraped{instance=\"n2\"}")
            .unwrap_or_default();
        last.contains("\"7\"")
    });
    assert!(
        found,
        "not scraped; last answer: {last}\nlog:\n{}",
        prom.log_text()
    );
}

#[test]
fn missing_binary_fails_naming_the_debian_package() {
    let err = require_binary("aif-no-such-server", "aif-no-such-package").expect_err("missing");
    assert!(matches!(err, TestbedError::MissingBinary { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("aif-no-such-package") && msg.contains("apt-get install"),
        "{msg}"
    );
}
