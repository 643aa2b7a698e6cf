//! The Responses API (`POST /v1/responses`), both directions, over chat.
//!
//! In: a Responses request becomes the equivalent chat request, which the
//! chat rules validate and every upstream kind serves: `instructions`
//! become a system message; `input` items become messages (`message`),
//! assistant tool calls (`function_call`, consecutive ones in one turn)
//! and tool results (`function_call_output`); function `tools`,
//! `tool_choice`, `text.format` (as `response_format`), `reasoning.effort`
//! and the sampling fields map one to one.
//!
//! Out: a folded chat completion becomes a Response object
//! ([`to_response`]), and a stream becomes the typed semantic events with
//! `sequence_number`s ([`ResponsesEncoder`]): `response.created`,
//! `response.in_progress`, `response.output_item.added`/`.done`,
//! `response.content_part.added`/`.done`, `response.output_text.delta`/
//! `.done`, `response.function_call_arguments.delta`/`.done`, reasoning
//! summary events, then `response.completed`, `response.incomplete`, or
//! an `error` event and `response.failed`.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::validate::ValidationError;
use crate::sse;
use crate::stream::{Fold, StreamEvent};
use crate::wire::error::OpenAiError;

/// `POST /v1/responses` body. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ResponsesRequest {
    pub model: String,
    pub input: Input,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// `{"format": {"type": "text" | "json_object" | "json_schema", ...}}`.
    #[serde(default)]
    pub text: Option<Value>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    /// `{"effort": "low" | "medium" | "high", "summary": ...}`.
    #[serde(default)]
    pub reasoning: Option<Value>,
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub user: Option<String>,
    /// OpenAI's default is `true`.
    #[serde(default)]
    pub store: Option<bool>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub previous_response_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Items(Vec<Value>),
}

impl Input {
    /// The input as items (a string is one user message).
    pub fn items(&self) -> Vec<Value> {
        match self {
            Input::Text(t) => vec![json!({"type": "message", "role": "user", "content": t})],
            Input::Items(items) => items.clone(),
        }
    }
}

fn invalid(param: String, reason: &str) -> ValidationError {
    ValidationError::Invalid {
        param,
        reason: reason.into(),
    }
}

/// A message's `content` (a string or parts) as chat content.
fn content(v: &Value, at: &str) -> Result<Value, ValidationError> {
    let parts = match v {
        Value::String(s) => return Ok(s.as_str().into()),
        Value::Array(parts) => parts,
        _ => {
            return Err(invalid(
                format!("{at}.content"),
                "must be a string or an array of content parts",
            ))
        }
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let part = match p["type"].as_str() {
            Some("input_text" | "output_text" | "text") => match p["text"].as_str() {
                Some(t) => json!({"type": "text", "text": t}),
                None => return Err(invalid(format!("{at}.content[{j}].text"), "must be a string")),
            },
            Some("refusal") => json!({"type": "text", "text": p["refusal"]}),
            Some("input_image") => {
                // A `file_id` names an upload this gateway does not hold.
                let Some(url) = p["image_url"].as_str().filter(|u| !u.is_empty()) else {
                    return Err(invalid(
                        format!("{at}.content[{j}].image_url"),
                        "must be an image URL or a data URL",
                    ));
                };
                let mut image = json!({"url": url});
                if let Some(d) = p["detail"].as_str() {
                    image["detail"] = d.into();
                }
                json!({"type": "image_url", "image_url": image})
            }
            Some("input_file") => {
                let mut file = Map::new();
                for k in ["file_id", "file_data", "filename"] {
                    if let Some(v) = p.get(k).filter(|v| !v.is_null()) {
                        file.insert(k.into(), v.clone());
                    }
                }
                json!({"type": "file", "file": file})
            }
            _ => {
                return Err(invalid(
                    format!("{at}.content[{j}].type"),
                    "is not a supported content type",
                ))
            }
        };
        out.push(part);
    }
    Ok(Value::Array(out))
}

