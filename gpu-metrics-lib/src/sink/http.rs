//! What the sinks' HTTP clients share: the agent's settings and the
//! `Authorization` headers.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::Secret;
use super::pushgateway::CachingResolver;

/// A ureq agent with explicit connect and overall timeouts, statuses as
/// values (not errors), the exporter's `User-Agent`, and the caching resolver.
/// A sink talks to one host over one connection: one idle connection is
/// kept, with 16 KiB buffers each way (ureq's default is 128 KiB, resident
/// for as long as the connection is pooled; our requests' headers and the
/// receivers' answers are far smaller, and bodies stream through).
pub(crate) fn agent(connect_timeout: Duration, timeout: Duration) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_connect(Some(connect_timeout))
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_idle_connections(1)
        .max_idle_connections_per_host(1)
        .input_buffer_size(16 * 1024)
        .output_buffer_size(16 * 1024)
        .user_agent(concat!("aif-node-exporter/", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::default(),
        CachingResolver::default(),
    )
}

/// `Basic base64(user:password)`.
pub(crate) fn basic_auth(user: &str, password: Option<&Secret>) -> Secret {
    Secret::new(format!(
        "Basic {}",
        STANDARD.encode(format!("{user}:{}", password.map_or("", |p| p.expose())))
    ))
}
