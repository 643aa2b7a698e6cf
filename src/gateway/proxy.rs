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
    platform: P,
    body: BodyStream,
    decoder: SseDecoder,
    provider: ProviderImpl,
    state: ParseState,
    pending: VecDeque<StreamEvent>,
    finished: bool,
    stall_ms: u64,
}

impl<P: Platform> UpstreamEvents<P> {
    pub fn new(platform: P, body: BodyStream, provider: ProviderImpl, stall_ms: u64) -> Self {
        UpstreamEvents {
            platform,
            body,
            decoder: SseDecoder::default(),
            provider,
            state: ParseState::default(),
            pending: VecDeque::new(),
            finished: false,
            stall_ms,
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
            match with_timeout(&self.platform, self.stall_ms, self.body.next()).await {
                None => {
                    let timeout_ms = self.stall_ms;
                    return self.fail(ProviderError::Stalled { timeout_ms });
                }
                Some(None) | Some(Some(Err(_))) => return self.fail(ProviderError::Interrupted),
                Some(Some(Ok(bytes))) => self.decoder.push(&bytes),
            }
        }
    }

    fn fail(&mut self, e: ProviderError) -> Option<StreamEvent> {
        self.finished = true;
        Some(StreamEvent::Error(e))
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

    pub fn encode(&mut self, ev: &StreamEvent) -> Option<Vec<u8>> {
        match ev {
            StreamEvent::Delta(chunk) => {
                if self.header.is_empty() {
                    for k in ["id", "object", "created", "model", "system_fingerprint"] {
                        if let Some(v) = chunk.get(k) {
                            self.header.insert(k.into(), v.clone());
                        }
                    }
                }
                let mut chunk = chunk.clone();
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
            StreamEvent::Error(e) => Some(error_event(e)),
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
    p: &P,
    mut body: BodyStream,
    limit: usize,
    stall_ms: u64,
) -> Result<Vec<u8>, ProviderError> {
    let mut out = Vec::new();
    loop {
        match with_timeout(p, stall_ms, body.next()).await {
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

/// Stages 4–5: pick the upstream, call it, and wait for its first event.
/// Until a byte reaches the client, every failure is still a clean HTTP
/// error, so this returns `Err` for all of them.
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
    let (provider_cfg, provider) = gw.provider(model.targets[0]);
    ctx.upstream = Some(provider_cfg.name.clone());
    let limits = &gw.config.limits;
    let http_req = provider.build_request(valid, &model.upstream_model);

    let resp = match with_timeout(p, limits.first_byte_timeout_ms, HttpClient::send(p, http_req)).await {
        None => {
            return Err(ProviderError::FirstByteTimeout {
                timeout_ms: limits.first_byte_timeout_ms,
            }
            .into())
        }
        Some(Err(e)) => {
            tracing::warn!(request_id = %ctx.request_id, upstream = %provider_cfg.name, error = %e, "upstream connect failed");
            return Err(ProviderError::Connect.into());
        }
        Some(Ok(r)) => r,
    };
    if !(200..300).contains(&resp.status) {
        let retry_after = resp.header("retry-after").map(str::to_string);
        let status = resp.status;
        let body = read_bounded(p, resp.body, 64 << 10, limits.stall_timeout_ms)
            .await
            .unwrap_or_default();
        tracing::warn!(request_id = %ctx.request_id, upstream = %provider_cfg.name, upstream_status = status, "upstream returned an error");
        return Err(provider.parse_error(status, retry_after.as_deref(), &body).into());
    }
    if valid.endpoint == Endpoint::Embedding {
        let body = read_bounded(p, resp.body, MAX_BUFFERED_UPSTREAM_BYTES, limits.stall_timeout_ms).await?;
        let v: Value = serde_json::from_slice(&body).map_err(|_| ProviderError::Malformed)?;
        return Ok(Opened::Json(v));
    }
    let mut events = UpstreamEvents::new(p.clone(), resp.body, provider.clone(), limits.stall_timeout_ms);
    match events.next().await {
        None => Err(GatewayError::Incomplete),
        Some(StreamEvent::Error(e)) => Err(e.into()),
        Some(first) => Ok(Opened::Stream {
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
    let usage = fold.usage();
    Ok((fold.finish()?, usage, finish_reason))
}

/// Stage 6 for streaming clients: hand back a response whose body is fed
/// by a pump task; the pump runs the account stage when the stream ends.
pub fn stream_response<P: Platform>(
    p: &P,
    events: Box<UpstreamEvents<P>>,
    first: StreamEvent,
    include_usage: bool,
    recorder: Option<Recorder>,
    acct: Accounting,
) -> Response {
    let (tx, rx) = futures_channel::mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let encoder = ClientEncoder::new(include_usage);
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

/// Drive one stream to its end, then account for it.
async fn pump<P: Platform>(
    p: P,
    mut events: Box<UpstreamEvents<P>>,
    first: StreamEvent,
    mut enc: ClientEncoder,
    mut tx: futures_channel::mpsc::Sender<Bytes>,
    mut recorder: Option<Recorder>,
    acct: Accounting,
) {
    let mut usage: Option<Usage> = None;
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
        if let Some(bytes) = enc.encode(&ev) {
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
    drop(events);
    tx.close_channel();
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
