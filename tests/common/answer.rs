//! What a provider sends instead of its stream when a request does not
//! ask to stream: the scripted SSE answer as the one JSON body the same
//! provider would have sent (a `chat.completion` or `text_completion`, a
//! Message, a Response). A scripted fault stays a fault: a stream cut
//! before its finish becomes an answer without `finish_reason` /
//! `stop_reason` / a terminal status, and an error event the provider's
//! error body.

use serde_json::{json, Map, Value};

/// The JSON body for a scripted SSE body; `None` when it is not SSE.
pub fn json_answer(sse: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(sse).ok()?;
    let events = events(text);
    if events.is_empty() {
        return None;
    }
    let body = if events
        .iter()
        .any(|(e, d)| e.starts_with("response.") || d["type"].as_str().is_some_and(|t| t.starts_with("response.")))
    {
        response(&events)
    } else if events
        .iter()
        .any(|(e, d)| e == "message_start" || d["type"] == "message_start")
    {
        message(&events)
    } else {
        completion(&events)
    };
    serde_json::to_vec(&body).ok()
}

/// `(event name, data)` of every event whose data is JSON.
fn events(text: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for block in text.replace("\r\n", "\n").split("\n\n") {
        let mut name = String::new();
        let mut data = String::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        if let Ok(v) = serde_json::from_str::<Value>(&data) {
            out.push((name, v));
        }
    }
    out
}

fn append(slot: &mut Value, s: &str) {
    match slot {
        Value::String(t) => t.push_str(s),
        _ => *slot = Value::String(s.to_string()),
    }
}

/// Chat or text chunks as one `chat.completion` / `text_completion`.
fn completion(events: &[(String, Value)]) -> Value {
    if let Some((_, e)) = events.iter().find(|(_, d)| d.get("error").is_some()) {
        return json!({"error": e["error"]});
    }
    let mut head = Map::new();
    let mut choices: std::collections::BTreeMap<u64, Map<String, Value>> = Default::default();
    let mut usage = Value::Null;
    let mut text = false;
    for (_, c) in events {
        for k in ["id", "created", "model", "system_fingerprint"] {
            if let Some(v) = c.get(k) {
                head.entry(k).or_insert(v.clone());
            }
        }
        text |= c["object"] == "text_completion";
        if c["usage"].is_object() {
            usage = c["usage"].clone();
        }
        for ch in c["choices"].as_array().into_iter().flatten() {
            let i = ch["index"].as_u64().unwrap_or(0);
            let acc = choices.entry(i).or_insert_with(|| {
                let mut m = Map::new();
                m.insert("index".into(), i.into());
                m.insert("message".into(), json!({"role": "assistant", "content": null}));
                m.insert("finish_reason".into(), Value::Null);
                m
            });
            if let Some(f) = ch["finish_reason"].as_str() {
                acc.insert("finish_reason".into(), f.into());
            }
            if let Some(t) = ch["text"].as_str() {
                append(acc.entry("text").or_insert(Value::Null), t);
            }
            let d = &ch["delta"];
            let msg = acc["message"].as_object_mut().unwrap();
            for k in ["content", "reasoning_content", "refusal"] {
                if let Some(s) = d[k].as_str() {
                    append(msg.entry(k).or_insert(Value::Null), s);
                }
            }
            for call in d["tool_calls"].as_array().into_iter().flatten() {
                let calls = msg.entry("tool_calls").or_insert(json!([])).as_array_mut().unwrap();
                let n = call["index"].as_u64().unwrap_or(0) as usize;
                while calls.len() <= n {
                    calls.push(json!({"id": null, "type": "function", "function": {"name": null, "arguments": ""}}));
                }
                let slot = &mut calls[n];
                if let Some(id) = call["id"].as_str() {
                    slot["id"] = id.into();
                }
                if let Some(name) = call["function"]["name"].as_str() {
                    slot["function"]["name"] = name.into();
                }
                if let Some(a) = call["function"]["arguments"].as_str() {
                    append(&mut slot["function"]["arguments"], a);
                }
            }
        }
    }
    let mut body = head;
    body.insert(
        "object".into(),
        if text { "text_completion" } else { "chat.completion" }.into(),
    );
    let choices: Vec<Value> = choices
        .into_values()
        .map(|mut c| {
            if text {
                c.remove("message");
            }
            Value::Object(c)
        })
        .collect();
    body.insert("choices".into(), choices.into());
    if !usage.is_null() {
        body.insert("usage".into(), usage);
    }
    Value::Object(body)
}

/// Messages events as one Message.
fn message(events: &[(String, Value)]) -> Value {
    if let Some((_, e)) = events.iter().find(|(n, d)| n == "error" || d["type"] == "error") {
        return json!({"type": "error", "error": e["error"]});
    }
    let mut msg = Value::Null;
    let mut blocks: Vec<Value> = Vec::new();
    let mut partial: Vec<String> = Vec::new();
    for (_, d) in events {
        match d["type"].as_str().unwrap_or("") {
            "message_start" => msg = d["message"].clone(),
            "content_block_start" => {
                blocks.push(d["content_block"].clone());
                partial.push(String::new());
            }
            "content_block_delta" => {
                let i = d["index"].as_u64().unwrap_or(0) as usize;
                let Some(b) = blocks.get_mut(i) else { continue };
                let delta = &d["delta"];
                match delta["type"].as_str().unwrap_or("") {
                    "text_delta" => append(&mut b["text"], delta["text"].as_str().unwrap_or("")),
                    "thinking_delta" => append(&mut b["thinking"], delta["thinking"].as_str().unwrap_or("")),
                    "signature_delta" => append(&mut b["signature"], delta["signature"].as_str().unwrap_or("")),
                    "input_json_delta" => partial[i].push_str(delta["partial_json"].as_str().unwrap_or("")),
                    _ => {}
                }
            }
            "content_block_stop" => {
                let i = d["index"].as_u64().unwrap_or(0) as usize;
                if let (Some(b), Some(p)) = (blocks.get_mut(i), partial.get(i)) {
                    if !p.is_empty() {
                        b["input"] = serde_json::from_str(p).unwrap_or(Value::Null);
                    }
                }
            }
            "message_delta" => {
                for (k, v) in d["delta"].as_object().into_iter().flatten() {
                    msg[k] = v.clone();
                }
                for (k, v) in d["usage"].as_object().into_iter().flatten() {
                    msg["usage"][k] = v.clone();
                }
            }
            _ => {}
        }
    }
    msg["content"] = blocks.into();
    msg
}

/// Responses events as the Response of the last terminal event (or the
/// last one seen, still `in_progress`); an `error` event as an error body.
fn response(events: &[(String, Value)]) -> Value {
    let mut last = Value::Null;
    for (n, d) in events {
        let kind = d["type"].as_str().unwrap_or(n);
        if kind == "error" {
            return json!({"error": {"message": d["message"].as_str().or(d["error"]["message"].as_str()).unwrap_or("error")}});
        }
        if d["response"].is_object() {
            last = d["response"].clone();
        }
    }
    last
}
