//! The edge gateway: one request sequence for every route.
//!
//! # Layout
//! - `mod.rs` (this file): [`Request`], [`Response`], [`RequestCtx`] and
//!   [`Gateway`], whose doc lists the stage order; `handle` dispatches.
//! - `pipeline`: the one typed stage sequence every API route runs.
//! - `routes/`: what differs per route: decoding the client's request and
//!   rendering its errors (`mod.rs` for the OpenAI routes, `messages`,
//!   `tasks`), and the routes outside the pipeline (`admin`, `keys`,
//!   `docs`, `openapi`).
//! - `stages/`: authentication, rate limits, the cache and the account
//!   stage, with the isolate's coalesced KV counters and usage buckets.
//! - `upstream/`: the plan (which targets, in what order), circuit
//!   breakers, the attempt with its deadline, and the upstream event reader.
//! - `respond/`: the answer in the client's shape: the pump (streams), the
//!   fold (JSON) and the replay of a cache hit.
//! - `bootstrap`: what both platform adapters share: config and secrets,
//!   the isolate's gateway, body reading.
//! - `error`: [`GatewayError`], this boundary's error type.
//! - `webhook`: signed outgoing webhooks (task results, budget alerts).

pub mod bootstrap;
pub mod error;
pub(crate) mod pipeline;
pub mod respond;
pub mod routes;
pub mod stages;
pub mod upstream;
pub mod webhook;

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use serde_json::json;

use crate::config::{Config, ConfigError};
use crate::platform::{BodyStream, Platform};
use crate::wire::error::{render, OpenAiError, RenderedError};
use crate::wire::openai::completions::{ModelList, ModelObject};
use crate::wire::openai::validate::Endpoint;
use routes::ApiRoute;
use stages::auth;
use upstream::circuit;
use upstream::target::Target;

pub use error::GatewayError;

/// A request as the platform adapter hands it to the core, its body read
/// by [`bootstrap::read_body`] under `limits.max_body_bytes`. Its `Debug`
/// shows neither header values (the API key) nor the query (which may
/// hold one).
#[derive(Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as the client sent them.
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The whole body, or why there is none: a body is never passed on
    /// truncated.
    pub body: Result<Bytes, BodyError>,
    /// The client's location, when the platform knows it.
    pub geo: Option<upstream::plan::Geo>,
}

/// Why a request has no usable body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Longer than `limit` bytes.
    TooLarge { limit: usize },
    /// The client's stream failed before its end.
    Interrupted,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &path_without_query(&self.path))
            .field("headers", &crate::platform::header_names(&self.headers))
            .field("body_bytes", &self.body.as_ref().map(Bytes::len))
            .finish()
    }
}

impl Request {
    /// A request with a whole body.
    pub fn new(method: &str, path: &str, headers: Vec<(String, String)>, body: impl Into<Bytes>) -> Request {
        Request {
            method: method.to_string(),
            path: path.to_string(),
            headers,
            body: Ok(body.into()),
            geo: None,
        }
    }

