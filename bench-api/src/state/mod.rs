//! Durable state in SQLite: services, benchmark runs, their status history and
//! results. Survives a restart; the list served to Grafana is cached as JSON and
//! rebuilt after every write.
//!
//! ## Schema versions (`PRAGMA user_version`)
//!
//! [`Store::open`] reads `PRAGMA user_version` and brings the file to
//! [`SCHEMA_VERSION`] in one `BEGIN IMMEDIATE` transaction (so two processes
//! opening the same file at once do not both migrate it):
//!
//! | `user_version` | what it is | at open |
//! |---|---|---|
//! | 0, no tables | a new (empty) file | the version 1 schema is created |
//! | 0, with a `services` table | written before the version pragma existed (the schema of version 1; `run_jobs` is missing in files from before `aif-loadgen`) | adopted as version 1: missing tables and indexes are created, no row changes |
//! | 0, other tables, or tables lacking a column of version 1 | not a state database | refused: [`StateError::ForeignSchema`] |
//! | 1 | the current schema | used as it is |
//! | above 1 | written by a newer build | refused: [`StateError::NewerSchema`], the file is not touched |
//! | below 0 | not written by this program | refused: [`StateError::ForeignSchema`] |
//!
//! A later schema change adds a step to `MIGRATIONS` (version `n` to
//! `n + 1`) and bumps [`SCHEMA_VERSION`]; the steps run in order, in the same
//! transaction, so a file is either fully migrated or left as it was.
//!
//! ## On-disk schema, version 1
//!
//! The file is in WAL mode (`-wal` and `-shm` beside it), with
//! `synchronous = NORMAL` and foreign keys on. Times are Unix milliseconds;
//! statuses are the lowercase names of [`Status`]; JSON columns hold the
//! serde form of the model types.
//!
//! - `services(id TEXT PRIMARY KEY, recipe, params JSON, status, backend,
//!   backend_ref, host, port, exit_code, detail, created_ms, updated_ms)`:
//!   one row per service, its current status.
//! - `service_history(service_id → services.id, status, at_ms, detail)`:
//!   every status a service entered, in `rowid` order.
//! - `runs(id TEXT PRIMARY KEY, service_id → services.id, status, spec JSON
//!   ([`RunSpec`]), created_ms, started_ms, ended_ms, detail, result JSON)`:
//!   one row per benchmark run.
//! - `run_history(run_id → runs.id, status, at_ms, detail)`: every status a
//!   run entered.
//! - `run_jobs(run_id TEXT PRIMARY KEY → runs.id, backend_ref, result_path,
//!   progress_path, planned_end_ms, progress JSON, collected 0/1,
//!   energy_pending 0/1)`: the load-generator job of a run ([`RunJob`]).
//! - Indexes: `service_history_id`, `run_history_id`, `services_status`,
//!   `services_updated`, `runs_status`, `runs_service`, and `runs_last` on
//!   `COALESCE(ended_ms, started_ms, created_ms)`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

use crate::model::{Run, RunSpec, Service, Status, StatusChange};
use gpu_metrics::clock::{now_ms, rfc3339};

/// Why the state store failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The database could not be opened or its schema created.
    #[error("cannot open state database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// A query failed.
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored JSON column could not be read or written.
    #[error("state database JSON column: {0}")]
    Json(#[from] serde_json::Error),
    /// A stored status is not one this version knows.
    #[error("state database holds unknown status `{0}`")]
    BadStatus(String),
    /// The file was written by a newer build: its schema version is above
    /// [`SCHEMA_VERSION`]. It is refused, not used or changed.
    #[error(
        "state database {path} has schema version {found}, newer than version {known} this build knows; \
         run a newer aif-bench-api or use another state file"
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Its `PRAGMA user_version`.
        found: i32,
        /// The version this build reads and writes ([`SCHEMA_VERSION`]).
        known: i32,
    },
    /// The file is a SQLite database but not one of this program's state
    /// files (a negative schema version, or tables of something else).
    #[error("{path} is not an aif-bench-api state database: {reason}")]
    ForeignSchema {
        /// The database file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
}

/// The result of asking for a status change.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition<T> {
    /// The record moved to the new status.
    Changed(T),
    /// The record was already in that status, or in a terminal one.
    Unchanged(T),
    /// No record with that id.
    NotFound,
}

mod schema;

