//! The read side: one [`SinkReader`] per sink, each with its own connection.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::checkpointer::CheckpointRequest;
use super::config::{BufferConfig, CapPlan};
use super::encoding::{DecodeError, decode_labels, decode_payload};
use super::error::BufferError;
use super::schema;
use super::stats::{self, PendingStats};
use super::{BatchId, WriteGate};
use crate::sample::{Batch, MetricKind, Sample, Series};

/// The series cache is cleared when it grows beyond this many entries (series
/// churn, e.g. per-process series), so a long-running reader stays bounded.
const SERIES_CACHE_LIMIT: usize = 65_536;

/// A sink's view of the buffer: the batches it has not taken yet, and its
/// cursor. Create it with [`super::Buffer::reader`]; it is `Send`, so it can
/// live in the sink's thread. Reads hold a read snapshot only for the duration
/// of one call.
///
/// Decoded batches share one `Arc<Series>` per series id for the life of the
/// reader (up to a cache of 65 536 series), so rendering can cache per series.
///
/// A stored batch that cannot be decoded (damaged payload, missing series) is
/// skipped: logged once as an error and counted in
/// [`SinkReader::skipped_corrupt`]; acknowledging a later id covers it.
pub struct SinkReader {
    conn: Connection,
    dec: Decoder,
    gate: WriteGate,
    /// Wakes the writer's checkpointer thread.
    checkpoint: CheckpointRequest,
    /// When this reader last asked for a checkpoint.
    last_checkpoint: std::time::Instant,
}

/// An ack that covers at least this many batches (a catch-up, or a
/// latest-state sink's jump over a backlog) asks for a checkpoint.
const CHECKPOINT_AFTER_BATCHES: u64 = 64;

/// Otherwise a reader asks for one after an ack at most this often; in between
/// the writer's WAL hook and its checkpointer thread (`checkpointer.rs`) apply.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Decoding state, apart from the connection so both can be borrowed at once.
struct Decoder {
    path: PathBuf,
    sink: String,
    series: HashMap<i64, Arc<Series>>,
    raw: Vec<(i64, f64)>,
    skipped_corrupt: u64,
    last_skipped: i64,
}

impl std::fmt::Debug for SinkReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkReader")
            .field("path", &self.dec.path)
            .field("sink", &self.dec.sink)
            .finish_non_exhaustive()
    }
}

/// What decoding one stored row gave.
enum Decoded {
    Batch(Batch),
    Corrupt(DecodeError),
}

