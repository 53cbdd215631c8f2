//! The [`Sink`] adapters of the two clients: what each delivers and how.

use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;

use super::remote_write::Piece;
use super::{
    Delivered, Order, PushgatewayClient, RemoteWriteClient, RemoteWriteError, Sink, SinkFailure,
};
use crate::exposition::Exposition;
use crate::retry::BackoffPolicy;
use crate::sample::Batch;

/// The Pushgateway sink's name in the buffer and in self-metrics.
pub const PUSHGATEWAY_SINK: &str = "pushgateway";

/// The remote-write sink's name in the buffer and in self-metrics.
pub const REMOTE_WRITE_SINK: &str = "remote_write";

/// How long the Pushgateway sink reuses its rendering of the self-metrics
/// (the agent refreshes its buffer gauges as often: `agent::STATS_EVERY` is
/// this constant): rendering the recorder is most of a push's CPU, and the
/// same figures are live on `--listen`'s `/metrics`. The last push on
/// shutdown renders them fresh.
pub const SELF_METRICS_EVERY: Duration = Duration::from_secs(5);

/// The live view: `PUT`s the newest batch, followed by the self-metrics
/// (rendered at most every [`SELF_METRICS_EVERY`]), to the Pushgateway group;
/// on shutdown flushes it or deletes the group.
pub struct PushgatewaySink {
    client: PushgatewayClient,
    exposition: Exposition,
    self_metrics: Option<PrometheusHandle>,
    /// The self-metrics as last rendered, and when.
    self_text: Option<(Instant, String)>,
    delete_on_exit: bool,
}

impl PushgatewaySink {
    /// Pushes with `client`; `self_metrics` are rendered after each batch;
    /// `delete_on_exit` deletes the group on clean shutdown instead of a last
    /// push.
    pub fn new(
        client: PushgatewayClient,
        self_metrics: Option<PrometheusHandle>,
        delete_on_exit: bool,
    ) -> Self {
        PushgatewaySink {
            client,
            exposition: Exposition::new(),
            self_metrics,
            self_text: None,
            delete_on_exit,
        }
    }
}

impl Sink for PushgatewaySink {
    fn name(&self) -> &'static str {
        PUSHGATEWAY_SINK
    }

    fn target(&self) -> &str {
        self.client.group_url()
    }

    fn order(&self) -> Order {
        Order::Newest
    }

    fn backoff(&self) -> BackoffPolicy {
        self.client.backoff()
    }

    fn deliver(&mut self, batches: &[Arc<Batch>]) -> Result<Delivered, Box<dyn SinkFailure>> {
        let Some(batch) = batches.last() else {
            return Ok(Delivered::default());
        };
        let mut text = self.exposition.render(batch);
        if let Some(h) = &self.self_metrics {
            let stale = self
                .self_text
                .as_ref()
                .is_none_or(|(at, _)| at.elapsed() >= SELF_METRICS_EVERY);
            if stale {
                self.self_text = Some((Instant::now(), h.render()));
            }
            if let Some((_, own)) = &self.self_text {
                text.push_str(own);
            }
        }
        self.client.push(&text).map_err(|e| Box::new(e) as _)?;
        Ok(Delivered {
            samples: batch.len() as u64,
            refused: Vec::new(),
        })
    }

    fn flush_on_shutdown(&mut self) -> bool {
        self.self_text = None; // the last push shows the final figures
        !self.delete_on_exit
    }

    fn close(&mut self) {
        if self.delete_on_exit {
            match self.client.delete() {
                Ok(()) => log::info!("pushgateway group deleted: url={}", self.client.group_url()),
                Err(e) => log::warn!("pushgateway group delete failed: {e}"),
            }
        }
    }
}

/// History: every batch, oldest first, in requests of bounded size. A request
/// the receiver refuses for good (a sample too old for its out-of-order
/// window, a payload it rejects) is split in halves by time and each half
/// resent, down to single batches, so that only what the receiver really
/// refuses is dropped: Prometheus refuses a whole request for one bad sample.
pub struct RemoteWriteSink {
    client: RemoteWriteClient,
}

impl RemoteWriteSink {
    /// Writes with `client`.
    pub fn new(client: RemoteWriteClient) -> Self {
        RemoteWriteSink { client }
    }

    /// Sends `pieces`; on a permanent refusal splits them in two and
    /// recurses, recording what single batches were refused.
    fn send_bisect(
        &mut self,
        batches: &[Arc<Batch>],
        pieces: &[Piece],
        out: &mut Delivered,
    ) -> Result<(), RemoteWriteError> {
        match self.client.write(batches, pieces) {
            Ok(()) => {
                out.samples += pieces.iter().map(|p| p.len() as u64).sum::<u64>();
                Ok(())
            }
            Err(e) if e.class() == super::FailureClass::Permanent => {
                let first = pieces.first().map_or(0, |p| p.batch);
                let last = pieces.last().map_or(0, |p| p.batch);
                if first != last {
                    // Split by time: the halves hold different batches.
                    let mid_batch = first + (last - first).div_ceil(2);
                    let mid = pieces.partition_point(|p| p.batch < mid_batch);
                    self.send_bisect(batches, &pieces[..mid], out)?;
                    return self.send_bisect(batches, &pieces[mid..], out);
                }
                let samples = pieces.iter().map(|p| p.len() as u64).sum::<u64>();
                log::warn!(
                    "remote-write receiver refused {samples} samples of the batch at {} for good, dropped: {e}",
                    batches[first].timestamp_ms
                );
                let label = e.result_label();
                match out.refused.iter_mut().find(|(r, _)| *r == label) {
                    Some((_, n)) => *n += samples,
                    None => out.refused.push((label, samples)),
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

impl Sink for RemoteWriteSink {
    fn name(&self) -> &'static str {
        REMOTE_WRITE_SINK
    }

    fn target(&self) -> &str {
        self.client.url()
    }

    fn order(&self) -> Order {
        Order::Oldest {
            max_samples: self.client.max_samples(),
        }
    }

    fn backoff(&self) -> BackoffPolicy {
        self.client.backoff()
    }

    fn deliver(&mut self, batches: &[Arc<Batch>]) -> Result<Delivered, Box<dyn SinkFailure>> {
        let mut out = Delivered::default();
        for request in self.client.plan(batches) {
            self.send_bisect(batches, &request, &mut out)
                .map_err(|e| Box::new(e) as _)?;
        }
        Ok(out)
    }
}
