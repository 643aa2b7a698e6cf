//! The one stage sequence every API route runs (`/v1/chat/completions`,
//! `/v1/completions`, `/v1/embeddings`, `/v1/messages`, `POST /v1/tasks`).
//!
//! Each stage takes the previous stage's output type:
//!
//! ```text
//! Request ─decode→ Decoded ─admit→ Admitted ─serve→ (Response, Settle) ─account→ log line
//!                   (route)        (auth, limits)   (cache, upstream, respond)   (once)
//! ```
//!
//! What differs per route is its [`ApiRoute::decode`], its [`ClientFormat`]
//! (the answer's shape, which also decides whether the cache applies) and
//! how its errors are rendered. A task's answer is a stored record: its
//! stages 7–8 run in the background (`routes/tasks.rs`) and hand their
//! outcome back like a stream's.
//! A request that fails before admission holds no reservation and is only
//! logged; an admitted one is accounted exactly once, in [`Gateway::run`],
//! whatever happened in between: the stages return the outcome (or, for a
//! stream or a task, a receiver that yields it when they end) instead of
//! accounting themselves.

use super::respond::{self, ClientFormat, Failure};
use super::routes;
use super::routes::{ApiRoute, Decoded};
use super::stages::account::{Accounting, Outcome, Settle, Store};
use super::stages::auth::{AuthError, Principal};
use super::stages::budget::Budgets;
use super::stages::cache::{self, CacheEntry, CacheMode, Recorder};
use super::stages::ratelimit::{Admission, KeyLimits, KvRateLimiter, RateLimitBackend, Reserve};
use super::stages::strict::StrictRateLimiter;
use super::upstream::{attempt, plan};
use super::{Gateway, GatewayError, Request, RequestCtx, Response};
use crate::config::RateLimitBackendKind;
use crate::platform::{KvStore, Platform};
use crate::wire::error::OpenAiError;
use crate::wire::openai::ValidRequest;

/// Names the upstream that served (or last failed) a request.
pub const UPSTREAM_HEADER: &str = "x-infergate-upstream";

/// Stages 3–4: a decoded request from a known key, within its limits.
pub(crate) struct Admitted {
    pub valid: ValidRequest,
    pub format: ClientFormat,
    pub principal: Principal,
    pub admission: Admission,
}

impl Gateway {
    /// Run one API request through every stage. Never fails: errors are
    /// rendered in the route's shape.
    pub(crate) async fn run<P: Platform>(
        &self,
        p: &P,
        req: &Request,
        ctx: &mut RequestCtx,
        route: ApiRoute,
    ) -> Response {
        let admitted = match self.decode_and_admit(p, req, ctx, route).await {
            Ok(a) => a,
            Err(e) => {
                // Nothing reserved, nothing to correct: the log line is the
                // whole account of a request refused this early.
                ctx.log(e.status(), p.monotonic_ms(), super::label_of(&e), None);
                return route.render_error(&e);
            }
        };
        let acct = self.accounting(&admitted, req);
        let rl_headers = admitted.admission.headers.clone();
        let (mut resp, settle) = match self.serve(p, ctx, &admitted, &acct.cache).await {
            Ok(served) => served,
            Err(Failure { error, output_seen }) => {
                let outcome = Outcome {
                    output_seen,
                    ..Outcome::failed(&error)
                };
                (route.render_error(&error), Settle::Now(Box::new(outcome)))
            }
        };
        resp.headers.extend(rl_headers);
        if let Some(u) = &ctx.upstream {
            resp.headers.push((UPSTREAM_HEADER.into(), u.clone()));
        }
        // The context is taken now, after the attempt named the upstream.
        acct.settle(p, ctx.clone(), settle);
        resp
    }

