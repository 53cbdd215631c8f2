//! The agent: sampling on a fixed schedule, the write-ahead buffer, and one
//! delivery thread per sink, wired together (what `aif-node-exporter` runs,
//! and what a load generator uses for its live figures).
//!
//! Threads and invariants:
//! - **sampler**: every `interval` (fixed rate; a tick that overruns skips the
//!   slots it missed and counts them) it takes a batch from its
//!   [`BatchSource`], appends it to the buffer (one transaction) and hands it
//!   to the sinks in memory. It never waits for a sink: a slow or dead
//!   receiver cannot delay a tick, and acks delete in bounded chunks so a
//!   large ack cannot either (the tick's lateness is measured:
//!   `aif_exporter_tick_lateness_seconds`). A full disk or a buffer error
//!   drops that tick's batch from the buffer, logged and counted; it is still
//!   served and delivered from memory; sampling goes on.
//! - **sinks**: one [`crate::delivery`] loop per configured [`Sink`]
//!   (Pushgateway: newest state; remote-write: history, oldest first). The
//!   agent knows no sink by name.
//! - **shutdown** ([`AgentHandle::shutdown`]): the sampler finishes its tick and
//!   stops; then each sink makes one last delivery (or closes, e.g. deletes
//!   its Pushgateway group) and records its progress.
//!
//! Self-metrics (`aif_exporter_*`) go through the `metrics` facade; they are
//! recorded only if the program installed a recorder (the exporter installs
//! `metrics-exporter-prometheus`'s, and passes its handle here to render them).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::buffer::{BatchId, Buffer, BufferError, EvictReason};
use crate::delivery::{Feed, SinkLoop};
use crate::exposition::Exposition;
use crate::naming::Namer;
use crate::sample::{Batch, now_ms};
use crate::sink::{PushgatewayClient, PushgatewaySink, RemoteWriteClient, RemoteWriteSink, Sink};
use crate::source::GpuSource;

/// How often the buffer's gauges (batches, bytes, per-sink backlog) are
/// refreshed: a stats query per tick would cost more than the tick itself.
/// The same period as the Pushgateway sink's self-metrics rendering, so a
/// push never carries gauges older than one period.
pub const STATS_EVERY: Duration = crate::sink::SELF_METRICS_EVERY;

pub use crate::delivery::ACK_EVERY;
pub use crate::sink::{PUSHGATEWAY_SINK, REMOTE_WRITE_SINK};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The buffer refused to open a reader for a sink (is the sink among
    /// the buffer's configured sinks?).
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
    /// The Pushgateway (live view), if any; its sink name is
    /// [`PUSHGATEWAY_SINK`].
    pub pushgateway: Option<PushgatewayClient>,
    /// DELETE the Pushgateway group on shutdown instead of a last push.
    pub delete_on_exit: bool,
    /// The remote-write receiver (history), if any; its sink name is
    /// [`REMOTE_WRITE_SINK`].
    pub remote_write: Option<RemoteWriteClient>,
    /// Further sinks. Every sink's name must be among the buffer's sinks.
    pub sinks: Vec<Box<dyn Sink>>,
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
            remote_write: None,
            sinks: Vec::new(),
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
            .field("remote_write", &self.remote_write)
            .field(
                "sinks",
                &self.sinks.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .field("on_tick", &self.on_tick.is_some())
            .finish_non_exhaustive()
    }
}

