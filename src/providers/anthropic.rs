//! Anthropic's Messages API, translated from and to OpenAI's chat format.
//!
//! Requests: system and developer messages become the top-level `system`;
//! assistant `tool_calls` become `tool_use` blocks; `tool` messages become
//! `tool_result` blocks in a user turn; consecutive turns of one role are
//! merged, since the API wants them alternating. Responses: the Messages
//! SSE sequence (`message_start`, `content_block_*`, `message_delta`,
//! `message_stop`) becomes `chat.completion.chunk`s. Tool calls get
//! OpenAI indices in the order their blocks start, so a `tool_use` block at
//! content index 3 may be tool call 0; arguments stream through as
//! `input_json_delta` fragments, unparsed.

use serde_json::{json, Map, Value};

use super::{parse_retry_after, ParseState, ProviderApi, ProviderError};
use crate::api::chat::{ChatCompletionRequest, ChatMessage, MessageContent, Role, ToolChoice};
use crate::api::validate::Parsed;
use crate::api::{Usage, ValidRequest};
use crate::config::{Provider, Secret};
use crate::platform::HttpRequest;
use crate::sse::SseEvent;
use crate::stream::StreamEvent;

pub const API_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; used when the client sets none.
const DEFAULT_MAX_TOKENS: u32 = 4096;

#[derive(Debug, Clone)]
pub struct Anthropic {
    base_url: String,
    api_key: Option<Secret>,
}

impl Anthropic {
    pub fn new(p: &Provider) -> Self {
        Anthropic {
            base_url: p.base_url.clone(),
            api_key: p.api_key.clone(),
        }
    }
}

/// OpenAI `finish_reason` for an Anthropic `stop_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop", // end_turn, stop_sequence, pause_turn
    }
}

/// An image part as an Anthropic image block: data URLs inline, others by URL.
fn image_block(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:") {
        if let Some((meta, data)) = rest.split_once(',') {
            let media_type = meta.trim_end_matches(";base64");
            return json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}});
        }
    }
    json!({"type": "image", "source": {"type": "url", "url": url}})
}

fn content_blocks(content: &Option<MessageContent>) -> Vec<Value> {
    match content {
        None => vec![],
        Some(MessageContent::Text(t)) if t.is_empty() => vec![],
        Some(MessageContent::Text(t)) => vec![json!({"type": "text", "text": t})],
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .filter_map(|p| match p.kind.as_str() {
                "text" => p.text.as_ref().map(|t| json!({"type": "text", "text": t})),
                "image_url" => p
                    .image_url
                    .as_ref()
                    .and_then(|i| i.get("url").and_then(Value::as_str).map(image_block)),
                _ => None,
            })
            .collect(),
    }
}

fn message_blocks(m: &ChatMessage) -> (&'static str, Vec<Value>) {
    match m.role {
        Role::Assistant => {
            let mut blocks = content_blocks(&m.content);
            for call in m.tool_calls.iter().flatten() {
                let f = call.function.as_ref();
                let args = f.and_then(|f| f.arguments.as_deref()).unwrap_or("{}");
                // Arguments the model produced may not be valid JSON; send
                // them as a string field rather than failing the request.
                let input = serde_json::from_str::<Value>(args).unwrap_or_else(|_| json!({"arguments": args}));
                blocks.push(json!({
                    "type": "tool_use",
                    "id": call.id.clone().unwrap_or_default(),
                    "name": f.and_then(|f| f.name.clone()).unwrap_or_default(),
                    "input": input,
                }));
            }
            ("assistant", blocks)
        }
        Role::Tool | Role::Function => {
            let text = m.content.as_ref().map(MessageContent::joined_text).unwrap_or_default();
            let id = m.tool_call_id.clone().or_else(|| m.name.clone()).unwrap_or_default();
            (
                "user",
                vec![json!({"type": "tool_result", "tool_use_id": id, "content": text})],
            )
        }
        _ => ("user", content_blocks(&m.content)),
    }
}

