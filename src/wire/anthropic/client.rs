//! The Anthropic-shaped front door: `POST /v1/messages`.
//!
//! Anthropic SDK clients send Messages requests; the gateway translates them
//! into an OpenAI chat request (validated by the same rules as
//! `/v1/chat/completions`, so every provider and runner can serve them) and
//! translates the answer back: the stream as Anthropic's SSE event sequence
//! ([`AnthropicEncoder`]), a JSON answer as a Message object
//! ([`to_message`]).

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{message_id, stop_for_content};
use crate::sse;
use crate::stream::{StreamEvent, Usage};
use crate::wire::error::anthropic_error_event;
use crate::wire::openai::chat::reasoning_of;

/// `POST /v1/messages` body. Unknown fields are ignored, as the API's own
/// forward compatibility requires.
#[derive(Debug, Clone, Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    pub max_tokens: u32,
    pub messages: Vec<InMessage>,
    #[serde(default)]
    pub system: Option<SystemPrompt>,
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub tools: Option<Vec<InTool>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub metadata: Option<Value>,
    /// `{"type": "enabled", "budget_tokens": N}`: the client wants the
    /// model's reasoning, as `thinking` blocks.
    #[serde(default)]
    pub thinking: Option<Value>,
    /// `{"format": {"type": "json_schema", "schema": {...}}}`: structured
    /// outputs.
    #[serde(default)]
    pub output_config: Option<Value>,
}

