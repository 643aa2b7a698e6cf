//! Per-key rate limits: requests per minute and tokens per minute, plus an
//! optional monthly token budget.
//!
//! Tokens are *reserved* before the upstream call (the estimated prompt
//! tokens plus the completion budget) and corrected to the real usage when the
//! response ends, so a burst of long requests cannot slip under the limit
//! while their answers are still streaming. Windows are fixed calendar
//! minutes (`v1:rl:<key-id>:<minute>`), as OpenAI's reset headers imply.
//!
//! The decision is a pure function ([`decide`]); the KV backend
//! ([`KvRateLimiter`]) only supplies the counts it decides on.

use crate::platform::{KvError, Platform};
use crate::wire::error::{kind, OpenAiError};

use std::rc::Rc;

use super::counters::{bump, Counts};
use crate::gateway::Shared;

pub const WINDOW_MS: u64 = 60_000;

/// Limits that apply to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyLimits {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    pub monthly_token_budget: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitError {
    #[error("Rate limit reached for requests: limit {limit} per minute. Please try again in {}.", format_reset(*retry_after_ms))]
    Requests { limit: u32, retry_after_ms: u64 },
    #[error("Rate limit reached for tokens: limit {limit} per minute, used {used}, requested {requested}. Please try again in {}.", format_reset(*retry_after_ms))]
    Tokens {
        limit: u32,
        used: u64,
        requested: u64,
        retry_after_ms: u64,
    },
    #[error("Request too large: it needs up to {requested} tokens but the key's limit is {limit} tokens per minute. Lower max_tokens or the prompt size.")]
    TooLarge { limit: u32, requested: u64 },
    #[error("This key's monthly token budget of {budget} is used up.")]
    Budget { budget: u64, retry_after_ms: u64 },
}

impl OpenAiError for RateLimitError {
    fn status(&self) -> u16 {
        429
    }
    fn error_type(&self) -> &'static str {
        match self {
            RateLimitError::Budget { .. } => "insufficient_quota",
            _ => kind::RATE_LIMIT,
        }
    }
    fn param(&self) -> Option<String> {
        match self {
            RateLimitError::TooLarge { .. } => Some("max_tokens".into()),
            _ => None,
        }
    }
    fn code(&self) -> Option<&'static str> {
        Some(match self {
            RateLimitError::Budget { .. } => "insufficient_quota",
            RateLimitError::TooLarge { .. } => "request_too_large",
            _ => "rate_limit_exceeded",
        })
    }
    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            RateLimitError::Requests { retry_after_ms, .. }
            | RateLimitError::Tokens { retry_after_ms, .. }
            | RateLimitError::Budget { retry_after_ms, .. } => Some(retry_after_ms.div_ceil(1000).max(1)),
            RateLimitError::TooLarge { .. } => None,
        }
    }
}

/// OpenAI's duration format for reset headers: `20ms`, `6s`, `1m30s`.
pub fn format_reset(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = ms as f64 / 1000.0;
        if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            format!("{}s", format!("{s:.3}").trim_end_matches('0'))
        }
    } else {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// The outcome of an admitted request: headers for the response and what
/// to correct later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub headers: Vec<(String, String)>,
    /// Counter key of the minute window the reservation went into.
    pub window_key: Option<String>,
    pub month_key: Option<String>,
    pub reserved_tokens: u64,
}

