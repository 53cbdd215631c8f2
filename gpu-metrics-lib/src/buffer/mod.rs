//! The write-ahead buffer (DESIGN.md §5): every sampled batch goes to one local
//! SQLite file first; sinks read it from there and acknowledge what they
//! delivered.
//!
//! # Design note
//!
//! ## Roles and threads
//!
//! - [`Buffer`] is the writer, owned by the sampling thread: [`Buffer::append`]
//!   stores one batch per tick, [`Buffer::stats`] feeds the self-metrics.
//! - [`SinkReader`] (from [`Buffer::reader`]) is one sink's view, owned by that
//!   sink's thread: [`SinkReader::oldest`] (remote-write: history, oldest
//!   first), [`SinkReader::newest`] (Pushgateway: latest state),
//!   [`SinkReader::ack_through`], [`SinkReader::pending`].
//!
//! - The reserve (`reserve.rs`) is the writer's: a file of preallocated
//!   room given up when the disk fills, so that eviction can still write.
//! - The checkpointer (`checkpointer.rs`) is a thread of the writer's with
//!   its own connection: the writer's WAL hook wakes it at half the WAL limit
//!   and it runs a passive checkpoint, so no sampling commit copies the WAL
//!   and fsyncs (the hook checkpoints inline only at the full limit, if the
//!   thread fell behind).
//!
//! Each has its own `rusqlite::Connection` to the same file (WAL mode: readers
//! never block the writer and the writer never blocks readers). Writes —
//! appends and acks — are ordered in the process by one write gate (a mutex
//! the readers' acks and the writer share, which the sampler's append takes
//! first), so SQLite's busy handler never decides who waits; its write lock
//! (10 s busy timeout) only guards against another process. There must be one
//! writer per file (one exporter process).
//!
//! ## Invariants
//!
//! 1. **Committed = acknowledged.** `append` returns `Ok` only after its
//!    transaction (`BEGIN IMMEDIATE` … `COMMIT`) committed. A committed batch
//!    survives `kill -9`; with [`Durability::Full`] it also survives power loss
//!    (see [`Durability`] for what `normal` can lose).
//! 2. **Ids are ordered and never reused.** Batch ids are `INTEGER PRIMARY KEY
//!    AUTOINCREMENT`: strictly increasing in append order, also after deletes
//!    and restarts (SQLite's `sqlite_sequence` is the persisted high-water
//!    mark). Series ids likewise, so a cached id → series mapping never goes
//!    stale.
//! 3. **Stored ids are one contiguous range.** Batches are only ever deleted
//!    from the old end (acks delete `id <= min(cursor)`, eviction deletes the
//!    oldest), and a failed append rolls back its id. Counts are therefore
//!    `max - min + 1`, computed in O(log n).
//! 4. **One cursor per configured sink.** `cursors.acked_through` of a sink
//!    only grows; a batch is deleted once every configured sink's cursor has
//!    passed it, in bounded chunks ([`DELETE_CHUNK`] per transaction, up to
//!    [`ACK_DELETE_ROUNDS`] of them per ack, [`APPEND_DELETE_CHUNK`] per
//!    append, all of them at open), so that no transaction holds the write
//!    lock for long. A sink present in the file but no longer configured has its
//!    cursor dropped at open (logged) and blocks nothing. A newly configured
//!    sink starts before the oldest stored batch: it sees the whole backlog.
//!    With no sink configured, batches stay until the cap evicts them.
//! 5. **The cap holds.** The file set (`NAME`, `NAME-wal`, `NAME-shm`) stays
//!    within `max_bytes` + [`CAP_SLACK_BYTES`] (see *Size* below). Reaching the
//!    cap never fails an append: the oldest batches are evicted in the same
//!    transaction (never the one being appended), and each evicted batch is
//!    counted by reason in the persisted `counters` table.
//! 6. **Errors do not stop sampling.** A full disk keeps the newest data:
//!    the writer releases its reserve file (`NAME.reserve`, allocated at
//!    open) and evicts the oldest batches to commit the new one, until the
//!    file system has room again (see `reserve.rs`); only when that fails
//!    too is the append [`BufferError::DiskFull`] (retryable, the caller
//!    counts it). A corrupt file at start is moved aside and replaced (see
//!    [`Buffer::open`]); an undecodable stored batch is skipped by readers.
//!
//! ## Schema (`PRAGMA application_id = 0x41494642` "AIFB", `user_version = 1`)
//!
//! ```sql
//! CREATE TABLE series (
//!     id         INTEGER PRIMARY KEY AUTOINCREMENT,
//!     name       TEXT    NOT NULL,      -- metric name
//!     kind       INTEGER NOT NULL,      -- MetricKind::code()
//!     labels     BLOB    NOT NULL,      -- encoding.rs: sorted label pairs
//!     last_batch INTEGER NOT NULL       -- a recent batch id using it (GC)
//! );
//! CREATE TABLE batches (
//!     id      INTEGER PRIMARY KEY AUTOINCREMENT,
//!     ts      INTEGER NOT NULL,         -- Batch::timestamp_ms
//!     payload BLOB    NOT NULL          -- encoding.rs: (series id, value)*
//! );
//! CREATE TABLE cursors  (sink TEXT PRIMARY KEY, acked_through INTEGER NOT NULL) WITHOUT ROWID;
//! CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
//!     -- 'evicted_cap', 'evicted_disk_full'
//! ```
//!
//! Settings: `page_size = 4096`, `auto_vacuum = INCREMENTAL` (fixed at
//! creation), `journal_mode = WAL` (persistent); per connection
//! `synchronous` (from [`Durability`]), `busy_timeout = 10 s`,
//! `journal_size_limit` (from the cap), `wal_autocheckpoint = 0`: the
//! writer's WAL hook and the checkpointer thread checkpoint instead.
//!
//! A series is stored once and referenced by id. The writer keeps the
//! series → id map in memory (loaded at open) and refreshes a series'
//! `last_batch` only when it lags by 256 ids; every 256 appends it deletes the
//! series with `last_batch + 256 <= oldest stored id`, which no stored batch
//! can reference. Readers read batches and the series they need in one read
//! snapshot.
//!
//! ## Encoding
//!
//! See `encoding.rs`: a payload is a varint sample count, then per sample the
//! zigzag-varint delta of the series id and the value as a tag byte plus the
//! shortest exact body (small integers in the tag itself, zigzag-varint
//! integers, decimals as mantissa + exponent tag, otherwise 8 raw bytes).
//! Values round-trip bit for bit (NaN payloads and `-0.0` included). Realistic
//! 8-GPU batches take about 5 bytes per sample in the payload and about 6 on
//! disk with SQLite's overhead (measured by the `buffer` bench and the test
//! `buffer::tests::cap::bytes_per_sample_on_disk_is_small`), against a target
//! of 32 (24 h × 8 GPUs × 20 series at 1 Hz ≤ 512 MiB).
//!
//! ## Size
//!
//! The cap is split between the files: the WAL gets `max_bytes / 8` clamped to
//! 64 KiB ..= 4 MiB (the writer hook's inline-checkpoint threshold, twice
//! the checkpointer's, and the `journal_size_limit`), the `-shm` index 32 KiB, one append transaction a
//! margin of `max_bytes / 16` clamped to 128 KiB ..= 4 MiB, and the main file
//! the rest (the *data budget*). Batches larger than a quarter of the margin
//! are refused ([`BufferError::BatchTooLarge`]; a realistic 8-GPU batch is
//! under 1 KiB, the limit at least 32 KiB). Inside the append transaction the
//! writer compares the pages in use (`page_count - freelist_count`) with the
//! data budget and, when above it, deletes the oldest batches down to 31/32 of
//! it. Freed pages are reused by later appends; when more than 1/8 of the
//! budget is free (after sinks drained a backlog), each append gives a few
//! pages back to the file system with `incremental_vacuum`.
//!
//! Slack, what SQLite can add beyond `max_bytes`: the main file can grow by one
//! transaction's new pages before eviction runs, and the WAL is checkpointed
//! only after the commit that crosses its threshold, so it can hold one
//! transaction's frames beyond it; the append margin covers both. On top of
//! it, WAL frame headers (24 bytes per page) and the b-tree, free-list and
//! pointer-map pages a transaction touches are bounded by
//! [`CAP_SLACK_BYTES`] (64 KiB): the file set stays within `max_bytes +
//! CAP_SLACK_BYTES`. Not covered: a reader holding a read snapshot open for
//! long keeps the WAL from being reused (the readers here hold one only within
//! a call). A disk that fills up before the cap is reached is invariant 6:
//! the reserve (the WAL limit plus the append margin, outside `max_bytes`)
//! gives the WAL and the checkpoint their room, and the main file stops
//! growing while the disk is full. Measured: at a 1 MiB cap with no sink acking,
//! 4 000 realistic appends keep the file set under 1 MiB (about 1 000 batches
//! kept).
//!
//! ## Corruption
//!
//! At open the file must be empty (then it is initialised) or a buffer file of
//! this schema version that passes `PRAGMA quick_check`. Anything else — not
//! SQLite, truncated, damaged pages, a foreign schema, another version, a file
//! that cannot be opened — is renamed `NAME.corrupt-<unix-ts>` together with
//! its `-wal`/`-shm`, logged with `log::error!` (path and reason), and a fresh
//! buffer starts; [`Buffer::recovered_from`] reports it.

