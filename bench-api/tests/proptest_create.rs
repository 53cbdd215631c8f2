//! Random JSON at the create routes: only 4xx or 201 may come back, and the
//! server stays up.

mod common;

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
        prop_oneof![json_value(), request_like()],
        any::<bool>(),
        any::<bool>(),
    );
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
            prop_assert!(
                a.status == 201 || (400..500).contains(&a.status),
                "POST {} {} → {} {}",
                route,
                body,
                a.status,
                a.body
            );
            if a.status != 201 {
                let v: Value = serde_json::from_str(&a.body).expect("error is JSON");
                prop_assert!(v["error"].is_string(), "{}", a.body);
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", api.log()));
    assert_eq!(api.get("/health").status, 200);
    assert!(!api.log().contains("panicked"));
}
