//! The admin API: keys, usage and isolate stats. Guarded by the admin
//! token, compared in constant time; off entirely when no token is set.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::keys::{self, CreateKey, KeyMeta, PreviousKey, RotateKey};
use crate::gateway::stages::auth::{self, key_hash, storage_key};
use crate::gateway::stages::budget::usd_to_micros;
use crate::gateway::stages::counters;
use crate::gateway::stages::usage::{bucket_start_ms, civil_from_ms, usage_prefix, UsageRow};
use crate::gateway::{Gateway, GatewayError, Request, RequestCtx, Response};
use crate::platform::{KvStore, Platform};
use crate::wire::openai::validate::parse_json;
use crate::wire::openai::ValidationError;

/// Largest usage window one query may span.
/// The longest `/admin/usage` range: 744 hourly rows, each one KV read,
/// stays under Workers' 1,000 KV operations per invocation with room for
/// the listing. Longer reports are several requests.
const MAX_USAGE_RANGE_SECS: u64 = 31 * 86_400;
/// Keys per `/admin/keys` page: one KV read each, like the usage rows.
const MAX_KEYS_PAGE: usize = 500;
const DEFAULT_KEYS_PAGE: usize = 100;
/// Key ids listed to find a page (Workers lists 1,000 names per operation).
const MAX_KEYS_LISTED: usize = 10_000;

pub(super) fn invalid(param: &str, reason: &str) -> GatewayError {
    ValidationError::Invalid {
        param: param.into(),
        reason: reason.into(),
    }
    .into()
}

pub(super) fn query_param<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let q = path.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

/// Does the request present the admin token? Digests are compared, so the
/// comparison is constant-time and independent of the token's length. An
/// empty token admits nobody.
pub(crate) fn token_matches(headers: &[(String, String)], token: &str) -> bool {
    let Some(presented) = auth::extract_key(headers) else {
        return false;
    };
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(token.as_bytes());
    !token.is_empty() && bool::from(a.ct_eq(&b))
}

impl Gateway {
    fn check_admin(&self, req: &Request) -> Result<(), GatewayError> {
        let Some(token) = &self.config.admin_token else {
            return Err(GatewayError::AdminDisabled);
        };
        if token_matches(&req.headers, token.expose()) {
            Ok(())
        } else {
            Err(GatewayError::AdminUnauthorized)
        }
    }

    pub(crate) async fn admin<P: Platform>(
        &self,
        p: &P,
        req: &Request,
        ctx: &mut RequestCtx,
    ) -> Result<Response, GatewayError> {
        self.check_admin(req)?;
        let full = req.path.as_str();
        let path = full.split('?').next().unwrap_or("");
        let segs: Vec<&str> = path
            .trim_start_matches("/admin")
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let resp = match (req.method.as_str(), segs.as_slice()) {
            ("POST", ["keys"]) => self.create_key(p, req).await?,
            ("GET", ["keys"]) => self.list_keys(p, full).await?,
            ("GET", ["keys", id]) => Response::json(200, &view(&self.load_meta(p, id).await?)),
            ("DELETE", ["keys", id]) => self.revoke_key(p, id).await?,
            ("PATCH", ["keys", id]) => self.patch_key(p, req, id).await?,
            ("POST", ["keys", id, "rotate"]) => self.rotate_key(p, req, id).await?,
            ("GET", ["usage"]) => self.usage_report(p, full).await?,
            ("GET", ["spend"]) => self.spend_report(p, full).await?,
            ("GET", ["stats"]) => self.stats(p),
            (m, segs) => {
                let path: String = path.chars().take(200).collect();
                let allowed = match segs {
                    ["keys"] => "GET, POST",
                    ["keys", _] => "GET, PATCH, DELETE",
                    ["keys", _, "rotate"] => "POST",
                    ["usage"] | ["spend"] | ["stats"] => "GET",
                    _ => return Err(GatewayError::NotFound { method: m.into(), path }),
                };
                return Err(GatewayError::MethodNotAllowed {
                    method: m.into(),
                    path,
                    allowed,
                });
            }
        };
        ctx.log(resp.status, p.monotonic_ms(), "ok", None);
        Ok(resp)
    }

