//! API-key authentication.
//!
//! Keys are looked up by their SHA-256 (`v1:key:<hex>`); the plaintext is
//! never stored. Lookups go through a small bounded in-isolate cache: known
//! keys for `cache_ttl_ms`, unknown keys (negative cache) for
//! `negative_cache_ttl_ms`. Those TTLs are therefore the bound on how long
//! a revocation can take to reach an isolate that has the key cached
//! (plus KV's own propagation delay across locations).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::AuthSettings;
use crate::gateway::{Gateway, GatewayError, Request};
use crate::platform::{KvStore, Platform};
use crate::wire::error::{kind, OpenAiError};

/// The stored record for one API key (`v1:key:<sha256>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Record format version.
    pub v: u32,
    pub id: String,
    pub tenant: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub revoked: bool,
    /// Unix ms after which the key stops working (also used for rotation grace).
    #[serde(default)]
    pub expires_at_ms: Option<u64>,
    /// Models the key may use; `None` means all.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    #[serde(default)]
    pub tokens_per_minute: Option<u32>,
    #[serde(default)]
    pub monthly_token_budget: Option<u64>,
    /// Spend budgets in micro-USD, per UTC day and calendar month.
    #[serde(default)]
    pub daily_budget_micros: Option<u64>,
    #[serde(default)]
    pub monthly_budget_micros: Option<u64>,
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: String,
    pub tenant: String,
    pub record: KeyRecord,
}

impl Principal {
    pub fn may_use(&self, model: &str) -> bool {
        self.record.models.as_ref().is_none_or(|m| m.iter().any(|x| x == model))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("You didn't provide an API key. Provide it in an Authorization header using Bearer auth (Authorization: Bearer YOUR_KEY) or in an x-api-key header.")]
    Missing,
    #[error("Incorrect API key provided.")]
    Unknown,
    #[error("This API key has been revoked.")]
    Revoked,
    #[error("This API key has expired.")]
    Expired,
    #[error("This API key is not allowed to use the model `{model}`.")]
    ModelNotAllowed { model: String },
}

impl OpenAiError for AuthError {
    fn status(&self) -> u16 {
        match self {
            AuthError::ModelNotAllowed { .. } => 403,
            _ => 401,
        }
    }
    fn error_type(&self) -> &'static str {
        match self {
            AuthError::ModelNotAllowed { .. } => kind::PERMISSION,
            _ => kind::AUTHENTICATION,
        }
    }
    fn param(&self) -> Option<String> {
        match self {
            AuthError::ModelNotAllowed { .. } => Some("model".into()),
            _ => None,
        }
    }
    fn code(&self) -> Option<&'static str> {
        Some(match self {
            AuthError::ModelNotAllowed { .. } => "model_not_allowed",
            _ => "invalid_api_key",
        })
    }
}

/// The presented key, from `Authorization: Bearer` or `x-api-key`.
pub fn extract_key(headers: &[(String, String)]) -> Option<&str> {
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    if let Some(v) = find("authorization") {
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() {
            return Some(rest.trim());
        }
    }
    find("x-api-key").filter(|v| !v.is_empty())
}

/// Lowercase hex SHA-256 of a key.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// KV key under which a key record is stored.
pub fn storage_key(hash: &str) -> String {
    format!("v1:key:{hash}")
}

/// Decide whether a looked-up record admits the caller. Pure.
pub fn check(record: Option<KeyRecord>, now_ms: u64) -> Result<Principal, AuthError> {
    let record = record.ok_or(AuthError::Unknown)?;
    if record.revoked {
        return Err(AuthError::Revoked);
    }
    if record.expires_at_ms.is_some_and(|e| now_ms >= e) {
        return Err(AuthError::Expired);
    }
    Ok(Principal {
        key_id: record.id.clone(),
        tenant: record.tenant.clone(),
        record,
    })
}

/// Bounded in-isolate cache of key lookups, positive and negative.
#[derive(Debug)]
pub struct AuthCache {
    entries: HashMap<String, (Option<KeyRecord>, u64)>,
    settings: AuthSettings,
}

impl AuthCache {
    pub fn new(settings: AuthSettings) -> Self {
        AuthCache {
            entries: HashMap::new(),
            settings,
        }
    }

