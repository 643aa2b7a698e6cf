//! Stage 7, the attempt: try each planned target, with retries and
//! backoff, until one produces its first event (or, for a client that did
//! not ask to stream, at an upstream of its own format, its whole JSON
//! answer).
//!
//! Until a byte reaches the client every failure is still a clean HTTP
//! error, so retries and failover happen only here, never mid-stream.

use std::cell::Cell;
use std::future::Future;

use futures_util::future::{select, Either};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use super::circuit::Transition;
use super::deadline::Deadline;
use super::events::UpstreamEvents;
use super::plan;
use super::target::NativeApi;
use crate::gateway::{Gateway, GatewayError, RequestCtx};
use crate::platform::{BodyStream, HttpClient, Platform, Runtime};
use crate::stream::{StreamEvent, UpstreamError};
use crate::wire::anthropic::passthrough;
use crate::wire::openai::validate::{Endpoint, Parsed};
use crate::wire::openai::ValidRequest;
use crate::wire::openai::{embeddings, responses};
use crate::wire::Answer;

/// Upper bound on an upstream error body or embeddings response read into
/// memory; both are small in practice and must not be unbounded.
const MAX_BUFFERED_UPSTREAM_BYTES: usize = 32 << 20;

/// Run `fut`, giving up after `ms`.
pub async fn with_timeout<P: Runtime, T>(p: &P, ms: u64, fut: impl Future<Output = T>) -> Option<T> {
    let fut = std::pin::pin!(fut);
    match select(fut, p.sleep(ms)).await {
        Either::Left((v, _)) => Some(v),
        Either::Right(_) => None,
    }
}

/// Read a whole body of at most `limit` bytes, each read within
/// `stall_ms`.
async fn read_bounded<P: Platform>(
    deadline: &mut Deadline<P>,
    mut body: BodyStream,
    limit: usize,
    stall_ms: u64,
) -> Result<Vec<u8>, UpstreamError> {
    let mut out = Vec::new();
    loop {
        deadline.set_in(stall_ms);
        match deadline.run(body.next()).await {
            None => return Err(UpstreamError::Stalled { timeout_ms: stall_ms }),
            Some(None) => return Ok(out),
            Some(Some(Err(_))) => return Err(UpstreamError::Interrupted),
            Some(Some(Ok(b))) => {
                if out.len() + b.len() > limit {
                    return Err(UpstreamError::Malformed);
                }
                out.extend_from_slice(&b);
            }
        }
    }
}

/// A body read for a JSON answer.
enum Read {
    /// Its bytes and the parsed value.
    Json(bytes::Bytes, Value),
    /// A whole body that is not JSON.
    Other(bytes::Bytes),
}

/// Whether a body that is not JSON is an SSE stream (events or comments).
fn looks_like_sse(bytes: &[u8]) -> bool {
    let t = bytes.trim_ascii_start();
    [&b"data:"[..], b"event:", b":", b"id:"]
        .iter()
        .any(|p| t.starts_with(p))
}

/// Bodies of undeclared length up to this many bytes are parsed as they
/// grow (see [`read_answer`]); past it only their end ends them.
const SPECULATE_MAX: usize = 1 << 20;

/// Read a whole JSON answer by `until` (on the monotonic clock). `declared`
/// is its `content-length`: once that many bytes are here it is parsed,
/// once. A body of undeclared length ends with its JSON value, not with its
/// connection (an upstream may hold a finished answer's connection open),
/// so each piece that could end a value is tried; only while the body is
/// small, since each try re-reads all of it.
///
/// Returns `UpstreamError::Stalled` when `until` passes first, `TooLarge`
/// past the cap, `Interrupted` when the connection fails first.
async fn read_answer<P: Platform>(
    deadline: &mut Deadline<P>,
    mut body: BodyStream,
    until: u64,
    declared: Option<usize>,
) -> Result<Read, UpstreamError> {
    let parsed = |out: Vec<u8>| match serde_json::from_slice(&out) {
        Ok(v) => Read::Json(out.into(), v),
        Err(_) => Read::Other(out.into()),
    };
    let mut out: Vec<u8> = Vec::new();
    deadline.set(until);
    loop {
        match deadline.run(body.next()).await {
            None => return Err(UpstreamError::Stalled { timeout_ms: 0 }),
            Some(None) => return Ok(parsed(out)),
            Some(Some(Err(_))) => return Err(UpstreamError::Interrupted),
            Some(Some(Ok(b))) => {
                if out.len() + b.len() > MAX_BUFFERED_UPSTREAM_BYTES {
                    return Err(UpstreamError::TooLarge {
                        limit: MAX_BUFFERED_UPSTREAM_BYTES,
                    });
                }
                // The common case, a body in one piece, is moved, not copied.
                if out.is_empty() {
                    out = b.into();
                } else {
                    out.extend_from_slice(&b);
                }
                match declared {
                    Some(n) if out.len() >= n => return Ok(parsed(out)),
                    Some(_) => {}
                    // Only an object's closing brace can end a value.
                    None if out.len() <= SPECULATE_MAX && out.trim_ascii_end().ends_with(b"}") => {
                        if let Ok(v) = serde_json::from_slice(&out) {
                            return Ok(Read::Json(out.into(), v));
                        }
                    }
                    None => {}
                }
            }
        }
    }
}

