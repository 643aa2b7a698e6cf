//! The strict rate-limit backend (`rate_limits.backend: "strict"`): every
//! limit and budget a request touches is charged in one all-or-nothing step
//! by the platform's strict store ([`StrictCounters`]: a Durable Object per
//! tenant on Workers, key-value atomics on Spin), so no two requests, in
//! one isolate or in a hundred, can both take the last unit of a limit.
//!
//! The decision rules are the KV backend's (`ratelimit::decide_window`, the
//! budget checks), applied by the store instead of on a possibly stale
//! view. Counters are one key per field: `<window key>:requests`,
//! `<window key>:tokens`, the month key, each spend counter.
//!
//! **Grants.** A round trip per request is what a Durable Object costs, so
//! a request whose every charge is a per-minute or monthly limit also asks
//! for 8 requests' worth of units on each; the store grants them only while
//! the limit leaves at least 16 times as much (`platform::grant`). The
//! isolate keeps them ([`Local`]) and admits later requests from them
//! without a round trip while every counter they touch is covered; a
//! reservation corrected downwards goes back to them too. Granted units are
//! counted in the store when granted, so nothing can overshoot; units an
//! isolate holds when its window ends are lost, so a window can admit up to
//! 8 requests' worth less per isolate that stopped getting traffic, and
//! only on limits of more than 128 requests' worth (smaller ones are never
//! granted). Near the limit every request asks the store. A request with a
//! spend budget always asks (spend is never granted), so it asks for no
//! grants either: it could never use them.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::platform::{Bound, Charge, Charged, KvError, Platform, StrictCounters};

use super::budget::{self, Held, Period};
use super::counters::Counts;
use super::ratelimit::{
    decide_window, month_key, ms_to_next_month, spend_refusal, spend_ttl, tenant_window_key, tighter, window_key,
    Admission, KeyLimits, RateLimitBackend, RateLimitError, Reserve, Scope, WINDOW_MS,
};

/// A minute window's counters outlive it by one window, for late
/// corrections.
const WINDOW_TTL_SECS: u64 = 2 * WINDOW_MS / 1000;
const MONTH_TTL_SECS: u64 = 40 * 86_400;

/// How many requests' worth of units a charge asks for on top of its own.
const GRANT_REQUESTS: i64 = 8;
/// Bound on the counters an isolate holds grants for.
const MAX_GRANTS: usize = 10_000;

/// Units granted to this isolate on one counter.
#[derive(Debug, Clone, Copy)]
struct Grant {
    /// Units left to hand out.
    units: i64,
    /// The store's count after the last grant (granted units included).
    store_after: i64,
    /// Unix ms after which the counter is gone (its window has passed).
    until_ms: u64,
}

/// What the strict backend keeps in the isolate: its calls to the store
/// (`/admin/stats`) and its grants.
#[derive(Debug, Default)]
pub struct Local {
    pub calls: Cell<u64>,
    grants: RefCell<HashMap<String, Grant>>,
}

impl Local {
    /// Take `charges` from grants if every one is an `AtMost` charge they
    /// cover; the count per charge for the headers (the store's count less
    /// what this isolate still holds).
    fn take(&self, charges: &[Charge], now: u64) -> Option<Vec<i64>> {
        let mut grants = self.grants.borrow_mut();
        let covered = charges.iter().all(|c| {
            matches!(c.bound, Bound::AtMost(_))
                && grants
                    .get(&c.key)
                    .is_some_and(|g| g.until_ms > now && g.units >= c.delta)
        });
        if !covered || charges.is_empty() {
            return None;
        }
        Some(
            charges
                .iter()
                .map(|c| {
                    let g = grants.get_mut(&c.key).expect("covered above");
                    g.units -= c.delta;
                    g.store_after - g.units
                })
                .collect(),
        )
    }

    /// Keep what the store granted.
    fn keep(&self, charges: &[Charge], after: &[i64], granted: &[i64], now: u64) {
        let mut grants = self.grants.borrow_mut();
        if grants.len() >= MAX_GRANTS {
            grants.retain(|_, g| g.until_ms > now && g.units > 0);
        }
        for ((c, a), g) in charges.iter().zip(after).zip(granted) {
            if *g <= 0 {
                continue;
            }
            let until_ms = now.saturating_add(c.ttl_secs.saturating_mul(1000));
            let e = grants.entry(c.key.clone()).or_insert(Grant {
                units: 0,
                store_after: 0,
                until_ms,
            });
            if e.until_ms <= now {
                e.units = 0;
            }
            e.units += g;
            e.store_after = *a;
            e.until_ms = e.until_ms.max(until_ms);
        }
    }

