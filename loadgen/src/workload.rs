//! What one request is, and how it is sent and timed: plain HTTP, or an
//! OpenAI-compatible `/v1/completions` / `/v1/chat/completions` call with
//! `stream: true`, read as server-sent events.
//!
//! The stream itself is read by [`crate::stream`] (TTFT, ITL, token counts
//! and where they came from).

use std::io::{BufReader, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::stream::TokenSource;
use crate::tokenizer::Tokenizer;

/// Which API the requests speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Plain HTTP; the body is drained and discarded.
    Http,
    /// `POST /v1/completions`, `{"prompt": …, "stream": true}`.
    Completions,
    /// `POST /v1/chat/completions`, `{"messages": [{"role": "user", …}], "stream": true}`.
    Chat,
}

impl Api {
    /// `http`, `completions` or `chat`.
    pub fn name(self) -> &'static str {
        match self {
            Api::Http => "http",
            Api::Completions => "completions",
            Api::Chat => "chat",
        }
    }

    /// True for the OpenAI-compatible kinds (tokens, TTFT, ITL, TPOT).
    pub fn is_openai(self) -> bool {
        self != Api::Http
    }
}

/// How a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// No connection (refused, unreachable, name not found).
    Connect,
    /// The request did not finish within `--timeout`.
    Timeout,
    /// The server answered with a status of 400 or more.
    HttpStatus,
    /// The answer broke off, had no token, no `[DONE]`, or an `error` event.
    StreamBroken,
    /// Another transport failure before an answer (reset, protocol error).
    Transport,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::HttpStatus,
        ErrorKind::StreamBroken,
        ErrorKind::Transport,
    ];

    /// The name in results and metrics (`http_status`, …).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::StreamBroken => "stream_broken",
            ErrorKind::Transport => "transport",
        }
    }
}

/// What one request measured. Durations are from the request's send time
/// (its *scheduled* time in open loop).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// `None` for success.
    pub error: Option<ErrorKind>,
    /// HTTP status, when an answer came.
    pub status: Option<u16>,
    /// End-to-end latency.
    pub e2el: Duration,
    /// Time to first token (OpenAI kinds).
    pub ttft: Option<Duration>,
    /// Time to the first chunk with non-empty text (OpenAI kinds).
    pub ttft_text: Option<Duration>,
    /// Inter-token latency: one gap per output token after the first (see
    /// [`crate::stream`]).
    pub itl: Gaps,
    /// Gaps between successive chunks (vLLM's ITL).
    pub inter_chunk: Gaps,
    /// Output tokens.
    pub output_tokens: u64,
    /// Where `output_tokens` came from.
    pub token_source: TokenSource,
    /// Input tokens: the tokenizer's count of the prompt (`--tokenizer`),
    /// else the server's usage when it reported one.
    pub input_tokens: Option<u64>,
}

impl Outcome {
    /// (E2EL − TTFT) / (output tokens − 1), for more than one output token.
    pub fn tpot(&self) -> Option<Duration> {
        let ttft = self.ttft?;
        (self.output_tokens > 1).then(|| {
            self.e2el
                .saturating_sub(ttft)
                .div_f64((self.output_tokens - 1) as f64)
        })
    }
}

/// Durations kept compactly while a request is in flight: microseconds as
/// LEB128 varints (a 50 ms gap takes 3 bytes instead of a `Duration`'s 16),
/// so 10 000 long streams hold their per-token gaps in a few MiB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gaps {
    bytes: Vec<u8>,
    len: usize,
}

impl Gaps {
    /// Adds one gap (kept to the microsecond).
    pub fn push(&mut self, d: Duration) {
        let mut us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        loop {
            let byte = (us & 0x7f) as u8;
            us >>= 7;
            if us == 0 {
                self.bytes.push(byte);
                break;
            }
            self.bytes.push(byte | 0x80);
        }
        self.len += 1;
    }

    /// Adds `n` copies of `d`.
    pub fn push_n(&mut self, d: Duration, n: usize) {
        for _ in 0..n {
            self.push(d);
        }
    }

