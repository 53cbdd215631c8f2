//! The SQLite schema, connection settings, the start-up checks and moving a
//! corrupt file aside.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::config::{CapPlan, Durability, PAGE_SIZE};
use super::error::BufferError;

/// `PRAGMA application_id` of buffer files: "AIFB".
pub(crate) const APPLICATION_ID: i32 = 0x4149_4642;

/// `PRAGMA user_version` of the current schema.
pub(crate) const SCHEMA_VERSION: i32 = 1;

/// How long a connection waits for another connection's write lock.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema of a fresh file (see the module documentation).
const SCHEMA: &str = "
CREATE TABLE series (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL,
    kind       INTEGER NOT NULL,
    labels     BLOB    NOT NULL,
    last_batch INTEGER NOT NULL
);
CREATE TABLE batches (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    ts      INTEGER NOT NULL,
    payload BLOB    NOT NULL
);
CREATE TABLE cursors (
    sink          TEXT PRIMARY KEY,
    acked_through INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES ('evicted_cap', 0), ('evicted_disk_full', 0);
";

/// Statements every valid file must be able to prepare.
const PROBES: &[&str] = &[
    "SELECT id, name, kind, labels, last_batch FROM series LIMIT 0",
    "SELECT id, ts, payload FROM batches LIMIT 0",
    "SELECT sink, acked_through FROM cursors LIMIT 0",
    "SELECT name, value FROM counters LIMIT 0",
];

/// Why a file at start is not usable as a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CorruptReason {
    /// SQLite says it is not a database (or the header is damaged).
    NotADatabase(String),
    /// SQLite reports corruption while opening or checking it.
    Malformed(String),
    /// `PRAGMA quick_check` did not say `ok`.
    QuickCheck(String),
    /// A SQLite file written by something else.
    ForeignSchema { application_id: i32, tables: i64 },
    /// A buffer file of another schema version.
    SchemaVersion { found: i32 },
    /// A buffer file missing a table or column.
    MissingTable(String),
    /// The file exists but cannot be opened.
    Unreadable(String),
}

impl fmt::Display for CorruptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptReason::NotADatabase(e) => write!(f, "not a SQLite database ({e})"),
            CorruptReason::Malformed(e) => write!(f, "malformed ({e})"),
            CorruptReason::QuickCheck(e) => write!(f, "quick_check failed: {e}"),
            CorruptReason::ForeignSchema {
                application_id,
                tables,
            } => write!(
                f,
                "foreign schema (application_id {application_id:#x}, {tables} tables)"
            ),
            CorruptReason::SchemaVersion { found } => write!(
                f,
                "schema version {found}, this build reads {SCHEMA_VERSION}"
            ),
            CorruptReason::MissingTable(e) => write!(f, "missing table or column ({e})"),
            CorruptReason::Unreadable(e) => write!(f, "unreadable ({e})"),
        }
    }
}

/// Either the file is bad (move it aside) or something else failed (report).
pub(crate) enum OpenFailure {
    Corrupt(CorruptReason),
    Fatal(BufferError),
}

/// Applies the per-connection settings shared by the writer and the readers.
pub(crate) fn configure(
    conn: &Connection,
    path: &Path,
    durability: Durability,
    plan: &CapPlan,
) -> Result<(), BufferError> {
    let err = |op| super::error::on(path, op);
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(err("set busy_timeout"))?;
    conn.pragma_update(None, "synchronous", durability.synchronous())
        .map_err(err("set synchronous"))?;
    conn.pragma_update(None, "journal_size_limit", plan.wal_limit_bytes as i64)
        .map_err(err("set journal_size_limit"))?;
    // No commit checkpoints by itself: the writer's WAL hook and the
    // checkpointer thread do (`checkpointer.rs`).
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(err("set wal_autocheckpoint"))?;
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(err("set temp_store"))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}

fn classify(path: &Path, op: &'static str, e: rusqlite::Error) -> OpenFailure {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => {
            OpenFailure::Corrupt(CorruptReason::NotADatabase(e.to_string()))
        }
        Some(ErrorCode::DatabaseCorrupt) => {
            OpenFailure::Corrupt(CorruptReason::Malformed(e.to_string()))
        }
        _ => OpenFailure::Fatal(BufferError::sqlite(path, op, e)),
    }
}

