//! The account stage: everything that happens after a response.
//!
//! The pipeline calls [`Accounting::settle`] exactly once for every
//! admitted request. It runs in the background (`waitUntil`), never on the
//! client's critical path, and after the answer has ended, however it
//! ended (complete, failed, the client gone): the rate-limit reservation is
//! corrected to real usage, usage is added to the key's hourly bucket, a
//! complete answer is written to the cache, and the request's log line is
//! emitted.

use std::rc::Rc;

use futures_channel::oneshot;

use super::budget;
use super::cache::{CacheEntry, CacheMode};
use super::counters::bump;
use super::ratelimit::{Admission, KvRateLimiter, RateLimitBackend};
use super::strict::StrictRateLimiter;
use super::usage::{usage_delta, usage_key};
use crate::config::{BudgetAlerts, Price};
use crate::gateway::{webhook, GatewayError, RequestCtx, Shared};
use crate::platform::{KvStore, Platform};
use crate::stream::Usage;
use crate::wire::error::OpenAiError;

/// How a request ended, as far as accounting cares.
#[derive(Debug, Default)]
pub struct Outcome {
    pub status: u16,
    /// Short label for the log line (`ok`, `client_disconnected`, an error code).
    pub label: &'static str,
    pub usage: Option<Usage>,
    /// A complete answer to store under the request's cache key.
    pub entry: Option<CacheEntry>,
    pub cache_hit: bool,
    pub failed: bool,
    /// Text seen in a stream that died before the upstream reported usage:
    /// `(bytes, chunks)`, for an estimate.
    pub output_seen: (usize, u64),
    /// The upstream that served it, when the context could not record it
    /// (a task runs after its request has been answered).
    pub upstream: Option<String>,
    /// The answer as a route stores it (a finished Response object).
    pub record: Option<serde_json::Value>,
}

impl Outcome {
    /// The outcome of a request that failed before anything was streamed.
    pub fn failed(e: &GatewayError) -> Outcome {
        Outcome {
            status: e.status(),
            label: crate::gateway::label_of(e),
            failed: true,
            ..Default::default()
        }
    }
}

/// Where the account stage gets a request's [`Outcome`].
pub enum Settle {
    /// The answer is complete (JSON, a cache hit, an error).
    Now(Box<Outcome>),
    /// A stream or a task still running; it sends its outcome when it ends.
    /// A sender dropped without sending (the runtime cut the work short)
    /// is accounted as an interrupted request.
    Later(oneshot::Receiver<Outcome>),
}

/// The sending half of [`Settle::Later`].
pub type OutcomeSender = oneshot::Sender<Outcome>;

/// A [`Settle::Later`] and the sender that completes it.
pub fn later() -> (OutcomeSender, Settle) {
    let (tx, rx) = oneshot::channel();
    (tx, Settle::Later(rx))
}

/// Completion tokens for a stream that died before reporting usage: about
/// four bytes a token, at least one per chunk that carried text, and never
/// more than the request could consume (an upstream sending many tiny
/// chunks must not run up the client's bill).
pub fn estimate_output_tokens(bytes: usize, chunks: u64, cap: u64) -> u64 {
    let by_size = (bytes as u64).div_ceil(4);
    by_size.max(chunks).min(cap)
}

/// What the account stage needs to know about one admitted request.
pub struct Accounting {
    pub shared: Rc<Shared>,
    pub key_id: String,
    pub price: Price,
    pub admission: Option<Admission>,
    pub cache: CacheMode,
    pub retention_secs: u64,
    /// The validated request's prompt estimate, for usage when the
    /// upstream died before reporting its own.
    pub prompt_estimate: u64,
    /// The most completion tokens the request may consume, the ceiling of
    /// any estimate.
    pub output_cap: u64,
    /// Where and how long to keep [`Outcome::record`], and what to wrap it
    /// in (`/v1/responses` with `store`).
    pub store: Option<Store>,
    /// Where spend budget alerts go, when configured.
    pub alerts: Option<std::sync::Arc<BudgetAlerts>>,
}

/// A finished answer to its KV key (tenant-scoped) and the record stored
/// under it.
pub type Wrap = Box<dyn Fn(&serde_json::Value) -> (String, serde_json::Value)>;

/// Records this isolate stored last, readable at once: the store's own
/// reads may lag its writes (KV is eventually consistent, and the write
/// itself finishes after the client has its answer), and a client that
/// continues a Response right away must find it. Bounded, oldest out, and
/// kept only as long as the store may lag.
#[derive(Debug, Default)]
pub struct RecentRecords {
    entries: std::cell::RefCell<std::collections::VecDeque<Recent>>,
}

/// (key, record, until when: milliseconds since the Unix epoch).
type Recent = (String, Rc<[u8]>, u64);

/// How many records [`RecentRecords`] keeps.
const RECENT_RECORDS: usize = 64;
/// How long: Workers KV's documented propagation bound.
const RECENT_MS: u64 = 60_000;

