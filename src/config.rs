//! Gateway configuration: raw serde types, then validation into the types
//! the gateway uses.
//!
//! The raw types use `deny_unknown_fields` so a typo is an error, not a
//! silently ignored setting. Errors name the config path
//! (`models[2].targets[0]`) because the config arrives as one JSON string in
//! a wrangler var or Spin variable, where a bare "invalid value" is useless.
//! Secrets are referenced by *name* only; their values are supplied by the
//! platform adapter and wrapped in [`Secret`], whose `Debug` is redacted.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::api::error::{kind, OpenAiError};
use crate::api::{ModelCatalog, ModelLimits};

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
}

impl Default for RawRateLimits {
    fn default() -> Self {
        RawRateLimits {
            sync_interval_ms: 1000,
            min_write_interval_ms: 1000,
            default_requests_per_minute: None,
            default_tokens_per_minute: None,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any OpenAI-compatible API (OpenAI, vLLM, TGI, the native runner).
    Openai,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub id: String,
    /// Provider names, in fallback order.
    pub targets: Vec<String>,
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
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_body_bytes: 1 << 20,
            first_byte_timeout_ms: 60_000,
            stall_timeout_ms: 30_000,
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

/// A secret value. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// Base URL without a trailing slash, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub api_key: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub id: String,
    pub upstream_model: String,
    /// Indices into [`Config::providers`], in fallback order.
    pub targets: Vec<usize>,
    pub limits: ModelLimits,
    pub owned_by: String,
    pub price: Price,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub first_byte_timeout_ms: u64,
    pub stall_timeout_ms: u64,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub cache_ttl_ms: u64,
    pub negative_cache_ttl_ms: u64,
    pub cache_capacity: usize,
}

#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    pub sync_interval_ms: u64,
    pub min_write_interval_ms: u64,
    pub default_requests_per_minute: Option<u32>,
    pub default_tokens_per_minute: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub enabled: bool,
    pub default_ttl_secs: u64,
    pub max_entry_bytes: usize,
    pub shared_across_tenants: bool,
}

#[derive(Debug, Clone)]
pub struct TaskSettings {
    pub ttl_secs: u64,
    pub webhook_secret: Option<Secret>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub providers: Vec<Provider>,
    pub models: BTreeMap<String, Model>,
    pub limits: Limits,
    pub auth: AuthSettings,
    /// `None` disables the admin API.
    pub admin_token: Option<Secret>,
    pub rate_limits: RateLimitSettings,
    pub cache: CacheSettings,
    pub usage_retention_days: u64,
    pub tasks: TaskSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("config is not valid JSON or has the wrong shape at `{path}`: {message}")]
    Parse { path: String, message: String },
    #[error("config `{path}`: {message}")]
    Invalid { path: String, message: String },
    #[error("config `{path}` names secret `{secret}`, which is not set")]
    MissingSecret { path: String, secret: String },
}

impl OpenAiError for ConfigError {
    fn status(&self) -> u16 {
        503
    }
    fn error_type(&self) -> &'static str {
        kind::UNAVAILABLE
    }
    fn code(&self) -> Option<&'static str> {
        Some("gateway_misconfigured")
    }
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

