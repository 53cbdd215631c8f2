use std::time::{Duration, Instant};

use super::*;

/// Feeds `events` (ms after the send, the `data:` JSON) to a stream and
/// finishes it with `[DONE]`.
fn timed(api: Api, events: &[(u64, &str)]) -> Outcome {
    let sent = Instant::now();
    let mut s = Stream::new(api, sent);
    let mut out = Outcome::default();
    for (ms, data) in events {
        let at = sent + Duration::from_millis(*ms);
        assert_eq!(s.line(&format!("data: {data}\n"), at, &mut out), Step::More);
    }
    let end = sent + Duration::from_millis(events.last().map_or(0, |e| e.0));
    assert_eq!(s.line("data: [DONE]\n", end, &mut out), Step::Done);
    s.finish(&mut out);
    out
}

fn ms(v: &crate::workload::Gaps) -> Vec<u64> {
    v.iter().map(|d| d.as_millis() as u64).collect()
}

#[test]
fn stream_counts_tokens_and_usage() {
    let text = "data: {\"choices\":[{\"text\":\"a\"}]}\n\n\
                : comment\n\
                data: {\"choices\":[{\"text\":\"b\"}]}\n\n\
                data: {\"choices\":[{\"text\":\"\"}]}\n\n\
                data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\n\
                data: [DONE]\n\n";
    let mut out = Outcome::default();
    read(
        Api::Completions,
        text.as_bytes(),
        Instant::now(),
        Duration::from_secs(5),
        None,
        &mut out,
    );
    assert_eq!(out.error, None);
    assert_eq!((out.output_tokens, out.input_tokens), (3, Some(7)));
    assert_eq!(out.itl.len(), 2);
    assert!(out.ttft.is_some() && out.tpot().is_some());
}

