//! Calling the upstream and streaming its answer back.
//!
//! A streamed response is driven by a *pump* task spawned on the platform's
//! background runner (`waitUntil` on Workers), not by the client's reads
//! alone. The pump pushes each encoded chunk into a small bounded channel
//! whose receiver is the response body: a chunk is forwarded as soon as it
//! is decoded (no buffering), a slow client applies backpressure through
//! the bound, and when the client leaves, the send fails, the pump drops
//! the upstream body (cancelling it) and still runs the accounting step.

use std::future::Future;

use bytes::Bytes;
use futures_util::future::{select, Either};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value};

use super::accounting::{Accounting, Outcome};
use super::cache::Recorder;
use super::deadline::Deadline;
use super::health::Transition;
use super::route;
use super::{Body, Gateway, GatewayError, RequestCtx, Response};
use crate::api::embeddings;
use crate::api::error::{render, OpenAiError};
use crate::api::validate::{Endpoint, Parsed};
use crate::api::{Usage, ValidRequest};
use crate::platform::{BodyStream, HttpClient, Platform, Runtime};
use crate::providers::{ProviderApi, ProviderError};
use crate::sse;
use crate::stream::{Fold, StreamEvent};

pub use super::events::UpstreamEvents;

/// Upper bound on an upstream error body or embeddings response read into
/// memory; both are small in practice and must not be unbounded.
const MAX_BUFFERED_UPSTREAM_BYTES: usize = 32 << 20;
/// Chunks in flight between the pump and a slow client.
const CHANNEL_DEPTH: usize = 16;

/// Run `fut`, giving up after `ms`.
pub async fn with_timeout<P: Runtime, T>(p: &P, ms: u64, fut: impl Future<Output = T>) -> Option<T> {
    let fut = std::pin::pin!(fut);
    match select(fut, p.sleep(ms)).await {
        Either::Left((v, _)) => Some(v),
        Either::Right(_) => None,
    }
}

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

/// The client's stream dialect.
pub enum Encoder {
    OpenAi(ClientEncoder),
    Anthropic(crate::api::messages::AnthropicEncoder),
}

impl Encoder {
    pub fn encode(&mut self, ev: StreamEvent) -> Option<Vec<u8>> {
        match self {
            Encoder::OpenAi(e) => e.encode(ev),
            Encoder::Anthropic(e) => e.encode(&ev),
        }
    }
}

/// An in-stream error: the same JSON body an HTTP error would carry, as an
/// SSE `data:` event, which the OpenAI SDKs raise as an `APIError`.
pub fn error_event(e: &dyn OpenAiError) -> Vec<u8> {
    let r = render(e);
    sse::encode(None, &String::from_utf8_lossy(&r.to_json()))
}

async fn read_bounded<P: Platform>(
    deadline: &mut Deadline<P>,
    mut body: BodyStream,
    limit: usize,
    stall_ms: u64,
) -> Result<Vec<u8>, ProviderError> {
    let mut out = Vec::new();
    loop {
        deadline.set_in(stall_ms);
        match deadline.run(body.next()).await {
            None => return Err(ProviderError::Stalled { timeout_ms: stall_ms }),
            Some(None) => return Ok(out),
            Some(Some(Err(_))) => return Err(ProviderError::Interrupted),
            Some(Some(Ok(b))) => {
                if out.len() + b.len() > limit {
                    return Err(ProviderError::Malformed);
                }
                out.extend_from_slice(&b);
            }
        }
    }
}

/// What the upstream call produced, before anything reached the client.
pub enum Opened<P: Platform> {
    /// A whole JSON body (embeddings have no stream).
    Json(Value),
    /// A stream whose first event has arrived and is not an error.
    Stream {
        events: Box<UpstreamEvents<P>>,
        first: StreamEvent,
    },
}

