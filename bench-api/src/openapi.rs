//! `GET /openapi.json`: the OpenAPI 3.0 description, generated from the route
//! table ([`crate::routes::ROUTES`]), the recipes and the schemas below.
//!
//! It is meant to be exact (checked by schemathesis with `--checks all`):
//! whatever it allows the API accepts, whatever it forbids the API refuses.
//! So string rules are patterns (`path`, `reason`, recipe parameters), a body
//! whose fields depend on a choice (`CreateRun`: `mode`, `workload`) is a
//! `oneOf` with one object per combination ([`choice_variants`]),
//! `CreateService` is one object per recipe with that recipe's parameters,
//! security is declared only when a token is configured, and `Location`,
//! `Allow` and `WWW-Authenticate` are declared where they are sent. Links
//! from each create route to the routes of the created record (and from a
//! service to runs against it) let a stateful test reach every route.

use serde_json::{Map, Value, json};

use crate::backend::Runnable;
use crate::limits;
use crate::model::Status;
use crate::recipes::Catalogue;
use crate::routes::{Body, Handler, ROUTES, Route};

/// No control character (Unicode `Cc`), as `char::is_control` sees it.
const PRINTABLE: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";

/// An absolute file path: `/`, then no control character.
const ABSOLUTE_PATH: &str = "^/[^\\u0000-\\u001f\\u007f-\\u009f]*$";

/// `sweep` of a run whose load `max` is limited by `limit`.
fn sweep_schema(limit: limits::Limit, what: &str) -> Value {
    let p = limits::SWEEP_PERCENT;
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["max"],
        "properties": {
            "max": {"type": "integer", "minimum": limit.min, "maximum": limit.max, "description": what},
            "target_percent": {"type": "number", "minimum": p.min, "exclusiveMinimum": p.exclusive_min, "maximum": p.max, "default": 99, "description": "Percent of requests that must meet every goodput objective"},
            "tolerance_percent": {"type": "number", "minimum": p.min, "exclusiveMinimum": p.exclusive_min, "maximum": p.max, "default": 5, "description": "The bisection ends when its bounds are this close"}
        }
    })
}

/// A request path: `/`, then no control character and no space.
const REQUEST_PATH: &str = "^/[^\\u0000-\\u0020\\u007f-\\u009f]*$";

fn status_enum() -> Value {
    json!({"type": "string", "enum": Status::ALL.map(|s| s.as_str())})
}

/// `a` or `a,b,…` of statuses, no spaces (what `?status=` accepts).
fn status_list_pattern() -> String {
    let one = format!("({})", Status::ALL.map(|s| s.as_str()).join("|"));
    format!("^{one}(,{one})*$")
}

/// The schema of a query parameter, by name.
fn query_schema(name: &str) -> Value {
    match name {
        "status" => json!({"type": "string", "pattern": status_list_pattern()}),
        _ => json!({"type": "string"}),
    }
}

/// One choice of a body: a field whose value decides which other fields the
/// body may (or must) hold. The first value is the default (the field may
/// be omitted for it).
struct Choice {
    field: &'static str,
    /// `(value, fields only this value takes, which of those are required)`.
    values: &'static [(
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
    )],
}

/// `CreateRun`'s choices. A field listed under a value is refused (400) with
/// any other value; a field not listed anywhere is shared by all.
const CREATE_RUN_CHOICES: &[Choice] = &[
    Choice {
        field: "mode",
        values: &[
            ("closed_loop", &["concurrency"], &[]),
            (
                "open_loop",
                &["requests_per_second", "max_concurrency"],
                &["requests_per_second"],
            ),
        ],
    },
    // Open loop only: `create_run` drops it from the closed-loop variants.
    Choice {
        field: "arrivals",
        values: &[
            ("poisson", &[], &[]),
            ("constant", &[], &[]),
            ("gamma", &["burstiness"], &["burstiness"]),
        ],
    },
    Choice {
        field: "workload",
        values: &[
            ("http", &[], &[]),
            ("openai_completions", OPENAI_FIELDS, &[]),
            ("openai_chat", OPENAI_FIELDS, &[]),
        ],
    },
];

