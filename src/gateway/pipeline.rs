//! Stages 2–7 for the OpenAI API routes: validate → authenticate →
//! rate-limit → cache → upstream → stream back → account.

use std::rc::Rc;

use bytes::Bytes;
use serde_json::Value;

use super::accounting::{Accounting, Outcome};
use super::auth::{AuthError, Principal};
use super::cache::{self, CacheEntry, CacheMode, Recorder};
use super::proxy::{self, ClientEncoder, Opened};
use super::ratelimit::{KeyLimits, KvRateLimiter, RateLimitBackend};
use super::{Body, Gateway, GatewayError, Request, RequestCtx, Response};
use crate::api::validate::{self, Endpoint, ValidRequest};
use crate::api::Usage;
use crate::platform::{KvStore, Platform};
use crate::stream::{Fold, StreamEvent};

/// Names the upstream that served (or last failed) a request.
pub const UPSTREAM_HEADER: &str = "x-infergate-upstream";

impl Gateway {
    pub(crate) fn validate(&self, endpoint: Endpoint, body: &[u8]) -> Result<ValidRequest, GatewayError> {
        let max = self.config.limits.max_body_bytes;
        Ok(match endpoint {
            Endpoint::Chat => validate::validate_chat(body, max, &*self.config)?,
            Endpoint::Completion => validate::validate_completion(body, max, &*self.config)?,
            Endpoint::Embedding => validate::validate_embedding(body, max, &*self.config)?,
        })
    }

    pub(crate) fn key_limits(&self, principal: &Principal) -> KeyLimits {
        let d = &self.config.rate_limits;
        KeyLimits {
            requests_per_minute: principal.record.requests_per_minute.or(d.default_requests_per_minute),
            tokens_per_minute: principal.record.tokens_per_minute.or(d.default_tokens_per_minute),
            monthly_token_budget: principal.record.monthly_token_budget,
        }
    }

    /// Authenticate and admit a validated request: the key must exist, may
    /// use the model, and must be under its limits.
    pub(crate) async fn admit<P: Platform>(
        &self,
        p: &P,
        req: &Request,
        ctx: &mut RequestCtx,
        valid: &ValidRequest,
    ) -> Result<(Principal, super::ratelimit::Admission), GatewayError> {
        let principal = self.authenticate(p, req).await?;
        ctx.key_id = Some(principal.key_id.clone());
        if !principal.may_use(&valid.model) {
            return Err(AuthError::ModelNotAllowed {
                model: valid.model.clone(),
            }
            .into());
        }
        let limiter = KvRateLimiter { shared: &self.shared };
        let admission = limiter
            .admit(
                p,
                &principal.key_id,
                self.key_limits(&principal),
                valid.reserved_tokens(),
            )
            .await??;
        Ok((principal, admission))
    }

    pub(crate) fn accounting(
        &self,
        principal: &Principal,
        valid: &ValidRequest,
        admission: Option<super::ratelimit::Admission>,
        cache: CacheMode,
        ctx: &RequestCtx,
    ) -> Accounting {
        Accounting {
            shared: Rc::clone(&self.shared),
            key_id: principal.key_id.clone(),
            price: self
                .config
                .models
                .get(&valid.model)
                .map(|m| m.price)
                .unwrap_or_default(),
            admission,
            cache,
            retention_secs: self.config.usage_retention_days * 86_400,
            prompt_estimate: u64::from(valid.prompt_tokens),
            output_cap: u64::from(valid.max_output_tokens),
            ctx: ctx.clone(),
        }
    }

    /// What the config maps the request's model to, for its cache key.
    fn resolved(&self, valid: &ValidRequest) -> cache::Resolved {
        let Some(model) = self.config.models.get(&valid.model) else {
            return cache::Resolved {
                upstream_model: valid.model.clone(),
                chain: Vec::new(),
            };
        };
        let heavy = super::route::is_heavy(model, valid.reserved_tokens());
        cache::Resolved {
            upstream_model: model.upstream_model.clone(),
            chain: super::route::chain_names(&self.config, model, heavy),
        }
    }

