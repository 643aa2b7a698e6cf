//! API-key management records and their pure rules.
//!
//! Two KV records per key: the lookup record at `v1:key:<sha256>` (what
//! authentication reads, see `auth::KeyRecord`) and the metadata record at
//! `v1:keyid:<id>` (what the admin API lists). The plaintext key exists only
//! in the response to create/rotate; only its SHA-256 is stored.

use serde::{Deserialize, Serialize};

use crate::gateway::stages::auth::KeyRecord;

/// A superseded key hash still valid until `expires_at_ms` (rotation grace).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PreviousKey {
    pub hash: String,
    pub expires_at_ms: u64,
}

/// The admin view of a key, stored at `v1:keyid:<id>`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyMeta {
    pub v: u32,
    pub id: String,
    pub name: String,
    pub tenant: String,
    /// SHA-256 of the current key (not a secret; it cannot be reversed).
    pub hash: String,
    /// The last four characters of the key, to tell keys apart in lists.
    pub hint: String,
    pub created_at: u64,
    pub revoked: bool,
    pub expires_at: Option<u64>,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    pub monthly_token_budget: Option<u64>,
    /// Spend budgets in micro-USD.
    #[serde(default)]
    pub daily_budget_micros: Option<u64>,
    #[serde(default)]
    pub monthly_budget_micros: Option<u64>,
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub previous: Vec<PreviousKey>,
}

/// `POST /admin/keys`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[cfg_attr(any(test, feature = "openapi"), schema(example = json!({"name": "ci", "tenant": "acme", "requests_per_minute": 600, "tokens_per_minute": 200000, "models": ["gpt-4o-mini"]})))]
pub struct CreateKey {
    pub name: String,
    pub tenant: String,
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    #[serde(default)]
    pub tokens_per_minute: Option<u32>,
    #[serde(default)]
    pub monthly_token_budget: Option<u64>,
    /// Spend budget in USD per UTC day; at the model prices in the config.
    #[serde(default)]
    pub daily_budget_usd: Option<f64>,
    /// Spend budget in USD per calendar month (UTC).
    #[serde(default)]
    pub monthly_budget_usd: Option<f64>,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Unix seconds.
    #[serde(default)]
    pub expires_at: Option<u64>,
}

/// `POST /admin/keys/{id}/rotate`.
#[derive(Debug, Clone, Deserialize, Default)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old key keeps working, in seconds.
    #[serde(default = "default_grace")]
    pub grace_seconds: u64,
}

fn default_grace() -> u64 {
    3600
}

pub fn meta_key(id: &str) -> String {
    format!("v1:keyid:{id}")
}

pub const META_PREFIX: &str = "v1:keyid:";

/// A new plaintext key: `ig_` and 192 random bits in hex.
pub fn generate_key(mut random: impl FnMut() -> u64) -> String {
    format!("ig_{:016x}{:016x}{:016x}", random(), random(), random())
}

pub fn generate_id(mut random: impl FnMut() -> u64) -> String {
    format!("key_{:016x}", random())
}

pub fn hint(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

/// Tenants appear in cache keys and logs: keep them to a plain alphabet.
pub fn valid_tenant(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

impl KeyMeta {
    /// The lookup record for a hash of this key (current or previous).
    pub fn record(&self, expires_at_ms: Option<u64>) -> KeyRecord {
        let own_expiry = self.expires_at.map(|s| s.saturating_mul(1000));
        let expires_at_ms = match (own_expiry, expires_at_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        KeyRecord {
            v: 1,
            id: self.id.clone(),
            tenant: self.tenant.clone(),
            name: self.name.clone(),
            revoked: self.revoked,
            expires_at_ms,
            models: self.models.clone(),
            requests_per_minute: self.requests_per_minute,
            tokens_per_minute: self.tokens_per_minute,
            monthly_token_budget: self.monthly_token_budget,
            daily_budget_micros: self.daily_budget_micros,
            monthly_budget_micros: self.monthly_budget_micros,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_hinted() {
        let mut n = 0u64;
        let k = generate_key(|| {
            n += 1;
            n * 0x0123_4567_89ab_cdef
        });
        assert!(k.starts_with("ig_") && k.len() == 51, "{k}");
        assert_eq!(hint(&k).chars().count(), 5);
        assert!(valid_tenant("acme-prod:eu"));
        assert!(!valid_tenant("a b"));
    }
}
