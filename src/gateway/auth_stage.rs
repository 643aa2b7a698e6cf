//! The authenticate stage: cache, then KV, then the pure check.

use super::auth::{self, KeyRecord, Principal};
use super::{Gateway, GatewayError, Request};
use crate::platform::{KvStore, Platform};

impl Gateway {
    pub(crate) async fn authenticate<P: Platform>(&self, p: &P, req: &Request) -> Result<Principal, GatewayError> {
        let key = auth::extract_key(&req.headers).ok_or(auth::AuthError::Missing)?;
        let hash = auth::key_hash(key);
        let now = p.now_ms();
        let cached = self.shared.auth_cache.borrow().get(&hash, now);
        let record = match cached {
            Some(r) => r,
            None => {
                let raw = KvStore::get(p, &auth::storage_key(&hash)).await?;
                // A record that does not parse is treated as unknown rather
                // than as an outage: it cannot be honoured either way.
                let rec = raw.and_then(|b| serde_json::from_slice::<KeyRecord>(&b).ok());
                self.shared.auth_cache.borrow_mut().insert(hash, rec.clone(), now);
                rec
            }
        };
        Ok(auth::check(record, now)?)
    }
}
