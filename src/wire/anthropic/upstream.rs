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

use super::finish_for_content;
use crate::sse::SseEvent;
use crate::stream::{StreamEvent, UpstreamError, Usage};
use crate::wire::openai::chat::{ChatCompletionRequest, ChatMessage, MessageContent, Role, ToolChoice};
use crate::wire::openai::validate::Parsed;
use crate::wire::openai::ValidRequest;
use crate::wire::{parse_retry_after, ParseState};

/// Anthropic requires `max_tokens`; used when the client sets none and no
/// budget is known (a request that did not come through validation).
const DEFAULT_MAX_TOKENS: u32 = 4096;

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

/// A call's `arguments` string as the object `input` Anthropic requires.
/// No arguments (`""`, `null`) is `{}`; arguments the model produced that
/// are not a JSON object are sent as a string field rather than failing the
/// request.
fn tool_input(args: &str) -> Value {
    if args.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(args) {
        Ok(v @ Value::Object(_)) => v,
        Ok(Value::Null) => json!({}),
        _ => json!({"arguments": args}),
    }
}

/// Anthropic `thinking` for an OpenAI `reasoning_effort`, as budgets in
/// tokens (Anthropic's minimum is 1024).
fn thinking_budget(req: &ChatCompletionRequest) -> Option<u32> {
    match req.extra.get("reasoning_effort").and_then(Value::as_str)? {
        "minimal" | "low" => Some(1024),
        "medium" => Some(2048),
        "high" => Some(4096),
        _ => None,
    }
}

