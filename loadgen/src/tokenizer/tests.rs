use std::path::PathBuf;

use serde_json::json;

use super::*;
use crate::stats::{Recorder, Slo};
use crate::stream::TokenSource;
use crate::workload::Outcome;

/// A `tokenizer.json` of a WordLevel model over `words` (ids from 1, 0 is
/// `[UNK]`) with a Whitespace pre-tokenizer, and `truncation` as given.
pub(crate) fn word_level_json(words: &[&str], truncation: serde_json::Value) -> String {
    let mut vocab = serde_json::Map::new();
    vocab.insert("[UNK]".into(), json!(0));
    for (i, w) in words.iter().enumerate() {
        vocab.insert((*w).to_string(), json!(i + 1));
    }
    json!({
        "version": "1.0",
        "truncation": truncation,
        "padding": null,
        "added_tokens": [{
            "id": 0, "content": "[UNK]", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true
        }],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    })
    .to_string()
}

/// [`word_level_json`] loaded, without truncation.
pub(crate) fn word_level(words: &[&str]) -> Tokenizer {
    Tokenizer::from_bytes(word_level_json(words, serde_json::Value::Null)).unwrap()
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let f = dir.path().join(name);
    std::fs::write(&f, text).unwrap();
    f
}

#[test]
fn counts_words_unknown_ones_as_one_token_each() {
    let t = word_level(&["the", "cat", "sat"]);
    assert_eq!(count(&t, "the cat sat"), Some(3));
    assert_eq!(count(&t, "the dog sat on the mat."), Some(7));
    assert_eq!(count(&t, ""), Some(0));
    assert_eq!(count(&t, "   "), Some(0));
    let prompts = ["the cat".to_string(), String::new(), "a b c d".to_string()];
    assert_eq!(count_prompts(&t, &prompts).unwrap(), vec![2, 0, 4]);
}

#[test]
fn load_turns_truncation_off() {
    let dir = tempfile::tempdir().unwrap();
    let truncation = json!({
        "direction": "Right", "max_length": 2, "strategy": "LongestFirst", "stride": 0
    });
    let f = write(&dir, "t.json", &word_level_json(&["a"], truncation));
    let truncated = Tokenizer::from_file(&f).unwrap();
    assert_eq!(truncated.encode("a a a a", false).unwrap().len(), 2);
    let t = load(&f).unwrap();
    assert_eq!(count(&t, "a a a a"), Some(4));
}

#[test]
fn a_missing_or_bad_file_names_the_flag_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.json");
    let e = load(&missing).unwrap_err().to_string();
    assert!(e.starts_with("--tokenizer: "), "{e}");
    assert!(e.contains("none.json") && e.contains("No such file"), "{e}");
    for (name, text) in [
        ("garbage.json", "not json"),
        ("empty.json", ""),
        ("other.json", r#"{"model": {"type": "Nothing"}}"#),
    ] {
        let f = write(&dir, name, text);
        let e = load(&f).unwrap_err().to_string();
        assert!(e.starts_with("--tokenizer: ") && e.contains(name), "{e}");
        assert!(e.contains("not a Hugging Face tokenizer.json: "), "{e}");
    }
}

#[test]
fn recorders_keep_the_tokenizer_source() {
    let slo = Slo::default();
    let mut r = Recorder::default();
    let o = Outcome {
        status: Some(200),
        ttft: Some(std::time::Duration::from_millis(5)),
        output_tokens: 4,
        input_tokens: Some(3),
        token_source: TokenSource::Tokenizer,
        ..Outcome::default()
    };
    r.record(&o, None, &slo);
    let f = r.figures(1.0, true, &slo);
    assert_eq!(f["output_token_source"], "tokenizer");
    assert_eq!(f["total_input_tokens"], 3);
    let text = serde_json::to_string(&r.to_json()).unwrap();
    let back = Recorder::from_json(&serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(back.token_sources.get(&TokenSource::Tokenizer), Some(&1));
    assert_eq!(back.to_json(), r.to_json());
    assert_eq!(TokenSource::ALL.last(), Some(&TokenSource::Tokenizer));
}