    async fn create_key<P: Platform>(&self, p: &P, req: &Request) -> Result<Response, GatewayError> {
        let body: CreateKey = parse_json(req.body()?, self.config.limits.max_body_bytes)?;
        if body.name.trim().is_empty() || body.name.len() > 200 {
            return Err(invalid("name", "must be 1 to 200 characters"));
        }
        if !keys::valid_tenant(&body.tenant) {
            return Err(invalid(
                "tenant",
                "must be 1 to 128 characters of A-Z, a-z, 0-9, '-', '_', '.', ':'",
            ));
        }
        if let Some(models) = &body.models {
            for (i, m) in models.iter().enumerate() {
                if !self.config.models.contains_key(m) {
                    return Err(invalid(
                        &format!("models[{i}]"),
                        &format!("no model `{m}` is configured"),
                    ));
                }
            }
        }
        let daily_budget_micros = budget_micros(body.daily_budget_usd, "daily_budget_usd")?;
        let monthly_budget_micros = budget_micros(body.monthly_budget_usd, "monthly_budget_usd")?;
        let now = p.now_ms();
        if body.expires_at.is_some_and(|e| e.saturating_mul(1000) <= now) {
            return Err(invalid("expires_at", "must be in the future (Unix seconds)"));
        }
        let key = keys::generate_key(|| p.random_u64());
        let meta = KeyMeta {
            v: 1,
            id: keys::generate_id(|| p.random_u64()),
            name: body.name,
            tenant: body.tenant,
            hash: key_hash(&key),
            hint: keys::hint(&key),
            created_at: now / 1000,
            revoked: false,
            expires_at: body.expires_at,
            requests_per_minute: body.requests_per_minute,
            tokens_per_minute: body.tokens_per_minute,
            monthly_token_budget: body.monthly_token_budget,
            daily_budget_micros,
            monthly_budget_micros,
            models: body.models,
            previous: vec![],
        };
        self.store_key(p, &meta, &meta.hash, None).await?;
        KvStore::put(p, &keys::meta_key(&meta.id), json_bytes(&meta), None).await?;
        let mut v = view(&meta);
        v["key"] = key.into();
        Ok(Response::json(201, &v))
    }

    pub(super) async fn store_key<P: Platform>(
        &self,
        p: &P,
        meta: &KeyMeta,
        hash: &str,
        expires_at_ms: Option<u64>,
    ) -> Result<(), GatewayError> {
        let rec = meta.record(expires_at_ms);
        KvStore::put(p, &storage_key(hash), json_bytes(&rec), None).await?;
        // This isolate sees the change at once; others within the cache TTL.
        self.shared.auth_cache.borrow_mut().invalidate(hash);
        Ok(())
    }

    pub(super) async fn load_meta<P: Platform>(&self, p: &P, id: &str) -> Result<KeyMeta, GatewayError> {
        let unknown = || GatewayError::UnknownResource {
            what: "key",
            id: id.chars().take(64).collect(),
        };
        let raw = KvStore::get(p, &keys::meta_key(id)).await?.ok_or_else(unknown)?;
        serde_json::from_slice(&raw).map_err(|_| unknown())
    }

