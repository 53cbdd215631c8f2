//! `dashboards/dist/` is exactly what `build-dashboards` makes of the sources.

use aif_dashboards::{build, crate_dir};

#[test]
fn dist_is_up_to_date() {
    let stale = build::stale_dist(&crate_dir().join("src"), &crate_dir().join("dist"))
        .expect("the dashboard sources build");
    assert!(
        stale.is_empty(),
        "dashboards/dist is not what the sources build (run `cargo run -p aif-dashboards --bin build-dashboards`):\n{}",
        stale.join("\n")
    );
}

#[test]
fn every_dashboard_is_built() {
    let built = build::build_all(&crate_dir().join("src")).expect("the dashboard sources build");
    let names: Vec<&str> = built.keys().map(String::as_str).collect();
    assert_eq!(names, ["administration", "benchmarks", "gpus"]);
    for (name, d) in &built {
        assert!(
            build::SCHEMA_VERSIONS.contains(&d["schemaVersion"].as_u64().unwrap_or(0)),
            "{name}: schemaVersion"
        );
        assert!(
            d["panels"].as_array().is_some_and(|p| !p.is_empty()),
            "{name}: no panels"
        );
    }
}

#[test]
fn javascript_is_inlined_from_its_file() {
    let built = build::build_all(&crate_dir().join("src")).expect("the dashboard sources build");
    let text = build::render(&built["administration"]);
    assert!(
        !text.contains("\"file:"),
        "a file: reference was left in the build"
    );
    let read = |f: &str| {
        std::fs::read_to_string(crate_dir().join("src/administration/panels").join(f))
            .expect("read form source")
    };
    // "file:A+B" joins the shared validation in front of getPayload.
    let src = read("02_start_benchmark.validate.js") + &read("02_start_benchmark.getPayload.js");
    let panel = built["administration"]["panels"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["title"] == "Start benchmark"))
        .expect("Start benchmark panel");
    assert_eq!(
        panel["options"]["update"]["getPayload"].as_str(),
        Some(src.as_str())
    );
}

#[test]
fn bad_sources_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("x");
    std::fs::create_dir_all(d.join("panels")).expect("mkdir");
    std::fs::write(
        d.join("dashboard.json"),
        r#"{"uid":"x","schemaVersion":39}"#,
    )
    .expect("write");
    let e = build::build_all(dir.path()).expect_err("schemaVersion 39 refused");
    assert!(e.to_string().contains("schemaVersion"), "{e}");

    std::fs::write(
        d.join("dashboard.json"),
        r#"{"uid":"x","schemaVersion":41}"#,
    )
    .expect("write");
    std::fs::write(
        d.join("panels/01_a.json"),
        r#"{"id":1,"code":"file:missing.js"}"#,
    )
    .expect("write");
    let e = build::build_all(dir.path()).expect_err("missing js refused");
    assert!(e.to_string().contains("missing.js"), "{e}");

    std::fs::write(
        d.join("panels/01_a.json"),
        r#"{"id":1,"code":"file:../x.js"}"#,
    )
    .expect("write");
    let e = build::build_all(dir.path()).expect_err("path refused");
    assert!(e.to_string().contains("file:../x.js"), "{e}");
}
