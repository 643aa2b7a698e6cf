//! The answer, in the shape the client asked for.
//!
//! # Layout
//! - `mod.rs` (this file): [`ClientFormat`], the answer's shape, and
//!   [`respond`], which picks the pump or the fold for an opened upstream,
//!   or relays a whole JSON answer of the client's own format.
//! - `pump`: a stream forwarded chunk by chunk to a streaming client.
//! - `fold`: a stream drained into one JSON answer.
//! - `replay`: a cache hit served as JSON or as SSE.

pub mod fold;
pub mod pump;
pub mod replay;

use std::rc::Rc;

use serde_json::{Map, Value};

use super::stages::account::{self, Outcome, Settle};
use super::stages::cache::{CacheEntry, Recorder};
use super::upstream::attempt::{Native, Opened};
use super::upstream::target::NativeApi;
use super::{GatewayError, Response};
use crate::platform::Platform;
use crate::stream::{StreamEvent, Usage};
use crate::wire::anthropic::client::{to_message, AnthropicEncoder};
use crate::wire::anthropic::passthrough::PassthroughEncoder;
use crate::wire::openai::encode::ClientEncoder;
use crate::wire::openai::responses::native::{patch_previous, NativeEncoder};
use crate::wire::openai::responses::{to_response, ResponseMeta, ResponsesEncoder};
use crate::wire::openai::upstream::answer_chunks;
use crate::wire::openai::ValidRequest;

/// The shape a route's client reads its answer in.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFormat {
    /// OpenAI JSON, or `chat.completion.chunk` SSE.
    OpenAi,
    /// An Anthropic Message, or its SSE event sequence; `thinking`: the
    /// client asked for reasoning blocks; `native`: its own request, for an
    /// Anthropic upstream.
    Anthropic { thinking: bool, native: Rc<Native> },
    /// A task: answered `202` at once, the result stored for polling.
    Task { webhook_url: Option<String> },
    /// A Response object, or the Responses API's typed events; `native`:
    /// its own request, for an upstream that serves the Responses API.
    Responses { meta: Rc<ResponseMeta>, native: Rc<Native> },
}

impl ClientFormat {
    /// The client's own request, when an upstream of its format can take
    /// it unchanged.
    pub fn native(&self) -> Option<&Native> {
        match self {
            ClientFormat::Anthropic { native, .. } | ClientFormat::Responses { native, .. } => Some(native),
            _ => None,
        }
    }

    /// `native`: the upstream speaks the client's API, and its events are
    /// relayed as they came.
    pub(crate) fn encoder(&self, valid: &ValidRequest, native: Option<NativeApi>) -> Encoder {
        match self {
            ClientFormat::Anthropic { .. } if native.is_some() => Encoder::Passthrough(PassthroughEncoder::default()),
            ClientFormat::Anthropic { thinking, .. } => Encoder::Anthropic(AnthropicEncoder::new(*thinking)),
            ClientFormat::Responses { meta, .. } if native.is_some() => Encoder::ResponsesNative(NativeEncoder::new(
                meta.request.previous_response_id.clone(),
                &meta.model,
            )),
            ClientFormat::Responses { meta, .. } => {
                Encoder::Responses(Box::new(ResponsesEncoder::new((**meta).clone())))
            }
            _ => Encoder::OpenAi(ClientEncoder::new(valid.include_usage)),
        }
    }

    /// A folded answer in this shape: a relayed Message or Response as
    /// the upstream built it, or the translation of the folded completion.
    pub fn json(&self, folded: fold::Folded) -> Value {
        match (self, folded.native) {
            (ClientFormat::Anthropic { .. }, Some(own)) => own,
            (ClientFormat::Responses { meta, .. }, Some(mut own)) => {
                patch_previous(&mut own, meta.request.previous_response_id.as_deref());
                own
            }
            (ClientFormat::Anthropic { thinking, .. }, None) => to_message(&folded.body, *thinking),
            (ClientFormat::Responses { meta, .. }, None) => to_response(&folded.body, meta),
            (_, _) => folded.body,
        }
    }
}

/// Bytes of generated text in a chunk: content, text, reasoning, refusal
/// and tool arguments.
pub(crate) fn output_bytes(chunk: &Map<String, Value>) -> usize {
    let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
        return 0;
    };
    let len = |v: &Value| v.as_str().map_or(0, str::len);
    choices
        .iter()
        .map(|c| {
            let d = &c["delta"];
            let calls = d["tool_calls"].as_array().into_iter().flatten();
            len(&c["text"])
                + ["content", "reasoning_content", "reasoning", "refusal"]
                    .iter()
                    .map(|k| len(&d[*k]))
                    .sum::<usize>()
                + calls.map(|t| len(&t["function"]["arguments"])).sum::<usize>()
        })
        .fold(0, usize::saturating_add)
}