    /// `GET /admin/keys?limit=&after=`: one page of keys in id order, one
    /// KV read per key. `has_more` and `last_id` page on, as OpenAI's list
    /// endpoints do.
    async fn list_keys<P: Platform>(&self, p: &P, path: &str) -> Result<Response, GatewayError> {
        let limit = match query_param(path, "limit") {
            None | Some("") => DEFAULT_KEYS_PAGE,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_KEYS_PAGE).contains(n))
                .ok_or_else(|| invalid("limit", "must be an integer from 1 to 500"))?,
        };
        let after = query_param(path, "after").filter(|a| !a.is_empty());
        let names = KvStore::list(p, keys::META_PREFIX, MAX_KEYS_LISTED).await?;
        let mut page = names
            .iter()
            .filter(|n| after.is_none_or(|a| n.as_str() > keys::meta_key(a).as_str()))
            .take(limit + 1)
            .collect::<Vec<_>>();
        let has_more = page.len() > limit;
        page.truncate(limit);
        let mut data = Vec::with_capacity(page.len());
        for name in page {
            if let Some(raw) = KvStore::get(p, name).await? {
                if let Ok(meta) = serde_json::from_slice::<KeyMeta>(&raw) {
                    data.push(view(&meta));
                }
            }
        }
        let last_id = data.last().map(|v| v["id"].clone()).unwrap_or(Value::Null);
        Ok(Response::json(
            200,
            &json!({"object": "list", "data": data, "has_more": has_more, "last_id": last_id}),
        ))
    }

    async fn revoke_key<P: Platform>(&self, p: &P, id: &str) -> Result<Response, GatewayError> {
        let mut meta = self.load_meta(p, id).await?;
        meta.revoked = true;
        self.store_key(p, &meta, &meta.hash, None).await?;
        for prev in meta.previous.clone() {
            self.store_key(p, &meta, &prev.hash, Some(prev.expires_at_ms)).await?;
        }
        KvStore::put(p, &keys::meta_key(id), json_bytes(&meta), None).await?;
        Ok(Response::json(200, &view(&meta)))
    }

    async fn rotate_key<P: Platform>(&self, p: &P, req: &Request, id: &str) -> Result<Response, GatewayError> {
        let body: RotateKey = if req.body()?.iter().all(u8::is_ascii_whitespace) {
            RotateKey { grace_seconds: 3600 }
        } else {
            parse_json(req.body()?, self.config.limits.max_body_bytes)?
        };
        let mut meta = self.load_meta(p, id).await?;
        if meta.revoked {
            return Err(invalid("id", "a revoked key cannot be rotated"));
        }
        let now = p.now_ms();
        let grace_until = now.saturating_add(body.grace_seconds.saturating_mul(1000));
        // The old key keeps working until the grace period ends; entries
        // whose grace is over are dropped from the list.
        meta.previous.retain(|k| k.expires_at_ms > now);
        meta.previous.push(PreviousKey {
            hash: meta.hash.clone(),
            expires_at_ms: grace_until,
        });
        self.store_key(p, &meta, &meta.hash.clone(), Some(grace_until)).await?;
        let key = keys::generate_key(|| p.random_u64());
        meta.hash = key_hash(&key);
        meta.hint = keys::hint(&key);
        self.store_key(p, &meta, &meta.hash, None).await?;
        KvStore::put(p, &keys::meta_key(id), json_bytes(&meta), None).await?;
        let mut v = view(&meta);
        v["key"] = key.into();
        v["previous_key_expires_at"] = (grace_until / 1000).into();
        Ok(Response::json(200, &v))
    }

    async fn usage_report<P: Platform>(&self, p: &P, path: &str) -> Result<Response, GatewayError> {
        let key_id = query_param(path, "key_id")
            .filter(|k| !k.is_empty())
            .ok_or(ValidationError::Missing { param: "key_id".into() })?;
        let now_s = p.now_ms() / 1000;
        let parse = |name: &str, default: u64| -> Result<u64, GatewayError> {
            match query_param(path, name) {
                None | Some("") => Ok(default),
                Some(v) => v.parse::<u64>().map_err(|_| invalid(name, "must be Unix seconds")),
            }
        };
        let to = parse("to", now_s)?;
        let from = parse("from", to.saturating_sub(86_400))?;
        if from > to {
            return Err(invalid("from", "must not be after 'to'"));
        }
        if to - from > MAX_USAGE_RANGE_SECS {
            return Err(invalid(
                "from",
                "the range may span at most 31 days; request longer periods in parts",
            ));
        }
        // Hours are named `yyyymmddhh`: listing per month of the range
        // reads only names that can be in it, however long the retention.
        let mut names = Vec::new();
        for month in months_between(from * 1000, to * 1000) {
            let prefix = format!("{}{month}", usage_prefix(key_id));
            names.extend(KvStore::list(p, &prefix, 31 * 24).await?);
        }
        let mut rows = Vec::new();
        let mut total = UsageRow::default();
        for name in names {
            let bucket = name.rsplit(':').next().unwrap_or("");
            let Some(start) = bucket_start_ms(bucket) else { continue };
            // An hour is included when it overlaps [from, to].
            if start / 1000 + 3600 <= from || start / 1000 > to {
                continue;
            }
            let raw = KvStore::get(p, &name).await?;
            // Fold in what this isolate has not flushed yet (no KV read).
            let mut c = counters::decode(raw.as_deref());
            for (k, v) in self.shared.counters.peek(&name).unwrap_or_default() {
                let cur = c.entry(k).or_insert(v);
                *cur = (*cur).max(v);
            }
            let row = UsageRow::from_counts(bucket, &c);
            total.add(&row);
            rows.push(row);
        }
        total.hour = String::new();
        Ok(Response::json(
            200,
            &json!({"object": "list", "key_id": key_id, "from": from, "to": to, "data": rows, "total": total}),
        ))
    }

    fn stats<P: Platform>(&self, p: &P) -> Response {
        let c = &self.shared.counters;
        Response::json(
            200,
            &json!({
                "counter_kv_writes": c.writes.get(),
                "counter_kv_writes_by_kind": c.writes_by_kind.borrow().clone(),
                "counter_kv_reads": c.reads.get(),
                "strict_store_calls": self.shared.strict.calls.get(),
                "counter_keys_tracked": c.len(),
                "auth_cache_entries": self.shared.auth_cache.borrow().len(),
                "wasm_memory_bytes": p.memory_bytes(),
                "circuits": self
                    .shared
                    .circuits
                    .snapshot()
                    .into_iter()
                    .map(|(name, state)| {
                        let s = match state {
                            crate::gateway::upstream::circuit::State::Closed => "closed",
                            crate::gateway::upstream::circuit::State::Open { .. } => "open",
                            crate::gateway::upstream::circuit::State::HalfOpen { .. } => "half_open",
                        };
                        json!({"upstream": name, "state": s})
                    })
                    .collect::<Vec<_>>(),
            }),
        )
    }
}

