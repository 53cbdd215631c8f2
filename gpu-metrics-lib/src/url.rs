//! The one parser of `http://` and `https://` URLs every program of the
//! workspace uses, so they all accept and refuse the same ones and agree on
//! IPv6 brackets and default ports.
//!
//! Built on [`ureq::http::Uri`], with the checks it leaves out: a port is
//! 1..=65535 digits, a fragment is refused (`Uri` would drop it silently),
//! and so is userinfo (`user:password@`): credentials belong in the
//! settings made for them (basic auth, token files), never in a URL that
//! is logged and shown.
//!
//! ```
//! use gpu_metrics::url::{Scheme, parse_http_url};
//!
//! let u = parse_http_url("http://[::1]:9091/metrics?x=1").unwrap();
//! assert_eq!(u.scheme, Scheme::Http);
//! assert_eq!((u.host.as_str(), u.port), ("::1", 9091));
//! assert_eq!(u.path_and_query, "/metrics?x=1");
//! assert_eq!(u.authority(), "[::1]:9091");
//! assert!(parse_http_url("http://user:pw@pgw:9091").is_err());
//! ```

/// `http` or `https` (matched without regard to case, RFC 3986 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `http://`, default port 80.
    Http,
    /// `https://`, default port 443.
    Https,
}

impl Scheme {
    /// `http` or `https`, lower case.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// The port a URL without one means: 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed `scheme://host[:port][/path][?query]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// The scheme.
    pub scheme: Scheme,
    /// The host as written, without the brackets of an IPv6 literal
    /// (`::1`, `pgw.internal`, `10.0.0.1`).
    pub host: String,
    /// The port: the URL's, or the scheme's default.
    pub port: u16,
    /// True when the URL names the port (`http://h:80` does, `http://h`
    /// does not).
    pub port_given: bool,
    /// The path and query as written (`/prefix?x=1`); empty when the URL has
    /// neither (no `/` is invented).
    pub path_and_query: String,
}

impl HttpUrl {
    /// `host[:port]` for a URL or a `Host` header: an IPv6 literal in
    /// brackets, the port left out when it is the scheme's default.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The path without the query (empty when there is none).
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(p, _)| p)
    }

    /// The query without its `?`, when there is one.
    pub fn query(&self) -> Option<&str> {
        self.path_and_query.split_once('?').map(|(_, q)| q)
    }
}

/// Why [`parse_http_url`] refused a URL. The messages say what is wrong, not
/// which URL: callers name it (and the setting it came from).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// No `scheme://` at the start.
    #[error("must start with http:// or https://")]
    NoScheme,
    /// A scheme other than `http` or `https`.
    #[error("has the scheme `{scheme}`; only http:// and https:// are supported")]
    UnsupportedScheme {
        /// The scheme as written.
        scheme: String,
    },
    /// Nothing (or only a port) between `://` and the path.
    #[error("has no host")]
    NoHost,
    /// `user[:password]@` before the host.
    #[error("must not carry credentials (user:password@)")]
    Userinfo,
    /// A port that is not 1..=65535 (or `host:` with nothing after).
    #[error("has an invalid port `{port}` (must be 1..=65535)")]
    BadPort {
        /// The port as written.
        port: String,
    },
    /// A `#fragment` (never sent to a server).
    #[error("must not contain a fragment (#…)")]
    Fragment,
    /// Anything else [`ureq::http::Uri`] refuses: a space or other character
    /// a URL cannot hold, unbalanced brackets, a stray `:`.
    #[error("is not a valid URL: {reason}")]
    Invalid {
        /// What the URI parser said.
        reason: String,
    },
}

/// Parses an `http://` or `https://` URL (scheme in any case) into its
/// parts; see [`HttpUrl`]. Userinfo is refused ([`UrlError::Userinfo`]).
///
/// # Errors
/// [`UrlError`] naming the first thing wrong: the scheme, then the host and
/// port, then the rest.
pub fn parse_http_url(url: &str) -> Result<HttpUrl, UrlError> {
    let (scheme_text, rest) = url.split_once("://").ok_or(UrlError::NoScheme)?;
    let scheme = if scheme_text.eq_ignore_ascii_case("http") {
        Scheme::Http
    } else if scheme_text.eq_ignore_ascii_case("https") {
        Scheme::Https
    } else if scheme_text.is_empty() || scheme_text.contains(['/', '?', '#', '@', '[']) {
        return Err(UrlError::NoScheme);
    } else {
        return Err(UrlError::UnsupportedScheme {
            scheme: scheme_text.to_string(),
        });
    };
    let authority_text = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority_text.contains('@') {
        return Err(UrlError::Userinfo);
    }
    if authority_text.is_empty() || authority_text.starts_with(':') || authority_text == "[]" {
        return Err(UrlError::NoHost);
    }
    if url.contains('#') {
        return Err(UrlError::Fragment);
    }
    let uri: ureq::http::Uri =
        url.parse()
            .map_err(|e: ureq::http::uri::InvalidUri| UrlError::Invalid {
                reason: e.to_string(),
            })?;
    let authority = uri.authority().ok_or(UrlError::NoHost)?;
    let bracketed = authority.host();
    let host = bracketed
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(bracketed);
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    // `Uri` checks neither that a port is digits nor its range.
    let after_host = &authority.as_str()[bracketed.len()..];
    let (port, port_given) = match after_host.strip_prefix(':') {
        None if after_host.is_empty() => (scheme.default_port(), false),
        None => {
            return Err(UrlError::Invalid {
                reason: format!("`{after_host}` after the host"),
            });
        }
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => (n, true),
            _ => {
                return Err(UrlError::BadPort {
                    port: p.to_string(),
                });
            }
        },
    };
    let after_authority = &rest[authority_text.len()..];
    let path_and_query = if after_authority.is_empty() {
        String::new()
    } else {
        uri.path_and_query()
            .map_or_else(String::new, |p| p.as_str().to_string())
    };
    Ok(HttpUrl {
        scheme,
        host: host.to_string(),
        port,
        port_given,
        path_and_query,
    })
}

