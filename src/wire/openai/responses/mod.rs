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
//!
//! # Layout
//! - `mod.rs` (this file): the request types and the request direction,
//!   Responses → chat ([`to_chat`]), with errors named as the Responses
//!   request names its fields ([`rename_params`]).
//! - `response`: [`ResponseMeta`] (a Response's identity and echoed
//!   fields, its stored record) and a folded completion as a Response.
//! - `encode`: [`ResponsesEncoder`], stream events to the typed events.
//! - `native`: both directions with an upstream that serves the Responses
//!   API itself: the client's body out, its events relayed in and read on
//!   the side as chat chunks.
//! - `stored`: a finished Response as the events that would have streamed
//!   it (`GET /v1/responses/{id}?stream=true`).

mod encode;
pub mod native;
mod response;
pub mod stored;
#[cfg(test)]
mod tests;

pub use encode::ResponsesEncoder;
pub use response::{to_response, ResponseMeta};

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::validate::ValidationError;

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
    /// `"auto"` drops the oldest turns when the conversation is longer
    /// than the model's context window; `"disabled"` (the default) makes
    /// that a 400.
    #[serde(default)]
    pub truncation: Option<String>,
    /// Refused: a background Response would outlive the request, and the
    /// gateway holds no job queue for the Responses API.
    #[serde(default)]
    pub background: Option<bool>,
}

impl ResponsesRequest {
    /// Whether `truncation` is `"auto"`.
    pub fn truncates(&self) -> bool {
        self.truncation.as_deref() == Some("auto")
    }
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

/// A message's `content` (a string or parts) as chat content. `native`:
/// parts chat has no form for are left out instead of refused (they go to
/// an upstream that serves the Responses API in the client's body).
fn content(v: &Value, at: &str, native: bool) -> Result<Value, ValidationError> {
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
            _ if native => continue,
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
/// report errors under, `input`). `native`: items chat has no form for
/// (`web_search_call`, `file_search_call`, `item_reference`, ...) are left
/// out instead of refused: they go to an upstream that serves the
/// Responses API, in the client's body or the inlined conversation.
pub fn items_to_messages(items: &[Value], at: &str, native: bool) -> Result<Vec<Value>, ValidationError> {
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
                messages.push(json!({"role": role, "content": content(&item["content"], &here, native)?}));
            }
            "function_call" => {
                if !item["call_id"].is_string() || !item["name"].is_string() {
                    let missing = if item["call_id"].is_string() { "name" } else { "call_id" };
                    return Err(ValidationError::Missing {
                        param: format!("{here}.{missing}"),
                    });
                }
                // A JSON document as a string, as the model wrote it; an
                // object here is a client bug that would otherwise reach the
                // model as `{}`.
                let args = match &item["arguments"] {
                    Value::String(a) if !a.trim().is_empty() => a.clone(),
                    Value::String(_) | Value::Null => "{}".to_string(),
                    _ => {
                        return Err(ValidationError::InvalidType {
                            param: format!("{here}.arguments"),
                            detail: "expected a string (the arguments as JSON)".into(),
                        })
                    }
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
                let output =
                    match &item["output"] {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        // Content parts: their text, as the model should read it.
                        Value::Array(parts) => {
                            let mut text = String::new();
                            for (j, p) in parts.iter().enumerate() {
                                match (p["type"].as_str(), p["text"].as_str()) {
                                    (Some("input_text" | "output_text" | "text"), Some(t)) => text.push_str(t),
                                    _ if native => {}
                                    _ => return Err(invalid(
                                        format!("{here}.output[{j}].type"),
                                        "only text parts are supported in a tool's output by this model's upstreams",
                                    )),
                                }
                            }
                            text
                        }
                        // Not in the API, but unambiguous: the value as JSON.
                        other => other.to_string(),
                    };
                messages.push(json!({"role": "tool", "tool_call_id": item["call_id"], "content": output}));
            }
            // Reasoning carries nothing a chat upstream can take back.
            "reasoning" => {}
            _ if native => {}
            _ => return Err(invalid(format!("{here}.type"), "is not a supported input item type")),
        }
    }
    Ok(messages)
}