    /// `Some(lookup)` on a fresh hit, `None` when KV must be asked.
    pub fn get(&self, hash: &str, now_ms: u64) -> Option<Option<KeyRecord>> {
        let (rec, at) = self.entries.get(hash)?;
        let ttl = if rec.is_some() {
            self.settings.cache_ttl_ms
        } else {
            self.settings.negative_cache_ttl_ms
        };
        (now_ms.saturating_sub(*at) < ttl).then(|| rec.clone())
    }

    pub fn insert(&mut self, hash: String, rec: Option<KeyRecord>, now_ms: u64) {
        if self.entries.len() >= self.settings.cache_capacity && !self.entries.contains_key(&hash) {
            let max_ttl = self.settings.cache_ttl_ms.max(self.settings.negative_cache_ttl_ms);
            self.entries.retain(|_, (_, at)| now_ms.saturating_sub(*at) < max_ttl);
            if self.entries.len() >= self.settings.cache_capacity {
                // Still full of live entries: drop the oldest. Linear, but
                // only runs when an isolate sees more distinct keys than
                // its capacity inside one TTL.
                if let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone())
                {
                    self.entries.remove(&oldest);
                }
            }
        }
        self.entries.insert(hash, (rec, now_ms));
    }

    pub fn invalidate(&mut self, hash: &str) {
        self.entries.remove(hash);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The authenticate stage: cache, then KV, then the pure check.
impl Gateway {
    pub(crate) async fn authenticate<P: Platform>(&self, p: &P, req: &Request) -> Result<Principal, GatewayError> {
        let key = extract_key(&req.headers).ok_or(AuthError::Missing)?;
        let hash = key_hash(key);
        // The cache's TTLs run on the monotonic clock; a key's own expiry
        // is a wall-clock instant.
        let mono = p.monotonic_ms();
        let cached = self.shared.auth_cache.borrow().get(&hash, mono);
        let record = match cached {
            Some(r) => r,
            None => {
                let raw = KvStore::get(p, &storage_key(&hash)).await?;
                // A record that does not parse is treated as unknown rather
                // than as an outage: it cannot be honoured either way.
                let rec = raw.and_then(|b| serde_json::from_slice::<KeyRecord>(&b).ok());
                self.shared.auth_cache.borrow_mut().insert(hash, rec.clone(), mono);
                rec
            }
        };
        Ok(check(record, p.now_ms())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> KeyRecord {
        KeyRecord {
            v: 1,
            id: "k1".into(),
            tenant: "t".into(),
            name: "n".into(),
            revoked: false,
            expires_at_ms: None,
            models: None,
            requests_per_minute: None,
            tokens_per_minute: None,
            monthly_token_budget: None,
            daily_budget_micros: None,
            monthly_budget_micros: None,
        }
    }

    #[test]
    fn extracts_bearer_and_x_api_key() {
        let h = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert_eq!(extract_key(&h("Authorization", "Bearer abc")), Some("abc"));
        assert_eq!(extract_key(&h("authorization", "bearer  abc ")), Some("abc"));
        assert_eq!(extract_key(&h("x-api-key", "xyz")), Some("xyz"));
        assert_eq!(extract_key(&h("authorization", "Basic abc")), None);
        assert_eq!(extract_key(&h("authorization", "Bearer ")), None);
    }

    #[test]
    fn check_rejects_revoked_and_expired() {
        assert_eq!(check(None, 0), Err(AuthError::Unknown));
        let mut r = rec();
        r.revoked = true;
        assert_eq!(check(Some(r), 0), Err(AuthError::Revoked));
        let mut r = rec();
        r.expires_at_ms = Some(100);
        assert!(check(Some(r.clone()), 99).is_ok());
        assert_eq!(check(Some(r), 100), Err(AuthError::Expired));
    }

    #[test]
    fn cache_is_bounded_and_expires() {
        let mut c = AuthCache::new(AuthSettings {
            cache_ttl_ms: 100,
            negative_cache_ttl_ms: 50,
            cache_capacity: 3,
        });
        for i in 0..10 {
            c.insert(format!("h{i}"), Some(rec()), i);
        }
        assert!(c.len() <= 3);
        c.insert("neg".into(), None, 1000);
        assert_eq!(c.get("neg", 1049), Some(None));
        assert_eq!(c.get("neg", 1050), None);
        assert_eq!(
            key_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