impl RecentRecords {
    /// The record under `key`, if written here within the last minute and
    /// not deleted since.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<Rc<[u8]>> {
        let entries = self.entries.borrow();
        entries
            .iter()
            .rev()
            .find(|(k, _, until)| k == key && now_ms < *until)
            .map(|(_, v, _)| Rc::clone(v))
    }

    /// Keep `value` under `key` for at most `ttl_secs` (and a minute).
    pub fn put(&self, key: String, value: Rc<[u8]>, now_ms: u64, ttl_secs: u64) {
        let mut entries = self.entries.borrow_mut();
        entries.retain(|(k, _, _)| *k != key);
        if entries.len() >= RECENT_RECORDS {
            entries.pop_front();
        }
        let until = now_ms.saturating_add(RECENT_MS.min(ttl_secs.saturating_mul(1000)));
        entries.push_back((key, value, until));
    }

    pub fn remove(&self, key: &str) {
        self.entries.borrow_mut().retain(|(k, _, _)| k != key);
    }
}

/// A route's record of its answer, written by the account stage.
pub struct Store {
    pub ttl_secs: u64,
    pub wrap: Wrap,
}

impl Accounting {
    /// Account for the request once its outcome is known, in the
    /// background. The pipeline's only call into this stage.
    pub fn settle<P: Platform>(self, p: &P, ctx: RequestCtx, settle: Settle) {
        let p2 = p.clone();
        p.spawn(Box::pin(async move {
            let outcome = match settle {
                Settle::Now(o) => *o,
                Settle::Later(rx) => rx.await.unwrap_or_else(|_| Outcome {
                    status: 200,
                    label: "interrupted",
                    failed: true,
                    ..Default::default()
                }),
            };
            self.finish(&p2, ctx, outcome).await
        }));
    }

    async fn finish<P: Platform>(self, p: &P, mut ctx: RequestCtx, mut o: Outcome) {
        if o.upstream.is_some() {
            ctx.upstream = o.upstream.take();
        }
        if o.usage.is_none() && o.output_seen.1 > 0 {
            let (bytes, chunks) = o.output_seen;
            let completion = estimate_output_tokens(bytes, chunks, self.output_cap);
            o.usage = Some(Usage {
                prompt_tokens: self.prompt_estimate,
                completion_tokens: completion,
                total_tokens: self.prompt_estimate.saturating_add(completion),
            });
        }
        let now = p.now_ms();
        if let Some(a) = &self.admission {
            // Hits and failures consume no upstream tokens; a success whose
            // usage is unknown keeps its reservation (the safe side).
            let (tokens, micros) = if o.cache_hit || (o.failed && o.usage.is_none()) {
                (0, 0)
            } else {
                o.usage.map_or((a.reserved_tokens, a.reserved_micros), |u| {
                    (
                        u.prompt_tokens.saturating_add(u.completion_tokens),
                        self.price.cost_micros(u.prompt_tokens, u.completion_tokens),
                    )
                })
            };
            if a.strict_shard.is_some() {
                StrictRateLimiter { shared: &self.shared }.correct(p, a, tokens, micros);
            } else {
                KvRateLimiter { shared: &self.shared }.correct(p, a, tokens, micros);
            }
            if let Some(alerts) = &self.alerts {
                send_alerts(p, alerts, a, micros).await;
            }
        }
        let usage = if o.cache_hit { None } else { o.usage };
        let delta = usage_delta(usage, self.price, o.cache_hit, o.failed);
        bump(
            &self.shared,
            p,
            &usage_key(&self.key_id, now),
            &delta,
            Some(self.retention_secs),
        );
        if let (CacheMode::Use { key, ttl_secs }, Some(entry)) = (&self.cache, o.entry) {
            if !o.failed {
                if let Err(e) = KvStore::put(p, key, entry.encode(), Some(*ttl_secs)).await {
                    tracing::warn!(request_id = %ctx.request_id, error = %e, "cache write failed");
                }
            }
        }
        if let (Some(s), Some(answer)) = (&self.store, &o.record) {
            let (key, record) = (s.wrap)(answer);
            let record = serde_json::to_vec(&record).unwrap_or_default();
            // Before any await: readable here from now on.
            let record_rc = Rc::from(record.as_slice());
            self.shared
                .recent_records
                .put(key.clone(), record_rc, p.now_ms(), s.ttl_secs);
            if let Err(e) = KvStore::put(p, &key, record, Some(s.ttl_secs)).await {
                tracing::warn!(request_id = %ctx.request_id, error = %e, "storing the response failed");
            }
        }
        ctx.log(o.status, p.monotonic_ms(), o.label, o.usage);
    }
}

/// A signed alert for each budget threshold this request's cost crossed,
/// once per budget, period and threshold (a KV marker remembers it; two
/// isolates crossing the same threshold at the same moment may both send).
async fn send_alerts<P: Platform>(p: &P, alerts: &BudgetAlerts, a: &Admission, cost_micros: u64) {
    let now = p.now_ms();
    for h in &a.spend {
        let after = h.spent_before.saturating_add(cost_micros);
        for pct in budget::crossed(&alerts.thresholds_percent, h.budget_micros, h.spent_before, after) {
            let marker = budget::alert_marker(h, pct);
            if matches!(KvStore::get(p, &marker).await, Ok(Some(_))) {
                continue;
            }
            if let Err(e) = KvStore::put(p, &marker, b"1".to_vec(), Some(70 * 86_400)).await {
                tracing::warn!(error = %e, "could not record a budget alert");
            }
            let body = serde_json::to_vec(&budget::alert_body(h, pct, after, now)).unwrap_or_default();
            webhook::deliver(p, &alerts.url, alerts.secret.expose().as_bytes(), body, "budget").await;
        }
    }
}
