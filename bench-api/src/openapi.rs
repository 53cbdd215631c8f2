//! `GET /openapi.json`: the OpenAPI 3.0 description, generated from the route
//! table ([`crate::routes::ROUTES`]) and the schemas below.

use serde_json::{Value, json};

use crate::routes::{Body, ROUTES, Route};

fn status_enum() -> Value {
    json!({"type": "string", "enum": ["pending", "starting", "running", "completed", "failed", "cancelled", "unknown"]})
}

fn schemas() -> Value {
    let nullable_string = json!({"type": "string", "nullable": true});
    let history = json!({
        "type": "array",
        "description": "Status history, oldest first (single-record routes only)",
        "items": {"$ref": "#/components/schemas/StatusChange"}
    });
    json!({
        "Error": {
            "type": "object",
            "description": "Every error answer",
            "required": ["error"],
            "additionalProperties": false,
            "properties": {
                "error": {"type": "string", "description": "What is wrong"},
                "field": {"type": "string", "description": "The request field to blame, as a path (`params.port`)"}
            }
        },
        "Health": {
            "type": "object",
            "required": ["status", "version", "backend"],
            "properties": {
                "status": {"type": "string", "enum": ["ok"]},
                "version": {"type": "string"},
                "backend": {"type": "string", "enum": ["local", "slurm"]},
                "uptime_seconds": {"type": "integer"}
            }
        },
        "Status": status_enum(),
        "StatusChange": {
            "type": "object",
            "required": ["status", "at"],
            "properties": {
                "status": {"$ref": "#/components/schemas/Status"},
                "at": {"type": "string", "format": "date-time"},
                "detail": {"type": "string"}
            }
        },
        "Parameter": {
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"type": "string", "enum": ["integer", "string", "enum", "bool"]},
                "description": nullable_string,
                "default": {"nullable": true, "description": "Used when omitted; absent means required"},
                "min": {"type": "integer"},
                "max": {"type": "integer"},
                "max_length": {"type": "integer", "nullable": true},
                "values": {"type": "array", "items": {"type": "string"}}
            }
        },
        "Recipe": {
            "type": "object",
            "required": ["name", "description", "category", "argv", "resources", "parameters"],
            "properties": {
                "name": {"type": "string"},
                "description": {"type": "string"},
                "category": {"type": "string"},
                "argv": {"type": "array", "items": {"type": "string"}, "description": "argv template; `{param}` elements are substituted as whole arguments"},
                "port": {"oneOf": [{"type": "integer"}, {"type": "string"}], "nullable": true},
                "health_path": nullable_string,
                "startup_timeout_seconds": {"type": "integer"},
                "resources": {
                    "type": "object",
                    "properties": {
                        "nodes": {"type": "integer"},
                        "gpus": {"type": "integer"},
                        "cpus": {"type": "integer"},
                        "memory": nullable_string,
                        "time_limit": nullable_string
                    }
                },
                "parameters": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Parameter"}}
            }
        },
        "RecipeList": {"type": "array", "items": {"$ref": "#/components/schemas/Recipe"}},
        "CreateService": {
            "type": "object",
            "required": ["recipe"],
            "additionalProperties": false,
            "properties": {
                "recipe": {"type": "string", "description": "Recipe name (404 when unknown)"},
                "params": {"type": "object", "description": "Recipe parameters; omitted ones take their defaults", "additionalProperties": true}
            }
        },
        "SetServiceStatus": {
            "type": "object",
            "required": ["status"],
            "additionalProperties": false,
            "properties": {"status": {"type": "string", "enum": ["cancelled"]}}
        },
        "CancelRequest": {
            "type": "object",
            "additionalProperties": false,
            "properties": {"reason": {"type": "string", "description": "Stored in the status history"}}
        },
        "Service": {
            "type": "object",
            "required": ["id", "recipe", "params", "status", "backend", "created_at", "updated_at"],
            "properties": {
                "id": {"type": "string"},
                "recipe": {"type": "string"},
                "params": {"type": "object", "additionalProperties": true},
                "status": {"$ref": "#/components/schemas/Status"},
                "backend": {"type": "string", "enum": ["local", "slurm"]},
                "backend_ref": {"type": "string", "nullable": true, "description": "Process-group id (local) or Slurm job id"},
                "host": nullable_string,
                "port": {"type": "integer", "nullable": true},
                "exit_code": {"type": "integer", "nullable": true, "description": "Exit code once ended (128 + N for signal N)"},
                "detail": nullable_string,
                "created_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": "string", "format": "date-time"},
                "history": history
            }
        },
        "ServiceList": {"type": "array", "items": {"$ref": "#/components/schemas/Service"}},
        "HttpSdTargets": {
            "type": "array",
            "description": "Prometheus HTTP service discovery",
            "items": {
                "type": "object",
                "required": ["targets", "labels"],
                "properties": {
                    "targets": {"type": "array", "items": {"type": "string", "description": "host:port"}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}}
                }
            }
        },
        "CreateRun": create_run_schema(),
        "GoodputSlo": {
            "type": "object",
            "additionalProperties": false,
            "minProperties": 1,
            "description": "Goodput objectives: request_goodput counts the requests meeting every one given",
            "properties": {
                "ttft_ms": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 86400000, "description": "openai_* workloads only"},
                "tpot_ms": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 86400000, "description": "openai_* workloads only"},
                "e2el_ms": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 86400000}
            }
        },
        "GoodputSloHttp": {
            "type": "object",
            "additionalProperties": false,
            "required": ["e2el_ms"],
            "description": "Goodput objective of the http workload (it has no tokens)",
            "properties": {
                "e2el_ms": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 86400000}
            }
        },
        "RunProgress": {
            "type": "object",
            "description": "What the load generator reported last (every second), with elapsed and remaining time",
            "properties": {
                "run_id": {"type": "string"},
                "phase": {"type": "string", "enum": ["warmup", "measuring", "draining"]},
                "elapsed_seconds": {"type": "number"},
                "planned_seconds": {"type": "number"},
                "remaining_seconds": {"type": "number"},
                "requests_completed": {"type": "integer"},
                "requests_failed": {"type": "integer"},
                "warmup_requests": {"type": "integer"},
                "in_flight": {"type": "integer"},
                "clients": {"type": "integer"}
            }
        },
        "Run": {
            "type": "object",
            "required": ["id", "service_id", "status", "duration_seconds", "concurrency", "mode", "workload", "path", "created_at"],
            "properties": {
                "id": {"type": "string"},
                "service_id": {"type": "string"},
                "status": {"$ref": "#/components/schemas/Status"},
                "duration_seconds": {"type": "integer"},
                "concurrency": {"type": "integer"},
                "mode": {"type": "string", "enum": ["closed_loop", "open_loop"]},
                "requests_per_second": {"type": "integer", "nullable": true},
                "workload": {"type": "string", "enum": ["http", "openai_completions", "openai_chat"]},
                "path": {"type": "string"},
                "model": nullable_string,
                "max_tokens": {"type": "integer", "nullable": true},
                "arrivals": {"type": "string", "enum": ["constant", "poisson", "gamma"], "nullable": true},
                "burstiness": {"type": "number", "nullable": true},
                "max_concurrency": {"type": "integer", "nullable": true},
                "warmup_seconds": {"type": "integer"},
                "prompts": {"type": "array", "items": {"type": "string"}, "nullable": true},
                "synthetic_prompt_words": {"type": "integer", "nullable": true},
                "temperature": {"type": "number", "nullable": true},
                "goodput": {"allOf": [{"$ref": "#/components/schemas/GoodputSlo"}], "nullable": true},
                "planned_end_at": {"type": "string", "format": "date-time", "nullable": true, "description": "When the load generator stops sending (start + duration_seconds)"},
                "progress": {"allOf": [{"$ref": "#/components/schemas/RunProgress"}], "nullable": true},
                "created_at": {"type": "string", "format": "date-time"},
                "started_at": {"type": "string", "format": "date-time", "nullable": true},
                "ended_at": {"type": "string", "format": "date-time", "nullable": true},
                "detail": nullable_string,
                "result": {"type": "object", "nullable": true, "description": "The load generator's result file once it ended (vllm bench serve's keys: completed, failed, request_throughput, output_throughput, mean/median/p99_{ttft,tpot,itl,e2el}_ms, …) plus energy_status, energy_joules, joules_per_request, joules_per_output_token, output_tokens_per_joule, mean_power_watts (null with energy_unavailable_reason when not measurable)"},
                "history": history
            }
        },
        "RunList": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}}
    })
}