/// Stages 6–7: plan the fallback chain, then try each target (with
/// retries and backoff) until one produces its first event. Until a byte
/// reaches the client every failure is still a clean HTTP error, so retries
/// and failover happen only here, never mid-stream.
pub async fn open_upstream<P: Platform>(
    gw: &Gateway,
    p: &P,
    ctx: &mut RequestCtx,
    valid: &ValidRequest,
) -> Result<Opened<P>, GatewayError> {
    let model = gw
        .config
        .models
        .get(&valid.model)
        .ok_or_else(|| crate::api::ValidationError::ModelNotFound {
            model: valid.model.clone(),
        })?;
    let routing = &gw.config.routing;
    let heavy = route::is_heavy(model, valid.reserved_tokens());
    let plan = route::plan(
        &gw.config,
        model,
        heavy,
        ctx.geo.as_ref(),
        routing.region.as_deref(),
        || p.random_u64(),
    );
    let deadline = p.now_ms() + routing.deadline_ms;
    let circuits = &gw.shared.circuits;
    let mut last: Option<ProviderError> = None;
    'targets: for idx in plan {
        let name = gw.config.providers[idx].name.clone();
        circuits.sync(p, &name).await;
        // Held for this target's attempts. A probe that ends in success or
        // failure resolves the circuit; any other way out of this block (a
        // 429, the deadline, the request being dropped) hands it back.
        let Some(_permit) = circuits.allow(&name, p.now_ms()) else {
            continue;
        };
        for attempt in 0..=routing.retries {
            let now = p.now_ms();
            if now >= deadline {
                break 'targets;
            }
            if attempt > 0 {
                // Exponential backoff with jitter in [0.5, 1.5): spreads
                // retries from many isolates hitting one recovering target.
                let base = routing.backoff_base_ms.saturating_mul(1 << (attempt - 1).min(10));
                let jitter = 0.5 + (p.random_u64() % 1000) as f64 / 1000.0;
                let wait = ((base as f64 * jitter) as u64).min(deadline.saturating_sub(now));
                p.sleep(wait).await;
            }
            match try_target(gw, p, ctx, valid, idx, deadline).await {
                Ok(opened) => {
                    let t = circuits.success(&name);
                    circuits.publish(p, &name, t).await;
                    ctx.upstream = Some(name);
                    return Ok(opened);
                }
                Err(e) if !e.retryable() => {
                    // The request was at fault, not the target, which
                    // answered: that closes its circuit, here and for the
                    // other isolates.
                    let t = circuits.success(&name);
                    circuits.publish(p, &name, t).await;
                    ctx.upstream = Some(name);
                    return Err(e.into());
                }
                Err(e) => {
                    tracing::warn!(request_id = %ctx.request_id, upstream = %name, attempt, error = %e, "upstream attempt failed");
                    // A rate-limited target is busy, not down.
                    let t = if matches!(e, ProviderError::RateLimited { .. }) {
                        Transition::None
                    } else {
                        circuits.failure(&name, p.now_ms())
                    };
                    circuits.publish(p, &name, t).await;
                    // A rate-limited or misconfigured target will not get
                    // better within this request: move on at once.
                    let next_target = matches!(e, ProviderError::RateLimited { .. } | ProviderError::Unauthorized)
                        || matches!(t, Transition::Opened { .. });
                    last = Some(e);
                    if next_target {
                        break;
                    }
                }
            }
        }
    }
    match last {
        // Nothing answered at all: the service is unavailable, not broken.
        None | Some(ProviderError::Connect) => Err(GatewayError::NoUpstream),
        Some(e) => Err(e.into()),
    }
}