/// The fields only the OpenAI workloads take.
const OPENAI_FIELDS: &[&str] = &[
    "model",
    "max_tokens",
    "temperature",
    "prompts",
    "synthetic_prompt_words",
    "dataset",
    "tokenizer_path",
];

/// `{"$ref": "#/components/schemas/NAME"}`.
fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// A body whose `dataset` is of one of `kinds` (and holds `also`).
fn dataset_of(kinds: &[&str], also: &[&str]) -> Value {
    let mut dataset = json!({"properties": {"kind": {"enum": kinds}}});
    if !also.is_empty() {
        dataset["required"] = json!(also);
    }
    json!({"properties": {"dataset": dataset}})
}

/// `CreateRun`: [`choice_variants`] of [`CREATE_RUN_CHOICES`], then what the
/// choices alone cannot say: closed-loop variants take no `arrivals` (only
/// its default combination is kept), `http` variants take the goodput
/// objective without token latencies, and OpenAI variants take `prompts` or
/// `synthetic_prompt_words`, not both.
fn create_run() -> Value {
    let openai_goodput = json!({"$ref": "#/components/schemas/GoodputSlo"});
    let mut v = choice_variants(
        &json!({
            "service_id": {"type": "string", "description": "A running service with an endpoint (404 when unknown, 409 when not running or without a port)"},
            "duration_seconds": {"type": "integer", "minimum": limits::DURATION_SECONDS.min, "maximum": limits::DURATION_SECONDS.max, "description": "Measured time, after the warm-up. Required: there is no default"},
            "warmup_seconds": {"type": "integer", "minimum": limits::WARMUP_SECONDS.min, "maximum": limits::WARMUP_SECONDS.max, "default": 0, "description": "Load sent before duration_seconds and excluded from the results"},
            "concurrency": {"type": "integer", "minimum": limits::CONCURRENCY.min, "maximum": limits::CONCURRENCY.max, "default": 1, "description": "Clients, each sending its next request when the last ended"},
            "mode": {"type": "string", "description": "closed_loop: `concurrency` clients back to back; open_loop: `requests_per_second`, latency from the scheduled send time"},
            "requests_per_second": {"type": "integer", "minimum": limits::REQUESTS_PER_SECOND.min, "maximum": limits::REQUESTS_PER_SECOND.max},
            "max_concurrency": {"type": "integer", "minimum": limits::MAX_CONCURRENCY.min, "maximum": limits::MAX_CONCURRENCY.max, "description": "Most requests in flight; the wait for a free client is reported as queue_wait"},
            "arrivals": {"type": "string", "description": "How open-loop requests arrive (as vllm bench serve draws them)"},
            "burstiness": {"type": "number", "minimum": limits::BURSTINESS.min, "exclusiveMinimum": limits::BURSTINESS.exclusive_min, "maximum": limits::BURSTINESS.max, "description": "Gamma shape: < 1 burstier, > 1 steadier"},
            "workload": {"type": "string"},
            "path": {"type": "string", "maxLength": limits::PATH_CHARS.max, "pattern": REQUEST_PATH, "description": "Request path (default `/`, `/v1/completions` for openai_completions, `/v1/chat/completions` for openai_chat)"},
            "model": {"type": "string", "minLength": limits::MODEL_CHARS.min, "maxLength": limits::MODEL_CHARS.max, "pattern": PRINTABLE},
            "max_tokens": {"type": "integer", "minimum": limits::MAX_TOKENS.min, "maximum": limits::MAX_TOKENS.max},
            "temperature": {"type": "number", "minimum": limits::TEMPERATURE.min, "maximum": limits::TEMPERATURE.max},
            "prompts": {"type": "array", "minItems": limits::PROMPTS.min, "maxItems": limits::PROMPTS.max, "items": {"type": "string", "minLength": limits::PROMPT_CHARS.min, "maxLength": limits::PROMPT_CHARS.max, "pattern": "^[^\\u0000]*$"}},
            "synthetic_prompt_words": {"type": "integer", "minimum": limits::SYNTHETIC_PROMPT_WORDS.min, "maximum": limits::SYNTHETIC_PROMPT_WORDS.max, "description": "Synthetic prompts of this many words (default 128 when no prompts)"},
            "goodput": openai_goodput,
            "load_nodes": {"type": "integer", "minimum": limits::LOAD_NODES.min, "maximum": limits::LOAD_NODES.max, "default": 1, "description": "Nodes the load is sent from (Slurm backends): one aif-loadgen per node in one job, each with its share of concurrency, requests_per_second and max_concurrency (each node needs at least one client), started together; percentiles come from the merged histograms, per-node counts are in the result's `nodes`; 1 with `sweep`"},
            "tokenizer_path": {"type": "string", "minLength": limits::DATASET_PATH_CHARS.min, "maxLength": limits::DATASET_PATH_CHARS.max, "pattern": ABSOLUTE_PATH, "description": "A Hugging Face tokenizer.json on the load nodes: prompt and output tokens counted with it (output_token_source `tokenizer`) instead of the server's usage"},
            "dataset": {"description": "Prompts from a dataset instead of `prompts` or `synthetic_prompt_words` (files on the load nodes)"},
            "sweep": {"description": "An SLO capacity search from the mode's load (requests_per_second or concurrency) up to `max`: duration_seconds and warmup_seconds are each step's; needs `goodput`; the result is the knee step's with `sweep` (steps, knee)"}
        }),
        &["service_id", "duration_seconds"],
        CREATE_RUN_CHOICES,
    );
    if let Some(variants) = v["oneOf"].as_array_mut() {
        variants.retain(|x| {
            x["properties"]["mode"]["enum"][0] == "open_loop"
                || x["properties"]["arrivals"]["enum"][0] == "poisson"
        });
        for x in variants.iter_mut() {
            if x["properties"]["mode"]["enum"][0] == "closed_loop"
                && let Some(p) = x["properties"].as_object_mut()
            {
                p.remove("arrivals");
            }
            let closed = x["properties"]["mode"]["enum"][0] == "closed_loop";
            x["properties"]["sweep"] = schema_ref(if closed {
                "SweepClosedLoop"
            } else {
                "SweepOpenLoop"
            });
            // A sweep needs an objective to search for.
            x["anyOf"] = json!([{"not": {"required": ["sweep"]}}, {"required": ["goodput"]}]);
            if x["properties"]["workload"]["enum"][0] == "http" {
                x["properties"]["goodput"] = json!({"$ref": "#/components/schemas/GoodputSloHttp"});
            } else {
                // A trace is its own load: closed-loop variants only.
                let mut kinds = vec![schema_ref("DatasetRandom"), schema_ref("DatasetShareGpt")];
                if closed {
                    kinds.push(schema_ref("DatasetTrace"));
                }
                x["properties"]["dataset"] = json!({"oneOf": kinds});
                let mut excluded = vec![
                    json!({"required": ["prompts", "synthetic_prompt_words"]}),
                    json!({"required": ["prompts", "dataset"]}),
                    json!({"required": ["synthetic_prompt_words", "dataset"]}),
                    // Datasets that set max_tokens per request.
                    json!({"allOf": [{"required": ["dataset", "max_tokens"]}, dataset_of(&["random", "trace"], &[])]}),
                    json!({"allOf": [{"required": ["dataset", "max_tokens"]}, dataset_of(&["sharegpt"], &["output_len"])]}),
                ];
                if closed {
                    for other in ["concurrency", "sweep"] {
                        excluded.push(json!({"allOf": [{"required": ["dataset", other]}, dataset_of(&["trace"], &[])]}));
                    }
                }
                x["not"] = json!({"anyOf": excluded});
            }
        }
    }
    v
}

