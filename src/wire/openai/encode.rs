//! Stream events to the bytes an OpenAI client reads: `chat.completion.chunk`
//! / `text_completion` SSE events, the optional usage chunk and `[DONE]`.

use serde_json::{Map, Value};

use crate::sse;
use crate::stream::StreamEvent;
use crate::wire::error::{render, OpenAiError};

/// Turns provider events into the bytes an OpenAI client expects.
pub struct ClientEncoder {
    include_usage: bool,
    /// id/object/created/model of the stream, to synthesise a usage chunk
    /// for providers that report usage as a separate event.
    header: Map<String, Value>,
    usage_in_chunks: bool,
}

impl ClientEncoder {
    pub fn new(include_usage: bool) -> Self {
        ClientEncoder {
            include_usage,
            header: Map::new(),
            usage_in_chunks: false,
        }
    }

    /// Takes the event by value: chunks are edited in place, never copied.
    pub fn encode(&mut self, ev: StreamEvent) -> Option<Vec<u8>> {
        match ev {
            // Only a client of the upstream's own format reads these.
            StreamEvent::Raw(_) => None,
            StreamEvent::Delta(mut chunk) => {
                if self.header.is_empty() {
                    for k in ["id", "object", "created", "model", "system_fingerprint"] {
                        if let Some(v) = chunk.get(k) {
                            self.header.insert(k.into(), v.clone());
                        }
                    }
                }
                if chunk.get("usage").is_some_and(Value::is_object) {
                    self.usage_in_chunks = true;
                }
                if !self.include_usage {
                    // The gateway asked for usage on the client's behalf;
                    // the client did not, so it must not see the extra
                    // chunk or the `usage: null` fields.
                    let had_usage = chunk.remove("usage").is_some_and(|u| u.is_object());
                    let no_choices = chunk.get("choices").and_then(Value::as_array).is_none_or(Vec::is_empty);
                    if had_usage && no_choices {
                        return None;
                    }
                }
                Some(sse::encode(None, &Value::Object(chunk).to_string()))
            }
            StreamEvent::Usage(u) => {
                if !self.include_usage || self.usage_in_chunks {
                    return None;
                }
                let mut chunk = self.header.clone();
                chunk.insert("choices".into(), Value::Array(vec![]));
                chunk.insert("usage".into(), serde_json::to_value(u).unwrap_or(Value::Null));
                Some(sse::encode(None, &Value::Object(chunk).to_string()))
            }
            StreamEvent::Done { .. } => Some(sse::DONE.to_vec()),
            StreamEvent::Error(e) => Some(error_event(&e)),
        }
    }
}

/// An in-stream error: the same JSON body an HTTP error would carry, as an
/// SSE `data:` event, which the OpenAI SDKs raise as an `APIError`.
pub fn error_event(e: &dyn OpenAiError) -> Vec<u8> {
    let r = render(e);
    sse::encode(None, &String::from_utf8_lossy(&r.to_json()))
}
