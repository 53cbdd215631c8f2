//! The remote-write client (DESIGN.md §6): Prometheus remote-write 1.0, the
//! history sink.
//!
//! - `POST {url}` (e.g. `http://prometheus:9090/api/v1/write`, VictoriaMetrics
//!   `http://vm:8428/api/v1/write`) with a snappy-compressed (block format)
//!   protobuf `WriteRequest` ([`super::prompb`]), `Content-Encoding: snappy`,
//!   `Content-Type: application/x-protobuf`,
//!   `X-Prometheus-Remote-Write-Version: 0.1.0` and a `User-Agent`.
//! - Each series carries `__name__`, its own labels and the sender's `job` and
//!   `instance` (the labels a Pushgateway scrape with `honor_labels` gives the
//!   same series), sorted by name; the samples of a series are in timestamp
//!   order; one request holds at most `max_samples` samples.
//! - Status classes ([`RemoteWriteError::class`]): 2xx ok. A receiver's
//!   refusal of a sample (`too old sample`, `out of bounds`, `out of order
//!   sample`, `duplicate sample for timestamp`) is decided by its message, not
//!   the status: Prometheus before 2.50 answers some of them with 500
//!   (prometheus#13335), and retrying those would block the queue forever.
//!   401/403/404/405: configuration (keep the data, retry at the maximum
//!   backoff); 408, 429, other 5xx, connect/read errors, timeouts: retryable;
//!   other 4xx: the payload is rejected.
//! - Explicit connect and overall timeouts; basic auth or a bearer token, never
//!   in a log or a `Debug`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::http::{BuildError, FailureClass, HttpSettings, Secret, SinkKind, read_body};
use super::prompb;
pub use super::wire::Piece;
use crate::retry::BackoffPolicy;
use crate::sample::{Batch, Series};

/// Default bound on the samples of one request.
pub const DEFAULT_MAX_SAMPLES_PER_REQUEST: usize = 2_000;

/// A receiver's reason for refusing samples for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Older than the receiver's out-of-order window (`too old sample`).
    TooOld,
    /// Outside the head block's time range (`out of bounds`).
    OutOfBounds,
    /// Older than the newest sample of its series, no out-of-order window
    /// (`out of order sample`).
    OutOfOrder,
    /// Same timestamp, another value (`duplicate sample for timestamp`).
    Duplicate,
}

impl Refusal {
    /// All refusals, in match order.
    pub const ALL: [Refusal; 4] = [
        Refusal::TooOld,
        Refusal::OutOfBounds,
        Refusal::OutOfOrder,
        Refusal::Duplicate,
    ];

    /// The phrase the receiver's message contains.
    pub fn phrase(self) -> &'static str {
        match self {
            Refusal::TooOld => "too old sample",
            Refusal::OutOfBounds => "out of bounds",
            Refusal::OutOfOrder => "out of order sample",
            Refusal::Duplicate => "duplicate sample for timestamp",
        }
    }

    /// The `reason` label value of the drop counters.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TooOld => "too_old_sample",
            Refusal::OutOfBounds => "out_of_bounds",
            Refusal::OutOfOrder => "out_of_order_sample",
            Refusal::Duplicate => "duplicate_sample",
        }
    }

    /// The refusal a receiver's message names, if any.
    pub fn from_message(message: &str) -> Option<Refusal> {
        let lower = message.to_ascii_lowercase();
        Refusal::ALL
            .into_iter()
            .find(|r| lower.contains(r.phrase()))
    }
}

