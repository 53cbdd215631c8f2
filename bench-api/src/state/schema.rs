//! The state database's schema and its migrations (see the module doc of
//! [`super`] for the versions): the SQL of each version, the probes that
//! check a file's tables, and [`migrate`], run by `Store::open`.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::StateError;

/// `PRAGMA user_version` this build reads and writes (see the module
/// documentation for what each version is).
pub const SCHEMA_VERSION: i32 = 1;

/// Version 0 to 1: the schema as it was before the version pragma, every
/// statement `IF NOT EXISTS`. On a new file it creates everything; on a file
/// of version 0 it adds what is missing (`run_jobs` in files from before
/// `aif-loadgen`) and changes no row.
pub(super) const SCHEMA_V1: &str = "
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

/// The migration steps: `MIGRATIONS[n]` takes a file from version `n` to
/// `n + 1`. Its length is [`SCHEMA_VERSION`].
pub(super) const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [SCHEMA_V1];

/// The table that marks a file of version 0 as a state database.
pub(super) const V0_MARKER_TABLE: &str = "services";

/// Statements every file of the current version must be able to prepare,
/// by table.
pub(super) const PROBES: [(&str, &str); 5] = [
    (
        "services",
        "SELECT id, recipe, params, status, backend, backend_ref, host, port, exit_code, detail, created_ms, updated_ms FROM services LIMIT 0",
    ),
    (
        "service_history",
        "SELECT service_id, status, at_ms, detail FROM service_history LIMIT 0",
    ),
    (
        "runs",
        "SELECT id, service_id, status, spec, created_ms, started_ms, ended_ms, detail, result FROM runs LIMIT 0",
    ),
    (
        "run_history",
        "SELECT run_id, status, at_ms, detail FROM run_history LIMIT 0",
    ),
    (
        "run_jobs",
        "SELECT run_id, backend_ref, result_path, progress_path, planned_end_ms, progress, collected, energy_pending FROM run_jobs LIMIT 0",
    ),
];

/// Prepares the probes of the tables `only` lets through: a failure means
/// a table lacks a column this build reads.
pub(super) fn probe(
    conn: &Connection,
    path: &Path,
    only: impl Fn(&str) -> bool,
) -> Result<(), StateError> {
    for (table, sql) in PROBES {
        if only(table)
            && let Err(e) = conn.prepare(sql)
        {
            return Err(StateError::ForeignSchema {
                path: path.to_path_buf(),
                reason: format!("missing table or column ({e})"),
            });
        }
    }
    Ok(())
}

/// `PRAGMA user_version` of `conn`'s main database.
pub(super) fn read_version(conn: &Connection) -> rusqlite::Result<i32> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Refuses a version this build does not read.
pub(super) fn check_version(path: &Path, found: i32) -> Result<(), StateError> {
    if found > SCHEMA_VERSION {
        return Err(StateError::NewerSchema {
            path: path.to_path_buf(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    if found < 0 {
        return Err(StateError::ForeignSchema {
            path: path.to_path_buf(),
            reason: format!("schema version {found}"),
        });
    }
    Ok(())
}

/// A file of version 0 is new (no tables) or written before the version
/// pragma (it has the `services` table); anything else is refused.
pub(super) fn check_v0(conn: &Connection, path: &Path) -> Result<(), StateError> {
    let tables = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|source| StateError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    if tables.is_empty() {
        return Ok(());
    }
    if tables.iter().any(|t| t == V0_MARKER_TABLE) {
        // The tables it has must have the columns of version 1 (those it
        // lacks, the migration creates).
        return probe(conn, path, |t| tables.iter().any(|have| have == t));
    }
    Err(StateError::ForeignSchema {
        path: path.to_path_buf(),
        reason: format!(
            "schema version 0 with tables {} and no `{V0_MARKER_TABLE}`",
            tables.join(", ")
        ),
    })
}

/// Brings the file to [`SCHEMA_VERSION`] in one `BEGIN IMMEDIATE`
/// transaction, then checks its tables and columns. Nothing is changed when
/// it fails.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StateError> {
    let sqlite = |source| StateError::Open {
        path: path.to_path_buf(),
        source,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite)?;
    // Read again under the write lock: another process may have migrated it.
    let found = read_version(&tx).map_err(sqlite)?;
    check_version(path, found)?;
    if found == 0 {
        check_v0(&tx, path)?;
    }
    for step in &MIGRATIONS[found as usize..] {
        tx.execute_batch(step).map_err(sqlite)?;
    }
    if found != SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(sqlite)?;
    }
    probe(&tx, path, |_| true)?;
    tx.commit().map_err(sqlite)
}
