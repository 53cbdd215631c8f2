//! `--tokenizer FILE`: prompt and output tokens counted by the tool itself
//! with a Hugging Face `tokenizer.json`, instead of the server's `usage` or
//! one token per SSE event (see [`crate::stream`]).
//!
//! - Input tokens: the prompt as sent (completions: the `prompt` string;
//!   chat: the user message's content), counted once per prompt when the
//!   plan is built ([`count_prompts`]), not per request. A chat template the
//!   server wraps around the message is not counted (its `prompt_tokens`
//!   would be larger).
//! - Output tokens: the text of the whole answer (completions `text`, chat
//!   `delta.content`, or `reasoning_content` where a chunk has no content),
//!   concatenated and counted once at the end of the stream ([`count`]).
//!
//! Both are encoded without special tokens, and with the file's truncation
//! and padding turned off, so a count is the text's length in tokens. The
//! output count is exact and TPOT uses it; ITL gaps stay per chunk (the
//! usage deltas, or one per event), as without a tokenizer.

use std::path::Path;

pub use tokenizers::Tokenizer;

use crate::plan::PlanError;

/// The flag, in [`PlanError`]s.
const FLAG: &str = "tokenizer";

fn invalid(message: String) -> PlanError {
    PlanError::Invalid {
        flag: FLAG,
        message,
    }
}

/// Loads the `tokenizer.json` at `file`, with truncation and padding off.
///
/// # Errors
/// A [`PlanError`] naming `--tokenizer`, the file and why it could not be
/// read or parsed.
pub fn load(file: &Path) -> Result<Tokenizer, PlanError> {
    let bytes = std::fs::read(file).map_err(|e| invalid(format!("{}: {e}", file.display())))?;
    let mut t = Tokenizer::from_bytes(&bytes).map_err(|e| {
        invalid(format!(
            "{}: not a Hugging Face tokenizer.json: {e}",
            file.display()
        ))
    })?;
    t.with_truncation(None)
        .map_err(|e| invalid(format!("{}: {e}", file.display())))?;
    t.with_padding(None);
    Ok(t)
}

/// Tokens of `text` without special tokens; `None` when the tokenizer
/// cannot encode it.
pub fn count(t: &Tokenizer, text: &str) -> Option<u64> {
    if text.is_empty() {
        return Some(0);
    }
    t.encode_fast(text, false).ok().map(|e| e.len() as u64)
}

/// Tokens of each prompt, in order (see [`count`]).
///
/// # Errors
/// A [`PlanError`] naming `--tokenizer` and the prompt it cannot encode.
pub fn count_prompts(t: &Tokenizer, prompts: &[String]) -> Result<Vec<u64>, PlanError> {
    prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if p.is_empty() {
                return Ok(0);
            }
            t.encode_fast(p.as_str(), false)
                .map(|e| e.len() as u64)
                .map_err(|e| invalid(format!("cannot encode prompt {}: {e}", i + 1)))
        })
        .collect()
}

/// Tests, and the small tokenizers other modules' tests use.
#[cfg(test)]
pub(crate) mod tests;