/// `http://host[:port][/path]` as the tunnels need it (plain http only): host
/// (an IPv6 literal without brackets), port (default 80) and path without a
/// trailing `/`. `None` for anything else (https, userinfo, a bad port, a
/// fragment); callers name the setting in their own error.
pub fn split_http_url(url: &str) -> Option<(String, u16, String)> {
    let u = parse_http_url(url).ok()?;
    if u.scheme != Scheme::Http {
        return None;
    }
    let path = u.path_and_query.trim_end_matches('/').to_string();
    Some((u.host, u.port, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> HttpUrl {
        parse_http_url(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn ipv6_hosts_lose_their_brackets_and_keep_their_port() {
        let u = ok("http://[::1]:9091/x");
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.port_given),
            (Scheme::Http, "::1", 9091, true)
        );
        assert_eq!(u.path_and_query, "/x");
        assert_eq!(u.authority(), "[::1]:9091");
        let u = ok("http://[fe80::1]");
        assert_eq!(
            (u.host.as_str(), u.port, u.port_given),
            ("fe80::1", 80, false)
        );
        assert_eq!(u.authority(), "[fe80::1]");
        for bad in [
            "http://[::1",
            "http://::1]:80",
            "http://[::1]x",
            "http://[]:80",
        ] {
            assert!(parse_http_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports_default_by_scheme_and_are_checked() {
        let u = ok("http://pgw");
        assert_eq!(
            (u.port, u.port_given, u.path_and_query.as_str()),
            (80, false, "")
        );
        assert_eq!(ok("https://pgw/").port, 443);
        assert_eq!(ok("https://pgw/").path_and_query, "/");
        assert_eq!(ok("http://pgw:80").authority(), "pgw");
        assert_eq!(ok("https://pgw:80").authority(), "pgw:80");
        assert!(ok("http://pgw:80").port_given);
        for (bad, port) in [
            ("http://pgw:x", "x"),
            ("http://pgw:", ""),
            ("http://pgw:0", "0"),
            ("http://pgw:65536/p", "65536"),
            ("http://pgw:+80", "+80"),
            ("http://[::1]:99999", "99999"),
        ] {
            assert_eq!(
                parse_http_url(bad),
                Err(UrlError::BadPort { port: port.into() }),
                "{bad}"
            );
        }
    }

    #[test]
    fn userinfo_is_refused() {
        for bad in ["http://u:p@pgw:9091", "http://u@pgw", "https://@pgw/x"] {
            assert_eq!(parse_http_url(bad), Err(UrlError::Userinfo), "{bad}");
        }
        // An `@` in the path is no userinfo.
        assert_eq!(ok("http://pgw/a@b").path_and_query, "/a@b");
    }

    #[test]
    fn a_host_is_required() {
        for bad in [
            "http://",
            "http:///x",
            "http://:9091",
            "http://:9091/x",
            "http://?q",
        ] {
            assert_eq!(parse_http_url(bad), Err(UrlError::NoHost), "{bad}");
        }
    }

    #[test]
    fn only_http_and_https_in_any_case() {
        assert_eq!(parse_http_url("pgw:9091"), Err(UrlError::NoScheme));
        assert_eq!(parse_http_url("/x"), Err(UrlError::NoScheme));
        assert_eq!(parse_http_url("://pgw"), Err(UrlError::NoScheme));
        assert_eq!(
            parse_http_url("ftp://pgw"),
            Err(UrlError::UnsupportedScheme {
                scheme: "ftp".into()
            })
        );
        let e = parse_http_url("unix://x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "has the scheme `unix`; only http:// and https:// are supported"
        );
        let u = ok("HTTP://Pgw:9091/P");
        assert_eq!(
            (u.scheme, u.host.as_str(), u.path_and_query.as_str()),
            (Scheme::Http, "Pgw", "/P")
        );
        assert_eq!(ok("HttpS://pgw").scheme, Scheme::Https);
        assert_eq!(ok("HttpS://pgw").scheme.to_string(), "https");
    }

    #[test]
    fn path_query_fragment_and_bad_characters() {
        let u = ok("http://pgw:9091/a/b?x=1&y");
        assert_eq!((u.path(), u.query()), ("/a/b", Some("x=1&y")));
        let u = ok("http://pgw?x=1");
        assert_eq!(
            (u.path_and_query.as_str(), u.path(), u.query()),
            ("?x=1", "", Some("x=1"))
        );
        assert_eq!(parse_http_url("http://pgw/p#f"), Err(UrlError::Fragment));
        for bad in [
            "http://p gw",
            "http://pgw/a b",
            "http://a:1:2",
            "http://pgw/\n",
        ] {
            assert!(
                matches!(parse_http_url(bad), Err(UrlError::Invalid { .. })),
                "{bad}: {:?}",
                parse_http_url(bad)
            );
        }
    }
}