/// Pure decision for one request given current usage.
pub fn decide(
    used: &Counts,
    used_month_tokens: u64,
    limits: KeyLimits,
    reserve_tokens: u64,
    now_ms: u64,
) -> Result<Vec<(String, String)>, RateLimitError> {
    let reset_ms = WINDOW_MS - now_ms % WINDOW_MS;
    let used_requests = used.get("requests").copied().unwrap_or(0).max(0) as u64;
    let used_tokens = used.get("tokens").copied().unwrap_or(0).max(0) as u64;
    if let Some(budget) = limits.monthly_token_budget {
        if used_month_tokens.saturating_add(reserve_tokens) > budget {
            return Err(RateLimitError::Budget {
                budget,
                retry_after_ms: ms_to_next_month(now_ms),
            });
        }
    }
    if let Some(limit) = limits.requests_per_minute {
        if used_requests.saturating_add(1) > u64::from(limit) {
            return Err(RateLimitError::Requests {
                limit,
                retry_after_ms: reset_ms,
            });
        }
    }
    if let Some(limit) = limits.tokens_per_minute {
        if reserve_tokens > u64::from(limit) {
            return Err(RateLimitError::TooLarge {
                limit,
                requested: reserve_tokens,
            });
        }
        if used_tokens.saturating_add(reserve_tokens) > u64::from(limit) {
            return Err(RateLimitError::Tokens {
                limit,
                used: used_tokens,
                requested: reserve_tokens,
                retry_after_ms: reset_ms,
            });
        }
    }
    let mut h = Vec::new();
    let reset = format_reset(reset_ms);
    if let Some(limit) = limits.requests_per_minute {
        h.push(("x-ratelimit-limit-requests".into(), limit.to_string()));
        let left = u64::from(limit).saturating_sub(used_requests.saturating_add(1));
        h.push(("x-ratelimit-remaining-requests".into(), left.to_string()));
        h.push(("x-ratelimit-reset-requests".into(), reset.clone()));
    }
    if let Some(limit) = limits.tokens_per_minute {
        h.push(("x-ratelimit-limit-tokens".into(), limit.to_string()));
        let left = u64::from(limit).saturating_sub(used_tokens.saturating_add(reserve_tokens));
        h.push(("x-ratelimit-remaining-tokens".into(), left.to_string()));
        h.push(("x-ratelimit-reset-tokens".into(), reset));
    }
    Ok(h)
}

fn ms_to_next_month(now_ms: u64) -> u64 {
    let (y, m, _, _) = super::usage::civil_from_ms(now_ms);
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    super::usage::ms_from_civil(ny, nm, 1).saturating_sub(now_ms)
}

/// Where a key's counts live. The KV implementation is approximate across
/// isolates (see `counters`); a strict one (a Durable Object, key-value
/// atomics) implements the same two calls.
#[allow(async_fn_in_trait)] // single-threaded by design, like `platform`
pub trait RateLimitBackend {
    async fn admit<P: Platform>(
        &self,
        p: &P,
        key_id: &str,
        limits: KeyLimits,
        reserve_tokens: u64,
    ) -> Result<Result<Admission, RateLimitError>, KvError>;
    /// Replace a reservation with the real token count.
    fn correct<P: Platform>(&self, p: &P, admission: &Admission, actual_tokens: u64);
}

/// The Workers KV / Spin KV backend over coalesced counters.
pub struct KvRateLimiter<'a> {
    pub shared: &'a Rc<Shared>,
}

pub fn window_key(key_id: &str, now_ms: u64) -> String {
    format!("v1:rl:{key_id}:{}", now_ms / WINDOW_MS)
}

pub fn month_key(key_id: &str, now_ms: u64) -> String {
    let (y, m, _, _) = super::usage::civil_from_ms(now_ms);
    format!("v1:budget:{key_id}:{y:04}{m:02}")
}

