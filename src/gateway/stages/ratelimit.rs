//! Per-key rate limits: requests per minute and tokens per minute, plus an
//! optional monthly token budget.
//!
//! Tokens are *reserved* before the upstream call (the estimated prompt
//! tokens plus the completion budget) and corrected to the real usage when the
//! response ends, so a burst of long requests cannot slip under the limit
//! while their answers are still streaming. Windows are fixed calendar
//! minutes (`v1:rl:<key-id>:<minute>`), as OpenAI's reset headers imply.
//!
//! Spend budgets in USD (`budget`) are checked and reserved here too, in
//! the same synchronous step.
//!
//! The decision is a pure function ([`decide`]); the KV backend
//! ([`KvRateLimiter`]) only supplies the counts it decides on.

use crate::platform::{KvError, Platform};
use crate::wire::error::{kind, OpenAiError};

use std::rc::Rc;

use super::budget::{self, Budgets, Held, Period};
use super::counters::{bump, Counts};
use crate::gateway::Shared;

pub const WINDOW_MS: u64 = 60_000;

/// Limits that apply to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyLimits {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    pub monthly_token_budget: Option<u64>,
    /// The key's tenant's limits, shared by all its keys.
    pub tenant_requests_per_minute: Option<u32>,
    pub tenant_tokens_per_minute: Option<u32>,
    /// Spend budgets of the key and its tenant.
    pub budgets: Budgets,
}

/// Whose limit a request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The API key's own limit.
    Key,
    /// The limit all keys of the key's tenant share.
    Tenant,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scope::Key => "this API key",
            Scope::Tenant => "this key's tenant",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitError {
    #[error("Rate limit reached for requests of {scope}: limit {limit} per minute. Please try again in {}.", format_reset(*retry_after_ms))]
    Requests {
        scope: Scope,
        limit: u32,
        retry_after_ms: u64,
    },
    #[error("Rate limit reached for tokens of {scope}: limit {limit} per minute, used {used}, requested {requested}. Please try again in {}.", format_reset(*retry_after_ms))]
    Tokens {
        scope: Scope,
        limit: u32,
        used: u64,
        requested: u64,
        retry_after_ms: u64,
    },
    #[error("Request too large: it needs up to {requested} tokens but the limit of {scope} is {limit} tokens per minute. Lower max_tokens or the prompt size.")]
    TooLarge { scope: Scope, limit: u32, requested: u64 },
    #[error("This key's monthly token budget of {budget} is used up.")]
    Budget { budget: u64, retry_after_ms: u64 },
    #[error("You exceeded the {} budget of {scope}: ${} of ${} spent. It resets in {}.", period.name(), budget::format_usd(*spent_micros), budget::format_usd(*budget_micros), format_reset(*retry_after_ms))]
    Spend {
        scope: Scope,
        period: Period,
        budget_micros: u64,
        spent_micros: u64,
        retry_after_ms: u64,
    },
    /// The budget is not spent, but what is spent plus what requests in
    /// flight reserved reaches it: retry once they have finished.
    #[error("The {} budget of {scope} is held by requests in flight: ${} spent and ${} reserved of ${}. Please try again in {}.", period.name(), budget::format_usd(*spent_micros), budget::format_usd(*reserved_micros), budget::format_usd(*budget_micros), format_reset(*retry_after_ms))]
    SpendReserved {
        scope: Scope,
        period: Period,
        budget_micros: u64,
        spent_micros: u64,
        reserved_micros: u64,
        retry_after_ms: u64,
    },
}

/// How long a client refused for reservations in flight waits: about as
/// long as a short answer takes.
const IN_FLIGHT_RETRY_MS: u64 = 2_000;

/// The refusal for budget `h` whose counter (reservations included) stood
/// at `total_micros`, of which finished requests cost `settled_micros`:
/// spent (`insufficient_quota` until the period ends) or only reserved (a
/// short retry).
pub(super) fn spend_refusal(h: &Held, total_micros: u64, settled_micros: u64, now_ms: u64) -> RateLimitError {
    if settled_micros >= h.budget_micros {
        RateLimitError::Spend {
            scope: h.scope,
            period: h.period,
            budget_micros: h.budget_micros,
            spent_micros: settled_micros,
            retry_after_ms: h.period.ms_to_next(now_ms),
        }
    } else {
        RateLimitError::SpendReserved {
            scope: h.scope,
            period: h.period,
            budget_micros: h.budget_micros,
            spent_micros: settled_micros,
            reserved_micros: total_micros.saturating_sub(settled_micros),
            retry_after_ms: IN_FLIGHT_RETRY_MS,
        }
    }
}

