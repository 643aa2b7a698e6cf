//! The stream event model every provider produces, and the fold that turns
//! a stream into a non-streaming response.
//!
//! Every translated answer is streamed: the upstream is asked to stream,
//! and a client that wants one JSON body gets the fold of the events. That
//! keeps one code path for timeouts, usage capture and caching, and makes
//! "the upstream stopped early" an explicit error (`Done` never arrived)
//! instead of a silently truncated answer. The one exception is a JSON
//! client at an upstream of its own format: it gets the upstream's JSON
//! answer relayed whole (`crate::wire::Answer`), checked for the same
//! things (a finish on every choice, usage, an error sent with a 2xx).
//!
//! # Layout
//! - `mod.rs` (this file): [`StreamEvent`], [`Usage`] and [`Fold`].
//! - `error`: [`UpstreamError`], the upstream boundary's error type.
//! - `track`: what the upstream event reader tracks as events pass:
//!   tool-call indices, and when every choice has finished.

use serde_json::{Map, Value};

use serde::{Deserialize, Serialize};

use crate::sse::SseEvent;

mod error;
mod track;
pub use error::UpstreamError;

pub use track::{Completion, ToolIndexer};

/// Token usage as OpenAI reports it (the three totals; detail objects such
/// as `prompt_tokens_details` reach clients inside the chunks themselves).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

