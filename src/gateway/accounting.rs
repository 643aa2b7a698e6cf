//! The account stage: everything that happens after a response.
//!
//! Runs from the task that drives the response (the stream pump, or a
//! background task for JSON answers), never on the client's critical path,
//! and runs even when the client disconnected: the rate-limit reservation is
//! corrected to real usage, usage is added to the key's hourly bucket, a
//! complete answer is written to the cache, and the request's log line is
//! emitted.

use std::rc::Rc;

use super::cache::{CacheEntry, CacheMode};
use super::counters::{self, Counts};
use super::ratelimit::{Admission, KvRateLimiter, RateLimitBackend};
use super::usage::{usage_delta, usage_key};
use super::{RequestCtx, Shared};
use crate::api::error::OpenAiError;
use crate::api::Usage;
use crate::config::Price;
use crate::platform::{KvStore, Platform};

/// Add to a shared counter and make sure a flush is running for it.
pub fn bump<P: Platform>(shared: &Rc<Shared>, p: &P, key: &str, delta: &Counts, ttl_secs: Option<u64>) {
    if shared.counters.add(key, delta, ttl_secs, p.now_ms()) {
        p.spawn(Box::pin(counters::flush(shared.clone(), p.clone(), key.to_string())));
    }
}

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
    pub ctx: RequestCtx,
}

impl Accounting {
    /// Run [`Accounting::finish`] after the response (`waitUntil`).
    pub fn finish_later<P: Platform>(self, p: &P, o: Outcome) {
        let p2 = p.clone();
        p.spawn(Box::pin(async move { self.finish(&p2, o).await }));
    }

    /// The outcome of a request that failed before anything was streamed.
    pub fn failed_outcome(e: &super::GatewayError) -> Outcome {
        Outcome {
            status: e.status(),
            label: super::label_of(e),
            failed: true,
            ..Default::default()
        }
    }

    pub async fn finish<P: Platform>(self, p: &P, o: Outcome) {
        let now = p.now_ms();
        if let Some(a) = &self.admission {
            // Hits and failures consume no upstream tokens; a success whose
            // usage is unknown keeps its reservation (the safe side).
            let actual = if o.cache_hit || (o.failed && o.usage.is_none()) {
                0
            } else {
                o.usage.map_or(a.reserved_tokens, |u| {
                    u.prompt_tokens.saturating_add(u.completion_tokens)
                })
            };
            KvRateLimiter { shared: &self.shared }.correct(p, a, actual);
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
                    tracing::warn!(request_id = %self.ctx.request_id, error = %e, "cache write failed");
                }
            }
        }
        self.ctx.log(o.status, p.now_ms(), o.label, o.usage);
    }
}
