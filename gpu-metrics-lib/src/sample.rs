//! Samples: the unit of data that flows from a source to the buffer and the sinks.
//!
//! One sampling tick produces a [`Batch`]: a timestamp in milliseconds since the
//! Unix epoch and a list of [`Sample`]s. A sample is a [`Series`] (metric name,
//! kind and sorted labels) and an `f64` value. Series are reference counted so
//! that the hot path clones pointers, not strings (DESIGN.md §4).

use std::fmt;
use std::sync::Arc;

/// Prometheus metric type of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricKind {
    /// A value that goes up and down.
    Gauge,
    /// A value that only goes up (resets on restart of its producer).
    Counter,
}

impl MetricKind {
    /// The one-byte code used by the on-disk encoding.
    pub fn code(self) -> u8 {
        match self {
            MetricKind::Gauge => 0,
            MetricKind::Counter => 1,
        }
    }

    /// The kind for an on-disk code, `None` for an unknown code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(MetricKind::Gauge),
            1 => Some(MetricKind::Counter),
            _ => None,
        }
    }
}

/// A set of labels, kept sorted by name, names unique.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// An empty label set.
    pub fn new() -> Self {
        Labels(Vec::new())
    }

    /// Builds a label set from pairs; a later pair with the same name wins.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut labels = Labels::new();
        for (k, v) in pairs {
            labels.insert(k, v);
        }
        labels
    }

    /// Inserts or replaces a label, keeping the set sorted.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(&name)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (name, value)),
        }
    }

    /// The value of a label, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// Iterates over `(name, value)` pairs in name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no label.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds every label of `other`, replacing labels of the same name.
    pub fn extend(&mut self, other: &Labels) {
        for (k, v) in other.iter() {
            self.insert(k, v);
        }
    }
}

/// A metric name, its kind and its labels: one time series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Series {
    /// Metric name, e.g. `aif_gpu_power_watts`.
    pub name: String,
    /// Gauge or counter.
    pub kind: MetricKind,
    /// Sorted labels.
    pub labels: Labels,
}

impl Series {
    /// A new series.
    pub fn new(name: impl Into<String>, kind: MetricKind, labels: Labels) -> Self {
        Series {
            name: name.into(),
            kind,
            labels,
        }
    }
}

impl fmt::Display for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.labels.is_empty() {
            f.write_str("{")?;
            for (i, (k, v)) in self.labels.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{k}={v:?}")?;
            }
            f.write_str("}")?;
        }
        Ok(())
    }
}

/// One value of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series, shared between ticks.
    pub series: Arc<Series>,
    /// The value in the metric's unit.
    pub value: f64,
}

/// Everything one sampling tick produced.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Batch {
    /// Milliseconds since the Unix epoch when the tick started.
    pub timestamp_ms: i64,
    /// The samples, in the order the source produced them.
    pub samples: Vec<Sample>,
}

impl Batch {
    /// An empty batch at `timestamp_ms`.
    pub fn new(timestamp_ms: i64) -> Self {
        Batch {
            timestamp_ms,
            samples: Vec::new(),
        }
    }

    /// Appends one sample.
    pub fn push(&mut self, series: Arc<Series>, value: f64) {
        self.samples.push(Sample { series, value });
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True when the batch holds no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The value of the first sample of metric `name` whose labels include every
    /// pair of `labels`; a convenience for tests and tools.
    pub fn value_of(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.series.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.series.labels.get(k) == Some(*v))
            })
            .map(|s| s.value)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_sorted_and_unique() {
        let mut l = Labels::from_pairs([("uuid", "x"), ("gpu", "0"), ("model", "m")]);
        l.insert("gpu", "1");
        let names: Vec<_> = l.iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["gpu", "model", "uuid"]);
        assert_eq!(l.get("gpu"), Some("1"));
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn series_displays_like_prometheus() {
        let s = Series::new(
            "aif_gpu_up",
            MetricKind::Gauge,
            Labels::from_pairs([("gpu", "0")]),
        );
        assert_eq!(s.to_string(), "aif_gpu_up{gpu=\"0\"}");
    }
}
