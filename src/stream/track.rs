//! What the edge learns from a stream as it passes: whether it is complete
//! and which tool call a fragment belongs to.
//!
//! Completeness is decided from the choices' `finish_reason`s and the
//! usage report, never from `[DONE]` or the end of the bytes alone: an
//! upstream may send `[DONE]` after a truncated answer, or finish and then
//! keep the connection open with keep-alive comments.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{StreamEvent, MAX_TOOL_CALLS};

/// Per-choice finish state and whether usage has arrived.
#[derive(Debug, Default)]
pub struct Completion {
    /// Choice index → its finish reason, once it has one.
    choices: BTreeMap<u64, Option<String>>,
    last_finish: Option<String>,
    usage: bool,
}

impl Completion {
    pub fn observe(&mut self, ev: &StreamEvent) {
        match ev {
            StreamEvent::Delta(chunk) => {
                for c in chunk.get("choices").and_then(Value::as_array).into_iter().flatten() {
                    let idx = c.get("index").and_then(Value::as_u64).unwrap_or(0);
                    if !self.choices.contains_key(&idx) && self.choices.len() >= MAX_TOOL_CALLS {
                        continue;
                    }
                    let slot = self.choices.entry(idx).or_default();
                    if let Some(f) = c.get("finish_reason").and_then(Value::as_str) {
                        *slot = Some(f.to_string());
                        self.last_finish = Some(f.to_string());
                    }
                }
                if chunk.get("usage").is_some_and(Value::is_object) {
                    self.usage = true;
                }
            }
            StreamEvent::Usage(_) => self.usage = true,
            _ => {}
        }
    }

    /// Every choice seen has finished (and there was at least one).
    pub fn finished(&self) -> bool {
        !self.choices.is_empty() && self.choices.values().all(Option::is_some)
    }

    /// Finished and usage reported: nothing more is worth waiting for.
    pub fn complete(&self) -> bool {
        self.finished() && self.usage
    }

    pub fn finish_reason(&self) -> Option<String> {
        self.last_finish.clone()
    }
}

/// Gives every streamed tool call its own `index`, per choice. Some
/// providers send parallel calls each whole at index 0 with distinct ids;
/// clients (and the fold) that key on the index would merge them. A new
/// non-empty id at an index already held is a new call, renumbered to the
/// next free index, and later fragments at that upstream index follow it.
#[derive(Debug, Default)]
pub struct ToolIndexer {
    /// (choice, upstream index) → (id held, index sent on).
    held: BTreeMap<(u64, u64), (Option<String>, u64)>,
    /// choice → next free index.
    next: BTreeMap<u64, u64>,
}

impl ToolIndexer {
    pub fn apply(&mut self, chunk: &mut Map<String, Value>) {
        let Some(Value::Array(choices)) = chunk.get_mut("choices") else {
            return;
        };
        for c in choices {
            let choice = c.get("index").and_then(Value::as_u64).unwrap_or(0);
            let Some(Value::Array(calls)) = c.get_mut("delta").and_then(|d| d.get_mut("tool_calls")) else {
                continue;
            };
            for call in calls.iter_mut().filter_map(Value::as_object_mut) {
                let up = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                let id = call
                    .get("id")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string);
                let next = self.next.entry(choice).or_insert(0);
                let sent = match self.held.get_mut(&(choice, up)) {
                    Some((held_id, sent)) if id.is_none() || held_id.is_none() || *held_id == id => {
                        if held_id.is_none() {
                            *held_id = id;
                        }
                        *sent
                    }
                    _ => {
                        if self.held.len() >= MAX_TOOL_CALLS * 4 {
                            continue; // leave a hostile stream's indices as they are
                        }
                        // An upstream's indices are kept while they are
                        // new, so well-behaved streams pass unchanged.
                        let sent = (*next).max(up);
                        *next = sent + 1;
                        self.held.insert((choice, up), (id, sent));
                        sent
                    }
                };
                call.insert("index".into(), sent.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chunk(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn parallel_calls_at_one_index_get_their_own() {
        let mut t = ToolIndexer::default();
        let mut sent = vec![];
        for i in 0..3 {
            let mut c = chunk(
                json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":format!("call_{i}"),"function":{"arguments":"{}"}}]}}]}),
            );
            t.apply(&mut c);
            sent.push(c["choices"][0]["delta"]["tool_calls"][0]["index"].clone());
        }
        assert_eq!(sent, [json!(0), json!(1), json!(2)]);
        // Fragments without an id follow the latest call at that index.
        let mut c =
            chunk(json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"x"}}]}}]}));
        t.apply(&mut c);
        assert_eq!(c["choices"][0]["delta"]["tool_calls"][0]["index"], 2);
    }

    #[test]
    fn well_formed_indices_pass_unchanged() {
        let mut t = ToolIndexer::default();
        for (idx, id) in [(0, Some("a")), (1, Some("b")), (0, None), (1, None), (1, Some("b"))] {
            let mut call = json!({"index": idx, "function": {"arguments": "1"}});
            if let Some(id) = id {
                call["id"] = id.into();
            }
            let mut c = chunk(json!({"choices":[{"index":0,"delta":{"tool_calls":[call]}}]}));
            t.apply(&mut c);
            assert_eq!(c["choices"][0]["delta"]["tool_calls"][0]["index"], idx);
        }
    }

    #[test]
    fn completion_needs_every_choice_finished() {
        let mut c = Completion::default();
        assert!(!c.finished());
        c.observe(&StreamEvent::Delta(chunk(
            json!({"choices":[{"index":0,"delta":{}},{"index":1,"delta":{}}]}),
        )));
        c.observe(&StreamEvent::Delta(chunk(
            json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}),
        )));
        assert!(!c.finished());
        c.observe(&StreamEvent::Delta(chunk(
            json!({"choices":[{"index":1,"delta":{},"finish_reason":"length"}]}),
        )));
        assert!(c.finished() && !c.complete());
        c.observe(&StreamEvent::Delta(chunk(
            json!({"choices":[],"usage":{"total_tokens":1}}),
        )));
        assert!(c.complete());
        assert_eq!(c.finish_reason().as_deref(), Some("length"));
    }
}