mod checkpointer;
mod config;
mod encoding;
mod error;
mod reader;
mod reserve;
mod schema;
mod size;
mod stats;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;

pub use config::{BufferConfig, CAP_SLACK_BYTES, DEFAULT_MAX_BYTES, Durability, MIN_MAX_BYTES};
pub use encoding::DecodeError;
pub use error::{BufferError, ConfigError};
pub use reader::SinkReader;
pub use reserve::{SUMMARY_EVERY as DISK_FULL_SUMMARY_EVERY, free_bytes, reserve_path};
pub use size::{SizeError, parse_size};
pub use stats::{BufferStats, EvictReason, Evictions, PendingStats, SinkStats};
pub use writer::Buffer;

/// The most batches one ack transaction deletes. An ack
/// ([`SinkReader::ack_through`]) runs up to [`ACK_DELETE_ROUNDS`] of them,
/// each in its own write turn, and stops early when the sampler waits for the
/// turn: the sampler waits for one chunk at most (a few milliseconds). What is
/// left goes with later acks and appends.
pub const DELETE_CHUNK: i64 = 32;

/// Delete transactions one ack runs at most (so up to 128 batches per ack).
pub const ACK_DELETE_ROUNDS: u32 = 4;

/// The most taken batches one [`Buffer::append`] deletes besides its own work.
pub const APPEND_DELETE_CHUNK: i64 = 8;

