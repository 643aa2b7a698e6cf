//! A Responses client to an upstream that serves `/v1/responses` itself
//! (a provider with `responses_api: true`): nothing is translated.
//!
//! Out: the client's own body, with the model mapped, `stream` forced on
//! for a streaming client (a JSON client's Response comes whole,
//! [`parse_response`]) and a stored
//! conversation inlined in place of `previous_response_id`: the gateway
//! owns the conversation state, tenant-scoped, so the upstream never needs
//! its own (and never sees an id another tenant could have named).
//!
//! In: the upstream's typed events are relayed as they came, so every
//! field survives (built-in tool items, annotations, logprobs, encrypted
//! reasoning, fields added after this was written). The same events are
//! read on the side as chat chunks ([`parse_event`]) for accounting,
//! completeness and the stall timer. The gateway adds events only when it
//! ends the stream itself (a stall, a cut connection): an `error` event,
//! then `response.failed`, numbered after the upstream's last event.

use serde_json::{json, Map, Value};

use crate::sse::{self, SseEvent};
use crate::stream::UpstreamError;
use crate::stream::{StreamEvent, Usage};
use crate::wire::error::OpenAiError;
use crate::wire::{Answer, ParseState};

/// The upstream body: the client's, with the model mapped, `stream` on
/// unless `whole` (the client's JSON answer is asked for as JSON), and
/// `history` (the stored conversation of `previous_response_id`, as
/// Responses items) before the client's input.
///
/// Stored messages, function calls and their outputs go without their
/// `id`s (optional there, and the gateway made some of them: an item id the
/// upstream does not know is an error there); built-in tool calls keep the
/// provider's own, which they need. Reasoning items go
/// only with their `encrypted_content`, the one form a stateless upstream
/// accepts.
pub fn request_body(
    client: &Map<String, Value>,
    history: &[Value],
    upstream_model: &str,
    whole: bool,
) -> Map<String, Value> {
    let mut body = client.clone();
    body.insert("model".into(), upstream_model.into());
    // `false` said outright: some servers stream when it is absent.
    body.insert("stream".into(), (!whole).into());
    if body.remove("previous_response_id").is_some() || !history.is_empty() {
        let mut input: Vec<Value> = history
            .iter()
            .filter(|i| i["type"] != "reasoning" || i.get("encrypted_content").is_some_and(Value::is_string))
            .cloned()
            .map(|mut i| {
                // Ids are optional on these, and the gateway made some of
                // them; built-in tool calls need theirs (the provider's).
                let optional = matches!(
                    i["type"].as_str(),
                    None | Some("message" | "function_call" | "function_call_output" | "reasoning")
                );
                if let Some(m) = i.as_object_mut().filter(|_| optional) {
                    m.remove("id");
                }
                i
            })
            .collect();
        match body.remove("input") {
            Some(Value::String(s)) => input.push(json!({"role": "user", "content": s})),
            Some(Value::Array(items)) => input.extend(items),
            _ => {}
        }
        body.insert("input".into(), input.into());
    }
    body
}

fn chunk(state: &ParseState, delta: Value, finish: Option<&str>) -> StreamEvent {
    StreamEvent::Delta(state.chunk(delta, finish))
}

/// The event's type: its `event:` line, else the data's `type`.
fn event_type<'a>(ev: &'a SseEvent, data: &'a Value) -> &'a str {
    data["type"].as_str().or(ev.event.as_deref()).unwrap_or("")
}