pub(super) fn json_bytes<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// The admin view of a key: never the key, nor anything derived from it
/// beyond a four-character hint.
pub(super) fn view(m: &KeyMeta) -> Value {
    json!({
        "id": m.id,
        "object": "api_key",
        "name": m.name,
        "tenant": m.tenant,
        "hint": m.hint,
        "created_at": m.created_at,
        "revoked": m.revoked,
        "expires_at": m.expires_at,
        "requests_per_minute": m.requests_per_minute,
        "tokens_per_minute": m.tokens_per_minute,
        "monthly_token_budget": m.monthly_token_budget,
        "daily_budget_usd": m.daily_budget_micros.map(|u| u as f64 / 1e6),
        "monthly_budget_usd": m.monthly_budget_micros.map(|u| u as f64 / 1e6),
        "models": m.models,
    })
}

/// A budget in USD from the admin API, in micro-USD; a negative or
/// non-finite amount is a 400 naming `param`.
pub(super) fn budget_micros(usd: Option<f64>, param: &str) -> Result<Option<u64>, GatewayError> {
    match usd {
        Some(u) if !(u.is_finite() && u >= 0.0) => Err(invalid(param, "must be a non-negative number of US dollars")),
        u => Ok(usd_to_micros(u)),
    }
}

/// `yyyymm` of every UTC month from `from_ms` to `to_ms` (Unix ms).
fn months_between(from_ms: u64, to_ms: u64) -> Vec<String> {
    let (y0, m0, ..) = civil_from_ms(from_ms);
    let (y1, m1, ..) = civil_from_ms(to_ms);
    let (mut y, mut m) = (y0, m0);
    let mut out = Vec::new();
    while (y, m) <= (y1, m1) {
        out.push(format!("{y:04}{m:02}"));
        (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    }
    out
}
