//! A Response object: its identity, what it echoes from its request, its
//! stored record, and a folded chat completion in its shape.

use serde_json::{json, Map, Value};

use super::ResponsesRequest;

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
        echo.insert(
            "truncation".into(),
            req.truncation.clone().unwrap_or_else(|| "disabled".into()).into(),
        );
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
    pub(super) fn object(&self, status: &str, output: Vec<Value>, usage: Value, extra: &[(&str, Value)]) -> Value {
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
pub(super) fn usage(u: &Value) -> Value {
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
pub(super) fn status_of(finish: Option<&str>) -> (&'static str, Value) {
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
    if let Some(r) = crate::wire::openai::chat::reasoning_of(message) {
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
