//! Random JSON at the create routes: only 4xx or 201 may come back, the
//! server stays up, and some of the cases are accepted (201), so the 201
//! branch is exercised too.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use common::{Api, shipped_recipes};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e12f64..1e12).prop_map(|f| json!(f)),
        "[a-z_]{0,12}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
        Just(json!("sleep")),
        Just(json!(60)),
        Just(json!(0)),
        Just(json!(86401)),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Objects that look like real requests, with random values and extra keys.
fn request_like() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "recipe",
        "params",
        "service_id",
        "duration_seconds",
        "concurrency",
        "mode",
        "requests_per_second",
        "workload",
        "path",
        "model",
        "max_tokens",
        "duration_minutes",
        "seconds",
        "port",
    ]);
    prop::collection::btree_map(keys, json_value(), 0..6)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

/// Bodies of the shape of a valid request, with values in and out of range:
/// a `sleep` service (accepted with 201 when sent to the services route with
/// a value in range), or a run (well-formed when sent to the benchmarks route
/// with the running service's id, then refused with 409: `sleep` has no
/// endpoint).
fn nearly_valid() -> impl Strategy<Value = Value> {
    let seconds = prop_oneof![
        3 => (1i64..=86_400).prop_map(|n| json!(n)),
        1 => Just(json!(0)),
        1 => Just(json!(86_401)),
        1 => json_value(),
    ];
    let service = (seconds, any::<bool>()).prop_map(|(seconds, with_params)| {
        if with_params {
            json!({"recipe": "sleep", "params": {"seconds": seconds}})
        } else {
            json!({"recipe": "sleep"})
        }
    });
    let duration = prop_oneof![
        3 => (1i64..=86_400).prop_map(|n| json!(n)),
        1 => Just(json!(0)),
        1 => json_value(),
    ];
    let concurrency = prop::option::of(prop_oneof![
        3 => (1i64..=1024).prop_map(|n| json!(n)),
        1 => json_value(),
    ]);
    let run = (duration, concurrency).prop_map(|(duration, concurrency)| {
        let mut m = Map::new();
        m.insert("duration_seconds".into(), duration);
        if let Some(c) = concurrency {
            m.insert("concurrency".into(), c);
        }
        Value::Object(m)
    });
    prop_oneof![service, run]
}

#[test]
fn random_json_never_gets_more_than_a_4xx_or_a_201() {
    let api = Api::start(&shipped_recipes(), "poll_interval_ms = 200\n", &[], &[]);
    let svc = api.create_service("sleep", json!({"seconds": 3600}));
    let sid = svc["id"].as_str().expect("id").to_string();
    api.wait_service(&sid, "running", Duration::from_secs(30));
    let config = ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let strategy = (
        prop_oneof![json_value(), request_like(), nearly_valid()],
        any::<bool>(),
        any::<bool>(),
    );
    // Status → how many cases got it (shrinking included).
    let statuses = RefCell::new(BTreeMap::<u16, u32>::new());
    runner
        .run(&strategy, |(mut body, to_services, with_service)| {
            if with_service && let Value::Object(m) = &mut body {
                m.insert("service_id".into(), json!(sid));
            }
            let route = if to_services {
                "/api/v1/services"
            } else {
                "/api/v1/benchmarks"
            };
            let a = api.post(route, &body);
            *statuses.borrow_mut().entry(a.status).or_default() += 1;
            prop_assert!(
                a.status == 201 || (400..500).contains(&a.status),
                "POST {} {} → {} {}",
                route,
                body,
                a.status,
                a.body
            );
            let v: Value = serde_json::from_str(&a.body).expect("answer is JSON");
            if a.status == 201 {
                // Accepted: cancel it again so that the cases do not pile up
                // work (the service under test stays running).
                let id = v["id"].as_str().expect("a created record has an id");
                let cancel = if to_services {
                    api.send("DELETE", &format!("/api/v1/services/{id}"), None)
                } else {
                    api.send("POST", &format!("/api/v1/benchmarks/{id}/cancel"), None)
                };
                prop_assert!(
                    cancel.status < 500,
                    "cancelling {} → {} {}",
                    id,
                    cancel.status,
                    cancel.body
                );
            } else {
                prop_assert!(v["error"].is_string(), "{}", a.body);
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", api.log()));
    let statuses = statuses.into_inner();
    eprintln!("proptest_create: answers by status {statuses:?}");
    let accepted = statuses.get(&201).copied().unwrap_or(0);
    assert!(
        accepted > 0,
        "no case was accepted (201), so the accepting path went untested: {statuses:?}"
    );
    assert_eq!(api.get("/health").status, 200);
    assert!(!api.log().contains("panicked"));
}