impl OpenAiError for RateLimitError {
    fn status(&self) -> u16 {
        429
    }
    fn error_type(&self) -> &'static str {
        match self {
            RateLimitError::Budget { .. } | RateLimitError::Spend { .. } => "insufficient_quota",
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
            RateLimitError::Budget { .. } | RateLimitError::Spend { .. } => "insufficient_quota",
            RateLimitError::TooLarge { .. } => "request_too_large",
            _ => "rate_limit_exceeded",
        })
    }
    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            RateLimitError::Requests { retry_after_ms, .. }
            | RateLimitError::Tokens { retry_after_ms, .. }
            | RateLimitError::Budget { retry_after_ms, .. }
            | RateLimitError::Spend { retry_after_ms, .. }
            | RateLimitError::SpendReserved { retry_after_ms, .. } => Some(retry_after_ms.div_ceil(1000).max(1)),
            RateLimitError::TooLarge { .. } => None,
        }
    }
    /// OpenAI's `x-ratelimit-*` for the window that was full: its limit,
    /// nothing remaining, and when it resets.
    fn headers(&self) -> Vec<(String, String)> {
        let (which, limit, reset) = match self {
            RateLimitError::Requests {
                limit, retry_after_ms, ..
            } => ("requests", *limit, *retry_after_ms),
            RateLimitError::Tokens {
                limit, retry_after_ms, ..
            } => ("tokens", *limit, *retry_after_ms),
            _ => return Vec::new(),
        };
        vec![
            (format!("x-ratelimit-limit-{which}"), limit.to_string()),
            (format!("x-ratelimit-remaining-{which}"), "0".into()),
            (format!("x-ratelimit-reset-{which}"), format_reset(reset)),
        ]
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
    /// The same for the key's tenant.
    pub tenant_window_key: Option<String>,
    pub month_key: Option<String>,
    pub reserved_tokens: u64,
    /// The spend budgets that apply, as admission saw them.
    pub spend: Vec<Held>,
    /// Micro-USD reserved on each of them.
    pub reserved_micros: u64,
    /// Set when the strict backend admitted the request: the shard (the
    /// tenant) whose store holds its counters. The `*_key` fields then
    /// name the strict store's token counters.
    pub strict_shard: Option<String>,
}

/// Pure decision for one request given its key's usage this minute and
/// this month: the key's monthly budget, then its per-minute limits.
/// Returns the key's `x-ratelimit-*` headers.
pub fn decide(
    used: &Counts,
    used_month_tokens: u64,
    limits: KeyLimits,
    reserve_tokens: u64,
    now_ms: u64,
) -> Result<Vec<(String, String)>, RateLimitError> {
    if let Some(budget) = limits.monthly_token_budget {
        if used_month_tokens.saturating_add(reserve_tokens) > budget {
            return Err(RateLimitError::Budget {
                budget,
                retry_after_ms: ms_to_next_month(now_ms),
            });
        }
    }
    decide_window(
        used,
        (limits.requests_per_minute, limits.tokens_per_minute),
        reserve_tokens,
        now_ms,
        Scope::Key,
    )
}