    /// Give `units` of a counter back to this isolate's grant, if it holds
    /// one; whether it did.
    fn give_back(&self, key: &str, units: i64, now: u64) -> bool {
        match self.grants.borrow_mut().get_mut(key) {
            Some(g) if g.until_ms > now => {
                g.units += units;
                true
            }
            _ => false,
        }
    }
}

/// What one charge of a request stands for, to name a refusal.
#[derive(Debug, Clone)]
enum Meaning {
    Spend(Held),
    MonthTokens(u64),
    Requests(Scope, u32),
    Tokens(Scope, u32),
}

/// The strict backend; the store holds every count, the isolate only
/// counts its calls to it (`/admin/stats`).
pub struct StrictRateLimiter<'a> {
    pub shared: &'a crate::gateway::Shared,
}

fn i(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn u(n: i64) -> u64 {
    n.max(0) as u64
}

/// The charges for one request, with what each stands for.
fn plan(key_id: &str, tenant: &str, limits: KeyLimits, reserve: Reserve, now: u64) -> (Vec<Charge>, Vec<Meaning>) {
    let mut charges = Vec::new();
    let mut meanings = Vec::new();
    let mut add = |key: String, delta: u64, bound: Bound, ttl_secs: u64, m: Meaning| {
        let delta = i(delta);
        let extra = match bound {
            Bound::AtMost(_) => delta.saturating_mul(GRANT_REQUESTS),
            _ => 0,
        };
        charges.push(Charge {
            key,
            delta,
            bound,
            ttl_secs,
            extra,
        });
        meanings.push(m);
    };
    // Budgets first, as the KV backend checks them first.
    for (scope, period, budget_micros) in limits.budgets.each() {
        let id = match scope {
            Scope::Key => key_id,
            Scope::Tenant => tenant,
        };
        let counter = budget::counter_key(scope, id, period, now);
        let held = Held {
            scope,
            period,
            id: id.to_string(),
            counter: counter.clone(),
            budget_micros,
            spent_before: 0,
        };
        let ttl = spend_ttl(period);
        add(
            counter,
            reserve.micros,
            Bound::Below(i(budget_micros)),
            ttl,
            Meaning::Spend(held),
        );
    }
    if let Some(budget) = limits.monthly_token_budget {
        let m = Meaning::MonthTokens(budget);
        add(
            month_key(key_id, now),
            reserve.tokens,
            Bound::AtMost(i(budget)),
            MONTH_TTL_SECS,
            m,
        );
    }
    let windows = [
        (
            Scope::Key,
            window_key(key_id, now),
            limits.requests_per_minute,
            limits.tokens_per_minute,
        ),
        (
            Scope::Tenant,
            tenant_window_key(tenant, now),
            limits.tenant_requests_per_minute,
            limits.tenant_tokens_per_minute,
        ),
    ];
    for (scope, w, rpm, tpm) in windows {
        if let Some(l) = rpm {
            let m = Meaning::Requests(scope, l);
            add(
                format!("{w}:requests"),
                1,
                Bound::AtMost(i64::from(l)),
                WINDOW_TTL_SECS,
                m,
            );
        }
        if let Some(l) = tpm {
            let m = Meaning::Tokens(scope, l);
            add(
                format!("{w}:tokens"),
                reserve.tokens,
                Bound::AtMost(i64::from(l)),
                WINDOW_TTL_SECS,
                m,
            );
        }
    }
    // Grants serve only requests whose every charge they can cover.
    if charges.iter().any(|c| !matches!(c.bound, Bound::AtMost(_))) {
        for c in &mut charges {
            c.extra = 0;
        }
    }
    (charges, meanings)
}

/// The error for a refused charge whose counter stood at `current`.
fn refusal(m: &Meaning, current: i64, reserve: Reserve, now: u64) -> RateLimitError {
    let reset_ms = WINDOW_MS - now % WINDOW_MS;
    match m {
        // Named with what is settled, which needs a read: see `admit`.
        Meaning::Spend(h) => spend_refusal(h, u(current), u(current), now),
        Meaning::MonthTokens(budget) => RateLimitError::Budget {
            budget: *budget,
            retry_after_ms: ms_to_next_month(now),
        },
        Meaning::Requests(scope, limit) => RateLimitError::Requests {
            scope: *scope,
            limit: *limit,
            retry_after_ms: reset_ms,
        },
        Meaning::Tokens(scope, limit) => RateLimitError::Tokens {
            scope: *scope,
            limit: *limit,
            used: u(current),
            requested: reserve.tokens,
            retry_after_ms: reset_ms,
        },
    }
}

/// `x-ratelimit-*` of one scope's window, from its counts after the charge.
fn headers(meanings: &[Meaning], after: &[i64], scope: Scope, reserve: Reserve, now: u64) -> Vec<(String, String)> {
    let mut used = Counts::new();
    let (mut rpm, mut tpm) = (None, None);
    for (m, v) in meanings.iter().zip(after) {
        match m {
            Meaning::Requests(s, l) if *s == scope => {
                rpm = Some(*l);
                used.insert("requests".into(), v - 1);
            }
            Meaning::Tokens(s, l) if *s == scope => {
                tpm = Some(*l);
                used.insert("tokens".into(), v.saturating_sub(i(reserve.tokens)));
            }
            _ => {}
        }
    }
    decide_window(&used, (rpm, tpm), reserve.tokens, now, scope).unwrap_or_default()
}

impl RateLimitBackend for StrictRateLimiter<'_> {
    async fn admit<P: Platform>(
        &self,
        p: &P,
        key_id: &str,
        tenant: &str,
        limits: KeyLimits,
        reserve: Reserve,
    ) -> Result<Result<Admission, RateLimitError>, KvError> {
        let now = p.now_ms();
        // A request larger than a whole window can never pass: say so
        // without charging anything.
        for (scope, tpm) in [
            (Scope::Key, limits.tokens_per_minute),
            (Scope::Tenant, limits.tenant_tokens_per_minute),
        ] {
            if let Some(limit) = tpm.filter(|l| reserve.tokens > u64::from(*l)) {
                return Ok(Err(RateLimitError::TooLarge {
                    scope,
                    limit,
                    requested: reserve.tokens,
                }));
            }
        }
        let (charges, meanings) = plan(key_id, tenant, limits, reserve, now);
        let local = &self.shared.strict;
        let after = if charges.is_empty() {
            Vec::new()
        } else if let Some(after) = local.take(&charges, now) {
            after
        } else {
            local.calls.set(local.calls.get() + 1);
            match StrictCounters::charge(p, tenant, &charges).await? {
                Charged::Applied { after, granted } => {
                    local.keep(&charges, &after, &granted, now);
                    // The count as this request leaves it, granted units
                    // not yet handed out excluded.
                    after.iter().zip(&granted).map(|(a, g)| a - g).collect()
                }
                Charged::Refused { index, current } => {
                    let m = meanings.get(index).unwrap_or(&Meaning::MonthTokens(0));
                    if let Meaning::Spend(h) = m {
                        // Spent, or only reserved by requests in flight?
                        let settled = spent(p, tenant, &budget::settled_key(&h.counter), h.period).await?;
                        return Ok(Err(spend_refusal(h, u(current), settled, now)));
                    }
                    return Ok(Err(refusal(m, current, reserve, now)));
                }
            }
        };
        let key_headers = headers(&meanings, &after, Scope::Key, reserve, now);
        let tenant_headers = headers(&meanings, &after, Scope::Tenant, reserve, now);
        let spend = meanings
            .iter()
            .zip(&after)
            .filter_map(|(m, v)| match m {
                Meaning::Spend(h) => Some(Held {
                    spent_before: u(v.saturating_sub(i(reserve.micros))),
                    ..h.clone()
                }),
                _ => None,
            })
            .collect();
        let charged = |want: fn(&Meaning) -> bool| {
            charges
                .iter()
                .zip(&meanings)
                .find(|(_, m)| want(m))
                .map(|(c, _)| c.key.clone())
        };
        Ok(Ok(Admission {
            headers: tighter(key_headers, tenant_headers),
            window_key: charged(|m| matches!(m, Meaning::Tokens(Scope::Key, _))),
            tenant_window_key: charged(|m| matches!(m, Meaning::Tokens(Scope::Tenant, _))),
            month_key: charged(|m| matches!(m, Meaning::MonthTokens(_))),
            reserved_tokens: reserve.tokens,
            spend,
            reserved_micros: reserve.micros,
            strict_shard: Some(tenant.to_string()),
        }))
    }

    /// The difference between reserved and real usage, charged unbounded
    /// after the response (a correction never fails a finished request).
    /// Tokens reserved and not used go back to this isolate's grant when it
    /// holds one for the counter, with no round trip.
    fn correct<P: Platform>(&self, p: &P, a: &Admission, actual_tokens: u64, actual_micros: u64) {
        let Some(shard) = a.strict_shard.clone() else {
            return;
        };
        let now = p.now_ms();
        let tokens = i(actual_tokens).saturating_sub(i(a.reserved_tokens));
        let micros = i(actual_micros).saturating_sub(i(a.reserved_micros));
        let local = &self.shared.strict;
        let mut charges = Vec::new();
        if tokens != 0 {
            for (k, ttl) in [
                (&a.window_key, WINDOW_TTL_SECS),
                (&a.tenant_window_key, WINDOW_TTL_SECS),
                (&a.month_key, MONTH_TTL_SECS),
            ] {
                let Some(k) = k else { continue };
                if tokens < 0 && local.give_back(k, -tokens, now) {
                    continue;
                }
                charges.push(Charge {
                    key: k.clone(),
                    delta: tokens,
                    bound: Bound::Unbounded,
                    ttl_secs: ttl,
                    extra: 0,
                });
            }
        }
        for h in &a.spend {
            if micros != 0 {
                charges.push(Charge {
                    key: h.counter.clone(),
                    delta: micros,
                    bound: Bound::Unbounded,
                    ttl_secs: spend_ttl(h.period),
                    extra: 0,
                });
            }
            charges.push(Charge {
                key: budget::settled_key(&h.counter),
                delta: i(actual_micros),
                bound: Bound::Unbounded,
                ttl_secs: spend_ttl(h.period),
                extra: 0,
            });
        }
        if charges.is_empty() {
            return;
        }
        local.calls.set(local.calls.get() + 1);
        let p2 = p.clone();
        p.spawn(Box::pin(async move {
            if let Err(e) = StrictCounters::charge(&p2, &shard, &charges).await {
                tracing::warn!(error = %e, "strict rate-limit correction failed");
            }
        }));
    }
}

