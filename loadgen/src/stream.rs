//! One OpenAI streaming answer, read as server-sent events arrive: when its
//! tokens came and how many there were.
//!
//! A *chunk* is an SSE `data:` event whose `choices` is not empty. Timing
//! follows `vllm bench serve` (`backend_request_func.py`):
//! - TTFT is the first chunk minus the send time, whatever it holds (a chat
//!   answer's first chunk may carry only the role); the time to the first
//!   non-empty text is kept apart (`ttft_text`).
//! - E2EL is the last chunk minus the send time.
//! - Inter-chunk latency (`icl`) is every gap between successive chunks:
//!   vLLM's ITL.
//!
//! Tokens come from the best source the stream offers ([`TokenSource`]):
//! 0. with `--tokenizer`, the tool's own count (`tokenizer`): the answer's
//!    text (completions `text`, chat `delta.content` or, in a chunk without
//!    content, `reasoning_content`), concatenated and encoded once at the
//!    end without special tokens ([`crate::tokenizer`]). The count is exact
//!    and TPOT uses it; ITL gaps remain per event (or per usage delta, as
//!    below). The text is kept only with a tokenizer;
//! 1. `usage` on the chunks themselves (vLLM's `continuous_usage_stats`): a
//!    chunk holds the growth of `completion_tokens` since the one before,
//!    which is more than one token under speculative decoding;
//! 2. `usage` once at the end (`stream_options.include_usage`);
//! 3. neither (llama.cpp ignores `include_usage`): one token per chunk,
//!    empty text included (a token that is part of a multi-byte character
//!    arrives with empty text), except a chat chunk that only opens the
//!    message (a `role` and no text) and a closing chunk (`finish_reason`
//!    set, no text).
//!
//! ITL is per token as sources 1-3 count them (with a tokenizer too): a
//! chunk holding `n` tokens that came `g` after the last chunk that held any
//! (or after the first chunk) adds `n` gaps of `g / n`. The first chunk's
//! tokens add none (the first is TTFT's).
//!
//! Invariants: a stream counts as complete only with `[DONE]` after at least
//! one chunk; an `error` event, a line that is not JSON, or a stream still
//! going past the timeout ends it with an [`ErrorKind`].

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::tokenizer::{self, Tokenizer};
use crate::workload::{Api, ErrorKind, Outcome};

/// Most ITL gaps one chunk adds (a usage delta beyond it is a server's
/// bug; the tokens still count).
pub const MAX_GAPS_PER_CHUNK: usize = 4096;

/// Where a request's output-token count came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TokenSource {
    /// `usage.completion_tokens` once, at the end of the stream.
    Usage,
    /// `usage` on every chunk: each chunk's tokens are its growth.
    UsageDelta,
    /// No usage: one token per chunk (see the module doc).
    #[default]
    Events,
    /// `--tokenizer`: the answer's text counted by the tool itself.
    Tokenizer,
}

impl TokenSource {
    /// Every source, in report order.
    pub const ALL: [TokenSource; 4] = [
        TokenSource::Usage,
        TokenSource::UsageDelta,
        TokenSource::Events,
        TokenSource::Tokenizer,
    ];

    /// The name in results: `usage`, `usage_delta`, `events` or `tokenizer`.
    pub fn name(self) -> &'static str {
        match self {
            TokenSource::Usage => "usage",
            TokenSource::UsageDelta => "usage_delta",
            TokenSource::Events => "events",
            TokenSource::Tokenizer => "tokenizer",
        }
    }
}

/// What one SSE line did to the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Read on.
    More,
    /// `[DONE]`: the answer is complete (read the rest of the body so the
    /// connection can be reused).
    Done,
    /// The stream failed (the kind is in the outcome).
    Failed,
}

/// The state of one answer being read; feed it lines with [`Stream::line`],
/// then call [`Stream::finish`].
#[derive(Debug)]
pub struct Stream<'t> {
    api: Api,
    /// `--tokenizer`: counts `text` at the end.
    tokenizer: Option<&'t Tokenizer>,
    /// The answer's text so far; kept only with a tokenizer.
    text: String,
    sent: Instant,
    /// The last chunk.
    last: Option<Instant>,
    /// The last chunk that held tokens, or the first chunk.
    anchor: Option<Instant>,
    /// Tokens counted from chunks (events, or usage deltas).
    chunk_tokens: u64,
    /// The last `completion_tokens` seen on a chunk.
    chunk_usage: Option<u64>,
    /// `completion_tokens` of a usage event without choices.
    final_usage: Option<u64>,
    done: bool,
}

impl Stream<'static> {
    /// A stream for a request of `api` sent (or scheduled) at `sent`, its
    /// tokens counted from the stream itself.
    pub fn new(api: Api, sent: Instant) -> Stream<'static> {
        Stream::counting(api, sent, None)
    }
}