/// Chat messages for Responses items (`at`: the parameter name items
/// report errors under, `input`).
pub fn items_to_messages(items: &[Value], at: &str) -> Result<Vec<Value>, ValidationError> {
    let mut messages: Vec<Value> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let here = format!("{at}[{i}]");
        // A message item may omit `type`.
        let kind = item["type"]
            .as_str()
            .unwrap_or(if item.get("role").is_some() { "message" } else { "" });
        match kind {
            "message" => {
                let role = match item["role"].as_str() {
                    Some(r @ ("user" | "assistant" | "system" | "developer")) => r,
                    _ => {
                        return Err(invalid(
                            format!("{here}.role"),
                            "must be user, assistant, system or developer",
                        ))
                    }
                };
                messages.push(json!({"role": role, "content": content(&item["content"], &here)?}));
            }
            "function_call" => {
                if !item["call_id"].is_string() || !item["name"].is_string() {
                    let missing = if item["call_id"].is_string() { "name" } else { "call_id" };
                    return Err(ValidationError::Missing {
                        param: format!("{here}.{missing}"),
                    });
                }
                let args = match item["arguments"].as_str() {
                    Some(a) if !a.trim().is_empty() => a.to_string(),
                    _ => "{}".to_string(),
                };
                let call = json!({"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": args}});
                // Consecutive calls are one assistant turn, as chat wants.
                match messages.last_mut() {
                    Some(m) if m["role"] == "assistant" && m.get("tool_calls").is_some() => {
                        if let Some(calls) = m["tool_calls"].as_array_mut() {
                            calls.push(call);
                        }
                    }
                    Some(m) if m["role"] == "assistant" && m.get("tool_calls").is_none() => {
                        m["tool_calls"] = json!([call]);
                    }
                    _ => messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
                }
            }
            "function_call_output" => {
                if !item["call_id"].is_string() {
                    return Err(ValidationError::Missing {
                        param: format!("{here}.call_id"),
                    });
                }
                let output = match &item["output"] {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                messages.push(json!({"role": "tool", "tool_call_id": item["call_id"], "content": output}));
            }
            // Reasoning carries nothing a chat upstream can take back.
            "reasoning" => {}
            _ => return Err(invalid(format!("{here}.type"), "is not a supported input item type")),
        }
    }
    Ok(messages)
}

/// The chat request for a Responses request; `history` is the stored
/// items of `previous_response_id` (its input, then its output), if any.
///
/// Returns `ValidationError::Invalid` naming the Responses parameter
/// (`input[2].type`, `tools[0].type`, ...) for what chat cannot express.
pub fn to_chat(req: &ResponsesRequest, history: &[Value]) -> Result<Map<String, Value>, ValidationError> {
    let mut messages = Vec::new();
    if let Some(i) = &req.instructions {
        messages.push(json!({"role": "system", "content": i}));
    }
    messages.extend(items_to_messages(history, "previous_response_id")?);
    messages.extend(items_to_messages(&req.input.items(), "input")?);
    let mut body = Map::new();
    body.insert("model".into(), req.model.clone().into());
    body.insert("messages".into(), messages.into());
    if let Some(tools) = &req.tools {
        let mut out = Vec::with_capacity(tools.len());
        for (i, t) in tools.iter().enumerate() {
            if t["type"] != "function" {
                return Err(invalid(format!("tools[{i}].type"), "only function tools are supported"));
            }
            let mut f = Map::new();
            for k in ["name", "description", "parameters", "strict"] {
                if let Some(v) = t.get(k).filter(|v| !v.is_null()) {
                    f.insert(k.into(), v.clone());
                }
            }
            out.push(json!({"type": "function", "function": f}));
        }
        body.insert("tools".into(), out.into());
    }
    if let Some(tc) = &req.tool_choice {
        let choice = match tc {
            Value::String(_) => tc.clone(),
            _ if tc["type"] == "function" => json!({"type": "function", "function": {"name": tc["name"]}}),
            _ => {
                return Err(invalid(
                    "tool_choice".into(),
                    "must be auto, none, required or a function",
                ))
            }
        };
        body.insert("tool_choice".into(), choice);
    }
    if let Some(p) = req.parallel_tool_calls {
        body.insert("parallel_tool_calls".into(), p.into());
    }
    if req.text.as_ref().is_some_and(|t| !t.is_object()) {
        return Err(invalid("text".into(), "must be an object with a `format`"));
    }
    let format = req.text.as_ref().map(|t| &t["format"]);
    match format.and_then(|f| f["type"].as_str()) {
        None | Some("text") => {}
        Some("json_object") => {
            body.insert("response_format".into(), json!({"type": "json_object"}));
        }
        Some("json_schema") => {
            let f = format.unwrap_or(&Value::Null);
            let mut schema = Map::new();
            for k in ["name", "description", "schema", "strict"] {
                if let Some(v) = f.get(k).filter(|v| !v.is_null()) {
                    schema.insert(k.into(), v.clone());
                }
            }
            body.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": schema}),
            );
        }
        Some(_) => {
            return Err(invalid(
                "text.format.type".into(),
                "must be text, json_object or json_schema",
            ))
        }
    }
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), t.into());
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), p.into());
    }
    if let Some(m) = req.max_output_tokens {
        body.insert("max_tokens".into(), m.into());
    }
    if let Some(e) = req.reasoning.as_ref().map(|r| &r["effort"]).filter(|e| !e.is_null()) {
        match e.as_str() {
            Some(e @ ("minimal" | "low" | "medium" | "high")) => {
                body.insert("reasoning_effort".into(), e.into());
            }
            _ => {
                return Err(invalid(
                    "reasoning.effort".into(),
                    "must be minimal, low, medium or high",
                ))
            }
        }
    }
    if req.previous_response_id.as_deref() == Some("") {
        return Err(invalid(
            "previous_response_id".into(),
            "must be a response id (`resp_...`)",
        ));
    }
    if let Some(u) = &req.user {
        body.insert("user".into(), u.clone().into());
    }
    body.insert("stream".into(), req.stream.unwrap_or(false).into());
    Ok(body)
}