/// A failure after the upstream began to answer: the error, and the text
/// the upstream had sent by then, which the account stage charges as an
/// estimate (the tokens were generated, whatever the client got).
#[derive(Debug)]
pub struct Failure {
    pub error: GatewayError,
    /// `(bytes, chunks)` of generated text.
    pub output_seen: (usize, u64),
}

impl Failure {
    pub fn after(error: GatewayError, output_seen: (usize, u64)) -> Failure {
        Failure { error, output_seen }
    }
}

impl From<GatewayError> for Failure {
    fn from(error: GatewayError) -> Failure {
        Failure::after(error, (0, 0))
    }
}

/// Stage 8: the opened upstream as the client's answer, with where its
/// outcome comes from. `recorder` collects a cacheable answer; `request_id`
/// is for log lines. Fails only when a folded stream fails, before any
/// byte reached the client.
pub async fn respond<P: Platform>(
    p: &P,
    opened: Opened<P>,
    valid: &ValidRequest,
    format: &ClientFormat,
    mut recorder: Option<Recorder>,
    request_id: &str,
) -> Result<(Response, Settle), Failure> {
    let ok = |usage: Option<Usage>, entry: Option<CacheEntry>| Outcome {
        status: 200,
        label: "ok",
        usage,
        entry,
        ..Default::default()
    };
    Ok(match opened {
        Opened::Json(body) => {
            let usage = serde_json::from_value::<Usage>(body["usage"].clone()).ok();
            // The same size cap as a recorded stream: a large batch of
            // vectors is served but not stored.
            let fits = |r: &Recorder| r.fits(serde_json::to_string(&body).map_or(usize::MAX, |s| s.len()));
            let entry = recorder.filter(fits).map(|_| CacheEntry {
                v: 1,
                chunks: vec![],
                usage,
                finish_reason: None,
                body: Some(body.clone()),
                created_ms: p.now_ms(),
            });
            (Response::json(200, &body), Settle::Now(Box::new(ok(usage, entry))))
        }
        Opened::Answer(answer) => {
            let entry = recorder.and_then(|mut r| {
                for chunk in answer_chunks(&answer.body) {
                    r.push(&chunk);
                }
                r.finish(answer.usage, answer.finish_reason.clone(), p.now_ms())
            });
            let mut outcome = ok(answer.usage, entry);
            let resp = match format {
                // The stored Response is what the client got, with the
                // conversation id the upstream never saw.
                ClientFormat::Responses { meta, .. } => {
                    let mut body = answer.body;
                    let patched = patch_previous(&mut body, meta.request.previous_response_id.as_deref());
                    let resp = if patched {
                        Response::json(200, &body)
                    } else {
                        Response::json_bytes(200, answer.bytes)
                    };
                    outcome.record = Some(body);
                    resp
                }
                _ => Response::json_bytes(200, answer.bytes),
            };
            (resp, Settle::Now(Box::new(outcome)))
        }
        Opened::Stream { events, first } if valid.stream => {
            let (tx, settle) = account::later();
            let enc = format.encoder(valid, events.native());
            let resp = pump::stream_response(p, events, first, enc, recorder, request_id.to_string(), tx);
            (resp, settle)
        }
        Opened::Stream { events, first } => {
            let folded = fold::fold_stream(events, first, &mut recorder).await?;
            let (usage, finish_reason) = (folded.usage, folded.finish_reason.clone());
            let entry = recorder.and_then(|r| r.finish(usage, finish_reason, p.now_ms()));
            let body = format.json(folded);
            let mut outcome = ok(usage, entry);
            if matches!(format, ClientFormat::Responses { .. }) {
                outcome.record = Some(body.clone());
            }
            (Response::json(200, &body), Settle::Now(Box::new(outcome)))
        }
    })
}

/// The client's stream dialect.
pub enum Encoder {
    OpenAi(ClientEncoder),
    Anthropic(AnthropicEncoder),
    /// An Anthropic client of an Anthropic upstream: its events relayed.
    Passthrough(PassthroughEncoder),
    Responses(Box<ResponsesEncoder>),
    /// A Responses client of a Responses upstream: its events relayed.
    ResponsesNative(NativeEncoder),
}

impl Encoder {
    /// The answer as the route stores it, once the stream has ended (a
    /// Response object); `None` for other dialects.
    pub fn take_final(&mut self) -> Option<Value> {
        match self {
            Encoder::Responses(e) => e.take_final(),
            Encoder::ResponsesNative(e) => e.take_final(),
            _ => None,
        }
    }

    /// The bytes of one event for the client; `None` when it sees nothing
    /// of this event.
    pub fn encode(&mut self, ev: StreamEvent) -> Option<Vec<u8>> {
        match self {
            Encoder::OpenAi(e) => e.encode(ev),
            Encoder::Anthropic(e) => e.encode(&ev),
            Encoder::Passthrough(e) => e.encode(&ev),
            Encoder::Responses(e) => e.encode(&ev),
            Encoder::ResponsesNative(e) => e.encode(&ev),
        }
    }
}