/// One event from an upstream, in OpenAI's vocabulary (except [`Raw`]).
///
/// [`Raw`]: StreamEvent::Raw
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
    Error(UpstreamError),
    /// An upstream event relayed unchanged to a client of the same wire
    /// format (`wire::anthropic::passthrough`). Its content also arrives
    /// translated, as the events that follow it, for accounting and
    /// completeness; only the passthrough encoder and the passthrough fold
    /// (`MessageFold`) read this one.
    Raw(SseEvent),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FoldError {
    #[error("the upstream stream ended before it finished")]
    Incomplete,
    #[error("the upstream response exceeded {limit} bytes")]
    TooLarge { limit: usize },
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// The most text a fold holds (content, reasoning, arguments, ... all
/// together): well above any real answer, far below what a hostile
/// upstream could send.
pub const MAX_FOLD_BYTES: usize = 32 << 20;
/// Tool calls per choice; a hostile index or id stream cannot allocate more.
pub const MAX_TOOL_CALLS: usize = 1024;

#[derive(Debug, Default, Clone)]
struct ChoiceAcc {
    text: String,
    /// Every delta field except `tool_calls`, merged: strings concatenate,
    /// arrays extend, objects merge field by field. So `reasoning_content`,
    /// `audio`, `annotations` and fields no one has named yet all survive.
    message: Map<String, Value>,
    tool_calls: Vec<Map<String, Value>>,
    /// Upstream `tool_calls[].index` → position in `tool_calls`.
    tool_slots: std::collections::BTreeMap<u64, usize>,
    finish_reason: Value,
    logprobs: Option<Value>,
    /// Choice-level fields beyond the standard ones (vLLM's `stop_reason`,
    /// ...): the last non-null value wins.
    extra: Map<String, Value>,
}

/// Accumulates chunks into one `chat.completion` or `text_completion`.
#[derive(Debug)]
pub struct Fold {
    header: Map<String, Value>,
    choices: std::collections::BTreeMap<u64, ChoiceAcc>,
    usage: Option<Usage>,
    raw_usage: Option<Value>,
    done: bool,
    is_text: bool,
    bytes: usize,
    max_bytes: usize,
}

impl Default for Fold {
    fn default() -> Self {
        Self::with_limit(MAX_FOLD_BYTES)
    }
}

/// Fields whose values are identities, not text to concatenate.
const REPLACED: &[&str] = &["id", "type", "role", "index", "expires_at", "object", "name"];

impl Fold {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_limit(max_bytes: usize) -> Self {
        Fold {
            header: Map::new(),
            choices: Default::default(),
            usage: None,
            raw_usage: None,
            done: false,
            is_text: false,
            bytes: 0,
            max_bytes,
        }
    }

    pub fn push(&mut self, ev: &StreamEvent) -> Result<(), FoldError> {
        match ev {
            // Its content arrives translated in the events that follow.
            StreamEvent::Raw(_) => {}
            StreamEvent::Delta(chunk) => {
                // Counted by the chunk's text size: cheap, and an upper
                // bound on what merging it can add.
                self.bytes = self.bytes.saturating_add(text_bytes(chunk));
                if self.bytes > self.max_bytes {
                    return Err(FoldError::TooLarge { limit: self.max_bytes });
                }
                self.push_chunk(chunk)
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Done { .. } => self.done = true,
            StreamEvent::Error(e) => return Err(FoldError::Upstream(e.clone())),
        }
        Ok(())
    }

    fn push_chunk(&mut self, chunk: &Map<String, Value>) {
        for (key, v) in chunk {
            if matches!(key.as_str(), "choices" | "usage" | "object") || v.is_null() {
                continue;
            }
            self.header.entry(key.as_str()).or_insert_with(|| v.clone());
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
            if !self.choices.contains_key(&idx) && self.choices.len() >= MAX_TOOL_CALLS {
                continue; // a hostile choice index cannot allocate without bound
            }
            let acc = self.choices.entry(idx).or_default();
            let Some(c) = c.as_object() else { continue };
            for (key, v) in c {
                match key.as_str() {
                    "index" | "delta" => {}
                    "finish_reason" => {
                        if !v.is_null() {
                            acc.finish_reason = v.clone();
                        }
                    }
                    "logprobs" => {
                        if !v.is_null() {
                            merge_logprobs(&mut acc.logprobs, v);
                        }
                    }
                    "text" => {
                        if let Some(t) = v.as_str() {
                            acc.text.push_str(t);
                        }
                    }
                    _ => {
                        if !v.is_null() {
                            acc.extra.insert(key.clone(), v.clone());
                        }
                    }
                }
            }
            let Some(delta) = c.get("delta").and_then(Value::as_object) else {
                continue;
            };
            for (key, v) in delta {
                if key == "tool_calls" {
                    for call in v.as_array().into_iter().flatten() {
                        merge_tool_call(acc, call);
                    }
                } else {
                    merge_field(&mut acc.message, key, v);
                }
            }
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The finished response object; an error unless `Done` arrived and
    /// every choice has a `finish_reason` (completeness is the finish
    /// reason, never the end of the bytes alone).
    pub fn finish(self) -> Result<Value, FoldError> {
        let finished = !self.choices.is_empty() && self.choices.values().all(|c| !c.finish_reason.is_null());
        if !self.done || !finished {
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
                    let mut msg = c.message;
                    if !msg.get("role").is_some_and(Value::is_string) {
                        msg.insert("role".into(), "assistant".into());
                    }
                    for key in ["content", "refusal"] {
                        msg.entry(key).or_insert(Value::Null);
                    }
                    if !c.tool_calls.is_empty() {
                        let calls = c.tool_calls.into_iter().map(finish_tool_call).collect();
                        msg.insert("tool_calls".into(), Value::Array(calls));
                    }
                    choice.insert("message".into(), Value::Object(msg));
                }
                choice.insert("logprobs".into(), c.logprobs.unwrap_or(Value::Null));
                choice.insert("finish_reason".into(), c.finish_reason);
                for (k, v) in c.extra {
                    choice.entry(k).or_insert(v);
                }
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

/// Bytes of string content in a chunk (keys and structure not counted).
fn text_bytes(chunk: &Map<String, Value>) -> usize {
    fn walk(v: &Value) -> usize {
        match v {
            Value::String(s) => s.len(),
            Value::Array(a) => a.iter().map(walk).fold(0, usize::saturating_add),
            Value::Object(m) => m.values().map(walk).fold(0, usize::saturating_add),
            _ => 8,
        }
    }
    chunk.values().map(walk).fold(0, usize::saturating_add)
}

/// Merge one streamed field into its accumulated value, in place (linear
/// in the total size: a string grows by `push_str`, never by copying).
fn merge_field(dst: &mut Map<String, Value>, key: &str, src: &Value) {
    if src.is_null() {
        return;
    }
    match (dst.get_mut(key), src) {
        (Some(Value::String(d)), Value::String(s)) if !REPLACED.contains(&key) => d.push_str(s),
        (Some(Value::Array(d)), Value::Array(s)) => d.extend(s.iter().cloned()),
        (Some(Value::Object(d)), Value::Object(s)) => {
            for (k, v) in s {
                merge_field(d, k, v);
            }
        }
        (Some(Value::String(d)), Value::String(s)) if d.is_empty() || key != "name" => *d = s.clone(),
        (Some(Value::String(_)), Value::String(_)) => {} // a name repeated in later fragments
        _ => {
            dst.insert(key.to_string(), src.clone());
        }
    }
}

/// Streamed tool calls arrive as fragments keyed by `index`: the first has
/// the id, type and name, later ones append to `function.arguments`. Some
/// providers send every call whole at the same index, told apart only by
/// their ids: a new non-empty id at an index already held starts a call.
fn merge_tool_call(acc: &mut ChoiceAcc, frag: &Value) {
    let Some(frag) = frag.as_object() else { return };
    let idx = frag.get("index").and_then(Value::as_u64).unwrap_or(0);
    let id = frag.get("id").and_then(Value::as_str).filter(|s| !s.is_empty());
    let held = acc.tool_slots.get(&idx).copied();
    let slot = match held {
        Some(pos) if id.is_none_or(|id| same_or_unset(&acc.tool_calls[pos], id)) => pos,
        _ => {
            if acc.tool_calls.len() >= MAX_TOOL_CALLS {
                return;
            }
            let mut m = Map::new();
            m.insert("id".into(), Value::Null);
            m.insert("type".into(), "function".into());
            let mut f = Map::new();
            f.insert("name".into(), "".into());
            f.insert("arguments".into(), "".into());
            m.insert("function".into(), Value::Object(f));
            acc.tool_calls.push(m);
            acc.tool_slots.insert(idx, acc.tool_calls.len() - 1);
            acc.tool_calls.len() - 1
        }
    };
    let call = &mut acc.tool_calls[slot];
    for (key, v) in frag {
        if key != "index" {
            merge_field(call, key, v);
        }
    }
}

fn same_or_unset(call: &Map<String, Value>, id: &str) -> bool {
    call.get("id")
        .and_then(Value::as_str)
        .is_none_or(|held| held.is_empty() || held == id)
}

/// A call that streamed no arguments has none: `{}`, which every client
/// parses (`""` is not JSON).
fn finish_tool_call(mut call: Map<String, Value>) -> Value {
    if let Some(Value::Object(f)) = call.get_mut("function") {
        if f.get("arguments")
            .and_then(Value::as_str)
            .is_none_or(|a| a.trim().is_empty())
        {
            f.insert("arguments".into(), "{}".into());
        }
    }
    Value::Object(call)
}

/// Chat logprobs stream as `{content: [...]}` fragments; concatenate them.
fn merge_logprobs(acc: &mut Option<Value>, frag: &Value) {
    let Some(Value::Object(dst)) = acc else {
        *acc = Some(frag.clone());
        return;
    };
    let Some(frag) = frag.as_object() else { return };
    for (key, v) in frag {
        merge_field(dst, key, v);
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

    /// Some providers stream parallel calls, each whole in one delta, all
    /// at `tool_calls[].index` 0; a new id at a held index is a new call.
    #[test]
    fn parallel_calls_at_one_index_stay_separate() {
        let mut f = Fold::new();
        for (i, city) in ["San Francisco", "Tokyo", "Paris"].iter().enumerate() {
            let args = json!({ "location": city }).to_string();
            f.push(&delta(json!({"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{
                "tool_calls":[{"index":0,"id":format!("call_{i}"),"type":"function","function":{"name":"get_weather","arguments":args}}]}}]})))
                .unwrap();
        }
        f.push(&delta(
            json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
        ))
        .unwrap();
        f.push(&StreamEvent::Done { finish_reason: None }).unwrap();
        let v = f.finish().unwrap();
        let calls = v["choices"][0]["message"]["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 3, "{calls:?}");
        assert_eq!(calls[1]["id"], "call_1");
        assert_eq!(calls[1]["function"]["arguments"], "{\"location\":\"Tokyo\"}");
        assert_eq!(calls[2]["function"]["name"], "get_weather");
    }

    /// Bifrost #1829's shape: two calls streamed interleaved by index,
    /// each fragment repeating the function name. Names must not pile up.
    #[test]
    fn interleaved_calls_with_repeated_names() {
        let mut f = Fold::new();
        for (idx, id, args) in [
            (0, Some("a"), "{\"q\":"),
            (1, Some("b"), "{\"q\":"),
            (0, None, "1}"),
            (1, None, "2}"),
        ] {
            let mut call = json!({"index": idx, "function": {"name": "search_circular", "arguments": args}});
            if let Some(id) = id {
                call["id"] = id.into();
            }
            f.push(&delta(json!({"choices":[{"index":0,"delta":{"tool_calls":[call]}}]})))
                .unwrap();
        }
        f.push(&delta(
            json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
        ))
        .unwrap();
        f.push(&StreamEvent::Done { finish_reason: None }).unwrap();
        let v = f.finish().unwrap();
        let calls = &v["choices"][0]["message"]["tool_calls"];
        assert_eq!(calls[0]["function"]["name"], "search_circular");
        assert_eq!(calls[0]["function"]["arguments"], "{\"q\":1}");
        assert_eq!(calls[1]["id"], "b");
        assert_eq!(calls[1]["function"]["arguments"], "{\"q\":2}");
    }

    /// Everything a delta can carry survives the fold: reasoning, refusal,
    /// annotations, audio, fields this crate has never heard of.
    #[test]
    fn fold_keeps_everything_the_stream_carries() {
        let mut f = Fold::new();
        for d in [
            json!({"role":"assistant","reasoning_content":"Let me","audio":{"id":"a1","data":"AAA","transcript":"he"}}),
            json!({"reasoning_content":" think.","audio":{"data":"BBB","transcript":"llo"}}),
            json!({"content":"Hi","refusal":"no","annotations":[{"type":"url_citation","url":"u1"}],"x_vendor":"p"}),
            json!({"content":"!","annotations":[{"type":"url_citation","url":"u2"}],"x_vendor":"q","function_call":{"name":"f","arguments":"{}"}}),
        ] {
            f.push(&delta(json!({"choices":[{"index":0,"delta":d,"stop_reason":42}]})))
                .unwrap();
        }
        f.push(&delta(
            json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}),
        ))
        .unwrap();
        f.push(&StreamEvent::Done { finish_reason: None }).unwrap();
        let v = f.finish().unwrap();
        let m = &v["choices"][0]["message"];
        assert_eq!(m["reasoning_content"], "Let me think.");
        assert_eq!(m["content"], "Hi!");
        assert_eq!(m["refusal"], "no");
        assert_eq!(m["annotations"].as_array().unwrap().len(), 2);
        assert_eq!(m["audio"], json!({"id":"a1","data":"AAABBB","transcript":"hello"}));
        assert_eq!(m["x_vendor"], "pq");
        assert_eq!(m["function_call"]["name"], "f");
        assert_eq!(v["choices"][0]["stop_reason"], 42);
    }

    /// Completeness comes from `finish_reason`, never from `Done` alone.
    #[test]
    fn done_without_finish_reason_is_incomplete() {
        let mut f = Fold::new();
        f.push(&delta(json!({"choices":[{"index":0,"delta":{"content":"x"}}]})))
            .unwrap();
        f.push(&StreamEvent::Done { finish_reason: None }).unwrap();
        assert_eq!(f.finish().unwrap_err(), FoldError::Incomplete);
    }

    /// A call with no arguments is `{}`, which every client can parse.
    #[test]
    fn empty_tool_arguments_fold_to_an_empty_object() {
        let mut f = Fold::new();
        f.push(&delta(json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"t","type":"function","function":{"name":"now","arguments":""}}]},"finish_reason":"tool_calls"}]})))
            .unwrap();
        f.push(&StreamEvent::Done { finish_reason: None }).unwrap();
        let v = f.finish().unwrap();
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{}"
        );
    }

    /// A hostile upstream cannot make the fold hold unbounded text.
    #[test]
    fn fold_is_bounded() {
        let mut f = Fold::new();
        let mb = "x".repeat(1 << 20);
        let mut failed = false;
        for _ in 0..40 {
            let chunk = delta(json!({"choices":[{"index":0,"delta":{"content":mb}}]}));
            if f.push(&chunk).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "40 MiB folded without complaint");
    }

    /// Tool arguments in many small fragments fold in linear time.
    #[test]
    fn many_argument_fragments_fold_linearly() {
        let mut f = Fold::new();
        for _ in 0..200_000 {
            f.push(&delta(
                json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ab"}}]}}]}),
            ))
            .unwrap();
        }
        f.push(&delta(
            json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
        ))
        .unwrap();
        f.push(&StreamEvent::Done { finish_reason: None }).unwrap();
        let v = f.finish().unwrap();
        let args = v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap();
        assert_eq!(args.len(), 400_000);
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