    /// The body, or the error the client gets for not sending it whole.
    pub fn body(&self) -> Result<&Bytes, GatewayError> {
        self.body.as_ref().map_err(|e| match e {
            BodyError::TooLarge { limit } => {
                GatewayError::Validation(crate::wire::openai::ValidationError::BodyTooLarge {
                    size: limit.saturating_add(1),
                    limit: *limit,
                })
            }
            BodyError::Interrupted => GatewayError::BodyInterrupted,
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub enum Body {
    Full(Bytes),
    /// Bytes to forward as they come; each item is flushed at once.
    Stream(BodyStream),
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Response {
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Body::Full(serde_json::to_vec(value).unwrap_or_default().into()),
        }
    }

    /// A JSON body already encoded, relayed as it is.
    pub fn json_bytes(status: u16, body: bytes::Bytes) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Body::Full(body),
        }
    }

    pub fn error(e: &dyn OpenAiError) -> Response {
        Self::rendered(render(e))
    }

    fn rendered(r: RenderedError) -> Response {
        let mut resp = Response {
            status: r.status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Body::Full(r.to_json().into()),
        };
        if let Some(s) = r.retry_after_secs {
            resp.headers.push(("retry-after".into(), s.to_string()));
        }
        resp.headers.extend(r.headers);
        resp
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Facts about one request, gathered as it moves through the stages and
/// written as one structured log line at the end. Never holds prompt text
/// or key material.
#[derive(Debug, Clone, Default)]
pub struct RequestCtx {
    pub request_id: String,
    pub method: String,
    pub path: String,
    /// When the request arrived, on the monotonic clock.
    pub started_ms: u64,
    pub model: Option<String>,
    pub key_id: Option<String>,
    pub upstream: Option<String>,
    pub stream: bool,
    pub geo: Option<upstream::plan::Geo>,
}

impl RequestCtx {
    /// Emit the request's log line; `now_ms` is a monotonic reading.
    pub fn log(&self, status: u16, now_ms: u64, outcome: &str, usage: Option<crate::stream::Usage>) {
        tracing::info!(
            request_id = %self.request_id,
            method = %self.method,
            path = %self.path,
            status,
            model = self.model.as_deref().unwrap_or("-"),
            key_id = self.key_id.as_deref().unwrap_or("-"),
            upstream = self.upstream.as_deref().unwrap_or("-"),
            stream = self.stream,
            latency_ms = now_ms.saturating_sub(self.started_ms),
            prompt_tokens = usage.map_or(0, |u| u.prompt_tokens),
            completion_tokens = usage.map_or(0, |u| u.completion_tokens),
            outcome,
            "request"
        );
    }
}

/// The edge gateway.
///
/// # Stage order
/// Every API route (`/v1/chat/completions`, `/v1/completions`,
/// `/v1/embeddings`, `/v1/messages`, `POST /v1/tasks`) runs these stages in
/// this order, in [`pipeline`]; each takes the previous stage's typed
/// output, so a later stage cannot see an unvalidated request or an
/// unauthenticated caller.
///
/// 1. **dispatch** (`Request` → [`routes::ApiRoute`]): method and path;
///    unknown → 404/405.
/// 2. **decode** (`Bytes` → [`routes::Decoded`]): the route's part:
///    body-size cap first, then JSON, types (errors name the field),
///    ranges and the context estimate. Runs before authentication so
///    garbage costs no KV read.
/// 3. **authenticate** (headers → [`auth::Principal`]): SHA-256 of the key,
///    in-isolate cache, then KV. Invariant: the plaintext key is never
///    stored, logged or echoed.
/// 4. **admit** (principal → [`stages::ratelimit::Admission`]): requests and
///    reserved tokens (prompt estimate + completion budget) per minute, and
///    the monthly budget. Invariant: a 429 carries `Retry-After`.
/// 5. **cache** ([`stages::cache::CacheMode`]): deterministic or opted-in
///    requests are looked up by a tenant-scoped SHA-256; a hit is replayed
///    in the requested shape and charges no tokens.
/// 6. **plan** ([`upstream::plan::plan`]): the model's chain, or its heavy
///    chain when prompt + completion budget pass the threshold; the runner
///    pool nearest first; open circuits ([`circuit`]) skipped.
/// 7. **attempt** ([`upstream::attempt`]): each target with retries and
///    backoff, only before the first byte, under one deadline. Invariant: a
///    failure before the first byte is a clean HTTP error in the client's
///    shape.
/// 8. **respond** ([`respond`]): the pump forwards one chunk per upstream
///    event in the client's dialect, with a stall timeout; a failure after
///    the first byte becomes an SSE error event and a clean close. Clients
///    that did not ask to stream get the fold of the same events, or, at an
///    upstream of their own format, its JSON answer relayed unchanged
///    (within `limits.json_timeout_ms`).
/// 9. **account** ([`stages::account`]): rate-limit correction to real
///    usage, hourly usage, the cache write and the log line; exactly once
///    per admitted request, in the background, after the answer ended
///    however it ended. Invariant: an aborted stream is never cached.
#[derive(Clone)]
pub struct Gateway {
    pub config: Rc<Config>,
    targets: Rc<Vec<Target>>,
    shared: Rc<Shared>,
}

/// Isolate-wide mutable state. Borrowed only between awaits, never across.
#[derive(Debug)]
pub struct Shared {
    pub(crate) auth_cache: RefCell<auth::AuthCache>,
    pub counters: stages::counters::Counters,
    pub circuits: circuit::Circuits,
    /// Stored answers (Responses) this isolate wrote last.
    pub recent_records: stages::account::RecentRecords,
    /// The strict rate-limit backend's calls and grants in this isolate.
    pub strict: stages::strict::Local,
}

impl AsRef<stages::counters::Counters> for Shared {
    fn as_ref(&self) -> &stages::counters::Counters {
        &self.counters
    }
}

impl Gateway {
    pub fn new(config: Config) -> Gateway {
        let targets = Rc::new(config.providers.iter().map(Target::for_config).collect());
        let shared = Rc::new(Shared {
            recent_records: Default::default(),
            strict: Default::default(),
            auth_cache: RefCell::new(auth::AuthCache::new(config.auth.clone())),
            circuits: circuit::Circuits::new(
                config.routing.circuit_failures,
                config.routing.circuit_cooldown_ms,
                config.routing.deadline_ms,
            ),
            counters: stages::counters::Counters::new(
                config.rate_limits.sync_interval_ms,
                config.rate_limits.min_write_interval_ms,
            ),
        });
        Gateway {
            config: Rc::new(config),
            targets,
            shared,
        }
    }

    /// Handle one request. Never panics on any input and never returns a
    /// bare 500: every failure is rendered through [`render`].
    pub async fn handle<P: Platform>(&self, p: &P, req: Request) -> Response {
        let mut ctx = RequestCtx {
            request_id: request_id(&req, p),
            method: req.method.clone(),
            path: path_without_query(&req.path).to_string(),
            started_ms: p.monotonic_ms(),
            geo: req.geo.clone(),
            ..Default::default()
        };
        let result = self.dispatch(p, &req, &mut ctx).await;
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                let mut r = Response::error(&e);
                if let GatewayError::MethodNotAllowed { allowed, .. } = &e {
                    // RFC 9110: a 405 lists the methods the resource supports.
                    r.headers.push(("allow".into(), (*allowed).into()));
                }
                ctx.log(r.status, p.monotonic_ms(), e.error_type(), None);
                r
            }
        };
        resp.headers.push(("x-request-id".into(), ctx.request_id.clone()));
        resp
    }

    async fn dispatch<P: Platform>(
        &self,
        p: &P,
        req: &Request,
        ctx: &mut RequestCtx,
    ) -> Result<Response, GatewayError> {
        let path = path_without_query(&req.path);
        if path == "/admin" || path.starts_with("/admin/") {
            return self.admin(p, req, ctx).await;
        }
        if path == "/v1/messages" {
            if req.method != "POST" {
                return Err(not_allowed(&req.method, path, "POST"));
            }
            return Ok(self.run(p, req, ctx, ApiRoute::Messages).await);
        }
        if path.starts_with("/v1/responses/") {
            return self.stored_responses(p, req, ctx).await;
        }
        if req.method == "POST" && matches!(path, "/v1/tasks" | "/v1/tasks/") {
            return Ok(self.run(p, req, ctx, ApiRoute::Task).await);
        }
        if path == "/v1/tasks" || path.starts_with("/v1/tasks/") {
            return self.tasks(p, req, ctx).await;
        }
        let endpoint = match (req.method.as_str(), path) {
            ("GET" | "HEAD", "/health") => {
                return Ok(self.finish(p, ctx, Response::json(200, &json!({"status": "ok"}))))
            }
            ("GET" | "HEAD", "/ready") => {
                // Strict limits without their store would refuse every
                // limited request: not ready, and say what is missing.
                let strict = self.config.rate_limits.backend == crate::config::RateLimitBackendKind::Strict;
                if let Some(missing) = strict.then(|| p.strict_missing()).flatten() {
                    let body = json!({"status": "not_ready",
                        "reason": format!("rate_limits.backend is strict but {missing} is missing")});
                    return Ok(self.finish(p, ctx, Response::json(503, &body)));
                }
                let body = json!({"status": "ready", "models": self.config.models.len()});
                return Ok(self.finish(p, ctx, Response::json(200, &body)));
            }
            (m, "/openapi.json") => return routes::docs::openapi(m).map(|r| self.finish(p, ctx, r)),
            (m, "/docs") => return routes::docs::page(m).map(|r| self.finish(p, ctx, r)),
            ("GET", "/v1/models") => None,
            ("POST", "/v1/chat/completions") => Some(Endpoint::Chat),
            ("POST", "/v1/completions") => Some(Endpoint::Completion),
            ("POST", "/v1/embeddings") => Some(Endpoint::Embedding),
            ("POST", "/v1/responses") => return Ok(self.run(p, req, ctx, ApiRoute::Responses).await),
            (m, "/v1/models") => return Err(not_allowed(m, path, "GET")),
            (m, "/health" | "/ready") => return Err(not_allowed(m, path, "GET, HEAD")),
            (m, "/v1/chat/completions" | "/v1/completions" | "/v1/embeddings" | "/v1/responses") => {
                return Err(not_allowed(m, path, "POST"))
            }
            (m, _) => return Err(not_found(m, path)),
        };
        let Some(endpoint) = endpoint else {
            let principal = self.authenticate(p, req).await?;
            ctx.key_id = Some(principal.key_id.clone());
            return Ok(self.finish(p, ctx, self.models_response(&principal)));
        };
        Ok(self.run(p, req, ctx, ApiRoute::OpenAi(endpoint)).await)
    }

    fn models_response(&self, principal: &auth::Principal) -> Response {
        let data = self
            .config
            .models
            .values()
            .filter(|m| principal.may_use(&m.id))
            .map(|m| ModelObject {
                id: m.id.clone(),
                object: "model".into(),
                created: 0,
                owned_by: m.owned_by.clone(),
            })
            .collect();
        let list = ModelList {
            object: "list".into(),
            data,
        };
        Response::json(200, &serde_json::to_value(list).unwrap_or_default())
    }

    fn finish<P: Platform>(&self, p: &P, ctx: &RequestCtx, resp: Response) -> Response {
        ctx.log(resp.status, p.monotonic_ms(), "ok", None);
        resp
    }

    pub(crate) fn target(&self, idx: usize) -> (&crate::config::Upstream, &Target) {
        (&self.config.providers[idx], &self.targets[idx])
    }
}

fn not_found(method: &str, path: &str) -> GatewayError {
    GatewayError::NotFound {
        method: method.to_string(),
        path: path.chars().take(200).collect(),
    }
}

pub(crate) fn label_of(e: &GatewayError) -> &'static str {
    e.code().unwrap_or_else(|| e.error_type())
}