fn message_blocks(m: &ChatMessage) -> (&'static str, Vec<Value>) {
    match m.role {
        Role::Assistant => {
            let mut blocks = content_blocks(&m.content);
            for call in m.tool_calls.iter().flatten() {
                let f = call.function.as_ref();
                let args = f.and_then(|f| f.arguments.as_deref()).unwrap_or("");
                let input = tool_input(args);
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
///
/// `budget`: the completion tokens validation reserved for the request (the
/// client's limit, else what the model's `max_output_tokens` and context
/// leave), Anthropic's `max_tokens` when the client set none, so the
/// upstream can never write more than was reserved.
pub fn messages_body(
    req: &ChatCompletionRequest,
    upstream_model: &str,
    budget: Option<u32>,
) -> Result<Map<String, Value>, UpstreamError> {
    if req.n.unwrap_or(1) > 1 {
        return Err(UpstreamError::Unsupported { what: "n > 1" });
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
    let mut max = req
        .max_completion_tokens
        .or(req.max_tokens)
        .or(budget.filter(|b| *b > 0))
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let thinking = thinking_budget(req);
    if let Some(budget) = thinking {
        // Anthropic wants max_tokens above the thinking budget; the
        // client's limit is for the answer, so the budget comes on top.
        if max <= budget {
            max = max.saturating_add(budget);
        }
        body.insert("thinking".into(), json!({"type": "enabled", "budget_tokens": budget}));
    }
    body.insert("max_tokens".into(), max.into());
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    body.insert("messages".into(), messages.into());
    if !system.is_empty() {
        body.insert("system".into(), system.join("\n\n").into());
    }
    // Anthropic's temperature range is 0–1, OpenAI's 0–2. With thinking
    // on, Anthropic refuses sampling changes, so they are left out.
    if let (Some(t), None) = (req.temperature, thinking) {
        body.insert("temperature".into(), t.min(1.0).into());
    }
    if let (Some(p), None) = (req.top_p, thinking) {
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
    // Structured outputs: Anthropic's `output_config.format` takes the
    // schema itself. `json_object` has no counterpart (an open object is
    // not a schema Anthropic constrains to) and stays a prompt matter.
    if let Some(rf) = req.response_format.as_ref().filter(|rf| rf.kind == "json_schema") {
        if let Some(schema) = rf.json_schema.as_ref().map(|j| &j["schema"]).filter(|s| s.is_object()) {
            body.insert(
                "output_config".into(),
                json!({"format": {"type": "json_schema", "schema": schema}}),
            );
        }
    }
    body.insert("stream".into(), true.into());
    Ok(body)
}

/// A Messages `usage` object's prompt tokens in OpenAI's sense: input plus
/// cache writes and reads, saturating (the counts come from outside).
pub(crate) fn prompt_tokens_of(usage: &Value) -> u64 {
    ["input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"]
        .iter()
        .filter_map(|k| usage[*k].as_u64())
        .fold(0, u64::saturating_add)
}

fn usage_of(state: &ParseState) -> Usage {
    Usage {
        prompt_tokens: state.prompt_tokens,
        completion_tokens: state.completion_tokens,
        total_tokens: state.prompt_tokens.saturating_add(state.completion_tokens),
    }
}

/// End a tool block: one that streamed no arguments gets `{}` (a tool with
/// no parameters streams a single empty `input_json_delta`, and `""` is
/// not JSON to any client).
fn close_tool(state: &mut ParseState, block: u64) -> Option<StreamEvent> {
    let idx = state.block_tools.get(&block).copied()?;
    if !state.tool_args_sent.insert(block) {
        return None;
    }
    let call = json!({"index": idx, "function": {"arguments": "{}"}});
    Some(StreamEvent::Delta(chunk(state, json!({"tool_calls": [call]}), None)))
}

fn chunk(state: &ParseState, delta: Value, finish: Option<&str>) -> Map<String, Value> {
    state.chunk(delta, finish)
}

/// The `POST {base}/messages` body for a chat request.
///
/// Returns `UpstreamError::Unsupported` for anything but chat completions.
pub fn request_body(req: &ValidRequest, upstream_model: &str) -> Result<Map<String, Value>, UpstreamError> {
    let Parsed::Chat(chat) = &req.parsed else {
        return Err(UpstreamError::Unsupported {
            what: "this endpoint (only chat completions)",
        });
    };
    messages_body(chat, upstream_model, Some(req.max_output_tokens))
}

/// Map a non-2xx Messages response to an error.
pub fn parse_error(status: u16, retry_after: Option<&str>, body: &[u8]) -> UpstreamError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = v["error"]["message"].as_str().map(str::to_string);
    match status {
        429 => UpstreamError::RateLimited {
            retry_after_secs: parse_retry_after(retry_after),
        },
        401 | 403 => UpstreamError::Unauthorized,
        400 | 404 | 413 | 422 => UpstreamError::InvalidRequest {
            status: if status == 413 { 413 } else { 400 },
            message: message.unwrap_or_else(|| format!("The upstream provider rejected the request (HTTP {status}).")),
            param: None,
        },
        s => UpstreamError::Status { status: s },
    }
}

/// One Messages SSE event as zero or more chunk events.
pub fn parse_event(state: &mut ParseState, ev: &SseEvent) -> Vec<StreamEvent> {
    let Ok(data) = serde_json::from_str::<Value>(&ev.data) else {
        return vec![StreamEvent::Error(UpstreamError::Malformed)];
    };
    let kind = data["type"].as_str().or(ev.event.as_deref()).unwrap_or("");
    match kind {
        "message_start" => {
            let m = &data["message"];
            state.id = m["id"].as_str().unwrap_or("msg").to_string();
            state.model = m["model"].as_str().unwrap_or("").to_string();
            let u = &m["usage"];
            // Counts come from outside: saturate rather than overflow.
            state.prompt_tokens = prompt_tokens_of(u);
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
                    let at = data["index"].as_u64().unwrap_or(0);
                    state.block_tools.insert(at, idx);
                    // The API streams `input: {}` here and the input as
                    // deltas; a proxy in between may send it whole.
                    let args = match &block["input"] {
                        Value::Object(m) if !m.is_empty() => {
                            state.tool_args_sent.insert(at);
                            state.tool_input_given.insert(at);
                            block["input"].to_string()
                        }
                        _ => String::new(),
                    };
                    let call = json!({"index": idx, "id": block["id"], "type": "function",
                        "function": {"name": block["name"], "arguments": args}});
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
                    if part.is_empty() || state.tool_input_given.contains(&block) {
                        return vec![];
                    }
                    state.tool_args_sent.insert(block);
                    let call = json!({"index": idx, "function": {"arguments": part}});
                    vec![StreamEvent::Delta(chunk(state, json!({"tool_calls": [call]}), None))]
                }
                Some("thinking_delta") => match d["thinking"].as_str() {
                    Some(t) if !t.is_empty() => {
                        vec![StreamEvent::Delta(chunk(state, json!({"reasoning_content": t}), None))]
                    }
                    _ => vec![],
                },
                _ => vec![], // signature deltas have no OpenAI counterpart
            }
        }
        "content_block_stop" => {
            let block = data["index"].as_u64().unwrap_or(0);
            close_tool(state, block).into_iter().collect()
        }
        "message_delta" => {
            if let Some(o) = data["usage"]["output_tokens"].as_u64() {
                state.completion_tokens = o;
            }
            if let Some(i) = data["usage"]["input_tokens"].as_u64() {
                state.prompt_tokens = state.prompt_tokens.max(i);
            }
            let Some(r) = data["delta"]["stop_reason"].as_str() else {
                return vec![];
            };
            // The answer is finished here: `message_stop` only closes
            // the stream, and an upstream may hold it open instead.
            let blocks: Vec<u64> = state.block_tools.keys().copied().collect();
            let mut out: Vec<StreamEvent> = blocks.into_iter().filter_map(|b| close_tool(state, b)).collect();
            let finish = finish_for_content(r, state.tools > 0);
            state.finish_reason = Some(finish.to_string());
            out.push(StreamEvent::Delta(chunk(state, json!({}), Some(finish))));
            out.push(StreamEvent::Usage(usage_of(state)));
            out
        }
        "message_stop" => {
            state.done = true;
            vec![StreamEvent::Done {
                finish_reason: state.finish_reason.clone(),
            }]
        }
        "error" => vec![StreamEvent::Error(crate::wire::error_sent_with_2xx(&data["error"]))],
        _ => vec![], // ping and event types added later
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseDecoder;
    use crate::stream::Fold;
    use crate::wire::openai::validate::validate_chat;
    use crate::wire::openai::ModelLimits;

    const C: ModelLimits = ModelLimits {
        context_window: 10_000,
        max_output_tokens: 1000,
    };

    /// Without the client's `max_tokens`, Anthropic's is what validation
    /// reserved (the model's `max_output_tokens` here), not a fixed 4096.
    #[test]
    fn max_tokens_defaults_to_the_reserved_budget() {
        let chat = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        let req = validate_chat(chat.to_string().as_bytes(), 1 << 20, &C).unwrap();
        let b = request_body(&req, "claude").unwrap();
        assert_eq!(b["max_tokens"], C.max_output_tokens);
    }

    /// Structured outputs both ways: chat's `response_format` is Anthropic's
    /// `output_config.format`, and back (`client::to_openai`).
    #[test]
    fn a_json_schema_is_anthropics_output_config() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let chat = json!({"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}});
        let req = validate_chat(chat.to_string().as_bytes(), 1 << 20, &C).unwrap();
        let Parsed::Chat(chat) = &req.parsed else { panic!() };
        let b = messages_body(chat, "claude", None).unwrap();
        assert_eq!(
            b["output_config"],
            json!({"format": {"type": "json_schema", "schema": schema}})
        );
        let back: crate::wire::anthropic::client::MessagesRequest = serde_json::from_value(json!({
            "model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "x"}],
            "output_config": {"format": {"type": "json_schema", "schema": schema}}}))
        .unwrap();
        let openai = crate::wire::anthropic::client::to_openai(&back);
        assert_eq!(openai["response_format"]["type"], "json_schema");
        assert_eq!(openai["response_format"]["json_schema"]["schema"], schema);
    }

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
        let b = messages_body(chat, "claude", None).unwrap();
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
        let mut st = ParseState::default();
        let mut fold = Fold::new();
        while let Some(ev) = d.next_event().unwrap() {
            for e in parse_event(&mut st, &ev) {
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

    /// An `error` event keeps its kind: a rate limit is a 429 to the client
    /// when it comes first, an overload a provider error with its message.
    #[test]
    fn error_events_keep_their_kind() {
        let limited = parse_all(&frame(
            json!({"type":"error","error":{"type":"rate_limit_error","message":"Rate limited"}}),
        ));
        assert!(matches!(
            limited[..],
            [StreamEvent::Error(UpstreamError::RateLimited { .. })]
        ));
        let overloaded = parse_all(&frame(
            json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
        ));
        assert!(matches!(
            overloaded[..],
            [StreamEvent::Error(UpstreamError::StreamError { ref message })] if message == "Overloaded"
        ));
    }

    fn parse_all(sse: &str) -> Vec<StreamEvent> {
        let mut d = SseDecoder::default();
        d.push(sse.as_bytes());
        let mut st = ParseState::default();
        let mut out = vec![];
        while let Some(ev) = d.next_event().unwrap() {
            out.extend(parse_event(&mut st, &ev));
        }
        out
    }

    fn frame(v: Value) -> String {
        format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap())
    }

    fn start() -> String {
        frame(
            json!({"type":"message_start","message":{"id":"msg_1","model":"claude","usage":{"input_tokens":5,"output_tokens":1}}}),
        )
    }

    fn stop(reason: &str) -> String {
        frame(json!({"type":"message_delta","delta":{"stop_reason":reason},"usage":{"output_tokens":3}}))
            + &frame(json!({"type":"message_stop"}))
    }

    fn args_of(evs: &[StreamEvent]) -> String {
        let mut args = String::new();
        for e in evs {
            if let StreamEvent::Delta(c) = e {
                if let Some(a) = c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str() {
                    args.push_str(a);
                }
            }
        }
        args
    }

    /// A tool with no parameters: its only `input_json_delta` is `""`.
    #[test]
    fn tool_use_without_arguments_is_an_empty_object() {
        let sse = start()
            + &frame(
                json!({"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"now","input":{}}}),
            )
            + &frame(
                json!({"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}),
            )
            + &frame(json!({"type":"content_block_stop","index":0}))
            + &stop("tool_use");
        let evs = parse_all(&sse);
        assert_eq!(args_of(&evs), "{}");
        let mut fold = Fold::new();
        for e in &evs {
            fold.push(e).unwrap();
        }
        let v = fold.finish().unwrap();
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{}"
        );
    }

    /// An OpenAI history whose call has `arguments: ""` (or `null`, or a
    /// JSON value that is not an object) still sends an object `input`.
    #[test]
    fn empty_history_arguments_become_an_empty_input() {
        for args in ["", "  ", "null"] {
            let req = validate_chat(
                json!({"model": "m", "messages": [
                    {"role": "user", "content": "time?"},
                    {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "now", "arguments": args}}]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "noon"}
                ]})
                .to_string()
                .as_bytes(),
                1 << 20,
                &C,
            )
            .unwrap();
            let Parsed::Chat(chat) = &req.parsed else { panic!() };
            let b = messages_body(chat, "claude", None).unwrap();
            assert_eq!(b["messages"][1]["content"][0]["input"], json!({}), "{args:?}");
        }
    }

    /// Thinking blocks reach OpenAI clients as `reasoning_content`.
    #[test]
    fn thinking_becomes_reasoning_content() {
        let sse = start()
            + &frame(json!({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}))
            + &frame(
                json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Hmm."}}),
            )
            + &frame(
                json!({"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig"}}),
            )
            + &frame(json!({"type":"content_block_stop","index":0}))
            + &frame(json!({"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}))
            + &frame(json!({"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Yes"}}))
            + &frame(json!({"type":"content_block_stop","index":1}))
            + &stop("end_turn");
        let mut fold = Fold::new();
        for e in &parse_all(&sse) {
            fold.push(e).unwrap();
        }
        let v = fold.finish().unwrap();
        assert_eq!(v["choices"][0]["message"]["reasoning_content"], "Hmm.");
        assert_eq!(v["choices"][0]["message"]["content"], "Yes");
    }

    /// The finish chunk and usage come with `message_delta`, so a stream
    /// whose `message_stop` never arrives is still complete.
    #[test]
    fn message_delta_finishes_the_choice() {
        let evs = parse_all(
            &(start()
                + &frame(
                    json!({"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":3}}),
                )),
        );
        assert!(
            evs.iter()
                .any(|e| matches!(e, StreamEvent::Usage(u) if u.total_tokens == 8)),
            "{evs:?}"
        );
        assert!(evs
            .iter()
            .any(|e| matches!(e, StreamEvent::Delta(c) if c["choices"][0]["finish_reason"] == "length")));
    }

    /// Upstream-supplied counts saturate instead of overflowing.
    #[test]
    fn hostile_token_counts_saturate() {
        let sse = frame(
            json!({"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":u64::MAX,"cache_read_input_tokens":u64::MAX,"output_tokens":1}}}),
        ) + &frame(
            json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":u64::MAX}}),
        ) + &frame(json!({"type":"message_stop"}));
        let evs = parse_all(&sse);
        assert!(evs
            .iter()
            .any(|e| matches!(e, StreamEvent::Usage(u) if u.total_tokens == u64::MAX)));
    }

    /// `stop` with tool calls in the content is a tool-call finish, and
    /// `tool_use` with none is not.
    #[test]
    fn stop_reason_follows_the_content() {
        let sse = start() + &stop("tool_use");
        let mut fold = Fold::new();
        for e in &parse_all(&sse) {
            fold.push(e).unwrap();
        }
        assert_eq!(fold.finish().unwrap()["choices"][0]["finish_reason"], "stop");
    }
}
