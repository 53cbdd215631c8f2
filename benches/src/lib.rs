//! Support for the criterion benches in `benches/`.
//!
//! [`RecorderExposition`] renders a batch through `metrics-exporter-prometheus`'s
//! recorder: the peer that `gpu_metrics::Exposition` is measured against in
//! `benches/sampling.rs` (see ARCHITECTURE.md for why the library writes its own
//! text).

use std::collections::HashMap;
use std::sync::Arc;

use gpu_metrics::{Batch, MetricKind, Series, catalogue};
use metrics::{Counter, Gauge, Key, KeyName, Label, Level, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

enum Handle {
    Gauge(Gauge),
    Counter(Counter),
}

static METADATA: Metadata<'static> = Metadata::new("aif_benches", Level::INFO, None);

/// Renders batches through a private `PrometheusRecorder`, caching handles.
pub struct RecorderExposition {
    recorder: PrometheusRecorder,
    handles: HashMap<Arc<Series>, Handle>,
}

impl Default for RecorderExposition {
    fn default() -> Self {
        RecorderExposition {
            recorder: PrometheusBuilder::new().build_recorder(),
            handles: HashMap::new(),
        }
    }
}

impl RecorderExposition {
    /// Sets every sample of `batch` on the recorder and renders it.
    pub fn render(&mut self, batch: &Batch) -> String {
        for s in &batch.samples {
            let recorder = &self.recorder;
            let h = self
                .handles
                .entry(Arc::clone(&s.series))
                .or_insert_with(|| {
                    let key = Key::from_parts(
                        s.series.name.clone(),
                        s.series
                            .labels
                            .iter()
                            .map(|(k, v)| Label::new(k.to_string(), v.to_string()))
                            .collect::<Vec<_>>(),
                    );
                    let help = SharedString::const_str(catalogue::help(&s.series.name));
                    let name = KeyName::from(s.series.name.clone());
                    match s.series.kind {
                        MetricKind::Gauge => {
                            recorder.describe_gauge(name, None, help);
                            Handle::Gauge(recorder.register_gauge(&key, &METADATA))
                        }
                        MetricKind::Counter => {
                            recorder.describe_counter(name, None, help);
                            Handle::Counter(recorder.register_counter(&key, &METADATA))
                        }
                    }
                });
            match h {
                Handle::Gauge(g) => g.set(s.value),
                Handle::Counter(c) => c.absolute(s.value as u64),
            }
        }
        self.recorder.handle().render()
    }
}
