//! A Messages client to a Messages upstream: nothing is translated.
//!
//! The client's body goes upstream as sent, with only the model mapped
//! (and streaming on for a streaming client; a JSON client's Message comes
//! whole, [`parse_message`]). The upstream's events come back as it sent them (each event's
//! `event:` and `data:`, re-framed; SSE comments and `id:` lines are not
//! kept), so every field survives: `cache_control`, thinking blocks and
//! their signatures, citations, `is_error`, server tools, fields added
//! after this was written. The chat-chunk translation of the same events
//! still runs on the side, for accounting, completeness and the stall
//! timer. One event is the gateway's own: `message_stop`, sent once the
//! gateway has judged the stream complete; and an `error` event when the
//! gateway itself ends the stream (a stall, a cut connection).

use serde_json::{json, Map, Value};

use crate::sse::{self, SseEvent};
use crate::stream::{StreamEvent, UpstreamError, Usage};
use crate::wire::error::anthropic_error_event;
use crate::wire::Answer;

/// Client request headers forwarded to a Messages upstream: the beta
/// features a request opts into (`anthropic-beta: ...`) change what the
/// upstream accepts and returns.
pub const FORWARDED_HEADERS: &[&str] = &["anthropic-beta"];

/// The upstream body: the client's, with the model mapped and `stream` on,
/// unless `whole`: the client's JSON answer is asked for as JSON.
pub fn request_body(client: &Map<String, Value>, upstream_model: &str, whole: bool) -> Map<String, Value> {
    let mut body = client.clone();
    body.insert("model".into(), upstream_model.into());
    // `false` said outright: some servers stream when it is absent.
    body.insert("stream".into(), (!whole).into());
    body
}

/// A whole Message from a Messages upstream, read for what the gateway
/// needs: usage (cache reads and writes count as prompt tokens, as in the
/// stream) and its `stop_reason`.
///
/// Returns `UpstreamError::StreamError` with the upstream's message for an
/// `error` object, `Malformed` for a body that is not a Message, and
/// `Unfinished` for one without a `stop_reason` (never relayed as whole).
pub fn parse_message(bytes: bytes::Bytes, body: Value) -> Result<Answer, UpstreamError> {
    match body["type"].as_str() {
        Some("message") => {}
        Some("error") => return Err(crate::wire::error_sent_with_2xx(&body["error"])),
        _ => return Err(UpstreamError::Malformed),
    }
    let Some(stop) = body["stop_reason"].as_str() else {
        return Err(UpstreamError::Unfinished);
    };
    let u = &body["usage"];
    let usage = u.is_object().then(|| {
        let prompt = super::upstream::prompt_tokens_of(u);
        let completion = u["output_tokens"].as_u64().unwrap_or(0);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
        }
    });
    let finish_reason = Some(stop.to_string());
    Ok(Answer {
        bytes,
        body,
        usage,
        finish_reason,
    })
}

/// Whether an upstream event is relayed as is. `message_stop` is not: the
/// gateway sends its own once it has judged the stream complete.
pub fn relayed(ev: &SseEvent) -> bool {
    event_type(ev) != "message_stop"
}

fn event_type(ev: &SseEvent) -> &str {
    match ev.event.as_deref() {
        Some(t) => t,
        // Without an `event:` line the type is only in the data.
        None if ev.data.contains("\"message_stop\"") => "message_stop",
        None if ev.data.contains("\"type\":\"error\"") => "error",
        None => "",
    }
}

/// Stream events to the bytes a Messages client reads, relaying the
/// upstream's own events.
#[derive(Debug, Default)]
pub struct PassthroughEncoder {
    stopped: bool,
    /// The upstream's own `error` event went out: its translation must
    /// not add a second one.
    relayed_error: bool,
}