/// The client's own request, for an upstream that speaks the client's
/// wire format: its API, its JSON body and the headers that go with it
/// ([`passthrough::FORWARDED_HEADERS`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Native {
    pub api: NativeApi,
    pub body: Map<String, Value>,
    pub headers: Vec<(String, String)>,
}

/// What the upstream call produced, before anything reached the client.
pub enum Opened<P: Platform> {
    /// A whole JSON body (embeddings have no stream).
    Json(Value),
    /// The whole answer of an upstream of the client's own format, for a
    /// client that did not ask to stream.
    Answer(Answer),
    /// A stream whose first event has arrived and is not an error.
    Stream {
        events: Box<UpstreamEvents<P>>,
        first: StreamEvent,
    },
}

/// Who waits on an upstream attempt, which decides what giving up on one
/// leads to (see [`crate::platform::HttpRequest::cancel_on_drop`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A client's request: a JSON attempt given up on ends it, and the
    /// runtime cancels the request's outbound calls when it ends.
    Client,
    /// Work that goes on after its attempt gives up (a task stores its
    /// failure and calls its webhook): every attempt must be cancellable.
    Background,
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
    native: Option<&Native>,
    caller: Caller,
) -> Result<Opened<P>, GatewayError> {
    let model =
        gw.config
            .models
            .get(&valid.model)
            .ok_or_else(|| crate::wire::openai::ValidationError::ModelNotFound {
                model: valid.model.clone(),
            })?;
    let routing = &gw.config.routing;
    let heavy = plan::is_heavy(model, valid.reserved_tokens());
    let plan = plan::plan(
        &gw.config,
        model,
        heavy,
        ctx.geo.as_ref(),
        routing.region.as_deref(),
        || p.random_u64(),
    );
    let deadline = p.monotonic_ms() + routing.deadline_ms;
    let circuits = &gw.shared.circuits;
    let mut last: Option<UpstreamError> = None;
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
            let now = p.monotonic_ms();
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
            let settled = Cell::new(false);
            match try_target(gw, p, ctx, valid, native, idx, deadline, caller, &settled).await {
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
                    // One line per failed attempt; a connect failure was
                    // logged with its transport error where it happened.
                    if e != UpstreamError::Connect {
                        tracing::warn!(request_id = %ctx.request_id, upstream = %name, attempt, error = %e, "upstream attempt failed");
                    }
                    // The log line and `x-infergate-upstream` name the
                    // target that failed last when none serves.
                    ctx.upstream = Some(name.clone());
                    // A rate-limited target is busy, not down.
                    let t = if matches!(e, UpstreamError::RateLimited { .. }) {
                        Transition::None
                    } else {
                        circuits.failure(&name, p.now_ms())
                    };
                    circuits.publish(p, &name, t).await;
                    // A rate-limited or misconfigured target will not get
                    // better within this request: move on at once.
                    let next_target = matches!(e, UpstreamError::RateLimited { .. } | UpstreamError::Unauthorized)
                        || matches!(t, Transition::Opened { .. });
                    last = Some(e);
                    // A JSON answer the upstream delivered (and generated,
                    // and billed) but that cannot be relayed, or one that
                    // took the whole JSON timeout: another try would cost
                    // as much again, so the client hears now.
                    if settled.get() {
                        break 'targets;
                    }
                    if next_target {
                        break;
                    }
                }
            }
        }
    }
    match last {
        // Nothing answered at all: the service is unavailable, not broken.
        None | Some(UpstreamError::Connect) => Err(GatewayError::NoUpstream),
        Some(e) => Err(e.into()),
    }
}

