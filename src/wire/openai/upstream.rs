//! OpenAI-compatible upstreams (OpenAI itself, vLLM, TGI, the native runner).
//!
//! The client's JSON object is forwarded as sent, with the model name
//! mapped. A streamed request also gets `stream_options.include_usage`
//! forced on, because accounting needs the usage chunk even when the client
//! did not ask for it (the gateway drops it again for such clients). A
//! request whose answer is translated is streamed even when its client did
//! not ask to (the answer is then a fold of the stream); one whose client
//! reads OpenAI's JSON asks for the JSON answer itself ([`parse_answer`]).

use serde_json::{Map, Value};

use super::validate::{Endpoint, ValidRequest};
use crate::sse::SseEvent;
use crate::stream::{StreamEvent, UpstreamError, Usage};
use crate::wire::{error_sent_with_2xx, parse_retry_after, Answer, ParseState};

/// The body forwarded to an OpenAI-compatible upstream: the client's
/// object with the model mapped. `whole`: the client's JSON answer is
/// asked for as JSON (`stream: false`, said outright); otherwise
/// streaming (with usage) is forced on. Embeddings have no
/// stream.
pub fn request_body(req: &ValidRequest, upstream_model: &str, whole: bool) -> Map<String, Value> {
    let mut body = req.body.clone();
    body.insert("model".into(), upstream_model.into());
    if whole {
        // Said outright: some servers stream when `stream` is absent.
        // (Validation refused `stream_options` without `stream`.)
        body.insert("stream".into(), false.into());
    } else if req.endpoint != Endpoint::Embedding {
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
    if let Some(err) = chunk.get("error").filter(|e| !e.is_null()) {
        return vec![StreamEvent::Error(error_sent_with_2xx(err))];
    }
    if let Some(choices) = chunk.get("choices").and_then(Value::as_array) {
        for c in choices {
            if let Some(fr) = c.get("finish_reason").and_then(Value::as_str) {
                if fr == ERROR_FINISH {
                    return vec![StreamEvent::Error(error_finish())];
                }
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

/// The `finish_reason` some servers (vLLM) give a generation that failed
/// part way: the text before it is not an answer.
const ERROR_FINISH: &str = "error";

fn error_finish() -> UpstreamError {
    UpstreamError::StreamError {
        message: "the generation failed (finish_reason \"error\")".into(),
    }
}

/// A whole `chat.completion` or `text_completion` answer, read for what
/// the gateway needs: usage, and whether it finished.
///
/// Returns `UpstreamError::StreamError` for an `error` sent with a 2xx
/// (`RateLimited` for a rate limit, [`error_sent_with_2xx`]) or a choice that finished with
/// `"error"`, `Malformed` for a body that is not such an object (no
/// `choices` array), and `Unfinished` when there is no choice or one has
/// no `finish_reason`: an answer cut short is never relayed as if whole, as
/// with a stream.
pub fn parse_answer(bytes: bytes::Bytes, body: Value) -> Result<Answer, UpstreamError> {
    if let Some(err) = body.get("error").filter(|e| !e.is_null()) {
        return Err(error_sent_with_2xx(err));
    }
    let choices = body
        .get("choices")
        .and_then(Value::as_array)
        .ok_or(UpstreamError::Malformed)?;
    let finishes: Vec<Option<&str>> = choices.iter().map(|c| c["finish_reason"].as_str()).collect();
    if finishes.is_empty() || finishes.iter().any(Option::is_none) {
        return Err(UpstreamError::Unfinished);
    }
    if finishes.contains(&Some(ERROR_FINISH)) {
        return Err(error_finish());
    }
    let usage = body
        .get("usage")
        .filter(|u| u.is_object())
        .and_then(|u| serde_json::from_value::<Usage>(u.clone()).ok());
    let finish_reason = finishes[0].map(str::to_string);
    Ok(Answer {
        bytes,
        body,
        usage,
        finish_reason,
    })
}

/// A whole answer as the chunks its stream would have had, one per choice
/// (the message as the delta), for the cache: an entry is chunks, served
/// later as a stream or folded back into this answer.
pub fn answer_chunks(body: &Value) -> Vec<Map<String, Value>> {
    let text = body["object"] == "text_completion";
    let mut head = Map::new();
    for k in ["id", "created", "model", "system_fingerprint", "service_tier"] {
        if let Some(v) = body.get(k).filter(|v| !v.is_null()) {
            head.insert(k.into(), v.clone());
        }
    }
    head.insert(
        "object".into(),
        if text {
            "text_completion"
        } else {
            "chat.completion.chunk"
        }
        .into(),
    );
    let choices = body["choices"].as_array().map(Vec::as_slice).unwrap_or_default();
    choices
        .iter()
        .map(|c| {
            let mut choice = Map::new();
            choice.insert("index".into(), c["index"].clone());
            if text {
                choice.insert("text".into(), c["text"].clone());
            } else {
                let mut delta = c["message"].as_object().cloned().unwrap_or_default();
                // A message's tool calls have no `index`; a chunk's do, and
                // the fold keys calls by it.
                if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
                    for (i, call) in calls.iter_mut().enumerate() {
                        if let Some(o) = call.as_object_mut() {
                            o.entry("index").or_insert(i.into());
                        }
                    }
                }
                choice.insert("delta".into(), Value::Object(delta));
            }
            choice.insert("logprobs".into(), c.get("logprobs").cloned().unwrap_or(Value::Null));
            choice.insert("finish_reason".into(), c["finish_reason"].clone());
            let mut chunk = head.clone();
            chunk.insert("choices".into(), Value::Array(vec![Value::Object(choice)]));
            chunk
        })
        .collect()
}
