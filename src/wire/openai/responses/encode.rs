//! Stream events to the Responses API's typed, sequence-numbered SSE
//! events; the final Response is built from the fold of the same events.

use serde_json::{json, Map, Value};

use super::response::{status_of, usage, ResponseMeta};
use crate::sse;
use crate::stream::{Fold, StreamEvent};
use crate::wire::error::OpenAiError;

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
    /// Items whose `.done` events went out: a text item is closed as soon
    /// as a later item opens, as OpenAI streams them.
    closed: Vec<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Reasoning {
        id: String,
        text: String,
    },
    /// A message: its text, or its refusal when `refusal`.
    Message {
        id: String,
        text: String,
        refusal: bool,
    },
    Call {
        index: u64,
        id: String,
        call_id: String,
        name: String,
        args: String,
    },
}

/// What a message item's text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Text {
    Reasoning,
    Output,
    Refusal,
}

/// A message's content part: `output_text`, or `refusal`.
fn part(refusal: bool, text: &str) -> Value {
    if refusal {
        json!({"type": "refusal", "refusal": text})
    } else {
        json!({"type": "output_text", "text": text, "annotations": []})
    }
}

pub(super) fn obj(v: Value) -> Map<String, Value> {
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
            closed: Vec::new(),
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
    fn text_item(&mut self, kind: Text, out: &mut Vec<u8>) -> usize {
        let reasoning = kind == Text::Reasoning;
        let found = self.items.iter().rposition(|i| match i {
            Item::Reasoning { .. } => reasoning,
            Item::Message { refusal, .. } => kind == if *refusal { Text::Refusal } else { Text::Output },
            Item::Call { .. } => false,
        });
        // Text after a later item starts a new one, so the order holds.
        if let Some(at) = found.filter(|at| *at + 1 == self.items.len()) {
            return at;
        }
        self.close_text_items(out);
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
            let refusal = kind == Text::Refusal;
            (
                Item::Message {
                    id: id.clone(),
                    text: String::new(),
                    refusal,
                },
                added,
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": 0, "part": part(refusal, "")}),
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
        if let Some(r) = crate::wire::openai::chat::reasoning_of(d) {
            let at = self.text_item(Text::Reasoning, out);
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
        for (kind, field, event) in [
            (Text::Output, "content", "response.output_text.delta"),
            (Text::Refusal, "refusal", "response.refusal.delta"),
        ] {
            let Some(t) = d[field].as_str().filter(|t| !t.is_empty()) else {
                continue;
            };
            let at = self.text_item(kind, out);
            let id = match &mut self.items[at] {
                Item::Message { id, text, .. } => {
                    text.push_str(t);
                    id.clone()
                }
                _ => String::new(),
            };
            let mut data = json!({"item_id": id, "output_index": at, "content_index": 0, "delta": t});
            if kind == Text::Output {
                data["logprobs"] = json!([]);
            }
            self.event(event, obj(data), out);
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
                    self.close_text_items(out);
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

    /// The `.done` events of every item still open, in output order;
    /// `status` is the items' (`completed`, or `incomplete` when the
    /// Response is).
    fn close_items(&mut self, status: &str, out: &mut Vec<u8>) {
        for at in 0..self.items.len() {
            self.close_item(at, status, out);
        }
    }

    /// Close the reasoning and message items opened so far: a new item
    /// follows them. Calls stay open, since parallel calls may interleave
    /// their arguments.
    fn close_text_items(&mut self, out: &mut Vec<u8>) {
        for at in 0..self.items.len() {
            if !matches!(self.items[at], Item::Call { .. }) {
                self.close_item(at, "completed", out);
            }
        }
    }

    fn close_item(&mut self, at: usize, status: &str, out: &mut Vec<u8>) {
        if self.closed.len() < self.items.len() {
            self.closed.resize(self.items.len(), false);
        }
        if std::mem::replace(&mut self.closed[at], true) {
            return;
        }
        let done = match self.items[at].clone() {
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
            Item::Message { id, text, refusal } => {
                let part = part(refusal, &text);
                let (event, field) = if refusal {
                    ("response.refusal.done", "refusal")
                } else {
                    ("response.output_text.done", "text")
                };
                self.event(
                    event,
                    obj(json!({"item_id": id, "output_index": at, "content_index": 0, field: text})),
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

    /// The output items as the stream told them, with `status`.
    fn output(&self, status: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for item in &self.items {
            out.push(match item {
                Item::Reasoning { id, text } => {
                    json!({"id": id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]})
                }
                Item::Message { id, text, refusal } => json!({"id": id, "type": "message", "status": status,
                    "role": "assistant", "content": [part(*refusal, text)]}),
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