/// Why a remote-write request failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    /// The receiver refused samples of this request for good.
    #[error("receiver refused the samples ({}): HTTP {status}: {message}", reason.phrase())]
    Refused {
        /// Which refusal.
        reason: Refusal,
        /// HTTP status (400, or 500 from Prometheus before 2.50).
        status: u16,
        /// The receiver's message.
        message: String,
    },
    /// Another 4xx: this payload will not be accepted.
    #[error("receiver rejected the payload: HTTP {status}: {body}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
    },
    /// Authentication or path problem (401, 403, 404, 405).
    #[error("remote-write configuration error: HTTP {status} for {url}: {body}")]
    Configuration {
        /// HTTP status.
        status: u16,
        /// The URL (no credentials in it).
        url: String,
        /// Response body.
        body: String,
    },
    /// Overload, timeout or server error (408, 429, 5xx that is no refusal).
    #[error("receiver unavailable: HTTP {status}: {body}")]
    Unavailable {
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
    },
    /// The request could not be encoded (snappy refuses inputs over 4 GiB;
    /// a bounded request never comes near).
    #[error("cannot encode the request: {reason}")]
    Encode {
        /// What failed.
        reason: String,
    },
    /// Connection refused, reset, DNS, timeout.
    #[error("receiver unreachable at {url}: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
}

impl RemoteWriteError {
    /// The handling class of this error.
    pub fn class(&self) -> FailureClass {
        match self {
            RemoteWriteError::Refused { .. }
            | RemoteWriteError::Rejected { .. }
            | RemoteWriteError::Encode { .. } => FailureClass::Permanent,
            RemoteWriteError::Configuration { .. } => FailureClass::Configuration,
            RemoteWriteError::Unavailable { .. } | RemoteWriteError::Transport { .. } => {
                FailureClass::Retryable
            }
        }
    }

    /// Short label value for `aif_exporter_pushes_total{result}` and the
    /// drop counters.
    pub fn result_label(&self) -> &'static str {
        match self {
            RemoteWriteError::Refused { reason, .. } => reason.as_str(),
            RemoteWriteError::Rejected { .. } => "rejected",
            RemoteWriteError::Encode { .. } => "encode_error",
            RemoteWriteError::Configuration { .. } => "config_error",
            RemoteWriteError::Unavailable { .. } => "unavailable",
            RemoteWriteError::Transport { .. } => "unreachable",
        }
    }
}

/// Builds a [`RemoteWriteClient`]; validated in [`RemoteWriteBuilder::build`].
#[derive(Debug, Clone)]
pub struct RemoteWriteBuilder {
    http: HttpSettings,
    job: String,
    instance: String,
    max_samples: usize,
}

impl RemoteWriteBuilder {
    /// A builder for the receiver at `url` (the full endpoint, e.g.
    /// `http://prometheus:9090/api/v1/write`), job `aif_gpu`, instance
    /// `localhost`, 5 s connect and 30 s overall timeouts, at most
    /// [`DEFAULT_MAX_SAMPLES_PER_REQUEST`] samples a request.
    pub fn new(url: impl Into<String>) -> Self {
        RemoteWriteBuilder {
            http: HttpSettings::new(url.into(), Duration::from_secs(30)),
            job: "aif_gpu".into(),
            instance: "localhost".into(),
            max_samples: DEFAULT_MAX_SAMPLES_PER_REQUEST,
        }
    }

    /// The `job` label added to every series.
    pub fn job(mut self, job: impl Into<String>) -> Self {
        self.job = job.into();
        self
    }

