//! Calling the upstream and streaming its answer back.
//!
//! A streamed response is driven by a *pump* task spawned on the platform's
//! background runner (`waitUntil` on Workers), not by the client's reads
//! alone. The pump pushes each encoded chunk into a small bounded channel
//! whose receiver is the response body: a chunk is forwarded as soon as it
//! is decoded (no buffering), a slow client applies backpressure through
//! the bound, and when the client leaves, the send fails, the pump drops
//! the upstream body (cancelling it) and still runs the accounting step.

use std::collections::VecDeque;
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
use crate::api::error::{render, OpenAiError};
use crate::api::validate::Endpoint;
use crate::api::{Usage, ValidRequest};
use crate::platform::{BodyStream, HttpClient, Platform, Runtime};
use crate::providers::{ParseState, ProviderApi, ProviderError, ProviderImpl};
use crate::sse::{self, SseDecoder};
use crate::stream::{Fold, StreamEvent};

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

/// Upstream bytes → SSE events → provider events, with a stall timeout.
pub struct UpstreamEvents<P: Platform> {
    body: BodyStream,
    decoder: SseDecoder,
    provider: ProviderImpl,
    state: ParseState,
    pending: VecDeque<StreamEvent>,
    finished: bool,
    /// Whether the upstream ended the stream properly (`Done`).
    completed: bool,
    stall_ms: u64,
    /// While set, reads wait until this fixed time instead of a stall
    /// window from each read (the first-byte timeout).
    hold_until: Option<u64>,
    deadline: Deadline<P>,
}

/// How long a finished stream may take to reach its end of body before it
/// is cancelled instead (a few KB at most: usually just the close, which
/// arrives with the last event). Short, because a JSON client waits for it.
const DRAIN_MS: u64 = 100;
const DRAIN_MAX_BYTES: usize = 64 << 10;

impl<P: Platform> UpstreamEvents<P> {
    pub fn new(body: BodyStream, provider: ProviderImpl, stall_ms: u64, deadline: Deadline<P>) -> Self {
        let state = ParseState {
            created: deadline.platform().now_ms() / 1000,
            ..Default::default()
        };
        UpstreamEvents {
            body,
            decoder: SseDecoder::default(),
            provider,
            state,
            pending: VecDeque::new(),
            finished: false,
            completed: false,
            stall_ms,
            hold_until: None,
            deadline,
        }
    }

    /// The next event. After `Done` or `Error` it returns `None`. A stream
    /// that ends without `Done` yields `Error(Interrupted)`, so a truncated
    /// answer can never pass for a complete one.
    pub async fn next(&mut self) -> Option<StreamEvent> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                if matches!(ev, StreamEvent::Done { .. } | StreamEvent::Error(_)) {
                    self.finished = true;
                    self.completed = matches!(ev, StreamEvent::Done { .. });
                    self.pending.clear();
                }
                return Some(ev);
            }
            if self.finished {
                return None;
            }
            match self.decoder.next_event() {
                Ok(Some(ev)) => {
                    let evs = self.provider.parse_event(&mut self.state, &ev);
                    self.pending.extend(evs);
                    continue;
                }
                Ok(None) => {}
                Err(_) => return self.fail(ProviderError::Malformed),
            }
            match self.hold_until {
                Some(at) => self.deadline.set(at),
                None => self.deadline.set_in(self.stall_ms),
            }
            match self.deadline.run(self.body.next()).await {
                None => {
                    let timeout_ms = self.stall_ms;
                    return self.fail(ProviderError::Stalled { timeout_ms });
                }
                Some(None) | Some(Some(Err(_))) => return self.fail(ProviderError::Interrupted),
                Some(Some(Ok(bytes))) => self.decoder.push(&bytes),
            }
        }
    }

    /// The next event, waiting no later than `at` for it; `None` when that
    /// passes first.
    pub async fn next_by(&mut self, at: u64) -> Option<Option<StreamEvent>> {
        self.hold_until = Some(at);
        let ev = self.next().await;
        self.hold_until = None;
        match ev {
            Some(StreamEvent::Error(ProviderError::Stalled { .. })) => None,
            ev => Some(ev),
        }
    }

    fn fail(&mut self, e: ProviderError) -> Option<StreamEvent> {
        self.finished = true;
        Some(StreamEvent::Error(e))
    }

    /// Finish a stream that ended with `Done` by reading its body to the
    /// end, so the transfer completes instead of being cancelled: a cancel
    /// costs more than the last read on Workers, and a completed
    /// connection can be reused. Anything else is dropped (cancelled).
    pub async fn drain(mut self) {
        if !self.completed {
            return;
        }
        self.deadline.set_in(DRAIN_MS.min(self.stall_ms));
        let mut read = 0usize;
        while let Some(Some(Ok(b))) = self.deadline.run(self.body.next()).await {
            read += b.len();
            if read > DRAIN_MAX_BYTES {
                return;
            }
        }
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
        if !circuits.allow(&name, p.now_ms()) {
            continue;
        }
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
                    // The request was at fault, not the target.
                    circuits.success(&name);
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
        let v: Value = serde_json::from_slice(&body).map_err(|_| ProviderError::Malformed)?;
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

fn carries_output(chunk: &Map<String, Value>) -> bool {
    chunk.get("choices").and_then(Value::as_array).is_some_and(|cs| {
        cs.iter().any(|c| {
            let d = &c["delta"];
            d["content"].as_str().is_some_and(|s| !s.is_empty())
                || d.get("tool_calls").is_some()
                || c["text"].as_str().is_some_and(|s| !s.is_empty())
        })
    })
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
    // Chunks that carried output, as a token estimate when the stream dies
    // before the upstream reports usage (runners emit one token a chunk).
    let mut output_chunks: u64 = 0;
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
                if carries_output(chunk) {
                    output_chunks += 1;
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
        usage = Some(Usage {
            prompt_tokens: acct.prompt_estimate,
            completion_tokens: output_chunks,
            total_tokens: acct.prompt_estimate + output_chunks,
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