/// One attempt against one target. `settled` is set when its failure
/// must end the request rather than be retried (see the caller).
#[allow(clippy::too_many_arguments)]
async fn try_target<P: Platform>(
    gw: &Gateway,
    p: &P,
    ctx: &RequestCtx,
    valid: &ValidRequest,
    native: Option<&Native>,
    idx: usize,
    deadline: u64,
    caller: Caller,
    settled: &Cell<bool>,
) -> Result<Opened<P>, UpstreamError> {
    let (cfg, target) = gw.target(idx);
    let upstream_model = gw
        .config
        .models
        .get(&valid.model)
        .map_or(valid.model.as_str(), |m| m.upstream_model.as_str());
    let limits = &gw.config.limits;
    let start = p.monotonic_ms();
    // The wall clock: a runner checks the signature's timestamp against its own.
    let now = p.now_ms();
    // A client that did not ask to stream, at an upstream of its own
    // format, gets the upstream's JSON answer: one body read instead of
    // one per event, and nothing to fold or re-encode.
    let whole = !valid.stream && valid.endpoint != Endpoint::Embedding && target.speaks_client(native.map(|n| n.api));
    let (mut http_req, forwarded) = match native {
        // The client speaks this upstream's format: nothing to translate.
        Some(n) if target.serves(n.api) => {
            let (path, body) = match n.api {
                NativeApi::Messages => ("/messages", passthrough::request_body(&n.body, upstream_model, whole)),
                NativeApi::Responses => (
                    "/responses",
                    responses::native::request_body(&n.body, &[], upstream_model, whole),
                ),
            };
            let mut r = target.request(path, body, now);
            r.headers.extend(n.headers.iter().cloned());
            (r, Some(n.api))
        }
        _ => (target.build_request(valid, upstream_model, now, whole)?, None),
    };
    let first_byte_at = (start + limits.first_byte_timeout_ms).min(deadline);
    // A JSON answer's first byte comes when it is whole: its wait is its own.
    let answer_at = start.saturating_add(limits.json_timeout_ms);
    let headers_at = if whole {
        answer_at
    } else {
        (start + gw.config.routing.connect_timeout_ms).min(first_byte_at)
    };
    let timeout = if whole {
        UpstreamError::AnswerTimeout {
            timeout_ms: limits.json_timeout_ms,
        }
    } else {
        UpstreamError::FirstByteTimeout {
            timeout_ms: limits.first_byte_timeout_ms.min(deadline.saturating_sub(start)),
        }
    };
    // A client's JSON attempt given up on is never followed by another
    // (its timeout is `settled`, below), so ending the client's request
    // ends it: the platform need not be able to cancel it on its own.
    http_req.cancel_on_drop = !whole || caller == Caller::Background;
    // One timer serves the whole attempt: headers, first event, stalls.
    let mut deadline = Deadline::new(p.clone(), headers_at);
    let resp = match deadline.run(HttpClient::send(p, http_req)).await {
        None => {
            // A JSON answer's whole timeout has run out: not tried again.
            settled.set(whole);
            return Err(timeout);
        }
        Some(Err(e)) => {
            tracing::warn!(request_id = %ctx.request_id, upstream = %cfg.name, error = %e, "upstream attempt failed: could not connect");
            return Err(UpstreamError::Connect);
        }
        Some(Ok(r)) => r,
    };
    if !(200..300).contains(&resp.status) {
        let retry_after = resp.header("retry-after").map(str::to_string);
        let status = resp.status;
        let body = read_bounded(&mut deadline, resp.body, 64 << 10, limits.stall_timeout_ms)
            .await
            .unwrap_or_default();
        return Err(target.parse_error(status, retry_after.as_deref(), &body));
    }
    // An upstream that streams although asked for JSON (some proxies
    // always do) is read as the stream it is, and folded.
    let declared = resp
        .header("content-length")
        .and_then(|v| v.trim().parse::<usize>().ok());
    let event_stream = resp
        .header("content-type")
        .is_some_and(crate::platform::is_event_stream);
    let mut body = resp.body;
    if whole && !event_stream {
        let answer = match read_answer(&mut deadline, body, answer_at, declared).await {
            Ok(Read::Json(bytes, v)) => target.forwarding(forwarded).parse_answer(bytes, v).map_err(Err),
            Ok(Read::Other(bytes)) if looks_like_sse(&bytes) => Err(Ok(bytes)),
            Ok(Read::Other(_)) => Err(Err(UpstreamError::Malformed)),
            Err(UpstreamError::Stalled { .. }) => Err(Err(timeout.clone())),
            Err(e) => Err(Err(e)),
        };
        match answer {
            Ok(a) => return Ok(Opened::Answer(a)),
            // Read as the stream it is, below.
            Err(Ok(sse)) => body = Box::pin(futures_util::stream::iter([Ok(sse)])),
            Err(Err(e)) => {
                // A cut connection may go better next time, and a rate
                // limit moves on to the next target as usual; anything
                // else was delivered whole, or waited for in full.
                settled.set(!matches!(
                    e,
                    UpstreamError::Interrupted | UpstreamError::RateLimited { .. }
                ));
                return Err(e);
            }
        }
    }
    if valid.endpoint == Endpoint::Embedding {
        let body = read_bounded(
            &mut deadline,
            body,
            MAX_BUFFERED_UPSTREAM_BYTES,
            limits.stall_timeout_ms,
        )
        .await?;
        let mut v: Value = serde_json::from_slice(&body).map_err(|_| UpstreamError::Malformed)?;
        if let Parsed::Embedding(e) = &valid.parsed {
            embeddings::encode_as(&mut v, embeddings::wants_base64(e.encoding_format.as_deref()));
        }
        return Ok(Opened::Json(v));
    }
    let mut events = UpstreamEvents::new(body, target.forwarding(forwarded), limits.stall_timeout_ms, deadline);
    match events.next_by(first_byte_at).await {
        None => Err(timeout),
        Some(None) => Err(UpstreamError::Interrupted),
        Some(Some(StreamEvent::Error(e))) => Err(e),
        Some(Some(first)) => Ok(Opened::Stream {
            events: Box::new(events),
            first,
        }),
    }
}