pub use schema::SCHEMA_VERSION;
#[cfg(test)]
use schema::{MIGRATIONS, probe};
use schema::{check_v0, check_version, migrate, read_version};

/// Statuses of services and runs that are not terminal.
const OPEN: [Status; 4] = [
    Status::Pending,
    Status::Starting,
    Status::Running,
    Status::Unknown,
];

/// `?N,?N+1,…` for an `IN (…)` list of `n` values starting at parameter `first`.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs `sql` with `args` and maps every row.
fn select<T, P: rusqlite::ToSql>(
    conn: &Connection,
    sql: &str,
    args: &[P],
    from_row: fn(&rusqlite::Row<'_>) -> Result<T, StateError>,
) -> Result<Vec<T>, StateError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(from_row(row)?);
    }
    Ok(out)
}

/// What `GET /metrics` shows: open records, those that changed within the
/// retention window, and counts of all by status.
#[derive(Debug, Clone, Default)]
pub struct MetricsView {
    /// Services open or updated since the window's start.
    pub services: Vec<Service>,
    /// Runs open or ended since the window's start.
    pub runs: Vec<Run>,
    /// All services by status.
    pub service_counts: HashMap<Status, u64>,
    /// All runs by status.
    pub run_counts: HashMap<Status, u64>,
}

const SERVICE_COLS: &str = "id, recipe, params, status, backend, backend_ref, host, port, exit_code, detail, created_ms, updated_ms";
const RUN_COLS: &str =
    "id, service_id, status, spec, created_ms, started_ms, ended_ms, detail, result";

/// The SQLite-backed store. Cheap to share (`Arc<Store>`); one connection behind
/// a mutex (writes are rare and short; list reads are served from a cache).
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    list_cache: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    /// Bumped by every write (under the cache lock): a list computed before a
    /// write is not cached after it.
    generation: AtomicU64,
}

fn parse_status(s: String) -> Result<Status, StateError> {
    Status::parse(&s).ok_or(StateError::BadStatus(s))
}

impl Store {
    /// Opens (creating if needed) the database at `path`, in WAL mode, and
    /// brings its schema to [`SCHEMA_VERSION`] (see the module documentation).
    ///
    /// # Errors
    /// - [`StateError::NewerSchema`] when the file was written by a newer
    ///   build (it is left untouched);
    /// - [`StateError::ForeignSchema`] when it is some other SQLite database;
    /// - [`StateError::Open`] when the file cannot be opened or its schema
    ///   created or migrated.
    pub fn open(path: &Path) -> Result<Store, StateError> {
        let sqlite = |source| StateError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(sqlite)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sqlite)?;
        // Refuse a newer or foreign file before changing anything in it (its
        // journal mode included); `migrate` checks again under the write lock.
        let found = read_version(&conn).map_err(sqlite)?;
        check_version(path, found)?;
        if found == 0 {
            check_v0(&conn, path)?;
        }
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .map_err(sqlite)?;
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")
            .map_err(sqlite)?;
        migrate(&mut conn, path)?;
        Ok(Store {
            conn: Mutex::new(conn),
            list_cache: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn invalidate(&self) {
        let mut cache = self.list_cache.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        cache.clear();
    }

    /// The write generation (see [`Store::cache_list`]).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Caches `body` as the list for `key` unless a write happened since
    /// `generation` was read (the list may be stale then).
    pub fn cache_list(&self, key: String, generation: u64, body: &Arc<Vec<u8>>) {
        let mut cache = self.list_cache.lock().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::SeqCst) == generation {
            cache.insert(key, Arc::clone(body));
        }
    }

    /// Inserts a new service (its first history entry is its status).
    ///
    /// # Errors
    /// SQLite errors (a duplicate id among them).
    pub fn insert_service(&self, svc: &Service, created_ms: i64) -> Result<(), StateError> {
        let params_json = serde_json::to_string(&svc.params)?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            &format!("INSERT INTO services ({SERVICE_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?11)"),
            params![
                svc.id,
                svc.recipe,
                params_json,
                svc.status.as_str(),
                svc.backend,
                svc.backend_ref,
                svc.host,
                svc.port,
                svc.exit_code,
                svc.detail,
                created_ms
            ],
        )?;
        tx.execute(
            "INSERT INTO service_history (service_id, status, at_ms, detail) VALUES (?1, ?2, ?3, ?4)",
            params![svc.id, svc.status.as_str(), created_ms, svc.detail],
        )?;
        tx.commit()?;
        drop(conn);
        self.invalidate();
        Ok(())
    }

