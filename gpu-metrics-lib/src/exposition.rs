//! Text exposition (Prometheus format 0.0.4) of a batch.
//!
//! [`Exposition::render`] writes exactly the samples of one batch: a `# HELP`
//! (from [`crate::catalogue`]) and `# TYPE` line per metric, then one line per
//! series, no timestamps (the Pushgateway rejects them), ending in `\n`. A
//! series absent from the batch is absent from the text: nothing stale is ever
//! served.
//!
//! Why not `metrics-exporter-prometheus` for this: its recorder is the right tool
//! for a process's own counters (the exporter's `aif_exporter_*` self-metrics go
//! through it), but a batch is a record, not live instrumentation. Rendering one
//! through a recorder costs ~210 µs for 8 GPUs (label sanitising and snapshot
//! maps on every render; see `benches/benches/sampling.rs`, which keeps that
//! path as the peer) against a target of 100 µs, and its counters are `u64`, which
//! would truncate `aif_gpu_energy_joules_total` to whole joules. This encoder
//! writes the batch directly, with exact `f64` values.

use std::fmt::Write as _;

use std::sync::Arc;

use crate::catalogue;
use crate::sample::{Batch, MetricKind, Series};

/// Renders batches as Prometheus text exposition.
///
/// Consecutive batches usually carry the same series (the same `Arc`s, in the
/// same order: the namer reuses them), so the renderer keeps the last batch's
/// *layout*: for each line, in output order, the text before the value
/// (`# HELP`/`# TYPE` where a metric starts, then `name{labels} `) and the
/// sample it prints. A batch with the same series pointers in the same order
/// only writes its values; any other batch rebuilds the layout first.
#[derive(Debug, Default)]
pub struct Exposition {
    groups: Vec<(usize, Vec<usize>)>,
    layout: Layout,
}

#[derive(Debug, Default)]
struct Layout {
    /// The series of the batch the layout was built for, in batch order
    /// (held, so a pointer cannot be reused while it is compared).
    series: Vec<Arc<Series>>,
    /// `(text before the value, sample index)` in output order.
    lines: Vec<(String, usize)>,
}

impl Layout {
    fn matches(&self, batch: &Batch) -> bool {
        self.series.len() == batch.samples.len()
            && self
                .series
                .iter()
                .zip(&batch.samples)
                .all(|(a, s)| Arc::ptr_eq(a, &s.series))
    }
}