    /// The `instance` label added to every series.
    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = instance.into();
        self
    }

    /// Basic auth.
    pub fn basic_auth(mut self, user: impl Into<String>, password: Secret) -> Self {
        self.http.basic = Some((user.into(), password));
        self
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer_token(mut self, token: Secret) -> Self {
        self.http.bearer = Some(token);
        self
    }

    /// Connect timeout.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.http.connect_timeout = d;
        self
    }

    /// Overall timeout of one request.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.http.timeout = d;
        self
    }

    /// Retry policy (validated by [`RemoteWriteBuilder::build`]).
    pub fn backoff(mut self, policy: BackoffPolicy) -> Self {
        self.http.backoff = policy;
        self
    }

    /// The `User-Agent` header (default [`super::DEFAULT_USER_AGENT`]).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.http.user_agent = user_agent.into();
        self
    }

    /// The most samples one request carries (≥ 1).
    pub fn max_samples_per_request(mut self, n: usize) -> Self {
        self.max_samples = n;
        self
    }

    /// The same settings against another URL (e.g. the local end of an SSH
    /// tunnel).
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.http.url = url.into();
        self
    }

    /// Validates and builds the client.
    ///
    /// # Errors
    /// [`BuildError`] naming what is wrong.
    pub fn build(self) -> Result<RemoteWriteClient, BuildError> {
        const SINK: SinkKind = SinkKind::RemoteWrite;
        let url = self.http.checked_url(SINK, true)?;
        super::http::check_labels(SINK, &self.job, &self.instance)?;
        self.http.check_timeouts(SINK)?;
        if self.max_samples == 0 {
            return Err(BuildError::ZeroMaxSamples { sink: SINK });
        }
        self.http.check_backoff(SINK)?;
        let auth_header = self.http.auth_header(SINK)?;
        Ok(RemoteWriteClient {
            agent: self.http.agent(),
            url,
            auth_header,
            backoff: self.http.backoff,
            max_samples: self.max_samples,
            job: self.job,
            instance: self.instance,
            scratch: Vec::new(),
            wire: Default::default(),
        })
    }
}

/// A configured remote-write receiver.
pub struct RemoteWriteClient {
    agent: ureq::Agent,
    url: String,
    auth_header: Option<Secret>,
    backoff: BackoffPolicy,
    max_samples: usize,
    job: String,
    instance: String,
    scratch: Vec<u8>,
    wire: super::wire::WireEncoder,
}

