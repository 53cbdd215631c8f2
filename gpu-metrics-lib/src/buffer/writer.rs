//! The writer: [`Buffer`], owned by the sampling thread.

use std::collections::HashMap;

use crate::fasthash::FastMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, TransactionBehavior, params};

use super::checkpointer::{Checkpointer, WalHook};
use super::config::{BufferConfig, CapPlan, PAGE_SIZE};
use super::encoding::{decode_labels, encode_labels, encode_payload};
use super::error::BufferError;
use super::reader::SinkReader;
use super::reserve::{self, Episode, Reserve};
use super::schema::{self, OpenFailure};
use super::stats::{self, BufferStats, EvictReason, PendingStats, SinkStats};
use super::{BatchId, WriteGate};
use crate::sample::{Batch, MetricKind, Series};

/// A series' stored `last_batch` is refreshed once it lags the batch that uses
/// the series by this many ids; a series is deleted once `last_batch + STRIDE`
/// is at or below the oldest stored batch (no stored batch can reference it).
pub(crate) const LAST_BATCH_STRIDE: i64 = 256;

/// Unreferenced series are collected every this many appends.
const GC_INTERVAL: u32 = 256;

/// Series ids known to the writer.
#[derive(Debug, Default)]
struct SeriesCache {
    /// Fast path: the caller's `Arc` (held here, so the address is not reused).
    by_ptr: FastMap<usize, (Arc<Series>, i64)>,
    by_value: HashMap<Arc<Series>, i64>,
    /// id → (series, `last_batch` as stored).
    by_id: FastMap<i64, (Arc<Series>, i64)>,
}

impl SeriesCache {
    fn lookup(&mut self, s: &Arc<Series>) -> Option<i64> {
        let ptr = Arc::as_ptr(s) as usize;
        if let Some((_, id)) = self.by_ptr.get(&ptr) {
            return Some(*id);
        }
        let id = *self.by_value.get(&**s)?;
        if self.by_ptr.len() > 2 * self.by_value.len() + 1024 {
            self.by_ptr.clear();
        }
        self.by_ptr.insert(ptr, (Arc::clone(s), id));
        Some(id)
    }

    fn insert(&mut self, id: i64, series: Arc<Series>, last_batch: i64) {
        self.by_value.insert(Arc::clone(&series), id);
        self.by_id.insert(id, (series, last_batch));
    }

    fn stored_last(&self, id: i64) -> i64 {
        self.by_id.get(&id).map_or(i64::MIN, |(_, l)| *l)
    }

    /// Forgets series whose `last_batch + STRIDE <= oldest`; returns their count.
    fn forget_before(&mut self, oldest: i64) -> usize {
        let dead: Vec<i64> = self
            .by_id
            .iter()
            .filter(|(_, (_, last))| last.saturating_add(LAST_BATCH_STRIDE) <= oldest)
            .map(|(id, _)| *id)
            .collect();
        for id in &dead {
            if let Some((s, _)) = self.by_id.remove(id) {
                self.by_value.remove(&*s);
            }
        }
        if !dead.is_empty() {
            self.by_ptr.retain(|_, (_, id)| self.by_id.contains_key(id));
        }
        dead.len()
    }
}

/// The write side of the buffer: appends batches, enforces the cap, hands out
/// per-sink readers. Owned by one thread (it is `Send`); see the module
/// documentation for the invariants.
pub struct Buffer {
    /// The writer connection's WAL hook: declared before `conn` so that it is
    /// uninstalled before the connection closes.
    _wal_hook: WalHook,
    conn: Connection,
    /// Runs the WAL checkpoints the hook asks for, off this thread.
    checkpointer: Checkpointer,
    /// `NAME.lock`, held with `flock(LOCK_EX)` while this writer lives.
    _lock: std::fs::File,
    config: BufferConfig,
    plan: CapPlan,
    recovered_from: Option<PathBuf>,
    /// Highest batch id ever assigned (committed).
    head: i64,
    /// Next series id to assign.
    next_series_id: i64,
    series: SeriesCache,
    pairs: Vec<(i64, f64)>,
    scratch: Vec<u8>,
    appends_since_gc: u32,
    /// Shared with every reader: one write transaction at a time in this
    /// process (see [`WriteGate`]).
    gate: WriteGate,
    /// Room held on the file system so that a full disk can still evict
    /// (`reserve.rs`).
    reserve: Reserve,
    /// The disk-full episode under way, if any.
    episode: Option<Episode>,
}