/// One object schema per combination of the choices' values (OpenAPI 3.0 has
/// no `if`/`then`): the shared properties, each choice field fixed to one
/// value (required unless it is the default), and the fields that value
/// takes. Exactly one variant matches a valid body.
fn choice_variants(properties: &Value, required: &[&str], choices: &[Choice]) -> Value {
    let props = properties.as_object().cloned().unwrap_or_default();
    let owned: Vec<&str> = choices
        .iter()
        .flat_map(|c| c.values.iter().flat_map(|v| v.1.iter().copied()))
        .collect();
    let mut variants: Vec<(Map<String, Value>, Vec<String>)> = vec![(
        props
            .iter()
            .filter(|(k, _)| !owned.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        required.iter().map(|r| r.to_string()).collect(),
    )];
    for choice in choices {
        let mut next = Vec::new();
        for (base_props, base_req) in &variants {
            for (i, (value, fields, needed)) in choice.values.iter().enumerate() {
                let mut p = base_props.clone();
                let mut r = base_req.clone();
                let mut field_schema = props.get(choice.field).cloned().unwrap_or(json!({}));
                if let Some(o) = field_schema.as_object_mut() {
                    o.insert("enum".into(), json!([value]));
                    o.remove("default");
                    if i == 0 {
                        o.insert("default".into(), json!(value));
                    }
                }
                p.insert(choice.field.to_string(), field_schema);
                if i > 0 {
                    r.push(choice.field.to_string());
                }
                for f in *fields {
                    if let Some(v) = props.get(*f) {
                        p.insert((*f).to_string(), v.clone());
                    }
                }
                r.extend(needed.iter().map(|n| n.to_string()));
                next.push((p, r));
            }
        }
        variants = next;
    }
    let one_of: Vec<Value> = variants
        .into_iter()
        .map(|(p, r)| {
            json!({
                "type": "object",
                "required": r,
                "additionalProperties": false,
                "properties": p,
            })
        })
        .collect();
    json!({"oneOf": one_of})
}

/// `CreateService`: one object per recipe, `params` holding exactly that
/// recipe's parameters (required when they have no default).
fn create_service(recipes: &Catalogue) -> Value {
    let variants: Vec<Value> = recipes
        .all()
        .map(|r| {
            let props: Map<String, Value> = r
                .parameters
                .iter()
                .map(|(k, p)| (k.clone(), p.json_schema()))
                .collect();
            let needed: Vec<&String> = r
                .parameters
                .iter()
                .filter(|(_, p)| p.is_required())
                .map(|(k, _)| k)
                .collect();
            let mut params = json!({
                "type": "object",
                "description": format!("Parameters of recipe `{}`; omitted ones take their defaults", r.name),
                "additionalProperties": false,
                "properties": props,
            });
            if !needed.is_empty() {
                params["required"] = json!(needed);
            }
            let mut required = vec!["recipe"];
            if !needed.is_empty() {
                required.push("params");
            }
            json!({
                "type": "object",
                "title": r.name,
                "required": required,
                "additionalProperties": false,
                "properties": {
                    "recipe": {"type": "string", "enum": [r.name], "description": r.description},
                    "params": params,
                }
            })
        })
        .collect();
    json!({"oneOf": variants, "description": "A recipe (see GET /api/v1/recipes) and its parameters"})
}

fn schemas(recipes: &Catalogue) -> Value {
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
                "backend": {"type": "string", "enum": ["local", "slurm", "slurm-rest"]},
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
            "required": ["name", "description", "category", "argv", "resources", "parameters", "runnable", "runnable_reason"],
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
                "parameters": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Parameter"}},
                "source": {"type": "string", "description": "`builtin` (compiled into the binary) or the file it was loaded from"},
                "runnable": {
                    "type": "string",
                    "enum": Runnable::ALL.map(Runnable::as_str),
                    "description": "Whether this API's backend can run the recipe: `yes` (its program was found), `no` (it is missing: POST /api/v1/services answers 409), `unknown` (not checked: a Slurm job looks its program up on the compute node)"
                },
                "runnable_reason": {"type": "string", "description": "Why `runnable` is what it is (the program's path, what is missing, why it was not checked)"}
            }
        },
        "RecipeList": {"type": "array", "items": {"$ref": "#/components/schemas/Recipe"}},
        "CreateService": create_service(recipes),
        "SetServiceStatus": {
            "type": "object",
            "required": ["status"],
            "additionalProperties": false,
            "properties": {"status": {"type": "string", "enum": ["cancelled"]}}
        },
        "CancelRequest": {
            "type": "object",
            "additionalProperties": false,
            "properties": {"reason": {"type": "string", "maxLength": limits::REASON_CHARS.max, "pattern": PRINTABLE, "description": "Stored in the status history"}}
        },
        "Service": {
            "type": "object",
            "required": ["id", "recipe", "params", "status", "backend", "created_at", "updated_at"],
            "properties": {
                "id": {"type": "string"},
                "recipe": {"type": "string"},
                "params": {"type": "object", "additionalProperties": true},
                "status": {"$ref": "#/components/schemas/Status"},
                "backend": {"type": "string", "enum": ["local", "slurm", "slurm-rest"]},
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
        "CreateRun": create_run(),
        "GoodputSlo": {
            "type": "object",
            "additionalProperties": false,
            "minProperties": 1,
            "description": "Goodput objectives: request_goodput counts the requests meeting every one given",
            "properties": {
                "ttft_ms": {"type": "number", "minimum": limits::GOODPUT_MS.min, "exclusiveMinimum": limits::GOODPUT_MS.exclusive_min, "maximum": limits::GOODPUT_MS.max, "description": "openai_* workloads only"},
                "tpot_ms": {"type": "number", "minimum": limits::GOODPUT_MS.min, "exclusiveMinimum": limits::GOODPUT_MS.exclusive_min, "maximum": limits::GOODPUT_MS.max, "description": "openai_* workloads only"},
                "e2el_ms": {"type": "number", "minimum": limits::GOODPUT_MS.min, "exclusiveMinimum": limits::GOODPUT_MS.exclusive_min, "maximum": limits::GOODPUT_MS.max}
            }
        },
        "GoodputSloHttp": {
            "type": "object",
            "additionalProperties": false,
            "required": ["e2el_ms"],
            "description": "Goodput objective of the http workload (it has no tokens)",
            "properties": {
                "e2el_ms": {"type": "number", "minimum": limits::GOODPUT_MS.min, "exclusiveMinimum": limits::GOODPUT_MS.exclusive_min, "maximum": limits::GOODPUT_MS.max}
            }
        },
        "DatasetRandom": {
            "type": "object",
            "additionalProperties": false,
            "required": ["kind"],
            "description": "vllm bench serve's random dataset (words stand for tokens); sets each request's max_tokens",
            "properties": {
                "kind": {"type": "string", "enum": ["random"]},
                "input_len": {"type": "integer", "minimum": limits::DATASET_INPUT_LEN.min, "maximum": limits::DATASET_INPUT_LEN.max, "default": 1024},
                "output_len": {"type": "integer", "minimum": limits::DATASET_OUTPUT_LEN.min, "maximum": limits::DATASET_OUTPUT_LEN.max, "default": 128},
                "range_ratio": {"type": "number", "minimum": 0, "maximum": 1, "exclusiveMaximum": true, "default": 0},
                "prefix_len": {"type": "integer", "minimum": limits::DATASET_PREFIX_LEN.min, "maximum": limits::DATASET_PREFIX_LEN.max, "default": 0}
            }
        },
        "DatasetShareGpt": {
            "type": "object",
            "additionalProperties": false,
            "required": ["kind", "path"],
            "description": "A ShareGPT JSON file on the load nodes: the first human turn of each conversation is the prompt",
            "properties": {
                "kind": {"type": "string", "enum": ["sharegpt"]},
                "path": {"type": "string", "minLength": limits::DATASET_PATH_CHARS.min, "maxLength": limits::DATASET_PATH_CHARS.max, "pattern": ABSOLUTE_PATH},
                "output_len": {
                    "description": "Each request's max_tokens: a number, or \"reference\" for the reference answer's length (absent: max_tokens)",
                    "oneOf": [
                        {"type": "integer", "minimum": limits::DATASET_OUTPUT_LEN.min, "maximum": limits::DATASET_OUTPUT_LEN.max},
                        {"type": "string", "enum": ["reference"]}
                    ]
                }
            }
        },
        "DatasetTrace": {
            "type": "object",
            "additionalProperties": false,
            "required": ["kind", "path"],
            "description": "A Mooncake-layout JSONL trace on the load nodes (timestamp ms, input_length, output_length), replayed at its own times; lateness in the result",
            "properties": {
                "kind": {"type": "string", "enum": ["trace"]},
                "path": {"type": "string", "minLength": limits::DATASET_PATH_CHARS.min, "maxLength": limits::DATASET_PATH_CHARS.max, "pattern": ABSOLUTE_PATH}
            }
        },
        "SweepOpenLoop": sweep_schema(limits::SWEEP_MAX_RATE, "the highest request rate (at or below requests_per_second: that rate alone)"),
        "SweepClosedLoop": sweep_schema(limits::SWEEP_MAX_CLIENTS, "the most clients (at or below concurrency: that many alone)"),
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
                "clients": {"type": "integer"},
                "sweep_step": {"type": "integer", "description": "Sweeps: the step running (1, 2, …)"},
                "sweep_by": {"type": "string", "enum": ["rate", "concurrency"]},
                "sweep_load": {"type": "number", "description": "Sweeps: the step's rate or clients"}
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
                "warmup_seconds": {"type": "integer", "description": "Warm-up before duration_seconds"},
                "prompts": {"type": "array", "items": {"type": "string"}, "nullable": true},
                "synthetic_prompt_words": {"type": "integer", "nullable": true},
                "temperature": {"type": "number", "nullable": true},
                "goodput": {"allOf": [{"$ref": "#/components/schemas/GoodputSlo"}], "nullable": true},
                "load_nodes": {"type": "integer", "description": "Nodes the load is sent from"},
                "tokenizer_path": {"type": "string"},
                "dataset": {"oneOf": [schema_ref("DatasetRandom"), schema_ref("DatasetShareGpt"), schema_ref("DatasetTrace")]},
                "sweep": {"type": "object", "properties": {"max": {"type": "integer"}, "target_percent": {"type": "number"}, "tolerance_percent": {"type": "number"}}},
                "planned_end_at": {"type": "string", "format": "date-time", "nullable": true, "description": "When the load generator stops sending (start + duration_seconds)"},
                "progress": {"allOf": [{"$ref": "#/components/schemas/RunProgress"}], "nullable": true},
                "created_at": {"type": "string", "format": "date-time"},
                "started_at": {"type": "string", "format": "date-time", "nullable": true},
                "ended_at": {"type": "string", "format": "date-time", "nullable": true},
                "detail": nullable_string,
                "result": {"type": "object", "nullable": true, "description": "The load generator's result file once it ended (vllm bench serve's keys: completed, failed, request_throughput, output_throughput, mean/median/p99_{ttft,tpot,itl,e2el}_ms, …) plus energy_status, energy_joules, joules_per_request, joules_per_output_token, output_tokens_per_joule, mean_power_watts, energy_joules_per_node (null with energy_unavailable_reason when not measurable); with load_nodes above 1 also load_nodes and nodes (per node: index, host, completed, failed, request_throughput, window, start_late_ms)"},
                "history": history
            }
        },
        "RunList": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}}
    })
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn with_header(mut response: Value, name: &str, description: &str) -> Value {
    response["headers"][name] =
        json!({"description": description, "required": true, "schema": {"type": "string"}});
    response
}

