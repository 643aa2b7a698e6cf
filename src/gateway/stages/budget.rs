//! Spend budgets: USD per key and per tenant, per UTC day and per calendar
//! month, from the configured model prices.
//!
//! Spend is reserved at admission (the prompt estimate plus the completion
//! budget, at the model's price) and corrected to the real cost when the
//! answer ends, like tokens. A budget refuses requests once it is spent:
//! the request that crosses it is served (its cost is unknown until it
//! ends), the next one is OpenAI's `429 insufficient_quota`. Counters are
//! `v1:spend:<k|t>:<id>:<d|m><period>` in micro-USD, so sums stay exact.
//!
//! Alerts: when a request's real cost carries a budget's spend across one
//! of the configured thresholds (percent of the budget), a signed webhook
//! goes out once per budget, period and threshold; a KV marker remembers
//! it was sent.
//!
//! Everything here is pure; the rate-limit backend reads and bumps the
//! counters, the account stage sends the alerts.

use serde_json::{json, Value};

use super::ratelimit::Scope;

/// Budgets that apply to one request, in micro-USD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Budgets {
    pub key_daily: Option<u64>,
    pub key_monthly: Option<u64>,
    pub tenant_daily: Option<u64>,
    pub tenant_monthly: Option<u64>,
}

impl Budgets {
    /// Each budget that is set, with whose it is and its period.
    pub fn each(&self) -> impl Iterator<Item = (Scope, Period, u64)> {
        [
            (Scope::Key, Period::Day, self.key_daily),
            (Scope::Key, Period::Month, self.key_monthly),
            (Scope::Tenant, Period::Day, self.tenant_daily),
            (Scope::Tenant, Period::Month, self.tenant_monthly),
        ]
        .into_iter()
        .filter_map(|(s, p, b)| b.map(|b| (s, p, b)))
    }
}

/// A budget's period: the UTC day or the calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "daily",
            Period::Month => "monthly",
        }
    }

    /// The period containing `now_ms`: `2026-11-30` or `2026-11`.
    pub fn label(self, now_ms: u64) -> String {
        let (y, m, d, _) = super::usage::civil_from_ms(now_ms);
        match self {
            Period::Day => format!("{y:04}-{m:02}-{d:02}"),
            Period::Month => format!("{y:04}-{m:02}"),
        }
    }

    /// Milliseconds from `now_ms` to the start of the next period.
    pub fn ms_to_next(self, now_ms: u64) -> u64 {
        match self {
            Period::Day => 86_400_000 - now_ms % 86_400_000,
            Period::Month => {
                let (y, m, _, _) = super::usage::civil_from_ms(now_ms);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                super::usage::ms_from_civil(ny, nm, 1).saturating_sub(now_ms)
            }
        }
    }
}

/// One budget as admission saw it: its counter, limit and the spend
/// before this request (reservations of requests in flight included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub scope: Scope,
    pub period: Period,
    /// The key id or the tenant.
    pub id: String,
    pub counter: String,
    pub budget_micros: u64,
    pub spent_before: u64,
}

/// The counter of one budget: `v1:spend:k:<key>:d20261130`,
/// `v1:spend:t:<tenant>:m202611`.
pub fn counter_key(scope: Scope, id: &str, period: Period, now_ms: u64) -> String {
    let s = match scope {
        Scope::Key => "k",
        Scope::Tenant => "t",
    };
    let p = period.label(now_ms).replace('-', "");
    let tag = match period {
        Period::Day => 'd',
        Period::Month => 'm',
    };
    format!("v1:spend:{s}:{id}:{tag}{p}")
}

/// The field the counters keep spend in: what finished requests cost plus
/// what requests in flight reserved.
pub const FIELD: &str = "usd_micros";
/// The field with what finished requests cost alone (the KV backend; the
/// strict one keeps it under [`settled_key`]).
pub const SETTLED: &str = "settled_micros";

/// The strict store's counter of what finished requests cost, beside a
/// budget's `counter`.
pub fn settled_key(counter: &str) -> String {
    format!("{counter}:settled")
}