/// Pure decision for one minute window: `limits` is (requests, tokens) per
/// minute, `used` the window's counts before this request. Returns the
/// `x-ratelimit-*` headers for the window.
pub fn decide_window(
    used: &Counts,
    limits: (Option<u32>, Option<u32>),
    reserve_tokens: u64,
    now_ms: u64,
    scope: Scope,
) -> Result<Vec<(String, String)>, RateLimitError> {
    let (rpm, tpm) = limits;
    let reset_ms = WINDOW_MS - now_ms % WINDOW_MS;
    let used_requests = used.get("requests").copied().unwrap_or(0).max(0) as u64;
    let used_tokens = used.get("tokens").copied().unwrap_or(0).max(0) as u64;
    if let Some(limit) = rpm {
        if used_requests.saturating_add(1) > u64::from(limit) {
            return Err(RateLimitError::Requests {
                scope,
                limit,
                retry_after_ms: reset_ms,
            });
        }
    }
    if let Some(limit) = tpm {
        if reserve_tokens > u64::from(limit) {
            return Err(RateLimitError::TooLarge {
                scope,
                limit,
                requested: reserve_tokens,
            });
        }
        if used_tokens.saturating_add(reserve_tokens) > u64::from(limit) {
            return Err(RateLimitError::Tokens {
                scope,
                limit,
                used: used_tokens,
                requested: reserve_tokens,
                retry_after_ms: reset_ms,
            });
        }
    }
    let mut h = Vec::new();
    let reset = format_reset(reset_ms);
    if let Some(limit) = rpm {
        h.push(("x-ratelimit-limit-requests".into(), limit.to_string()));
        let left = u64::from(limit).saturating_sub(used_requests.saturating_add(1));
        h.push(("x-ratelimit-remaining-requests".into(), left.to_string()));
        h.push(("x-ratelimit-reset-requests".into(), reset.clone()));
    }
    if let Some(limit) = tpm {
        h.push(("x-ratelimit-limit-tokens".into(), limit.to_string()));
        let left = u64::from(limit).saturating_sub(used_tokens.saturating_add(reserve_tokens));
        h.push(("x-ratelimit-remaining-tokens".into(), left.to_string()));
        h.push(("x-ratelimit-reset-tokens".into(), reset));
    }
    Ok(h)
}

/// The headers of whichever window leaves less: a client paces itself on
/// the tighter limit, whether it is its key's or its tenant's.
pub(super) fn tighter(key: Vec<(String, String)>, tenant: Vec<(String, String)>) -> Vec<(String, String)> {
    let remaining = |h: &[(String, String)], which: &str| {
        h.iter()
            .find(|(k, _)| k == &format!("x-ratelimit-remaining-{which}"))
            .and_then(|(_, v)| v.parse::<u64>().ok())
    };
    let mut out = Vec::new();
    for which in ["requests", "tokens"] {
        let pick = match (remaining(&key, which), remaining(&tenant, which)) {
            (Some(k), Some(t)) if t < k => &tenant,
            (None, Some(_)) => &tenant,
            _ => &key,
        };
        out.extend(pick.iter().filter(|(k, _)| k.ends_with(which)).cloned());
    }
    out
}

pub(super) fn ms_to_next_month(now_ms: u64) -> u64 {
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
        tenant: &str,
        limits: KeyLimits,
        reserve: Reserve,
    ) -> Result<Result<Admission, RateLimitError>, KvError>;
    /// Replace a reservation with the real token count and cost
    /// (micro-USD).
    fn correct<P: Platform>(&self, p: &P, admission: &Admission, actual_tokens: u64, actual_micros: u64);
}

/// What admission reserves for a request until its real usage is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reserve {
    /// The prompt estimate plus the completion budget.
    pub tokens: u64,
    /// Those tokens at the model's price, in micro-USD.
    pub micros: u64,
}

/// The Workers KV / Spin KV backend over coalesced counters.
pub struct KvRateLimiter<'a> {
    pub shared: &'a Rc<Shared>,
}

pub fn window_key(key_id: &str, now_ms: u64) -> String {
    format!("v1:rl:{key_id}:{}", now_ms / WINDOW_MS)
}

pub fn tenant_window_key(tenant: &str, now_ms: u64) -> String {
    format!("v1:rlt:{tenant}:{}", now_ms / WINDOW_MS)
}

