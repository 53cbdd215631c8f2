//! The agent: sampling on a fixed schedule, the write-ahead buffer, and the
//! sink threads, wired together (what `aif-node-exporter` runs).
//!
//! Threads and invariants:
//! - **sampler**: every `interval` (fixed rate; a tick that overruns skips the
//!   slots it missed and counts them) it samples the source, names the
//!   readings, appends the batch to the buffer (one transaction) and wakes the
//!   sinks. It never waits for a sink: a slow or dead Pushgateway cannot delay a
//!   tick. A full disk or a buffer error drops that tick's batch, logged and
//!   counted; sampling goes on.
//! - **pushgateway sink**: on each new batch, pushes the **newest** one (from
//!   memory; from the buffer only for a backlog left by a previous run) and
//!   acks everything up to it at most every [`ACK_EVERY`] (older batches never
//!   delivered are counted as superseded).
//!   Failures follow [`PushClass`]: permanent → log, count, ack, move on;
//!   configuration → log loudly, keep the data, retry at the maximum backoff;
//!   retryable → exponential backoff with full jitter. New batches arriving
//!   during a backoff wait do not shorten it.
//! - **shutdown** ([`AgentHandle::shutdown`]): the sampler finishes its tick and
//!   stops; then the sink makes one last push of the newest batch (flush), or
//!   deletes the group when `delete_on_exit` is set.
//!
//! Self-metrics (`aif_exporter_*`) go through the `metrics` facade; they are
//! recorded only if the program installed a recorder (the exporter installs
//! `metrics-exporter-prometheus`'s, and passes its handle here to render them).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::buffer::{BatchId, Buffer, BufferError, EvictReason, SinkReader};
use crate::exposition::Exposition;
use crate::naming::Namer;
use crate::retry::Backoff;
use crate::sample::{Batch, now_ms};
use crate::sink::{PushClass, PushgatewayClient};
use crate::source::GpuSource;

/// How often the buffer's gauges (batches, bytes, per-sink backlog) are
/// refreshed: a stats query per tick would cost more than the tick itself.
pub const STATS_EVERY: Duration = Duration::from_secs(5);

/// How often the Pushgateway sink makes its progress durable (moves its
/// cursor, lets the buffer delete): one SQLite write transaction per push cost
/// more than the push itself. After a crash, at most this much of already
/// pushed history is pushed again: for a latest-state sink, harmless.
pub const ACK_EVERY: Duration = Duration::from_secs(5);

/// The sink name of the Pushgateway in the buffer and in self-metrics.
pub const PUSHGATEWAY_SINK: &str = "pushgateway";

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The buffer refused to open a reader for a sink.
    #[error("cannot open the buffer reader for sink {sink}: {source}")]
    Reader {
        /// Sink name.
        sink: &'static str,
        /// The buffer's error.
        source: BufferError,
    },
    /// A thread could not be spawned.
    #[error("cannot spawn the {what} thread: {source}")]
    Spawn {
        /// Which thread.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What the agent runs with. `Default`: 1 s interval, no sink, no
/// self-metrics (set the fields you need, `..AgentOptions::default()`).
pub struct AgentOptions {
    /// Sampling interval.
    pub interval: Duration,
    /// The Pushgateway, if any.
    pub pushgateway: Option<PushgatewayClient>,
    /// DELETE the Pushgateway group on shutdown.
    pub delete_on_exit: bool,
    /// Handle of the installed self-metrics recorder, rendered after the batch
    /// in pushes and in [`AgentHandle::metrics_text`].
    pub self_metrics: Option<PrometheusHandle>,
    /// Called on the sampler thread after every tick, e.g. to publish the SSH
    /// tunnel's gauges. Must be cheap and must not block.
    pub on_tick: Option<Box<dyn FnMut() + Send>>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            interval: Duration::from_secs(1),
            pushgateway: None,
            delete_on_exit: false,
            self_metrics: None,
            on_tick: None,
        }
    }
}

