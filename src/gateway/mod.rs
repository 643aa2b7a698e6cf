//! The request pipeline.
//!
//! # Layout
//! - `mod.rs` (this file): request/response types, routing, the stage order.
//! - `auth`, `auth_stage`: API-key lookup by SHA-256, the bounded key cache.
//! - `pipeline`: the API routes' stage order, cache hits and misses.
//! - `ratelimit`: requests/tokens per minute and budgets, behind a backend trait.
//! - `counters`: KV counters coalesced per isolate (rate limits, usage).
//! - `cache`: exact-match cache keys, modes and stored entries.
//! - `usage`: hourly usage buckets and cost.
//! - `accounting`: the after-response stage.
//! - `proxy`: calling the upstream, the fold and pump, the client encoder.
//! - `events`: the upstream event stream: stall timeout, completeness, tool indices.
//! - `admin`, `keys`: the admin API (keys, usage, stats).
//! - `tasks`: async submit-then-poll jobs and signed webhooks.
//! - `messages`: the Anthropic-shaped `POST /v1/messages` route.
//! - `docs`: `GET /openapi.json` and the `GET /docs` page.
//! - `error`: [`GatewayError`], this boundary's error type.

mod accounting;
mod admin;
pub mod auth;
mod auth_stage;
pub mod cache;
pub mod counters;
pub mod deadline;
mod docs;
pub mod error;
pub mod events;
pub mod health;
pub mod keys;
mod messages;
mod pipeline;
pub mod proxy;
pub mod ratelimit;
pub mod route;
mod tasks;
pub mod usage;

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use serde_json::json;

use crate::api::completions::{ModelList, ModelObject};
use crate::api::error::{render, OpenAiError, RenderedError};
use crate::api::validate::Endpoint;
use crate::config::{Config, ConfigError};
use crate::platform::{BodyStream, Platform};
use crate::providers::ProviderImpl;

pub use error::GatewayError;

/// A request as the platform adapter hands it to the core. The body is
/// already read, bounded by `limits.max_body_bytes` (+1 so the core can
/// tell "too large" apart from "exactly at the limit").
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// The client's location, when the platform knows it.
    pub geo: Option<route::Geo>,
}

impl Request {
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
    pub started_ms: u64,
    pub model: Option<String>,
    pub key_id: Option<String>,
    pub upstream: Option<String>,
    pub stream: bool,
    pub geo: Option<route::Geo>,
}

