//! The state database's schema version (`PRAGMA user_version`): a file
//! written before the pragma existed is adopted as version 1 with its rows
//! intact, a file from a newer build is refused, and opening is idempotent.

use std::path::Path;

use aif_bench_api::model::{Service, Status};
use aif_bench_api::state::{SCHEMA_VERSION, StateError, Store};
use rusqlite::Connection;

/// The statements `Store::open` ran before the schema had a version (the
/// `SCHEMA` and `RUN_JOBS_SCHEMA` constants of `state.rs` as they were),
/// frozen here: files written by that code must keep opening.
const SCHEMA_BEFORE_VERSIONS: &str = "
CREATE TABLE IF NOT EXISTS services (
    id TEXT PRIMARY KEY,
    recipe TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    backend TEXT NOT NULL,
    backend_ref TEXT,
    host TEXT,
    port INTEGER,
    exit_code INTEGER,
    detail TEXT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS service_history (
    service_id TEXT NOT NULL REFERENCES services(id),
    status TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS service_history_id ON service_history(service_id);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL REFERENCES services(id),
    status TEXT NOT NULL,
    spec TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    started_ms INTEGER,
    ended_ms INTEGER,
    detail TEXT,
    result TEXT
);
CREATE TABLE IF NOT EXISTS run_history (
    run_id TEXT NOT NULL REFERENCES runs(id),
    status TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS run_history_id ON run_history(run_id);
CREATE INDEX IF NOT EXISTS services_status ON services(status);
CREATE INDEX IF NOT EXISTS services_updated ON services(updated_ms);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
CREATE INDEX IF NOT EXISTS runs_service ON runs(service_id);
CREATE INDEX IF NOT EXISTS runs_last ON runs(COALESCE(ended_ms, started_ms, created_ms));
";

/// The `run_jobs` table as `Store::open` created it before the schema had a
/// version (added with `aif-loadgen`, beside the other tables).
const RUN_JOBS_BEFORE_VERSIONS: &str = "
CREATE TABLE IF NOT EXISTS run_jobs (
    run_id TEXT PRIMARY KEY REFERENCES runs(id),
    backend_ref TEXT NOT NULL,
    result_path TEXT NOT NULL,
    progress_path TEXT NOT NULL,
    planned_end_ms INTEGER NOT NULL,
    progress TEXT,
    collected INTEGER NOT NULL DEFAULT 0,
    energy_pending INTEGER NOT NULL DEFAULT 0
);
";

/// A few rows as the code before versions wrote them.
const ROWS: &str = r#"
INSERT INTO services VALUES ('svc-old', 'demo-http', '{"port":8000}', 'completed', 'local', '1234', 'node1', 8000, 0, 'stopped', 1000, 2000);
INSERT INTO services VALUES ('svc-open', 'sleep', '{}', 'running', 'local', NULL, NULL, NULL, NULL, NULL, 1500, 1600);
INSERT INTO service_history VALUES ('svc-old', 'pending', 1000, NULL);
INSERT INTO service_history VALUES ('svc-old', 'completed', 2000, 'stopped');
INSERT INTO service_history VALUES ('svc-open', 'running', 1600, NULL);
INSERT INTO runs VALUES ('run-old', 'svc-old', 'completed', '{"duration_seconds":5,"concurrency":2,"mode":"closed_loop","requests_per_second":null,"workload":"http","path":"/","model":null,"max_tokens":null}', 1100, 1200, 1300, NULL, '{"requests":10}');
INSERT INTO run_history VALUES ('run-old', 'pending', 1100, NULL);
INSERT INTO run_history VALUES ('run-old', 'running', 1200, NULL);
INSERT INTO run_history VALUES ('run-old', 'completed', 1300, NULL);
"#;

const RUN_JOB_ROW: &str = r#"
INSERT INTO run_jobs VALUES ('run-old', '4321', '/tmp/r.json', '/tmp/p.json', 1300, '{"sent":10}', 1, 1);
"#;

fn user_version(db: &Path) -> i32 {
    Connection::open(db)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

/// Every table and index with its SQL, to compare schemas.
fn schema_of(db: &Path) -> Vec<(String, String)> {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT name, COALESCE(sql, '') FROM sqlite_master ORDER BY name")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn write_unversioned(db: &Path, with_run_jobs: bool) {
    let conn = Connection::open(db).unwrap();
    conn.execute_batch(SCHEMA_BEFORE_VERSIONS).unwrap();
    if with_run_jobs {
        conn.execute_batch(RUN_JOBS_BEFORE_VERSIONS).unwrap();
    }
    conn.execute_batch(ROWS).unwrap();
    if with_run_jobs {
        conn.execute_batch(RUN_JOB_ROW).unwrap();
    }
    assert_eq!(user_version(db), 0);
}

fn a_service(id: &str) -> Service {
    Service {
        id: id.into(),
        recipe: "sleep".into(),
        params: serde_json::Map::new(),
        status: Status::Pending,
        backend: "local".into(),
        backend_ref: None,
        host: None,
        port: None,
        exit_code: None,
        detail: None,
        created_at: String::new(),
        updated_at: String::new(),
        history: None,
    }
}

/// The rows of [`ROWS`], read back through the store.
fn assert_rows_intact(store: &Store) {
    let svc = store
        .get_service("svc-old", true)
        .unwrap()
        .expect("svc-old");
    assert_eq!(svc.recipe, "demo-http");
    assert_eq!(svc.params["port"], 8000);
    assert_eq!(svc.status, Status::Completed);
    assert_eq!(svc.backend_ref.as_deref(), Some("1234"));
    assert_eq!(svc.host.as_deref(), Some("node1"));
    assert_eq!((svc.port, svc.exit_code), (Some(8000), Some(0)));
    assert_eq!(svc.detail.as_deref(), Some("stopped"));
    assert_eq!(
        svc.history
            .unwrap()
            .iter()
            .map(|c| c.status)
            .collect::<Vec<_>>(),
        [Status::Pending, Status::Completed]
    );
    let ids: Vec<String> = store
        .list_services(None)
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["svc-old", "svc-open"]);
    assert_eq!(
        store.list_services(Some(&[Status::Running])).unwrap().len(),
        1
    );

    let run = store.get_run("run-old", true).unwrap().expect("run-old");
    assert_eq!(run.service_id, "svc-old");
    assert_eq!(run.status, Status::Completed);
    assert_eq!((run.spec.duration_seconds, run.spec.concurrency), (5, 2));
    assert_eq!(run.spec.path, "/");
    assert_eq!(run.result, Some(serde_json::json!({"requests": 10})));
    assert!(run.started_at.is_some() && run.ended_at.is_some());
    assert_eq!(run.history.unwrap().len(), 3);
    assert_eq!(store.run_started_ms("run-old").unwrap(), Some(1200));
    assert_eq!(store.list_runs(Some("svc-old"), None).unwrap().len(), 1);
}

#[test]
fn store_adopts_a_database_written_before_schema_versions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.sqlite");
    write_unversioned(&db, true);
    let before = schema_of(&db);

    let store = Store::open(&db).unwrap();
    assert_rows_intact(&store);
    let job = store.run_job("run-old").unwrap().expect("run job");
    assert_eq!(job.backend_ref, "4321");
    assert_eq!(
        (job.result_path.as_str(), job.progress_path.as_str()),
        ("/tmp/r.json", "/tmp/p.json")
    );
    assert_eq!(job.planned_end_ms, 1300);
    assert_eq!(job.progress, Some(serde_json::json!({"sent": 10})));
    assert!(job.collected && job.energy_pending);
    assert_eq!(store.open_run_jobs().unwrap(), [job]);
    // Writes still work on the adopted file.
    store.insert_service(&a_service("svc-new"), 3000).unwrap();
    drop(store);

    assert_eq!(user_version(&db), 1);
    assert_eq!(SCHEMA_VERSION, 1);
    assert_eq!(schema_of(&db), before, "adoption changed no table");
}

#[test]
fn store_adopts_a_database_from_before_run_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.sqlite");
    write_unversioned(&db, false);

    let store = Store::open(&db).unwrap();
    assert_rows_intact(&store);
    assert_eq!(store.run_job("run-old").unwrap(), None);
    assert!(store.open_run_jobs().unwrap().is_empty());
    drop(store);
    assert_eq!(user_version(&db), 1);

    // The file now has the schema of a new one.
    let fresh = dir.path().join("fresh.sqlite");
    drop(Store::open(&fresh).unwrap());
    assert_eq!(schema_of(&db), schema_of(&fresh));
}