impl fmt::Debug for RemoteWriteClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteWriteClient")
            .field("url", &self.url)
            .field("auth", &self.auth_header.as_ref().map(|_| "***"))
            .field("max_samples", &self.max_samples)
            .field("job", &self.job)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl RemoteWriteClient {
    /// The endpoint (no credentials in it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The retry policy.
    pub fn backoff(&self) -> BackoffPolicy {
        self.backoff
    }

    /// The most samples one request carries.
    pub fn max_samples(&self) -> usize {
        self.max_samples
    }

    /// Splits `batches` (oldest first) into requests of at most
    /// [`RemoteWriteClient::max_samples`] samples: whole batches where they
    /// fit, a batch larger than the bound over several requests.
    pub fn plan(&self, batches: &[Arc<Batch>]) -> Vec<Vec<Piece>> {
        let mut requests = Vec::new();
        let mut current: Vec<Piece> = Vec::new();
        let mut n = 0usize;
        for (i, b) in batches.iter().enumerate() {
            let mut start = 0;
            while start < b.samples.len() {
                let room = self.max_samples - n;
                let end = (start + room).min(b.samples.len());
                current.push(Piece {
                    batch: i,
                    start,
                    end,
                });
                n += end - start;
                start = end;
                if n == self.max_samples {
                    requests.push(std::mem::take(&mut current));
                    n = 0;
                }
            }
        }
        if !current.is_empty() {
            requests.push(current);
        }
        requests
    }

    /// Encodes the pieces as one `WriteRequest`: a time series per distinct
    /// series, samples in timestamp order (pieces are oldest first). The
    /// reference for what [`RemoteWriteClient::write`] sends (which writes the
    /// same message's bytes directly, keeping each series' encoded labels).
    pub fn encode(&self, batches: &[Arc<Batch>], pieces: &[Piece]) -> prompb::WriteRequest {
        let mut index: HashMap<&Series, usize> = HashMap::new();
        let mut out: Vec<prompb::TimeSeries> = Vec::new();
        for p in pieces {
            let b = &batches[p.batch];
            for s in &b.samples[p.start..p.end] {
                let i = *index.entry(&*s.series).or_insert_with(|| {
                    out.push(prompb::TimeSeries {
                        labels: self.labels_of(&s.series),
                        samples: Vec::new(),
                    });
                    out.len() - 1
                });
                out[i].samples.push(prompb::Sample {
                    value: s.value,
                    timestamp: b.timestamp_ms,
                });
            }
        }
        prompb::WriteRequest { timeseries: out }
    }

    /// `__name__`, the series' labels and `job`/`instance` (unless the series
    /// has its own), sorted by name.
    fn labels_of(&self, series: &Series) -> Vec<prompb::Label> {
        let mut labels: Vec<prompb::Label> = Vec::with_capacity(series.labels.len() + 3);
        labels.push(prompb::Label {
            name: "__name__".into(),
            value: series.name.clone(),
        });
        for (k, v) in series.labels.iter() {
            labels.push(prompb::Label {
                name: k.into(),
                value: v.into(),
            });
        }
        for (k, v) in [("instance", &self.instance), ("job", &self.job)] {
            if series.labels.get(k).is_none() {
                labels.push(prompb::Label {
                    name: k.into(),
                    value: v.clone(),
                });
            }
        }
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        labels
    }

    /// Sends the pieces as one request.
    ///
    /// # Errors
    /// [`RemoteWriteError`]; see [`RemoteWriteError::class`].
    pub fn write(
        &mut self,
        batches: &[Arc<Batch>],
        pieces: &[Piece],
    ) -> Result<(), RemoteWriteError> {
        self.scratch.clear();
        let extra = [
            ("instance", self.instance.as_str()),
            ("job", self.job.as_str()),
        ];
        self.wire.encode(batches, pieces, &extra, &mut self.scratch);
        let body = snap::raw::Encoder::new()
            .compress_vec(&self.scratch)
            .map_err(|e| RemoteWriteError::Encode {
                reason: format!("snappy: {e}"),
            })?;
        let mut r = self
            .agent
            .post(&self.url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0");
        if let Some(auth) = &self.auth_header {
            r = r.header("Authorization", auth.expose());
        }
        let mut resp = match r.send(&body[..]) {
            Ok(resp) => resp,
            Err(e) => {
                return Err(RemoteWriteError::Transport {
                    url: self.url.clone(),
                    reason: e.to_string(),
                });
            }
        };
        let status = resp.status().as_u16();
        if (200..=299).contains(&status) {
            return Ok(());
        }
        let body = read_body(&mut resp);
        if let Some(reason) = Refusal::from_message(&body) {
            return Err(RemoteWriteError::Refused {
                reason,
                status,
                message: body,
            });
        }
        Err(match status {
            401 | 403 | 404 | 405 => RemoteWriteError::Configuration {
                status,
                url: self.url.clone(),
                body,
            },
            408 | 429 | 500..=599 => RemoteWriteError::Unavailable { status, body },
            _ => RemoteWriteError::Rejected { status, body },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Labels, MetricKind};

    fn batch(ts: i64, n: usize) -> Arc<Batch> {
        let mut b = Batch::new(ts);
        for i in 0..n {
            b.push(
                Arc::new(Series::new(
                    "aif_gpu_power_watts",
                    MetricKind::Gauge,
                    Labels::from_pairs([("gpu", i.to_string())]),
                )),
                i as f64,
            );
        }
        Arc::new(b)
    }

    #[test]
    fn refusals_are_recognised_by_message_whatever_the_status() {
        assert_eq!(
            Refusal::from_message("too old sample"),
            Some(Refusal::TooOld)
        );
        assert_eq!(
            Refusal::from_message("out of bounds: series {...}"),
            Some(Refusal::OutOfBounds)
        );
        assert_eq!(
            Refusal::from_message("Out Of Order Sample"),
            Some(Refusal::OutOfOrder)
        );
        assert_eq!(
            Refusal::from_message("duplicate sample for timestamp"),
            Some(Refusal::Duplicate)
        );
        assert_eq!(Refusal::from_message("context deadline exceeded"), None);
    }

    #[test]
    fn plan_bounds_every_request_and_keeps_the_order() {
        let c = RemoteWriteBuilder::new("http://127.0.0.1:9/api/v1/write")
            .max_samples_per_request(5)
            .build()
            .unwrap();
        let batches = vec![batch(1, 3), batch(2, 3), batch(3, 12)];
        let plan = c.plan(&batches);
        let sizes: Vec<usize> = plan
            .iter()
            .map(|r| r.iter().map(Piece::len).sum())
            .collect();
        assert_eq!(sizes, vec![5, 5, 5, 3]);
        let flat: Vec<(usize, usize)> = plan
            .iter()
            .flatten()
            .flat_map(|p| (p.start..p.end).map(move |i| (p.batch, i)))
            .collect();
        let expected: Vec<(usize, usize)> = (0..3)
            .flat_map(|b| (0..batches[b].samples.len()).map(move |i| (b, i)))
            .collect();
        assert_eq!(flat, expected, "every sample once, in order");
    }

    #[test]
    fn encode_groups_by_series_with_sorted_labels_and_ordered_samples() {
        let c = RemoteWriteBuilder::new("http://127.0.0.1:9/api/v1/write")
            .job("aif_gpu")
            .instance("node1")
            .build()
            .unwrap();
        let batches = vec![batch(10, 2), batch(20, 2)];
        let pieces = [
            Piece {
                batch: 0,
                start: 0,
                end: 2,
            },
            Piece {
                batch: 1,
                start: 0,
                end: 2,
            },
        ];
        let req = c.encode(&batches, &pieces);
        assert_eq!(req.timeseries.len(), 2);
        for ts in &req.timeseries {
            let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
            assert_eq!(names, ["__name__", "gpu", "instance", "job"]);
            let times: Vec<i64> = ts.samples.iter().map(|s| s.timestamp).collect();
            assert_eq!(times, [10, 20]);
        }
    }

    #[test]
    fn the_bytes_sent_decode_to_the_reference_message() {
        use prost::Message as _;
        let mut c = RemoteWriteBuilder::new("http://127.0.0.1:9/api/v1/write")
            .job("aif_gpu")
            .instance("node1")
            .max_samples_per_request(5)
            .build()
            .unwrap();
        let mut with_job = Batch::new(-5);
        with_job.push(
            Arc::new(Series::new(
                "x",
                MetricKind::Counter,
                Labels::from_pairs([("job", "own"), ("empty", "")]),
            )),
            f64::NAN,
        );
        let batches = vec![
            batch(10, 3),
            batch(1_700_000_000_000, 3),
            Arc::new(with_job),
            batch(30, 12),
        ];
        for _ in 0..2 {
            for request in c.plan(&batches) {
                let reference = c.encode(&batches, &request);
                let mut bytes = Vec::new();
                let extra = [("instance", "node1"), ("job", "aif_gpu")];
                c.wire.encode(&batches, &request, &extra, &mut bytes);
                let decoded = prompb::WriteRequest::decode(bytes.as_slice()).expect("decodes");
                // NaN != NaN: compare the bit patterns through the debug text.
                assert_eq!(format!("{decoded:?}"), format!("{reference:?}"));
            }
        }
    }

    #[test]
    fn build_refuses_what_cannot_work() {
        let e = |b: RemoteWriteBuilder| b.build().unwrap_err();
        assert!(matches!(
            e(RemoteWriteBuilder::new("127.0.0.1:9090/api/v1/write")),
            BuildError::BadScheme { .. }
        ));
        assert!(matches!(
            e(RemoteWriteBuilder::new("http://127.0.0.1:9090")),
            BuildError::NoPath { .. }
        ));
        assert_eq!(
            e(RemoteWriteBuilder::new("http://h:1/w").max_samples_per_request(0)),
            BuildError::ZeroMaxSamples {
                sink: SinkKind::RemoteWrite
            }
        );
        assert_eq!(
            e(RemoteWriteBuilder::new("http://h:1/w")
                .basic_auth("u", Secret::new("p"))
                .bearer_token(Secret::new("t"))),
            BuildError::TwoAuths {
                sink: SinkKind::RemoteWrite
            }
        );
        let dbg = format!(
            "{:?}",
            RemoteWriteBuilder::new("http://h:1/w")
                .bearer_token(Secret::new("s3cret"))
                .build()
                .unwrap()
        );
        assert!(!dbg.contains("s3cret"), "{dbg}");
    }
}