/// The Messages API body for a chat request.
pub fn messages_body(req: &ChatCompletionRequest, upstream_model: &str) -> Result<Map<String, Value>, ProviderError> {
    if req.n.unwrap_or(1) > 1 {
        return Err(ProviderError::Unsupported { what: "n > 1" });
    }
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in &req.messages {
        if matches!(m.role, Role::System | Role::Developer) {
            if let Some(c) = &m.content {
                system.push(c.joined_text());
            }
            continue;
        }
        let (role, blocks) = message_blocks(m);
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((r, b)) if *r == role => b.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), upstream_model.into());
    let max = req
        .max_completion_tokens
        .or(req.max_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    body.insert("max_tokens".into(), max.into());
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    body.insert("messages".into(), messages.into());
    if !system.is_empty() {
        body.insert("system".into(), system.join("\n\n").into());
    }
    // Anthropic's temperature range is 0–1, OpenAI's 0–2.
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), t.min(1.0).into());
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), p.into());
    }
    if let Some(stop) = &req.stop {
        body.insert("stop_sequences".into(), stop.as_vec().into());
    }
    if let Some(tools) = &req.tools {
        let defs: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.function.as_ref())
            .map(|f| {
                let mut d =
                    json!({"name": f.name, "input_schema": f.parameters.clone().unwrap_or(json!({"type": "object"}))});
                if let Some(desc) = &f.description {
                    d["description"] = desc.clone().into();
                }
                d
            })
            .collect();
        if !defs.is_empty() {
            body.insert("tools".into(), defs.into());
        }
    }
    let disable_parallel = req.parallel_tool_calls == Some(false);
    let choice = match &req.tool_choice {
        Some(ToolChoice::Mode(m)) if m == "none" => Some(json!({"type": "none"})),
        Some(ToolChoice::Mode(m)) if m == "required" => Some(json!({"type": "any"})),
        Some(ToolChoice::Named(n)) => n.function.as_ref().map(|f| json!({"type": "tool", "name": f.name})),
        Some(_) => Some(json!({"type": "auto"})),
        None if disable_parallel && body.contains_key("tools") => Some(json!({"type": "auto"})),
        None => None,
    };
    if let Some(mut c) = choice {
        if disable_parallel && c["type"] != "none" {
            c["disable_parallel_tool_use"] = true.into();
        }
        body.insert("tool_choice".into(), c);
    }
    if let Some(user) = &req.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    body.insert("stream".into(), true.into());
    Ok(body)
}