/// One upstream Responses event as zero or more chat-chunk events, read
/// on the side of the relayed bytes.
///
/// Text, refusal and reasoning deltas become content, refusal and
/// `reasoning_content`; a `function_call` item becomes a tool call, its
/// argument deltas the call's arguments. `response.completed` and
/// `response.incomplete` finish the choice (`length` for
/// `max_output_tokens`, `content_filter`, else `tool_calls` or `stop`) and
/// carry usage; `response.failed` and `error` are
/// `UpstreamError::StreamError` with the upstream's message; data that is
/// not JSON is `UpstreamError::Malformed`.
pub fn parse_event(state: &mut ParseState, ev: &SseEvent) -> Vec<StreamEvent> {
    let Ok(data) = serde_json::from_str::<Value>(&ev.data) else {
        return vec![StreamEvent::Error(UpstreamError::Malformed)];
    };
    let output_index = data["output_index"].as_u64().unwrap_or(0);
    match event_type(ev, &data) {
        "response.created" => {
            let r = &data["response"];
            state.id = r["id"].as_str().unwrap_or("resp").to_string();
            state.model = r["model"].as_str().unwrap_or("").to_string();
            vec![chunk(state, json!({"role": "assistant", "content": ""}), None)]
        }
        "response.output_text.delta" => text(state, "content", &data["delta"]),
        "response.refusal.delta" => text(state, "refusal", &data["delta"]),
        "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
            text(state, "reasoning_content", &data["delta"])
        }
        "response.output_item.added" if data["item"]["type"] == "function_call" => {
            let item = &data["item"];
            let index = state.tools;
            state.tools += 1;
            state.block_tools.insert(output_index, index);
            let args = item["arguments"].as_str().unwrap_or("");
            if !args.is_empty() {
                state.tool_args_sent.insert(output_index);
            }
            let call = json!({"index": index, "id": item["call_id"], "type": "function",
                "function": {"name": item["name"], "arguments": args}});
            vec![chunk(state, json!({"tool_calls": [call]}), None)]
        }
        "response.function_call_arguments.delta" => {
            let Some(&index) = state.block_tools.get(&output_index) else {
                return vec![];
            };
            state.tool_args_sent.insert(output_index);
            let call = json!({"index": index, "function": {"arguments": data["delta"]}});
            vec![chunk(state, json!({"tool_calls": [call]}), None)]
        }
        // Arguments that came whole, with no deltas before them.
        "response.function_call_arguments.done" => {
            let Some(&index) = state.block_tools.get(&output_index) else {
                return vec![];
            };
            if !state.tool_args_sent.insert(output_index) {
                return vec![];
            }
            let call = json!({"index": index, "function": {"arguments": data["arguments"]}});
            vec![chunk(state, json!({"tool_calls": [call]}), None)]
        }
        "response.completed" | "response.incomplete" => {
            let r = &data["response"];
            let u = &r["usage"];
            // Counts come from outside: saturate rather than overflow.
            state.prompt_tokens = u["input_tokens"].as_u64().unwrap_or(0);
            state.completion_tokens = u["output_tokens"].as_u64().unwrap_or(0);
            let finish = match r["incomplete_details"]["reason"].as_str() {
                Some("max_output_tokens") => "length",
                Some("content_filter") => "content_filter",
                _ if state.tools > 0 => "tool_calls",
                _ => "stop",
            };
            state.finish_reason = Some(finish.to_string());
            state.done = true;
            vec![
                chunk(state, json!({}), Some(finish)),
                StreamEvent::Usage(Usage {
                    prompt_tokens: state.prompt_tokens,
                    completion_tokens: state.completion_tokens,
                    total_tokens: state.prompt_tokens.saturating_add(state.completion_tokens),
                }),
                StreamEvent::Done {
                    finish_reason: state.finish_reason.clone(),
                },
            ]
        }
        "response.failed" => {
            let message = data["response"]["error"]["message"]
                .as_str()
                .unwrap_or("the response failed")
                .to_string();
            vec![StreamEvent::Error(UpstreamError::StreamError { message })]
        }
        "error" => {
            // Both shapes: fields at the top (the Responses API's) or
            // under `error` (the chat API's).
            let err = if data["error"].is_object() {
                &data["error"]
            } else {
                &data
            };
            vec![StreamEvent::Error(crate::wire::error_sent_with_2xx(err))]
        }
        _ => vec![], // item and part bookkeeping, and event types added later
    }
}

fn text(state: &ParseState, field: &str, delta: &Value) -> Vec<StreamEvent> {
    match delta.as_str() {
        Some(t) if !t.is_empty() => vec![chunk(state, json!({ field: t }), None)],
        _ => vec![],
    }
}