/// How long a spend counter outlives its period: long enough for the
/// admin API to show the last one.
pub(super) fn spend_ttl(period: Period) -> u64 {
    match period {
        Period::Day => 3 * 86_400,
        Period::Month => 70 * 86_400,
    }
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
        tenant: &str,
        limits: KeyLimits,
        reserve: Reserve,
    ) -> Result<Result<Admission, RateLimitError>, KvError> {
        let reserve_tokens = reserve.tokens;
        let now = p.now_ms();
        let limited = limits.requests_per_minute.is_some() || limits.tokens_per_minute.is_some();
        let wkey = limited.then(|| window_key(key_id, now));
        let tenant_limited = limits.tenant_requests_per_minute.is_some() || limits.tenant_tokens_per_minute.is_some();
        let tkey = tenant_limited.then(|| tenant_window_key(tenant, now));
        let mkey = limits.monthly_token_budget.map(|_| month_key(key_id, now));
        let spend: Vec<(Scope, Period, u64, String, String)> = limits
            .budgets
            .each()
            .map(|(scope, period, b)| {
                let id = match scope {
                    Scope::Key => key_id,
                    Scope::Tenant => tenant,
                };
                (
                    scope,
                    period,
                    b,
                    id.to_string(),
                    budget::counter_key(scope, id, period, now),
                )
            })
            .collect();
        let counters = &self.shared.counters;
        // Every await happens before the decision: from reading the counts
        // to counting this request nothing else runs, so requests arriving
        // together in this isolate are decided one after another, each on
        // the counts of those before it.
        for k in wkey.iter().chain(&tkey).chain(&mkey).chain(spend.iter().map(|s| &s.4)) {
            counters.refresh(p, k).await?;
        }
        let held: Vec<Held> = spend
            .into_iter()
            .map(|(scope, period, budget_micros, id, counter)| Held {
                spent_before: counters
                    .peek(&counter)
                    .and_then(|c| c.get(budget::FIELD).copied())
                    .unwrap_or(0)
                    .max(0) as u64,
                scope,
                period,
                id,
                counter,
                budget_micros,
            })
            .collect();
        if let Some(h) = budget::exhausted(&held) {
            let settled = counters
                .peek(&h.counter)
                .and_then(|c| c.get(budget::SETTLED).copied())
                .unwrap_or(0)
                .max(0) as u64;
            return Ok(Err(spend_refusal(h, h.spent_before, settled, now)));
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
        let headers = match &tkey {
            Some(k) => {
                let used = counters.peek(k).unwrap_or_default();
                let tenant_limits = (limits.tenant_requests_per_minute, limits.tenant_tokens_per_minute);
                match decide_window(&used, tenant_limits, reserve_tokens, now, Scope::Tenant) {
                    Ok(h) => tighter(headers, h),
                    Err(e) => return Ok(Err(e)),
                }
            }
            None => headers,
        };
        // Count the request now, synchronously (see above), so the next
        // request in this isolate sees it even before any KV write.
        for k in wkey.iter().chain(&tkey) {
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
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for h in &held {
            let delta = Counts::from([(budget::FIELD.to_string(), count(reserve.micros))]);
            bump(self.shared, p, &h.counter, &delta, Some(spend_ttl(h.period)));
        }
        Ok(Ok(Admission {
            headers,
            window_key: wkey,
            tenant_window_key: tkey,
            month_key: mkey,
            reserved_tokens: reserve_tokens,
            spend: held,
            reserved_micros: reserve.micros,
            strict_shard: None,
        }))
    }

    fn correct<P: Platform>(&self, p: &P, a: &Admission, actual_tokens: u64, actual_micros: u64) {
        // `actual` comes from the upstream: saturate, never wrap negative.
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let diff = count(actual_micros).saturating_sub(count(a.reserved_micros));
        if !a.spend.is_empty() {
            let delta = Counts::from([
                (budget::FIELD.to_string(), diff),
                (budget::SETTLED.to_string(), count(actual_micros)),
            ]);
            for h in &a.spend {
                bump(self.shared, p, &h.counter, &delta, Some(spend_ttl(h.period)));
            }
        }
        let diff = count(actual_tokens).saturating_sub(count(a.reserved_tokens));
        if diff == 0 {
            return;
        }
        let delta = Counts::from([("tokens".to_string(), diff)]);
        let minute = 2 * WINDOW_MS / 1000;
        for (k, ttl) in [
            (&a.window_key, minute),
            (&a.tenant_window_key, minute),
            (&a.month_key, 40 * 86_400),
        ] {
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
            ..Default::default()
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

    /// The tighter window's headers win: a tenant with 1 request left
    /// answers for requests, the key with fewer tokens left for tokens.
    #[test]
    fn the_tighter_windows_headers() {
        let key = decide_window(&used(0, 0), (Some(10), Some(100)), 20, 0, Scope::Key).unwrap();
        let tenant = decide_window(&used(8, 0), (Some(10), Some(1000)), 20, 0, Scope::Tenant).unwrap();
        let h = tighter(key, tenant);
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(get("x-ratelimit-remaining-requests").as_deref(), Some("1"));
        assert_eq!(get("x-ratelimit-limit-requests").as_deref(), Some("10"));
        assert_eq!(get("x-ratelimit-remaining-tokens").as_deref(), Some("80"));
        let full = decide_window(&used(10, 0), (Some(10), None), 1, 0, Scope::Tenant).unwrap_err();
        assert!(full.to_string().contains("of this key's tenant"), "{full}");
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