impl SinkReader {
    pub(crate) fn open(
        config: &BufferConfig,
        plan: &CapPlan,
        sink: &str,
        gate: WriteGate,
        checkpoint: CheckpointRequest,
    ) -> Result<Self, BufferError> {
        let path = config.path.clone();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags)
            .map_err(|e| BufferError::sqlite(&path, "open reader", e))?;
        schema::configure(&conn, &path, config.durability, plan)?;
        // Its commits never checkpoint (`configure`): after large acks it wakes
        // the writer's checkpointer thread (see `ack_through`).
        Ok(SinkReader {
            conn,
            gate,
            checkpoint,
            last_checkpoint: std::time::Instant::now(),
            dec: Decoder {
                path,
                sink: sink.to_string(),
                series: HashMap::new(),
                raw: Vec::new(),
                skipped_corrupt: 0,
                last_skipped: 0,
            },
        })
    }

    /// The sink this reader serves.
    pub fn sink(&self) -> &str {
        &self.dec.sink
    }

    /// Stored batches skipped because they could not be decoded.
    pub fn skipped_corrupt(&self) -> u64 {
        self.dec.skipped_corrupt
    }

    fn err(&self, op: &'static str) -> impl Fn(rusqlite::Error) -> BufferError + '_ {
        self.dec.err(op)
    }

    fn cursor(&self, conn: &Connection) -> Result<i64, BufferError> {
        stats::cursor_of(conn, &self.dec.sink)
            .map_err(self.err("read cursor"))?
            .ok_or_else(|| BufferError::UnknownSink {
                sink: self.dec.sink.clone(),
            })
    }

    /// Up to `max` batches this sink has not taken, oldest first (the
    /// remote-write order). Reading does not take them: call
    /// [`SinkReader::ack_through`] once they are delivered.
    ///
    /// # Errors
    /// [`BufferError::UnknownSink`] when the sink's cursor is gone (the buffer
    /// was reopened without it); SQLite errors.
    pub fn oldest(&mut self, max: usize) -> Result<Vec<(BatchId, Batch)>, BufferError> {
        self.read_after(BatchId(0), max)
    }

    /// Up to `max` batches with ids above both `after` and this sink's
    /// cursor, oldest first: the read of a sink whose delivery runs ahead of
    /// its (lazily moved) cursor.
    ///
    /// # Errors
    /// As [`SinkReader::oldest`].
    pub fn read_after(
        &mut self,
        after: BatchId,
        max: usize,
    ) -> Result<Vec<(BatchId, Batch)>, BufferError> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(self.err("read oldest"))?;
        let cursor = self.cursor(&tx)?.max(after.0);
        let rows: Vec<(i64, i64, Vec<u8>)> = tx
            .prepare_cached(
                "SELECT id, ts, payload FROM batches WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .and_then(|mut st| {
                st.query_map(
                    params![cursor, i64::try_from(max).unwrap_or(i64::MAX)],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?
                .collect()
            })
            .map_err(self.err("read oldest"))?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, ts, payload) in rows {
            if let Some(batch) = self.dec.decode(&tx, id, ts, &payload)? {
                out.push((BatchId(id), batch));
            }
        }
        tx.commit().map_err(self.err("read oldest"))?;
        Ok(out)
    }

    /// This sink's durable cursor: every batch at or below it is taken.
    ///
    /// # Errors
    /// [`BufferError::UnknownSink`]; SQLite errors.
    pub fn acked_through(&mut self) -> Result<BatchId, BufferError> {
        let conn = &self.conn;
        stats::cursor_of(conn, &self.dec.sink)
            .map_err(|e| BufferError::sqlite(&self.dec.path, "read cursor", e))?
            .map(BatchId)
            .ok_or_else(|| BufferError::UnknownSink {
                sink: self.dec.sink.clone(),
            })
    }

    /// The newest batch this sink has not taken (the Pushgateway's view). To
    /// mark it and everything older as taken, call
    /// [`SinkReader::ack_through`] with its id; the count it returns minus one
    /// is the number of batches superseded.
    ///
    /// # Errors
    /// As [`SinkReader::oldest`].
    pub fn newest(&mut self) -> Result<Option<(BatchId, Batch)>, BufferError> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(self.err("read newest"))?;
        let cursor = self.cursor(&tx)?;
        let mut below = i64::MAX;
        let found = loop {
            let row: Option<(i64, i64, Vec<u8>)> = tx
                .prepare_cached(
                    "SELECT id, ts, payload FROM batches WHERE id > ?1 AND id < ?2 ORDER BY id DESC LIMIT 1",
                )
                .and_then(|mut st| {
                    st.query_row([cursor, below], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .optional()
                })
                .map_err(self.err("read newest"))?;
            let Some((id, ts, payload)) = row else {
                break None;
            };
            if let Some(batch) = self.dec.decode(&tx, id, ts, &payload)? {
                break Some((BatchId(id), batch));
            }
            below = id;
        };
        tx.commit().map_err(self.err("read newest"))?;
        Ok(found)
    }

    /// Marks every batch with an id at or below `id` as taken by this sink and
    /// deletes up to [`DELETE_CHUNK`](super::DELETE_CHUNK) of the batches
    /// every configured sink has now taken, in one transaction; then up to
    /// [`ACK_DELETE_ROUNDS`](super::ACK_DELETE_ROUNDS)` - 1` more chunks,
    /// each in its own transaction, unless the sampler waits to write (the
    /// rest go with later acks and appends, so the sampler never waits for
    /// more than one chunk). An ack that covers a large span (or the first after
    /// 30 s) wakes the writer's checkpointer thread, so the WAL the deletes
    /// wrote is copied back off this thread and off the sampler's. Returns
    /// how many stored batches this newly covered (0 when
    /// `id` is at or below the cursor already: the cursor never moves back).
    ///
    /// # Errors
    /// [`BufferError::AckBeyondHead`] for an id never assigned;
    /// [`BufferError::UnknownSink`]; [`BufferError::Busy`] when the writer held
    /// the lock past the busy timeout; other SQLite errors.
    pub fn ack_through(&mut self, id: BatchId) -> Result<u64, BufferError> {
        let covered = self.ack_in_turn(id)?;
        if covered >= CHECKPOINT_AFTER_BATCHES
            || (covered > 0 && self.last_checkpoint.elapsed() >= CHECKPOINT_EVERY)
        {
            self.last_checkpoint = std::time::Instant::now();
            // Copy what the WAL holds into the main file soon, on the
            // checkpointer's thread, while the sampler goes on appending.
            self.checkpoint.request();
        }
        Ok(covered)
    }

    /// The ack's write transactions, each in this process's write turn.
    fn ack_in_turn(&mut self, id: BatchId) -> Result<u64, BufferError> {
        let path = &self.dec.path;
        let sink = &self.dec.sink;
        let err = |op| super::error::on(path, op);
        let mut covered = 0;
        // The first turn moves the cursor; each turn deletes a chunk. More
        // turns while there is more to delete and the sampler is not waiting.
        for round in 0..super::ACK_DELETE_ROUNDS {
            let _turn = self.gate.enter();
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err("begin ack"))?;
            if round == 0 {
                let cursor = stats::cursor_of(&tx, sink)
                    .map_err(err("read cursor"))?
                    .ok_or_else(|| BufferError::UnknownSink { sink: sink.clone() })?;
                if id.0 <= cursor {
                    return Ok(0);
                }
                let head = stats::head(&tx).map_err(err("read head"))?;
                if id.0 > head {
                    return Err(BufferError::AckBeyondHead {
                        sink: sink.clone(),
                        id,
                        head,
                    });
                }
                let range = stats::id_range(&tx).map_err(err("read batch range"))?;
                covered = stats::count_in(range, cursor, id.0);
                tx.prepare_cached("UPDATE cursors SET acked_through = ?1 WHERE sink = ?2")
                    .and_then(|mut st| st.execute(params![id.0, sink]))
                    .map_err(err("move cursor"))?;
            }
            let deleted = stats::delete_taken(&tx, super::DELETE_CHUNK)
                .map_err(err("delete taken batches"))?;
            tx.commit().map_err(err("commit ack"))?;
            if (deleted as i64) < super::DELETE_CHUNK || self.gate.sampler_waits() {
                break;
            }
        }
        Ok(covered)
    }

    /// This sink's backlog: how many stored batches it has not taken and the
    /// oldest one's id and timestamp.
    ///
    /// # Errors
    /// [`BufferError::UnknownSink`]; SQLite errors.
    pub fn pending(&mut self) -> Result<PendingStats, BufferError> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(self.err("pending"))?;
        let cursor = self.cursor(&tx)?;
        let range = stats::id_range(&tx).map_err(self.err("pending"))?;
        let p = stats::pending_after(&tx, range, cursor).map_err(self.err("pending"))?;
        tx.commit().map_err(self.err("pending"))?;
        Ok(p)
    }
}