#[test]
fn chat_without_usage_counts_chunks_with_text() {
    let text = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\
                data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\
                data: {\"choices\":[{\"delta\":{\"content\":\"y\"}}]}\n\
                data: [DONE]\n";
    let mut out = Outcome::default();
    read(
        Api::Chat,
        text.as_bytes(),
        Instant::now(),
        Duration::from_secs(5),
        None,
        &mut out,
    );
    assert_eq!(
        (out.error, out.output_tokens, out.input_tokens),
        (None, 2, None)
    );
}

#[test]
fn broken_streams_are_errors() {
    for text in [
        "data: {\"choices\":[{\"text\":\"a\"}]}\n",
        "data: [DONE]\n",
        "data: {not json}\n",
        "data: {\"error\":{\"message\":\"overloaded\"}}\n",
    ] {
        let mut out = Outcome::default();
        read(
            Api::Completions,
            text.as_bytes(),
            Instant::now(),
            Duration::from_secs(5),
            None,
            &mut out,
        );
        assert_eq!(out.error, Some(ErrorKind::StreamBroken), "{text}");
    }
}

#[test]
fn events_count_every_token_of_llama_cpp_completions_empty_text_included() {
    // llama.cpp: one event per token, a token inside a multi-byte character
    // with empty text, a closing event with finish_reason and no text, no
    // usage (it ignores stream_options.include_usage).
    let mut events: Vec<(u64, String)> = (0..16u64)
        .map(|i| {
            let text = if i % 5 == 2 { "" } else { "x" };
            (
                100 + 10 * i,
                format!(r#"{{"choices":[{{"text":"{text}","finish_reason":null}}]}}"#),
            )
        })
        .collect();
    events.push((
        260,
        r#"{"choices":[{"text":"","finish_reason":"length"}]}"#.into(),
    ));
    let events: Vec<(u64, &str)> = events.iter().map(|(t, s)| (*t, s.as_str())).collect();
    let out = timed(Api::Completions, &events);
    assert_eq!(out.error, None);
    assert_eq!(
        (out.output_tokens, out.token_source),
        (16, TokenSource::Events)
    );
    assert_eq!(out.ttft.map(|d| d.as_millis()), Some(100));
    assert_eq!(ms(&out.itl), vec![10; 15]);
    assert_eq!(out.inter_chunk.len(), 16);
    assert_eq!(out.input_tokens, None);
}

#[test]
fn events_skip_the_chat_role_chunk_and_the_closing_chunk() {
    let out = timed(
        Api::Chat,
        &[
            (50, r#"{"choices":[{"delta":{"role":"assistant"}}]}"#),
            (80, r#"{"choices":[{"delta":{"content":""}}]}"#),
            (90, r#"{"choices":[{"delta":{"content":"é"}}]}"#),
            (100, r#"{"choices":[{"delta":{"content":"b"}}]}"#),
            (105, r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#),
        ],
    );
    assert_eq!(
        (out.output_tokens, out.token_source),
        (3, TokenSource::Events)
    );
    // TTFT at the first chunk with choices, as vLLM; first text apart.
    assert_eq!(out.ttft.map(|d| d.as_millis()), Some(50));
    assert_eq!(out.ttft_text.map(|d| d.as_millis()), Some(90));
    assert_eq!(ms(&out.itl), vec![30, 10, 10]);
    assert_eq!(ms(&out.inter_chunk), vec![30, 10, 10, 5]);
    assert_eq!(out.e2el.as_millis(), 105);
}

#[test]
fn vllm_role_chunk_with_empty_content_is_not_a_token() {
    let out = timed(
        Api::Chat,
        &[
            (
                10,
                r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#,
            ),
            (20, r#"{"choices":[{"delta":{"content":"a"}}]}"#),
            (30, r#"{"choices":[{"delta":{"content":"b"}}]}"#),
        ],
    );
    assert_eq!(
        (out.output_tokens, out.token_source),
        (2, TokenSource::Events)
    );
}

#[test]
fn final_usage_wins_over_events() {
    let out = timed(
        Api::Chat,
        &[
            (10, r#"{"choices":[{"delta":{"content":"ab"}}]}"#),
            (20, r#"{"choices":[{"delta":{"content":"cd"}}]}"#),
            (
                21,
                r#"{"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":4}}"#,
            ),
        ],
    );
    assert_eq!(
        (out.output_tokens, out.token_source),
        (4, TokenSource::Usage)
    );
    assert_eq!(out.input_tokens, Some(4));
}

#[test]
fn usage_deltas_give_each_chunk_its_tokens_and_itl_per_token() {
    // vLLM with continuous_usage_stats and speculative decoding: 3 tokens a
    // chunk, 30 ms apart.
    let out = timed(
        Api::Completions,
        &[
            (
                100,
                r#"{"choices":[{"text":"abc"}],"usage":{"prompt_tokens":5,"completion_tokens":3}}"#,
            ),
            (
                130,
                r#"{"choices":[{"text":"def"}],"usage":{"prompt_tokens":5,"completion_tokens":6}}"#,
            ),
            (
                160,
                r#"{"choices":[{"text":"ghi"}],"usage":{"prompt_tokens":5,"completion_tokens":9}}"#,
            ),
            (
                161,
                r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":9}}"#,
            ),
        ],
    );
    assert_eq!(
        (out.output_tokens, out.token_source, out.input_tokens),
        (9, TokenSource::UsageDelta, Some(5))
    );
    assert_eq!(ms(&out.itl), vec![10; 6]);
    assert_eq!(ms(&out.inter_chunk), vec![30, 30]);
    // TPOT = (160 - 100) / (9 - 1) ms.
    assert_eq!(out.tpot().map(|d| d.as_micros()), Some(7500));
}

#[test]
fn a_bogus_usage_delta_cannot_blow_up_memory() {
    let out = timed(
        Api::Completions,
        &[
            (
                1,
                r#"{"choices":[{"text":"a"}],"usage":{"completion_tokens":1}}"#,
            ),
            (
                2,
                r#"{"choices":[{"text":"b"}],"usage":{"completion_tokens":1000000000000}}"#,
            ),
        ],
    );
    assert_eq!(out.output_tokens, 1_000_000_000_000);
    assert!(out.itl.len() <= MAX_GAPS_PER_CHUNK);
}

/// Feeds `events` to a stream counting with `t`, then `[DONE]`.
fn counted(api: Api, t: &Tokenizer, events: &[(u64, &str)]) -> (Outcome, String) {
    let sent = Instant::now();
    let mut s = Stream::counting(api, sent, Some(t));
    let mut out = Outcome::default();
    for (ms, data) in events {
        let at = sent + Duration::from_millis(*ms);
        assert_eq!(s.line(&format!("data: {data}\n"), at, &mut out), Step::More);
    }
    let end = sent + Duration::from_millis(events.last().map_or(0, |e| e.0));
    assert_eq!(s.line("data: [DONE]\n", end, &mut out), Step::Done);
    let text = s.text.clone();
    s.finish(&mut out);
    (out, text)
}

#[test]
fn a_tokenizer_counts_the_concatenated_completion_text() {
    let t = crate::tokenizer::tests::word_level(&["hello", "world", "again"]);
    // "hel" + "lo wor" + "ld again" is 3 words; usage says 7 and loses.
    let (out, text) = counted(
        Api::Completions,
        &t,
        &[
            (10, r#"{"choices":[{"text":"hel"}]}"#),
            (20, r#"{"choices":[{"text":"lo wor"}]}"#),
            (30, r#"{"choices":[{"text":"ld again"}]}"#),
            (
                31,
                r#"{"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":7}}"#,
            ),
        ],
    );
    assert_eq!(text, "hello world again");
    assert_eq!(
        (out.error, out.output_tokens, out.token_source),
        (None, 3, TokenSource::Tokenizer)
    );
    // ITL stays per event; TPOT uses the exact count: (30 - 10) / (3 - 1).
    assert_eq!(ms(&out.itl), vec![10, 10]);
    assert_eq!(out.tpot().map(|d| d.as_millis()), Some(10));
    // The server's prompt_tokens stays until the workload replaces it.
    assert_eq!(out.input_tokens, Some(4));
}

#[test]
fn a_tokenizer_counts_chat_content_unknown_words_included() {
    let t = crate::tokenizer::tests::word_level(&["yes"]);
    let (out, text) = counted(
        Api::Chat,
        &t,
        &[
            (10, r#"{"choices":[{"delta":{"role":"assistant"}}]}"#),
            (20, r#"{"choices":[{"delta":{"content":"yes, "}}]}"#),
            (30, r#"{"choices":[{"delta":{"content":"maybe"}}]}"#),
            (40, r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#),
        ],
    );
    assert_eq!(text, "yes, maybe");
    // "yes" "," "maybe": the last two are [UNK], one token each.
    assert_eq!(
        (out.output_tokens, out.token_source),
        (3, TokenSource::Tokenizer)
    );
    assert_eq!(ms(&out.itl), vec![10, 10]);
}

#[test]
fn without_a_tokenizer_no_text_is_kept() {
    let sent = Instant::now();
    let mut s = Stream::new(Api::Completions, sent);
    let mut out = Outcome::default();
    s.line(r#"data: {"choices":[{"text":"abc"}]}"#, sent, &mut out);
    assert!(s.text.is_empty() && s.text.capacity() == 0);
    s.line("data: [DONE]", sent, &mut out);
    s.finish(&mut out);
    assert_eq!(
        (out.output_tokens, out.token_source),
        (1, TokenSource::Events)
    );
}

#[test]
fn an_empty_answer_counted_by_a_tokenizer_has_no_tokens() {
    let t = crate::tokenizer::tests::word_level(&[]);
    let (out, _) = counted(
        Api::Completions,
        &t,
        &[(10, r#"{"choices":[{"text":"","finish_reason":"length"}]}"#)],
    );
    assert_eq!(
        (out.output_tokens, out.token_source, out.tpot()),
        (0, TokenSource::Tokenizer, None)
    );
}