/// An input item as stored and listed by `input_items`: with an id
/// (`msg_…` for messages), a `type`, `status: completed`, and a message's
/// string content as one `input_text` (or, for the assistant,
/// `output_text`) part, as OpenAI lists them.
fn stored_item(mut item: Value, suffix: &str, i: usize) -> Value {
    if item.get("type").is_none() {
        item["type"] = "message".into();
    }
    let is_message = item["type"] == "message";
    if item.get("id").is_none_or(Value::is_null) {
        let prefix = if is_message { "msg" } else { "item" };
        item["id"] = format!("{prefix}_{suffix}_in{i}").into();
    }
    if is_message {
        if let Some(text) = item["content"].as_str().map(str::to_string) {
            let kind = if item["role"] == "assistant" {
                "output_text"
            } else {
                "input_text"
            };
            item["content"] = json!([{"type": kind, "text": text}]);
        }
    }
    if item.get("status").is_none() {
        item["status"] = "completed".into();
    }
    item
}

/// A chat validation error, named as the Responses request names the
/// field: `max_tokens` is `max_output_tokens`, `response_format` is
/// `text.format`, and a message is somewhere in `input` (the stored
/// history and `instructions` shift chat's indices, so none is given).
pub fn rename_params(e: ValidationError) -> ValidationError {
    let rename = |p: String| -> String {
        if p == "max_tokens" {
            "max_output_tokens".into()
        } else if let Some(rest) = p.strip_prefix("response_format") {
            format!("text.format{rest}")
        } else if p.starts_with("messages") {
            "input".into()
        } else if let Some(rest) = p.strip_prefix("reasoning_effort") {
            format!("reasoning.effort{rest}")
        } else {
            p
        }
    };
    match e {
        ValidationError::Missing { param } => ValidationError::Missing { param: rename(param) },
        ValidationError::InvalidType { param, detail } => ValidationError::InvalidType {
            param: rename(param),
            detail,
        },
        ValidationError::Invalid { param, reason } => ValidationError::Invalid {
            param: rename(param),
            reason,
        },
        ValidationError::ContextLength {
            param,
            limit,
            requested,
            prompt,
            completion,
        } => ValidationError::ContextLength {
            param: if param == "max_tokens" {
                "max_output_tokens"
            } else {
                param
            },
            limit,
            requested,
            prompt,
            completion,
        },
        e => e,
    }
}

/// What a Response object echoes from its request, and its identity.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseMeta {
    /// `resp_…`.
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The model the client named.
    pub model: String,
    /// The request's fields the Response echoes (`instructions`, `tools`,
    /// `text`, `metadata`, ...), already with OpenAI's defaults.
    pub echo: Map<String, Value>,
    /// This request's input items, each with an id (for `input_items`).
    pub input_items: Vec<Value>,
    /// The items of `previous_response_id`'s conversation, once loaded.
    pub history: Vec<Value>,
    /// Whether the Response is stored (`store`, default `true`).
    pub store: bool,
    pub request: ResponsesRequest,
}