#[test]
fn store_refuses_a_database_from_a_newer_version() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.sqlite");
    {
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(SCHEMA_BEFORE_VERSIONS).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let before = schema_of(&db);

    let err = Store::open(&db).expect_err("a newer file is refused");
    assert!(
        matches!(
            err,
            StateError::NewerSchema {
                found: 99,
                known: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "state database {} has schema version 99, newer than version 1 this build knows; \
             run a newer aif-bench-api or use another state file",
            db.display()
        )
    );
    // Left as it was: same version, same tables, not switched to WAL.
    assert_eq!(user_version(&db), 99);
    assert_eq!(schema_of(&db), before);
    let mode: String = Connection::open(&db)
        .unwrap()
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
}

#[test]
fn store_refuses_a_database_of_something_else() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("other.sqlite");
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep');")
        .unwrap();
    let err = Store::open(&db).expect_err("a foreign file is refused");
    assert!(matches!(err, StateError::ForeignSchema { .. }), "{err:?}");
    assert!(
        err.to_string()
            .ends_with("is not an aif-bench-api state database: schema version 0 with tables notes and no `services`"),
        "{err}"
    );
    assert_eq!(user_version(&db), 0);
    assert_eq!(schema_of(&db).len(), 1, "nothing was created");
    let mode: String = Connection::open(&db)
        .unwrap()
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete", "not switched to WAL");

    let neg = dir.path().join("negative.sqlite");
    Connection::open(&neg)
        .unwrap()
        .pragma_update(None, "user_version", -1)
        .unwrap();
    let err = Store::open(&neg).expect_err("a negative version is refused");
    assert!(
        err.to_string()
            .ends_with("is not an aif-bench-api state database: schema version -1"),
        "{err}"
    );
}

#[test]
fn store_opening_twice_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.sqlite");
    let first = Store::open(&db).unwrap();
    first.insert_service(&a_service("svc-1"), 1).unwrap();
    let schema = schema_of(&db);
    assert_eq!(user_version(&db), 1);

    // A second store on the same file while the first is open, then again
    // after both are closed: same version, same schema, same rows.
    let second = Store::open(&db).unwrap();
    assert_eq!(second.list_services(None).unwrap().len(), 1);
    drop((first, second));
    let third = Store::open(&db).unwrap();
    let svc = third.get_service("svc-1", true).unwrap().expect("svc-1");
    assert_eq!(svc.history.map(|h| h.len()), Some(1));
    drop(third);
    assert_eq!(user_version(&db), 1);
    assert_eq!(schema_of(&db), schema);
}
