//! `deploy/`: Prometheus's configuration passes `promtool check config`; the
//! compose stack and Grafana's provisioning agree with the dashboards.

use std::process::Command;

use aif_dashboards::{build, crate_dir, repo_dir};
use aif_testbed::process::require_binary;

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn prometheus_config_passes_promtool() {
    let promtool = require_binary("promtool", "prometheus").expect("promtool");
    let out = Command::new(promtool)
        .args(["check", "config"])
        .arg(repo_dir().join("deploy/prometheus/prometheus.yml"))
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool check config:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = read("deploy/prometheus/prometheus.yml");
    assert!(
        text.contains("honor_labels: true"),
        "Pushgateway scrape keeps the pushed labels"
    );
    assert!(
        text.contains("/api/v1/services/targets"),
        "HTTP service discovery on the API"
    );
    assert!(
        text.contains("out_of_order_time_window"),
        "out-of-order window for remote write"
    );
}

#[test]
fn compose_pins_the_plugins_and_mounts_what_grafana_needs() {
    let compose = read("deploy/docker-compose.yml");
    let line = compose
        .lines()
        .find(|l| l.trim_start().starts_with("GF_PLUGINS_PREINSTALL:"))
        .expect("GF_PLUGINS_PREINSTALL in deploy/docker-compose.yml");
    for plugin in ["volkovlabs-form-panel@", "yesoreyeram-infinity-datasource@"] {
        let at = line
            .find(plugin)
            .unwrap_or_else(|| panic!("{plugin} not preinstalled: {line}"));
        let version: String = line[at + plugin.len()..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        assert_eq!(
            version.split('.').count(),
            3,
            "{plugin} pinned to x.y.z: {line}"
        );
    }
    for needle in [
        "--web.enable-remote-write-receiver",
        "--persistence.file=",
        "./grafana/grafana.ini:/etc/grafana/grafana.ini",
        "./grafana/provisioning:/etc/grafana/provisioning",
        "../dashboards/dist:/var/lib/grafana/dashboards",
        "--source=simulated",
    ] {
        assert!(
            compose.contains(needle),
            "deploy/docker-compose.yml lacks `{needle}`"
        );
    }
    let ini = read("deploy/grafana/grafana.ini");
    assert!(
        ini.contains("domain = localhost") && ini.contains("root_url = "),
        "{ini}"
    );
    let provider = read("deploy/grafana/provisioning/dashboards/aif.yml");
    assert!(
        provider.contains("path: /var/lib/grafana/dashboards"),
        "{provider}"
    );
    // Every built dashboard is there to be provisioned, and the home dashboard exists.
    let built = build::build_all(&crate_dir().join("src")).expect("build");
    for name in built.keys() {
        assert!(
            crate_dir()
                .join("dist")
                .join(format!("{name}.json"))
                .is_file(),
            "{name}"
        );
    }
    assert!(ini.contains("/var/lib/grafana/dashboards/administration.json"));
}
