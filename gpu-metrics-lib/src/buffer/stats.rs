//! What the buffer holds: counts, sizes, evictions, per-sink backlog.

use rusqlite::{Connection, OptionalExtension};

use super::BatchId;

/// Why batches were deleted before every sink took them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvictReason {
    /// The file set reached `max_bytes`.
    Cap,
    /// SQLite reported a full disk; the oldest batches were dropped so that
    /// later appends can reuse their pages.
    DiskFull,
}

impl EvictReason {
    /// Every reason, for exporting counters with zeros.
    pub const ALL: [EvictReason; 2] = [EvictReason::Cap, EvictReason::DiskFull];

    /// The label value used in metrics: `cap`, `disk_full`.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictReason::Cap => "cap",
            EvictReason::DiskFull => "disk_full",
        }
    }

    /// The row name in the `counters` table.
    pub(crate) fn counter(self) -> &'static str {
        match self {
            EvictReason::Cap => "evicted_cap",
            EvictReason::DiskFull => "evicted_disk_full",
        }
    }
}

/// Batches evicted since the file was created, by reason (persisted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Evictions {
    /// Evicted because of the cap.
    pub cap: u64,
    /// Evicted because the disk was full.
    pub disk_full: u64,
}

impl Evictions {
    /// The count for one reason.
    pub fn get(&self, reason: EvictReason) -> u64 {
        match reason {
            EvictReason::Cap => self.cap,
            EvictReason::DiskFull => self.disk_full,
        }
    }

    /// All reasons together.
    pub fn total(&self) -> u64 {
        self.cap + self.disk_full
    }
}

/// The backlog of one sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PendingStats {
    /// Stored batches the sink has not taken.
    pub batches: u64,
    /// The oldest of them.
    pub oldest_id: Option<BatchId>,
    /// Its timestamp (ms since the epoch): the age of the sink's backlog.
    pub oldest_timestamp_ms: Option<i64>,
}

/// One sink's cursor and backlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStats {
    /// The sink name.
    pub sink: String,
    /// Everything up to and including this id is taken by the sink.
    pub acked_through: BatchId,
    /// What is left for it.
    pub pending: PendingStats,
}

/// A snapshot of the whole buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferStats {
    /// Stored batches.
    pub batches: u64,
    /// The oldest stored batch.
    pub first_id: Option<BatchId>,
    /// The newest stored batch.
    pub last_id: Option<BatchId>,
    /// Timestamp of the oldest stored batch.
    pub oldest_timestamp_ms: Option<i64>,
    /// Bytes of the file set on disk (main file + `-wal` + `-shm`).
    pub file_bytes: u64,
    /// The configured cap.
    pub max_bytes: u64,
    /// Evictions since the file was created.
    pub evicted: Evictions,
    /// One entry per configured sink, in configuration order.
    pub sinks: Vec<SinkStats>,
}

/// See [`id_range`].
pub(crate) const ID_RANGE_SQL: &str =
    "SELECT (SELECT min(id) FROM batches), (SELECT max(id) FROM batches)";

/// See [`pending_after`].
pub(crate) const OLDEST_AFTER_SQL: &str =
    "SELECT id, ts FROM batches WHERE id > ?1 ORDER BY id LIMIT 1";

/// See [`delete_taken`].
pub(crate) const DELETE_TAKEN_SQL: &str = "DELETE FROM batches WHERE id <= min(
     (SELECT min(acked_through) FROM cursors),
     (SELECT min(id) FROM batches) + ?1 - 1)";

/// `(min(id), max(id))` of the stored batches, in O(log n): each in its own
/// subquery, because SQLite's min/max optimisation (one b-tree descent)
/// applies only to a query with a single `min()` or `max()`; `SELECT min(id),
/// max(id) FROM batches` scans the whole table (measured: 40–70 ms with a day
/// of batches stored, inside an ack's write turn).
pub(crate) fn id_range(conn: &Connection) -> rusqlite::Result<Option<(i64, i64)>> {
    conn.prepare_cached(ID_RANGE_SQL)?.query_row([], |r| {
        Ok(
            match (r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?) {
                (Some(a), Some(b)) => Some((a, b)),
                _ => None,
            },
        )
    })
}

/// The highest batch id ever assigned (0 when none).
pub(crate) fn head(conn: &Connection) -> rusqlite::Result<i64> {
    Ok(conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'batches'")?
        .query_row([], |r| r.get::<_, i64>(0))
        .optional()?
        .unwrap_or(0))
}

/// Stored ids in `(after, through]`, using the invariant that stored ids are
/// one contiguous range.
pub(crate) fn count_in(range: Option<(i64, i64)>, after: i64, through: i64) -> u64 {
    match range {
        Some((min, max)) => {
            let lo = min.max(after.saturating_add(1));
            let hi = max.min(through);
            if hi >= lo { (hi - lo + 1) as u64 } else { 0 }
        }
        None => 0,
    }
}

/// The backlog after `cursor`.
pub(crate) fn pending_after(
    conn: &Connection,
    range: Option<(i64, i64)>,
    cursor: i64,
) -> rusqlite::Result<PendingStats> {
    let batches = count_in(range, cursor, i64::MAX);
    if batches == 0 {
        return Ok(PendingStats::default());
    }
    let (id, ts) = conn
        .prepare_cached(OLDEST_AFTER_SQL)?
        .query_row([cursor], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
    Ok(PendingStats {
        batches,
        oldest_id: Some(BatchId(id)),
        oldest_timestamp_ms: Some(ts),
    })
}

/// The persisted eviction counters.
pub(crate) fn evictions(conn: &Connection) -> rusqlite::Result<Evictions> {
    let mut st = conn.prepare_cached("SELECT value FROM counters WHERE name = ?1")?;
    let mut get = |reason: EvictReason| -> rusqlite::Result<u64> {
        Ok(st
            .query_row([reason.counter()], |r| r.get::<_, i64>(0))
            .optional()?
            .unwrap_or(0)
            .max(0) as u64)
    };
    Ok(Evictions {
        cap: get(EvictReason::Cap)?,
        disk_full: get(EvictReason::DiskFull)?,
    })
}

/// Adds `n` to the persisted counter of `reason`.
pub(crate) fn count_eviction(
    conn: &Connection,
    reason: EvictReason,
    n: u64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO counters (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
    )?
    .execute(rusqlite::params![reason.counter(), n as i64])?;
    Ok(())
}

/// The acked-through id of `sink`, `None` when it has no cursor.
pub(crate) fn cursor_of(conn: &Connection, sink: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT acked_through FROM cursors WHERE sink = ?1")?
        .query_row([sink], |r| r.get(0))
        .optional()
}

/// Deletes up to `limit` of the oldest batches every sink has taken;
/// returns how many.
pub(crate) fn delete_taken(conn: &Connection, limit: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached(DELETE_TAKEN_SQL)?.execute([limit])
}

/// The newest id every configured sink has taken (0 when none, or no sink).
pub(crate) fn taken_through(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT coalesce(min(acked_through), 0) FROM cursors")?
        .query_row([], |r| r.get(0))
}
