//! Raw configuration as written by operators: serde types with
//! `deny_unknown_fields`, validated into [`super::Config`].

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub models: Vec<RawModel>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub rate_limits: RawRateLimits,
    #[serde(default)]
    pub cache: RawCache,
    #[serde(default)]
    pub usage: RawUsage,
    #[serde(default)]
    pub tasks: RawTasks,
    #[serde(default)]
    pub responses: RawResponses,
    #[serde(default)]
    pub budgets: RawBudgets,
    #[serde(default)]
    pub runners: Vec<RawRunner>,
    #[serde(default)]
    pub routing: RawRouting,
}

/// A native runner in a regional pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRunner {
    pub name: String,
    /// Base URL including `/v1`.
    pub url: String,
    /// Region label, e.g. `eu-west`; matched against `routing.region`.
    pub region: String,
    /// Two-letter continent code as Cloudflare reports it (`EU`, `NA`, ...).
    #[serde(default)]
    pub continent: Option<String>,
    #[serde(default)]
    pub latitude: Option<f64>,
    #[serde(default)]
    pub longitude: Option<f64>,
    /// Relative share of traffic among equally near runners.
    #[serde(default = "one")]
    pub weight: u32,
    /// Model ids (as clients name them) this runner serves.
    pub models: Vec<String>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRouting {
    /// Estimated prompt tokens + max_tokens above which a request is heavy.
    pub heavy_prompt_tokens: u32,
    /// This edge's region, when the platform cannot tell (Spin).
    pub region: Option<String>,
    /// Name of the secret shared with the runners for request signing.
    pub runner_secret: String,
    /// Attempts per target after the first, before moving on.
    pub retries: u32,
    pub backoff_base_ms: u64,
    /// Time allowed for an upstream to return response headers.
    pub connect_timeout_ms: u64,
    /// Budget for the whole fallback chain before the first byte.
    pub deadline_ms: u64,
    /// Consecutive failures that open a target's circuit.
    pub circuit_failures: u32,
    pub circuit_cooldown_ms: u64,
}

impl Default for RawRouting {
    fn default() -> Self {
        RawRouting {
            heavy_prompt_tokens: 2048,
            region: None,
            runner_secret: "INFERGATE_RUNNER_SECRET".into(),
            retries: 1,
            backoff_base_ms: 100,
            connect_timeout_ms: 10_000,
            deadline_ms: 30_000,
            circuit_failures: 3,
            circuit_cooldown_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    /// Name of the secret holding the admin token. The admin API is off
    /// when that secret is not set.
    pub token_secret: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            token_secret: "INFERGATE_ADMIN_TOKEN".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRateLimits {
    /// How stale the isolate's view of a shared counter may get before a
    /// request re-reads it from KV.
    pub sync_interval_ms: u64,
    /// Minimum spacing of KV writes to one counter key (Workers KV allows
    /// about one write per second per key).
    pub min_write_interval_ms: u64,
    /// Applied to keys whose record sets no limit; absent means unlimited.
    pub default_requests_per_minute: Option<u32>,
    pub default_tokens_per_minute: Option<u32>,
    /// Limits per tenant, on top of each key's own: all the tenant's keys
    /// together stay under them.
    pub tenants: std::collections::BTreeMap<String, RawTenantLimits>,
    /// Where limits and budgets are counted: `kv` (the default: coalesced
    /// counters in KV, cheap, exact within an isolate and approximate
    /// across isolates) or `strict` (a Durable Object per tenant on
    /// Workers, key-value atomics on Spin: exact everywhere, one more
    /// round trip per request).
    pub backend: RateLimitBackendKind,
}

/// `rate_limits.backend`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitBackendKind {
    #[default]
    Kv,
    Strict,
}

/// One tenant's limits: per minute, and its spend budgets in USD.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTenantLimits {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    /// USD per UTC day, all the tenant's keys together.
    pub daily_budget_usd: Option<f64>,
    /// USD per calendar month (UTC).
    pub monthly_budget_usd: Option<f64>,
}

/// Spend budget alerts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBudgets {
    /// Where threshold alerts are POSTed, signed with the task webhook
    /// secret (`tasks.webhook_secret`); none means no alerts.
    pub alert_webhook_url: Option<String>,
    /// Percentages of a budget whose crossing sends an alert, once each
    /// per budget and period.
    pub alert_thresholds_percent: Vec<u32>,
}

impl Default for RawBudgets {
    fn default() -> Self {
        RawBudgets {
            alert_webhook_url: None,
            alert_thresholds_percent: vec![50, 80, 100],
        }
    }
}

