//! Where prompts come from: given inline, a JSONL file (one
//! `{"prompt": "..."}` object a line), or synthetic prompts of a given length
//! in words (a fixed vocabulary drawn by seed, so runs repeat).

use std::path::{Path, PathBuf};

use gpu_metrics::rng::{Rng, Xoshiro256};

/// Why prompts could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// The file could not be read.
    #[error("--prompt-file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not a JSON object with a string `prompt`.
    #[error("--prompt-file {path} line {line}: not JSONL: {message}")]
    NotJsonl {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file holds no prompt.
    #[error("--prompt-file {0}: no prompts (empty file)")]
    Empty(PathBuf),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    prompt: String,
}

/// Reads a JSONL prompt file; blank lines are skipped.
///
/// # Errors
/// [`PromptError`] naming the file and line.
pub fn read_jsonl(path: &Path) -> Result<Vec<String>, PromptError> {
    let text = std::fs::read_to_string(path).map_err(|source| PromptError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(line).map_err(|e| PromptError::NotJsonl {
            path: path.to_path_buf(),
            line: i + 1,
            message: format!("{e} (expected {{\"prompt\": \"...\"}})"),
        })?;
        out.push(parsed.prompt);
    }
    if out.is_empty() {
        return Err(PromptError::Empty(path.to_path_buf()));
    }
    Ok(out)
}

const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
    "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an",
    "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there",
    "been", "if", "more", "when", "will", "would", "who", "so", "no", "time", "system", "model",
    "token", "graph", "river", "stone", "light", "energy", "cluster", "memory", "signal",
];

/// `count` synthetic prompts of `words` words each, reproducible for `seed`.
pub fn synthetic(count: usize, words: usize, seed: u64) -> Vec<String> {
    let mut rng = Xoshiro256::new(seed ^ 0x005E_ED0F_5EED);
    (0..count)
        .map(|_| {
            let mut s = String::with_capacity(words * 6);
            for w in 0..words {
                if w > 0 {
                    s.push(' ');
                }
                s.push_str(WORDS[rng.below(WORDS.len())]);
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_lines_are_checked_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok.jsonl");
        std::fs::write(&ok, "{\"prompt\": \"a\"}\n\n{\"prompt\": \"b c\"}\n").unwrap();
        assert_eq!(read_jsonl(&ok).unwrap(), vec!["a", "b c"]);
        let bad = dir.path().join("bad.jsonl");
        std::fs::write(&bad, "{\"prompt\": \"a\"}\nplain text\n").unwrap();
        let e = read_jsonl(&bad).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("not JSONL"), "{e}");
        std::fs::write(&bad, "{\"text\": \"a\"}\n").unwrap();
        assert!(read_jsonl(&bad).unwrap_err().to_string().contains("line 1"));
        std::fs::write(&bad, "\n").unwrap();
        assert!(matches!(read_jsonl(&bad), Err(PromptError::Empty(_))));
    }

    #[test]
    fn synthetic_prompts_have_the_length_and_repeat() {
        let a = synthetic(3, 50, 1);
        assert_eq!(a.len(), 3);
        assert!(a.iter().all(|p| p.split(' ').count() == 50));
        assert_eq!(a, synthetic(3, 50, 1));
        assert_ne!(a[0], a[1]);
    }
}