/// `get_service` for `Handler::GetService`.
fn operation_id(r: &Route) -> String {
    format!("{:?}", r.handler)
        .chars()
        .fold(String::new(), |mut s, c| {
            if c.is_uppercase() && !s.is_empty() {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
            s
        })
}

/// Links from a create route's answer: to every route of the created record
/// (`PATTERN/{id}…`, `id` from the answer), and to every create route whose
/// body requires the record's id (`service_id` for a created `Service`; its
/// other required integers set to their minimum).
fn links(r: &Route, schemas: &Value) -> Value {
    let mut out = Map::new();
    let prefix = format!("{}/{{id}}", r.pattern);
    for other in ROUTES {
        if other.pattern == prefix || other.pattern.starts_with(&format!("{prefix}/")) {
            out.insert(
                operation_id(other),
                json!({"operationId": operation_id(other), "parameters": {"id": "$response.body#/id"}}),
            );
        }
    }
    let key = format!("{}_id", r.response.to_ascii_lowercase());
    for other in ROUTES {
        let Body::Json(name) = other.body else {
            continue;
        };
        // The body's default variant (the first of a `oneOf`), or the body.
        let body = &schemas[name];
        let variant = body["oneOf"].get(0).unwrap_or(body);
        let required: Vec<&str> = variant["required"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if other.ok != 201 || other.pattern == r.pattern || !required.contains(&key.as_str()) {
            continue;
        }
        let mut request = Map::new();
        for field in required {
            if field == key {
                request.insert(field.into(), json!("$response.body#/id"));
            } else if let Some(min) = variant["properties"][field]["minimum"].as_i64() {
                request.insert(field.into(), json!(min));
            }
        }
        out.insert(
            operation_id(other),
            json!({"operationId": operation_id(other), "requestBody": request}),
        );
    }
    Value::Object(out)
}

fn operation(r: &Route, auth: bool, schemas: &Value) -> Value {
    let mut op = Map::new();
    op.insert("summary".into(), json!(r.summary));
    op.insert("operationId".into(), json!(operation_id(r)));
    let mut params = Vec::new();
    if r.pattern.contains("{id}") {
        params.push(json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}}));
    }
    for (name, description) in r.query {
        params.push(json!({"name": name, "in": "query", "required": false, "description": description, "schema": query_schema(name)}));
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
    let secured = r.mutating && auth;
    if secured {
        op.insert("security".into(), json!([{"bearer": []}]));
    }
    let mut responses = Map::new();
    let mut ok = match r.response {
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
    if r.ok == 201 {
        ok = with_header(ok, "Location", "The created record's URL path");
        let l = links(r, schemas);
        if l.as_object().is_some_and(|m| !m.is_empty()) {
            ok["links"] = l;
        }
    }
    responses.insert(r.ok.to_string(), ok);
    if schema.is_some() || !r.query.is_empty() {
        responses.insert(
            "400".into(),
            error_response(
                "Malformed JSON, unknown or missing field, wrong type, value out of range",
            ),
        );
    }
    if secured {
        responses.insert(
            "401".into(),
            with_header(
                error_response("Missing or wrong bearer token"),
                "WWW-Authenticate",
                "`Bearer`",
            ),
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
        with_header(
            error_response("Method not allowed"),
            "Allow",
            "The methods the path answers",
        ),
    );
    if r.handler == Handler::CreateService {
        responses.insert(
            "409".into(),
            error_response(
                "The recipe cannot run on this backend (`field: recipe`, see `runnable` in GET /api/v1/recipes), or its port is in use (`field: params.port`)",
            ),
        );
    } else if r.mutating {
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
        Handler::CreateService
            | Handler::CreateRun
            | Handler::SetServiceStatus
            | Handler::DeleteService
    ) {
        responses.insert(
            "502".into(),
            error_response("The backend (process spawn, sbatch, scancel) failed"),
        );
    }
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

/// The whole document. `auth`: whether a bearer token is configured (then,
/// and only then, mutating routes declare `security` and `401`); the
/// `CreateService` body is derived from `recipes`.
pub fn document(auth: bool, recipes: &Catalogue) -> Value {
    let schemas = schemas(recipes);
    let mut paths = Map::new();
    for r in ROUTES {
        let entry = paths
            .entry(r.pattern.to_string())
            .or_insert_with(|| json!({}));
        if let Value::Object(ops) = entry {
            ops.insert(
                r.method.as_str().to_ascii_lowercase(),
                operation(r, auth, &schemas),
            );
        }
    }
    let mut components = json!({"schemas": schemas});
    if auth {
        components["securitySchemes"] = json!({"bearer": {"type": "http", "scheme": "bearer"}});
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "aif-bench-api",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Services and benchmark runs behind the Grafana buttons. Unknown fields, missing required fields, wrong types and out-of-range values are rejected with 400 and the field named; nothing is silently defaulted. Every error is {\"error\", \"field\"?}. Mutating routes need `Authorization: Bearer <token>` when the API has a token file (then this document declares it). CORS is answered for the configured origins only; the preferred way is same-origin through Grafana's data-source proxy."
        },
        "paths": paths,
        "components": components
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_and_every_ref_is_described() {
        let recipes = Catalogue::load(None).unwrap();
        assert!(
            !document(false, &recipes)
                .to_string()
                .contains("\"security\""),
            "no security without a token"
        );
        let doc = document(true, &recipes);
        let create = &doc["paths"]["/api/v1/services"]["post"];
        assert_eq!(create["security"], json!([{"bearer": []}]));
        assert!(create["responses"]["401"]["headers"]["WWW-Authenticate"].is_object());
        assert!(doc["paths"]["/api/v1/services"]["get"]["security"].is_null());
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
        // Every route but the list/health ones is reachable by a link.
        let text = doc.to_string();
        for op in [
            "get_service",
            "delete_service",
            "set_service_status",
            "create_run",
            "get_run",
            "cancel_run",
        ] {
            assert!(
                text.contains(&format!("\"operationId\":\"{op}\",\"parameters\""))
                    || text.contains(&format!("\"operationId\":\"{op}\",\"requestBody\"")),
                "no link to {op}"
            );
        }
    }

    #[test]
    fn recipes_say_whether_they_run_and_create_may_refuse_with_409() {
        let doc = document(false, &Catalogue::load(None).unwrap());
        let recipe = &doc["components"]["schemas"]["Recipe"];
        assert_eq!(
            recipe["properties"]["runnable"],
            json!({
                "type": "string",
                "enum": ["yes", "no", "unknown"],
                "description": recipe["properties"]["runnable"]["description"]
            })
        );
        assert_eq!(recipe["properties"]["runnable_reason"]["type"], "string");
        let required = recipe["required"].as_array().unwrap();
        assert!(
            required.contains(&json!("runnable")) && required.contains(&json!("runnable_reason"))
        );
        let create = &doc["paths"]["/api/v1/services"]["post"]["responses"];
        assert!(
            create["409"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("cannot run")),
            "{create}"
        );
    }

    #[test]
    fn choice_variants_are_exclusive() {
        let v = choice_variants(
            &json!({"a": {"type": "integer"}, "mode": {"type": "string"}, "rate": {"type": "integer"}}),
            &["a"],
            &[Choice {
                field: "mode",
                values: &[("closed", &[], &[]), ("open", &["rate"], &["rate"])],
            }],
        );
        assert_eq!(
            v,
            json!({"oneOf": [
                {"type": "object", "required": ["a"], "additionalProperties": false,
                 "properties": {"a": {"type": "integer"}, "mode": {"type": "string", "enum": ["closed"], "default": "closed"}}},
                {"type": "object", "required": ["a", "mode", "rate"], "additionalProperties": false,
                 "properties": {"a": {"type": "integer"}, "mode": {"type": "string", "enum": ["open"]}, "rate": {"type": "integer"}}}
            ]})
        );
    }
}
