//! The strict rate-limit store on Workers: a Durable Object per tenant
//! (`RateLimiter`, bound as `RATE_LIMITER`) that owns the tenant's and its
//! keys' counters.
//!
//! A request's charges reach the object in one subrequest and are decided
//! and written in one synchronous step over its SQLite storage
//! (`platform::decide_charges`, then an upsert per counter): nothing else
//! runs in the object in between, so the decision is exact whatever the
//! number of isolates sending to it. Counters carry their expiry; rows past
//! it read as zero and are deleted at most once a minute.
//!
//! Declared in `wrangler.toml` (`[[durable_objects.bindings]]` and a
//! `new_sqlite_classes` migration); without the binding the strict backend
//! answers 503 and logs what is missing.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Method, Request, RequestInit, Response, State};

use crate::platform::{decide_charges, Charge, Charged, KvError};

/// The binding name in `wrangler.toml`.
pub(super) const LIMITER_BINDING: &str = "RATE_LIMITER";
/// How often the object deletes expired counters, at most.
const SWEEP_EVERY_MS: u64 = 60_000;

#[durable_object]
pub struct RateLimiter {
    state: State,
    last_sweep_ms: Cell<u64>,
    /// The counters this object has read or written since it started, with
    /// their expiry (Unix ms): SQLite is read only for a counter not seen
    /// yet (after a restart), and written through on every change.
    cache: RefCell<HashMap<String, (i64, u64)>>,
}

#[derive(Deserialize)]
struct Row {
    value: i64,
    expires: i64,
}

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

impl RateLimiter {
    /// Apply `charges` all or none (see the module documentation).
    fn apply(&self, charges: &[Charge]) -> worker::Result<Charged> {
        let sql = self.state.storage().sql();
        let now = now_ms();
        let now_js = now as i64;
        let mut cache = self.cache.borrow_mut();
        let mut values = Vec::with_capacity(charges.len());
        for c in charges {
            let value = match cache.get(&c.key) {
                Some((v, expires)) if *expires > now => *v,
                Some(_) => 0,
                None => {
                    let rows: Vec<Row> = sql
                        .exec(
                            "SELECT value, expires FROM counters WHERE key = ? AND expires > ?",
                            vec![c.key.as_str().into(), now_js.into()],
                        )?
                        .to_array()?;
                    let found = rows.first().map_or((0, 0), |r| (r.value, r.expires.max(0) as u64));
                    cache.insert(c.key.clone(), found);
                    found.0
                }
            };
            values.push(value);
        }
        let out = decide_charges(&values, charges);
        if let Charged::Applied { after, .. } = &out {
            for (c, v) in charges.iter().zip(after) {
                let until = now.saturating_add(c.ttl_secs.saturating_mul(1000));
                let entry = cache.entry(c.key.clone()).or_insert((0, 0));
                // An expired counter starts over with this charge's expiry.
                let until = if entry.1 > now { entry.1.max(until) } else { until };
                *entry = (*v, until);
                let expires = until as i64;
                sql.exec(
                    "INSERT INTO counters (key, value, expires) VALUES (?, ?, ?) \
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value, expires = excluded.expires",
                    vec![c.key.as_str().into(), (*v).into(), expires.into()],
                )?;
            }
        }
        if now.saturating_sub(self.last_sweep_ms.get()) >= SWEEP_EVERY_MS {
            self.last_sweep_ms.set(now);
            sql.exec("DELETE FROM counters WHERE expires <= ?", vec![now_js.into()])?;
            cache.retain(|_, (_, expires)| *expires > now);
        }
        Ok(out)
    }
}

impl DurableObject for RateLimiter {
    fn new(state: State, _env: Env) -> Self {
        // Synchronous, before any event is delivered.
        let _ = state.storage().sql().exec(
            "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires INTEGER NOT NULL)",
            None,
        );
        RateLimiter {
            state,
            last_sweep_ms: Cell::new(0),
            cache: RefCell::default(),
        }
    }

    /// `POST` with a JSON array of charges; answers the `Charged` JSON, or
    /// 400 for a body that is not charges.
    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        // Text, then serde: one crossing for the body instead of one per
        // field of a parsed JS object.
        let text = req.text().await.unwrap_or_default();
        let Ok(charges) = serde_json::from_str::<Vec<Charge>>(&text) else {
            return Response::error("expected a JSON array of charges", 400);
        };
        // From here to the answer nothing awaits: the step is atomic.
        match self.apply(&charges) {
            Ok(out) => Response::ok(serde_json::to_string(&out).unwrap_or_default()),
            Err(e) => Response::error(format!("rate limiter storage: {e}"), 500),
        }
    }
}

/// One round trip to the tenant's object: the charges out, the outcome
/// back.
///
/// Returns `KvError::Unsupported` without the binding, and
/// `KvError::Unavailable` when the object could not be reached or failed.
pub(super) async fn charge(
    ns: Option<&worker::ObjectNamespace>,
    shard: &str,
    charges: &[Charge],
) -> Result<Charged, KvError> {
    let Some(ns) = ns else {
        tracing::error!(
            binding = LIMITER_BINDING,
            "rate_limits.backend is strict but the Durable Object binding is missing (see wrangler.toml)"
        );
        return Err(KvError::Unsupported("the RATE_LIMITER Durable Object binding"));
    };
    let unavailable = |e: worker::Error| KvError::Unavailable(format!("rate limiter: {e}"));
    let stub = ns
        .id_from_name(shard)
        .and_then(|id| id.get_stub())
        .map_err(unavailable)?;
    let body = serde_json::to_string(charges).unwrap_or_default();
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.into()));
    // The URL is the object's own business; only the body matters.
    let req = Request::new_with_init("https://rate-limiter/charge", &init).map_err(unavailable)?;
    let mut resp = stub.fetch_with_request(req).await.map_err(unavailable)?;
    if resp.status_code() != 200 {
        let text = resp.text().await.unwrap_or_default();
        return Err(KvError::Unavailable(format!(
            "rate limiter answered {}: {}",
            resp.status_code(),
            text.chars().take(200).collect::<String>()
        )));
    }
    resp.json::<Charged>().await.map_err(unavailable)
}