    /// Stages 2–4: decode (the route's part), authenticate, admit.
    async fn decode_and_admit<P: Platform>(
        &self,
        p: &P,
        req: &Request,
        ctx: &mut RequestCtx,
        route: ApiRoute,
    ) -> Result<Admitted, GatewayError> {
        // Decoding runs before authentication so garbage costs no KV read.
        let Decoded { valid, format } = route.decode(self, req, p)?;
        ctx.model = Some(valid.model.clone());
        ctx.stream = valid.stream;
        let principal = self.authenticate(p, req).await?;
        ctx.key_id = Some(principal.key_id.clone());
        // A Response that continues a stored one reads it now, once the
        // tenant is known and before tokens are reserved for it.
        let (valid, format) = match format {
            ClientFormat::Responses { meta, native } if meta.request.previous_response_id.is_some() => {
                self.continue_response(p, &principal.tenant, meta, &native).await?
            }
            f => (valid, f),
        };
        if !principal.may_use(&valid.model) {
            return Err(AuthError::ModelNotAllowed {
                model: valid.model.clone(),
            }
            .into());
        }
        let reserve = Reserve {
            tokens: valid.reserved_tokens(),
            micros: self
                .price(&valid)
                .cost_micros(u64::from(valid.prompt_tokens), u64::from(valid.max_output_tokens)),
        };
        let limits = self.key_limits(&principal);
        let (key_id, tenant) = (&principal.key_id, &principal.tenant);
        let admission = match self.config.rate_limits.backend {
            RateLimitBackendKind::Kv => {
                KvRateLimiter { shared: &self.shared }
                    .admit(p, key_id, tenant, limits, reserve)
                    .await
            }
            RateLimitBackendKind::Strict => {
                StrictRateLimiter { shared: &self.shared }
                    .admit(p, key_id, tenant, limits, reserve)
                    .await
            }
        }??;
        Ok(Admitted {
            valid,
            format,
            principal,
            admission,
        })
    }

    /// Stages 5–8: cache, upstream, the answer in the client's shape.
    async fn serve<P: Platform>(
        &self,
        p: &P,
        ctx: &mut RequestCtx,
        a: &Admitted,
        mode: &CacheMode,
    ) -> Result<(Response, Settle), Failure> {
        if let ClientFormat::Task { webhook_url } = &a.format {
            return Ok(self
                .submit_task(p, ctx, &a.principal.key_id, &a.valid, webhook_url.clone())
                .await?);
        }
        if let Some(hit) = self.cache_lookup(p, mode, &a.valid, &a.format).await {
            return Ok(hit);
        }
        let recorder = matches!(mode, CacheMode::Use { .. }).then(|| Recorder::new(self.config.cache.max_entry_bytes));
        let opened = attempt::open_upstream(self, p, ctx, &a.valid, a.format.native(), attempt::Caller::Client).await?;
        let (mut resp, settle) = respond::respond(p, opened, &a.valid, &a.format, recorder, &ctx.request_id).await?;
        resp.headers
            .push((cache::HEADER_STATUS.into(), mode.status(false).into()));
        Ok((resp, settle))
    }

    /// Stage 5: a stored answer, replayed in the requested shape. A read
    /// failure is a miss, not an outage.
    async fn cache_lookup<P: Platform>(
        &self,
        p: &P,
        mode: &CacheMode,
        valid: &ValidRequest,
        format: &ClientFormat,
    ) -> Option<(Response, Settle)> {
        let CacheMode::Use { key, .. } = mode else {
            return None;
        };
        let entry = KvStore::get(p, key)
            .await
            .ok()
            .flatten()
            .and_then(|raw| CacheEntry::decode(&raw))?;
        let (mut resp, record) = respond::replay::replay(&entry, valid, format);
        resp.headers.push((cache::HEADER_STATUS.into(), "HIT".into()));
        let outcome = Outcome {
            status: resp.status,
            label: "cache_hit",
            usage: entry.usage,
            cache_hit: true,
            record,
            ..Default::default()
        };
        Some((resp, Settle::Now(Box::new(outcome))))
    }

    fn key_limits(&self, principal: &Principal) -> KeyLimits {
        let d = &self.config.rate_limits;
        let tenant = d.tenants.get(&principal.tenant).copied().unwrap_or_default();
        KeyLimits {
            requests_per_minute: principal.record.requests_per_minute.or(d.default_requests_per_minute),
            tokens_per_minute: principal.record.tokens_per_minute.or(d.default_tokens_per_minute),
            monthly_token_budget: principal.record.monthly_token_budget,
            tenant_requests_per_minute: tenant.requests_per_minute,
            tenant_tokens_per_minute: tenant.tokens_per_minute,
            budgets: Budgets {
                key_daily: principal.record.daily_budget_micros,
                key_monthly: principal.record.monthly_budget_micros,
                tenant_daily: tenant.daily_budget_micros,
                tenant_monthly: tenant.monthly_budget_micros,
            },
        }
    }