/// The upstream's events to the bytes the client reads: relayed as they
/// came, plus the gateway's own `error` and `response.failed` when it ends
/// the stream itself.
#[derive(Debug, Default)]
pub struct NativeEncoder {
    /// The client's `previous_response_id`, which the upstream never saw
    /// (the conversation went inline): put back into the Responses the
    /// events carry, so the client reads what it sent.
    previous_response_id: Option<String>,
    /// The model the client named, for a `response.failed` of the
    /// gateway's own when the upstream sent no Response to start from.
    model: String,
    /// The `sequence_number` the next event of the gateway's own gets:
    /// after the upstream's last, or after the count of relayed events when
    /// the upstream numbers none.
    next_seq: u64,
    relayed: u64,
    /// Items the upstream finished (`response.output_item.done`), by
    /// `output_index`: the `output` of a `response.failed` of the
    /// gateway's own.
    done_items: Vec<(u64, Value)>,
    /// The Response as `response.created` (or a later event) showed it,
    /// for a `response.failed` of the gateway's own.
    snapshot: Option<Value>,
    /// The upstream's terminal Response (completed, incomplete or failed).
    last: Option<Value>,
    ended: bool,
    relayed_error: bool,
}

impl NativeEncoder {
    /// `previous_response_id` and `model`: the client's, see the fields.
    pub fn new(previous_response_id: Option<String>, model: &str) -> Self {
        NativeEncoder {
            previous_response_id,
            model: model.into(),
            ..Default::default()
        }
    }

    /// The bytes for one event; `None` for the chat chunks read on the
    /// side.
    pub fn encode(&mut self, ev: &StreamEvent) -> Option<Vec<u8>> {
        match ev {
            StreamEvent::Raw(e) => Some(self.relay(e)),
            StreamEvent::Delta(_) | StreamEvent::Usage(_) | StreamEvent::Done { .. } => None,
            StreamEvent::Error(_) if self.ended => None,
            StreamEvent::Error(e) => Some(self.failed(e)),
        }
    }

    /// The Response the stream ended with, for storing.
    pub fn take_final(&mut self) -> Option<Value> {
        self.last.take()
    }

    fn relay(&mut self, e: &SseEvent) -> Vec<u8> {
        self.relayed += 1;
        self.next_seq = self.next_seq.max(self.relayed);
        // Only the few events that carry a Response, and finished items,
        // are parsed; for the rest the sequence number is all that is
        // needed.
        let kind = e.event.as_deref().unwrap_or("");
        if kind == "response.output_item.done" || (kind.is_empty() && e.data.contains("\"response.output_item.done\""))
        {
            if let Ok(v) = serde_json::from_str::<Value>(&e.data) {
                self.done_items
                    .push((v["output_index"].as_u64().unwrap_or(u64::MAX), v["item"].clone()));
            }
        }
        let carries_response = matches!(
            kind,
            "response.created"
                | "response.in_progress"
                | "response.completed"
                | "response.incomplete"
                | "response.failed"
        ) || (kind.is_empty() && e.data.contains("\"response\":"));
        if carries_response {
            if let Ok(mut v) = serde_json::from_str::<Value>(&e.data) {
                self.seen_seq(v["sequence_number"].as_u64());
                let patched = self.patch(&mut v["response"]);
                let kind = v["type"].as_str().unwrap_or(kind).to_string();
                if matches!(
                    kind.as_str(),
                    "response.completed" | "response.incomplete" | "response.failed"
                ) {
                    self.ended = true;
                    self.last = Some(v["response"].clone());
                } else if v["response"].is_object() {
                    self.snapshot = Some(v["response"].clone());
                }
                if patched {
                    return sse::encode(e.event.as_deref(), &v.to_string());
                }
                return sse::encode(e.event.as_deref(), &e.data);
            }
        }
        if kind == "error" || e.data.contains("\"type\":\"error\"") {
            self.relayed_error = true;
        }
        self.seen_seq(sequence_number(&e.data));
        sse::encode(e.event.as_deref(), &e.data)
    }