/// The request's own fields that chat has no rules for: `text` and
/// `text.format` are objects, `metadata` is at most 16 string pairs (keys
/// up to 64 characters, values up to 512, as OpenAI bounds them),
/// `truncation` is `auto` or `disabled`, `background` is not asked for.
fn check_fields(req: &ResponsesRequest) -> Result<(), ValidationError> {
    if let Some(t) = &req.text {
        if !t.is_object() {
            return Err(invalid("text".into(), "must be an object with a `format`"));
        }
        if t.get("format").is_some_and(|f| !f.is_object() && !f.is_null()) {
            return Err(invalid(
                "text.format".into(),
                "must be an object such as {\"type\": \"json_object\"}",
            ));
        }
    }
    match &req.metadata {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            if m.len() > 16 {
                return Err(invalid("metadata".into(), "must have at most 16 keys"));
            }
            for (k, v) in m {
                if k.chars().count() > 64 {
                    return Err(invalid("metadata".into(), "keys must be at most 64 characters"));
                }
                match v.as_str() {
                    Some(v) if v.chars().count() <= 512 => {}
                    Some(_) => return Err(invalid(format!("metadata.{k}"), "must be at most 512 characters")),
                    None => return Err(invalid(format!("metadata.{k}"), "must be a string")),
                }
            }
        }
        Some(_) => return Err(invalid("metadata".into(), "must be an object of string values")),
    }
    match req.truncation.as_deref() {
        None | Some("auto" | "disabled") => {}
        Some(_) => return Err(invalid("truncation".into(), "must be auto or disabled")),
    }
    if req.background == Some(true) {
        return Err(invalid(
            "background".into(),
            "background Responses are not supported; stream the Response instead",
        ));
    }
    Ok(())
}

/// `tool_choice`: `auto`, `none`, `required`, a function of `tools` by
/// name, or a built-in tool's type (judged where it is served).
fn check_tool_choice(req: &ResponsesRequest) -> Result<(), ValidationError> {
    let Some(tc) = &req.tool_choice else {
        return Ok(());
    };
    match tc {
        Value::String(m) if matches!(m.as_str(), "auto" | "none" | "required") => Ok(()),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let Some(name) = o.get("name").and_then(Value::as_str) else {
                return Err(ValidationError::Missing {
                    param: "tool_choice.name".into(),
                });
            };
            let defined = req
                .tools
                .iter()
                .flatten()
                .any(|t| t["type"] == "function" && t["name"] == name);
            if defined {
                Ok(())
            } else {
                Err(invalid(
                    "tool_choice.name".into(),
                    &format!(
                        "no function named '{}' is defined in 'tools'",
                        name.chars().take(64).collect::<String>()
                    ),
                ))
            }
        }
        Value::Object(o) if o.get("type").is_some_and(Value::is_string) => Ok(()),
        _ => Err(invalid(
            "tool_choice".into(),
            "must be auto, none, required, {\"type\": \"function\", \"name\": ...} or a built-in tool's type",
        )),
    }
}