impl std::fmt::Debug for AgentOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentOptions")
            .field("interval", &self.interval)
            .field("pushgateway", &self.pushgateway)
            .field("delete_on_exit", &self.delete_on_exit)
            .field("on_tick", &self.on_tick.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Signals {
    stop_sampler: bool,
    stop_sinks: bool,
    new_batch: bool,
}

/// A tick's batch and its buffer id (`None`: the append failed).
type Latest = (Option<BatchId>, Arc<Batch>);

#[derive(Debug, Default)]
struct Shared {
    signals: Mutex<Signals>,
    cv: Condvar,
    /// The last tick's batch and its id in the buffer (`None` when the append
    /// failed): `/metrics` serves it and the Pushgateway sink pushes it without
    /// reading it back from disk.
    latest: Mutex<Option<Latest>>,
    /// The newest batch id the Pushgateway sink delivered (0: none yet); its
    /// durable cursor may lag by up to [`ACK_EVERY`].
    pushed_through: std::sync::atomic::AtomicI64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Signals> {
        self.signals.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running agent. Dropping it without [`AgentHandle::shutdown`] leaves the
/// threads running until the process exits.
#[derive(Debug)]
pub struct AgentHandle {
    shared: Arc<Shared>,
    sampler: Option<JoinHandle<()>>,
    sink: Option<JoinHandle<()>>,
    self_metrics: Option<PrometheusHandle>,
}

/// Describes every self-metric (call once after installing a recorder).
pub fn describe_self_metrics() {
    describe_counter!(
        "aif_exporter_samples_total",
        "Sampling ticks that produced a batch."
    );
    describe_counter!(
        "aif_exporter_sample_errors_total",
        "Sampling ticks whose source failed as a whole."
    );
    describe_gauge!(
        "aif_exporter_sample_duration_seconds",
        "Time the last tick took to sample, name and buffer its batch."
    );
    describe_counter!(
        "aif_exporter_ticks_skipped_total",
        "Sampling slots skipped because a tick overran the interval."
    );
    describe_gauge!(
        "aif_exporter_buffer_batches",
        "Batches stored in the write-ahead buffer."
    );
    describe_gauge!(
        "aif_exporter_buffer_bytes",
        "Bytes of the write-ahead buffer's file set on disk."
    );
    describe_gauge!(
        "aif_exporter_buffer_pending_batches",
        "Batches a sink has not taken yet."
    );
    describe_gauge!(
        "aif_exporter_buffer_oldest_unsent_age_seconds",
        "Age of the oldest batch a sink has not taken (0 when none)."
    );
    describe_counter!(
        "aif_exporter_dropped_batches_total",
        "Batches lost, by reason (cap: evicted by the size cap; disk_full, buffer_error: not stored; rejected: refused by a sink)."
    );
    describe_counter!(
        "aif_exporter_superseded_batches_total",
        "Batches a latest-state sink skipped because a newer one was pushed."
    );
    describe_counter!(
        "aif_exporter_pushes_total",
        "Push attempts by sink and result."
    );
    describe_gauge!(
        "aif_exporter_push_duration_seconds",
        "Duration of the last push attempt, by sink."
    );
    describe_gauge!(
        "aif_exporter_last_push_success_timestamp_seconds",
        "Unix time of the last successful push, by sink."
    );
    describe_gauge!(
        "aif_exporter_tunnel_up",
        "1 while the SSH tunnel is established."
    );
    describe_counter!(
        "aif_exporter_tunnel_reconnects_total",
        "SSH tunnel reconnections."
    );
}

/// What the agent's schedule samples: one [`Batch`] per tick. GPUs through
/// a [`GpuSource`] and a [`Namer`] ([`start`]), or any other producer of
/// series, such as a load generator's live figures ([`start_source`]).
pub trait BatchSource: Send {
    /// The batch for the tick at `timestamp_ms` (ms since the Unix epoch).
    ///
    /// # Errors
    /// The tick produced nothing; the agent logs and counts it
    /// (`aif_exporter_sample_errors_total`) and the schedule goes on.
    fn next_batch(
        &mut self,
        timestamp_ms: i64,
    ) -> Result<Batch, Box<dyn std::error::Error + Send + Sync>>;
}

/// GPUs as a [`BatchSource`]: readings from the source, named by the namer.
struct GpuBatches {
    source: Box<dyn GpuSource>,
    namer: Namer,
}

impl BatchSource for GpuBatches {
    fn next_batch(
        &mut self,
        timestamp_ms: i64,
    ) -> Result<Batch, Box<dyn std::error::Error + Send + Sync>> {
        let readings = self.source.sample(timestamp_ms)?;
        Ok(self.namer.batch(timestamp_ms, &readings))
    }
}

/// Starts sampling GPUs (and the sink threads) and returns at once.
///
/// # Errors
/// [`AgentError`] when a buffer reader or a thread cannot be created.
pub fn start(
    source: Box<dyn GpuSource>,
    namer: Namer,
    buffer: Buffer,
    options: AgentOptions,
) -> Result<AgentHandle, AgentError> {
    start_source(Box::new(GpuBatches { source, namer }), buffer, options)
}

/// Starts the schedule over any [`BatchSource`] (and the sink threads) and
/// returns at once.
///
/// # Errors
/// [`AgentError`] when a buffer reader or a thread cannot be created.
pub fn start_source(
    source: Box<dyn BatchSource>,
    buffer: Buffer,
    options: AgentOptions,
) -> Result<AgentHandle, AgentError> {
    let shared = Arc::new(Shared::default());
    let sink = match options.pushgateway {
        Some(client) => {
            let reader = buffer
                .reader(PUSHGATEWAY_SINK)
                .map_err(|source| AgentError::Reader {
                    sink: PUSHGATEWAY_SINK,
                    source,
                })?;
            let shared = Arc::clone(&shared);
            let self_metrics = options.self_metrics.clone();
            let delete_on_exit = options.delete_on_exit;
            Some(
                std::thread::Builder::new()
                    .name("aif-push-pgw".into())
                    .spawn(move || {
                        PushgatewayLoop {
                            pushed: BatchId(0),
                            acked: BatchId(0),
                            delivered_since_ack: 0,
                            last_ack: Instant::now(),
                            client,
                            reader,
                            shared,
                            self_metrics,
                            exposition: Exposition::new(),
                        }
                        .run(delete_on_exit)
                    })
                    .map_err(|source| AgentError::Spawn {
                        what: "pushgateway sink",
                        source,
                    })?,
            )
        }
        None => None,
    };
    let sampler = Sampler {
        source,
        buffer,
        shared: Arc::clone(&shared),
        interval: options.interval,
        upkeep: options.self_metrics.clone(),
        on_tick: options.on_tick,
        disk_full_logged: 0,
        last_stats: None,
    };
    let sampler = std::thread::Builder::new()
        .name("aif-sampler".into())
        .spawn(move || sampler.run())
        .map_err(|source| AgentError::Spawn {
            what: "sampler",
            source,
        })?;
    Ok(AgentHandle {
        shared,
        sampler: Some(sampler),
        sink,
        self_metrics: options.self_metrics,
    })
}

/// The sampler thread's state: one tick per `interval`, fixed rate.
struct Sampler {
    source: Box<dyn BatchSource>,
    buffer: Buffer,
    shared: Arc<Shared>,
    interval: Duration,
    upkeep: Option<PrometheusHandle>,
    on_tick: Option<Box<dyn FnMut() + Send>>,
    disk_full_logged: u64,
    last_stats: Option<Instant>,
}

impl Sampler {
    fn run(mut self) {
        let mut next = Instant::now();
        loop {
            self.tick();
            next = self.next_slot(next);
            if self.wait_until(next) {
                return;
            }
        }
    }

    /// Samples, names, appends and hands the batch to the sinks.
    fn tick(&mut self) {
        let tick_start = Instant::now();
        let ts = now_ms();
        match self.source.next_batch(ts) {
            Ok(batch) => {
                let batch = Arc::new(batch);
                let stored = self.append(&batch);
                // Even a batch the disk could not take is served and pushed:
                // the live view survives a full disk.
                *self.shared.latest.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((stored, batch));
                self.shared.lock().new_batch = true;
                self.shared.cv.notify_all();
            }
            Err(e) => {
                counter!("aif_exporter_sample_errors_total").increment(1);
                log::error!("sampling failed: {e}");
            }
        }
        if let Some(f) = self.on_tick.as_mut() {
            f();
        }
        gauge!("aif_exporter_sample_duration_seconds").set(tick_start.elapsed().as_secs_f64());
        if self
            .last_stats
            .is_none_or(|t: Instant| t.elapsed() >= STATS_EVERY)
        {
            publish_buffer_stats(
                &self.buffer,
                self.shared
                    .pushed_through
                    .load(std::sync::atomic::Ordering::Relaxed),
            );
            if let Some(h) = &self.upkeep {
                h.run_upkeep();
            }
            self.last_stats = Some(Instant::now());
        }
    }

    /// Appends to the buffer; `None` (logged and counted) when it failed.
    fn append(&mut self, batch: &Batch) -> Option<BatchId> {
        match self.buffer.append(batch) {
            Ok(id) => {
                counter!("aif_exporter_samples_total").increment(1);
                Some(id)
            }
            Err(e @ BufferError::DiskFull { .. }) => {
                counter!("aif_exporter_dropped_batches_total", "reason" => "disk_full")
                    .increment(1);
                if self.disk_full_logged % 60 == 0 {
                    log::error!(
                        "buffer append failed, batch dropped: {e} (logged every 60th time)"
                    );
                }
                self.disk_full_logged += 1;
                None
            }
            Err(e) => {
                counter!("aif_exporter_dropped_batches_total", "reason" => "buffer_error")
                    .increment(1);
                log::error!("buffer append failed, batch dropped: {e}");
                None
            }
        }
    }

    /// The slot after `previous`; a tick that overran skips (and counts) the
    /// slots it missed instead of bursting to catch up.
    fn next_slot(&self, previous: Instant) -> Instant {
        let interval = self.interval;
        let next = previous + interval;
        let now = Instant::now();
        if next >= now {
            return next;
        }
        let behind = now.duration_since(next);
        let skipped = (behind.as_nanos() / interval.as_nanos().max(1)) as u64 + 1;
        counter!("aif_exporter_ticks_skipped_total").increment(skipped);
        log::warn!("sampling tick overran: skipped {skipped} slot(s) of {interval:?}");
        next + interval * u32::try_from(skipped).unwrap_or(u32::MAX)
    }

    /// Waits for `deadline`; true when asked to stop meanwhile.
    fn wait_until(&self, deadline: Instant) -> bool {
        let mut sig = self.shared.lock();
        loop {
            if sig.stop_sampler {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            sig = self
                .shared
                .cv
                .wait_timeout(sig, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

fn publish_buffer_stats(buffer: &Buffer, pushed_through: i64) {
    let stats = match buffer.stats() {
        Ok(s) => s,
        Err(e) => {
            log::warn!("cannot read buffer stats: {e}");
            return;
        }
    };
    gauge!("aif_exporter_buffer_batches").set(stats.batches as f64);
    gauge!("aif_exporter_buffer_bytes").set(stats.file_bytes as f64);
    for reason in EvictReason::ALL {
        counter!("aif_exporter_dropped_batches_total", "reason" => reason.as_str())
            .absolute(stats.evicted.get(reason));
    }
    let now = now_ms();
    for s in &stats.sinks {
        let sink = s.sink.clone();
        // A sink that delivered the newest stored batch has nothing unsent,
        // even while its durable cursor lags (see ACK_EVERY).
        let caught_up = sink == PUSHGATEWAY_SINK
            && stats
                .last_id
                .is_some_and(|last| pushed_through >= last.get());
        let (pending, oldest) = if caught_up {
            (0, None)
        } else {
            (s.pending.batches, s.pending.oldest_timestamp_ms)
        };
        gauge!("aif_exporter_buffer_pending_batches", "sink" => sink.clone()).set(pending as f64);
        let age = oldest.map_or(0.0, |t| ((now - t).max(0) as f64) / 1000.0);
        gauge!("aif_exporter_buffer_oldest_unsent_age_seconds", "sink" => sink).set(age);
    }
}

impl AgentHandle {
    /// The text for a `/metrics` scrape: the latest batch, then the self-metrics.
    pub fn metrics_text(&self) -> String {
        let mut text = {
            let latest = self.shared.latest.lock().unwrap_or_else(|p| p.into_inner());
            latest
                .as_ref()
                .map(|(_, b)| Exposition::new().render(b))
                .unwrap_or_default()
        };
        if let Some(h) = &self.self_metrics {
            text.push_str(&h.render());
        }
        text
    }

    /// Stops the agent: the sampler finishes its tick, then the sinks flush
    /// (or delete their group) and stop. Returns when every thread has ended.
    pub fn shutdown(mut self) {
        self.shared.lock().stop_sampler = true;
        self.shared.cv.notify_all();
        if let Some(t) = self.sampler.take()
            && t.join().is_err()
        {
            log::error!("sampler thread panicked");
        }
        self.shared.lock().stop_sinks = true;
        self.shared.cv.notify_all();
        if let Some(t) = self.sink.take()
            && t.join().is_err()
        {
            log::error!("pushgateway sink thread panicked");
        }
    }
}

struct PushgatewayLoop {
    /// Newest batch delivered (or refused for good): never pushed again.
    pushed: BatchId,
    /// The buffer's durable cursor for this sink.
    acked: BatchId,
    /// Batches delivered since the last ack (not superseded).
    delivered_since_ack: u64,
    /// When the cursor last moved.
    last_ack: Instant,
    client: PushgatewayClient,
    reader: SinkReader,
    shared: Arc<Shared>,
    self_metrics: Option<PrometheusHandle>,
    exposition: Exposition,
}

/// What one push attempt did.
enum Attempt {
    Nothing,
    Pushed,
    Failed(crate::sink::PushError),
    Buffer(BufferError),
}

impl PushgatewayLoop {
    /// The newest batch: the sampler's last one from memory, or (before the
    /// first tick, e.g. a backlog left by a previous run) from the buffer.
    fn newest(&mut self) -> Result<Option<Latest>, BufferError> {
        let in_memory = self
            .shared
            .latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match in_memory {
            Some(x) => Ok(Some(x)),
            None => Ok(self.reader.newest()?.map(|(id, b)| (Some(id), Arc::new(b)))),
        }
    }

    fn push_newest(&mut self) -> Attempt {
        let (id, batch) = match self.newest() {
            Ok(Some(x)) => x,
            Ok(None) => return Attempt::Nothing,
            Err(e) => return Attempt::Buffer(e),
        };
        if id.is_some_and(|id| id <= self.pushed) {
            return Attempt::Nothing;
        }
        let mut text = self.exposition.render(&batch);
        if let Some(h) = &self.self_metrics {
            text.push_str(&h.render());
        }
        let t0 = Instant::now();
        let result = self.client.push(&text);
        let took = t0.elapsed().as_secs_f64();
        gauge!("aif_exporter_push_duration_seconds", "sink" => PUSHGATEWAY_SINK).set(took);
        let outcome = match &result {
            Ok(()) => "ok",
            Err(e) => e.result_label(),
        };
        counter!("aif_exporter_pushes_total", "sink" => PUSHGATEWAY_SINK, "result" => outcome)
            .increment(1);
        match result {
            Ok(()) => {
                gauge!("aif_exporter_last_push_success_timestamp_seconds", "sink" => PUSHGATEWAY_SINK)
                    .set(now_ms() as f64 / 1000.0);
                if let Some(id) = id {
                    self.pushed = id;
                    self.delivered_since_ack += 1;
                    self.shared
                        .pushed_through
                        .store(id.get(), std::sync::atomic::Ordering::Relaxed);
                    if let Attempt::Buffer(e) = self.ack(false) {
                        return Attempt::Buffer(e);
                    }
                }
                Attempt::Pushed
            }
            Err(e) if e.class() == PushClass::Permanent => {
                log::warn!(
                    "pushgateway rejected batch {} (ts={}), dropping it: {e}",
                    id.map_or(-1, |i| i.get()),
                    batch.timestamp_ms
                );
                counter!("aif_exporter_dropped_batches_total", "reason" => "rejected").increment(1);
                if let Some(id) = id {
                    // Taken for good: neither delivered nor superseded.
                    self.pushed = id;
                    self.delivered_since_ack += 1;
                    if let Attempt::Buffer(b) = self.ack(true) {
                        return Attempt::Buffer(b);
                    }
                }
                Attempt::Failed(e)
            }
            Err(e) => Attempt::Failed(e),
        }
    }

    /// Moves the durable cursor to the newest pushed batch when [`ACK_EVERY`]
    /// has passed (or `force`); batches it covers that were never delivered
    /// are counted as superseded.
    fn ack(&mut self, force: bool) -> Attempt {
        if self.pushed <= self.acked || !(force || self.last_ack.elapsed() >= ACK_EVERY) {
            return Attempt::Nothing;
        }
        match self.reader.ack_through(self.pushed) {
            Ok(covered) => {
                let superseded = covered.saturating_sub(self.delivered_since_ack);
                if superseded > 0 {
                    counter!("aif_exporter_superseded_batches_total", "sink" => PUSHGATEWAY_SINK)
                        .increment(superseded);
                }
                log::debug!(
                    "pushgateway acked through batch {}: {} delivered, {superseded} superseded",
                    self.pushed.get(),
                    self.delivered_since_ack
                );
                self.acked = self.pushed;
                self.delivered_since_ack = 0;
                self.last_ack = Instant::now();
                Attempt::Pushed
            }
            Err(e) => Attempt::Buffer(e),
        }
    }

    fn run(mut self, delete_on_exit: bool) {
        let policy = self.client.backoff();
        let mut backoff = Backoff::new(policy, crate::retry::random_seed());
        let mut retry_at: Option<Instant> = None;
        log::info!("pushgateway sink started: url={}", self.client.group_url());
        loop {
            {
                let mut sig = self.shared.lock();
                loop {
                    if sig.stop_sinks {
                        drop(sig);
                        self.finish(delete_on_exit);
                        return;
                    }
                    let now = Instant::now();
                    match retry_at {
                        Some(t) if now >= t => break,
                        None if sig.new_batch => break,
                        _ => {}
                    }
                    let wait = retry_at.map_or(Duration::from_secs(3600), |t| t - now);
                    sig = self
                        .shared
                        .cv
                        .wait_timeout(sig, wait)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                sig.new_batch = false;
            }
            retry_at = None;
            match self.push_newest() {
                Attempt::Nothing | Attempt::Pushed => {
                    if backoff.failures() > 0 {
                        log::info!(
                            "pushgateway reachable again after {} failed attempt(s): url={}",
                            backoff.failures(),
                            self.client.group_url()
                        );
                    }
                    backoff.reset();
                }
                Attempt::Failed(e) => match e.class() {
                    PushClass::Permanent => backoff.reset(),
                    PushClass::Configuration => {
                        let d = backoff.max_delay();
                        log::error!(
                            "pushgateway configuration error (data kept, retry in {:.1}s): {e}",
                            d.as_secs_f64()
                        );
                        retry_at = Some(Instant::now() + d);
                    }
                    PushClass::Retryable => {
                        let d = backoff.next_delay();
                        log::warn!(
                            "push failed (attempt {}, retry in {:.1}s, data kept): {e}",
                            backoff.failures(),
                            d.as_secs_f64()
                        );
                        retry_at = Some(Instant::now() + d);
                    }
                },
                Attempt::Buffer(e) => {
                    let d = backoff.next_delay();
                    log::error!(
                        "pushgateway sink cannot read the buffer (retry in {:.1}s): {e}",
                        d.as_secs_f64()
                    );
                    retry_at = Some(Instant::now() + d);
                }
            }
        }
    }

    fn finish(&mut self, delete_on_exit: bool) {
        self.finish_push(delete_on_exit);
        if let Attempt::Buffer(e) = self.ack(true) {
            log::warn!("pushgateway sink could not record its progress on shutdown: {e}");
        }
    }

    fn finish_push(&mut self, delete_on_exit: bool) {
        if delete_on_exit {
            match self.client.delete() {
                Ok(()) => log::info!("pushgateway group deleted: url={}", self.client.group_url()),
                Err(e) => log::warn!("pushgateway group delete failed: {e}"),
            }
            return;
        }
        match self.push_newest() {
            Attempt::Pushed => log::info!("pushgateway flushed on shutdown"),
            Attempt::Nothing => {}
            Attempt::Failed(e) => {
                log::warn!("pushgateway flush on shutdown failed (data kept in the buffer): {e}")
            }
            Attempt::Buffer(e) => log::warn!("pushgateway flush on shutdown: buffer error: {e}"),
        }
    }
}