/// One attempt against one target.
async fn try_target<P: Platform>(
    gw: &Gateway,
    p: &P,
    ctx: &RequestCtx,
    valid: &ValidRequest,
    idx: usize,
    deadline: u64,
) -> Result<Opened<P>, ProviderError> {
    let (cfg, provider) = gw.provider(idx);
    let upstream_model = gw
        .config
        .models
        .get(&valid.model)
        .map_or(valid.model.as_str(), |m| m.upstream_model.as_str());
    let limits = &gw.config.limits;
    let start = p.now_ms();
    let http_req = provider.build_request(valid, upstream_model, start)?;
    let first_byte_at = (start + limits.first_byte_timeout_ms).min(deadline);
    let headers_at = (start + gw.config.routing.connect_timeout_ms).min(first_byte_at);
    let timeout = ProviderError::FirstByteTimeout {
        timeout_ms: limits.first_byte_timeout_ms.min(deadline.saturating_sub(start)),
    };
    // One timer serves the whole attempt: headers, first event, stalls.
    let mut deadline = Deadline::new(p.clone(), headers_at);
    let resp = match deadline.run(HttpClient::send(p, http_req)).await {
        None => return Err(timeout),
        Some(Err(e)) => {
            tracing::warn!(request_id = %ctx.request_id, upstream = %cfg.name, error = %e, "upstream connect failed");
            return Err(ProviderError::Connect);
        }
        Some(Ok(r)) => r,
    };
    if !(200..300).contains(&resp.status) {
        let retry_after = resp.header("retry-after").map(str::to_string);
        let status = resp.status;
        let body = read_bounded(&mut deadline, resp.body, 64 << 10, limits.stall_timeout_ms)
            .await
            .unwrap_or_default();
        tracing::warn!(request_id = %ctx.request_id, upstream = %cfg.name, upstream_status = status, "upstream returned an error");
        return Err(provider.parse_error(status, retry_after.as_deref(), &body));
    }
    if valid.endpoint == Endpoint::Embedding {
        let body = read_bounded(
            &mut deadline,
            resp.body,
            MAX_BUFFERED_UPSTREAM_BYTES,
            limits.stall_timeout_ms,
        )
        .await?;
        let mut v: Value = serde_json::from_slice(&body).map_err(|_| ProviderError::Malformed)?;
        if let Parsed::Embedding(e) = &valid.parsed {
            embeddings::encode_as(&mut v, embeddings::wants_base64(e.encoding_format.as_deref()));
        }
        return Ok(Opened::Json(v));
    }
    let mut events = UpstreamEvents::new(resp.body, provider.clone(), limits.stall_timeout_ms, deadline);
    match events.next_by(first_byte_at).await {
        None => Err(timeout),
        Some(None) => Err(ProviderError::Interrupted),
        Some(Some(StreamEvent::Error(e))) => Err(e),
        Some(Some(first)) => Ok(Opened::Stream {
            events: Box::new(events),
            first,
        }),
    }
}

/// Drain an opened stream into one JSON response (non-streaming clients),
/// recording chunks for the cache.
pub async fn fold_stream<P: Platform>(
    mut events: Box<UpstreamEvents<P>>,
    first: StreamEvent,
    recorder: &mut Option<Recorder>,
) -> Result<(Value, Option<Usage>, Option<String>), GatewayError> {
    let mut fold = Fold::new();
    let mut finish_reason = None;
    let mut next = Some(first);
    while let Some(ev) = next {
        if let (StreamEvent::Delta(chunk), Some(r)) = (&ev, recorder.as_mut()) {
            r.push(chunk);
        }
        if let StreamEvent::Done { finish_reason: f } = &ev {
            finish_reason = f.clone();
        }
        fold.push(&ev)?;
        next = events.next().await;
    }
    // Inline rather than spawned: a finished body ends at once, and work
    // spawned from a task that may itself be background work (tasks) must
    // not outlive the context it was started in.
    events.drain().await;
    let usage = fold.usage();
    Ok((fold.finish()?, usage, finish_reason))
}