/// `POST /api/v1/benchmarks`: one variant per load mode (closed, open,
/// open with gamma arrivals) and workload kind (`http`, `openai_*`), so the
/// schema says exactly which fields go together. Not expressible here and
/// checked by the API: `warmup_seconds < duration_seconds`, prompts at most
/// 32 KiB in all.
fn create_run_schema() -> Value {
    let mut variants = Vec::new();
    for (mode, gamma) in [
        ("closed_loop", false),
        ("open_loop", false),
        ("open_loop", true),
    ] {
        for openai in [false, true] {
            let mut props = serde_json::Map::new();
            let mut required = vec!["service_id", "duration_seconds"];
            let mut add = |k: &str, v: Value| {
                props.insert(k.to_string(), v);
            };
            add(
                "service_id",
                json!({"type": "string", "description": "A running service with an endpoint (404 when unknown, 409 when not running or without a port)"}),
            );
            add(
                "duration_seconds",
                json!({"type": "integer", "minimum": 1, "maximum": 86400, "description": "Required: there is no default"}),
            );
            add(
                "warmup_seconds",
                json!({"type": "integer", "minimum": 0, "maximum": 86399, "default": 0, "description": "Leading seconds excluded from the results; less than duration_seconds"}),
            );
            add(
                "path",
                json!({"type": "string", "pattern": "^/[^\\s]*$", "maxLength": 2048, "description": "Request path (default `/`, `/v1/completions` for openai_completions, `/v1/chat/completions` for openai_chat)"}),
            );
            if mode == "closed_loop" {
                add(
                    "mode",
                    json!({"type": "string", "enum": ["closed_loop"], "default": "closed_loop"}),
                );
                add(
                    "concurrency",
                    json!({"type": "integer", "minimum": 1, "maximum": 1024, "default": 1, "description": "Clients, each sending its next request when the last ended"}),
                );
            } else {
                required.extend(["mode", "requests_per_second"]);
                add("mode", json!({"type": "string", "enum": ["open_loop"]}));
                add(
                    "requests_per_second",
                    json!({"type": "integer", "minimum": 1, "maximum": 100000, "description": "Latency measured from the scheduled send time"}),
                );
                add(
                    "max_concurrency",
                    json!({"type": "integer", "minimum": 1, "maximum": 10000, "description": "Most requests in flight; the wait for a free client is reported as queue_wait"}),
                );
                if gamma {
                    required.extend(["arrivals", "burstiness"]);
                    add("arrivals", json!({"type": "string", "enum": ["gamma"]}));
                    add(
                        "burstiness",
                        json!({"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1000, "description": "Gamma shape: < 1 burstier, > 1 steadier"}),
                    );
                } else {
                    add(
                        "arrivals",
                        json!({"type": "string", "enum": ["constant", "poisson"], "default": "poisson"}),
                    );
                }
            }
            if openai {
                required.push("workload");
                add(
                    "workload",
                    json!({"type": "string", "enum": ["openai_completions", "openai_chat"]}),
                );
                add(
                    "model",
                    json!({"type": "string", "minLength": 1, "maxLength": 256}),
                );
                add(
                    "max_tokens",
                    json!({"type": "integer", "minimum": 1, "maximum": 32768}),
                );
                add(
                    "temperature",
                    json!({"type": "number", "minimum": 0, "maximum": 2}),
                );
                add(
                    "prompts",
                    json!({"type": "array", "minItems": 1, "maxItems": 100, "items": {"type": "string", "minLength": 1}, "description": "The prompts (32 KiB in all); exclusive with synthetic_prompt_words"}),
                );
                add(
                    "synthetic_prompt_words",
                    json!({"type": "integer", "minimum": 1, "maximum": 4096, "description": "Synthetic prompts of this many words (default 128 when no prompts)"}),
                );
                add(
                    "goodput",
                    json!({"$ref": "#/components/schemas/GoodputSlo"}),
                );
            } else {
                add(
                    "workload",
                    json!({"type": "string", "enum": ["http"], "default": "http"}),
                );
                add(
                    "goodput",
                    json!({"$ref": "#/components/schemas/GoodputSloHttp"}),
                );
            }
            let mut v = json!({
                "title": format!("{}{}, {}", mode, if gamma { " (gamma arrivals)" } else { "" }, if openai { "openai" } else { "http" }),
                "type": "object",
                "additionalProperties": false,
                "required": required,
                "properties": props,
            });
            if openai {
                v["not"] = json!({"required": ["prompts", "synthetic_prompt_words"]});
            }
            variants.push(v);
        }
    }
    json!({
        "description": "A benchmark run: closed_loop (concurrency) or open_loop (requests_per_second, arrivals, burstiness for gamma, max_concurrency); http or openai_* workloads (model, max_tokens, temperature, prompts or synthetic_prompt_words, goodput ttft/tpot). Fields of another mode or workload are refused (400 naming the field).",
        "oneOf": variants
    })
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn operation(r: &Route) -> Value {
    let mut op = serde_json::Map::new();
    op.insert("summary".into(), json!(r.summary));
    op.insert(
        "operationId".into(),
        json!(
            format!("{:?}", r.handler)
                .chars()
                .fold(String::new(), |mut s, c| {
                    if c.is_uppercase() && !s.is_empty() {
                        s.push('_');
                    }
                    s.push(c.to_ascii_lowercase());
                    s
                })
        ),
    );
    let mut params = Vec::new();
    if r.pattern.contains("{id}") {
        params.push(
            json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}),
        );
    }
    for (name, description) in r.query {
        params.push(json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}}));
    }
    if !params.is_empty() {
        op.insert("parameters".into(), Value::Array(params));
    }
    let (schema, required) = match r.body {
        Body::None => (None, false),
        Body::Json(s) => (Some(s), true),
        Body::OptionalJson(s) => (Some(s), false),
    };
    if let Some(s) = schema {
        op.insert(
            "requestBody".into(),
            json!({
                "required": required,
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{s}")}}}
            }),
        );
    }
    if r.mutating {
        op.insert("security".into(), json!([{"bearer": []}]));
    }
    let mut responses = serde_json::Map::new();
    let ok = match r.response {
        "text" => {
            json!({"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}})
        }
        "any" => {
            json!({"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}})
        }
        name => {
            json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}}})
        }
    };
    responses.insert(r.ok.to_string(), ok);
    if schema.is_some() || !r.query.is_empty() {
        responses.insert(
            "400".into(),
            error_response(
                "Malformed JSON, unknown or missing field, wrong type, value out of range",
            ),
        );
    }
    if r.mutating {
        responses.insert(
            "401".into(),
            error_response("Missing or wrong bearer token (when one is configured)"),
        );
    }
    if r.pattern.contains("{id}") || matches!(r.body, Body::Json("CreateService" | "CreateRun")) {
        responses.insert(
            "404".into(),
            error_response("The id (in the path or the body) does not exist"),
        );
    }
    responses.insert(
        "405".into(),
        error_response("Method not allowed (see the Allow header)"),
    );
    if r.mutating {
        responses.insert(
            "409".into(),
            error_response("The record is not in a state that allows this"),
        );
    }
    if schema.is_some() {
        responses.insert("413".into(), error_response("Body over 1 MiB"));
        responses.insert(
            "415".into(),
            error_response("Content-Type is not application/json"),
        );
    }
    responses.insert("500".into(), error_response("The handler failed (logged)"));
    if matches!(
        r.handler,
        crate::routes::Handler::CreateService
            | crate::routes::Handler::CreateRun
            | crate::routes::Handler::SetServiceStatus
            | crate::routes::Handler::DeleteService
    ) {
        responses.insert(
            "502".into(),
            error_response("The backend (process spawn, sbatch, scancel) failed"),
        );
    }
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for r in ROUTES {
        let entry = paths
            .entry(r.pattern.to_string())
            .or_insert_with(|| json!({}));
        if let Value::Object(ops) = entry {
            ops.insert(r.method.as_str().to_ascii_lowercase(), operation(r));
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "aif-bench-api",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Services and benchmark runs behind the Grafana buttons. Unknown fields, missing required fields, wrong types and out-of-range values are rejected with 400 and the field named; nothing is silently defaulted. Every error is {\"error\", \"field\"?}. Mutating routes need `Authorization: Bearer <token>` when the API has a token file. CORS is answered for the configured origins only; the preferred way is same-origin through Grafana's data-source proxy."
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_and_every_ref_is_described() {
        let doc = document();
        for r in ROUTES {
            let op = &doc["paths"][r.pattern][r.method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{} {}", r.method.as_str(), r.pattern);
        }
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for piece in text.split("#/components/schemas/").skip(1) {
            let name: String = piece.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(schemas.contains_key(&name), "dangling $ref {name}");
        }
    }
}