impl RawConfig {
    pub fn parse(json: &str) -> Result<RawConfig, ConfigError> {
        let de = &mut serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Parse {
            path: e.path().to_string(),
            message: e.into_inner().to_string(),
        })
    }

    /// Names of every secret this config refers to, so an adapter can fetch
    /// exactly those from its platform.
    pub fn secret_names(&self) -> Vec<String> {
        self.providers.iter().filter_map(|p| p.api_key_secret.clone()).collect()
    }

    /// Validate, resolving secret names through `secret`.
    pub fn validate(self, secret: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut providers = Vec::with_capacity(self.providers.len());
        let mut by_name = BTreeMap::new();
        for (i, p) in self.providers.into_iter().enumerate() {
            let path = format!("providers[{i}]");
            if p.name.trim().is_empty() {
                return Err(invalid(format!("{path}.name"), "must not be empty"));
            }
            if by_name.insert(p.name.clone(), i).is_some() {
                return Err(invalid(
                    format!("{path}.name"),
                    format!("duplicate provider name `{}`", p.name),
                ));
            }
            let base = p.base_url.trim_end_matches('/').to_string();
            if !(base.starts_with("https://") || base.starts_with("http://")) {
                return Err(invalid(
                    format!("{path}.base_url"),
                    "must be an http:// or https:// URL",
                ));
            }
            let api_key = match p.api_key_secret {
                Some(name) => Some(Secret::new(secret(&name).ok_or_else(|| {
                    ConfigError::MissingSecret {
                        path: format!("{path}.api_key_secret"),
                        secret: name.clone(),
                    }
                })?)),
                None => None,
            };
            providers.push(Provider {
                name: p.name,
                kind: p.kind,
                base_url: base,
                api_key,
            });
        }
        let mut models = BTreeMap::new();
        for (i, m) in self.models.into_iter().enumerate() {
            let path = format!("models[{i}]");
            if m.id.trim().is_empty() {
                return Err(invalid(format!("{path}.id"), "must not be empty"));
            }
            if m.targets.is_empty() {
                return Err(invalid(format!("{path}.targets"), "must name at least one provider"));
            }
            let mut targets = Vec::new();
            for (j, t) in m.targets.iter().enumerate() {
                let idx = by_name
                    .get(t)
                    .ok_or_else(|| invalid(format!("{path}.targets[{j}]"), format!("no provider named `{t}`")))?;
                targets.push(*idx);
            }
            if m.context_window == 0 {
                return Err(invalid(format!("{path}.context_window"), "must be at least 1"));
            }
            if m.max_output_tokens == 0 || m.max_output_tokens > m.context_window {
                return Err(invalid(
                    format!("{path}.max_output_tokens"),
                    "must be between 1 and context_window",
                ));
            }
            let model = Model {
                upstream_model: m.upstream_model.unwrap_or_else(|| m.id.clone()),
                targets,
                limits: ModelLimits {
                    context_window: m.context_window,
                    max_output_tokens: m.max_output_tokens,
                },
                owned_by: m.owned_by.unwrap_or_else(|| "infergate".into()),
                price: m.price.unwrap_or_default(),
                id: m.id.clone(),
            };
            if models.insert(m.id.clone(), model).is_some() {
                return Err(invalid(format!("{path}.id"), format!("duplicate model id `{}`", m.id)));
            }
        }
        if self.limits.max_body_bytes < 1024 {
            return Err(invalid("limits.max_body_bytes", "must be at least 1024"));
        }
        if self.auth.cache_capacity == 0 {
            return Err(invalid("auth.cache_capacity", "must be at least 1"));
        }
        if self.cache.max_entry_bytes > 25 << 20 {
            return Err(invalid(
                "cache.max_entry_bytes",
                "must be at most 26214400 (the KV value limit)",
            ));
        }
        for (i, m) in models.values().enumerate() {
            if !(m.price.input_per_mtok >= 0.0 && m.price.output_per_mtok >= 0.0) {
                return Err(invalid(
                    format!("models[{i}].price"),
                    "prices must be non-negative numbers",
                ));
            }
        }
        let optional_secret = |name: &str| secret(name).filter(|s| !s.is_empty()).map(Secret::new);
        Ok(Config {
            providers,
            models,
            limits: Limits {
                max_body_bytes: self.limits.max_body_bytes,
                first_byte_timeout_ms: self.limits.first_byte_timeout_ms.max(1),
                stall_timeout_ms: self.limits.stall_timeout_ms.max(1),
            },
            auth: AuthSettings {
                cache_ttl_ms: self.auth.cache_ttl_ms,
                negative_cache_ttl_ms: self.auth.negative_cache_ttl_ms,
                cache_capacity: self.auth.cache_capacity,
            },
            admin_token: optional_secret(&self.admin.token_secret),
            rate_limits: RateLimitSettings {
                sync_interval_ms: self.rate_limits.sync_interval_ms,
                min_write_interval_ms: self.rate_limits.min_write_interval_ms,
                default_requests_per_minute: self.rate_limits.default_requests_per_minute,
                default_tokens_per_minute: self.rate_limits.default_tokens_per_minute,
            },
            cache: CacheSettings {
                enabled: self.cache.enabled,
                default_ttl_secs: self.cache.default_ttl_secs.max(1),
                max_entry_bytes: self.cache.max_entry_bytes,
                shared_across_tenants: self.cache.shared_across_tenants,
            },
            usage_retention_days: self.usage.retention_days.max(1),
            tasks: TaskSettings {
                ttl_secs: self.tasks.ttl_secs.max(60),
                webhook_secret: optional_secret(&self.tasks.webhook_secret),
            },
        })
    }
}

impl Config {
    /// Parse and validate in one go.
    pub fn from_json(json: &str, secret: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        RawConfig::parse(json)?.validate(secret)
    }
}

impl ModelCatalog for Config {
    fn model_limits(&self, id: &str) -> Option<ModelLimits> {
        self.models.get(id).map(|m| m.limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(name: &str) -> Option<String> {
        (name == "K").then(|| "sk-secret".to_string())
    }

    const OK: &str = r#"{"providers":[{"name":"p","kind":"openai","base_url":"http://x/v1/","api_key_secret":"K"}],
        "models":[{"id":"m","targets":["p"]}]}"#;

    #[test]
    fn valid_config() {
        let c = Config::from_json(OK, &secrets).unwrap();
        assert_eq!(c.providers[0].base_url, "http://x/v1");
        assert_eq!(c.models["m"].targets, vec![0]);
        assert!(!format!("{c:?}").contains("sk-secret"));
    }

    #[test]
    fn errors_name_the_path() {
        let e = Config::from_json(r#"{"models":[{"id":"m","targets":["nope"]}]}"#, &secrets).unwrap_err();
        assert!(e.to_string().contains("models[0].targets[0]"), "{e}");
        let e = Config::from_json(r#"{"models":[{"id":"m","targets":[],"typo":1}]}"#, &secrets).unwrap_err();
        assert!(e.to_string().contains("models[0]"), "{e}");
        assert!(e.to_string().contains("typo"), "{e}");
        let e = Config::from_json(&OK.replace("\"K\"", "\"MISSING\""), &secrets).unwrap_err();
        assert!(e.to_string().contains("providers[0].api_key_secret"), "{e}");
        let e = Config::from_json(r#"{"limits":{"max_body_bytes":"x"}}"#, &secrets).unwrap_err();
        assert!(e.to_string().contains("limits.max_body_bytes"), "{e}");
    }
}
