//! Errors of the buffer's roles: configuration and the buffer itself (the
//! decoding and size errors live with their code in `encoding.rs` and `size.rs`).

use std::path::PathBuf;

use super::BatchId;

/// Why a [`super::BufferConfig`] or a durability name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A durability other than `full` or `normal`.
    #[error("durability {value:?} is not one of: full, normal")]
    UnknownDurability {
        /// The value as given.
        value: String,
    },
    /// `max_bytes` below what the buffer needs for its own bookkeeping.
    #[error("buffer max_bytes {max_bytes} is below the minimum of {min} bytes")]
    CapTooSmall {
        /// The configured cap.
        max_bytes: u64,
        /// The smallest cap accepted ([`super::MIN_MAX_BYTES`]).
        min: u64,
    },
    /// The same sink named twice.
    #[error("sink {sink:?} is configured twice")]
    DuplicateSink {
        /// The sink name.
        sink: String,
    },
    /// An empty sink name.
    #[error("sink names must not be empty")]
    EmptySinkName,
}

/// What went wrong in the buffer.
///
/// Retryable errors ([`BufferError::is_retryable`]) leave the buffer usable:
/// the operation had no effect and may succeed later.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The disk (or the file's size limit) is full (SQLITE_FULL / ENOSPC).
    /// The transaction was rolled back; retryable. Log it and count it.
    #[error("buffer {path}: disk full during {op}", path = path.display())]
    DiskFull {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
    },
    /// Another connection held the database lock for longer than the busy
    /// timeout. Retryable.
    #[error("buffer {path}: database busy during {op}", path = path.display())]
    Busy {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
    },
    /// Any other SQLite failure.
    #[error("buffer {path}: SQLite error during {op}: {source}", path = path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A file-system operation failed (creating the directory, moving a corrupt
    /// file aside, measuring the file set).
    #[error("buffer {path}: {op} failed: {source}", path = path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is still unusable after it was moved aside and recreated.
    #[error("buffer {path}: unusable even after moving the old file aside: {reason}", path = path.display())]
    StillCorrupt {
        /// The database file.
        path: PathBuf,
        /// Why the fresh file failed its checks.
        reason: String,
    },
    /// SQLite refused to switch the file to WAL mode (e.g. a file system
    /// without shared memory support).
    #[error("buffer {path}: journal mode is {mode:?}, WAL is required", path = path.display())]
    NotWal {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite reported.
        mode: String,
    },
    /// Another writer (another exporter process, or another `Buffer` in this
    /// one) holds the buffer's lock file: two writers would fight over the
    /// cursors and the cap.
    #[error(
        "buffer {path} is in use by another writer (lock {lock} is held); \
         give each exporter its own --buffer",
        path = path.display(),
        lock = lock.display()
    )]
    Locked {
        /// The database file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// [`super::Buffer::reader`] for a sink that is not in `BufferConfig::sinks`.
    #[error("sink {sink:?} is not configured for this buffer")]
    UnknownSink {
        /// The sink name.
        sink: String,
    },
    /// [`super::SinkReader::ack_through`] with an id that was never assigned.
    #[error("sink {sink:?} acknowledged batch {id} but the newest batch ever appended is {head}")]
    AckBeyondHead {
        /// The sink name.
        sink: String,
        /// The id given.
        id: BatchId,
        /// The highest id assigned so far (0 when none).
        head: i64,
    },
    /// A batch whose encoding is larger than a quarter of the data budget; it
    /// could never be kept under the cap. Nothing was written.
    #[error("batch of {bytes} encoded bytes exceeds the limit of {limit} bytes for this cap")]
    BatchTooLarge {
        /// Encoded size of the batch.
        bytes: usize,
        /// The largest accepted encoded size.
        limit: u64,
    },
}

impl BufferError {
    /// True for errors after which the same call may succeed later
    /// ([`BufferError::DiskFull`], [`BufferError::Busy`]).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BufferError::DiskFull { .. } | BufferError::Busy { .. }
        )
    }

    /// Classifies a SQLite error: full disk and busy get their own variants.
    pub(crate) fn sqlite(
        path: &std::path::Path,
        op: &'static str,
        source: rusqlite::Error,
    ) -> Self {
        use rusqlite::ErrorCode;
        let path = path.to_path_buf();
        match source.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => BufferError::DiskFull { path, op },
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                BufferError::Busy { path, op }
            }
            // SQLite reports a short write (ENOSPC) as SQLITE_FULL too.
            _ => BufferError::Sqlite { path, op, source },
        }
    }
}

/// `map_err` adapter: classifies a SQLite error of `op` on `path`.
pub(crate) fn on<'a>(
    path: &'a std::path::Path,
    op: &'static str,
) -> impl Fn(rusqlite::Error) -> BufferError + 'a {
    move |e| BufferError::sqlite(path, op, e)
}