/// A `BEGIN IMMEDIATE` … `COMMIT` transaction through cached statements (as
/// `rusqlite::Transaction`, which parses both statements anew each time: a
/// visible share of an append's CPU). Rolled back when dropped uncommitted.
struct Immediate<'c> {
    conn: &'c Connection,
    open: bool,
}

impl<'c> Immediate<'c> {
    fn begin(conn: &'c Connection) -> rusqlite::Result<Self> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(Immediate { conn, open: true })
    }

    fn commit(mut self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        self.open = false;
        Ok(())
    }
}

impl std::ops::Deref for Immediate<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Immediate<'_> {
    fn drop(&mut self) {
        if self.open && !self.conn.is_autocommit() {
            if let Err(e) = self
                .conn
                .prepare_cached("ROLLBACK")
                .and_then(|mut st| st.execute([]))
            {
                log::warn!("buffer: rolling back a failed append failed: {e}");
            }
        }
    }
}

/// How long [`Buffer::open`] waits for another writer's lock to go away.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Takes the writer lock `NAME.lock` (`flock(LOCK_EX | LOCK_NB)`): one writer
/// per buffer file, across processes. Released when the file closes, also when
/// the process is killed.
fn lock_writer(path: &Path) -> Result<std::fs::File, BufferError> {
    use std::os::fd::AsRawFd;
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| BufferError::Io {
            path: lock_path.clone(),
            op: "open lock file",
            source,
        })?;
    // A lock can outlive its writer for a moment: a child forked by this
    // process (any `Command::spawn`) shares the descriptor until it execs, and
    // a restarted exporter may start while the old one is still exiting. So a
    // held lock is retried for up to LOCK_WAIT before it is an error.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        // SAFETY: flock(2) on a file descriptor we own for the call's duration.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(file);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(BufferError::Io {
                path: lock_path,
                op: "lock",
                source: err,
            });
        }
        if std::time::Instant::now() >= deadline {
            return Err(BufferError::Locked {
                path: path.to_path_buf(),
                lock: lock_path,
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("path", &self.config.path)
            .field("head", &self.head)
            .field("series", &self.series.by_id.len())
            .finish_non_exhaustive()
    }
}

impl Buffer {
    /// Opens (or creates) the buffer file, checks it, and brings the sink
    /// cursors in line with `config.sinks`: a newly configured sink starts
    /// before the oldest stored batch (it sees the whole backlog); the cursor of
    /// a sink no longer configured is dropped (logged) so that it blocks no
    /// deletion.
    ///
    /// A file that is not a SQLite database, is damaged (fails `PRAGMA
    /// quick_check`), belongs to something else or has another schema version
    /// is renamed `NAME.corrupt-<unix-ts>` (with its `-wal`/`-shm`), logged as
    /// an error, and a fresh buffer is started; [`Buffer::recovered_from`] then
    /// names the moved file.
    ///
    /// # Errors
    /// [`BufferError::Config`] for a refused configuration; [`BufferError::Io`]
    /// when the directory cannot be created or a corrupt file cannot be moved;
    /// [`BufferError::StillCorrupt`] when the fresh file fails too; SQLite
    /// errors ([`BufferError::Sqlite`], [`BufferError::Busy`],
    /// [`BufferError::DiskFull`]) otherwise.
    pub fn open(config: BufferConfig) -> Result<Buffer, BufferError> {
        config.validate()?;
        let path = config.path.clone();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| BufferError::Io {
                path: dir.to_path_buf(),
                op: "create directory",
                source,
            })?;
        }
        let lock = lock_writer(&path)?;
        let (conn, recovered_from) = match schema::open_checked(&path) {
            Ok(conn) => (conn, None),
            Err(OpenFailure::Fatal(e)) => return Err(e),
            Err(OpenFailure::Corrupt(reason)) => {
                let moved = schema::move_aside(&path)?;
                log::error!(
                    "buffer {}: {reason}; moved it to {} and started a fresh buffer",
                    path.display(),
                    moved.display()
                );
                match schema::open_checked(&path) {
                    Ok(conn) => (conn, Some(moved)),
                    Err(OpenFailure::Fatal(e)) => return Err(e),
                    Err(OpenFailure::Corrupt(reason)) => {
                        return Err(BufferError::StillCorrupt {
                            path,
                            reason: reason.to_string(),
                        });
                    }
                }
            }
        };
        let plan = CapPlan::new(config.max_bytes);
        schema::configure(&conn, &path, config.durability, &plan)?;
        let (reserve, reserve_err) = Reserve::take(&path, plan.reserve_bytes());
        let episode = match reserve_err {
            None => None,
            Some(e) if is_no_space(&e) => {
                log::warn!(
                    "buffer {}: disk full at open: no room for the {} byte reserve ({} bytes free); \
                     evicting the oldest batches to keep the newest until there is room",
                    path.display(),
                    reserve.bytes(),
                    reserve::free_bytes(dir_of(&path)).unwrap_or(0)
                );
                Some(Episode::start())
            }
            Some(e) => {
                log::warn!(
                    "buffer {}: cannot allocate the {} byte reserve {}: {e}; \
                     a full disk will drop new batches instead of evicting old ones",
                    path.display(),
                    reserve.bytes(),
                    reserve::reserve_path(&path).display()
                );
                None
            }
        };
        let checkpointer = Checkpointer::start(&config, &plan)?;
        // SAFETY: `Buffer` declares the hook before the connection, so the
        // hook is dropped (uninstalled) first.
        let wal_hook = unsafe { WalHook::install(&conn, &plan, &checkpointer, &path) };
        let mut buffer = Buffer {
            _wal_hook: wal_hook,
            conn,
            checkpointer,
            _lock: lock,
            config,
            plan,
            recovered_from,
            head: 0,
            next_series_id: 1,
            series: SeriesCache::default(),
            pairs: Vec::new(),
            scratch: Vec::new(),
            appends_since_gc: 0,
            gate: WriteGate::default(),
            reserve,
            episode,
        };
        buffer.load()?;
        buffer.sync_cursors()?;
        buffer.collect_series()?;
        let range = stats::id_range(&buffer.conn).map_err(buffer.err("read batch range"))?;
        log::info!(
            "buffer {}: open, {} batches stored, {} series, durability {}, cap {} bytes",
            path.display(),
            stats::count_in(range, 0, i64::MAX),
            buffer.series.by_id.len(),
            buffer.config.durability,
            buffer.config.max_bytes
        );
        Ok(buffer)
    }

    fn err(&self, op: &'static str) -> impl Fn(rusqlite::Error) -> BufferError + '_ {
        move |e| BufferError::sqlite(&self.config.path, op, e)
    }

    fn load(&mut self) -> Result<(), BufferError> {
        let path = self.config.path.clone();
        let err = |op| super::error::on(&path, op);
        self.head = stats::head(&self.conn).map_err(err("read head"))?;
        let series_seq: i64 = self
            .conn
            .query_row(
                "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'series'), 0)",
                [],
                |r| r.get(0),
            )
            .map_err(err("read series sequence"))?;
        self.next_series_id = series_seq + 1;
        let mut st = self
            .conn
            .prepare("SELECT id, name, kind, labels, last_batch FROM series")
            .map_err(err("load series"))?;
        let mut rows = st.query([]).map_err(err("load series"))?;
        while let Some(row) = rows.next().map_err(err("load series"))? {
            let id: i64 = row.get(0).map_err(err("load series"))?;
            let name: String = row.get(1).map_err(err("load series"))?;
            let code: i64 = row.get(2).map_err(err("load series"))?;
            let labels: Vec<u8> = row.get(3).map_err(err("load series"))?;
            let last: i64 = row.get(4).map_err(err("load series"))?;
            let kind = u8::try_from(code).ok().and_then(MetricKind::from_code);
            match (kind, decode_labels(&labels)) {
                (Some(kind), Ok(labels)) => {
                    self.series
                        .insert(id, Arc::new(Series::new(name, kind, labels)), last);
                }
                (kind, labels) => log::error!(
                    "buffer {}: series {id} ({name}) is unreadable (kind code {code}: {}, labels: {}); \
                     batches using it will be skipped",
                    path.display(),
                    if kind.is_some() { "ok" } else { "unknown" },
                    labels
                        .err()
                        .map_or_else(|| "ok".to_string(), |e| e.to_string()),
                ),
            }
        }
        Ok(())
    }

    fn sync_cursors(&mut self) -> Result<(), BufferError> {
        let path = self.config.path.clone();
        let err = |op| super::error::on(&path, op);
        let _turn = self.gate.enter_first();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err("sync cursors"))?;
        let existing: Vec<(String, i64)> = tx
            .prepare("SELECT sink, acked_through FROM cursors")
            .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(err("read cursors"))?;
        for (sink, acked) in &existing {
            if !self.config.sinks.contains(sink) {
                tx.execute("DELETE FROM cursors WHERE sink = ?1", [sink])
                    .map_err(err("drop cursor"))?;
                log::warn!(
                    "buffer {}: sink {sink:?} is no longer configured; dropped its cursor (acked through {acked})",
                    path.display()
                );
            }
        }
        let range = stats::id_range(&tx).map_err(err("read batch range"))?;
        let start = range.map_or(self.head, |(min, _)| min - 1);
        for sink in &self.config.sinks {
            if !existing.iter().any(|(s, _)| s == sink) {
                tx.execute(
                    "INSERT INTO cursors (sink, acked_through) VALUES (?1, ?2)",
                    params![sink, start],
                )
                .map_err(err("add cursor"))?;
                log::info!(
                    "buffer {}: new sink {sink:?} starts after batch {start} ({} stored batches pending)",
                    path.display(),
                    stats::count_in(range, start, i64::MAX)
                );
            }
        }
        let deleted = stats::delete_taken(&tx, i64::MAX).map_err(err("delete taken batches"))?;
        if deleted > 0 {
            log::info!(
                "buffer {}: deleted {deleted} batches every configured sink has taken",
                path.display()
            );
        }
        tx.commit().map_err(err("sync cursors"))
    }

    /// Deletes series no stored batch can reference, in the database and here.
    fn collect_series(&mut self) -> Result<(), BufferError> {
        let path = self.config.path.clone();
        let err = |op| super::error::on(&path, op);
        let oldest = stats::id_range(&self.conn)
            .map_err(err("read batch range"))?
            .map_or(self.head + 1, |(min, _)| min);
        let _turn = self.gate.enter_first();
        let deleted = self
            .conn
            .prepare_cached("DELETE FROM series WHERE last_batch <= ?1")
            .and_then(|mut st| st.execute([oldest - LAST_BATCH_STRIDE]))
            .map_err(err("collect series"))?;
        let forgotten = self.series.forget_before(oldest);
        if deleted > 0 || forgotten > 0 {
            log::debug!(
                "buffer {}: collected {deleted} unreferenced series ({forgotten} cached)",
                path.display()
            );
        }
        self.appends_since_gc = 0;
        Ok(())
    }

    /// The configuration the buffer was opened with.
    pub fn config(&self) -> &BufferConfig {
        &self.config
    }

    /// The path of the corrupt file moved aside at open, if that happened.
    pub fn recovered_from(&self) -> Option<&Path> {
        self.recovered_from.as_deref()
    }

    /// The highest batch id ever assigned (0 before the first append).
    pub fn head(&self) -> BatchId {
        BatchId(self.head)
    }

    /// Appends one batch in one transaction (`BEGIN IMMEDIATE`); once this
    /// returns `Ok` the batch is committed (see [`super::Durability`] for what
    /// that survives). Evicts the oldest batches first when the cap is reached
    /// (counted as [`EvictReason::Cap`]); the new batch is never evicted.
    ///
    /// # Errors
    /// [`BufferError::DiskFull`] (nothing written; the oldest sixteenth of the
    /// batches is evicted as [`EvictReason::DiskFull`] so that later appends
    /// can reuse their pages), [`BufferError::Busy`],
    /// [`BufferError::BatchTooLarge`], [`BufferError::Sqlite`]. After any error
    /// the buffer stays usable.
    pub fn append(&mut self, batch: &Batch) -> Result<BatchId, BufferError> {
        let id = self.head + 1;
        let mut new_series: Vec<(i64, Arc<Series>)> = Vec::new();
        let mut new_ids: HashMap<&Series, i64> = HashMap::new();
        let mut refresh: Vec<i64> = Vec::new();
        self.pairs.clear();
        for sample in &batch.samples {
            let sid = match self.series.lookup(&sample.series) {
                Some(sid) => {
                    if id - self.series.stored_last(sid) >= LAST_BATCH_STRIDE {
                        refresh.push(sid);
                    }
                    sid
                }
                None => *new_ids.entry(&*sample.series).or_insert_with(|| {
                    let sid = self.next_series_id + new_series.len() as i64;
                    new_series.push((sid, Arc::clone(&sample.series)));
                    sid
                }),
            };
            self.pairs.push((sid, sample.value));
        }
        encode_payload(&mut self.scratch, self.pairs.iter().copied());
        if self.scratch.len() as u64 > self.plan.batch_limit_bytes {
            return Err(BufferError::BatchTooLarge {
                bytes: self.scratch.len(),
                limit: self.plan.batch_limit_bytes,
            });
        }
        refresh.sort_unstable();
        refresh.dedup();
        if let Err(e) = self.write_or_make_room(id, batch.timestamp_ms, &new_series, &refresh) {
            if let (Some(ep), BufferError::DiskFull { .. }) = (self.episode.as_mut(), &e) {
                ep.dropped += 1;
            }
            self.episode_upkeep();
            return Err(e);
        }
        self.head = id;
        self.next_series_id += new_series.len() as i64;
        for (sid, s) in new_series {
            self.series.insert(sid, s, id);
        }
        for sid in refresh {
            if let Some(entry) = self.series.by_id.get_mut(&sid) {
                entry.1 = id;
            }
        }
        self.episode_upkeep();
        self.appends_since_gc += 1;
        if self.appends_since_gc >= GC_INTERVAL {
            if let Err(e) = self.collect_series() {
                log::warn!(
                    "buffer {}: collecting series failed: {e}",
                    self.config.path.display()
                );
            }
        }
        Ok(BatchId(id))
    }

    /// [`Buffer::write`]; on a full disk, starts (or goes on with) the
    /// disk-full episode: releases the reserve, evicts the oldest batches and
    /// tries again, a few rounds with growing chunks.
    fn write_or_make_room(
        &mut self,
        id: i64,
        ts: i64,
        new_series: &[(i64, Arc<Series>)],
        refresh: &[i64],
    ) -> Result<(), BufferError> {
        let mut result = self.write(id, ts, new_series, refresh);
        let mut chunk = DISK_FULL_CHUNK;
        for _ in 0..DISK_FULL_ROUNDS {
            let Err(BufferError::DiskFull { .. }) = &result else {
                return result;
            };
            self.enter_episode();
            if self.evict_for_disk_full(chunk, id) == 0 {
                return result;
            }
            chunk *= 4;
            result = self.write(id, ts, new_series, refresh);
        }
        result
    }

    fn write(
        &mut self,
        id: i64,
        ts: i64,
        new_series: &[(i64, Arc<Series>)],
        refresh: &[i64],
    ) -> Result<(), BufferError> {
        let path = &self.config.path;
        let err = |op| super::error::on(path, op);
        let full = self.episode.is_some();
        let _turn = self.gate.enter_first();
        let tx = Immediate::begin(&self.conn).map_err(err("begin append"))?;
        if full {
            // Keep the main file from growing: free the pages this batch
            // needs by evicting the oldest batches first.
            let need = (self.scratch.len() as u64).div_ceil(PAGE_SIZE) + FULL_FREE_SLACK_PAGES;
            let evicted = make_free_pages(&tx, need, id).map_err(err("evict for disk full"))?;
            if let Some(ep) = self.episode.as_mut() {
                ep.evicted += evicted;
            }
        }
        if !new_series.is_empty() {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO series (id, name, kind, labels, last_batch) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(err("insert series"))?;
            for (sid, s) in new_series {
                st.execute(params![
                    sid,
                    s.name,
                    i64::from(s.kind.code()),
                    encode_labels(&s.labels),
                    id
                ])
                .map_err(err("insert series"))?;
            }
        }
        if !refresh.is_empty() {
            let mut st = tx
                .prepare_cached("UPDATE series SET last_batch = ?1 WHERE id = ?2")
                .map_err(err("refresh series"))?;
            for sid in refresh {
                st.execute([id, *sid]).map_err(err("refresh series"))?;
            }
        }
        tx.prepare_cached("INSERT INTO batches (id, ts, payload) VALUES (?1, ?2, ?3)")
            .and_then(|mut st| st.execute(params![id, ts, &self.scratch]))
            .map_err(err("insert batch"))?;
        // What sinks acked beyond their acks' own bounded deletes.
        stats::delete_taken(&tx, super::APPEND_DELETE_CHUNK)
            .map_err(err("delete taken batches"))?;
        enforce_cap(&tx, path, &self.plan, id, !full)?;
        tx.commit().map_err(err("commit append"))
    }

    /// Starts the disk-full episode if none is under way: one `WARN`, and
    /// the reserve's room goes to the WAL and the checkpoint.
    fn enter_episode(&mut self) {
        if self.episode.is_some() {
            return;
        }
        let released = self.reserve.release();
        log::warn!(
            "buffer {}: disk full ({} bytes free); {}evicting the oldest batches to keep the newest \
             until there is room again",
            self.config.path.display(),
            reserve::free_bytes(dir_of(&self.config.path)).unwrap_or(0),
            if released {
                format!("released the {} byte reserve; ", self.reserve.bytes())
            } else {
                "no reserve was held; ".to_string()
            }
        );
        self.episode = Some(Episode::start());
    }

    /// During a disk-full episode, after each append: the summary line (at
    /// most every [`reserve::SUMMARY_EVERY`]) and, once a second, whether the
    /// file system has room for the reserve again (then the episode ends
    /// with one `INFO`).
    fn episode_upkeep(&mut self) {
        let Some(ep) = self.episode.as_mut() else {
            return;
        };
        let path = &self.config.path;
        if let Some((evicted, dropped)) = ep.summary_due() {
            log::warn!(
                "buffer {}: disk still full after {} s: {evicted} oldest batches evicted and {dropped} \
                 new ones dropped in the last {} s; {} bytes free",
                path.display(),
                ep.since.elapsed().as_secs(),
                reserve::SUMMARY_EVERY.as_secs(),
                reserve::free_bytes(dir_of(path)).unwrap_or(0)
            );
        }
        if !ep.probe_due() {
            return;
        }
        let free = reserve::free_bytes(dir_of(path)).unwrap_or(0);
        if free < 2 * self.reserve.bytes() || self.reserve.allocate().is_err() {
            return;
        }
        log::info!(
            "buffer {}: disk has room again ({free} bytes free); reserve of {} bytes taken back \
             after {:.1} s full ({} oldest batches evicted, {} new ones dropped)",
            path.display(),
            self.reserve.bytes(),
            ep.since.elapsed().as_secs_f64(),
            ep.evicted,
            ep.dropped
        );
        self.episode = None;
    }

    /// After SQLITE_FULL: evict the oldest `n` stored batches (never
    /// `new_id`, which is not stored yet) in their own transaction, so that
    /// the retried append can reuse their pages. Returns how many were
    /// deleted; failures are counted as none (the episode's summary tells).
    fn evict_for_disk_full(&mut self, n: i64, new_id: i64) -> u64 {
        let _turn = self.gate.enter_first();
        let result = (|| -> rusqlite::Result<u64> {
            let tx = Immediate::begin(&self.conn)?;
            let deleted = evict_oldest(&tx, n, new_id)?;
            tx.commit()?;
            Ok(deleted)
        })();
        let deleted = result.unwrap_or_else(|e| {
            log::debug!(
                "buffer {}: evicting for a full disk failed: {e}",
                self.config.path.display()
            );
            0
        });
        if let Some(ep) = self.episode.as_mut() {
            ep.evicted += deleted;
        }
        deleted
    }

    /// A reader for `sink`, with its own connection (send it to the sink's
    /// thread).
    ///
    /// # Errors
    /// [`BufferError::UnknownSink`] when `sink` is not configured; SQLite
    /// errors opening the connection.
    pub fn reader(&self, sink: &str) -> Result<SinkReader, BufferError> {
        if !self.config.sinks.iter().any(|s| s == sink) {
            return Err(BufferError::UnknownSink {
                sink: sink.to_string(),
            });
        }
        SinkReader::open(
            &self.config,
            &self.plan,
            sink,
            self.gate.clone(),
            self.checkpointer.requester(),
        )
    }

    /// The backlog after `after`: what a sink whose delivery reached `after`
    /// (ahead of its durable cursor) has not taken.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn pending_after(&self, after: BatchId) -> Result<PendingStats, BufferError> {
        let path = self.config.path.clone();
        let err = |op| super::error::on(&path, op);
        let tx = self.conn.unchecked_transaction().map_err(err("pending"))?;
        let range = stats::id_range(&tx).map_err(err("pending"))?;
        let p = stats::pending_after(&tx, range, after.get()).map_err(err("pending"))?;
        tx.commit().map_err(err("pending"))?;
        Ok(p)
    }

    /// Counts, sizes, evictions and per-sink backlog, from one read snapshot.
    ///
    /// # Errors
    /// SQLite errors; [`BufferError::Io`] when the files cannot be measured.
    pub fn stats(&self) -> Result<BufferStats, BufferError> {
        let path = self.config.path.clone();
        let err = |op| super::error::on(&path, op);
        let tx = self.conn.unchecked_transaction().map_err(err("stats"))?;
        let range = stats::id_range(&tx).map_err(err("stats"))?;
        let all = stats::pending_after(&tx, range, 0).map_err(err("stats"))?;
        let evicted = stats::evictions(&tx).map_err(err("stats"))?;
        let mut sinks = Vec::with_capacity(self.config.sinks.len());
        for sink in &self.config.sinks {
            let cursor = stats::cursor_of(&tx, sink)
                .map_err(err("stats"))?
                .unwrap_or(0);
            sinks.push(SinkStats {
                sink: sink.clone(),
                acked_through: BatchId(cursor),
                pending: stats::pending_after(&tx, range, cursor).map_err(err("stats"))?,
            });
        }
        tx.commit().map_err(err("stats"))?;
        Ok(BufferStats {
            batches: all.batches,
            first_id: range.map(|(a, _)| BatchId(a)),
            last_id: range.map(|(_, b)| BatchId(b)),
            oldest_timestamp_ms: all.oldest_timestamp_ms,
            file_bytes: schema::file_set_bytes(&self.config.path)?,
            max_bytes: self.config.max_bytes,
            evicted,
            sinks,
        })
    }

    #[cfg(test)]
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// `(WAL frames after the last commit, inline checkpoints, background
    /// checkpoints)`.
    #[cfg(test)]
    pub(crate) fn wal_counts(&self) -> (i32, u64, u64) {
        self._wal_hook.counts()
    }
}