    /// Put the client's `previous_response_id` into a Response; whether it
    /// changed.
    fn patch(&self, response: &mut Value) -> bool {
        patch_previous(response, self.previous_response_id.as_deref())
    }

    fn seen_seq(&mut self, n: Option<u64>) {
        if let Some(n) = n {
            self.next_seq = self.next_seq.max(n.saturating_add(1));
        }
    }

    /// An `error` event (unless the upstream sent its own), then
    /// `response.failed`.
    fn failed(&mut self, e: &UpstreamError) -> Vec<u8> {
        self.ended = true;
        let code = e.code().unwrap_or("upstream_error");
        let message = e.to_string();
        let mut out = Vec::new();
        if !self.relayed_error {
            let data = json!({"type": "error", "code": code, "message": message, "param": null,
                "sequence_number": self.next_seq});
            self.next_seq += 1;
            out.extend(sse::encode(Some("error"), &data.to_string()));
        }
        let mut r = self
            .snapshot
            .take()
            .unwrap_or_else(|| json!({"object": "response", "model": self.model}));
        self.done_items.sort_by_key(|(i, _)| *i);
        let output: Vec<Value> = self.done_items.drain(..).map(|(_, item)| item).collect();
        if let Some(m) = r.as_object_mut() {
            m.insert("status".into(), "failed".into());
            m.insert("error".into(), json!({"code": code, "message": message}));
            m.insert("output".into(), output.into());
        }
        let data = json!({"type": "response.failed", "response": r, "sequence_number": self.next_seq});
        self.next_seq += 1;
        out.extend(sse::encode(Some("response.failed"), &data.to_string()));
        self.last = Some(r);
        out
    }
}

/// A whole Response object from a Responses upstream, read for what the
/// gateway needs: usage and how it ended.
///
/// Returns `UpstreamError::StreamError` with the upstream's message for a
/// `failed` Response or an `error` object, `Malformed` for a body that is
/// not a Response, and `Unfinished` for one still `queued` or
/// `in_progress` (never relayed as if whole).
pub fn parse_response(bytes: bytes::Bytes, body: Value) -> Result<Answer, UpstreamError> {
    let failure = |err: &Value| {
        let message = err["message"].as_str().unwrap_or("the response failed").to_string();
        UpstreamError::StreamError { message }
    };
    if let Some(err) = body.get("error").filter(|e| !e.is_null()) {
        if body["object"] != "response" {
            return Err(crate::wire::error_sent_with_2xx(err));
        }
        if body["status"] == "failed" {
            return Err(failure(err));
        }
    }
    if body["object"] != "response" {
        return Err(UpstreamError::Malformed);
    }
    let finish = match body["status"].as_str() {
        Some("completed") => "stop",
        Some("incomplete") => match body["incomplete_details"]["reason"].as_str() {
            Some("content_filter") => "content_filter",
            _ => "length",
        },
        Some("failed") => return Err(failure(&body["error"])),
        _ => return Err(UpstreamError::Unfinished),
    };
    let u = &body["usage"];
    let usage = u.is_object().then(|| {
        let (prompt, completion) = (
            u["input_tokens"].as_u64().unwrap_or(0),
            u["output_tokens"].as_u64().unwrap_or(0),
        );
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
        }
    });
    Ok(Answer {
        bytes,
        body,
        usage,
        finish_reason: Some(finish.into()),
    })
}

/// Set a Response's `previous_response_id` to the client's, which the
/// upstream never saw; whether it changed. The rest stays as the upstream
/// wrote it, `model` included (the upstream's name for what served it, as
/// chat completions relay it).
pub fn patch_previous(response: &mut Value, previous: Option<&str>) -> bool {
    match (previous, response.as_object_mut()) {
        (Some(id), Some(r)) if r.get("previous_response_id").and_then(Value::as_str) != Some(id) => {
            r.insert("previous_response_id".into(), id.into());
            true
        }
        _ => false,
    }
}