impl PassthroughEncoder {
    /// The bytes for one event; `None` for the translated chunks, which
    /// are only read on the side.
    pub fn encode(&mut self, ev: &StreamEvent) -> Option<Vec<u8>> {
        match ev {
            StreamEvent::Raw(e) => {
                self.relayed_error |= event_type(e) == "error";
                Some(sse::encode(e.event.as_deref(), &e.data))
            }
            StreamEvent::Delta(_) | StreamEvent::Usage(_) => None,
            StreamEvent::Done { .. } if !self.stopped => {
                self.stopped = true;
                Some(sse::encode(Some("message_stop"), r#"{"type":"message_stop"}"#))
            }
            StreamEvent::Done { .. } => None,
            StreamEvent::Error(_) if self.relayed_error => None,
            StreamEvent::Error(e) => Some(anthropic_error_event(e)),
        }
    }
}

/// The relayed events folded into one Message object, for clients that
/// did not ask to stream. Blocks and fields it does not know are kept as
/// the upstream sent them.
#[derive(Debug, Default)]
pub struct MessageFold {
    message: Map<String, Value>,
    blocks: Vec<Value>,
    /// `input_json_delta` fragments per block, parsed when the block stops.
    partial_json: Vec<String>,
}

impl MessageFold {
    pub fn push(&mut self, ev: &SseEvent) {
        let Ok(Value::Object(data)) = serde_json::from_str::<Value>(&ev.data) else {
            return;
        };
        let index = data.get("index").and_then(Value::as_u64).map(|i| i as usize);
        match data.get("type").and_then(Value::as_str).unwrap_or("") {
            "message_start" => {
                if let Some(Value::Object(m)) = data.get("message") {
                    self.message = m.clone();
                }
            }
            "content_block_start" => {
                let (Some(i), Some(block)) = (index, data.get("content_block")) else {
                    return;
                };
                // Indices come from outside: a gap or a repeat must not
                // allocate without bound or panic.
                if i > self.blocks.len() {
                    return;
                }
                if i == self.blocks.len() {
                    self.blocks.push(block.clone());
                    self.partial_json.push(String::new());
                } else {
                    self.blocks[i] = block.clone();
                }
            }
            "content_block_delta" => {
                let (Some(i), Some(Value::Object(d))) = (index, data.get("delta")) else {
                    return;
                };
                let (Some(Value::Object(block)), Some(partial)) =
                    (self.blocks.get_mut(i), self.partial_json.get_mut(i))
                else {
                    return;
                };
                apply_delta(block, partial, d);
            }
            "content_block_stop" => {
                let Some(i) = index else { return };
                let (Some(Value::Object(block)), Some(partial)) =
                    (self.blocks.get_mut(i), self.partial_json.get_mut(i))
                else {
                    return;
                };
                if !partial.is_empty() {
                    // The streamed input replaces the block's placeholder
                    // `{}`; a fragment that does not parse is kept as the
                    // upstream's text rather than dropped.
                    let input = serde_json::from_str(partial).unwrap_or_else(|_| Value::String(partial.clone()));
                    block.insert("input".into(), input);
                    partial.clear();
                }
            }
            "message_delta" => {
                if let Some(Value::Object(d)) = data.get("delta") {
                    for (k, v) in d {
                        self.message.insert(k.clone(), v.clone());
                    }
                }
                if let Some(Value::Object(u)) = data.get("usage") {
                    let usage = self.message.entry("usage").or_insert_with(|| json!({}));
                    if let Value::Object(m) = usage {
                        for (k, v) in u {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            _ => {} // ping, and event types added later
        }
    }

    /// The Message; `None` when the upstream never started one.
    pub fn finish(mut self) -> Option<Value> {
        if self.message.is_empty() {
            return None;
        }
        self.message.insert("content".into(), Value::Array(self.blocks));
        Some(Value::Object(self.message))
    }
}

/// One `content_block_delta` applied to its block: text, thinking and
/// signature fragments concatenate (a signature may come in several
/// `signature_delta`s, as the SDKs accumulate it), citations are appended,
/// tool input is collected until the block stops. An unknown delta's
/// string fields concatenate onto the block's fields of the same name.
fn apply_delta(block: &mut Map<String, Value>, partial: &mut String, d: &Map<String, Value>) {
    let append = |block: &mut Map<String, Value>, field: &str, s: &str| {
        let slot = block.entry(field).or_insert_with(|| Value::String(String::new()));
        if let Value::String(t) = slot {
            t.push_str(s);
        }
    };
    match d.get("type").and_then(Value::as_str).unwrap_or("") {
        "input_json_delta" => partial.push_str(d.get("partial_json").and_then(Value::as_str).unwrap_or("")),
        "citations_delta" => {
            if let Some(c) = d.get("citation") {
                let list = block.entry("citations").or_insert_with(|| json!([]));
                // A block may start with `citations: null`.
                if !list.is_array() {
                    *list = json!([]);
                }
                if let Value::Array(a) = list {
                    a.push(c.clone());
                }
            }
        }
        _ => {
            for (k, v) in d {
                if let (false, Some(s)) = (k == "type", v.as_str()) {
                    append(block, k, s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseDecoder;

    fn events(sse: &str) -> Vec<SseEvent> {
        let mut d = SseDecoder::default();
        d.push(sse.as_bytes());
        let mut out = vec![];
        while let Some(e) = d.next_event().unwrap() {
            out.push(e);
        }
        out
    }

    fn frame(v: Value) -> String {
        format!("event: {}\ndata: {}\n\n", v["type"].as_str().unwrap(), v)
    }

    /// Thinking with its signature, a cited text block, and a tool call
    /// whose input streams in fragments: the fold is the Message the API
    /// would have returned without streaming, every field kept.
    #[test]
    fn the_fold_keeps_every_field() {
        let sse = [
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                "model": "claude", "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 10, "cache_read_input_tokens": 7, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me "}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "see."}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQB"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig=="}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": "", "citations": null}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Paris"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "citations_delta",
                "citation": {"type": "char_location", "cited_text": "Paris", "document_index": 0}}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_1",
                "name": "get", "input": {}}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"city\""}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ":\"Paris\"}"}}),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                "usage": {"output_tokens": 30}}),
            json!({"type": "message_stop"}),
        ]
        .into_iter()
        .map(frame)
        .collect::<String>();
        let mut fold = MessageFold::default();
        for e in events(&sse) {
            fold.push(&e);
        }
        let m = fold.finish().unwrap();
        assert_eq!(m["id"], "msg_1");
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(
            m["usage"],
            json!({"input_tokens": 10, "cache_read_input_tokens": 7, "output_tokens": 30})
        );
        assert_eq!(
            m["content"][0],
            json!({"type": "thinking", "thinking": "Let me see.", "signature": "EqQBsig=="})
        );
        assert_eq!(m["content"][1]["text"], "Paris");
        assert_eq!(m["content"][1]["citations"][0]["cited_text"], "Paris");
        assert_eq!(m["content"][2]["input"], json!({"city": "Paris"}));
    }