/// The running agent. Dropping it without [`AgentHandle::shutdown`] leaves the
/// threads running until the process exits.
#[derive(Debug)]
pub struct AgentHandle {
    feed: Arc<Feed>,
    sampler: Option<JoinHandle<()>>,
    sinks: Vec<(&'static str, JoinHandle<()>)>,
    self_metrics: Option<PrometheusHandle>,
}

/// Describes every self-metric (call once after installing a recorder).
pub fn describe_self_metrics() {
    describe_counter!(
        "aif_exporter_samples_total",
        "Sampling ticks taken: the source answered with a batch, whether or not the buffer could store it (see aif_exporter_samples_committed_total)."
    );
    describe_counter!(
        "aif_exporter_samples_committed_total",
        "Sampling ticks whose batch this process committed to the write-ahead buffer (taken minus dropped_batches_total{reason=disk_full|buffer_error})."
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
        "Batches lost, by reason: disk_full, buffer_error (not stored; still delivered from memory); with a sink label: refused by that sink for good (reason from its answer)."
    );
    describe_counter!(
        "aif_exporter_evicted_batches_total",
        "Batches the buffer evicted before every sink took them, by reason (cap: the size cap; disk_full: to make room on a full disk). Persisted in the buffer."
    );
    describe_counter!(
        "aif_exporter_buffer_committed_batches_total",
        "Batches committed to the buffer since it was created (its newest batch id; persisted across restarts)."
    );
    describe_counter!(
        "aif_exporter_samples_sent_total",
        "Samples a sink delivered, by sink."
    );
    describe_counter!(
        "aif_exporter_dropped_samples_total",
        "Samples a receiver refused for good inside an otherwise delivered request, by sink and reason (too_old_sample, out_of_bounds, out_of_order_sample, duplicate_sample, rejected)."
    );
    describe_gauge!(
        "aif_exporter_tick_lateness_seconds",
        "Largest delay, over the last 5 s, from a tick's scheduled slot to its batch being committed and handed to the sinks."
    );
    describe_counter!(
        "aif_exporter_superseded_batches_total",
        "Batches a latest-state sink skipped because a newer one was pushed."
    );
    describe_counter!(
        "aif_exporter_pushes_total",
        "Deliveries by sink and result (ok, partial: some samples refused, or the failure's class)."
    );
    describe_gauge!(
        "aif_exporter_push_duration_seconds",
        "Duration of the last delivery attempt, by sink."
    );
    describe_gauge!(
        "aif_exporter_last_push_success_timestamp_seconds",
        "Unix time of the last successful delivery, by sink."
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
    let mut options = options;
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if let Some(client) = options.pushgateway.take() {
        sinks.push(Box::new(PushgatewaySink::new(
            client,
            options.self_metrics.clone(),
            options.delete_on_exit,
        )));
    }
    if let Some(client) = options.remote_write.take() {
        sinks.push(Box::new(RemoteWriteSink::new(client)));
    }
    sinks.append(&mut options.sinks);
    let names: Vec<&'static str> = sinks.iter().map(|s| s.name()).collect();
    let feed = Arc::new(Feed::new(&names));
    let mut threads = Vec::with_capacity(sinks.len());
    for sink in sinks {
        let name = sink.name();
        let reader = buffer
            .reader(name)
            .map_err(|source| AgentError::Reader { sink: name, source })?;
        let sink_loop = SinkLoop::new(sink, reader, Arc::clone(&feed))
            .map_err(|source| AgentError::Reader { sink: name, source })?;
        let thread = std::thread::Builder::new()
            .name(format!("aif-sink-{name}"))
            .spawn(move || sink_loop.run())
            .map_err(|source| AgentError::Spawn {
                what: "sink",
                source,
            })?;
        threads.push((name, thread));
    }
    let sampler = Sampler {
        source,
        buffer,
        feed: Arc::clone(&feed),
        interval: options.interval,
        upkeep: options.self_metrics.clone(),
        on_tick: options.on_tick,
        drops: DropLog::default(),
        last_stats: None,
        max_lateness: Duration::ZERO,
    };
    let sampler = std::thread::Builder::new()
        .name("aif-sampler".into())
        .spawn(move || sampler.run())
        .map_err(|source| AgentError::Spawn {
            what: "sampler",
            source,
        })?;
    Ok(AgentHandle {
        feed,
        sampler: Some(sampler),
        sinks: threads,
        self_metrics: options.self_metrics,
    })
}

/// The sampler thread's state: one tick per `interval`, fixed rate.
struct Sampler {
    source: Box<dyn BatchSource>,
    buffer: Buffer,
    feed: Arc<Feed>,
    interval: Duration,
    upkeep: Option<PrometheusHandle>,
    on_tick: Option<Box<dyn FnMut() + Send>>,
    /// Appends that failed since the last success, for rate-limited logs.
    drops: DropLog,
    last_stats: Option<Instant>,
    /// The latest tick start behind its slot since the stats were published.
    max_lateness: Duration,
}

impl Sampler {
    fn run(mut self) {
        let mut next = Instant::now();
        loop {
            self.tick(next);
            next = self.next_slot(next);
            if self.wait_until(next) {
                return;
            }
        }
    }

    /// Samples, appends and hands the batch to the sinks; `slot` is when
    /// the schedule wanted it.
    fn tick(&mut self, slot: Instant) {
        let tick_start = Instant::now();
        let head_before = self.buffer.head();
        let ts = now_ms();
        match self.source.next_batch(ts) {
            Ok(batch) => {
                let batch = Arc::new(batch);
                let stored = self.append(&batch);
                // Even a batch the disk could not take is served and pushed:
                // the live view survives a full disk.
                self.feed.publish(stored, batch);
                self.max_lateness = self
                    .max_lateness
                    .max(Instant::now().saturating_duration_since(slot));
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
            publish_buffer_stats(&self.buffer, &self.feed, head_before);
            gauge!("aif_exporter_tick_lateness_seconds").set(self.max_lateness.as_secs_f64());
            self.max_lateness = Duration::ZERO;
            if let Some(h) = &self.upkeep {
                h.run_upkeep();
            }
            self.last_stats = Some(Instant::now());
        }
    }

    /// Appends to the buffer; `None` (logged and counted) when it failed.
    fn append(&mut self, batch: &Batch) -> Option<BatchId> {
        counter!("aif_exporter_samples_total").increment(1);
        match self.buffer.append(batch) {
            Ok(id) => {
                counter!("aif_exporter_samples_committed_total").increment(1);
                self.drops.stored(self.buffer.config().path.as_path());
                Some(id)
            }
            Err(e) => {
                let reason = match e {
                    BufferError::DiskFull { .. } => "disk_full",
                    _ => "buffer_error",
                };
                counter!("aif_exporter_dropped_batches_total", "reason" => reason).increment(1);
                self.drops.dropped(&e);
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
        let mut sig = self.feed.lock();
        loop {
            if sig.stop_sampler {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            sig = self.feed.wait(sig, deadline - now);
        }
    }
}

/// Publishes the buffer's gauges. A sink's backlog counts the batches up to
/// `through` (the newest batch before this tick's: the sinks have not had a
/// chance at this tick's yet) beyond its position (its delivery runs ahead of
/// its durable cursor, as acks are lazy).
fn publish_buffer_stats(buffer: &Buffer, feed: &Feed, through: BatchId) {
    let stats = match buffer.stats() {
        Ok(s) => s,
        Err(e) => {
            log::warn!("cannot read buffer stats: {e}");
            return;
        }
    };
    gauge!("aif_exporter_buffer_batches").set(stats.batches as f64);
    gauge!("aif_exporter_buffer_bytes").set(stats.file_bytes as f64);
    counter!("aif_exporter_buffer_committed_batches_total").absolute(buffer.head().get() as u64);
    for reason in EvictReason::ALL {
        counter!("aif_exporter_evicted_batches_total", "reason" => reason.as_str())
            .absolute(stats.evicted.get(reason));
    }
    let now = now_ms();
    let newer = stats
        .last_id
        .map_or(0, |last| (last.get() - through.get()).max(0) as u64);
    for (sink, position) in feed.positions() {
        let Some(s) = stats.sinks.iter().find(|s| s.sink == sink) else {
            continue;
        };
        let mut pending = if position >= through.get() {
            Default::default()
        } else if position <= s.acked_through.get() {
            s.pending
        } else {
            match buffer.pending_after(BatchId(position)) {
                Ok(p) => p,
                Err(e) => {
                    log::warn!("cannot read the backlog of sink {sink}: {e}");
                    continue;
                }
            }
        };
        pending.batches = pending.batches.saturating_sub(newer);
        if pending.batches == 0 {
            pending.oldest_timestamp_ms = None;
        }
        gauge!("aif_exporter_buffer_pending_batches", "sink" => sink).set(pending.batches as f64);
        let age = pending
            .oldest_timestamp_ms
            .map_or(0.0, |t| ((now - t).max(0) as f64) / 1000.0);
        gauge!("aif_exporter_buffer_oldest_unsent_age_seconds", "sink" => sink).set(age);
    }
}

impl AgentHandle {
    /// The text for a `/metrics` scrape: the latest batch, then the self-metrics.
    pub fn metrics_text(&self) -> String {
        let latest = self
            .feed
            .lock()
            .latest
            .as_ref()
            .map(|t| Arc::clone(&t.batch));
        let mut text = latest
            .map(|b| Exposition::new().render(&b))
            .unwrap_or_default();
        if let Some(h) = &self.self_metrics {
            text.push_str(&h.render());
        }
        text
    }

    /// Stops the agent: the sampler finishes its tick, then the sinks flush
    /// (or delete their group) and stop. Returns when every thread has ended.
    pub fn shutdown(mut self) {
        self.feed.lock().stop_sampler = true;
        self.feed.notify();
        if let Some(t) = self.sampler.take()
            && t.join().is_err()
        {
            log::error!("sampler thread panicked");
        }
        self.feed.lock().stop_sinks = true;
        self.feed.notify();
        for (name, t) in self.sinks.drain(..) {
            if t.join().is_err() {
                log::error!("{name} sink thread panicked");
            }
        }
    }
}

/// Rate-limited logging of failed appends: one `WARN` at the first failure,
/// at most one summary line every [`crate::buffer::DISK_FULL_SUMMARY_EVERY`]
/// while they go on, one `INFO` when an append succeeds again.
#[derive(Debug, Default)]
struct DropLog {
    /// Drops since the first failure of this run of failures.
    dropped: u64,
    /// Drops since the last line.
    since_line: u64,
    last_line: Option<Instant>,
    first: Option<Instant>,
}

impl DropLog {
    fn dropped(&mut self, e: &BufferError) {
        self.dropped += 1;
        self.since_line += 1;
        let now = Instant::now();
        match self.last_line {
            None => {
                log::warn!(
                    "buffer append failed, batch dropped (still served and pushed from memory): {e}; \
                     further failures are summarised every {} s",
                    crate::buffer::DISK_FULL_SUMMARY_EVERY.as_secs()
                );
                self.first = Some(now);
            }
            Some(t) if now.duration_since(t) >= crate::buffer::DISK_FULL_SUMMARY_EVERY => {
                log::warn!(
                    "buffer appends still failing: {} batches dropped in the last {} s (latest: {e})",
                    self.since_line,
                    now.duration_since(t).as_secs()
                );
            }
            Some(_) => return,
        }
        self.last_line = Some(now);
        self.since_line = 0;
    }

    fn stored(&mut self, path: &std::path::Path) {
        if self.dropped == 0 {
            return;
        }
        log::info!(
            "buffer {}: appends succeed again after {} dropped batches in {:.1} s",
            path.display(),
            self.dropped,
            self.first.map_or(0.0, |t| t.elapsed().as_secs_f64())
        );
        *self = DropLog::default();
    }
}