/// `(page_count, freelist_count)`, with cached statements (this runs in
/// every append).
pub(crate) fn page_counts(conn: &Connection) -> rusqlite::Result<(u64, u64)> {
    let pages: i64 = conn
        .prepare_cached("PRAGMA page_count")?
        .query_row([], |r| r.get(0))?;
    let free: i64 = conn
        .prepare_cached("PRAGMA freelist_count")?
        .query_row([], |r| r.get(0))?;
    Ok((pages.max(0) as u64, free.max(0) as u64))
}

/// Inside the append transaction: evict the oldest batches (never `new_id`)
/// while the used pages exceed the budget, down to the low-water mark; then give
/// free pages back to the file system in small steps when there are many.
fn enforce_cap(
    conn: &Connection,
    path: &Path,
    plan: &CapPlan,
    new_id: i64,
    may_vacuum: bool,
) -> Result<(), BufferError> {
    let err = |op| super::error::on(path, op);
    let (pages, free) = page_counts(conn).map_err(err("measure pages"))?;
    let mut used = (pages - free) * PAGE_SIZE;
    if used > plan.db_budget_bytes {
        // Batches every sink has taken are deleted, not evicted: not counted.
        let taken = stats::taken_through(conn).map_err(err("read cursors"))?;
        let mut evicted = 0u64;
        let mut first = None;
        for _ in 0..1000 {
            if used <= plan.low_water_bytes {
                break;
            }
            let Some((min, _)) = stats::id_range(conn).map_err(err("read batch range"))? else {
                break;
            };
            first.get_or_insert(min);
            let stored = (new_id - min + 1) as u64;
            if stored <= 1 {
                log::warn!(
                    "buffer {}: only the newest batch is left and the file still uses {used} bytes of a {} byte budget",
                    path.display(),
                    plan.db_budget_bytes
                );
                break;
            }
            let per_batch = (used / stored).max(1);
            let n = ((used - plan.low_water_bytes) / per_batch + 1).min(stored - 1);
            let deleted = conn
                .prepare_cached("DELETE FROM batches WHERE id < ?1")
                .and_then(|mut st| st.execute([min + n as i64]))
                .map_err(err("evict for cap"))?;
            let untaken_from = min.max(taken + 1);
            evicted += ((min + n as i64) - untaken_from).clamp(0, deleted as i64) as u64;
            let (pages, free) = page_counts(conn).map_err(err("measure pages"))?;
            used = (pages - free) * PAGE_SIZE;
        }
        if evicted > 0 {
            stats::count_eviction(conn, EvictReason::Cap, evicted)
                .map_err(err("count eviction"))?;
            log::warn!(
                "buffer {}: data budget of {} bytes reached; evicted {evicted} oldest batches (ids {}..{}), reason cap",
                path.display(),
                plan.db_budget_bytes,
                first.unwrap_or(0),
                first.unwrap_or(0) + evicted as i64
            );
        }
    } else if may_vacuum && free > plan.vacuum_threshold_pages {
        {
            let mut st = conn
                .prepare(&format!(
                    "PRAGMA incremental_vacuum({})",
                    plan.vacuum_step_pages
                ))
                .map_err(err("incremental vacuum"))?;
            let mut rows = st.query([]).map_err(err("incremental vacuum"))?;
            while rows.next().map_err(err("incremental vacuum"))?.is_some() {}
        }
    }
    Ok(())
}