    /// The API routes' pipeline.
    pub(crate) async fn api<P: Platform>(
        &self,
        p: &P,
        req: &Request,
        ctx: &mut RequestCtx,
        endpoint: Endpoint,
    ) -> Result<Response, GatewayError> {
        let valid = self.validate(endpoint, &req.body)?;
        ctx.model = Some(valid.model.clone());
        ctx.stream = valid.stream;
        let (principal, admission) = self.admit(p, req, ctx, &valid).await?;
        let rl_headers = admission.headers.clone();
        let c = &self.config.cache;
        let resolved = self.resolved(&valid);
        let mode = cache::mode(
            &valid,
            &resolved,
            &req.headers,
            &principal.tenant,
            c.shared_across_tenants,
            c.default_ttl_secs,
            c.enabled,
        );
        let acct = self.accounting(&principal, &valid, Some(admission), mode.clone(), ctx);

        let mut resp = match self.respond(p, ctx, &valid, &mode, acct).await {
            Ok(r) => r,
            Err(e) => Response::error(&e),
        };
        resp.headers.extend(rl_headers);
        if let Some(u) = &ctx.upstream {
            resp.headers.push((UPSTREAM_HEADER.into(), u.clone()));
        }
        Ok(resp)
    }

    async fn respond<P: Platform>(
        &self,
        p: &P,
        ctx: &mut RequestCtx,
        valid: &ValidRequest,
        mode: &CacheMode,
        acct: Accounting,
    ) -> Result<Response, GatewayError> {
        if let CacheMode::Use { key, .. } = mode {
            // A cache read failure is a miss, not an outage.
            let hit = KvStore::get(p, key)
                .await
                .ok()
                .flatten()
                .and_then(|raw| CacheEntry::decode(&raw));
            if let Some(entry) = hit {
                let mut resp = replay(&entry, valid);
                resp.headers.push((cache::HEADER_STATUS.into(), "HIT".into()));
                let outcome = Outcome {
                    status: resp.status,
                    label: "cache_hit",
                    usage: entry.usage,
                    cache_hit: true,
                    ..Default::default()
                };
                acct.finish_later(p, outcome);
                return Ok(resp);
            }
        }
        let status_header = (cache::HEADER_STATUS.to_string(), mode.status(false).to_string());
        let recorder = matches!(mode, CacheMode::Use { .. }).then(|| Recorder::new(self.config.cache.max_entry_bytes));
        let opened = match proxy::open_upstream(self, p, ctx, valid).await {
            Ok(o) => o,
            Err(e) => {
                acct.finish_later(p, Accounting::failed_outcome(&e));
                return Err(e);
            }
        };
        let mut resp = match opened {
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
                self.finish_in_background(p, acct, 200, usage, entry);
                Response::json(200, &body)
            }
            Opened::Stream { events, first } if valid.stream => {
                let enc = proxy::Encoder::OpenAi(ClientEncoder::new(valid.include_usage));
                proxy::stream_response(p, events, first, enc, recorder, acct)
            }
            Opened::Stream { events, first } => {
                let mut recorder = recorder;
                match proxy::fold_stream(events, first, &mut recorder).await {
                    Ok((body, usage, finish_reason)) => {
                        let entry = recorder.and_then(|r| r.finish(usage, finish_reason, p.now_ms()));
                        self.finish_in_background(p, acct, 200, usage, entry);
                        Response::json(200, &body)
                    }
                    Err(e) => {
                        acct.finish_later(p, Accounting::failed_outcome(&e));
                        return Err(e);
                    }
                }
            }
        };
        resp.headers.push(status_header);
        Ok(resp)
    }

    fn finish_in_background<P: Platform>(
        &self,
        p: &P,
        acct: Accounting,
        status: u16,
        usage: Option<Usage>,
        entry: Option<CacheEntry>,
    ) {
        let outcome = Outcome {
            status,
            label: "ok",
            usage,
            entry,
            ..Default::default()
        };
        acct.finish_later(p, outcome);
    }
}

/// Serve a cache entry in the shape the request asked for.
pub fn replay(entry: &CacheEntry, valid: &ValidRequest) -> Response {
    if let Some(body) = &entry.body {
        return Response::json(200, body);
    }
    let mut events: Vec<StreamEvent> = entry.chunks.iter().cloned().map(StreamEvent::Delta).collect();
    if let Some(u) = entry.usage {
        events.push(StreamEvent::Usage(u));
    }
    events.push(StreamEvent::Done {
        finish_reason: entry.finish_reason.clone(),
    });
    if valid.stream {
        let mut enc = ClientEncoder::new(valid.include_usage);
        let bytes: Vec<u8> = events.into_iter().filter_map(|e| enc.encode(e)).flatten().collect();
        return Response {
            status: 200,
            headers: vec![
                ("content-type".into(), "text/event-stream; charset=utf-8".into()),
                ("cache-control".into(), "no-cache".into()),
            ],
            body: Body::Full(Bytes::from(bytes)),
        };
    }
    let mut fold = Fold::new();
    for e in &events {
        // Stored entries hold no error events, so this cannot fail.
        let _ = fold.push(e);
    }
    match fold.finish() {
        Ok(v) => Response::json(200, &v),
        Err(_) => Response::json(200, &Value::Null),
    }
}