impl MessagesRequest {
    /// Whether the client asked for reasoning; a client that did not gets
    /// none, whatever the upstream sends.
    pub fn wants_thinking(&self) -> bool {
        self.thinking.as_ref().is_some_and(|t| t["type"] == "enabled")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SystemPrompt {
    Text(String),
    Blocks(Vec<Value>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InRole {
    User,
    Assistant,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InMessage {
    pub role: InRole,
    pub content: InContent,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum InContent {
    Text(String),
    Blocks(Vec<Value>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct InTool {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub input_schema: Option<Value>,
}

fn block_text(b: &Value) -> Option<&str> {
    (b["type"] == "text").then(|| b["text"].as_str()).flatten()
}

fn tool_result_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(block_text).collect::<Vec<_>>().join(""),
        _ => String::new(),
    }
}

/// A `document` block as a chat content part: plain text as text, a
/// base64 file (a PDF) as OpenAI's `file` part, anything else by reference.
fn document_part(b: &Value) -> Value {
    let s = &b["source"];
    match s["type"].as_str() {
        Some("text") => json!({"type": "text", "text": s["data"]}),
        Some("content") => json!({"type": "text", "text": tool_result_text(&s["content"])}),
        Some("base64") => {
            let media = s["media_type"].as_str().unwrap_or("application/pdf");
            let data = s["data"].as_str().unwrap_or("");
            let name = b["title"].as_str().unwrap_or("document.pdf");
            json!({"type": "file", "file": {"filename": name, "file_data": format!("data:{media};base64,{data}")}})
        }
        _ => {
            json!({"type": "text", "text": format!("[document: {}]", s["url"].as_str().or(s["file_id"].as_str()).unwrap_or("unknown"))})
        }
    }
}

/// The equivalent OpenAI chat request body.
pub fn to_openai(req: &MessagesRequest) -> Map<String, Value> {
    let mut messages = Vec::new();
    match &req.system {
        Some(SystemPrompt::Text(t)) => messages.push(json!({"role": "system", "content": t})),
        Some(SystemPrompt::Blocks(b)) => {
            let text: String = b.iter().filter_map(block_text).collect::<Vec<_>>().join("\n");
            messages.push(json!({"role": "system", "content": text}));
        }
        None => {}
    }
    for m in &req.messages {
        let blocks = match &m.content {
            InContent::Text(t) => vec![json!({"type": "text", "text": t})],
            InContent::Blocks(b) => b.clone(),
        };
        match m.role {
            InRole::Assistant => {
                let text: String = blocks.iter().filter_map(block_text).collect();
                let calls: Vec<Value> = blocks
                    .iter()
                    .filter(|b| b["type"] == "tool_use")
                    .map(|b| {
                        // A block without input has none: `{}`, not `null`.
                        let args = match &b["input"] {
                            Value::Null => "{}".to_string(),
                            input => input.to_string(),
                        };
                        json!({"id": b["id"], "type": "function",
                            "function": {"name": b["name"], "arguments": args}})
                    })
                    .collect();
                // A turn of only thinking or server-tool blocks (a
                // `pause_turn` continuation) still is a turn: empty text.
                let content = match (text.is_empty(), calls.is_empty()) {
                    (true, false) => Value::Null,
                    _ => text.into(),
                };
                let mut msg = json!({"role": "assistant", "content": content});
                let thinking: String = blocks
                    .iter()
                    .filter(|b| b["type"] == "thinking")
                    .filter_map(|b| b["thinking"].as_str())
                    .collect();
                if !thinking.is_empty() {
                    msg["reasoning_content"] = thinking.into();
                }
                if !calls.is_empty() {
                    msg["tool_calls"] = calls.into();
                }
                messages.push(msg);
            }
            InRole::User => {
                // Tool results become `tool` messages, which OpenAI wants
                // before any further user content.
                let mut parts = Vec::new();
                for b in &blocks {
                    match b["type"].as_str() {
                        Some("tool_result") => messages.push(json!({"role": "tool",
                            "tool_call_id": b["tool_use_id"], "content": tool_result_text(&b["content"])})),
                        Some("text") => parts.push(json!({"type": "text", "text": b["text"]})),
                        Some("image") if b["source"]["type"] == "base64" => {
                            let s = &b["source"];
                            let url = format!(
                                "data:{};base64,{}",
                                s["media_type"].as_str().unwrap_or("image/png"),
                                s["data"].as_str().unwrap_or("")
                            );
                            parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
                        }
                        Some("image") => {
                            parts.push(json!({"type": "image_url", "image_url": {"url": b["source"]["url"]}}))
                        }
                        Some("document") => parts.push(document_part(b)),
                        _ => {}
                    }
                }
                if !parts.is_empty() {
                    messages.push(json!({"role": "user", "content": parts}));
                }
            }
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), req.model.clone().into());
    body.insert("messages".into(), messages.into());
    body.insert("max_tokens".into(), req.max_tokens.into());
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), t.into());
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), p.into());
    }
    if let Some(s) = &req.stop_sequences {
        body.insert("stop".into(), s.clone().into());
    }
    if let Some(tools) = &req.tools {
        let t: Vec<Value> = tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {"name": t.name, "description": t.description,
                    "parameters": t.input_schema.clone().unwrap_or(json!({"type": "object"}))}})
            })
            .collect();
        body.insert("tools".into(), t.into());
    }
    if let Some(tc) = &req.tool_choice {
        let choice = match tc["type"].as_str() {
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => json!({"type": "function", "function": {"name": tc["name"]}}),
            _ => json!("auto"),
        };
        body.insert("tool_choice".into(), choice);
        if tc["disable_parallel_tool_use"] == true {
            body.insert("parallel_tool_calls".into(), false.into());
        }
    }
    if let Some(user) = req.metadata.as_ref().and_then(|m| m["user_id"].as_str()) {
        body.insert("user".into(), user.into());
    }
    if req.wants_thinking() {
        // OpenAI's knob for reasoning, by Anthropic's budget (the inverse
        // of the Anthropic provider's mapping).
        let budget = req
            .thinking
            .as_ref()
            .and_then(|t| t["budget_tokens"].as_u64())
            .unwrap_or(0);
        let effort = match budget {
            0..=1024 => "low",
            1025..=2048 => "medium",
            _ => "high",
        };
        body.insert("reasoning_effort".into(), effort.into());
    }
    if let Some(f) = req.output_config.as_ref().map(|c| &c["format"]) {
        if f["type"] == "json_schema" && f["schema"].is_object() {
            // Not `strict`: OpenAI's strict subset refuses schemas Anthropic
            // takes (optional properties); the name is OpenAI's requirement.
            body.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": {"name": "output", "schema": f["schema"]}}),
            );
        }
    }
    if req.stream == Some(true) {
        body.insert("stream".into(), true.into());
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    body
}

