//! Text exposition of a batch, through `metrics-exporter-prometheus`.
//!
//! An [`Exposition`] owns a private [`PrometheusRecorder`] (never installed as the
//! global recorder) and renders exactly one batch: the values of the last
//! [`Exposition::render`] call and nothing else. When the set of series changes
//! (a GPU appears or disappears, a label changes) the recorder is replaced, so a
//! series absent from the batch is absent from the text: the exporter never
//! serves a stale value.
//!
//! The output has a `# HELP` and `# TYPE` line for every metric (help text from
//! [`crate::catalogue`]), no timestamps (the Pushgateway rejects them), and ends
//! in `\n`.
//!
//! Counters are `u64` in `metrics`; a counter value is rendered truncated to an
//! integer (for `aif_gpu_energy_joules_total`, whole joules; the buffer and
//! remote-write keep the exact value).

use std::collections::HashMap;
use std::sync::Arc;

use metrics::{Counter, Gauge, Key, KeyName, Label, Level, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

use crate::catalogue;
use crate::sample::{Batch, MetricKind, Series};

enum Handle {
    Gauge(Gauge),
    Counter(Counter),
}

/// Renders batches as Prometheus text exposition (format 0.0.4).
pub struct Exposition {
    recorder: PrometheusRecorder,
    /// Series of the previous render, in order, with their handles.
    last: Vec<(Arc<Series>, usize)>,
    /// Handles by series content, for the slow path.
    handles: HashMap<Arc<Series>, usize>,
    store: Vec<Handle>,
}

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exposition")
            .field("series", &self.store.len())
            .finish_non_exhaustive()
    }
}

impl Default for Exposition {
    fn default() -> Self {
        Self::new()
    }
}

static METADATA: Metadata<'static> = Metadata::new("gpu_metrics", Level::INFO, None);

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Exposition {
            recorder: PrometheusBuilder::new().build_recorder(),
            last: Vec::new(),
            handles: HashMap::new(),
            store: Vec::new(),
        }
    }

    fn reset(&mut self) {
        self.recorder = PrometheusBuilder::new().build_recorder();
        self.handles.clear();
        self.store.clear();
    }

    fn register(&mut self, series: &Arc<Series>) -> usize {
        if let Some(&i) = self.handles.get(series) {
            return i;
        }
        let key = Key::from_parts(
            series.name.clone(),
            series
                .labels
                .iter()
                .map(|(k, v)| Label::new(k.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
        );
        let help = SharedString::const_str(catalogue::help(&series.name));
        let name = KeyName::from(series.name.clone());
        let handle = match series.kind {
            MetricKind::Gauge => {
                self.recorder.describe_gauge(name, None, help);
                Handle::Gauge(self.recorder.register_gauge(&key, &METADATA))
            }
            MetricKind::Counter => {
                self.recorder.describe_counter(name, None, help);
                Handle::Counter(self.recorder.register_counter(&key, &METADATA))
            }
        };
        self.store.push(handle);
        let i = self.store.len() - 1;
        self.handles.insert(Arc::clone(series), i);
        i
    }

    /// Renders `batch` as text exposition: every sample of the batch, nothing
    /// else, ending in `\n`.
    pub fn render(&mut self, batch: &Batch) -> String {
        let same_as_last = self.last.len() == batch.samples.len()
            && self
                .last
                .iter()
                .zip(&batch.samples)
                .all(|((s, _), sample)| Arc::ptr_eq(s, &sample.series));
        if !same_as_last {
            let same_set = self.last.len() == batch.samples.len()
                && batch
                    .samples
                    .iter()
                    .all(|s| self.handles.contains_key(&s.series));
            if !same_set {
                self.reset();
            }
            self.last.clear();
            for sample in &batch.samples {
                let i = self.register(&sample.series);
                self.last.push((Arc::clone(&sample.series), i));
            }
        }
        for ((_, i), sample) in self.last.iter().zip(&batch.samples) {
            match &self.store[*i] {
                Handle::Gauge(g) => g.set(sample.value),
                Handle::Counter(c) => c.absolute(sample.value.max(0.0) as u64),
            }
        }
        let mut text = self.recorder.handle().render();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Labels;

    fn series(name: &str, kind: MetricKind, gpu: &str) -> Arc<Series> {
        Arc::new(Series::new(name, kind, Labels::from_pairs([("gpu", gpu)])))
    }

    #[test]
    fn renders_help_type_and_values() {
        let mut e = Exposition::new();
        let mut b = Batch::new(1);
        b.push(series("aif_gpu_power_watts", MetricKind::Gauge, "0"), 312.5);
        b.push(series("aif_gpu_energy_joules_total", MetricKind::Counter, "0"), 1234.9);
        let text = e.render(&b);
        assert!(text.contains("# HELP aif_gpu_power_watts Power drawn"), "{text}");
        assert!(text.contains("# TYPE aif_gpu_power_watts gauge"), "{text}");
        assert!(text.contains("aif_gpu_power_watts{gpu=\"0\"} 312.5"), "{text}");
        assert!(text.contains("# TYPE aif_gpu_energy_joules_total counter"), "{text}");
        assert!(text.contains("aif_gpu_energy_joules_total{gpu=\"0\"} 1234\n"), "{text}");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn series_missing_from_the_batch_is_not_rendered() {
        let mut e = Exposition::new();
        let a = series("aif_gpu_up", MetricKind::Gauge, "0");
        let b = series("aif_gpu_up", MetricKind::Gauge, "1");
        let mut b1 = Batch::new(1);
        b1.push(Arc::clone(&a), 1.0);
        b1.push(Arc::clone(&b), 1.0);
        assert!(e.render(&b1).contains("gpu=\"1\""));
        let mut b2 = Batch::new(2);
        b2.push(Arc::clone(&a), 0.0);
        let text = e.render(&b2);
        assert!(!text.contains("gpu=\"1\""), "{text}");
        assert!(text.contains("aif_gpu_up{gpu=\"0\"} 0"), "{text}");
        // Same series, new Arcs (as read back from the buffer): values update.
        let mut b3 = Batch::new(3);
        b3.push(series("aif_gpu_up", MetricKind::Gauge, "0"), 1.0);
        assert!(e.render(&b3).contains("aif_gpu_up{gpu=\"0\"} 1"));
    }
}
