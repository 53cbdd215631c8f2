//! The route table: one list that both the router and `GET /openapi.json` are
//! derived from, so the description cannot drift from what is served.

/// HTTP methods the API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
    /// DELETE.
    Delete,
}

impl Method {
    /// Upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }

    /// Parses an upper-case name.
    pub fn parse(s: &str) -> Option<Method> {
        match s {
            "GET" => Some(Method::Get),
            "POST" => Some(Method::Post),
            "DELETE" => Some(Method::Delete),
            _ => None,
        }
    }
}

/// Which handler answers a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// `GET /health`.
    Health,
    /// `GET /api/v1/recipes`.
    ListRecipes,
    /// `GET /api/v1/services`.
    ListServices,
    /// `POST /api/v1/services`.
    CreateService,
    /// `GET /api/v1/services/targets`.
    ServiceTargets,
    /// `GET /api/v1/services/{id}`.
    GetService,
    /// `POST /api/v1/services/{id}/status`.
    SetServiceStatus,
    /// `DELETE /api/v1/services/{id}`.
    DeleteService,
    /// `GET /api/v1/benchmarks`.
    ListRuns,
    /// `POST /api/v1/benchmarks`.
    CreateRun,
    /// `GET /api/v1/benchmarks/{id}`.
    GetRun,
    /// `POST /api/v1/benchmarks/{id}/cancel`.
    CancelRun,
    /// `GET /metrics`.
    Metrics,
    /// `GET /openapi.json`.
    OpenApi,
}

/// What a route takes as a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Nothing (a body sent anyway is ignored).
    None,
    /// A JSON body of this schema is required (`Content-Type: application/json`).
    Json(&'static str),
    /// A JSON body of this schema may be sent; an empty body is fine.
    OptionalJson(&'static str),
}

/// One route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Method.
    pub method: Method,
    /// Path pattern; `{id}` matches one path segment.
    pub pattern: &'static str,
    /// Handler.
    pub handler: Handler,
    /// Needs the bearer token when one is configured.
    pub mutating: bool,
    /// Request body.
    pub body: Body,
    /// Query parameters: name and description.
    pub query: &'static [(&'static str, &'static str)],
    /// Success status.
    pub ok: u16,
    /// Success schema (a component name), or `text` / `any`.
    pub response: &'static str,
    /// One line for the OpenAPI description.
    pub summary: &'static str,
}

const fn route(method: Method, pattern: &'static str, handler: Handler) -> Route {
    Route {
        method,
        pattern,
        handler,
        mutating: !matches!(method, Method::Get),
        body: Body::None,
        query: &[],
        ok: 200,
        response: "any",
        summary: "",
    }
}

/// Every route the API serves.
pub static ROUTES: &[Route] = &[
    Route {
        response: "Health",
        summary: "Liveness and version",
        ..route(Method::Get, "/health", Handler::Health)
    },
    Route {
        response: "RecipeList",
        summary: "Service recipes: what can be started",
        ..route(Method::Get, "/api/v1/recipes", Handler::ListRecipes)
    },
    Route {
        response: "ServiceList",
        query: &[(
            "status",
            "Only services in these statuses (comma-separated), e.g. `running`",
        )],
        summary: "Services, oldest first (feeds the Grafana \"Service\" dropdown)",
        ..route(Method::Get, "/api/v1/services", Handler::ListServices)
    },
    Route {
        body: Body::Json("CreateService"),
        ok: 201,
        response: "Service",
        summary: "Start a service from a recipe",
        ..route(Method::Post, "/api/v1/services", Handler::CreateService)
    },
    Route {
        response: "HttpSdTargets",
        summary: "Prometheus HTTP service discovery: running services with an endpoint",
        ..route(
            Method::Get,
            "/api/v1/services/targets",
            Handler::ServiceTargets,
        )
    },
    Route {
        response: "Service",
        summary: "One service with its status history",
        ..route(Method::Get, "/api/v1/services/{id}", Handler::GetService)
    },
    Route {
        body: Body::Json("SetServiceStatus"),
        response: "Service",
        summary: "Cancel a service: {\"status\": \"cancelled\"} is the only status a client may set",
        ..route(
            Method::Post,
            "/api/v1/services/{id}/status",
            Handler::SetServiceStatus,
        )
    },
    Route {
        response: "Service",
        summary: "Cancel a service (the record stays, with status `cancelled`)",
        ..route(
            Method::Delete,
            "/api/v1/services/{id}",
            Handler::DeleteService,
        )
    },
    Route {
        response: "RunList",
        query: &[
            ("service_id", "Only runs of this service"),
            ("status", "Only runs in these statuses (comma-separated)"),
        ],
        summary: "Benchmark runs, oldest first",
        ..route(Method::Get, "/api/v1/benchmarks", Handler::ListRuns)
    },
    Route {
        body: Body::Json("CreateRun"),
        ok: 201,
        response: "Run",
        summary: "Start a benchmark run against a running service",
        ..route(Method::Post, "/api/v1/benchmarks", Handler::CreateRun)
    },
    Route {
        response: "Run",
        summary: "One run with its results and status history",
        ..route(Method::Get, "/api/v1/benchmarks/{id}", Handler::GetRun)
    },
    Route {
        body: Body::OptionalJson("CancelRequest"),
        response: "Run",
        summary: "Cancel a run",
        ..route(
            Method::Post,
            "/api/v1/benchmarks/{id}/cancel",
            Handler::CancelRun,
        )
    },
    Route {
        response: "text",
        summary: "Prometheus metrics: the API's own, service statuses, benchmark run states",
        ..route(Method::Get, "/metrics", Handler::Metrics)
    },
    Route {
        response: "any",
        summary: "This OpenAPI 3.0 description",
        ..route(Method::Get, "/openapi.json", Handler::OpenApi)
    },
];

