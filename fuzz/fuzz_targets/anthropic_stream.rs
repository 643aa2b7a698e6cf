//! The Anthropic provider's stream translation: SSE events in Anthropic's
//! Messages format → OpenAI stream events → the fold, the OpenAI client
//! encoder and the Anthropic-shaped encoder of `/v1/messages`.
//!
//! Odd first byte: the rest is a raw byte stream. Even: the rest is a
//! program of well-formed Anthropic events with fuzzed fields (indices,
//! block kinds, text, stop reasons, usage), which reaches the translator's
//! state machine far more often than raw bytes do.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use common::{decode, provider, split};
use infergate::wire::anthropic::client::{to_message, AnthropicEncoder};
use infergate::config::ProviderKind;
use infergate::wire::openai::encode::ClientEncoder;
use infergate::wire::ParseState;
use infergate::sse;
use infergate::stream::Fold;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

/// Turn bytes into a sequence of Anthropic events.
fn program(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    // 128 events are plenty for the state machine and keep runs fast.
    for op in bytes.chunks(4).take(128) {
        let b = |i: usize| u64::from(op.get(i).copied().unwrap_or(0));
        let text: String = op.iter().map(|c| char::from(b'a' + c % 26)).collect();
        let (name, ev): (&str, Value) = match b(0) % 10 {
            0 => (
                "message_start",
                json!({"type": "message_start", "message": {"id": format!("msg_{}", b(1)), "model": "claude",
                    "usage": {"input_tokens": b(2), "output_tokens": b(3), "cache_read_input_tokens": b(1)}}}),
            ),
            1 => (
                "content_block_start",
                json!({"type": "content_block_start", "index": b(1) % 4,
                    "content_block": {"type": "text", "text": if b(2) % 2 == 0 { text.clone() } else { String::new() }}}),
            ),
            2 => (
                "content_block_start",
                json!({"type": "content_block_start", "index": b(1) % 4,
                    "content_block": {"type": "tool_use", "id": format!("toolu_{}", b(2)), "name": text, "input": {}}}),
            ),
            3 => (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": b(1) % 4, "delta": {"type": "text_delta", "text": text}}),
            ),
            4 => (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": b(1) % 4,
                    "delta": {"type": "input_json_delta", "partial_json": format!("{{\"{text}\":")}}),
            ),
            5 => (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": b(1) % 4}),
            ),
            6 => {
                let reasons = [
                    "end_turn",
                    "max_tokens",
                    "tool_use",
                    "stop_sequence",
                    "refusal",
                    "pause_turn",
                ];
                (
                    "message_delta",
                    json!({"type": "message_delta", "delta": {"stop_reason": reasons[(b(1) % 6) as usize]},
                        "usage": {"output_tokens": b(2), "input_tokens": b(3)}}),
                )
            }
            7 => ("message_stop", json!({"type": "message_stop"})),
            8 => ("ping", json!({"type": "ping"})),
            _ => (
                "error",
                json!({"type": "error", "error": {"type": "overloaded_error", "message": text}}),
            ),
        };
        out.extend_from_slice(&sse::encode(Some(name), &ev.to_string()));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode & 1 == 1 { rest.to_vec() } else { program(rest) };
    let (events, _) = decode(&split(&bytes, mode), 1 << 16);

    let anthropic = provider(ProviderKind::Anthropic, false);
    let mut state = ParseState::default();
    let mut fold = Fold::new();
    let mut client = ClientEncoder::new(mode & 2 == 2);
    let mut messages = AnthropicEncoder::new(mode & 4 == 4);
    let mut failed = false;
    for ev in &events {
        for e in anthropic.parse_event(&mut state, ev) {
            failed |= fold.push(&e).is_err();
            let _ = messages.encode(&e);
            let _ = client.encode(e);
        }
    }
    if let (false, Ok(completion)) = (failed, fold.finish()) {
        let message = to_message(&completion, true);
        assert_eq!(message["type"], "message");
    }
});