/// Appends `v` escaped as a label value of the Prometheus text format:
/// `\` as `\\`, `"` as `\"`, newline as `\n`; everything else as is.
///
/// ```
/// let mut out = String::new();
/// gpu_metrics::exposition::escape_label_value(&mut out, "a\"b\\c\n");
/// assert_eq!(out, r#"a\"b\\c\n"#);
/// ```
pub fn escape_label_value(out: &mut String, v: &str) {
    if !v.contains(['\\', '"', '\n']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends `v` escaped as help text (`\`, newline).
fn escape_help(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends a sample value the way Prometheus writes it: `NaN`, `+Inf`,
/// `-Inf`, otherwise the shortest decimal that reads back as `v`.
///
/// ```
/// let mut out = String::new();
/// gpu_metrics::exposition::write_value(&mut out, f64::INFINITY);
/// out.push(' ');
/// gpu_metrics::exposition::write_value(&mut out, 0.25);
/// assert_eq!(out, "+Inf 0.25");
/// ```
pub fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}

impl Exposition {
    /// A new renderer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Renders `batch`: every sample, grouped by metric name in order of first
    /// appearance, ending in `\n` (an empty batch renders as `""`).
    pub fn render(&mut self, batch: &Batch) -> String {
        let mut out = String::with_capacity(batch.samples.len() * 160);
        self.render_into(batch, &mut out);
        out
    }

    /// As [`Exposition::render`], appending to `out`.
    pub fn render_into(&mut self, batch: &Batch, out: &mut String) {
        if !self.layout.matches(batch) {
            self.rebuild(batch);
        }
        for (text, i) in &self.layout.lines {
            out.push_str(text);
            write_value(out, batch.samples[*i].value);
            out.push('\n');
        }
    }

    /// Builds the layout of `batch`: samples grouped by metric name in order
    /// of first appearance, each group led by its `# HELP` and `# TYPE`.
    fn rebuild(&mut self, batch: &Batch) {
        self.groups.iter_mut().for_each(|(_, v)| v.clear());
        let mut used = 0;
        for (i, s) in batch.samples.iter().enumerate() {
            let name = s.series.name.as_str();
            match self.groups[..used]
                .iter_mut()
                .find(|(first, _)| batch.samples[*first].series.name == name)
            {
                Some((_, members)) => members.push(i),
                None => {
                    if used == self.groups.len() {
                        self.groups.push((i, Vec::new()));
                    }
                    self.groups[used].0 = i;
                    self.groups[used].1.push(i);
                    used += 1;
                }
            }
        }
        let layout = &mut self.layout;
        layout.series.clear();
        layout
            .series
            .extend(batch.samples.iter().map(|s| Arc::clone(&s.series)));
        layout.lines.clear();
        for (first, members) in &self.groups[..used] {
            let series = &batch.samples[*first].series;
            let mut head = String::new();
            head.push_str("# HELP ");
            head.push_str(&series.name);
            head.push(' ');
            escape_help(&mut head, catalogue::help(&series.name));
            head.push_str("\n# TYPE ");
            head.push_str(&series.name);
            head.push_str(match series.kind {
                MetricKind::Gauge => " gauge\n",
                MetricKind::Counter => " counter\n",
            });
            for &i in members {
                let mut text = std::mem::take(&mut head);
                let sample = &batch.samples[i];
                text.push_str(&sample.series.name);
                if !sample.series.labels.is_empty() {
                    text.push('{');
                    for (n, (k, v)) in sample.series.labels.iter().enumerate() {
                        if n > 0 {
                            text.push(',');
                        }
                        text.push_str(k);
                        text.push_str("=\"");
                        escape_label_value(&mut text, v);
                        text.push('"');
                    }
                    text.push('}');
                }
                text.push(' ');
                layout.lines.push((text, i));
            }
        }
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
    fn renders_help_type_and_exact_values() {
        let mut e = Exposition::new();
        let mut b = Batch::new(1);
        b.push(series("aif_gpu_power_watts", MetricKind::Gauge, "0"), 312.5);
        b.push(
            series("aif_gpu_energy_joules_total", MetricKind::Counter, "0"),
            1234.567,
        );
        b.push(series("aif_gpu_power_watts", MetricKind::Gauge, "1"), 80.0);
        let text = e.render(&b);
        assert_eq!(
            text,
            "# HELP aif_gpu_power_watts Power drawn by the GPU board, in watts.\n\
             # TYPE aif_gpu_power_watts gauge\n\
             aif_gpu_power_watts{gpu=\"0\"} 312.5\n\
             aif_gpu_power_watts{gpu=\"1\"} 80\n\
             # HELP aif_gpu_energy_joules_total Energy consumed since the driver was loaded, in joules.\n\
             # TYPE aif_gpu_energy_joules_total counter\n\
             aif_gpu_energy_joules_total{gpu=\"0\"} 1234.567\n"
        );
    }

    #[test]
    fn escapes_label_values_and_special_floats() {
        let mut e = Exposition::new();
        let mut b = Batch::new(1);
        let labels = Labels::from_pairs([("run_id", "a\"b\\c\nd")]);
        b.push(
            Arc::new(Series::new("aif_x", MetricKind::Gauge, labels)),
            f64::NAN,
        );
        b.push(
            Arc::new(Series::new("aif_y", MetricKind::Gauge, Labels::new())),
            f64::INFINITY,
        );
        b.push(
            Arc::new(Series::new("aif_z", MetricKind::Gauge, Labels::new())),
            f64::NEG_INFINITY,
        );
        let text = e.render(&b);
        assert!(
            text.contains("aif_x{run_id=\"a\\\"b\\\\c\\nd\"} NaN\n"),
            "{text}"
        );
        assert!(text.contains("aif_y +Inf\n"), "{text}");
        assert!(text.contains("aif_z -Inf\n"), "{text}");
    }

    #[test]
    fn only_the_batch_is_rendered_and_scratch_is_reused() {
        let mut e = Exposition::new();
        let mut b1 = Batch::new(1);
        b1.push(series("aif_gpu_up", MetricKind::Gauge, "0"), 1.0);
        b1.push(series("aif_gpu_up", MetricKind::Gauge, "1"), 1.0);
        assert!(e.render(&b1).contains("gpu=\"1\""));
        let mut b2 = Batch::new(2);
        b2.push(series("aif_gpu_up", MetricKind::Gauge, "0"), 0.0);
        let text = e.render(&b2);
        assert!(!text.contains("gpu=\"1\""), "{text}");
        assert_eq!(text.matches("# TYPE").count(), 1);
        assert_eq!(e.render(&Batch::new(3)), "");
    }

    #[test]
    fn a_batch_of_the_same_series_reuses_the_layout_with_its_own_values() {
        let mut e = Exposition::new();
        let up0 = series("aif_gpu_up", MetricKind::Gauge, "0");
        let power0 = series("aif_gpu_power_watts", MetricKind::Gauge, "0");
        let up1 = series("aif_gpu_up", MetricKind::Gauge, "1");
        let batch = |a: f64, b: f64, c: f64| {
            let mut x = Batch::new(1);
            x.push(Arc::clone(&up0), a);
            x.push(Arc::clone(&power0), b);
            x.push(Arc::clone(&up1), c);
            x
        };
        let first = e.render(&batch(1.0, 300.5, 1.0));
        let second = e.render(&batch(0.0, 12.25, 1.0));
        assert_eq!(
            second,
            first
                .replace("aif_gpu_up{gpu=\"0\"} 1", "aif_gpu_up{gpu=\"0\"} 0")
                .replace("300.5", "12.25")
        );
        // Other series, even equal by value, in another order: rebuilt.
        let mut other = Batch::new(2);
        other.push(series("aif_gpu_power_watts", MetricKind::Gauge, "0"), 7.0);
        other.push(series("aif_gpu_up", MetricKind::Gauge, "0"), 1.0);
        let text = e.render(&other);
        assert!(text.starts_with("# HELP aif_gpu_power_watts"), "{text}");
        assert!(text.ends_with("aif_gpu_up{gpu=\"0\"} 1\n"), "{text}");
        // And back: the first layout again, fresh values.
        assert_eq!(e.render(&batch(1.0, 300.5, 1.0)), first);
    }
}