/// Opens `path` (creating a fresh buffer file when it is missing or empty),
/// switches it to WAL and checks it. Returns the connection, ready for
/// [`configure`].
pub(crate) fn open_checked(path: &Path) -> Result<Connection, OpenFailure> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match Connection::open_with_flags(path, flags) {
        Ok(c) => c,
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::CannotOpen) && path.is_file() => {
            return Err(OpenFailure::Corrupt(CorruptReason::Unreadable(
                e.to_string(),
            )));
        }
        Err(e) => return Err(classify(path, "open", e)),
    };
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| classify(path, "set busy_timeout", e))?;
    let app_id: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(|e| classify(path, "read application_id", e))?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|e| classify(path, "read schema", e))?;
    if tables == 0 && app_id == 0 {
        create(&conn).map_err(|e| classify(path, "create schema", e))?;
    } else if app_id != APPLICATION_ID {
        return Err(OpenFailure::Corrupt(CorruptReason::ForeignSchema {
            application_id: app_id,
            tables,
        }));
    }
    let version: i32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| classify(path, "read user_version", e))?;
    if version != SCHEMA_VERSION {
        return Err(OpenFailure::Corrupt(CorruptReason::SchemaVersion {
            found: version,
        }));
    }
    for probe in PROBES {
        if let Err(e) = conn.prepare(probe) {
            return Err(match classify(path, "probe schema", e) {
                OpenFailure::Fatal(BufferError::Sqlite { source, .. }) => {
                    OpenFailure::Corrupt(CorruptReason::MissingTable(source.to_string()))
                }
                other => other,
            });
        }
    }
    let mut check = conn
        .prepare("PRAGMA quick_check(4)")
        .map_err(|e| classify(path, "quick_check", e))?;
    let lines: Vec<String> = check
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| classify(path, "quick_check", e))?;
    drop(check);
    if lines != ["ok"] {
        return Err(OpenFailure::Corrupt(CorruptReason::QuickCheck(
            lines.join("; "),
        )));
    }
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(|e| classify(path, "set journal_mode", e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenFailure::Fatal(BufferError::NotWal {
            path: path.to_path_buf(),
            mode,
        }));
    }

    Ok(conn)
}

fn create(conn: &Connection) -> rusqlite::Result<()> {
    // Page size and auto_vacuum must be set before the first table exists.
    conn.pragma_update(None, "page_size", PAGE_SIZE as i64)?;
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    debug_assert_eq!(mode.to_ascii_lowercase(), "wal");
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;{SCHEMA}PRAGMA application_id = {APPLICATION_ID};\
         PRAGMA user_version = {SCHEMA_VERSION};COMMIT;"
    ))
}

/// `NAME` → `NAME.corrupt-<unix-ts>` (with `-wal` and `-shm`), choosing
/// `NAME.corrupt-<unix-ts>.<n>` if that name is taken. Returns the new path.
pub(crate) fn move_aside(path: &Path) -> Result<PathBuf, BufferError> {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = format!("{}.corrupt-{ts}", path.display());
    let mut target = PathBuf::from(&base);
    let mut n = 1;
    while target.exists() {
        target = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    std::fs::rename(path, &target).map_err(|source| BufferError::Io {
        path: path.to_path_buf(),
        op: "move corrupt file aside",
        source,
    })?;
    for suffix in ["-wal", "-shm"] {
        let side = sidecar(path, suffix);
        if side.exists() {
            let to = sidecar(&target, suffix);
            std::fs::rename(&side, &to).map_err(|source| BufferError::Io {
                path: side.clone(),
                op: "move corrupt file aside",
                source,
            })?;
        }
    }
    Ok(target)
}

/// `path` with `suffix` appended to its file name (`-wal`, `-shm`).
pub(crate) fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Bytes of the file set: main file + `-wal` + `-shm` (missing files count 0).
pub(crate) fn file_set_bytes(path: &Path) -> Result<u64, BufferError> {
    let mut total = 0;
    for p in [
        path.to_path_buf(),
        sidecar(path, "-wal"),
        sidecar(path, "-shm"),
    ] {
        match std::fs::metadata(&p) {
            Ok(m) => total += m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(BufferError::Io {
                    path: p,
                    op: "measure file set",
                    source,
                });
            }
        }
    }
    Ok(total)
}
