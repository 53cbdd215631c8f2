//! One delivery loop for every sink (DESIGN.md §6).
//!
//! Each configured [`Sink`] gets a thread running [`SinkLoop`]: wait for a
//! new batch, a backlog or a retry deadline; read what the sink wants from
//! its cursor ([`Order::Newest`]: the newest batch; [`Order::Oldest`]: the
//! oldest not yet delivered, about `max_samples` at a time); deliver; classify
//! the outcome; back off; acknowledge; publish self-metrics. The loop knows no
//! sink by name.
//!
//! Invariants:
//! - **The present costs no disk read.** The sampler hands each tick's batch
//!   over in memory ([`Feed`]); a sink that is caught up delivers it from
//!   there. Only a backlog (after an outage or a restart) is read back from
//!   the buffer.
//! - **History is delivered in order and catches up without starving the
//!   present.** An `Oldest` sink delivers from its in-memory position,
//!   oldest first, and goes on without waiting while a backlog remains; new
//!   ticks are appended meanwhile and come after it.
//! - **Acks are lazy and bounded.** The durable cursor moves at most every
//!   [`ACK_EVERY`] or every [`ACK_BATCHES`] delivered batches, and each ack
//!   deletes at most a bounded chunk of batches (the rest go in later acks
//!   and appends), so a day-long backlog acknowledged at once never holds the
//!   write lock long enough to make a tick late. After a crash at most that
//!   much is delivered again: the receivers take a sample they already hold
//!   again without complaint.
//! - **Failures follow [`FailureClass`]**: permanent → log, count as dropped,
//!   move past them; configuration → log loudly, keep the data, retry at the
//!   maximum backoff; retryable → exponential backoff with full jitter. New
//!   batches arriving during a backoff wait do not shorten it.