    /// How many gaps.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No gap.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The gaps, in order.
    pub fn iter(&self) -> impl Iterator<Item = Duration> + '_ {
        let mut rest = self.bytes.as_slice();
        std::iter::from_fn(move || {
            let mut us = 0u64;
            let mut shift = 0;
            loop {
                let (&b, tail) = rest.split_first()?;
                rest = tail;
                us |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
                shift += 7;
                if b & 0x80 == 0 {
                    return Some(Duration::from_micros(us));
                }
            }
        })
    }
}

impl FromIterator<Duration> for Gaps {
    fn from_iter<I: IntoIterator<Item = Duration>>(it: I) -> Self {
        let mut g = Gaps::default();
        for d in it {
            g.push(d);
        }
        g
    }
}

/// One kind of request, ready to send: the URL and the prebuilt bodies.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The API spoken.
    pub api: Api,
    /// HTTP method.
    pub method: String,
    /// Full URL (base + path).
    pub url: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Request bodies, one per prompt (one, maybe empty, for plain HTTP).
    pub bodies: Vec<Vec<u8>>,
    /// The service's addresses (resolved once).
    pub addrs: Vec<std::net::SocketAddr>,
    /// Limit for one request, send to end of body.
    pub timeout: Duration,
    /// `--tokenizer`: counts each answer's output tokens.
    pub tokenizer: Option<Arc<Tokenizer>>,
    /// With a tokenizer, the input tokens of each body's prompt (same order
    /// as `bodies`), counted once; empty without one.
    pub input_tokens: Vec<u64>,
}

/// The OpenAI request fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenAiParams {
    /// `model`.
    pub model: Option<String>,
    /// `max_tokens`.
    pub max_tokens: Option<u32>,
    /// `temperature`.
    pub temperature: Option<f64>,
    /// Send `stream_options: {include_usage: true}`.
    pub include_usage: bool,
}

/// The JSON body of an OpenAI streaming request for `prompt`.
pub fn openai_body(api: Api, params: &OpenAiParams, prompt: &str) -> Vec<u8> {
    let mut body = serde_json::Map::new();
    if let Some(m) = &params.model {
        body.insert("model".into(), Value::from(m.clone()));
    }
    match api {
        Api::Chat => {
            body.insert(
                "messages".into(),
                serde_json::json!([{"role": "user", "content": prompt}]),
            );
        }
        _ => {
            body.insert("prompt".into(), Value::from(prompt));
        }
    }
    if let Some(n) = params.max_tokens {
        body.insert("max_tokens".into(), Value::from(n));
    }
    if let Some(t) = params.temperature {
        body.insert("temperature".into(), Value::from(t));
    }
    body.insert("stream".into(), Value::Bool(true));
    if params.include_usage {
        body.insert(
            "stream_options".into(),
            serde_json::json!({"include_usage": true}),
        );
    }
    serde_json::to_vec(&Value::Object(body)).unwrap_or_default()
}

fn classify(e: &ureq::Error) -> ErrorKind {
    use std::io::ErrorKind as K;
    match e {
        ureq::Error::Timeout(_) => ErrorKind::Timeout,
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => ErrorKind::Connect,
        ureq::Error::Io(io) => match io.kind() {
            K::TimedOut | K::WouldBlock => ErrorKind::Timeout,
            K::ConnectionRefused
            | K::AddrNotAvailable
            | K::NotConnected
            | K::HostUnreachable
            | K::NetworkUnreachable => ErrorKind::Connect,
            _ => ErrorKind::Transport,
        },
        _ => ErrorKind::Transport,
    }
}

pub(crate) fn body_error(e: std::io::Error) -> ErrorKind {
    match classify(&ureq::Error::from(e)) {
        ErrorKind::Timeout => ErrorKind::Timeout,
        _ => ErrorKind::StreamBroken,
    }
}

