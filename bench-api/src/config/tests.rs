//! Tests of the configuration as a whole: a TOML file and flags in, a
//! [`Config`] or an error naming the key out.

use std::path::Path;
use std::time::Duration;

use super::*;

fn cli_with(dir: &Path, config: &str) -> Cli {
    let path = dir.join("c.toml");
    std::fs::write(&path, config).unwrap();
    Cli {
        config: Some(path),
        recipes: Some(dir.to_path_buf()),
        ..Cli::default()
    }
}

#[test]
fn unknown_and_bad_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("lisen = \"127.0.0.1:1\"", "lisen"),
        ("listen = 5", "listen"),
        ("listen = \"nope\"", "listen"),
        ("backend = \"k8s\"", "backend"),
        ("workers = 0", "workers"),
        ("max_connections = 0", "max_connections"),
        (
            "metrics_retention_seconds = 99999999",
            "metrics_retention_seconds",
        ),
        ("idle_timeout_ms = 1", "idle_timeout_ms"),
        ("header_timeout_ms = 700000", "header_timeout_ms"),
        ("cors_origin = [\"grafana\"]", "cors_origin"),
        ("[slurm]\nparition = \"x\"", "slurm.parition"),
        (
            "[slurm.ssh]\nhost = \"h\"\nuser = \"u\"\nidentity_file = \"i\"\nknown_hosts = \"k\"\nport = \"22\"",
            "slurm.ssh.port",
        ),
        ("token_file = \"/nonexistent/token\"", "token_file"),
        ("backend = \"slurm-rest\"", "slurm.rest"),
        (
            "backend = \"slurm-rest\"\n[slurm.rest]\nurl = \"http://h:6820\"",
            "slurm.rest.token_file",
        ),
        (
            "backend = \"slurm-rest\"\n[slurm.rest]\nurl = \"https://h:6820\"\nuser = \"u\"\ntoken_file = \"/dev/null\"",
            "slurm.rest.url",
        ),
        (
            "backend = \"slurm-rest\"\n[slurm.rest]\nurl = \"http://h:6820\"\ntoken_file = \"/dev/null\"",
            "slurm.rest.user",
        ),
        (
            "backend = \"slurm-rest\"\n[slurm.rest]\nurl = \"unix:/s\"\napi_version = \"v0.0.39\"",
            "slurm.rest.api_version",
        ),
        (
            "backend = \"slurm-rest\"\n[slurm]\nextra_args = [\"-q\"]\n[slurm.rest]\nurl = \"unix:/s\"",
            "slurm.extra_args",
        ),
        (
            "backend = \"slurm-rest\"\n[slurm.rest]\nurl = \"unix:/s\"\ntimeout = 3",
            "slurm.rest.timeout",
        ),
    ];
    for (text, key) in cases {
        let e = Config::load(&cli_with(dir.path(), text)).unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains(&format!("`{key}`")), "{text}: {shown}");
    }
}

const SSH: &str =
    "[slurm.ssh]\nhost = \"login01\"\nuser = \"u\"\nidentity_file = \"i\"\nknown_hosts = \"k\"\n";

#[test]
fn reverse_tunnel_is_checked_against_backend_ssh_and_targets() {
    let dir = tempfile::tempdir().unwrap();
    let pgw = "pushgateway = \"http://monitor:9091/pgw\"\n";
    let slurm = "backend = \"slurm\"\n";
    let cases = [
        // Needs the Slurm backend over SSH and a Pushgateway.
        (format!("{pgw}reverse_tunnel = 19091\n"), "reverse_tunnel"),
        (
            format!("{pgw}{slurm}reverse_tunnel = 19091\n"),
            "reverse_tunnel",
        ),
        (
            format!("{slurm}reverse_tunnel = 19091\n{SSH}"),
            "reverse_tunnel",
        ),
        (
            format!("{pgw}{slurm}reverse_tunnel = 0\n{SSH}"),
            "reverse_tunnel",
        ),
        (
            format!("{pgw}{slurm}reverse_tunnel = 70000\n{SSH}"),
            "reverse_tunnel",
        ),
        // The target must be plain http (the nodes get http://ADVERTISE:PORT).
        (
            format!("pushgateway = \"https://monitor:9091\"\n{slurm}reverse_tunnel = 19091\n{SSH}"),
            "pushgateway",
        ),
        (
            format!("{pgw}{slurm}reverse_tunnel = 19091\nreverse_tunnel_bind = \"a b\"\n{SSH}"),
            "reverse_tunnel_bind",
        ),
        (
            format!(
                "{pgw}{slurm}reverse_tunnel = 19091\nreverse_tunnel_advertise = \"h/x\"\n{SSH}"
            ),
            "reverse_tunnel_advertise",
        ),
        // remote_write needs its own port, and the port needs remote_write.
        (
            format!(
                "{pgw}{slurm}remote_write = \"http://m:9090/api/v1/write\"\nreverse_tunnel = 19091\n{SSH}"
            ),
            "reverse_tunnel_remote_write_port",
        ),
        (
            format!(
                "{pgw}{slurm}remote_write = \"http://m:9090/api/v1/write\"\nreverse_tunnel = 19091\nreverse_tunnel_remote_write_port = 19091\n{SSH}"
            ),
            "reverse_tunnel_remote_write_port",
        ),
        (
            format!(
                "{pgw}{slurm}reverse_tunnel = 19091\nreverse_tunnel_remote_write_port = 19092\n{SSH}"
            ),
            "reverse_tunnel_remote_write_port",
        ),
        // Tunnel keys without the tunnel.
        (
            format!("{pgw}reverse_tunnel_advertise = \"x\"\n"),
            "reverse_tunnel_advertise",
        ),
        (
            format!(
                "{pgw}{slurm}reverse_tunnel = 19091\nreverse_tunnel_linger_seconds = 4000\n{SSH}"
            ),
            "reverse_tunnel_linger_seconds",
        ),
        ("remote_write = \"ftp://x\"".to_string(), "remote_write"),
    ];
    for (text, key) in cases {
        let e = Config::load(&cli_with(dir.path(), &text)).unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains(&format!("`{key}`")), "{text}: {shown}");
    }
}