impl Default for RawRateLimits {
    fn default() -> Self {
        RawRateLimits {
            sync_interval_ms: 1000,
            min_write_interval_ms: 1000,
            default_requests_per_minute: None,
            default_tokens_per_minute: None,
            tenants: std::collections::BTreeMap::new(),
            backend: RateLimitBackendKind::Kv,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCache {
    pub enabled: bool,
    pub default_ttl_secs: u64,
    pub max_entry_bytes: usize,
    /// Let tenants share entries. Off by default: a tenant must never see
    /// an answer produced for another tenant's request.
    pub shared_across_tenants: bool,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            enabled: true,
            default_ttl_secs: 3600,
            max_entry_bytes: 512 * 1024,
            shared_across_tenants: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUsage {
    pub retention_days: u64,
}

impl Default for RawUsage {
    fn default() -> Self {
        RawUsage { retention_days: 90 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTasks {
    /// How long task records and results are kept.
    pub ttl_secs: u64,
    /// Name of the secret used to sign webhook calls.
    pub webhook_secret: String,
}

/// `/v1/responses` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawResponses {
    /// How long a stored Response (`store: true`) is kept, in seconds.
    pub ttl_secs: u64,
}

impl Default for RawResponses {
    fn default() -> Self {
        // 30 days, as OpenAI keeps them.
        RawResponses { ttl_secs: 30 * 86_400 }
    }
}

impl Default for RawTasks {
    fn default() -> Self {
        RawTasks {
            ttl_secs: 86_400,
            webhook_secret: "INFERGATE_WEBHOOK_SECRET".into(),
        }
    }
}

/// Price per million tokens, in USD.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    #[serde(default)]
    pub input_per_mtok: f64,
    #[serde(default)]
    pub output_per_mtok: f64,
}

impl Price {
    /// Cost in micro-USD (integers keep KV aggregation exact).
    pub fn cost_micros(&self, prompt_tokens: u64, completion_tokens: u64) -> u64 {
        let usd =
            self.input_per_mtok * prompt_tokens as f64 / 1e6 + self.output_per_mtok * completion_tokens as f64 / 1e6;
        (usd * 1e6).round().max(0.0) as u64
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    /// Name of the secret that holds the provider's API key.
    #[serde(default)]
    pub api_key_secret: Option<String>,
    /// The provider serves `POST {base_url}/responses` itself (OpenAI's
    /// Responses API): `/v1/responses` requests go to it unchanged instead
    /// of translated to chat. Only for `kind: openai`; default `false`.
    #[serde(default)]
    pub responses_api: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any OpenAI-compatible API (OpenAI, vLLM, TGI).
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub id: String,
    /// Fallback chain for ordinary requests: provider or runner names, or
    /// `@runners` for every runner serving the model, nearest first.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Fallback chain for heavy requests. Default: `@runners` followed by
    /// `targets` when some runner serves the model, else `targets`.
    #[serde(default)]
    pub heavy_targets: Option<Vec<String>>,
    /// Overrides `routing.heavy_prompt_tokens` for this model.
    #[serde(default)]
    pub heavy_prompt_tokens: Option<u32>,
    /// The model name the upstream expects, when it differs from `id`.
    #[serde(default)]
    pub upstream_model: Option<String>,
    #[serde(default = "default_context")]
    pub context_window: u32,
    #[serde(default = "default_max_output")]
    pub max_output_tokens: u32,
    #[serde(default)]
    pub owned_by: Option<String>,
    #[serde(default)]
    pub price: Option<Price>,
}

fn default_context() -> u32 {
    8192
}
fn default_max_output() -> u32 {
    4096
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    pub max_body_bytes: usize,
    pub first_byte_timeout_ms: u64,
    pub stall_timeout_ms: u64,
    pub json_timeout_ms: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_body_bytes: 1 << 20,
            first_byte_timeout_ms: 60_000,
            stall_timeout_ms: 30_000,
            // The official SDKs' own default request timeout.
            json_timeout_ms: 600_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    /// How long a key record is trusted from the in-isolate cache.
    pub cache_ttl_ms: u64,
    /// How long an unknown key is remembered as unknown.
    pub negative_cache_ttl_ms: u64,
    /// Bound on cached entries per isolate.
    pub cache_capacity: usize,
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth {
            cache_ttl_ms: 10_000,
            negative_cache_ttl_ms: 10_000,
            cache_capacity: 4096,
        }
    }
}