/// US dollars as micro-USD; negative or non-finite amounts are no budget.
pub fn usd_to_micros(usd: Option<f64>) -> Option<u64> {
    usd.filter(|u| u.is_finite() && *u >= 0.0)
        .map(|u| (u * 1e6).round() as u64)
}

/// `12.5` → `"12.50"`; small amounts keep their digits (`0.0012`).
pub fn format_usd(micros: u64) -> String {
    let usd = micros as f64 / 1e6;
    if micros != 0 && micros < 10_000 {
        format!("{usd:.6}").trim_end_matches('0').to_string()
    } else {
        format!("{usd:.2}")
    }
}

/// The first spent budget, if any: `spent_before` at or over its limit.
pub fn exhausted(held: &[Held]) -> Option<&Held> {
    held.iter().find(|h| h.spent_before >= h.budget_micros)
}

/// The thresholds (percent of the budget) that spend crossed going from
/// `before` to `after` micro-USD, lowest first.
pub fn crossed(thresholds: &[u32], budget: u64, before: u64, after: u64) -> Vec<u32> {
    if budget == 0 {
        return Vec::new();
    }
    let mark = |pct: u32| (u128::from(budget) * u128::from(pct)).div_ceil(100);
    let mut out: Vec<u32> = thresholds
        .iter()
        .copied()
        .filter(|&pct| u128::from(before) < mark(pct) && u128::from(after) >= mark(pct))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The KV marker that an alert went out (once per budget, period and
/// threshold).
pub fn alert_marker(h: &Held, pct: u32) -> String {
    format!("v1:alert:{}:{pct}", h.counter.trim_start_matches("v1:spend:"))
}

/// The alert webhook's body.
pub fn alert_body(h: &Held, pct: u32, spent_micros: u64, now_ms: u64) -> Value {
    let (scope, id_field) = match h.scope {
        Scope::Key => ("key", "key_id"),
        Scope::Tenant => ("tenant", "tenant"),
    };
    json!({
        "type": "budget.threshold_reached",
        "scope": scope,
        id_field: h.id,
        "period": h.period.name(),
        "period_start": h.period.label(now_ms),
        "threshold_percent": pct,
        "budget_usd": h.budget_micros as f64 / 1e6,
        "spent_usd": spent_micros as f64 / 1e6,
        "created_at": now_ms / 1000,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_periods() {
        // 2026-11-29T12:00:00Z
        let now = 1_795_953_600_000;
        assert_eq!(
            counter_key(Scope::Key, "k1", Period::Day, now),
            "v1:spend:k:k1:d20261129"
        );
        assert_eq!(
            counter_key(Scope::Tenant, "t", Period::Month, now),
            "v1:spend:t:t:m202611"
        );
        assert_eq!(Period::Day.ms_to_next(now), 12 * 3_600_000);
        assert_eq!(Period::Month.ms_to_next(now), 36 * 3_600_000);
    }

    #[test]
    fn thresholds_fire_when_crossed_not_when_passed() {
        let t = [50, 80, 100];
        assert_eq!(crossed(&t, 1000, 0, 499), Vec::<u32>::new());
        assert_eq!(crossed(&t, 1000, 0, 500), vec![50]);
        assert_eq!(crossed(&t, 1000, 400, 1200), vec![50, 80, 100]);
        assert_eq!(crossed(&t, 1000, 500, 700), Vec::<u32>::new());
        assert_eq!(crossed(&t, 0, 0, 10), Vec::<u32>::new());
    }

    #[test]
    fn money_formats() {
        assert_eq!(usd_to_micros(Some(0.001)), Some(1000));
        assert_eq!(usd_to_micros(Some(-1.0)), None);
        assert_eq!(usd_to_micros(Some(f64::NAN)), None);
        assert_eq!(format_usd(1000), "0.001");
        assert_eq!(format_usd(12_500_000), "12.50");
        assert_eq!(format_usd(0), "0.00");
    }
}
