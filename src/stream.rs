//! The stream event model every provider produces, and the fold that turns
//! a stream into a non-streaming response.
//!
//! Streaming is the only path: upstreams are always asked to stream, and a
//! client that wants one JSON body gets the fold of the events. That keeps
//! one code path for timeouts, usage capture and caching, and makes "the
//! upstream stopped early" an explicit error (`Done` never arrived) instead
//! of a silently truncated answer.

use serde_json::{Map, Value};

use crate::api::Usage;
use crate::providers::ProviderError;

/// One event from a provider, already in OpenAI's vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// One `chat.completion.chunk` / `text_completion` object. Kept as JSON
    /// so fields this crate does not model (logprobs, refusal, audio, ...)
    /// reach the client untouched.
    Delta(Map<String, Value>),
    /// Token usage for the whole response.
    Usage(Usage),
    /// The provider finished cleanly.
    Done { finish_reason: Option<String> },
    /// The provider failed mid-stream.
    Error(ProviderError),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FoldError {
    #[error("the upstream stream ended before it finished")]
    Incomplete,
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

#[derive(Debug, Default, Clone)]
struct ChoiceAcc {
    role: Option<String>,
    content: Option<String>,
    refusal: Option<String>,
    text: String,
    tool_calls: Vec<Map<String, Value>>,
    finish_reason: Value,
    logprobs: Option<Value>,
}

/// Accumulates chunks into one `chat.completion` or `text_completion`.
#[derive(Debug, Default)]
pub struct Fold {
    header: Map<String, Value>,
    choices: std::collections::BTreeMap<u64, ChoiceAcc>,
    usage: Option<Usage>,
    raw_usage: Option<Value>,
    done: bool,
    is_text: bool,
}

impl Fold {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, ev: &StreamEvent) -> Result<(), FoldError> {
        match ev {
            StreamEvent::Delta(chunk) => self.push_chunk(chunk),
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Done { .. } => self.done = true,
            StreamEvent::Error(e) => return Err(FoldError::Provider(e.clone())),
        }
        Ok(())
    }

    fn push_chunk(&mut self, chunk: &Map<String, Value>) {
        for key in ["id", "created", "model", "system_fingerprint", "service_tier"] {
            if let Some(v) = chunk.get(key) {
                if !v.is_null() {
                    self.header.entry(key).or_insert_with(|| v.clone());
                }
            }
        }
        if chunk.get("object").and_then(Value::as_str) == Some("text_completion") {
            self.is_text = true;
        }
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.raw_usage = Some(u.clone());
            if let Ok(parsed) = serde_json::from_value::<Usage>(u.clone()) {
                self.usage = Some(parsed);
            }
        }
        let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
            return;
        };
        for c in choices {
            let idx = c.get("index").and_then(Value::as_u64).unwrap_or(0);
            let acc = self.choices.entry(idx).or_default();
            if let Some(fr) = c.get("finish_reason").filter(|f| !f.is_null()) {
                acc.finish_reason = fr.clone();
            }
            if let Some(lp) = c.get("logprobs").filter(|l| !l.is_null()) {
                merge_logprobs(&mut acc.logprobs, lp);
            }
            if let Some(t) = c.get("text").and_then(Value::as_str) {
                acc.text.push_str(t);
            }
            let Some(delta) = c.get("delta").and_then(Value::as_object) else {
                continue;
            };
            if let Some(r) = delta.get("role").and_then(Value::as_str) {
                acc.role = Some(r.to_string());
            }
            if let Some(t) = delta.get("content").and_then(Value::as_str) {
                acc.content.get_or_insert_with(String::new).push_str(t);
            }
            if let Some(t) = delta.get("refusal").and_then(Value::as_str) {
                acc.refusal.get_or_insert_with(String::new).push_str(t);
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for call in calls {
                    merge_tool_call(&mut acc.tool_calls, call);
                }
            }
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The finished response object; an error if `Done` never arrived.
    pub fn finish(self) -> Result<Value, FoldError> {
        if !self.done {
            return Err(FoldError::Incomplete);
        }
        let mut out = self.header;
        let choices: Vec<Value> = self
            .choices
            .into_iter()
            .map(|(idx, c)| {
                let mut choice = Map::new();
                choice.insert("index".into(), idx.into());
                if self.is_text {
                    choice.insert("text".into(), c.text.into());
                } else {
                    let mut msg = Map::new();
                    msg.insert("role".into(), c.role.unwrap_or_else(|| "assistant".into()).into());
                    msg.insert("content".into(), c.content.map_or(Value::Null, Value::from));
                    msg.insert("refusal".into(), c.refusal.map_or(Value::Null, Value::from));
                    if !c.tool_calls.is_empty() {
                        let calls = c.tool_calls.into_iter().map(Value::Object).collect();
                        msg.insert("tool_calls".into(), Value::Array(calls));
                    }
                    choice.insert("message".into(), Value::Object(msg));
                }
                choice.insert("logprobs".into(), c.logprobs.unwrap_or(Value::Null));
                choice.insert("finish_reason".into(), c.finish_reason);
                Value::Object(choice)
            })
            .collect();
        let object = if self.is_text {
            "text_completion"
        } else {
            "chat.completion"
        };
        out.insert("object".into(), object.into());
        out.insert("choices".into(), Value::Array(choices));
        let usage = match (self.raw_usage, self.usage) {
            (Some(raw), _) => raw,
            (None, Some(u)) => serde_json::to_value(u).unwrap_or(Value::Null),
            (None, None) => Value::Null,
        };
        out.insert("usage".into(), usage);
        Ok(Value::Object(out))
    }
}