impl<'t> Stream<'t> {
    /// [`Stream::new`], the output tokens counted by `tokenizer` when given
    /// ([`TokenSource::Tokenizer`]; the text is kept only then).
    pub fn counting(api: Api, sent: Instant, tokenizer: Option<&'t Tokenizer>) -> Stream<'t> {
        Stream {
            api,
            tokenizer,
            text: String::new(),
            sent,
            last: None,
            anchor: None,
            chunk_tokens: 0,
            chunk_usage: None,
            final_usage: None,
            done: false,
        }
    }

    /// One line of the body, read at `now`, into `out`.
    pub fn line(&mut self, line: &str, now: Instant, out: &mut Outcome) -> Step {
        let Some(data) = line.trim_end().strip_prefix("data:") else {
            return Step::More;
        };
        let data = data.trim_start();
        if data == "[DONE]" {
            self.done = true;
            return Step::Done;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            out.error = Some(ErrorKind::StreamBroken);
            return Step::Failed;
        };
        if v.get("error").is_some_and(|e| !e.is_null()) {
            out.error = Some(ErrorKind::StreamBroken);
            return Step::Failed;
        }
        let usage = v.get("usage").filter(|u| u.is_object());
        let completion = usage.and_then(|u| u.get("completion_tokens").and_then(Value::as_u64));
        if let Some(u) = usage {
            out.input_tokens = u.get("prompt_tokens").and_then(Value::as_u64);
        }
        let Some(choice) = v
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        else {
            if completion.is_some() {
                self.final_usage = completion;
            }
            return Step::More;
        };
        let text = match self.api {
            Api::Chat => choice.get("delta").and_then(|d| {
                d.get("content")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                    .or_else(|| d.get("reasoning_content").and_then(Value::as_str))
            }),
            _ => choice.get("text").and_then(Value::as_str),
        }
        .filter(|t| !t.is_empty());
        let tokens = match completion {
            Some(total) => {
                let n = total.saturating_sub(self.chunk_usage.unwrap_or(0));
                self.chunk_usage = Some(total);
                n
            }
            None => u64::from(text.is_some() || self.is_token_event(choice)),
        };
        match self.last {
            None => out.ttft = Some(now.saturating_duration_since(self.sent)),
            Some(prev) => out.inter_chunk.push(now.saturating_duration_since(prev)),
        }
        if let Some(t) = text
            && self.tokenizer.is_some()
        {
            self.text.push_str(t);
        }
        if text.is_some() && out.ttft_text.is_none() {
            out.ttft_text = Some(now.saturating_duration_since(self.sent));
        }
        match self.anchor {
            Some(anchor) if tokens > 0 => {
                let gaps = tokens.min(MAX_GAPS_PER_CHUNK as u64);
                let gap = now.saturating_duration_since(anchor) / gaps as u32;
                out.itl.push_n(gap, gaps as usize);
                self.anchor = Some(now);
            }
            Some(_) => {}
            None => self.anchor = Some(now),
        }
        self.chunk_tokens += tokens;
        self.last = Some(now);
        Step::More
    }

    /// A chunk without text: a token (one that ends inside a multi-byte
    /// character) unless it only opens or closes the message.
    fn is_token_event(&self, choice: &Value) -> bool {
        let finished = choice.get("finish_reason").is_some_and(|f| !f.is_null());
        if finished {
            return false;
        }
        match self.api {
            Api::Chat => choice
                .get("delta")
                .and_then(Value::as_object)
                .is_some_and(|d| !d.is_empty() && !d.contains_key("role")),
            _ => choice.get("text").is_some_and(Value::is_string),
        }
    }

    /// Ends the stream: E2EL, the token count and its source, and a
    /// [`ErrorKind::StreamBroken`] for an answer without `[DONE]` or without
    /// a chunk (unless an error is set already). With a tokenizer, the
    /// count is the text's (the stream's own count where it cannot encode
    /// the text).
    pub fn finish(self, out: &mut Outcome) {
        let counted = self.tokenizer.and_then(|t| tokenizer::count(t, &self.text));
        let (tokens, source) = match (counted, self.chunk_usage, self.final_usage) {
            (Some(n), _, _) => (n, TokenSource::Tokenizer),
            (None, Some(c), f) => (c.max(f.unwrap_or(0)), TokenSource::UsageDelta),
            (None, None, Some(f)) => (f, TokenSource::Usage),
            (None, None, None) => (self.chunk_tokens, TokenSource::Events),
        };
        out.output_tokens = tokens;
        out.token_source = source;
        out.e2el = self.last.map_or_else(
            || self.sent.elapsed(),
            |l| l.saturating_duration_since(self.sent),
        );
        if out.error.is_none() && (!self.done || self.last.is_none()) {
            out.error = Some(ErrorKind::StreamBroken);
        }
    }
}

/// Reads a whole SSE body of OpenAI chunks into `out` (timings from
/// `sent`); a stream still going `timeout` after `sent` is a timeout. With
/// `tokenizer`, it counts the output tokens ([`Stream::counting`]).
pub fn read(
    api: Api,
    mut r: impl std::io::BufRead,
    sent: Instant,
    timeout: Duration,
    tokenizer: Option<&Tokenizer>,
    out: &mut Outcome,
) {
    let mut stream = Stream::counting(api, sent, tokenizer);
    let mut line = String::new();
    loop {
        if sent.elapsed() > timeout {
            out.error = Some(ErrorKind::Timeout);
            break;
        }
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                out.error = Some(crate::workload::body_error(e));
                break;
            }
        }
        match stream.line(&line, Instant::now(), out) {
            Step::More => {}
            Step::Failed => break,
            Step::Done => {
                // Read to the end of the body, so the connection is reused.
                let mut rest = [0u8; 512];
                while matches!(r.read(&mut rest), Ok(n) if n > 0) {}
                break;
            }
        }
    }
    stream.finish(out);
}

#[cfg(test)]
mod tests;
