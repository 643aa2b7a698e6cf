//! Usage accounting: tokens in and out, cost and request counts per key,
//! aggregated per hour in KV (`v1:usage:<key-id>:<yyyymmddhh>`).
//!
//! Written after the response through the coalesced counters, so a client
//! that disconnects early is still accounted and a hot key costs at most
//! one KV write per second.

use serde::Serialize;

use super::counters::Counts;
use crate::config::Price;
use crate::stream::Usage;

/// Days since 1970-01-01 → (year, month, day). The proleptic Gregorian
/// conversion from Howard Hinnant's `civil_from_days`; a date crate would
/// cost more wasm than these few lines.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix ms → (year, month, day, hour), UTC.
pub fn civil_from_ms(ms: u64) -> (i64, u32, u32, u32) {
    let secs = (ms / 1000) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    (y, m, d, (secs.rem_euclid(86_400) / 3600) as u32)
}

/// First millisecond of a UTC date.
pub fn ms_from_civil(y: i64, m: u32, d: u32) -> u64 {
    (days_from_civil(y, m, d) * 86_400_000).max(0) as u64
}

/// `yyyymmddhh` for the hour containing `ms`.
pub fn hour_bucket(ms: u64) -> String {
    let (y, m, d, h) = civil_from_ms(ms);
    format!("{y:04}{m:02}{d:02}{h:02}")
}

/// Unix ms of the start of a `yyyymmddhh` bucket.
pub fn bucket_start_ms(bucket: &str) -> Option<u64> {
    if bucket.len() != 10 || !bucket.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i64 = bucket[0..4].parse().ok()?;
    let m: u32 = bucket[4..6].parse().ok()?;
    let d: u32 = bucket[6..8].parse().ok()?;
    let h: u64 = bucket[8..10].parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 {
        return None;
    }
    Some(ms_from_civil(y, m, d) + h * 3_600_000)
}

pub fn usage_key(key_id: &str, ms: u64) -> String {
    format!("v1:usage:{key_id}:{}", hour_bucket(ms))
}

pub fn usage_prefix(key_id: &str) -> String {
    format!("v1:usage:{key_id}:")
}

/// One request's contribution to its key's hourly usage.
pub fn usage_delta(usage: Option<Usage>, price: Price, cache_hit: bool, failed: bool) -> Counts {
    let u = usage.unwrap_or_default();
    let mut c = Counts::new();
    c.insert("requests".into(), 1);
    // Counts come from the upstream: a huge one saturates rather than
    // wrapping negative (which would refund usage).
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    c.insert("prompt_tokens".into(), count(u.prompt_tokens));
    c.insert("completion_tokens".into(), count(u.completion_tokens));
    c.insert(
        "cost_micro_usd".into(),
        count(price.cost_micros(u.prompt_tokens, u.completion_tokens)),
    );
    if cache_hit {
        c.insert("cache_hits".into(), 1);
    }
    if failed {
        c.insert("errors".into(), 1);
    }
    c
}

/// One hour of usage as `/admin/usage` returns it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
pub struct UsageRow {
    /// ISO 8601 start of the hour, UTC.
    pub hour: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: f64,
    pub cache_hits: i64,
    pub errors: i64,
}

impl UsageRow {
    pub fn from_counts(bucket: &str, c: &Counts) -> UsageRow {
        let get = |k: &str| c.get(k).copied().unwrap_or(0);
        let hour = format!(
            "{}-{}-{}T{}:00:00Z",
            &bucket[0..4],
            &bucket[4..6],
            &bucket[6..8],
            &bucket[8..10]
        );
        UsageRow {
            hour,
            requests: get("requests"),
            prompt_tokens: get("prompt_tokens"),
            completion_tokens: get("completion_tokens"),
            total_tokens: get("prompt_tokens").saturating_add(get("completion_tokens")),
            cost_usd: get("cost_micro_usd") as f64 / 1e6,
            cache_hits: get("cache_hits"),
            errors: get("errors"),
        }
    }

    pub fn add(&mut self, o: &UsageRow) {
        self.requests = self.requests.saturating_add(o.requests);
        self.prompt_tokens = self.prompt_tokens.saturating_add(o.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(o.completion_tokens);
        self.total_tokens = self.total_tokens.saturating_add(o.total_tokens);
        self.cost_usd += o.cost_usd;
        self.cache_hits = self.cache_hits.saturating_add(o.cache_hits);
        self.errors = self.errors.saturating_add(o.errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_roundtrip() {
        // 2026-11-21T05:30:00Z
        let ms = 1_795_239_000_000;
        assert_eq!(civil_from_ms(ms), (2026, 11, 21, 5));
        assert_eq!(hour_bucket(ms), "2026112105");
        assert_eq!(bucket_start_ms("2026112105"), Some(ms - 30 * 60_000));
        assert_eq!(civil_from_ms(0), (1970, 1, 1, 0));
        assert_eq!(civil_from_ms(951_782_400_000), (2000, 2, 29, 0));
        for days in [0i64, 59, 365, 10_957, 20_000, 40_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(bucket_start_ms("2026133105"), None);
    }

    #[test]
    fn cost_in_micro_usd() {
        let p = Price {
            input_per_mtok: 0.15,
            output_per_mtok: 0.6,
        };
        let u = Usage {
            prompt_tokens: 1000,
            completion_tokens: 500,
            total_tokens: 1500,
        };
        assert_eq!(usage_delta(Some(u), p, false, false)["cost_micro_usd"], 450);
    }
}