impl ResponseMeta {
    /// `id_bits`: 128 random bits for the id.
    pub fn new(req: &ResponsesRequest, id_bits: (u64, u64), created_at: u64) -> ResponseMeta {
        let mut echo = Map::new();
        let or = |v: Option<Value>, d: Value| v.filter(|v| !v.is_null()).unwrap_or(d);
        echo.insert(
            "instructions".into(),
            or(req.instructions.clone().map(Value::from), Value::Null),
        );
        echo.insert("tools".into(), or(req.tools.clone().map(Value::from), json!([])));
        echo.insert("tool_choice".into(), or(req.tool_choice.clone(), json!("auto")));
        echo.insert(
            "parallel_tool_calls".into(),
            req.parallel_tool_calls.unwrap_or(true).into(),
        );
        echo.insert("text".into(), or(req.text.clone(), json!({"format": {"type": "text"}})));
        echo.insert("temperature".into(), req.temperature.unwrap_or(1.0).into());
        echo.insert("top_p".into(), req.top_p.unwrap_or(1.0).into());
        echo.insert(
            "max_output_tokens".into(),
            req.max_output_tokens.map_or(Value::Null, Value::from),
        );
        echo.insert("metadata".into(), or(req.metadata.clone(), json!({})));
        echo.insert(
            "reasoning".into(),
            or(req.reasoning.clone(), json!({"effort": null, "summary": null})),
        );
        echo.insert("store".into(), req.store.unwrap_or(true).into());
        echo.insert(
            "previous_response_id".into(),
            req.previous_response_id.clone().map_or(Value::Null, Value::from),
        );
        echo.insert("user".into(), req.user.clone().map_or(Value::Null, Value::from));
        echo.insert("truncation".into(), "disabled".into());
        let id = format!("resp_{:016x}{:016x}", id_bits.0, id_bits.1);
        let suffix = id.trim_start_matches("resp_").to_string();
        let input_items = req
            .input
            .items()
            .into_iter()
            .enumerate()
            .map(|(i, item)| stored_item(item, &suffix, i))
            .collect();
        ResponseMeta {
            id,
            created_at,
            model: req.model.clone(),
            echo,
            input_items,
            history: Vec::new(),
            store: req.store.unwrap_or(true),
            request: req.clone(),
        }
    }

    /// What is stored for a finished Response: the Response, this
    /// request's input items, and the whole conversation so far (history,
    /// input, output), which `previous_response_id` continues from.
    pub fn record(&self, response: &Value) -> Value {
        let mut conversation = self.history.clone();
        conversation.extend(self.input_items.iter().cloned());
        conversation.extend(response["output"].as_array().into_iter().flatten().cloned());
        json!({"v": 1, "response": response, "input_items": self.input_items, "conversation": conversation})
    }

    /// The Response object with `status`, `output` and `usage` filled in.
    fn object(&self, status: &str, output: Vec<Value>, usage: Value, extra: &[(&str, Value)]) -> Value {
        let mut r = Map::new();
        r.insert("id".into(), self.id.clone().into());
        r.insert("object".into(), "response".into());
        r.insert("created_at".into(), self.created_at.into());
        r.insert("status".into(), status.into());
        r.insert("model".into(), self.model.clone().into());
        r.insert("output".into(), output.into());
        r.insert("usage".into(), usage);
        r.insert("error".into(), Value::Null);
        r.insert("incomplete_details".into(), Value::Null);
        for (k, v) in &self.echo {
            r.insert(k.clone(), v.clone());
        }
        for (k, v) in extra {
            r.insert((*k).into(), v.clone());
        }
        Value::Object(r)
    }
}

/// Chat usage as Responses usage.
fn usage(u: &Value) -> Value {
    if !u.is_object() {
        return Value::Null;
    }
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    json!({
        "input_tokens": n(&u["prompt_tokens"]),
        "input_tokens_details": {"cached_tokens": n(&u["prompt_tokens_details"]["cached_tokens"])},
        "output_tokens": n(&u["completion_tokens"]),
        "output_tokens_details": {"reasoning_tokens": n(&u["completion_tokens_details"]["reasoning_tokens"])},
        "total_tokens": n(&u["total_tokens"]),
    })
}