/// Stage 6 for streaming clients: hand back a response whose body is fed
/// by a pump task; the pump runs the account stage when the stream ends.
pub fn stream_response<P: Platform>(
    p: &P,
    events: Box<UpstreamEvents<P>>,
    first: StreamEvent,
    encoder: Encoder,
    recorder: Option<Recorder>,
    acct: Accounting,
) -> Response {
    let (tx, rx) = futures_channel::mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    p.spawn(Box::pin(pump(p.clone(), events, first, encoder, tx, recorder, acct)));
    Response {
        status: 200,
        headers: vec![
            ("content-type".into(), "text/event-stream; charset=utf-8".into()),
            ("cache-control".into(), "no-cache".into()),
        ],
        body: Body::Stream(Box::pin(rx.map(Ok))),
    }
}

/// Bytes of generated text in a chunk: content, text, reasoning, refusal
/// and tool arguments.
fn output_bytes(chunk: &Map<String, Value>) -> usize {
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

/// Completion tokens for a stream that died before reporting usage: about
/// four bytes a token, at least one per chunk that carried text, and never
/// more than the request could consume (an upstream sending many tiny
/// chunks must not run up the client's bill).
pub fn estimate_output_tokens(bytes: usize, chunks: u64, cap: u64) -> u64 {
    let by_size = (bytes as u64).div_ceil(4);
    by_size.max(chunks).min(cap)
}

/// Drive one stream to its end, then account for it.
async fn pump<P: Platform>(
    p: P,
    mut events: Box<UpstreamEvents<P>>,
    first: StreamEvent,
    mut enc: Encoder,
    mut tx: futures_channel::mpsc::Sender<Bytes>,
    mut recorder: Option<Recorder>,
    acct: Accounting,
) {
    let mut usage: Option<Usage> = None;
    // Output seen, for a token estimate when the stream dies before the
    // upstream reports usage.
    let mut output_chunks: u64 = 0;
    let mut output_len: usize = 0;
    let mut label = "ok";
    let mut complete = false;
    let mut finish_reason = None;
    let mut next = Some(first);
    while let Some(ev) = next {
        match &ev {
            StreamEvent::Usage(u) => usage = Some(*u),
            StreamEvent::Delta(chunk) => {
                if let Some(r) = recorder.as_mut() {
                    r.push(chunk);
                }
                let n = output_bytes(chunk);
                if n > 0 {
                    output_chunks = output_chunks.saturating_add(1);
                    output_len = output_len.saturating_add(n);
                }
            }
            StreamEvent::Done { finish_reason: f } => {
                complete = true;
                finish_reason = f.clone();
            }
            StreamEvent::Error(e) => {
                label = e.code().unwrap_or("upstream_error");
                tracing::warn!(request_id = %acct.ctx.request_id, error = %e, "upstream failed mid-stream");
            }
        }
        let terminal = matches!(ev, StreamEvent::Done { .. } | StreamEvent::Error(_));
        if let Some(bytes) = enc.encode(ev) {
            if tx.send(Bytes::from(bytes)).await.is_err() {
                label = "client_disconnected";
                complete = false; // an aborted stream is never cached
                break; // dropping `events` cancels the upstream request
            }
        }
        if terminal {
            break;
        }
        next = events.next().await;
    }
    // The client's stream ends here; reading the upstream to its end (or
    // cancelling it) does not hold it up.
    drop(tx);
    events.drain().await;
    if usage.is_none() && output_chunks > 0 {
        let completion = estimate_output_tokens(output_len, output_chunks, acct.output_cap);
        usage = Some(Usage {
            prompt_tokens: acct.prompt_estimate,
            completion_tokens: completion,
            total_tokens: acct.prompt_estimate.saturating_add(completion),
        });
    }
    let entry = if complete {
        recorder.and_then(|r| r.finish(usage, finish_reason, p.now_ms()))
    } else {
        None
    };
    let outcome = Outcome {
        status: 200,
        label,
        usage,
        entry,
        cache_hit: false,
        // A client that left is not an upstream failure: its reservation
        // stays charged, since the upstream may have generated the tokens.
        failed: !complete && label != "client_disconnected",
    };
    acct.finish(&p, outcome).await;
}