/// The number after `"sequence_number":` in an event's data, without
/// parsing the whole event.
fn sequence_number(data: &str) -> Option<u64> {
    let at = data.find("\"sequence_number\":")? + "\"sequence_number\":".len();
    let digits: String = data[at..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The relayed events folded into the upstream's own Response object,
/// for clients that did not ask to stream: the Response of the terminal
/// event, as the upstream built it.
#[derive(Debug, Default)]
pub struct ResponseFold {
    last: Option<Value>,
}

impl ResponseFold {
    pub fn push(&mut self, ev: &SseEvent) {
        if !matches!(
            ev.event.as_deref(),
            Some("response.completed" | "response.incomplete" | "response.failed") | None
        ) {
            return;
        }
        if let Ok(v) = serde_json::from_str::<Value>(&ev.data) {
            if matches!(
                v["type"].as_str(),
                Some("response.completed" | "response.incomplete" | "response.failed")
            ) {
                self.last = Some(v["response"].clone());
            }
        }
    }

    /// The Response, once a terminal event came.
    pub fn finish(self) -> Option<Value> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::Fold;

    fn ev(kind: &str, data: Value) -> SseEvent {
        SseEvent {
            event: Some(kind.into()),
            data: data.to_string(),
            id: None,
        }
    }

    /// Every chunk the events translate to, folded into one completion.
    fn fold(events: &[SseEvent]) -> Value {
        let mut state = ParseState::default();
        let mut fold = Fold::new();
        for e in events {
            for out in parse_event(&mut state, e) {
                fold.push(&out).unwrap();
            }
        }
        fold.finish().unwrap()
    }

    #[test]
    fn calls_reasoning_and_usage_read_on_the_side() {
        let r = json!({"id": "resp_1", "model": "o4", "usage": {"input_tokens": 9, "output_tokens": 4}});
        let done = fold(&[
            ev("response.created", json!({"type": "response.created", "response": r})),
            ev(
                "response.reasoning_summary_text.delta",
                json!({"type": "response.reasoning_summary_text.delta", "delta": "think"}),
            ),
            ev(
                "response.output_item.added",
                json!({"type": "response.output_item.added", "output_index": 1,
                "item": {"type": "function_call", "call_id": "call_a", "name": "f", "arguments": ""}}),
            ),
            ev(
                "response.function_call_arguments.delta",
                json!({"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "{\"x\":"}),
            ),
            ev(
                "response.function_call_arguments.delta",
                json!({"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "1}"}),
            ),
            // A second call whose arguments come only whole.
            ev(
                "response.output_item.added",
                json!({"type": "response.output_item.added", "output_index": 2,
                "item": {"type": "function_call", "call_id": "call_b", "name": "g"}}),
            ),
            ev(
                "response.function_call_arguments.done",
                json!({"type": "response.function_call_arguments.done", "output_index": 2, "arguments": "{}"}),
            ),
            ev(
                "response.completed",
                json!({"type": "response.completed", "response": r}),
            ),
        ]);
        let m = &done["choices"][0]["message"];
        assert_eq!(m["reasoning_content"], "think");
        assert_eq!(m["tool_calls"][0]["id"], "call_a");
        assert_eq!(m["tool_calls"][0]["function"]["arguments"], "{\"x\":1}");
        assert_eq!(m["tool_calls"][1]["function"]["name"], "g");
        assert_eq!(m["tool_calls"][1]["function"]["arguments"], "{}");
        assert_eq!(done["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(done["usage"]["prompt_tokens"], 9);
        assert_eq!(done["usage"]["completion_tokens"], 4);
    }

    #[test]
    fn failures_and_garbage_are_errors() {
        let mut state = ParseState::default();
        let failed = ev(
            "response.failed",
            json!({"type": "response.failed", "response": {"error": {"message": "boom"}}}),
        );
        assert!(matches!(
            parse_event(&mut state, &failed)[..],
            [StreamEvent::Error(UpstreamError::StreamError { ref message })] if message == "boom"
        ));
        let error = ev("error", json!({"type": "error", "code": "x", "message": "bad"}));
        assert!(matches!(
            parse_event(&mut state, &error)[..],
            [StreamEvent::Error(UpstreamError::StreamError { ref message })] if message == "bad"
        ));
        // A rate limit keeps its kind, in either shape.
        for data in [
            json!({"type": "error", "code": "rate_limit_exceeded", "message": "slow down"}),
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}),
        ] {
            assert!(matches!(
                parse_event(&mut state, &ev("error", data))[..],
                [StreamEvent::Error(UpstreamError::RateLimited { .. })]
            ));
        }
        let garbage = SseEvent {
            event: None,
            data: "{not json".into(),
            id: None,
        };
        assert!(matches!(
            parse_event(&mut state, &garbage)[..],
            [StreamEvent::Error(UpstreamError::Malformed)]
        ));
    }

    #[test]
    fn history_goes_inline_without_ids_or_bare_reasoning() {
        let client = json!({"model": "m", "previous_response_id": "resp_1", "input": "next", "store": false});
        let history = [
            json!({"id": "msg_1", "type": "message", "role": "user", "content": "first"}),
            json!({"id": "rs_1", "type": "reasoning", "summary": []}),
            json!({"id": "rs_2", "type": "reasoning", "summary": [], "encrypted_content": "gAAA"}),
            json!({"id": "fc_1", "type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}),
            json!({"id": "ws_1", "type": "web_search_call", "status": "completed"}),
        ];
        let Value::Object(client) = client else { unreachable!() };
        let body = Value::Object(request_body(&client, &history, "up-model", false));
        assert_eq!(body["model"], "up-model");
        assert_eq!(body["stream"], true);
        assert_eq!(body["store"], false);
        assert!(body.get("previous_response_id").is_none());
        let input = body["input"].as_array().unwrap();
        let kinds: Vec<&str> = input.iter().map(|i| i["type"].as_str().unwrap_or("message")).collect();
        assert_eq!(
            kinds,
            ["message", "reasoning", "function_call", "web_search_call", "message"]
        );
        assert!(input[..3].iter().all(|i| i.get("id").is_none()));
        assert_eq!(input[3]["id"], "ws_1", "a built-in tool call keeps the provider's id");
        assert_eq!(input[4], json!({"role": "user", "content": "next"}));
    }

    #[test]
    fn the_sequence_number_is_read_without_parsing() {
        assert_eq!(
            sequence_number(r#"{"type":"x","sequence_number": 41,"delta":"a"}"#),
            Some(41)
        );
        assert_eq!(sequence_number(r#"{"type":"x"}"#), None);
    }

    #[test]
    fn a_stream_the_gateway_ends_keeps_what_finished() {
        // An upstream that numbers no events and maps the model.
        let mut enc = NativeEncoder::new(Some("resp_prev".into()), "client-model");
        let r = json!({"id": "resp_up", "object": "response", "model": "up-model", "output": []});
        let item = json!({"type": "message", "id": "msg_1", "role": "assistant",
            "content": [{"type": "output_text", "text": "Hi", "annotations": []}]});
        let created = enc.relay(&ev(
            "response.created",
            json!({"type": "response.created", "response": r}),
        ));
        let created: Value = serde_json::from_str(
            std::str::from_utf8(&created)
                .unwrap()
                .trim()
                .split("data: ")
                .nth(1)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(created["response"]["model"], "up-model");
        assert_eq!(created["response"]["previous_response_id"], "resp_prev");
        enc.relay(&ev(
            "response.output_item.done",
            json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
        ));
        let out = enc
            .encode(&StreamEvent::Error(UpstreamError::Stalled { timeout_ms: 5 }))
            .unwrap();
        let events: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert_eq!(events[0]["type"], "error");
        assert_eq!(events[0]["sequence_number"], 2);
        assert_eq!(events[1]["type"], "response.failed");
        assert_eq!(events[1]["sequence_number"], 3);
        let failed = &events[1]["response"];
        assert_eq!(failed["status"], "failed");
        assert_eq!(failed["model"], "up-model");
        assert_eq!(failed["output"], json!([item]));
        assert_eq!(enc.take_final().unwrap()["output"][0]["id"], "msg_1");
    }
}