/// The chat request for a Responses request; `history` is the stored
/// items of `previous_response_id` (its input, then its output), if any.
/// `native`: every upstream of the model serves the Responses API itself,
/// so built-in tools (`web_search`, `file_search`, ...) go to it in the
/// client's body and are left out of the chat request, which then only
/// serves validation and accounting.
///
/// Returns `ValidationError::Invalid` naming the Responses parameter
/// (`input[2].type`, `tools[0].type`, `metadata`, ...) for what is
/// malformed or what chat cannot express.
pub fn to_chat(req: &ResponsesRequest, history: &[Value], native: bool) -> Result<Map<String, Value>, ValidationError> {
    check_fields(req)?;
    let mut messages = Vec::new();
    if let Some(i) = &req.instructions {
        messages.push(json!({"role": "system", "content": i}));
    }
    messages.extend(items_to_messages(history, "previous_response_id", native)?);
    messages.extend(items_to_messages(&req.input.items(), "input", native)?);
    // Every tool result answers a call made before it (checked once the
    // stored conversation of `previous_response_id` is here).
    let mut calls: Vec<&str> = Vec::new();
    let whole = req.previous_response_id.is_none() || !history.is_empty();
    for m in messages.iter().filter(|_| whole) {
        for c in m["tool_calls"].as_array().into_iter().flatten() {
            calls.extend(c["id"].as_str());
        }
        if m["role"] == "tool" {
            let id = m["tool_call_id"].as_str().unwrap_or("");
            if !calls.contains(&id) {
                return Err(invalid(
                    "input".into(),
                    &format!(
                        "no function_call with call_id `{}` comes before its function_call_output",
                        id.chars().take(64).collect::<String>()
                    ),
                ));
            }
        }
    }
    check_tool_choice(req)?;
    let mut body = Map::new();
    body.insert("model".into(), req.model.clone().into());
    body.insert("messages".into(), messages.into());
    if let Some(tools) = &req.tools {
        let mut out = Vec::with_capacity(tools.len());
        for (i, t) in tools.iter().enumerate() {
            match t["type"].as_str() {
                Some("function") => {}
                Some(_) if native => continue,
                _ => {
                    return Err(invalid(
                        format!("tools[{i}].type"),
                        "only function tools are supported by this model's upstreams",
                    ))
                }
            }
            let mut f = Map::new();
            for k in ["name", "description", "parameters", "strict"] {
                if let Some(v) = t.get(k).filter(|v| !v.is_null()) {
                    f.insert(k.into(), v.clone());
                }
            }
            out.push(json!({"type": "function", "function": f}));
        }
        if !out.is_empty() {
            body.insert("tools".into(), out.into());
        }
    }
    if let Some(tc) = &req.tool_choice {
        let choice = match tc {
            Value::String(_) => Some(tc.clone()),
            _ if tc["type"] == "function" => Some(json!({"type": "function", "function": {"name": tc["name"]}})),
            // A built-in tool, chosen for an upstream that has it.
            _ if native && tc["type"].is_string() => None,
            _ => {
                return Err(invalid(
                    "tool_choice".into(),
                    "must be auto, none, required or a function",
                ))
            }
        };
        if let Some(choice) = choice.filter(|_| !native || body.contains_key("tools")) {
            body.insert("tool_choice".into(), choice);
        }
    }
    if let Some(p) = req.parallel_tool_calls {
        body.insert("parallel_tool_calls".into(), p.into());
    }
    match req.text.as_ref().and_then(|t| t.get("format")).filter(|f| !f.is_null()) {
        None => {}
        Some(f) => match f["type"].as_str() {
            Some("text") => {}
            Some("json_object") => {
                body.insert("response_format".into(), json!({"type": "json_object"}));
            }
            Some("json_schema") => {
                // The Responses API requires both (chat only the name).
                for k in ["name", "schema"] {
                    if f.get(k).is_none_or(Value::is_null) {
                        return Err(ValidationError::Missing {
                            param: format!("text.format.{k}"),
                        });
                    }
                }
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
            _ => {
                return Err(invalid(
                    "text.format.type".into(),
                    "must be text, json_object or json_schema",
                ))
            }
        },
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

/// The fields of a Responses body that its chat translation has no place
/// for and that may change the answer (`include`, `truncation`,
/// `text.verbosity`, `reasoning.summary`, built-in tools' settings, fields
/// added after this was written): what a cache key must add to the chat
/// request's. Empty for a request that chat expresses whole.
pub fn untranslated(body: &Map<String, Value>) -> Map<String, Value> {
    // Translated, or not changing the answer (identity, storage, transport).
    const COVERED: &[&str] = &[
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "temperature",
        "top_p",
        "max_output_tokens",
        "metadata",
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "store",
        "stream",
        "stream_options",
        "previous_response_id",
    ];
    // Values that mean what leaving the field out means: the same entry.
    let default = |k: &str, v: &Value| match k {
        "truncation" => v == "disabled",
        "background" => v == false,
        "include" => v.as_array().is_some_and(Vec::is_empty),
        "top_logprobs" => v == 0,
        _ => v.is_null(),
    };
    let mut out = Map::new();
    for (k, v) in body
        .iter()
        .filter(|(k, v)| !COVERED.contains(&k.as_str()) && !default(k, v))
    {
        let translated = match k.as_str() {
            "text" => "format",
            "reasoning" => "effort",
            _ => {
                out.insert(k.clone(), v.clone());
                continue;
            }
        };
        if let Some(m) = v.as_object() {
            let rest: Map<String, Value> = m
                .iter()
                .filter(|(k, _)| *k != translated)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !rest.is_empty() {
                out.insert(k.clone(), rest.into());
            }
        }
    }
    out
}

/// A chat validation error, named as the Responses request names the
/// field: `max_tokens` is `max_output_tokens`, `response_format` is
/// `text.format`, and a message is somewhere in `input` (the stored
/// history and `instructions` shift chat's indices, so none is given).
pub fn rename_params(e: ValidationError) -> ValidationError {
    let rename = |p: String| -> String {
        // A Responses function tool holds its fields itself:
        // `tools[0].function.name` is `tools[0].name`.
        if let Some((head, rest)) = p.split_once(".function") {
            if head.starts_with("tools[") || head == "tool_choice" {
                return format!("{head}{rest}");
            }
        }
        if p == "max_tokens" {
            "max_output_tokens".into()
        } else if let Some(rest) = p.strip_prefix("response_format.json_schema") {
            // `text.format` holds the schema's fields itself.
            format!("text.format{rest}")
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
            param: match param {
                "max_tokens" => "max_output_tokens",
                "messages" => "input",
                p => p,
            },
            limit,
            requested,
            prompt,
            completion,
        },
        e => e,
    }
}