    /// The price of a request's model (zero when it has none).
    fn price(&self, valid: &ValidRequest) -> crate::config::Price {
        self.config
            .models
            .get(&valid.model)
            .map(|m| m.price)
            .unwrap_or_default()
    }

    /// What the account stage needs for one admitted request; its cache
    /// mode is decided here too, since the account stage writes the entry.
    fn accounting(&self, a: &Admitted, req: &Request) -> Accounting {
        let valid = &a.valid;
        // Chat chunks are what is stored, so the routes that answer from
        // them in OpenAI's vocabulary share entries; tasks and Messages
        // clients bypass the cache. So does a Responses request whose model
        // has an upstream serving the Responses API itself: its events carry
        // what chat chunks cannot hold (built-in tool items, annotations,
        // encrypted reasoning), and a replay would lose them.
        let untranslated = match &a.format {
            ClientFormat::OpenAi => Some(serde_json::Map::new()),
            ClientFormat::Responses { native, .. } if !self.any_native_responses(valid) => {
                Some(crate::wire::openai::responses::untranslated(&native.body))
            }
            _ => None,
        };
        let cache = match untranslated {
            Some(untranslated) => {
                let c = &self.config.cache;
                cache::mode(
                    valid,
                    &cache::Resolved {
                        untranslated,
                        ..self.resolved(valid)
                    },
                    &req.headers,
                    &a.principal.tenant,
                    c.shared_across_tenants,
                    c.default_ttl_secs,
                    c.enabled,
                )
            }
            None => CacheMode::Bypass,
        };
        let store = match &a.format {
            ClientFormat::Responses { meta, .. } if meta.store => {
                let meta = std::rc::Rc::clone(meta);
                let tenant = a.principal.tenant.clone();
                Some(Store {
                    ttl_secs: self.config.responses.ttl_secs,
                    // Under the id the client saw: the gateway's own, or
                    // that of an upstream serving the Responses API.
                    wrap: Box::new(move |answer| {
                        let id = answer["id"]
                            .as_str()
                            .filter(|id| routes::responses::valid_id(id))
                            .unwrap_or(&meta.id);
                        (routes::responses::store_key(&tenant, id), meta.record(answer))
                    }),
                })
            }
            _ => None,
        };
        Accounting {
            shared: std::rc::Rc::clone(&self.shared),
            key_id: a.principal.key_id.clone(),
            price: self.price(valid),
            alerts: self.config.budget_alerts.clone(),
            admission: Some(a.admission.clone()),
            cache,
            retention_secs: self.config.usage_retention_days * 86_400,
            prompt_estimate: u64::from(valid.prompt_tokens),
            output_cap: u64::from(valid.max_output_tokens),
            store,
        }
    }

    /// What the config maps the request's model to, for its cache key.
    fn resolved(&self, valid: &ValidRequest) -> cache::Resolved {
        let Some(model) = self.config.models.get(&valid.model) else {
            return cache::Resolved {
                upstream_model: valid.model.clone(),
                chain: Vec::new(),
                untranslated: serde_json::Map::new(),
            };
        };
        let heavy = plan::is_heavy(model, valid.reserved_tokens());
        cache::Resolved {
            upstream_model: model.upstream_model.clone(),
            chain: plan::chain_names(&self.config, model, heavy),
            untranslated: serde_json::Map::new(),
        }
    }

    /// Whether any upstream of the request's model serves the Responses
    /// API itself.
    fn any_native_responses(&self, valid: &ValidRequest) -> bool {
        self.config.models.get(&valid.model).is_some_and(|m| {
            let mut targets = m.targets.iter().chain(&m.heavy_targets);
            targets.any(|t| self.config.serves_responses(*t))
        })
    }
}