    fn service_from_row(row: &rusqlite::Row<'_>) -> Result<Service, StateError> {
        let params_json: String = row.get(2)?;
        let params: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&params_json)?;
        let created: i64 = row.get(10)?;
        let updated: i64 = row.get(11)?;
        Ok(Service {
            id: row.get(0)?,
            recipe: row.get(1)?,
            params,
            status: parse_status(row.get(3)?)?,
            backend: row.get(4)?,
            backend_ref: row.get(5)?,
            host: row.get(6)?,
            port: row.get(7)?,
            exit_code: row.get(8)?,
            detail: row.get(9)?,
            created_at: rfc3339(created),
            updated_at: rfc3339(updated),
            history: None,
        })
    }

    fn history(
        conn: &Connection,
        table: &str,
        key: &str,
        id: &str,
    ) -> Result<Vec<StatusChange>, StateError> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT status, at_ms, detail FROM {table} WHERE {key} = ?1 ORDER BY rowid"
        ))?;
        let rows = stmt.query_map([id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (status, at, detail) = row?;
            out.push(StatusChange {
                status: parse_status(status)?,
                at: rfc3339(at),
                detail,
            });
        }
        Ok(out)
    }

    fn get_service_in(conn: &Connection, id: &str) -> Result<Option<Service>, StateError> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SERVICE_COLS} FROM services WHERE id = ?1"
        ))?;
        let mut rows = stmt.query([id])?;
        match rows.next()? {
            Some(row) => Ok(Some(Self::service_from_row(row)?)),
            None => Ok(None),
        }
    }

    /// One service, with its status history when `with_history`.
    ///
    /// # Errors
    /// SQLite or JSON errors.
    pub fn get_service(&self, id: &str, with_history: bool) -> Result<Option<Service>, StateError> {
        let conn = self.conn();
        let mut svc = Self::get_service_in(&conn, id)?;
        if with_history && let Some(s) = svc.as_mut() {
            s.history = Some(Self::history(&conn, "service_history", "service_id", id)?);
        }
        Ok(svc)
    }

    /// Services whose status is in `filter` (all when `None`), oldest first.
    ///
    /// # Errors
    /// SQLite or JSON errors.
    pub fn list_services(&self, filter: Option<&[Status]>) -> Result<Vec<Service>, StateError> {
        let conn = self.conn();
        let (sql, args) = match filter {
            None => (
                format!("SELECT {SERVICE_COLS} FROM services ORDER BY created_ms, id"),
                Vec::new(),
            ),
            Some(f) => (
                format!(
                    "SELECT {SERVICE_COLS} FROM services WHERE status IN ({}) ORDER BY created_ms, id",
                    placeholders(1, f.len())
                ),
                f.iter().map(|s| s.as_str().to_string()).collect(),
            ),
        };
        select(&conn, &sql, &args, Self::service_from_row)
    }

    /// What `GET /metrics` shows: open services and runs, those that changed
    /// at or after `since_ms`, and counts of all by status.
    ///
    /// # Errors
    /// SQLite or JSON errors.
    pub fn metrics_view(&self, since_ms: i64) -> Result<MetricsView, StateError> {
        let conn = self.conn();
        let mut args: Vec<rusqlite::types::Value> = OPEN
            .iter()
            .map(|s| rusqlite::types::Value::Text(s.as_str().to_string()))
            .collect();
        args.push(rusqlite::types::Value::Integer(since_ms));
        let since = OPEN.len() + 1;
        let mut view = MetricsView {
            services: select(
                &conn,
                &format!(
                    "SELECT {SERVICE_COLS} FROM services WHERE status IN ({}) OR updated_ms >= ?{since} ORDER BY created_ms, id",
                    placeholders(1, OPEN.len())
                ),
                &args,
                Self::service_from_row,
            )?,
            runs: select(
                &conn,
                &format!(
                    "SELECT {RUN_COLS} FROM runs WHERE status IN ({}) OR COALESCE(ended_ms, started_ms, created_ms) >= ?{since} ORDER BY created_ms, id",
                    placeholders(1, OPEN.len())
                ),
                &args,
                Self::run_from_row,
            )?,
            ..MetricsView::default()
        };
        for (table, counts) in [
            ("services", &mut view.service_counts),
            ("runs", &mut view.run_counts),
        ] {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT status, COUNT(*) FROM {table} GROUP BY status"
            ))?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let n: i64 = row.get(1)?;
                counts.insert(parse_status(row.get(0)?)?, n.max(0) as u64);
            }
        }
        Ok(view)
    }

    /// The JSON array of [`Store::list_services`], cached until the next write.
    ///
    /// # Errors
    /// SQLite or JSON errors.
    pub fn list_services_json(
        &self,
        filter: Option<&[Status]>,
    ) -> Result<Arc<Vec<u8>>, StateError> {
        let key = match filter {
            None => String::new(),
            Some(f) => f.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
        };
        let generation = {
            let cache = self.list_cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(hit) = cache.get(&key) {
                return Ok(Arc::clone(hit));
            }
            self.generation()
        };
        let body = Arc::new(serde_json::to_vec(&self.list_services(filter)?)?);
        self.cache_list(key, generation, &body);
        Ok(body)
    }

    /// Moves a service to `to` unless it is already terminal (or already `to`
    /// with nothing else changing). `exit_code` and `detail` are stored with it.
    ///
    /// # Errors
    /// SQLite or JSON errors.
    pub fn transition_service(
        &self,
        id: &str,
        to: Status,
        detail: Option<&str>,
        exit_code: Option<i32>,
    ) -> Result<Transition<Service>, StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let Some(current) = Self::get_service_in(&tx, id)? else {
            return Ok(Transition::NotFound);
        };
        if current.status.is_terminal() || current.status == to {
            return Ok(Transition::Unchanged(current));
        }
        let now = now_ms();
        tx.execute(
            "UPDATE services SET status = ?2, detail = ?3, exit_code = COALESCE(?4, exit_code), updated_ms = ?5 WHERE id = ?1",
            params![id, to.as_str(), detail, exit_code, now],
        )?;
        tx.execute(
            "INSERT INTO service_history (service_id, status, at_ms, detail) VALUES (?1, ?2, ?3, ?4)",
            params![id, to.as_str(), now, detail],
        )?;
        let updated = Self::get_service_in(&tx, id)?;
        tx.commit()?;
        drop(conn);
        self.invalidate();
        Ok(updated.map_or(Transition::NotFound, Transition::Changed))
    }

    /// Replaces the detail of a service that is still `status` (the reason
    /// it is `unknown` changed, and the old one no longer holds). The
    /// history keeps the entry of when it entered `status`. True when it
    /// changed something.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn set_service_detail(
        &self,
        id: &str,
        status: Status,
        detail: &str,
    ) -> Result<bool, StateError> {
        let n = self.conn().execute(
            "UPDATE services SET detail = ?3, updated_ms = ?4 WHERE id = ?1 AND status = ?2 AND detail IS NOT ?3",
            params![id, status.as_str(), detail, now_ms()],
        )?;
        if n > 0 {
            self.invalidate();
        }
        Ok(n > 0)
    }

    /// Records where a service was launched: backend reference and host.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn set_service_location(
        &self,
        id: &str,
        backend_ref: Option<&str>,
        host: Option<&str>,
    ) -> Result<(), StateError> {
        let n = self.conn().execute(
            "UPDATE services SET backend_ref = COALESCE(?2, backend_ref), host = COALESCE(?3, host), updated_ms = ?4 WHERE id = ?1",
            params![id, backend_ref, host, now_ms()],
        )?;
        if n > 0 {
            self.invalidate();
        }
        Ok(())
    }

    /// Inserts a new run.
    ///
    /// # Errors
    /// SQLite or JSON errors.
    pub fn insert_run(&self, run: &Run, created_ms: i64) -> Result<(), StateError> {
        let spec = serde_json::to_string(&run.spec)?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            &format!("INSERT INTO runs ({RUN_COLS}) VALUES (?1,?2,?3,?4,?5,NULL,NULL,?6,NULL)"),
            params![
                run.id,
                run.service_id,
                run.status.as_str(),
                spec,
                created_ms,
                run.detail
            ],
        )?;
        tx.execute(
            "INSERT INTO run_history (run_id, status, at_ms, detail) VALUES (?1, ?2, ?3, ?4)",
            params![run.id, run.status.as_str(), created_ms, run.detail],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn run_from_row(row: &rusqlite::Row<'_>) -> Result<Run, StateError> {
        let spec: String = row.get(3)?;
        let spec: RunSpec = serde_json::from_str(&spec)?;
        let result: Option<String> = row.get(8)?;
        let result = result.map(|r| serde_json::from_str(&r)).transpose()?;
        Ok(Run {
            id: row.get(0)?,
            service_id: row.get(1)?,
            status: parse_status(row.get(2)?)?,
            spec,
            created_at: rfc3339(row.get(4)?),
            started_at: row.get::<_, Option<i64>>(5)?.map(rfc3339),
            ended_at: row.get::<_, Option<i64>>(6)?.map(rfc3339),
            detail: row.get(7)?,
            result,
            history: None,
        })
    }

    fn get_run_in(conn: &Connection, id: &str) -> Result<Option<Run>, StateError> {
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1"))?;
        let mut rows = stmt.query([id])?;
        match rows.next()? {
            Some(row) => Ok(Some(Self::run_from_row(row)?)),
            None => Ok(None),
        }
    }

    /// One run, with its status history when `with_history`.
    ///
    /// # Errors
    /// SQLite or JSON errors.
    pub fn get_run(&self, id: &str, with_history: bool) -> Result<Option<Run>, StateError> {
        let conn = self.conn();
        let mut run = Self::get_run_in(&conn, id)?;
        if with_history && let Some(r) = run.as_mut() {
            r.history = Some(Self::history(&conn, "run_history", "run_id", id)?);
        }
        Ok(run)
    }

    /// Runs, oldest first, optionally only those of one service or statuses.
    ///
    /// # Errors
    /// SQLite or JSON errors.
    pub fn list_runs(
        &self,
        service_id: Option<&str>,
        filter: Option<&[Status]>,
    ) -> Result<Vec<Run>, StateError> {
        let conn = self.conn();
        let mut conds = Vec::new();
        let mut args: Vec<String> = Vec::new();
        if let Some(s) = service_id {
            args.push(s.to_string());
            conds.push("service_id = ?1".to_string());
        }
        if let Some(f) = filter {
            conds.push(format!(
                "status IN ({})",
                placeholders(args.len() + 1, f.len())
            ));
            args.extend(f.iter().map(|s| s.as_str().to_string()));
        }
        let sql = if conds.is_empty() {
            format!("SELECT {RUN_COLS} FROM runs ORDER BY created_ms, id")
        } else {
            format!(
                "SELECT {RUN_COLS} FROM runs WHERE {} ORDER BY created_ms, id",
                conds.join(" AND ")
            )
        };
        select(&conn, &sql, &args, Self::run_from_row)
    }

    /// Start time (Unix ms) of a run, once running.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn run_started_ms(&self, id: &str) -> Result<Option<i64>, StateError> {
        Ok(self
            .conn()
            .query_row("SELECT started_ms FROM runs WHERE id = ?1", [id], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .optional()?
            .flatten())
    }

    /// Moves a run to `to` unless it is terminal; entering `running` stamps
    /// `started_at`, a terminal status stamps `ended_at`.
    ///
    /// # Errors
    /// SQLite or JSON errors.
    pub fn transition_run(
        &self,
        id: &str,
        to: Status,
        detail: Option<&str>,
    ) -> Result<Transition<Run>, StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let Some(current) = Self::get_run_in(&tx, id)? else {
            return Ok(Transition::NotFound);
        };
        if current.status.is_terminal() || current.status == to {
            return Ok(Transition::Unchanged(current));
        }
        let now = now_ms();
        let started = (to == Status::Running).then_some(now);
        let ended = to.is_terminal().then_some(now);
        tx.execute(
            "UPDATE runs SET status = ?2, detail = ?3, started_ms = COALESCE(started_ms, ?4), ended_ms = COALESCE(ended_ms, ?5) WHERE id = ?1",
            params![id, to.as_str(), detail, started, ended],
        )?;
        tx.execute(
            "INSERT INTO run_history (run_id, status, at_ms, detail) VALUES (?1, ?2, ?3, ?4)",
            params![id, to.as_str(), now, detail],
        )?;
        let updated = Self::get_run_in(&tx, id)?;
        tx.commit()?;
        Ok(updated.map_or(Transition::NotFound, Transition::Changed))
    }

    /// Stores a run's result JSON.
    ///
    /// # Errors
    /// SQLite or JSON errors.
    pub fn set_run_result(&self, id: &str, result: &serde_json::Value) -> Result<(), StateError> {
        let text = serde_json::to_string(result)?;
        self.conn().execute(
            "UPDATE runs SET result = ?2 WHERE id = ?1",
            params![id, text],
        )?;
        Ok(())
    }
}