/// One write transaction at a time among a [`Buffer`] and its readers, taken
/// before `BEGIN IMMEDIATE`. Without it, SQLite's busy handler decides who
/// writes next: a waiter sleeps in growing steps (1, 2, 5, … 100 ms) and a
/// sink that acks again at once can win every time, so a tick could wait for
/// several acks (measured: 533 ms while a day-long backlog drained). With it
/// the sampler waits for one bounded delete chunk at most: it announces that
/// it waits ([`WriteGate::enter_first`]) and a reader between two chunks of
/// an ack yields ([`WriteGate::sampler_waits`]). Other processes are kept out
/// by the writer lock (`NAME.lock`).
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteGate(std::sync::Arc<GateInner>);

#[derive(Debug, Default)]
pub(crate) struct GateInner {
    turn: std::sync::Mutex<()>,
    /// The sampler (writer) threads waiting for the turn.
    sampler_waiting: std::sync::atomic::AtomicUsize,
}

impl WriteGate {
    /// Waits for this process's turn to write; the turn ends when the guard
    /// is dropped.
    pub(crate) fn enter(&self) -> std::sync::MutexGuard<'_, ()> {
        self.0.turn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// As [`WriteGate::enter`], for the sampler: readers see it waiting and
    /// yield between their chunks.
    pub(crate) fn enter_first(&self) -> std::sync::MutexGuard<'_, ()> {
        use std::sync::atomic::Ordering;
        self.0.sampler_waiting.fetch_add(1, Ordering::SeqCst);
        let guard = self.enter();
        self.0.sampler_waiting.fetch_sub(1, Ordering::SeqCst);
        guard
    }

    /// Whether the sampler waits for the turn now.
    pub(crate) fn sampler_waits(&self) -> bool {
        self.0
            .sampler_waiting
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
    }
}

/// The id of a stored batch: increasing in append order, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId(pub i64);

impl BatchId {
    /// The id as stored.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
