//! A finished Response as the typed events that would have streamed it,
//! for `GET /v1/responses/{id}?stream=true` (the SDKs'
//! `responses.retrieve(id, stream=True)`): `response.created`,
//! `response.in_progress`, per output item `output_item.added`, its parts'
//! and text's events with the whole text as one delta, `output_item.done`,
//! then the terminal event of the Response's `status`. Numbered from
//! `starting_after + 1`, as OpenAI numbers a resumed stream; events at or
//! before it are left out.

use serde_json::{json, Value};

use crate::sse;

struct Out {
    bytes: Vec<u8>,
    seq: u64,
    after: Option<u64>,
}

impl Out {
    fn event(&mut self, kind: &str, mut data: Value) {
        let seq = self.seq;
        self.seq += 1;
        if self.after.is_some_and(|a| seq <= a) {
            return;
        }
        data["type"] = kind.into();
        data["sequence_number"] = seq.into();
        self.bytes.extend(sse::encode(Some(kind), &data.to_string()));
    }
}

/// An item as `output_item.added` shows it: nothing generated yet.
fn started(item: &Value) -> Value {
    let mut i = item.clone();
    i["status"] = "in_progress".into();
    match item["type"].as_str() {
        Some("message") => i["content"] = json!([]),
        Some("function_call") => i["arguments"] = "".into(),
        Some("reasoning") => i["summary"] = json!([]),
        _ => {}
    }
    i
}

/// The events for `response` (a stored Response object), as SSE bytes.
pub fn events(response: &Value, starting_after: Option<u64>) -> Vec<u8> {
    let mut out = Out {
        bytes: Vec::new(),
        seq: 0,
        after: starting_after,
    };
    let mut head = response.clone();
    head["status"] = "in_progress".into();
    head["output"] = json!([]);
    head["usage"] = Value::Null;
    out.event("response.created", json!({"response": head}));
    out.event("response.in_progress", json!({"response": head}));
    let items = response["output"].as_array().cloned().unwrap_or_default();
    for (i, item) in items.iter().enumerate() {
        let id = item["id"].clone();
        out.event(
            "response.output_item.added",
            json!({"output_index": i, "item": started(item)}),
        );
        match item["type"].as_str() {
            Some("message") => {
                for (j, part) in item["content"].as_array().into_iter().flatten().enumerate() {
                    let at = json!({"item_id": id, "output_index": i, "content_index": j});
                    let mut empty = part.clone();
                    let (kind, field) = match part["type"].as_str() {
                        Some("refusal") => ("response.refusal", "refusal"),
                        _ => ("response.output_text", "text"),
                    };
                    empty[field] = "".into();
                    let text = part[field].clone();
                    let with = |mut v: Value, k: &str, x: Value| {
                        v[k] = x;
                        v
                    };
                    out.event("response.content_part.added", with(at.clone(), "part", empty));
                    out.event(&format!("{kind}.delta"), with(at.clone(), "delta", text.clone()));
                    out.event(&format!("{kind}.done"), with(at.clone(), field, text));
                    out.event("response.content_part.done", with(at, "part", part.clone()));
                }
            }
            Some("function_call") => {
                let at = json!({"item_id": id, "output_index": i});
                let args = item["arguments"].clone();
                let mut delta = at.clone();
                delta["delta"] = args.clone();
                out.event("response.function_call_arguments.delta", delta);
                let mut done = at;
                done["arguments"] = args;
                out.event("response.function_call_arguments.done", done);
            }
            Some("reasoning") => {
                for (j, part) in item["summary"].as_array().into_iter().flatten().enumerate() {
                    let at = json!({"item_id": id, "output_index": i, "summary_index": j});
                    let mut added = at.clone();
                    added["part"] = json!({"type": "summary_text", "text": ""});
                    out.event("response.reasoning_summary_part.added", added);
                    let mut delta = at.clone();
                    delta["delta"] = part["text"].clone();
                    out.event("response.reasoning_summary_text.delta", delta);
                    let mut done = at.clone();
                    done["text"] = part["text"].clone();
                    out.event("response.reasoning_summary_text.done", done);
                    let mut pdone = at;
                    pdone["part"] = part.clone();
                    out.event("response.reasoning_summary_part.done", pdone);
                }
            }
            _ => {}
        }
        out.event("response.output_item.done", json!({"output_index": i, "item": item}));
    }
    let terminal = match response["status"].as_str() {
        Some("incomplete") => "response.incomplete",
        Some("failed") => "response.failed",
        _ => "response.completed",
    };
    out.event(terminal, json!({"response": response}));
    out.bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(bytes)
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn a_stored_response_replays_as_its_events() {
        let r = json!({"id": "resp_1", "object": "response", "status": "completed", "output": [
            {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": "Hi", "annotations": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "c", "name": "f", "arguments": "{}", "status": "completed"}
        ], "usage": {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}});
        let ev = parse(&events(&r, None));
        let kinds: Vec<&str> = ev.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert!(ev.iter().enumerate().all(|(i, e)| e["sequence_number"] == i as u64));
        assert_eq!(ev[4]["delta"], "Hi");
        assert_eq!(ev[12]["response"], r);
        // Resumed after event 10: only what follows.
        let rest = parse(&events(&r, Some(10)));
        assert_eq!(rest.len(), 2);
        assert_eq!(rest[0]["sequence_number"], 11);
    }
}
