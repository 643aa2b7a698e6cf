//! A cache hit, served in the shape the request asked for: the stored JSON
//! body, the stored chunks folded into one, or the chunks replayed as SSE.

use bytes::Bytes;
use serde_json::Value;

use super::fold::Folded;
use super::ClientFormat;
use crate::gateway::stages::cache::CacheEntry;
use crate::gateway::{Body, Response};
use crate::stream::{Fold, StreamEvent};
use crate::wire::openai::ValidRequest;

/// Serve a cache entry in the shape the request asked for: the stored
/// body, or the stored chunks through the client's own encoder (streams)
/// or fold (JSON). Also returns the answer as the route stores it (a
/// Response object), if it has one.
pub fn replay(entry: &CacheEntry, valid: &ValidRequest, format: &ClientFormat) -> (Response, Option<Value>) {
    if let Some(body) = &entry.body {
        return (Response::json(200, body), None);
    }
    let mut events: Vec<StreamEvent> = entry.chunks.iter().cloned().map(StreamEvent::Delta).collect();
    if let Some(u) = entry.usage {
        events.push(StreamEvent::Usage(u));
    }
    events.push(StreamEvent::Done {
        finish_reason: entry.finish_reason.clone(),
    });
    if valid.stream {
        let mut enc = format.encoder(valid, None);
        let bytes: Vec<u8> = events.into_iter().filter_map(|e| enc.encode(e)).flatten().collect();
        let resp = Response {
            status: 200,
            headers: vec![
                ("content-type".into(), "text/event-stream; charset=utf-8".into()),
                ("cache-control".into(), "no-cache".into()),
            ],
            body: Body::Full(Bytes::from(bytes)),
        };
        return (resp, enc.take_final());
    }
    let mut fold = Fold::new();
    for e in &events {
        // Stored entries hold no error events, so this cannot fail.
        let _ = fold.push(e);
    }
    let usage = fold.usage();
    let Ok(body) = fold.finish() else {
        return (Response::json(200, &Value::Null), None);
    };
    let folded = Folded {
        body,
        usage,
        finish_reason: entry.finish_reason.clone(),
        native: None,
    };
    let answer = format.json(folded);
    let record = matches!(format, ClientFormat::Responses { .. }).then(|| answer.clone());
    (Response::json(200, &answer), record)
}