/// A run's load-generator job.
#[derive(Debug, Clone, PartialEq)]
pub struct RunJob {
    /// The run.
    pub run_id: String,
    /// Process-group id or Slurm job id of the generator.
    pub backend_ref: String,
    /// Where the generator writes its result (as the job sees it).
    pub result_path: String,
    /// Where it writes its progress.
    pub progress_path: String,
    /// When the generator stops sending (Unix ms).
    pub planned_end_ms: i64,
    /// The last progress read.
    pub progress: Option<serde_json::Value>,
    /// The job ended and its result was collected (or given up on).
    pub collected: bool,
    /// The energy of the run is still to be asked for.
    pub energy_pending: bool,
}

const RUN_JOB_COLS: &str = "run_id, backend_ref, result_path, progress_path, planned_end_ms, progress, collected, energy_pending";

impl Store {
    fn run_job_from_row(row: &rusqlite::Row<'_>) -> Result<RunJob, StateError> {
        let progress: Option<String> = row.get(5)?;
        Ok(RunJob {
            run_id: row.get(0)?,
            backend_ref: row.get(1)?,
            result_path: row.get(2)?,
            progress_path: row.get(3)?,
            planned_end_ms: row.get(4)?,
            progress: progress.map(|p| serde_json::from_str(&p)).transpose()?,
            collected: row.get::<_, i64>(6)? != 0,
            energy_pending: row.get::<_, i64>(7)? != 0,
        })
    }