fn not_allowed(method: &str, path: &str, allowed: &'static str) -> GatewayError {
    GatewayError::MethodNotAllowed {
        method: method.to_string(),
        path: path.to_string(),
        allowed,
    }
}

/// Accept the client's `x-request-id` when it is a sane token, so traces
/// join up across hops; otherwise mint one. Anything else is replaced
/// rather than echoed, since it ends up in logs and headers.
fn request_id<P: Platform>(req: &Request, p: &P) -> String {
    if let Some(id) = req.header("x-request-id") {
        let ok = !id.is_empty()
            && id.len() <= 128
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if ok {
            return id.to_string();
        }
    }
    format!("req_{:016x}{:016x}", p.random_u64(), p.random_u64())
}

/// The path a log line or an error may carry: a query string can hold
/// credentials (`?api-key=`, `?key=`, signed URLs), so it is cut off.
pub fn path_without_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

/// What an unauthenticated client sees while the configuration is
/// invalid: the config error itself names paths and secrets and may echo a
/// value, so it is only for the operator (the log, or an admin token).
#[derive(Debug, thiserror::Error)]
#[error("The gateway is not configured correctly; retry later.")]
struct Misconfigured;

impl OpenAiError for Misconfigured {
    fn status(&self) -> u16 {
        503
    }
    fn error_type(&self) -> &'static str {
        crate::wire::error::kind::UNAVAILABLE
    }
    fn code(&self) -> Option<&'static str> {
        Some("gateway_misconfigured")
    }
}

/// What an adapter serves when the configuration failed to load: liveness
/// still answers; every other route is a generic 503, which names the
/// config problem only to a caller presenting `admin_token` (the adapter
/// reads it from [`crate::config::admin_secret_name`], as the config that
/// would name it is broken).
pub fn unconfigured_response(err: &ConfigError, req: &Request, admin_token: Option<&str>) -> Response {
    if matches!(req.method.as_str(), "GET" | "HEAD") && path_without_query(&req.path) == "/health" {
        return Response::json(200, &json!({"status": "ok"}));
    }
    tracing::error!(error = %err, "gateway configuration is invalid");
    if admin_token.is_some_and(|t| routes::admin::token_matches(&req.headers, t)) {
        Response::error(err)
    } else {
        Response::error(&Misconfigured)
    }
}