impl RequestCtx {
    /// Emit the request's log line.
    pub fn log(&self, status: u16, now_ms: u64, outcome: &str, usage: Option<crate::api::Usage>) {
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
/// Every API request runs these stages in this order; each takes the
/// previous stage's typed output, so a later stage cannot see an
/// unvalidated request or an unauthenticated caller.
///
/// 1. **route** (`Request` → endpoint): method and path; unknown → 404/405.
/// 2. **parse + validate** (`Bytes` → [`ValidRequest`]): body-size cap first,
///    then JSON, types (errors name the field), ranges and the context
///    estimate. Runs before authentication so garbage costs no KV read.
/// 3. **authenticate** (headers → [`auth::Principal`]): SHA-256 of the key,
///    in-isolate cache, then KV. Invariant: the plaintext key is never
///    stored, logged or echoed.
/// 4. **rate-limit** (principal → [`ratelimit::Admission`]): requests and
///    reserved tokens (prompt estimate + completion budget) per minute, and
///    the monthly budget. Invariant: a 429 carries `Retry-After`.
/// 5. **cache** ([`cache::CacheMode`]): deterministic or opted-in requests
///    are looked up by a tenant-scoped SHA-256; a hit is replayed in the
///    requested shape and charges no tokens.
/// 6. **route** ([`route::plan`]): the model's chain, or its heavy chain
///    when prompt + completion budget pass the threshold; the runner pool
///    nearest first; open circuits ([`health`]) skipped. Retries with
///    backoff, then the next target, only before the first byte.
/// 7. **call upstream** (pure provider `build_request` + platform I/O), with
///    a first-byte timeout. Invariant: a failure before the first byte
///    reaches the client is a clean HTTP error in OpenAI's shape.
/// 8. **stream back**: upstream SSE → [`crate::stream::StreamEvent`] → the
///    client's encoding, one chunk forwarded per upstream event, with a
///    stall timeout. Invariant: a failure after the first byte becomes an
///    SSE error event followed by a clean close. Non-streaming clients get
///    the fold of the same events.
/// 9. **account** ([`accounting`]): rate-limit correction to real usage,
///    hourly usage, the cache write and the log line, run from the task
///    that drives the response, so they happen even when the client leaves
///    early. Invariant: an aborted stream is never cached.
#[derive(Clone)]
pub struct Gateway {
    pub config: Rc<Config>,
    providers: Rc<Vec<ProviderImpl>>,
    shared: Rc<Shared>,
}

/// Isolate-wide mutable state. Borrowed only between awaits, never across.
#[derive(Debug)]
pub struct Shared {
    pub(crate) auth_cache: RefCell<auth::AuthCache>,
    pub counters: counters::Counters,
    pub circuits: health::Circuits,
}

impl AsRef<counters::Counters> for Shared {
    fn as_ref(&self) -> &counters::Counters {
        &self.counters
    }
}

impl Gateway {
    pub fn new(config: Config) -> Gateway {
        let providers = Rc::new(config.providers.iter().map(ProviderImpl::for_config).collect());
        let shared = Rc::new(Shared {
            auth_cache: RefCell::new(auth::AuthCache::new(config.auth.clone())),
            circuits: health::Circuits::new(
                config.routing.circuit_failures,
                config.routing.circuit_cooldown_ms,
                config.routing.deadline_ms,
            ),
            counters: counters::Counters::new(
                config.rate_limits.sync_interval_ms,
                config.rate_limits.min_write_interval_ms,
            ),
        });
        Gateway {
            config: Rc::new(config),
            providers,
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
            started_ms: p.now_ms(),
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
                ctx.log(r.status, p.now_ms(), e.error_type(), None);
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
            return Ok(self.messages(p, req, ctx).await);
        }
        if path == "/v1/tasks" || path.starts_with("/v1/tasks/") {
            return self.tasks(p, req, ctx).await;
        }
        let endpoint = match (req.method.as_str(), path) {
            ("GET" | "HEAD", "/health") => {
                return Ok(self.finish(p, ctx, Response::json(200, &json!({"status": "ok"}))))
            }
            ("GET" | "HEAD", "/ready") => {
                let body = json!({"status": "ready", "models": self.config.models.len()});
                return Ok(self.finish(p, ctx, Response::json(200, &body)));
            }
            (m, "/openapi.json") => return docs::openapi(m).map(|r| self.finish(p, ctx, r)),
            (m, "/docs") => return docs::page(m).map(|r| self.finish(p, ctx, r)),
            ("GET", "/v1/models") => None,
            ("POST", "/v1/chat/completions") => Some(Endpoint::Chat),
            ("POST", "/v1/completions") => Some(Endpoint::Completion),
            ("POST", "/v1/embeddings") => Some(Endpoint::Embedding),
            (m, "/v1/models") => return Err(not_allowed(m, path, "GET")),
            (m, "/health" | "/ready") => return Err(not_allowed(m, path, "GET, HEAD")),
            (m, "/v1/chat/completions" | "/v1/completions" | "/v1/embeddings") => {
                return Err(not_allowed(m, path, "POST"))
            }
            (m, _) => return Err(not_found(m, path)),
        };
        let Some(endpoint) = endpoint else {
            let principal = self.authenticate(p, req).await?;
            ctx.key_id = Some(principal.key_id.clone());
            return Ok(self.finish(p, ctx, self.models_response(&principal)));
        };
        self.api(p, req, ctx, endpoint).await
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
        ctx.log(resp.status, p.now_ms(), "ok", None);
        resp
    }

    pub(crate) fn provider(&self, idx: usize) -> (&crate::config::Provider, &ProviderImpl) {
        (&self.config.providers[idx], &self.providers[idx])
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
        crate::api::error::kind::UNAVAILABLE
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
    if admin_token.is_some_and(|t| admin::token_matches(&req.headers, t)) {
        Response::error(err)
    } else {
        Response::error(&Misconfigured)
    }
}
