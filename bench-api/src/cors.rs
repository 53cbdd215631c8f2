//! CORS for the configured origins only. An allowed origin is echoed in
//! `Access-Control-Allow-Origin`; any other origin gets no CORS headers at all,
//! so the browser blocks the call. When origins are configured every answer
//! (allowed origin, other origin, or none) carries `Vary: Origin`, since its
//! headers depend on it: a cache must not hand one origin's answer to another. Preflight `OPTIONS`
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

    /// Headers for any response to a request from `origin` (preflights too).
    pub fn response_headers(&self, origin: Option<&str>) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        if self.origins.is_empty() {
            return h;
        }
        h.push(("Vary", "Origin".to_string()));
        if let Some(o) = self.allowed(origin) {
            h.push(("Access-Control-Allow-Origin", o.to_string()));
        }
        h
    }

    /// The headers a preflight of a path that allows `methods` adds to
    /// [`Cors::response_headers`].
    pub fn preflight_headers(
        &self,
        origin: Option<&str>,
        methods: &str,
    ) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        if self.allowed(origin).is_some() {
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
        let vary_only = vec![("Vary", "Origin".to_string())];
        assert_eq!(c.response_headers(Some("http://evil")), vary_only);
        assert_eq!(c.response_headers(None), vary_only);
        assert!(c.preflight_headers(Some("http://evil"), "GET").is_empty());
        assert_eq!(
            c.response_headers(Some("http://grafana:3000")),
            vec![
                ("Vary", "Origin".to_string()),
                (
                    "Access-Control-Allow-Origin",
                    "http://grafana:3000".to_string()
                )
            ]
        );
        assert!(
            Cors::new(Vec::new())
                .response_headers(Some("http://grafana:3000"))
                .is_empty()
        );
        let pre = c.preflight_headers(Some("http://grafana:3000"), "GET, POST");
        assert!(
            pre.iter()
                .any(|(k, v)| *k == "Access-Control-Allow-Methods" && v == "GET, POST")
        );
    }
}