#[test]
fn reverse_tunnel_hands_jobs_the_login_node_address() {
    let dir = tempfile::tempdir().unwrap();
    let base = format!(
        "backend = \"slurm\"\npushgateway = \"http://monitor:9091/pgw/\"\nremote_write = \"http://[fd00::1]:9090/api/v1/write\"\n{SSH}"
    );
    // Without the tunnel jobs get the URLs as given.
    let c = Config::load(&cli_with(dir.path(), &base)).unwrap();
    assert!(c.reverse_tunnel.is_none());
    assert_eq!(c.job_pushgateway(), Some("http://monitor:9091/pgw"));
    assert_eq!(
        c.job_remote_write(),
        Some("http://[fd00::1]:9090/api/v1/write")
    );
    // Loopback by default: the login node's 127.0.0.1.
    let mut cli = cli_with(dir.path(), &base);
    cli.reverse_tunnel = Some(19091);
    cli.reverse_tunnel_remote_write_port = Some(19092);
    let c = Config::load(&cli).unwrap();
    let t = c.reverse_tunnel.as_ref().unwrap();
    assert_eq!(
        (t.bind.as_str(), t.advertise.as_str()),
        ("127.0.0.1", "127.0.0.1")
    );
    assert_eq!(t.linger, Duration::from_secs(60));
    assert_eq!(c.job_pushgateway(), Some("http://127.0.0.1:19091/pgw"));
    assert_eq!(
        c.job_remote_write(),
        Some("http://127.0.0.1:19092/api/v1/write")
    );
    assert_eq!(
        (
            t.forwards[1].target_host.as_str(),
            t.forwards[1].target_port
        ),
        ("fd00::1", 9090)
    );
    // A wildcard bind advertises the login node's name; an explicit
    // advertise wins (an IPv6 one is bracketed).
    cli.reverse_tunnel_bind = Some("0.0.0.0".into());
    let c = Config::load(&cli).unwrap();
    assert_eq!(c.job_pushgateway(), Some("http://login01:19091/pgw"));
    cli.reverse_tunnel_advertise = Some("fd00::2".into());
    let c = Config::load(&cli).unwrap();
    assert_eq!(c.job_pushgateway(), Some("http://[fd00::2]:19091/pgw"));
}

#[test]
fn slurm_rest_settings_load() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("jwt");
    std::fs::write(&token, "x.y.z").unwrap();
    let text = format!(
        "backend = \"slurm-rest\"\n[slurm]\npartition = \"gpu\"\n[slurm.rest]\nurl = \"http://127.0.0.1:6820\"\nuser = \"svc\"\ntoken_file = \"{}\"\napi_version = \"v0.0.40\"\n[slurm.rest.ssh]\nhost = \"login\"\nuser = \"svc\"\nidentity_file = \"/k\"\nknown_hosts = \"/kh\"\n",
        token.display()
    );
    let c = Config::load(&cli_with(dir.path(), &text)).unwrap();
    assert_eq!(c.backend, BackendKind::SlurmRest);
    assert_eq!(c.poll_interval, Duration::from_millis(2000));
    let rest = c.slurm.rest.unwrap();
    assert_eq!(rest.api_version.as_deref(), Some("v0.0.40"));
    assert_eq!(rest.ssh.unwrap().port, 22);
    // A Unix socket without a token: rest_auth/local.
    let c = Config::load(&cli_with(
        dir.path(),
        "backend = \"slurm-rest\"\n[slurm.rest]\nurl = \"unix:/run/slurmrestd.socket\"\n",
    ))
    .unwrap();
    assert!(c.slurm.rest.unwrap().token_file.is_none());
}

#[test]
fn flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let mut cli = cli_with(
        dir.path(),
        "listen = \"127.0.0.1:1\"\ncors_origin = [\"http://a:3000\"]\n",
    );
    cli.listen = Some("127.0.0.1:2".into());
    let c = Config::load(&cli).unwrap();
    assert_eq!(c.listen.port(), 2);
    assert_eq!(c.cors_origins, vec!["http://a:3000".to_string()]);
    cli.cors_origin = vec!["https://b".into()];
    assert_eq!(
        Config::load(&cli).unwrap().cors_origins,
        vec!["https://b".to_string()]
    );
}

#[test]
fn exporter_interval_is_a_duration() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["0s", "abc", "5", "1ms"] {
        let text = format!("exporter_interval = \"{bad}\"\n");
        let e = Config::load(&cli_with(dir.path(), &text)).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Invalid { key, .. } if key == "exporter_interval"),
            "{bad}: {e}"
        );
        assert!(e.to_string().contains("`exporter_interval`"), "{bad}: {e}");
    }
    let c = Config::load(&cli_with(dir.path(), "exporter_interval = \"200ms\"\n")).unwrap();
    assert_eq!(c.exporter.interval, "200ms");
    // The default, as before.
    let c = Config::load(&cli_with(dir.path(), "")).unwrap();
    assert_eq!(c.exporter.interval, "1s");
}
