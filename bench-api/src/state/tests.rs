use super::*;

fn service(id: &str) -> Service {
    Service {
        id: id.into(),
        recipe: "demo".into(),
        params: serde_json::Map::new(),
        status: Status::Pending,
        backend: "local".into(),
        backend_ref: None,
        host: None,
        port: Some(8000),
        exit_code: None,
        detail: None,
        created_at: String::new(),
        updated_at: String::new(),
        history: None,
    }
}

#[test]
fn store_leaves_a_database_it_cannot_migrate_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.sqlite");
    // Version 0 with a `services` table that lacks columns: refused
    // before anything is written.
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE services (id TEXT PRIMARY KEY, name TEXT);")
        .unwrap();
    let err = Store::open(&db).unwrap_err();
    assert!(matches!(err, StateError::ForeignSchema { .. }), "{err:?}");
    assert!(err.to_string().contains("missing table or column"), "{err}");
    let conn = Connection::open(&db).unwrap();
    assert_eq!(read_version(&conn).unwrap(), 0);
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1, "no table of the migration was kept");
}

#[test]
fn migrations_cover_every_version() {
    assert_eq!(MIGRATIONS.len(), SCHEMA_VERSION as usize);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.sqlite");
    drop(Store::open(&db).unwrap());
    let conn = Connection::open(&db).unwrap();
    assert_eq!(read_version(&conn).unwrap(), SCHEMA_VERSION);
    probe(&conn, &db, |_| true).unwrap();
}

#[test]
fn services_persist_and_terminal_is_sticky() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.sqlite");
    {
        let store = Store::open(&db).unwrap();
        store.insert_service(&service("svc-1"), 1).unwrap();
        let first = store.list_services_json(None).unwrap();
        assert!(matches!(
            store
                .transition_service("svc-1", Status::Failed, Some("exit 3"), Some(3))
                .unwrap(),
            Transition::Changed(_)
        ));
        assert_ne!(
            first,
            store.list_services_json(None).unwrap(),
            "cache invalidated"
        );
        assert!(matches!(
            store
                .transition_service("svc-1", Status::Running, None, None)
                .unwrap(),
            Transition::Unchanged(_)
        ));
        assert_eq!(
            store
                .transition_service("nope", Status::Running, None, None)
                .unwrap(),
            Transition::NotFound
        );
    }
    let store = Store::open(&db).unwrap();
    let s = store.get_service("svc-1", true).unwrap().unwrap();
    assert_eq!((s.status, s.exit_code), (Status::Failed, Some(3)));
    let h = s.history.unwrap();
    assert_eq!(
        h.iter().map(|c| c.status).collect::<Vec<_>>(),
        vec![Status::Pending, Status::Failed]
    );
    assert_eq!(
        store.list_services(Some(&[Status::Running])).unwrap().len(),
        0
    );
}

#[test]
fn runs_stamp_times() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    store.insert_service(&service("svc-1"), 1).unwrap();
    let run = Run {
        id: "run-1".into(),
        service_id: "svc-1".into(),
        status: Status::Pending,
        spec: RunSpec {
            duration_seconds: 5,
            ..RunSpec::default()
        },
        created_at: String::new(),
        started_at: None,
        ended_at: None,
        detail: None,
        result: None,
        history: None,
    };
    store.insert_run(&run, 1).unwrap();
    store
        .transition_run("run-1", Status::Running, None)
        .unwrap();
    assert!(store.run_started_ms("run-1").unwrap().is_some());
    store
        .transition_run("run-1", Status::Completed, None)
        .unwrap();
    let r = store.get_run("run-1", true).unwrap().unwrap();
    assert!(r.started_at.is_some() && r.ended_at.is_some());
    assert_eq!(r.history.unwrap().len(), 3);
    assert_eq!(store.list_runs(Some("svc-1"), None).unwrap().len(), 1);
}

#[test]
fn a_list_computed_before_a_write_is_not_cached_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    store.insert_service(&service("svc-1"), 1).unwrap();
    // A reader computes the list, then a write lands (and invalidates)
    // before the reader caches what it computed.
    let generation = store.generation();
    let stale = Arc::new(serde_json::to_vec(&store.list_services(None).unwrap()).unwrap());
    store.insert_service(&service("svc-2"), 2).unwrap();
    store.cache_list(String::new(), generation, &stale);
    let list: serde_json::Value =
        serde_json::from_slice(&store.list_services_json(None).unwrap()).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    // Without a write in between, the list is cached and served again.
    let a = store.list_services_json(None).unwrap();
    assert!(Arc::ptr_eq(&a, &store.list_services_json(None).unwrap()));
}

#[test]
fn metrics_view_holds_open_and_recent_records_and_counts_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    for id in ["old-done", "old-open", "new-done"] {
        store.insert_service(&service(id), 1).unwrap();
    }
    for id in ["old-done", "new-done"] {
        store
            .transition_service(id, Status::Completed, None, None)
            .unwrap();
    }
    // `old-done` ended long ago: move its last change before the window.
    store
        .conn()
        .execute(
            "UPDATE services SET updated_ms = 5 WHERE id = 'old-done'",
            [],
        )
        .unwrap();
    let view = store.metrics_view(now_ms() - 60_000).unwrap();
    let mut shown: Vec<&str> = view.services.iter().map(|s| s.id.as_str()).collect();
    shown.sort_unstable();
    assert_eq!(shown, ["new-done", "old-open"]);
    assert_eq!(view.service_counts.get(&Status::Completed), Some(&2));
    assert_eq!(view.service_counts.get(&Status::Pending), Some(&1));
    assert_eq!(
        store
            .list_services(Some(&[Status::Completed]))
            .unwrap()
            .len(),
        2
    );
}
