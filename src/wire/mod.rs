//! The wire formats: one module per format, both directions inside it.
//!
//! # Layout
//! - `openai`: Chat Completions, Completions and Embeddings. Client side:
//!   request types, validation into [`openai::ValidRequest`], the SSE
//!   encoder (the JSON answer is the fold in `crate::stream`, or the
//!   upstream's own, read by `upstream::parse_answer`). Upstream side: the
//!   forwarded request body and the chunk parser for OpenAI-compatible
//!   upstreams and the runners.
//! - `anthropic`: the Messages API. Client side: `/v1/messages` requests to
//!   the chat shape and the answer back as Anthropic events or a Message.
//!   Upstream side: chat requests to a Messages body and Anthropic events
//!   back to chunks. The stop-reason maps of both directions sit together.
//! - `error`: the one place any boundary's error is rendered, in OpenAI's
//!   shape or Anthropic's, as a response body or an in-stream event.
//!
//! - `mod.rs` (this file): what the upstream parsers share: [`ParseState`],
//!   [`Answer`] (a whole JSON answer relayed in the client's own format)
//!   and how an error sent with a 2xx reads.
//!
//! Everything here is pure: bytes and JSON in, bytes and JSON out. The
//! neutral model between formats is [`crate::stream::StreamEvent`].

pub mod anthropic;
pub mod error;
pub mod openai;

/// An upstream's whole JSON answer in the client's own format (a client
/// that did not ask to stream, an upstream that speaks its API), read for
/// what the gateway needs on the side: the body itself goes to the client
/// as the upstream sent it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The body as received, relayed unchanged.
    pub bytes: bytes::Bytes,
    /// The same body, parsed.
    pub body: serde_json::Value,
    /// Token counts, in OpenAI's names; `None` when the upstream sent none.
    pub usage: Option<crate::stream::Usage>,
    /// The first choice's finish reason (OpenAI's vocabulary for chat,
    /// the upstream's own otherwise), for the cache entry.
    pub finish_reason: Option<String>,
}

/// An `error` an upstream sent with a 2xx status, in a chunk, an event or
/// a JSON answer: an object with a `message` (OpenAI's and Anthropic's
/// `error` member), or a bare string. A rate limit keeps its kind (routers
/// code it `429` or `rate_limit_exceeded`, Anthropic types it
/// `rate_limit_error`), so the client still gets a 429 to back off on.
pub(crate) fn error_sent_with_2xx(err: &serde_json::Value) -> crate::stream::UpstreamError {
    use crate::stream::UpstreamError;
    let limited = err["code"].as_u64() == Some(429)
        || ["429", "rate_limit_exceeded"].iter().any(|c| err["code"] == *c)
        || ["rate_limit_error", "rate_limit_exceeded"]
            .iter()
            .any(|t| err["type"] == *t);
    if limited {
        return UpstreamError::RateLimited { retry_after_secs: None };
    }
    let message = err["message"]
        .as_str()
        .or(err.as_str())
        .unwrap_or("unknown error")
        .to_string();
    UpstreamError::StreamError { message }
}

/// Per-stream state an upstream parser keeps between SSE events.
#[derive(Debug, Default)]
pub struct ParseState {
    pub finish_reason: Option<String>,
    pub done: bool,
    /// Unix seconds, for chunks the gateway synthesises.
    pub created: u64,
    pub id: String,
    pub model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Content-block index → tool-call index (Anthropic).
    pub block_tools: std::collections::BTreeMap<u64, u64>,
    /// Tool blocks (by content index) whose arguments have been sent: one
    /// that ends with none sent gets `{}` (Anthropic).
    pub tool_args_sent: std::collections::BTreeSet<u64>,
    /// Tool blocks whose whole input came with their start (Anthropic).
    pub tool_input_given: std::collections::BTreeSet<u64>,
    pub tools: u64,
}

impl ParseState {
    /// A `chat.completion.chunk` of this stream with one choice: what the
    /// translating parsers (Anthropic, a Responses upstream) emit.
    pub fn chunk(&self, delta: serde_json::Value, finish: Option<&str>) -> serde_json::Map<String, serde_json::Value> {
        let v = serde_json::json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        match v {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }
}

/// `Retry-After` as seconds; HTTP dates are not worth parsing here, a
/// missing value just means "no hint".
pub fn parse_retry_after(v: Option<&str>) -> Option<u64> {
    v.and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| s.ceil() as u64)
}