/// Streamed tool calls arrive as fragments keyed by `index`: the first has
/// the id, type and name, later ones append to `function.arguments`.
fn merge_tool_call(calls: &mut Vec<Map<String, Value>>, frag: &Value) {
    let idx = frag.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
    if idx > 1024 {
        return; // a hostile index must not allocate unbounded memory
    }
    while calls.len() <= idx {
        let mut m = Map::new();
        m.insert("id".into(), Value::Null);
        m.insert("type".into(), "function".into());
        let mut f = Map::new();
        f.insert("name".into(), "".into());
        f.insert("arguments".into(), "".into());
        m.insert("function".into(), Value::Object(f));
        calls.push(m);
    }
    let call = &mut calls[idx];
    if let Some(id) = frag.get("id").filter(|v| v.is_string()) {
        call.insert("id".into(), id.clone());
    }
    if let Some(t) = frag.get("type").filter(|v| v.is_string()) {
        call.insert("type".into(), t.clone());
    }
    if let Some(f) = frag.get("function").and_then(Value::as_object) {
        if let Some(Value::Object(dst)) = call.get_mut("function") {
            for key in ["name", "arguments"] {
                if let Some(s) = f.get(key).and_then(Value::as_str) {
                    let cur = dst.get(key).and_then(Value::as_str).unwrap_or("").to_string();
                    dst.insert(key.into(), (cur + s).into());
                }
            }
        }
    }
}

/// Chat logprobs stream as `{content: [...]}` fragments; concatenate them.
fn merge_logprobs(acc: &mut Option<Value>, frag: &Value) {
    let Some(dst) = acc else {
        *acc = Some(frag.clone());
        return;
    };
    for key in [
        "content",
        "refusal",
        "tokens",
        "token_logprobs",
        "top_logprobs",
        "text_offset",
    ] {
        if let (Some(Value::Array(d)), Some(Value::Array(s))) = (dst.get_mut(key), frag.get(key)) {
            d.extend(s.iter().cloned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn delta(v: Value) -> StreamEvent {
        StreamEvent::Delta(v.as_object().unwrap().clone())
    }

    #[test]
    fn folds_content_tool_calls_and_usage() {
        let evs = [
            delta(
                json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}),
            ),
            delta(json!({"id":"c1","choices":[{"index":0,"delta":{"content":"Hel"}}]})),
            delta(json!({"id":"c1","choices":[{"index":0,"delta":{"content":"lo"}}]})),
            delta(
                json!({"id":"c1","choices":[{"index":1,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get","arguments":"{\"a\""}}]}}]}),
            ),
            delta(
                json!({"id":"c1","choices":[{"index":1,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]},"finish_reason":"tool_calls"}]}),
            ),
            delta(json!({"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})),
            delta(json!({"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}})),
            StreamEvent::Done {
                finish_reason: Some("stop".into()),
            },
        ];
        let mut f = Fold::new();
        for e in &evs {
            f.push(e).unwrap();
        }
        assert_eq!(f.usage().unwrap().total_tokens, 7);
        let v = f.finish().unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["content"], "Hello");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            v["choices"][1]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(v["choices"][1]["message"]["tool_calls"][0]["id"], "call_1");
        assert_eq!(v["usage"]["completion_tokens"], 4);
    }

    #[test]
    fn missing_done_is_an_error() {
        let mut f = Fold::new();
        f.push(&delta(json!({"choices":[{"index":0,"delta":{"content":"x"}}]})))
            .unwrap();
        assert_eq!(f.finish().unwrap_err(), FoldError::Incomplete);
    }

    #[test]
    fn folds_text_completions() {
        let mut f = Fold::new();
        f.push(&delta(
            json!({"id":"cmpl","object":"text_completion","choices":[{"index":0,"text":"a"}]}),
        ))
        .unwrap();
        f.push(&delta(
            json!({"object":"text_completion","choices":[{"index":0,"text":"b","finish_reason":"length"}]}),
        ))
        .unwrap();
        f.push(&StreamEvent::Done { finish_reason: None }).unwrap();
        let v = f.finish().unwrap();
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], "ab");
    }
}