/// A `chat.completion` object as an Anthropic Message; its reasoning
/// becomes a `thinking` block when the client asked for it.
pub fn to_message(completion: &Value, thinking: bool) -> Value {
    let choice = &completion["choices"][0];
    let msg = &choice["message"];
    let mut content = Vec::new();
    if let Some(r) = reasoning_of(msg).filter(|_| thinking) {
        content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
    }
    if let Some(t) = msg["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": t}));
    }
    for call in msg["tool_calls"].as_array().into_iter().flatten() {
        let args = call["function"]["arguments"].as_str().unwrap_or("{}");
        let input = serde_json::from_str::<Value>(args).unwrap_or(json!({}));
        content.push(json!({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": input}));
    }
    let finish = choice["finish_reason"].as_str().unwrap_or("stop");
    let has_tools = msg["tool_calls"].as_array().is_some_and(|c| !c.is_empty());
    json!({
        "id": message_id(completion["id"].as_str().unwrap_or("")),
        "type": "message",
        "role": "assistant",
        "model": completion["model"],
        "content": content,
        "stop_reason": stop_for_content(finish, has_tools),
        "stop_sequence": null,
        "usage": {
            "input_tokens": completion["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
            "output_tokens": completion["usage"]["completion_tokens"].as_u64().unwrap_or(0),
        },
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
enum Block {
    #[default]
    None,
    Thinking(u64),
    Text(u64),
    Tool(u64),
}

/// OpenAI-vocabulary stream events → Anthropic's Messages SSE sequence.
#[derive(Debug, Default)]
pub struct AnthropicEncoder {
    started: bool,
    block: Block,
    next_index: u64,
    /// The upstream's `finish_reason`, once it has given one.
    finish: Option<String>,
    usage: Option<Usage>,
    /// The client asked for thinking blocks.
    thinking: bool,
    /// A tool block was opened: the turn ends in `tool_use`.
    tools: bool,
}

fn event(name: &str, data: Value) -> Vec<u8> {
    sse::encode(Some(name), &data.to_string())
}

impl AnthropicEncoder {
    /// `thinking`: whether the client asked for reasoning.
    pub fn new(thinking: bool) -> Self {
        AnthropicEncoder {
            thinking,
            ..Default::default()
        }
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Block::Thinking(i) | Block::Text(i) | Block::Tool(i) = self.block {
            out.extend(event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": i}),
            ));
        }
        self.block = Block::None;
    }

    fn open(&mut self, out: &mut Vec<u8>, block: Value) -> u64 {
        self.close_block(out);
        let i = self.next_index;
        self.next_index += 1;
        self.block = match block["type"].as_str() {
            Some("tool_use") => Block::Tool(i),
            Some("thinking") => Block::Thinking(i),
            _ => Block::Text(i),
        };
        out.extend(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": i, "content_block": block}),
        ));
        i
    }

    pub fn encode(&mut self, ev: &StreamEvent) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        match ev {
            // Relayed events go through `PassthroughEncoder` instead.
            StreamEvent::Raw(_) => return None,
            StreamEvent::Delta(chunk) => {
                if !self.started {
                    self.started = true;
                    let id = chunk.get("id").and_then(Value::as_str).unwrap_or("");
                    let message = json!({"id": message_id(id), "type": "message", "role": "assistant",
                        "model": chunk.get("model").cloned().unwrap_or(Value::Null), "content": [],
                        "stop_reason": null, "stop_sequence": null,
                        "usage": {"input_tokens": 0, "output_tokens": 0}});
                    out.extend(event(
                        "message_start",
                        json!({"type": "message_start", "message": message}),
                    ));
                }
                if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
                    self.usage = serde_json::from_value(u.clone()).ok();
                }
                let choice = chunk.get("choices").and_then(|c| c.get(0));
                let delta = choice.map(|c| &c["delta"]);
                // Reasoning first: a delta may carry the last of it with
                // the first of the answer.
                if let Some(r) = delta.and_then(reasoning_of).filter(|_| self.thinking) {
                    let i = match self.block {
                        Block::Thinking(i) => i,
                        _ => self.open(&mut out, json!({"type": "thinking", "thinking": "", "signature": ""})),
                    };
                    out.extend(event("content_block_delta",
                        json!({"type": "content_block_delta", "index": i, "delta": {"type": "thinking_delta", "thinking": r}})));
                }
                if let Some(text) = delta.and_then(|d| d["content"].as_str()).filter(|t| !t.is_empty()) {
                    let i = match self.block {
                        Block::Text(i) => i,
                        _ => self.open(&mut out, json!({"type": "text", "text": ""})),
                    };
                    out.extend(event("content_block_delta",
                        json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": text}})));
                }
                for call in delta.and_then(|d| d["tool_calls"].as_array()).into_iter().flatten() {
                    if call.get("id").is_some_and(Value::is_string) {
                        let block = json!({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": {}});
                        self.open(&mut out, block);
                        self.tools = true;
                    }
                    if let (Block::Tool(i), Some(args)) = (self.block, call["function"]["arguments"].as_str()) {
                        if !args.is_empty() {
                            out.extend(event(
                                "content_block_delta",
                                json!({"type": "content_block_delta", "index": i,
                                "delta": {"type": "input_json_delta", "partial_json": args}}),
                            ));
                        }
                    }
                }
                if let Some(f) = choice.and_then(|c| c["finish_reason"].as_str()) {
                    self.finish = Some(f.to_string());
                }
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Done { finish_reason } => {
                self.close_block(&mut out);
                let finish = self.finish.as_deref().or(finish_reason.as_deref()).unwrap_or("stop");
                let stop = stop_for_content(finish, self.tools);
                let u = self.usage.unwrap_or_default();
                out.extend(event(
                    "message_delta",
                    json!({"type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": null},
                    "usage": {"input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens}}),
                ));
                out.extend(event("message_stop", json!({"type": "message_stop"})));
            }
            StreamEvent::Error(e) => out.extend(anthropic_error_event(e)),
        }
        (!out.is_empty()).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseDecoder;
    use crate::wire::anthropic::upstream::parse_event;
    use crate::wire::ParseState;

    fn delta(v: Value) -> StreamEvent {
        StreamEvent::Delta(v.as_object().unwrap().clone())
    }

    #[test]
    fn request_translation() {
        let req: MessagesRequest = serde_json::from_value(json!({
            "model": "m", "max_tokens": 64, "system": "be brief", "stop_sequences": ["END"],
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [{"type": "text", "text": "checking"}, {"type": "tool_use", "id": "t1", "name": "get", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}, {"type": "text", "text": "and?"}]}
            ],
            "tools": [{"name": "get", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"}, "stream": true
        }))
        .unwrap();
        let b = to_openai(&req);
        let msgs = b["messages"].as_array().unwrap();
        assert_eq!(msgs[0]["role"], "system");
        assert_eq!(
            msgs[2]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(msgs[3]["role"], "tool");
        assert_eq!(msgs[3]["tool_call_id"], "t1");
        assert_eq!(msgs[4]["content"][0]["text"], "and?");
        assert_eq!(b["tool_choice"], "required");
        assert_eq!(b["stream_options"]["include_usage"], true);
    }

    /// Encoding OpenAI events as Anthropic SSE and parsing them back with the
    /// Anthropic provider gives the same answer: the two translators agree.
    #[test]
    fn encoder_roundtrips_through_the_provider() {
        let evs = [
            delta(
                json!({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi "}}]}),
            ),
            delta(json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "there"}}]})),
            delta(
                json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{\"a\""}}]}}]}),
            ),
            delta(
                json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}, "finish_reason": "tool_calls"}]}),
            ),
            StreamEvent::Usage(Usage {
                prompt_tokens: 3,
                completion_tokens: 5,
                total_tokens: 8,
            }),
            StreamEvent::Done {
                finish_reason: Some("tool_calls".into()),
            },
        ];
        let mut enc = AnthropicEncoder::default();
        let bytes: Vec<u8> = evs.iter().filter_map(|e| enc.encode(e)).flatten().collect();
        let mut d = SseDecoder::default();
        d.push(&bytes);
        let mut st = ParseState::default();
        let mut fold = crate::stream::Fold::new();
        while let Some(ev) = d.next_event().unwrap() {
            for e in parse_event(&mut st, &ev) {
                fold.push(&e).unwrap();
            }
        }
        let v = fold.finish().unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "Hi there");
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["usage"]["total_tokens"], 8);
        let msg = to_message(&v, false);
        assert_eq!(msg["stop_reason"], "tool_use");
        assert_eq!(msg["content"][1]["input"]["a"], 1);
    }

    fn names_and_blocks(bytes: &[u8]) -> Vec<(String, Value)> {
        let mut d = SseDecoder::default();
        d.push(bytes);
        let mut out = vec![];
        while let Some(ev) = d.next_event().unwrap() {
            out.push((ev.event.unwrap_or_default(), serde_json::from_str(&ev.data).unwrap()));
        }
        out
    }

    fn reasoning_stream() -> Vec<StreamEvent> {
        vec![
            delta(
                json!({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": "Let "}}]}),
            ),
            delta(json!({"id": "c", "choices": [{"index": 0, "delta": {"reasoning_content": "me think."}}]})),
            delta(
                json!({"id": "c", "choices": [{"index": 0, "delta": {"reasoning_content": " Done.", "content": "It is"}}]}),
            ),
            delta(json!({"id": "c", "choices": [{"index": 0, "delta": {"content": " 4."}, "finish_reason": "stop"}]})),
            StreamEvent::Done {
                finish_reason: Some("stop".into()),
            },
        ]
    }

    /// `thinking` over an OpenAI-compatible upstream that streams
    /// `reasoning_content`: a thinking block (index 0), then a text block.
    #[test]
    fn reasoning_content_becomes_a_thinking_block() {
        let mut enc = AnthropicEncoder::new(true);
        let bytes: Vec<u8> = reasoning_stream()
            .iter()
            .filter_map(|e| enc.encode(e))
            .flatten()
            .collect();
        let evs = names_and_blocks(&bytes);
        let starts: Vec<&Value> = evs
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(starts.len(), 2, "{evs:?}");
        assert_eq!(starts[0]["index"], 0);
        assert_eq!(starts[0]["content_block"]["type"], "thinking");
        assert_eq!(starts[1]["index"], 1);
        assert_eq!(starts[1]["content_block"]["type"], "text");
        let thinking: String = evs
            .iter()
            .filter(|(_, v)| v["delta"]["type"] == "thinking_delta")
            .map(|(_, v)| v["delta"]["thinking"].as_str().unwrap())
            .collect();
        assert_eq!(thinking, "Let me think. Done.");
        let text: String = evs
            .iter()
            .filter(|(_, v)| v["delta"]["type"] == "text_delta" && v["index"] == 1)
            .map(|(_, v)| v["delta"]["text"].as_str().unwrap())
            .collect();
        assert_eq!(text, "It is 4.");
        // A client that did not ask for thinking gets none.
        let mut enc = AnthropicEncoder::new(false);
        let bytes: Vec<u8> = reasoning_stream()
            .iter()
            .filter_map(|e| enc.encode(e))
            .flatten()
            .collect();
        assert!(!String::from_utf8(bytes).unwrap().contains("thinking"));
    }

    /// The JSON answer carries the same thinking block.
    #[test]
    fn folded_reasoning_becomes_a_thinking_block() {
        let mut fold = crate::stream::Fold::new();
        for e in reasoning_stream() {
            fold.push(&e).unwrap();
        }
        let v = fold.finish().unwrap();
        let msg = to_message(&v, true);
        assert_eq!(
            msg["content"][0],
            json!({"type": "thinking", "thinking": "Let me think. Done.", "signature": ""})
        );
        assert_eq!(msg["content"][1]["text"], "It is 4.");
        assert_eq!(to_message(&v, false)["content"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn thinking_request_asks_for_reasoning() {
        let req: MessagesRequest = serde_json::from_value(json!({
            "model": "m", "max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [{"role": "user", "content": "2+2?"}]
        }))
        .unwrap();
        assert!(req.wants_thinking());
        assert!(to_openai(&req).contains_key("reasoning_effort"));
    }

    /// A `tool_use` block without `input`, and an empty assistant turn,
    /// translate to values OpenAI upstreams accept.
    #[test]
    fn tool_use_without_input_is_empty_arguments_object() {
        let req: MessagesRequest = serde_json::from_value(json!({
            "model": "m", "max_tokens": 64,
            "messages": [
                {"role": "user", "content": "time?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "now"}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "noon"}]}
            ]
        }))
        .unwrap();
        let b = to_openai(&req);
        assert_eq!(b["messages"][1]["tool_calls"][0]["function"]["arguments"], "{}");
    }

    /// An upstream that says `stop` while the content holds tool calls
    /// still ends a tool turn for Anthropic clients, stream and JSON.
    #[test]
    fn stop_reason_follows_the_content() {
        let evs = [
            delta(
                json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]}),
            ),
            delta(json!({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})),
            StreamEvent::Done {
                finish_reason: Some("stop".into()),
            },
        ];
        let mut enc = AnthropicEncoder::new(false);
        let bytes: Vec<u8> = evs.iter().filter_map(|e| enc.encode(e)).flatten().collect();
        assert!(String::from_utf8(bytes)
            .unwrap()
            .contains("\"stop_reason\":\"tool_use\""));
        let mut fold = crate::stream::Fold::new();
        for e in &evs {
            fold.push(e).unwrap();
        }
        assert_eq!(to_message(&fold.finish().unwrap(), false)["stop_reason"], "tool_use");
    }

    #[test]
    fn message_ids_are_prefixed_once() {
        assert_eq!(super::message_id("chatcmpl-1"), "msg_chatcmpl-1");
        assert_eq!(super::message_id("msg_01abc"), "msg_01abc");
    }
}