/// A ureq agent for one client: one keep-alive connection to `addrs`,
/// `timeout` for the whole request (connect to the end of the body),
/// statuses as answers.
pub fn agent(timeout: Duration, addrs: &[std::net::SocketAddr]) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
        .http_status_as_error(false)
        .max_redirects(0)
        .max_idle_connections(1)
        .max_idle_connections_per_host(1)
        .user_agent("aif-loadgen")
        .build();
    ureq::Agent::with_parts(
        config,
        gpu_metrics::transport::LeanConnector { timeout },
        gpu_metrics::transport::FixedResolver(addrs.to_vec()),
    )
}

impl Workload {
    /// Sends request number `n` (its body is `n mod bodies`) and measures it
    /// from `sent` (the scheduled or actual send time). `scratch` is a reusable
    /// read buffer.
    pub fn send(&self, agent: &ureq::Agent, n: u64, sent: Instant, scratch: &mut [u8]) -> Outcome {
        let index = (n % self.bodies.len().max(1) as u64) as usize;
        let body: &[u8] = self.bodies.get(index).map_or(&[], Vec::as_slice);
        let mut req = ureq::http::Request::builder()
            .method(self.method.as_str())
            .uri(self.url.as_str());
        if self.api.is_openai() {
            req = req.header("Content-Type", "application/json");
        }
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let mut out = Outcome::default();
        let req = match req.body(body) {
            Ok(r) => r,
            Err(_) => {
                out.error = Some(ErrorKind::Transport);
                out.e2el = sent.elapsed();
                return out;
            }
        };
        let mut resp = match agent.run(req) {
            Ok(r) => r,
            Err(e) => {
                out.error = Some(classify(&e));
                out.e2el = sent.elapsed();
                return out;
            }
        };
        let status = resp.status().as_u16();
        out.status = Some(status);
        let mut reader = resp.body_mut().as_reader();
        if status >= 400 || !self.api.is_openai() {
            let drained = drain(&mut reader, scratch);
            out.e2el = sent.elapsed();
            out.error = if status >= 400 {
                Some(ErrorKind::HttpStatus)
            } else {
                drained.err()
            };
            return out;
        }
        crate::stream::read(
            self.api,
            BufReader::new(reader),
            sent,
            self.timeout,
            self.tokenizer.as_deref(),
            &mut out,
        );
        if let Some(&tokens) = self.input_tokens.get(index) {
            out.input_tokens = Some(tokens);
        }
        out
    }
}

fn drain(r: &mut impl Read, scratch: &mut [u8]) -> Result<(), ErrorKind> {
    loop {
        match r.read(scratch) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(body_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_keep_every_duration_to_the_microsecond() {
        let ds: Vec<Duration> = [
            0u64,
            1,
            127,
            128,
            50_000,
            16_383,
            16_384,
            3_600_000_000,
            u64::from(u32::MAX) * 7,
        ]
        .iter()
        .map(|us| Duration::from_micros(*us))
        .chain([Duration::from_nanos(1_999)])
        .collect();
        let g: Gaps = ds.iter().copied().collect();
        let want: Vec<Duration> = ds
            .iter()
            .map(|d| Duration::from_micros(d.as_micros() as u64))
            .collect();
        assert_eq!(g.iter().collect::<Vec<_>>(), want);
        assert_eq!(g.len(), ds.len());
        // A 50 ms gap takes 3 bytes.
        let mut one = Gaps::default();
        one.push(Duration::from_millis(50));
        assert_eq!(one.bytes.len(), 3);
    }

    #[test]
    fn bodies_carry_the_openai_fields() {
        let p = OpenAiParams {
            model: Some("m".into()),
            max_tokens: Some(8),
            temperature: Some(0.0),
            include_usage: true,
        };
        let v: Value = serde_json::from_slice(&openai_body(Api::Chat, &p, "hi")).unwrap();
        assert_eq!(v["messages"][0]["content"], "hi");
        assert_eq!(
            (v["stream"].clone(), v["max_tokens"].clone()),
            (Value::Bool(true), 8.into())
        );
        assert_eq!(v["stream_options"]["include_usage"], true);
        let v: Value = serde_json::from_slice(&openai_body(
            Api::Completions,
            &OpenAiParams::default(),
            "x",
        ))
        .unwrap();
        assert_eq!(v, serde_json::json!({"prompt": "x", "stream": true}));
    }
}
