//! CORS for the configured origins only. An allowed origin is echoed in
//! `Access-Control-Allow-Origin` (with `Vary: Origin`); any other origin gets no
//! CORS headers at all, so the browser blocks the call. Preflight `OPTIONS`
//! answers the path's methods and the `Content-Type` and `Authorization` headers.
//! The preferred way is still same-origin through Grafana's data-source proxy.

/// Headers a preflight allows.
pub const ALLOW_HEADERS: &str = "Content-Type, Authorization";

/// How long a browser may cache a preflight (s).
pub const MAX_AGE_SECONDS: u32 = 600;

/// The configured allowed origins.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    origins: Vec<String>,
}

impl Cors {
    /// Allows exactly `origins` (`scheme://host[:port]`, compared exactly,
    /// ASCII case-insensitively).
    pub fn new(origins: Vec<String>) -> Cors {
        Cors { origins }
    }

    /// The origin to echo, when the request's `Origin` is allowed.
    pub fn allowed<'a>(&self, origin: Option<&'a str>) -> Option<&'a str> {
        let origin = origin?;
        self.origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
            .then_some(origin)
    }

    /// Headers for an ordinary response to a request from `origin`.
    pub fn response_headers(&self, origin: Option<&str>) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        if let Some(o) = self.allowed(origin) {
            h.push(("Access-Control-Allow-Origin", o.to_string()));
            h.push(("Vary", "Origin".to_string()));
        }
        h
    }

    /// Headers for a preflight of a path that allows `methods`.
    pub fn preflight_headers(
        &self,
        origin: Option<&str>,
        methods: &str,
    ) -> Vec<(&'static str, String)> {
        let mut h = self.response_headers(origin);
        if !h.is_empty() {
            h.push(("Access-Control-Allow-Methods", methods.to_string()));
            h.push(("Access-Control-Allow-Headers", ALLOW_HEADERS.to_string()));
            h.push(("Access-Control-Max-Age", MAX_AGE_SECONDS.to_string()));
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_origins() {
        let c = Cors::new(vec!["http://grafana:3000".into()]);
        assert_eq!(
            c.allowed(Some("http://grafana:3000")),
            Some("http://grafana:3000")
        );
        assert_eq!(c.allowed(Some("http://evil:3000")), None);
        assert_eq!(c.allowed(None), None);
        assert!(c.response_headers(Some("http://evil")).is_empty());
        let pre = c.preflight_headers(Some("http://grafana:3000"), "GET, POST");
        assert!(
            pre.iter()
                .any(|(k, v)| *k == "Access-Control-Allow-Methods" && v == "GET, POST")
        );
    }
}