/// `status` and `incomplete_details` for a chat `finish_reason`.
fn status_of(finish: Option<&str>) -> (&'static str, Value) {
    match finish {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// Output items for a folded chat message: reasoning, the message (text or
/// refusal), then one `function_call` per tool call. Item ids are the
/// response id's with the output index, as in a stream.
fn output_items(meta: &ResponseMeta, message: &Value, status: &str) -> Vec<Value> {
    // The message of an incomplete Response is incomplete too.
    let item_status = if status == "completed" { "completed" } else { status };
    let suffix = meta.id.trim_start_matches("resp_");
    let mut out = Vec::new();
    if let Some(r) = super::chat::reasoning_of(message) {
        out.push(json!({"id": format!("rs_{suffix}_0"), "type": "reasoning",
            "summary": [{"type": "summary_text", "text": r}]}));
    }
    let text = message["content"].as_str().filter(|t| !t.is_empty());
    let refusal = message["refusal"].as_str().filter(|t| !t.is_empty());
    if text.is_some() || refusal.is_some() {
        let part = match (text, refusal) {
            (Some(t), _) => json!({"type": "output_text", "text": t, "annotations": []}),
            (None, r) => json!({"type": "refusal", "refusal": r}),
        };
        out.push(
            json!({"id": format!("msg_{suffix}_{}", out.len()), "type": "message", "status": item_status,
            "role": "assistant", "content": [part]}),
        );
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        out.push(
            json!({"id": format!("fc_{suffix}_{}", out.len()), "type": "function_call", "status": "completed",
            "call_id": call["id"], "name": call["function"]["name"],
            "arguments": call["function"]["arguments"]}),
        );
    }
    out
}

/// A folded `chat.completion` as a Response object.
pub fn to_response(completion: &Value, meta: &ResponseMeta) -> Value {
    let choice = &completion["choices"][0];
    let (status, incomplete) = status_of(choice["finish_reason"].as_str());
    meta.object(
        status,
        output_items(meta, &choice["message"], status),
        usage(&completion["usage"]),
        &[("incomplete_details", incomplete)],
    )
}

/// Stream events to the Responses API's typed SSE events.
#[derive(Debug)]
pub struct ResponsesEncoder {
    meta: ResponseMeta,
    seq: u64,
    started: bool,
    /// The final Response is built from the fold of the same events.
    fold: Fold,
    /// Items opened so far, in output order.
    items: Vec<Item>,
    /// The Response of the terminal event, once sent.
    last: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Reasoning {
        id: String,
        text: String,
    },
    Message {
        id: String,
        text: String,
    },
    Call {
        index: u64,
        id: String,
        call_id: String,
        name: String,
        args: String,
    },
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

impl ResponsesEncoder {
    pub fn new(meta: ResponseMeta) -> Self {
        ResponsesEncoder {
            meta,
            seq: 0,
            started: false,
            fold: Fold::new(),
            items: Vec::new(),
            last: None,
        }
    }

    /// The Response the stream ended with (completed, incomplete or
    /// failed), for storing.
    pub fn take_final(&mut self) -> Option<Value> {
        self.last.take()
    }

    fn event(&mut self, kind: &str, mut data: Map<String, Value>, out: &mut Vec<u8>) {
        data.insert("type".into(), kind.into());
        data.insert("sequence_number".into(), self.seq.into());
        self.seq += 1;
        out.extend(sse::encode(Some(kind), &Value::Object(data).to_string()));
    }

    fn suffix(&self) -> String {
        self.meta.id.trim_start_matches("resp_").to_string()
    }

    /// The open item of this kind that text goes to, opening it if needed.
    fn text_item(&mut self, reasoning: bool, out: &mut Vec<u8>) -> usize {
        let found = self.items.iter().rposition(|i| match i {
            Item::Reasoning { .. } => reasoning,
            Item::Message { .. } => !reasoning,
            Item::Call { .. } => false,
        });
        // Text after a later item starts a new one, so the order holds.
        if let Some(at) = found.filter(|at| *at + 1 == self.items.len()) {
            return at;
        }
        let index = self.items.len();
        let suffix = self.suffix();
        let (item, added, part_event, part) = if reasoning {
            let id = format!("rs_{suffix}_{index}");
            let added = json!({"id": id, "type": "reasoning", "summary": []});
            (
                Item::Reasoning {
                    id: id.clone(),
                    text: String::new(),
                },
                added,
                "response.reasoning_summary_part.added",
                json!({"item_id": id, "output_index": index, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}),
            )
        } else {
            let id = format!("msg_{suffix}_{index}");
            let added =
                json!({"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []});
            (
                Item::Message {
                    id: id.clone(),
                    text: String::new(),
                },
                added,
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": []}}),
            )
        };
        self.items.push(item);
        self.event(
            "response.output_item.added",
            obj(json!({"output_index": index, "item": added})),
            out,
        );
        self.event(part_event, obj(part), out);
        index
    }

    fn on_chunk(&mut self, chunk: &Map<String, Value>, out: &mut Vec<u8>) {
        let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else {
            return;
        };
        let d = &choice["delta"];
        if let Some(r) = super::chat::reasoning_of(d) {
            let at = self.text_item(true, out);
            let id = match &mut self.items[at] {
                Item::Reasoning { id, text } => {
                    text.push_str(r);
                    id.clone()
                }
                _ => String::new(),
            };
            self.event(
                "response.reasoning_summary_text.delta",
                obj(json!({"item_id": id, "output_index": at, "summary_index": 0, "delta": r})),
                out,
            );
        }
        if let Some(t) = d["content"].as_str().filter(|t| !t.is_empty()) {
            let at = self.text_item(false, out);
            let id = match &mut self.items[at] {
                Item::Message { id, text } => {
                    text.push_str(t);
                    id.clone()
                }
                _ => String::new(),
            };
            self.event(
                "response.output_text.delta",
                obj(json!({"item_id": id, "output_index": at, "content_index": 0, "delta": t})),
                out,
            );
        }
        for call in d["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().unwrap_or(0);
            let at = match self
                .items
                .iter()
                .position(|i| matches!(i, Item::Call { index: x, .. } if *x == index))
            {
                Some(at) => at,
                None => {
                    let at = self.items.len();
                    let id = format!("fc_{}_{at}", self.suffix());
                    let call_id = call["id"].as_str().unwrap_or_default().to_string();
                    let name = call["function"]["name"].as_str().unwrap_or_default().to_string();
                    let added = json!({"id": id, "type": "function_call", "status": "in_progress",
                        "call_id": call_id, "name": name, "arguments": ""});
                    self.items.push(Item::Call {
                        index,
                        id,
                        call_id,
                        name,
                        args: String::new(),
                    });
                    self.event(
                        "response.output_item.added",
                        obj(json!({"output_index": at, "item": added})),
                        out,
                    );
                    at
                }
            };
            if let Some(frag) = call["function"]["arguments"].as_str().filter(|a| !a.is_empty()) {
                let id = match &mut self.items[at] {
                    Item::Call { id, args, .. } => {
                        args.push_str(frag);
                        id.clone()
                    }
                    _ => String::new(),
                };
                self.event(
                    "response.function_call_arguments.delta",
                    obj(json!({"item_id": id, "output_index": at, "delta": frag})),
                    out,
                );
            }
        }
    }

    /// The `.done` events of every item, in output order; `status` is the
    /// items' (`completed`, or `incomplete` when the Response is).
    fn close_items(&mut self, status: &str, out: &mut Vec<u8>) {
        for (at, item) in self.items.clone().into_iter().enumerate() {
            let done = match item {
                Item::Reasoning { id, text } => {
                    let part = json!({"type": "summary_text", "text": text});
                    self.event(
                        "response.reasoning_summary_text.done",
                        obj(json!({"item_id": id, "output_index": at, "summary_index": 0, "text": text})),
                        out,
                    );
                    self.event(
                        "response.reasoning_summary_part.done",
                        obj(json!({"item_id": id, "output_index": at, "summary_index": 0, "part": part})),
                        out,
                    );
                    json!({"id": id, "type": "reasoning", "summary": [part]})
                }
                Item::Message { id, text } => {
                    let part = json!({"type": "output_text", "text": text, "annotations": []});
                    self.event(
                        "response.output_text.done",
                        obj(json!({"item_id": id, "output_index": at, "content_index": 0, "text": text})),
                        out,
                    );
                    self.event(
                        "response.content_part.done",
                        obj(json!({"item_id": id, "output_index": at, "content_index": 0, "part": part})),
                        out,
                    );
                    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": [part]})
                }
                Item::Call {
                    id,
                    call_id,
                    name,
                    args,
                    ..
                } => {
                    // A call streamed without arguments has none: `{}`.
                    let args = if args.trim().is_empty() { "{}".to_string() } else { args };
                    self.event(
                        "response.function_call_arguments.done",
                        obj(json!({"item_id": id, "output_index": at, "arguments": args})),
                        out,
                    );
                    json!({"id": id, "type": "function_call", "status": "completed", "call_id": call_id,
                        "name": name, "arguments": args})
                }
            };
            self.event(
                "response.output_item.done",
                obj(json!({"output_index": at, "item": done})),
                out,
            );
        }
    }

    /// The output items as the stream told them, with `status`.
    fn output(&self, status: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for item in &self.items {
            out.push(match item {
                Item::Reasoning { id, text } => {
                    json!({"id": id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]})
                }
                Item::Message { id, text } => json!({"id": id, "type": "message", "status": status,
                    "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": []}]}),
                Item::Call {
                    id,
                    call_id,
                    name,
                    args,
                    ..
                } => json!({"id": id, "type": "function_call",
                    "status": "completed", "call_id": call_id, "name": name,
                    "arguments": if args.trim().is_empty() { "{}" } else { args.as_str() }}),
            });
        }
        out
    }

    /// The bytes for one event; `None` when it produces none.
    pub fn encode(&mut self, ev: &StreamEvent) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            let r = self.meta.object("in_progress", vec![], Value::Null, &[]);
            self.event("response.created", obj(json!({"response": r})), &mut out);
            let r = self.meta.object("in_progress", vec![], Value::Null, &[]);
            self.event("response.in_progress", obj(json!({"response": r})), &mut out);
        }
        // The fold only reads; a failure of its own (size) ends in `failed`.
        let folded = self.fold.push(ev);
        match ev {
            StreamEvent::Delta(chunk) => self.on_chunk(chunk, &mut out),
            StreamEvent::Usage(_) | StreamEvent::Raw(_) => {}
            StreamEvent::Done { finish_reason } if folded.is_ok() => {
                let (status, incomplete) = status_of(finish_reason.as_deref());
                let item_status = if status == "completed" {
                    "completed"
                } else {
                    "incomplete"
                };
                self.close_items(item_status, &mut out);
                let usage = self
                    .fold
                    .usage()
                    .map_or(Value::Null, |u| usage(&serde_json::to_value(u).unwrap_or(Value::Null)));
                let r = self.meta.object(
                    status,
                    self.output(item_status),
                    usage,
                    &[("incomplete_details", incomplete)],
                );
                let kind = if status == "completed" {
                    "response.completed"
                } else {
                    "response.incomplete"
                };
                self.last = Some(r.clone());
                self.event(kind, obj(json!({"response": r})), &mut out);
            }
            StreamEvent::Done { .. } => self.failed(
                "The response exceeded the gateway's size limit.",
                "upstream_response_too_large",
                &mut out,
            ),
            StreamEvent::Error(e) => {
                let code = e.code().unwrap_or("upstream_error");
                self.failed(&e.to_string(), code, &mut out);
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// An `error` event, then `response.failed` with what was generated.
    fn failed(&mut self, message: &str, code: &str, out: &mut Vec<u8>) {
        self.event(
            "error",
            obj(json!({"code": code, "message": message, "param": null})),
            out,
        );
        let error = json!({"code": code, "message": message});
        let r = self
            .meta
            .object("failed", self.output("incomplete"), Value::Null, &[("error", error)]);
        self.last = Some(r.clone());
        self.event("response.failed", obj(json!({"response": r})), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> ResponsesRequest {
        serde_json::from_value(v).unwrap()
    }

    fn meta() -> ResponseMeta {
        ResponseMeta::new(&req(json!({"model": "m", "input": "x"})), (1, 2), 1_700_000_000)
    }

    #[test]
    fn a_tool_loop_translates_to_chat() {
        let r = req(json!({
            "model": "m", "instructions": "be brief", "max_output_tokens": 50,
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "weather?"},
                    {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]},
                {"type": "function_call", "call_id": "call_1", "name": "get", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call", "call_id": "call_2", "name": "get", "arguments": ""},
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
                {"type": "function_call_output", "call_id": "call_2", "output": {"t": 20}}
            ],
            "tools": [{"type": "function", "name": "get", "parameters": {"type": "object"}, "strict": true}],
            "tool_choice": {"type": "function", "name": "get"},
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}},
            "reasoning": {"effort": "low"}
        }));
        let chat = to_chat(&r, &[]).unwrap();
        let m = chat["messages"].as_array().unwrap();
        assert_eq!(m[0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(
            m[1]["content"][1],
            json!({"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}})
        );
        // Two consecutive calls are one assistant turn; empty arguments are `{}`.
        assert_eq!(m[2]["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(m[2]["tool_calls"][1]["function"]["arguments"], "{}");
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "call_1", "content": "sunny"})
        );
        assert_eq!(m[4]["content"], "{\"t\":20}");
        assert_eq!(chat["tools"][0]["function"]["strict"], true);
        assert_eq!(
            chat["tool_choice"],
            json!({"type": "function", "function": {"name": "get"}})
        );
        assert_eq!(chat["response_format"]["json_schema"]["name"], "w");
        assert_eq!(chat["max_tokens"], 50);
        assert_eq!(chat["reasoning_effort"], "low");
    }

    #[test]
    fn what_chat_cannot_express_names_the_parameter() {
        let bad_tool = req(json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}));
        assert!(to_chat(&bad_tool, &[])
            .unwrap_err()
            .to_string()
            .contains("tools[0].type"));
        let bad_item = req(json!({"model": "m", "input": [{"type": "computer_call"}]}));
        assert!(to_chat(&bad_item, &[])
            .unwrap_err()
            .to_string()
            .contains("input[0].type"));
        for (body, param) in [
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image"}]}]}),
                "input[0].content[0].image_url",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": null}]}),
                "input[0].content",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}),
                "input[0].call_id",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]}),
                "input[0].call_id",
            ),
            (json!({"model": "m", "input": "x", "text": "plain"}), "text"),
            (
                json!({"model": "m", "input": "x", "reasoning": {"effort": "extreme"}}),
                "reasoning.effort",
            ),
            (
                json!({"model": "m", "input": "x", "previous_response_id": ""}),
                "previous_response_id",
            ),
        ] {
            let e = to_chat(&req(body.clone()), &[]).unwrap_err();
            assert_eq!(e.param().as_deref(), Some(param), "{body}: {e}");
        }
        let chat_named = ValidationError::Invalid {
            param: "max_tokens".into(),
            reason: "must be at least 1".into(),
        };
        assert_eq!(rename_params(chat_named).param().as_deref(), Some("max_output_tokens"));
    }

    #[test]
    fn a_completion_becomes_a_response() {
        let completion = json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Checking.", "reasoning_content": "think",
            "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "get", "arguments": "{}"}}]}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10,
                "prompt_tokens_details": {"cached_tokens": 4}}});
        let r = to_response(&completion, &meta());
        assert_eq!(r["status"], "completed");
        let kinds: Vec<&str> = r["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["reasoning", "message", "function_call"]);
        assert_eq!(r["output"][2]["call_id"], "call_9");
        assert_eq!(r["usage"]["input_tokens"], 7);
        assert_eq!(r["usage"]["input_tokens_details"]["cached_tokens"], 4);
        assert_eq!(r["usage"]["total_tokens"], 10);
        let cut = json!({"choices": [{"finish_reason": "length", "message": {"content": "a"}}]});
        let r = to_response(&cut, &meta());
        assert_eq!(
            (r["status"].as_str(), r["incomplete_details"]["reason"].as_str()),
            (Some("incomplete"), Some("max_output_tokens"))
        );
    }

    fn chunk(delta: Value, finish: Value) -> StreamEvent {
        StreamEvent::Delta(obj(
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        ))
    }

    fn events(bytes: &[u8]) -> Vec<Value> {
        let mut d = crate::sse::SseDecoder::default();
        d.push(bytes);
        let mut out = vec![];
        while let Some(e) = d.next_event().unwrap() {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            assert_eq!(e.event.as_deref(), v["type"].as_str(), "event: names the type");
            out.push(v);
        }
        out
    }

    #[test]
    fn a_stream_becomes_typed_events_in_order() {
        let mut enc = ResponsesEncoder::new(meta());
        let evs = [
            chunk(json!({"role": "assistant", "content": "Hel"}), Value::Null),
            chunk(json!({"content": "lo"}), Value::Null),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get", "arguments": "{\"a\""}}]}),
                Value::Null,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
                Value::Null,
            ),
            chunk(json!({}), json!("tool_calls")),
            StreamEvent::Usage(crate::stream::Usage {
                prompt_tokens: 5,
                completion_tokens: 4,
                total_tokens: 9,
            }),
            StreamEvent::Done {
                finish_reason: Some("tool_calls".into()),
            },
        ];
        let bytes: Vec<u8> = evs.iter().filter_map(|e| enc.encode(e)).flatten().collect();
        let all = events(&bytes);
        let types: Vec<&str> = all.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let seqs: Vec<u64> = all.iter().map(|e| e["sequence_number"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (0..all.len() as u64).collect::<Vec<_>>());
        let done = &all.last().unwrap()["response"];
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["output"][1]["arguments"], "{\"a\":1}");
        assert_eq!(done["usage"]["output_tokens"], 4);
    }

    #[test]
    fn a_failure_after_the_first_byte_is_response_failed() {
        let mut enc = ResponsesEncoder::new(meta());
        let mut bytes = enc.encode(&chunk(json!({"content": "par"}), Value::Null)).unwrap();
        bytes.extend(
            enc.encode(&StreamEvent::Error(crate::stream::UpstreamError::Interrupted))
                .unwrap(),
        );
        let all = events(&bytes);
        let error = &all[all.len() - 2];
        assert_eq!(error["type"], "error");
        assert_eq!(error["code"], "upstream_interrupted");
        let last = all.last().unwrap();
        assert_eq!(last["type"], "response.failed");
        assert_eq!(last["response"]["status"], "failed");
        assert_eq!(last["response"]["error"]["code"], "upstream_interrupted");
        assert_eq!(last["response"]["output"][0]["content"][0]["text"], "par");
    }
}
