//! The admin API for spend budgets: `PATCH /admin/keys/{id}` sets a key's
//! budgets, `GET /admin/spend?key_id=` or `?tenant=` shows spend against
//! them for the current UTC day and month.
//!
//! A tenant's budgets are in the config (`rate_limits.tenants`); its spend
//! is shown here all the same.

use serde_json::{json, Map, Value};

use super::admin::{budget_micros, invalid, json_bytes, query_param, view};
use super::keys;
use crate::config::RateLimitBackendKind;
use crate::gateway::stages::budget::{counter_key, settled_key, Period, SETTLED};
use crate::gateway::stages::ratelimit::Scope;
use crate::gateway::stages::strict;
use crate::gateway::{Gateway, GatewayError, Request, Response};
use crate::platform::{KvStore, Platform};
use crate::wire::openai::validate::parse_json;

/// The fields `PATCH /admin/keys/{id}` accepts: a number sets the budget,
/// `null` removes it, an absent field leaves it as it is.
const PATCHABLE: &[&str] = &["daily_budget_usd", "monthly_budget_usd"];

impl Gateway {
    /// `PATCH /admin/keys/{id}`: set or clear a key's spend budgets. The
    /// key's records (current and previous hashes) change with it.
    pub(super) async fn patch_key<P: Platform>(
        &self,
        p: &P,
        req: &Request,
        id: &str,
    ) -> Result<Response, GatewayError> {
        let body: Map<String, Value> = parse_json(req.body()?, self.config.limits.max_body_bytes)?;
        if let Some(k) = body.keys().find(|k| !PATCHABLE.contains(&k.as_str())) {
            return Err(invalid(
                k,
                "is not a field that can be changed (daily_budget_usd, monthly_budget_usd)",
            ));
        }
        let mut meta = self.load_meta(p, id).await?;
        for (field, v) in &body {
            let micros = match v {
                Value::Null => None,
                Value::Number(n) => budget_micros(n.as_f64(), field)?,
                _ => return Err(invalid(field, "must be a number of US dollars or null")),
            };
            match field.as_str() {
                "daily_budget_usd" => meta.daily_budget_micros = micros,
                _ => meta.monthly_budget_micros = micros,
            }
        }
        let now = p.now_ms();
        meta.previous.retain(|k| k.expires_at_ms > now);
        self.store_key(p, &meta, &meta.hash, None).await?;
        for prev in meta.previous.clone() {
            self.store_key(p, &meta, &prev.hash, Some(prev.expires_at_ms)).await?;
        }
        KvStore::put(p, &keys::meta_key(id), json_bytes(&meta), None).await?;
        Ok(Response::json(200, &view(&meta)))
    }

    /// `GET /admin/spend?key_id=…` or `?tenant=…`: spend in USD this UTC
    /// day and month against the budgets. Spend is counted while a budget
    /// of that scope and period is set.
    pub(super) async fn spend_report<P: Platform>(&self, p: &P, path: &str) -> Result<Response, GatewayError> {
        let now = p.now_ms();
        // `shard`: the tenant, whose strict store holds the counters.
        let (scope, id, shard, budgets) = match (query_param(path, "key_id"), query_param(path, "tenant")) {
            (Some(k), None) if !k.is_empty() => {
                let meta = self.load_meta(p, k).await?;
                let budgets = (meta.daily_budget_micros, meta.monthly_budget_micros);
                (Scope::Key, k, meta.tenant, budgets)
            }
            (None, Some(t)) if !t.is_empty() => {
                let l = self.config.rate_limits.tenants.get(t).copied().unwrap_or_default();
                (
                    Scope::Tenant,
                    t,
                    t.to_string(),
                    (l.daily_budget_micros, l.monthly_budget_micros),
                )
            }
            _ => return Err(invalid("key_id", "give exactly one of key_id and tenant")),
        };
        let mut out =
            json!({"object": "spend", "scope": match scope { Scope::Key => "key", Scope::Tenant => "tenant" }});
        out[match scope {
            Scope::Key => "key_id",
            Scope::Tenant => "tenant",
        }] = id.into();
        for (period, budget) in [(Period::Day, budgets.0), (Period::Month, budgets.1)] {
            let counter = counter_key(scope, id, period, now);
            let spent = match self.config.rate_limits.backend {
                // What finished requests cost, not what those in flight
                // reserved.
                // Through this isolate's view: what it counted and has
                // not written yet counts too.
                RateLimitBackendKind::Kv => {
                    let c = &self.shared.counters;
                    c.refresh(p, &counter).await?;
                    c.peek(&counter)
                        .and_then(|v| v.get(SETTLED).copied())
                        .unwrap_or(0)
                        .max(0) as u64
                }
                RateLimitBackendKind::Strict => strict::spent(p, &shard, &settled_key(&counter), period).await?,
            };
            out[period.name()] = json!({
                "period": period.label(now),
                "spent_usd": spent as f64 / 1e6,
                "budget_usd": budget.map(|b| b as f64 / 1e6),
                "resets_at": now.saturating_add(period.ms_to_next(now)) / 1000,
            });
        }
        Ok(Response::json(200, &out))
    }
}