/// Batches a disk-full retry evicts first (then 4×, 16× in later rounds).
const DISK_FULL_CHUNK: i64 = 8;

/// Evict-and-retry rounds of one append on a full disk.
const DISK_FULL_ROUNDS: u32 = 3;

/// Free pages an append during a disk-full episode keeps beyond its batch's
/// own (b-tree splits, a new series).
const FULL_FREE_SLACK_PAGES: u64 = 2;

/// Deletes the oldest `n` stored batches, never `new_id` or later, and
/// counts those no sink had taken as evicted for a full disk. Returns the
/// deleted count.
fn evict_oldest(conn: &Connection, n: i64, new_id: i64) -> rusqlite::Result<u64> {
    let Some((min, _)) = stats::id_range(conn)? else {
        return Ok(0);
    };
    let end = (min + n).min(new_id);
    let deleted = conn
        .prepare_cached("DELETE FROM batches WHERE id < ?1")?
        .execute([end])? as u64;
    let taken = stats::taken_through(conn)?;
    let untaken = (end - min.max(taken + 1)).clamp(0, deleted as i64) as u64;
    if untaken > 0 {
        stats::count_eviction(conn, EvictReason::DiskFull, untaken)?;
    }
    Ok(deleted)
}

/// Inside a disk-full append: evicts the oldest batches, a few at a time,
/// until the free list holds `pages` (or nothing older than `new_id` is
/// left). Returns the deleted count.
fn make_free_pages(conn: &Connection, pages: u64, new_id: i64) -> rusqlite::Result<u64> {
    let mut deleted = 0;
    for _ in 0..64 {
        let (_, free) = page_counts(conn)?;
        if free >= pages {
            break;
        }
        let n = evict_oldest(conn, 4, new_id)?;
        if n == 0 {
            break;
        }
        deleted += n;
    }
    Ok(deleted)
}

/// The directory holding the buffer file (for `statvfs`).
fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// ENOSPC or EDQUOT: the file system (or the quota) has no room.
fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}
