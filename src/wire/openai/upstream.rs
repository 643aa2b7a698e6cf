//! OpenAI-compatible upstreams (OpenAI itself, vLLM, TGI, the native runner).
//!
//! The client's JSON object is forwarded as sent, with three changes: the
//! model name is mapped, `stream` is forced on (streaming is the only path;
//! non-streaming clients get a fold) and `stream_options.include_usage` is
//! forced on, because accounting needs the usage chunk even when the client
//! did not ask for it (the gateway drops it again for such clients).

use serde_json::{Map, Value};

use super::validate::{Endpoint, ValidRequest};
use crate::sse::SseEvent;
use crate::stream::{StreamEvent, UpstreamError, Usage};
use crate::wire::{parse_retry_after, ParseState};

/// The body forwarded to an OpenAI-compatible upstream: the client's
/// object with the model mapped and streaming (with usage) forced on,
/// except for embeddings, which have no stream.
pub fn request_body(req: &ValidRequest, upstream_model: &str) -> Map<String, Value> {
    let mut body = req.body.clone();
    body.insert("model".into(), upstream_model.into());
    let streaming = req.endpoint != Endpoint::Embedding;
    if streaming {
        body.insert("stream".into(), true.into());
        let mut opts = match body.remove("stream_options") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        opts.insert("include_usage".into(), true.into());
        body.insert("stream_options".into(), Value::Object(opts));
    }
    body
}

/// Map a non-2xx upstream response to an error; a client fault keeps
/// the upstream's explanation.
pub fn parse_error(status: u16, retry_after: Option<&str>, body: &[u8]) -> UpstreamError {
    match status {
        429 => UpstreamError::RateLimited {
            retry_after_secs: parse_retry_after(retry_after),
        },
        401 | 403 => UpstreamError::Unauthorized,
        400 | 404 | 409 | 413 | 422 => {
            // The client's request was at fault: pass the upstream's
            // explanation on, so the client can fix it.
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let err = &v["error"];
            let message = err["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("The upstream provider rejected the request (HTTP {status})."));
            UpstreamError::InvalidRequest {
                status: if status == 404 { 400 } else { status },
                message,
                param: err["param"].as_str().map(str::to_string),
            }
        }
        s => UpstreamError::Status { status: s },
    }
}

/// One upstream SSE event as zero or more stream events.
pub fn parse_event(state: &mut ParseState, ev: &SseEvent) -> Vec<StreamEvent> {
    let data = ev.data.trim();
    if data == "[DONE]" {
        state.done = true;
        return vec![StreamEvent::Done {
            finish_reason: state.finish_reason.clone(),
        }];
    }
    let Ok(Value::Object(chunk)) = serde_json::from_str::<Value>(data) else {
        return vec![StreamEvent::Error(UpstreamError::Malformed)];
    };
    if let Some(err) = chunk.get("error") {
        let message = err["message"].as_str().unwrap_or("unknown error").to_string();
        return vec![StreamEvent::Error(UpstreamError::StreamError { message })];
    }
    if let Some(choices) = chunk.get("choices").and_then(Value::as_array) {
        for c in choices {
            if let Some(fr) = c.get("finish_reason").and_then(Value::as_str) {
                state.finish_reason = Some(fr.to_string());
            }
        }
    }
    let mut out = Vec::with_capacity(2);
    if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
        if let Ok(usage) = serde_json::from_value::<Usage>(u.clone()) {
            out.push(StreamEvent::Usage(usage));
        }
    }
    out.insert(0, StreamEvent::Delta(chunk));
    out
}