    /// Records the generator job of a run.
    ///
    /// # Errors
    /// SQLite errors (a second job for one run among them).
    pub fn insert_run_job(&self, job: &RunJob) -> Result<(), StateError> {
        self.conn().execute(
            &format!("INSERT INTO run_jobs ({RUN_JOB_COLS}) VALUES (?1,?2,?3,?4,?5,NULL,0,0)"),
            params![
                job.run_id,
                job.backend_ref,
                job.result_path,
                job.progress_path,
                job.planned_end_ms
            ],
        )?;
        Ok(())
    }

    /// The generator job of a run, if it has one.
    ///
    /// # Errors
    /// SQLite or JSON errors.
    pub fn run_job(&self, run_id: &str) -> Result<Option<RunJob>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RUN_JOB_COLS} FROM run_jobs WHERE run_id = ?1"
        ))?;
        let mut rows = stmt.query([run_id])?;
        match rows.next()? {
            Some(row) => Ok(Some(Self::run_job_from_row(row)?)),
            None => Ok(None),
        }
    }

    /// Jobs not yet collected, or whose energy is still to be asked for.
    ///
    /// # Errors
    /// SQLite or JSON errors.
    pub fn open_run_jobs(&self) -> Result<Vec<RunJob>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RUN_JOB_COLS} FROM run_jobs WHERE collected = 0 OR energy_pending = 1 ORDER BY rowid"
        ))?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(Self::run_job_from_row(row)?);
        }
        Ok(out)
    }

    /// Stores the last progress of a run's generator.
    ///
    /// # Errors
    /// SQLite or JSON errors.
    pub fn set_run_progress(
        &self,
        run_id: &str,
        progress: &serde_json::Value,
    ) -> Result<(), StateError> {
        let text = serde_json::to_string(progress)?;
        self.conn().execute(
            "UPDATE run_jobs SET progress = ?2 WHERE run_id = ?1",
            params![run_id, text],
        )?;
        Ok(())
    }

    /// Marks a job collected; `energy_pending` when its energy is yet to be asked for.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn set_run_job_done(
        &self,
        run_id: &str,
        collected: bool,
        energy_pending: bool,
    ) -> Result<(), StateError> {
        self.conn().execute(
            "UPDATE run_jobs SET collected = ?2, energy_pending = ?3 WHERE run_id = ?1",
            params![run_id, i64::from(collected), i64::from(energy_pending)],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