/// The outcome of looking a request up.
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    /// A route, and the `{id}` segment when the pattern has one.
    Found(&'static Route, Option<String>),
    /// The path exists with other methods (for `Allow`).
    MethodNotAllowed(Vec<Method>),
    /// No such path.
    NotFound,
}

fn match_pattern(pattern: &str, path: &str) -> Option<(usize, Option<String>)> {
    let mut id = None;
    let mut literals = 0;
    let mut p = pattern.split('/');
    let mut s = path.split('/');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return Some((literals, id)),
            (Some("{id}"), Some(seg)) if !seg.is_empty() => id = Some(seg.to_string()),
            (Some(a), Some(b)) if a == b => literals += 1,
            _ => return None,
        }
    }
}

/// The routes whose pattern matches `path` best (most literal segments).
fn best(path: &str) -> Vec<(&'static Route, Option<String>)> {
    let mut found: Vec<(usize, &'static Route, Option<String>)> = ROUTES
        .iter()
        .filter_map(|r| match_pattern(r.pattern, path).map(|(n, id)| (n, r, id)))
        .collect();
    let top = found.iter().map(|f| f.0).max().unwrap_or(0);
    found.retain(|f| f.0 == top);
    found.into_iter().map(|(_, r, id)| (r, id)).collect()
}

/// Looks up `method path` (`path` without the query string).
pub fn resolve(method: Option<Method>, path: &str) -> Match {
    let candidates = best(path);
    if candidates.is_empty() {
        return Match::NotFound;
    }
    if let Some(m) = method
        && let Some((r, id)) = candidates.iter().find(|(r, _)| r.method == m)
    {
        return Match::Found(r, id.clone());
    }
    Match::MethodNotAllowed(candidates.iter().map(|(r, _)| r.method).collect())
}

/// The methods `path` answers (empty when it is not a path of the API).
pub fn methods_for(path: &str) -> Vec<Method> {
    best(path).iter().map(|(r, _)| r.method).collect()
}

/// `GET, POST, OPTIONS` for an `Allow` header.
pub fn allow_header(methods: &[Method]) -> String {
    let mut names: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
    names.push("OPTIONS");
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_beats_id() {
        match resolve(Some(Method::Get), "/api/v1/services/targets") {
            Match::Found(r, None) => assert_eq!(r.handler, Handler::ServiceTargets),
            other => panic!("{other:?}"),
        }
        match resolve(Some(Method::Get), "/api/v1/services/svc-1") {
            Match::Found(r, Some(id)) => {
                assert_eq!((r.handler, id.as_str()), (Handler::GetService, "svc-1"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            resolve(Some(Method::Post), "/api/v1/services/targets"),
            Match::MethodNotAllowed(vec![Method::Get])
        );
        assert_eq!(
            resolve(Some(Method::Post), "/api/v1/services/x"),
            Match::MethodNotAllowed(vec![Method::Get, Method::Delete])
        );
        assert_eq!(resolve(Some(Method::Get), "/api/v1/nope"), Match::NotFound);
        assert_eq!(
            resolve(Some(Method::Get), "/api/v1/services/"),
            Match::NotFound
        );
        assert_eq!(
            resolve(Some(Method::Get), "/api/v1/services/a/b"),
            Match::NotFound
        );
        assert_eq!(
            resolve(None, "/health"),
            Match::MethodNotAllowed(vec![Method::Get])
        );
    }

    #[test]
    fn every_pattern_resolves_to_itself() {
        for r in ROUTES {
            let path = r.pattern.replace("{id}", "x-1");
            match resolve(Some(r.method), &path) {
                Match::Found(found, _) => assert_eq!(found.handler, r.handler),
                other => panic!("{} {}: {other:?}", r.method.as_str(), r.pattern),
            }
        }
    }
}