use std::sync::atomic::{AtomicI64, Ordering as AtomicOrdering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use metrics::{counter, gauge};

use crate::buffer::{BatchId, BufferError, SinkReader};
use crate::retry::Backoff;
use crate::sample::{Batch, now_ms};
use crate::sink::{Delivered, FailureClass, Order, Sink, SinkFailure};

/// The most time between two acks of a sink that delivered something.
pub const ACK_EVERY: Duration = Duration::from_secs(5);

/// The most batches delivered between two acks (during a catch-up).
pub const ACK_BATCHES: i64 = 128;

/// One tick handed from the sampler to the sinks.
#[derive(Debug, Clone)]
pub(crate) struct Tick {
    /// Increasing tick number (1 for the first).
    pub seq: u64,
    /// The batch's id in the buffer; `None` when the append failed.
    pub id: Option<BatchId>,
    /// The batch.
    pub batch: Arc<Batch>,
}

#[derive(Debug, Default)]
pub(crate) struct FeedState {
    pub stop_sampler: bool,
    pub stop_sinks: bool,
    pub latest: Option<Tick>,
}

/// What the sampler shares with the sinks: the latest tick, the stop flags,
/// and each sink's in-memory position (for the backlog gauges).
#[derive(Debug, Default)]
pub(crate) struct Feed {
    state: Mutex<FeedState>,
    cv: Condvar,
    /// `(sink, newest batch id delivered or dropped)`, one per sink.
    positions: Vec<(&'static str, Arc<AtomicI64>)>,
}

impl Feed {
    pub(crate) fn new(sinks: &[&'static str]) -> Self {
        Feed {
            state: Mutex::default(),
            cv: Condvar::new(),
            positions: sinks
                .iter()
                .map(|s| (*s, Arc::new(AtomicI64::new(0))))
                .collect(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn notify(&self) {
        self.cv.notify_all();
    }

    /// Waits on the feed's condition variable for at most `d`.
    pub(crate) fn wait<'a>(
        &self,
        guard: MutexGuard<'a, FeedState>,
        d: Duration,
    ) -> MutexGuard<'a, FeedState> {
        self.cv
            .wait_timeout(guard, d)
            .unwrap_or_else(|p| p.into_inner())
            .0
    }

    /// Publishes a new tick and wakes the sinks.
    pub(crate) fn publish(&self, id: Option<BatchId>, batch: Arc<Batch>) {
        let mut st = self.lock();
        let seq = st.latest.as_ref().map_or(1, |t| t.seq + 1);
        st.latest = Some(Tick { seq, id, batch });
        drop(st);
        self.cv.notify_all();
    }

    /// The in-memory position of each sink.
    pub(crate) fn positions(&self) -> impl Iterator<Item = (&'static str, i64)> + '_ {
        self.positions
            .iter()
            .map(|(s, p)| (*s, p.load(AtomicOrdering::Relaxed)))
    }

    fn position_of(&self, sink: &str) -> Arc<AtomicI64> {
        self.positions
            .iter()
            .find(|(s, _)| *s == sink)
            .map(|(_, p)| Arc::clone(p))
            .unwrap_or_default()
    }
}

/// A batch chosen for delivery.
struct Selected {
    /// Its id; `None` when the buffer could not store it.
    id: Option<BatchId>,
    /// Its tick number when it came from memory (0 from the buffer).
    seq: u64,
    batch: Arc<Batch>,
}

/// What one attempt did.
enum Attempt {
    /// Nothing to deliver.
    Nothing,
    /// Delivered (or dropped for good).
    Done,
    /// The sink failed.
    Failed(Box<dyn SinkFailure>),
    /// The buffer could not be read or written.
    Buffer(BufferError),
}

/// One sink's loop (see the module doc).
pub(crate) struct SinkLoop {
    sink: Box<dyn Sink>,
    reader: SinkReader,
    feed: Arc<Feed>,
    position: Arc<AtomicI64>,
    /// Newest batch delivered or dropped for good: never delivered again.
    delivered: BatchId,
    /// The durable cursor.
    acked: BatchId,
    /// Batches delivered since the last ack (`Newest`: for superseded counts).
    delivered_since_ack: u64,
    last_ack: Instant,
    /// The newest tick already considered.
    seen_seq: u64,
    /// The newest tick delivered from memory that the buffer had not stored.
    unstored_seq: u64,
    /// `Oldest`: the buffer holds more than the last read returned.
    backlog: bool,
    /// `Oldest`: samples per batch of the last batch read (to size reads).
    samples_per_batch: usize,
}

impl SinkLoop {
    /// A loop for `sink`, reading through `reader`, from its durable cursor.
    ///
    /// # Errors
    /// [`BufferError`] when the cursor cannot be read.
    pub(crate) fn new(
        sink: Box<dyn Sink>,
        mut reader: SinkReader,
        feed: Arc<Feed>,
    ) -> Result<Self, BufferError> {
        let acked = reader.acked_through()?;
        let position = feed.position_of(sink.name());
        position.store(acked.get(), AtomicOrdering::Relaxed);
        Ok(SinkLoop {
            sink,
            reader,
            feed,
            position,
            delivered: acked,
            acked,
            delivered_since_ack: 0,
            last_ack: Instant::now(),
            seen_seq: 0,
            unstored_seq: 0,
            // A previous run may have left a backlog: look once.
            backlog: true,
            samples_per_batch: 1,
        })
    }

    /// Runs until the feed's `stop_sinks`, then flushes (or lets the sink
    /// close) and makes its progress durable.
    pub(crate) fn run(mut self) {
        let name = self.sink.name();
        let mut backoff = Backoff::new(self.sink.backoff(), crate::retry::random_seed());
        let mut retry_at: Option<Instant> = None;
        log::info!("{name} sink started: target={}", self.sink.target());
        loop {
            {
                let mut st = self.feed.lock();
                loop {
                    if st.stop_sinks {
                        drop(st);
                        self.finish();
                        return;
                    }
                    let now = Instant::now();
                    let fresh = st.latest.as_ref().is_some_and(|t| t.seq > self.seen_seq);
                    match retry_at {
                        Some(t) if now >= t => break,
                        None if fresh || self.backlog => break,
                        _ => {}
                    }
                    let wait = retry_at.map_or(Duration::from_secs(3600), |t| t - now);
                    st = self.feed.wait(st, wait);
                }
            }
            retry_at = None;
            match self.attempt() {
                Attempt::Nothing | Attempt::Done => {
                    if backoff.failures() > 0 {
                        log::info!(
                            "{name} reachable again after {} failed attempt(s): target={}",
                            backoff.failures(),
                            self.sink.target()
                        );
                    }
                    backoff.reset();
                }
                Attempt::Failed(e) => match e.class() {
                    FailureClass::Permanent => backoff.reset(),
                    FailureClass::Configuration => {
                        let d = backoff.max_delay();
                        log::error!(
                            "{name} configuration error (data kept, retry in {:.1}s): {e}",
                            d.as_secs_f64()
                        );
                        retry_at = Some(Instant::now() + d);
                    }
                    FailureClass::Retryable => {
                        let d = backoff.next_delay();
                        log::warn!(
                            "{name} delivery failed (attempt {}, retry in {:.1}s, data kept): {e}",
                            backoff.failures(),
                            d.as_secs_f64()
                        );
                        retry_at = Some(Instant::now() + d);
                    }
                },
                Attempt::Buffer(e) => {
                    let d = backoff.next_delay();
                    log::error!(
                        "{name} sink cannot use the buffer (retry in {:.1}s): {e}",
                        d.as_secs_f64()
                    );
                    retry_at = Some(Instant::now() + d);
                }
            }
        }
    }

    /// What to deliver now, oldest first.
    fn select(&mut self) -> Result<Vec<Selected>, BufferError> {
        let tick = self.feed.lock().latest.clone();
        if let Some(t) = &tick {
            self.seen_seq = self.seen_seq.max(t.seq);
        }
        let from_memory = |t: Tick| Selected {
            id: t.id,
            seq: t.seq,
            batch: t.batch,
        };
        let unstored_unsent = |t: &Tick, sent: u64| t.id.is_none() && t.seq > sent;
        match self.sink.order() {
            Order::Newest => {
                self.backlog = false;
                match tick {
                    Some(t)
                        if t.id
                            .map_or(t.seq > self.unstored_seq, |id| id > self.delivered) =>
                    {
                        Ok(vec![from_memory(t)])
                    }
                    Some(_) => Ok(Vec::new()),
                    // Nothing sampled yet in this process: a previous run's
                    // newest batch, if it was never delivered.
                    None => Ok(self
                        .reader
                        .newest()?
                        .filter(|(id, _)| *id > self.delivered)
                        .map(|(id, b)| {
                            vec![Selected {
                                id: Some(id),
                                seq: 0,
                                batch: Arc::new(b),
                            }]
                        })
                        .unwrap_or_default()),
                }
            }
            Order::Oldest { max_samples } => {
                if !self.backlog
                    && let Some(t) = &tick
                    && let Some(id) = t.id
                {
                    if id.get() == self.delivered.get() + 1 {
                        return Ok(vec![from_memory(t.clone())]);
                    }
                    if id <= self.delivered {
                        return Ok(Vec::new());
                    }
                }
                let want = (max_samples / self.samples_per_batch.max(1)).max(1);
                let rows = self.reader.read_after(self.delivered, want)?;
                self.backlog = rows.len() == want;
                if let Some((_, b)) = rows.last() {
                    self.samples_per_batch = b.len().max(1);
                }
                if rows.is_empty()
                    && let Some(t) = tick
                    && unstored_unsent(&t, self.unstored_seq)
                {
                    // The buffer could not store it and nothing older waits.
                    return Ok(vec![from_memory(t)]);
                }
                Ok(rows
                    .into_iter()
                    .map(|(id, b)| Selected {
                        id: Some(id),
                        seq: 0,
                        batch: Arc::new(b),
                    })
                    .collect())
            }
        }
    }

    fn attempt(&mut self) -> Attempt {
        let selected = match self.select() {
            Ok(s) => s,
            Err(e) => return Attempt::Buffer(e),
        };
        if selected.is_empty() {
            return Attempt::Nothing;
        }
        let name = self.sink.name();
        let batches: Vec<Arc<Batch>> = selected.iter().map(|s| Arc::clone(&s.batch)).collect();
        let t0 = Instant::now();
        let result = self.sink.deliver(&batches);
        gauge!("aif_exporter_push_duration_seconds", "sink" => name)
            .set(t0.elapsed().as_secs_f64());
        let label = match &result {
            Ok(d) if d.refused.is_empty() => "ok",
            Ok(_) => "partial",
            Err(e) => e.result_label(),
        };
        counter!("aif_exporter_pushes_total", "sink" => name, "result" => label).increment(1);
        match result {
            Ok(d) => {
                self.record_success(&d);
                self.advance(&selected);
                self.ack(false)
            }
            Err(e) if e.class() == FailureClass::Permanent => {
                log::warn!(
                    "{name} refused {} batch(es) ({}..={} ms) for good, dropped: {e}",
                    batches.len(),
                    batches.first().map_or(0, |b| b.timestamp_ms),
                    batches.last().map_or(0, |b| b.timestamp_ms),
                );
                counter!("aif_exporter_dropped_batches_total", "sink" => name, "reason" => e.result_label())
                    .increment(batches.len() as u64);
                // Taken for good: neither delivered nor superseded.
                self.advance(&selected);
                match self.ack(true) {
                    Attempt::Buffer(b) => Attempt::Buffer(b),
                    _ => Attempt::Failed(e),
                }
            }
            Err(e) => Attempt::Failed(e),
        }
    }

    fn record_success(&self, d: &Delivered) {
        let name = self.sink.name();
        gauge!("aif_exporter_last_push_success_timestamp_seconds", "sink" => name)
            .set(now_ms() as f64 / 1000.0);
        counter!("aif_exporter_samples_sent_total", "sink" => name).increment(d.samples);
        for (reason, n) in &d.refused {
            counter!("aif_exporter_dropped_samples_total", "sink" => name, "reason" => *reason)
                .increment(*n);
        }
    }

    /// Marks `selected` as taken: never delivered again.
    fn advance(&mut self, selected: &[Selected]) {
        for s in selected {
            match s.id {
                Some(id) if id > self.delivered => {
                    self.delivered = id;
                    self.delivered_since_ack += 1;
                }
                Some(_) => {}
                None => self.unstored_seq = self.unstored_seq.max(s.seq),
            }
        }
        self.position
            .store(self.delivered.get(), AtomicOrdering::Relaxed);
    }

    /// Moves the durable cursor to the newest delivered batch when
    /// [`ACK_EVERY`] has passed, [`ACK_BATCHES`] were delivered, or `force`;
    /// batches it covers that were never delivered are counted as superseded.
    fn ack(&mut self, force: bool) -> Attempt {
        let due = force
            || self.last_ack.elapsed() >= ACK_EVERY
            || self.delivered.get() - self.acked.get() >= ACK_BATCHES;
        if self.delivered <= self.acked || !due {
            return Attempt::Done;
        }
        match self.reader.ack_through(self.delivered) {
            Ok(covered) => {
                let superseded = covered.saturating_sub(self.delivered_since_ack);
                if superseded > 0 {
                    counter!("aif_exporter_superseded_batches_total", "sink" => self.sink.name())
                        .increment(superseded);
                }
                log::debug!(
                    "{} acked through batch {}: {} delivered, {superseded} superseded",
                    self.sink.name(),
                    self.delivered,
                    self.delivered_since_ack
                );
                self.acked = self.delivered;
                self.delivered_since_ack = 0;
                self.last_ack = Instant::now();
                Attempt::Done
            }
            Err(e) => Attempt::Buffer(e),
        }
    }

    fn finish(&mut self) {
        let name = self.sink.name();
        if self.sink.flush_on_shutdown() {
            match self.attempt() {
                Attempt::Done => log::info!("{name} flushed on shutdown"),
                Attempt::Nothing => {}
                Attempt::Failed(e) => {
                    log::warn!("{name} flush on shutdown failed (data kept in the buffer): {e}")
                }
                Attempt::Buffer(e) => log::warn!("{name} flush on shutdown: buffer error: {e}"),
            }
        }
        self.sink.close();
        if let Attempt::Buffer(e) = self.ack(true) {
            log::warn!("{name} could not record its progress on shutdown: {e}");
        }
    }
}