    #[test]
    fn hostile_indices_are_ignored() {
        let sse = [
            json!({"type": "message_start", "message": {"id": "m", "content": []}}),
            json!({"type": "content_block_start", "index": 99999999999u64, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 5, "delta": {"type": "text_delta", "text": "x"}}),
            json!({"type": "content_block_stop", "index": 7}),
        ]
        .into_iter()
        .map(frame)
        .collect::<String>();
        let mut fold = MessageFold::default();
        for e in events(&sse) {
            fold.push(&e);
        }
        assert_eq!(fold.finish().unwrap()["content"], json!([]));
    }

    #[test]
    fn the_gateway_sends_its_own_stop_and_errors() {
        let ev = |t: &str| SseEvent {
            event: Some(t.into()),
            data: format!("{{\"type\":\"{t}\"}}"),
            id: None,
        };
        assert!(relayed(&ev("content_block_delta")));
        assert!(relayed(&ev("ping")));
        assert!(relayed(&ev("error")));
        assert!(!relayed(&ev("message_stop")));
        let mut enc = PassthroughEncoder::default();
        let done = StreamEvent::Done { finish_reason: None };
        assert_eq!(
            enc.encode(&done).unwrap(),
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        );
        assert_eq!(enc.encode(&done), None, "one message_stop");

        // The upstream's error event goes out as it came (its type decides
        // the SDK's exception); its translation adds nothing.
        let mut enc = PassthroughEncoder::default();
        let upstream = SseEvent {
            event: Some("error".into()),
            data: r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#.into(),
            id: None,
        };
        let relayed = enc.encode(&StreamEvent::Raw(upstream.clone())).unwrap();
        assert_eq!(relayed, sse::encode(Some("error"), &upstream.data));
        let translated = StreamEvent::Error(crate::stream::UpstreamError::StreamError {
            message: "Overloaded".into(),
        });
        assert_eq!(enc.encode(&translated), None);
        // A failure the gateway detects is its own error event.
        let mut enc = PassthroughEncoder::default();
        let stalled = StreamEvent::Error(crate::stream::UpstreamError::Stalled { timeout_ms: 5 });
        assert!(String::from_utf8(enc.encode(&stalled).unwrap())
            .unwrap()
            .starts_with("event: error\n"));
    }
}