impl RateLimitBackend for KvRateLimiter<'_> {
    async fn admit<P: Platform>(
        &self,
        p: &P,
        key_id: &str,
        limits: KeyLimits,
        reserve_tokens: u64,
    ) -> Result<Result<Admission, RateLimitError>, KvError> {
        let now = p.now_ms();
        let limited = limits.requests_per_minute.is_some() || limits.tokens_per_minute.is_some();
        let wkey = limited.then(|| window_key(key_id, now));
        let mkey = limits.monthly_token_budget.map(|_| month_key(key_id, now));
        let counters = &self.shared.counters;
        // Every await happens before the decision: from reading the counts
        // to counting this request nothing else runs, so requests arriving
        // together in this isolate are decided one after another, each on
        // the counts of those before it.
        for k in wkey.iter().chain(&mkey) {
            counters.refresh(p, k).await?;
        }
        let used = wkey.as_ref().and_then(|k| counters.peek(k)).unwrap_or_default();
        let month = mkey
            .as_ref()
            .and_then(|k| counters.peek(k))
            .and_then(|c| c.get("tokens").copied())
            .unwrap_or(0)
            .max(0) as u64;
        let headers = match decide(&used, month, limits, reserve_tokens, now) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        // Count the request now, synchronously (see above), so the next
        // request in this isolate sees it even before any KV write.
        if let Some(k) = &wkey {
            let delta = Counts::from([
                ("requests".to_string(), 1),
                ("tokens".to_string(), reserve_tokens as i64),
            ]);
            bump(self.shared, p, k, &delta, Some(2 * WINDOW_MS / 1000));
        }
        if let Some(k) = &mkey {
            let delta = Counts::from([("tokens".to_string(), reserve_tokens as i64)]);
            bump(self.shared, p, k, &delta, Some(40 * 86_400));
        }
        Ok(Ok(Admission {
            headers,
            window_key: wkey,
            month_key: mkey,
            reserved_tokens: reserve_tokens,
        }))
    }

    fn correct<P: Platform>(&self, p: &P, a: &Admission, actual_tokens: u64) {
        // `actual` comes from the upstream: saturate, never wrap negative.
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let diff = count(actual_tokens).saturating_sub(count(a.reserved_tokens));
        if diff == 0 {
            return;
        }
        let delta = Counts::from([("tokens".to_string(), diff)]);
        for (k, ttl) in [(&a.window_key, 2 * WINDOW_MS / 1000), (&a.month_key, 40 * 86_400)] {
            if let Some(k) = k {
                bump(self.shared, p, k, &delta, Some(ttl));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(r: i64, t: i64) -> Counts {
        Counts::from([("requests".to_string(), r), ("tokens".to_string(), t)])
    }

    #[test]
    fn requests_limit_and_headers() {
        let l = KeyLimits {
            requests_per_minute: Some(2),
            tokens_per_minute: Some(100),
            monthly_token_budget: None,
        };
        let h = decide(&used(1, 10), 0, l, 20, 60_000 * 5 + 15_000).unwrap();
        let get = |n: &str| h.iter().find(|(k, _)| k == n).unwrap().1.clone();
        assert_eq!(get("x-ratelimit-remaining-requests"), "0");
        assert_eq!(get("x-ratelimit-remaining-tokens"), "70");
        assert_eq!(get("x-ratelimit-reset-requests"), "45s");
        let e = decide(&used(2, 10), 0, l, 20, 60_000 * 5 + 15_000).unwrap_err();
        assert_eq!(e.retry_after_secs(), Some(45));
        assert!(matches!(e, RateLimitError::Requests { .. }));
        assert!(matches!(
            decide(&used(0, 90), 0, l, 20, 0),
            Err(RateLimitError::Tokens { .. })
        ));
        assert!(matches!(
            decide(&used(0, 0), 0, l, 200, 0),
            Err(RateLimitError::TooLarge { .. })
        ));
    }

    #[test]
    fn budget_and_formats() {
        let l = KeyLimits {
            monthly_token_budget: Some(1000),
            ..Default::default()
        };
        assert!(decide(&Counts::new(), 990, l, 10, 0).is_ok());
        assert!(matches!(
            decide(&Counts::new(), 991, l, 10, 0),
            Err(RateLimitError::Budget { .. })
        ));
        assert_eq!(format_reset(20), "20ms");
        assert_eq!(format_reset(1500), "1.5s");
        assert_eq!(format_reset(90_000), "1m30s");
    }
}