impl Decoder {
    fn err(&self, op: &'static str) -> impl Fn(rusqlite::Error) -> BufferError + '_ {
        move |e| BufferError::sqlite(&self.path, op, e)
    }

    /// Decodes one stored row; `None` (logged, counted) when it is damaged.
    fn decode(
        &mut self,
        conn: &Connection,
        id: i64,
        ts: i64,
        payload: &[u8],
    ) -> Result<Option<Batch>, BufferError> {
        match self.try_decode(conn, ts, payload)? {
            Decoded::Batch(b) => Ok(Some(b)),
            Decoded::Corrupt(e) => {
                if id > self.last_skipped {
                    self.last_skipped = id;
                    self.skipped_corrupt += 1;
                    log::error!(
                        "buffer {}: sink {:?} skips batch {id} (timestamp {ts}): {e}",
                        self.path.display(),
                        self.sink
                    );
                }
                Ok(None)
            }
        }
    }

    fn try_decode(
        &mut self,
        conn: &Connection,
        ts: i64,
        payload: &[u8],
    ) -> Result<Decoded, BufferError> {
        if let Err(e) = decode_payload(payload, &mut self.raw) {
            return Ok(Decoded::Corrupt(e));
        }
        if self.series.len() > SERIES_CACHE_LIMIT {
            self.series.clear();
        }
        let mut samples = Vec::with_capacity(self.raw.len());
        for i in 0..self.raw.len() {
            let (sid, value) = self.raw[i];
            let series = match self.series.get(&sid) {
                Some(s) => Arc::clone(s),
                None => match self.load_series(conn, sid)? {
                    Ok(s) => {
                        self.series.insert(sid, Arc::clone(&s));
                        s
                    }
                    Err(e) => return Ok(Decoded::Corrupt(e)),
                },
            };
            samples.push(Sample { series, value });
        }
        Ok(Decoded::Batch(Batch {
            timestamp_ms: ts,
            samples,
        }))
    }

    fn load_series(
        &self,
        conn: &Connection,
        id: i64,
    ) -> Result<Result<Arc<Series>, DecodeError>, BufferError> {
        let row: Option<(String, i64, Vec<u8>)> = conn
            .prepare_cached("SELECT name, kind, labels FROM series WHERE id = ?1")
            .and_then(|mut st| {
                st.query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(self.err("load series"))?;
        let Some((name, code, labels)) = row else {
            return Ok(Err(DecodeError::UnknownSeries { id }));
        };
        let Some(kind) = u8::try_from(code).ok().and_then(MetricKind::from_code) else {
            return Ok(Err(DecodeError::UnknownKind { id, code }));
        };
        Ok(decode_labels(&labels).map(|labels| Arc::new(Series::new(name, kind, labels))))
    }
}
