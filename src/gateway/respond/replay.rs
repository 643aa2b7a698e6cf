//! A cache hit, served in the shape the request asked for: the stored JSON
//! body, the stored chunks folded into one, or the chunks replayed as SSE.

use bytes::Bytes;
use serde_json::Value;

use crate::gateway::stages::cache::CacheEntry;
use crate::gateway::{Body, Response};
use crate::stream::{Fold, StreamEvent};
use crate::wire::openai::encode::ClientEncoder;
use crate::wire::openai::ValidRequest;

/// Serve a cache entry in the shape the request asked for.
pub fn replay(entry: &CacheEntry, valid: &ValidRequest) -> Response {
    if let Some(body) = &entry.body {
        return Response::json(200, body);
    }
    let mut events: Vec<StreamEvent> = entry.chunks.iter().cloned().map(StreamEvent::Delta).collect();
    if let Some(u) = entry.usage {
        events.push(StreamEvent::Usage(u));
    }
    events.push(StreamEvent::Done {
        finish_reason: entry.finish_reason.clone(),
    });
    if valid.stream {
        let mut enc = ClientEncoder::new(valid.include_usage);
        let bytes: Vec<u8> = events.into_iter().filter_map(|e| enc.encode(e)).flatten().collect();
        return Response {
            status: 200,
            headers: vec![
                ("content-type".into(), "text/event-stream; charset=utf-8".into()),
                ("cache-control".into(), "no-cache".into()),
            ],
            body: Body::Full(Bytes::from(bytes)),
        };
    }
    let mut fold = Fold::new();
    for e in &events {
        // Stored entries hold no error events, so this cannot fail.
        let _ = fold.push(e);
    }
    match fold.finish() {
        Ok(v) => Response::json(200, &v),
        Err(_) => Response::json(200, &Value::Null),
    }
}