/// A counter of `shard` (a budget's settled spend), read through the
/// strict store (a charge of nothing).
///
/// Returns `KvError` when the store fails.
pub async fn spent<P: Platform>(p: &P, shard: &str, counter: &str, period: Period) -> Result<u64, KvError> {
    let read = Charge {
        key: counter.to_string(),
        delta: 0,
        bound: Bound::Unbounded,
        ttl_secs: spend_ttl(period),
        extra: 0,
    };
    Ok(match StrictCounters::charge(p, shard, &[read]).await? {
        Charged::Applied { after, .. } => after.first().copied().map_or(0, u),
        Charged::Refused { current, .. } => u(current),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::stages::budget::Budgets;

    #[test]
    fn a_request_is_charged_on_every_limit_it_touches() {
        let limits = KeyLimits {
            requests_per_minute: Some(3),
            tokens_per_minute: Some(1000),
            tenant_requests_per_minute: Some(10),
            budgets: Budgets {
                key_monthly: Some(5_000),
                ..Default::default()
            },
            ..Default::default()
        };
        let reserve = Reserve {
            tokens: 100,
            micros: 40,
        };
        let (charges, _) = plan("k1", "t", limits, reserve, 61_000);
        let keys: Vec<&str> = charges.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys.len(), 4, "{keys:?}");
        assert!(keys[0].starts_with("v1:spend:k:k1:m"));
        assert_eq!(keys[1], "v1:rl:k1:1:requests");
        assert_eq!(keys[2], "v1:rl:k1:1:tokens");
        assert_eq!(keys[3], "v1:rlt:t:1:requests");
        assert_eq!(charges[0].bound, Bound::Below(5_000));
        assert_eq!(charges[2].bound, Bound::AtMost(1000));
        assert_eq!(charges[2].delta, 100);
    }
}