fn chunk(state: &ParseState, delta: Value, finish: Option<&str>) -> Map<String, Value> {
    let v = json!({
        "id": state.id,
        "object": "chat.completion.chunk",
        "created": state.created,
        "model": state.model,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

impl ProviderApi for Anthropic {
    fn build_request(
        &self,
        req: &ValidRequest,
        upstream_model: &str,
        _now_ms: u64,
    ) -> Result<HttpRequest, ProviderError> {
        let Parsed::Chat(chat) = &req.parsed else {
            return Err(ProviderError::Unsupported {
                what: "this endpoint (only chat completions)",
            });
        };
        let body = messages_body(chat, upstream_model)?;
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("accept".to_string(), "text/event-stream".to_string()),
            ("anthropic-version".to_string(), API_VERSION.to_string()),
        ];
        if let Some(k) = &self.api_key {
            headers.push(("x-api-key".into(), k.expose().to_string()));
        }
        Ok(HttpRequest {
            method: "POST",
            url: format!("{}/messages", self.base_url),
            headers,
            body: serde_json::to_vec(&Value::Object(body)).unwrap_or_default().into(),
        })
    }

    fn parse_error(&self, status: u16, retry_after: Option<&str>, body: &[u8]) -> ProviderError {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let message = v["error"]["message"].as_str().map(str::to_string);
        match status {
            429 => ProviderError::RateLimited {
                retry_after_secs: parse_retry_after(retry_after),
            },
            401 | 403 => ProviderError::Unauthorized,
            400 | 404 | 413 | 422 => ProviderError::InvalidRequest {
                status: if status == 413 { 413 } else { 400 },
                message: message
                    .unwrap_or_else(|| format!("The upstream provider rejected the request (HTTP {status}).")),
                param: None,
            },
            s => ProviderError::Status { status: s },
        }
    }

    fn parse_event(&self, state: &mut ParseState, ev: &SseEvent) -> Vec<StreamEvent> {
        let Ok(data) = serde_json::from_str::<Value>(&ev.data) else {
            return vec![StreamEvent::Error(ProviderError::Malformed)];
        };
        let kind = data["type"].as_str().or(ev.event.as_deref()).unwrap_or("");
        match kind {
            "message_start" => {
                let m = &data["message"];
                state.id = m["id"].as_str().unwrap_or("msg").to_string();
                state.model = m["model"].as_str().unwrap_or("").to_string();
                let u = &m["usage"];
                state.prompt_tokens = ["input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"]
                    .iter()
                    .filter_map(|k| u[*k].as_u64())
                    .sum();
                state.completion_tokens = u["output_tokens"].as_u64().unwrap_or(0);
                vec![StreamEvent::Delta(chunk(
                    state,
                    json!({"role": "assistant", "content": ""}),
                    None,
                ))]
            }
            "content_block_start" => {
                let block = &data["content_block"];
                match block["type"].as_str() {
                    Some("tool_use") => {
                        let idx = state.tools;
                        state.tools += 1;
                        state.block_tools.insert(data["index"].as_u64().unwrap_or(0), idx);
                        let call = json!({"index": idx, "id": block["id"], "type": "function",
                            "function": {"name": block["name"], "arguments": ""}});
                        vec![StreamEvent::Delta(chunk(state, json!({"tool_calls": [call]}), None))]
                    }
                    Some("text") => match block["text"].as_str() {
                        Some(t) if !t.is_empty() => vec![StreamEvent::Delta(chunk(state, json!({"content": t}), None))],
                        _ => vec![],
                    },
                    _ => vec![],
                }
            }
            "content_block_delta" => {
                let d = &data["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => {
                        let t = d["text"].as_str().unwrap_or("");
                        vec![StreamEvent::Delta(chunk(state, json!({"content": t}), None))]
                    }
                    Some("input_json_delta") => {
                        let block = data["index"].as_u64().unwrap_or(0);
                        let Some(idx) = state.block_tools.get(&block).copied() else {
                            return vec![];
                        };
                        let part = d["partial_json"].as_str().unwrap_or("");
                        let call = json!({"index": idx, "function": {"arguments": part}});
                        vec![StreamEvent::Delta(chunk(state, json!({"tool_calls": [call]}), None))]
                    }
                    _ => vec![], // thinking and signature deltas have no OpenAI chunk
                }
            }
            "message_delta" => {
                if let Some(r) = data["delta"]["stop_reason"].as_str() {
                    state.finish_reason = Some(finish_reason(r).to_string());
                }
                if let Some(o) = data["usage"]["output_tokens"].as_u64() {
                    state.completion_tokens = o;
                }
                if let Some(i) = data["usage"]["input_tokens"].as_u64() {
                    state.prompt_tokens = state.prompt_tokens.max(i);
                }
                vec![]
            }
            "message_stop" => {
                state.done = true;
                let finish = state.finish_reason.clone().unwrap_or_else(|| "stop".into());
                let usage = Usage {
                    prompt_tokens: state.prompt_tokens,
                    completion_tokens: state.completion_tokens,
                    total_tokens: state.prompt_tokens + state.completion_tokens,
                };
                vec![
                    StreamEvent::Delta(chunk(state, json!({}), Some(&finish))),
                    StreamEvent::Usage(usage),
                    StreamEvent::Done {
                        finish_reason: Some(finish),
                    },
                ]
            }
            "error" => {
                let message = data["error"]["message"].as_str().unwrap_or("unknown error").to_string();
                vec![StreamEvent::Error(ProviderError::StreamError { message })]
            }
            _ => vec![], // ping and event types added later
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::validate::validate_chat;
    use crate::api::ModelLimits;
    use crate::sse::SseDecoder;
    use crate::stream::Fold;

    const C: ModelLimits = ModelLimits {
        context_window: 10_000,
        max_output_tokens: 1000,
    };

    #[test]
    fn translates_request() {
        let req = validate_chat(
            serde_json::json!({"model": "m", "temperature": 1.5, "stop": "END", "max_tokens": 50,
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "weather?"},
                    {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get", "arguments": "{\"city\":\"Paris\"}"}}]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                    {"role": "user", "content": [{"type": "text", "text": "thanks"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}
                ],
                "tools": [{"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}],
                "tool_choice": "required", "parallel_tool_calls": false})
            .to_string()
            .as_bytes(),
            1 << 20,
            &C,
        )
        .unwrap();
        let Parsed::Chat(chat) = &req.parsed else { panic!() };
        let b = messages_body(chat, "claude").unwrap();
        assert_eq!(b["system"], "be brief");
        assert_eq!(b["temperature"], 1.0);
        assert_eq!(b["stop_sequences"], json!(["END"]));
        let msgs = b["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 3, "{msgs:?}"); // user, assistant, user (tool_result merged with the next user turn)
        assert_eq!(msgs[1]["content"][0]["type"], "tool_use");
        assert_eq!(msgs[1]["content"][0]["input"]["city"], "Paris");
        assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
        assert_eq!(msgs[2]["content"][2]["source"]["media_type"], "image/png");
        assert_eq!(
            b["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        assert_eq!(b["tools"][0]["input_schema"]["type"], "object");
    }

    #[test]
    fn translates_stream_with_tool_call() {
        let sse = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude\",\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: ping\ndata: {\"type\":\"ping\"}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Let me check\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get\",\"input\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\":\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":20}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let mut d = SseDecoder::default();
        d.push(sse.as_bytes());
        let p = Anthropic {
            base_url: String::new(),
            api_key: None,
        };
        let mut st = ParseState::default();
        let mut fold = Fold::new();
        while let Some(ev) = d.next_event().unwrap() {
            for e in p.parse_event(&mut st, &ev) {
                fold.push(&e).unwrap();
            }
        }
        assert_eq!(fold.usage().unwrap().total_tokens, 32);
        let v = fold.finish().unwrap();
        let msg = &v["choices"][0]["message"];
        assert_eq!(msg["content"], "Let me check");
        assert_eq!(msg["tool_calls"][0]["id"], "toolu_1");
        assert_eq!(msg["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    }
}
