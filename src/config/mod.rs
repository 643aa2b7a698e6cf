//! Gateway configuration: raw serde types, then validation into the types
//! the gateway uses.
//!
//! The raw types use `deny_unknown_fields` so a typo is an error, not a
//! silently ignored setting. Errors name the config path
//! (`models[2].targets[0]`) because the config arrives as one JSON string in
//! a wrangler var or Spin variable, where a bare "invalid value" is useless.
//! Secrets are referenced by *name* only; their values are supplied by the
//! platform adapter and wrapped in [`Secret`], whose `Debug` is redacted.
//!
//! # Layout
//! - `mod.rs` (this file): the validated types ([`Config`], [`Upstream`],
//!   models, limits) and the validation itself.
//! - `raw`: the serde types of the JSON as an operator writes it.

use std::collections::BTreeMap;

use crate::wire::error::{kind, OpenAiError};
use crate::wire::openai::{ModelCatalog, ModelLimits};

mod raw;
pub use raw::*;

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

/// Where an upstream sits, for choosing the nearest runner.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Location {
    pub region: String,
    pub continent: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

/// An upstream: a provider (`runner == None`) or a native runner.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub kind: ProviderKind,
    /// Base URL without a trailing slash, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub credential: Credential,
    /// Set for a regional runner, `None` for a provider.
    pub runner: Option<RunnerInfo>,
    /// It serves the Responses API itself (`/responses`), so a Responses
    /// client's request goes to it unchanged.
    pub responses_api: bool,
}

/// How the gateway proves itself to an upstream.
#[derive(Debug, Clone)]
pub enum Credential {
    /// Nothing (a local or otherwise open upstream).
    None,
    /// A provider API key: `Authorization: Bearer` (OpenAI-compatible) or
    /// `x-api-key` (Anthropic).
    ApiKey(Secret),
    /// The runners' shared HMAC secret: each request is signed
    /// (`crate::signing`), the secret itself never leaves the edge.
    SigningSecret(Secret),
}

#[derive(Debug, Clone)]
pub struct RunnerInfo {
    pub location: Location,
    pub weight: u32,
    pub models: Vec<String>,
}

/// One link of a model's fallback chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetRef {
    /// Index into [`Config::providers`].
    Upstream(usize),
    /// Every runner serving the model, nearest healthy first.
    Pool,
}

#[derive(Debug, Clone)]
pub struct RoutingSettings {
    pub heavy_prompt_tokens: u32,
    pub region: Option<String>,
    pub retries: u32,
    pub backoff_base_ms: u64,
    pub connect_timeout_ms: u64,
    pub deadline_ms: u64,
    pub circuit_failures: u32,
    pub circuit_cooldown_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub id: String,
    pub upstream_model: String,
    /// Fallback chain for ordinary requests.
    pub targets: Vec<TargetRef>,
    /// Fallback chain for heavy requests.
    pub heavy_targets: Vec<TargetRef>,
    pub heavy_prompt_tokens: u32,
    pub limits: ModelLimits,
    pub owned_by: String,
    pub price: Price,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub first_byte_timeout_ms: u64,
    /// The longest silence between events of a streamed answer.
    pub stall_timeout_ms: u64,
    /// How long a JSON answer relayed whole (a client that did not ask to
    /// stream, an upstream of its format) may take, headers to last byte;
    /// it has no events, so the first-byte and stall timeouts cannot apply.
    pub json_timeout_ms: u64,
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
    /// Per-tenant limits, by tenant.
    pub tenants: BTreeMap<String, TenantLimits>,
    pub backend: raw::RateLimitBackendKind,
}

/// One tenant's limits, shared by all its keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantLimits {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    /// Spend budgets in micro-USD.
    pub daily_budget_micros: Option<u64>,
    pub monthly_budget_micros: Option<u64>,
}

/// Spend budget alerts: a signed `POST` to `url` when spend crosses one of
/// `thresholds_percent` of a budget.
#[derive(Debug, Clone)]
pub struct BudgetAlerts {
    pub url: String,
    pub secret: Secret,
    pub thresholds_percent: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub enabled: bool,
    pub default_ttl_secs: u64,
    pub max_entry_bytes: usize,
    pub shared_across_tenants: bool,
}

#[derive(Debug, Clone)]
pub struct ResponsesSettings {
    /// How long a stored Response is kept, in seconds (at least 60).
    pub ttl_secs: u64,
}

#[derive(Debug, Clone)]
pub struct TaskSettings {
    pub ttl_secs: u64,
    pub webhook_secret: Option<Secret>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub providers: Vec<Upstream>,
    pub models: BTreeMap<String, Model>,
    pub limits: Limits,
    pub auth: AuthSettings,
    /// `None` disables the admin API.
    pub admin_token: Option<Secret>,
    pub rate_limits: RateLimitSettings,
    pub cache: CacheSettings,
    pub usage_retention_days: u64,
    pub tasks: TaskSettings,
    pub responses: ResponsesSettings,
    /// `None`: no budget alerts.
    pub budget_alerts: Option<std::sync::Arc<BudgetAlerts>>,
    pub routing: RoutingSettings,
}

impl Config {
    /// Whether routing looks at the client's location (only runner pools
    /// are chosen by distance), so adapters can skip reading it otherwise.
    pub fn routes_by_location(&self) -> bool {
        self.providers.iter().any(|p| p.runner.is_some())
    }
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

/// The name of the admin token's secret for a config that may not load:
/// `admin.token_secret` if the JSON gets that far, else the default. With
/// it an adapter can still tell the operator what is wrong while the
/// config is broken, without telling anyone else.
pub fn admin_secret_name(config_json: Option<&str>) -> String {
    config_json
        .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        .and_then(|v| v["admin"]["token_secret"].as_str().map(str::to_string))
        .unwrap_or_else(|| RawAdmin::default().token_secret)
}

/// `[A-Za-z_][A-Za-z0-9_]{0,47}`: what a Workers secret or an environment
/// variable is called, and short enough not to be a key.
fn is_secret_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 48
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
    /// Every secret field must hold a secret's *name*. A value pasted in
    /// by mistake (a provider key) would otherwise be echoed by the
    /// "secret is not set" error into logs; the error for a field that
    /// does not look like a name quotes nothing of it.
    fn check_secret_names(&self) -> Result<(), ConfigError> {
        let mut fields: Vec<(String, &str)> = self
            .providers
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                p.api_key_secret
                    .as_deref()
                    .map(|n| (format!("providers[{i}].api_key_secret"), n))
            })
            .collect();
        fields.push(("admin.token_secret".into(), &self.admin.token_secret));
        fields.push(("tasks.webhook_secret".into(), &self.tasks.webhook_secret));
        fields.push(("routing.runner_secret".into(), &self.routing.runner_secret));
        for (path, name) in fields {
            if !is_secret_name(name) {
                return Err(invalid(
                    path,
                    "must be the name of a secret (a letter or `_`, then up to 47 letters, digits or `_`), \
                     not the secret itself; set the value as a secret of that name",
                ));
            }
        }
        Ok(())
    }

    pub fn secret_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.providers.iter().filter_map(|p| p.api_key_secret.clone()).collect();
        names.push(self.admin.token_secret.clone());
        names.push(self.tasks.webhook_secret.clone());
        if !self.runners.is_empty() {
            names.push(self.routing.runner_secret.clone());
        }
        names
    }

    /// Validate, resolving secret names through `secret`.
    pub fn validate(self, secret: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        self.check_secret_names()?;
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
            let credential = match p.api_key_secret {
                Some(name) => Credential::ApiKey(Secret::new(secret(&name).ok_or_else(|| {
                    ConfigError::MissingSecret {
                        path: format!("{path}.api_key_secret"),
                        secret: name.clone(),
                    }
                })?)),
                None => Credential::None,
            };
            if p.responses_api && p.kind != ProviderKind::Openai {
                return Err(invalid(
                    format!("{path}.responses_api"),
                    "only an OpenAI-compatible provider (kind: openai) serves the Responses API",
                ));
            }
            providers.push(Upstream {
                name: p.name,
                kind: p.kind,
                base_url: base,
                credential,
                runner: None,
                responses_api: p.responses_api,
            });
        }
        let runner_secret = if self.runners.is_empty() {
            None
        } else {
            let name = &self.routing.runner_secret;
            Some(Secret::new(secret(name).filter(|s| !s.is_empty()).ok_or_else(
                || ConfigError::MissingSecret {
                    path: "routing.runner_secret".into(),
                    secret: name.clone(),
                },
            )?))
        };
        let model_ids: Vec<&str> = self.models.iter().map(|m| m.id.as_str()).collect();
        for (i, r) in self.runners.into_iter().enumerate() {
            let path = format!("runners[{i}]");
            if r.name.trim().is_empty() || r.name.starts_with('@') {
                return Err(invalid(
                    format!("{path}.name"),
                    "must be non-empty and not start with '@'",
                ));
            }
            if by_name.insert(r.name.clone(), providers.len()).is_some() {
                return Err(invalid(
                    format!("{path}.name"),
                    format!("duplicate upstream name `{}`", r.name),
                ));
            }
            let base = r.url.trim_end_matches('/').to_string();
            if !(base.starts_with("https://") || base.starts_with("http://")) {
                return Err(invalid(format!("{path}.url"), "must be an http:// or https:// URL"));
            }
            for (j, m) in r.models.iter().enumerate() {
                if !model_ids.contains(&m.as_str()) {
                    return Err(invalid(
                        format!("{path}.models[{j}]"),
                        format!("no model `{m}` is configured"),
                    ));
                }
            }
            if r.weight == 0 {
                return Err(invalid(format!("{path}.weight"), "must be at least 1"));
            }
            providers.push(Upstream {
                name: r.name,
                kind: ProviderKind::Openai,
                base_url: base,
                credential: runner_secret
                    .clone()
                    .map_or(Credential::None, Credential::SigningSecret),
                responses_api: false,
                runner: Some(RunnerInfo {
                    location: Location {
                        region: r.region,
                        continent: r.continent.map(|c| c.to_ascii_uppercase()),
                        latitude: r.latitude,
                        longitude: r.longitude,
                    },
                    weight: r.weight,
                    models: r.models,
                }),
            });
        }
        let mut models = BTreeMap::new();
        for (i, m) in self.models.into_iter().enumerate() {
            let path = format!("models[{i}]");
            if m.id.trim().is_empty() {
                return Err(invalid(format!("{path}.id"), "must not be empty"));
            }
            let served_by_runner = providers
                .iter()
                .any(|p| p.runner.as_ref().is_some_and(|r| r.models.contains(&m.id)));
            let resolve = |field: &str, names: &[String]| -> Result<Vec<TargetRef>, ConfigError> {
                names
                    .iter()
                    .enumerate()
                    .map(|(j, t)| {
                        if t == "@runners" {
                            return Ok(TargetRef::Pool);
                        }
                        by_name.get(t).map(|i| TargetRef::Upstream(*i)).ok_or_else(|| {
                            invalid(
                                format!("{path}.{field}[{j}]"),
                                format!("no provider or runner named `{t}`"),
                            )
                        })
                    })
                    .collect()
            };
            let mut targets = resolve("targets", &m.targets)?;
            if targets.is_empty() && served_by_runner {
                // A model only runners serve needs no explicit chain.
                targets.push(TargetRef::Pool);
            }
            if targets.is_empty() {
                return Err(invalid(
                    format!("{path}.targets"),
                    "must name at least one provider or runner (or a runner must list the model)",
                ));
            }
            let heavy_targets = match &m.heavy_targets {
                Some(h) if h.is_empty() => return Err(invalid(format!("{path}.heavy_targets"), "must not be empty")),
                Some(h) => resolve("heavy_targets", h)?,
                None if served_by_runner && !targets.contains(&TargetRef::Pool) => std::iter::once(TargetRef::Pool)
                    .chain(targets.iter().copied())
                    .collect(),
                None => targets.clone(),
            };
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
                heavy_targets,
                heavy_prompt_tokens: m.heavy_prompt_tokens.unwrap_or(self.routing.heavy_prompt_tokens),
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
        let mut tenants = BTreeMap::new();
        for (t, l) in self.rate_limits.tenants {
            let usd = |v: Option<f64>, field: &str| match v {
                Some(u) if !(u.is_finite() && u >= 0.0) => Err(invalid(
                    format!("rate_limits.tenants.{t}.{field}"),
                    "must be a non-negative number of US dollars",
                )),
                v => Ok(crate::gateway::stages::budget::usd_to_micros(v)),
            };
            let limits = TenantLimits {
                requests_per_minute: l.requests_per_minute,
                tokens_per_minute: l.tokens_per_minute,
                daily_budget_micros: usd(l.daily_budget_usd, "daily_budget_usd")?,
                monthly_budget_micros: usd(l.monthly_budget_usd, "monthly_budget_usd")?,
            };
            tenants.insert(t, limits);
        }
        let budget_alerts = match self.budgets.alert_webhook_url {
            None => None,
            Some(url) => {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(invalid(
                        "budgets.alert_webhook_url",
                        "must be an http:// or https:// URL",
                    ));
                }
                let secret = optional_secret(&self.tasks.webhook_secret).ok_or_else(|| ConfigError::MissingSecret {
                    path: "tasks.webhook_secret (budget alerts are signed with it)".into(),
                    secret: self.tasks.webhook_secret.clone(),
                })?;
                if let Some(bad) = self
                    .budgets
                    .alert_thresholds_percent
                    .iter()
                    .find(|p| **p == 0 || **p > 1000)
                {
                    return Err(invalid(
                        "budgets.alert_thresholds_percent",
                        format!("{bad} is not a percentage from 1 to 1000"),
                    ));
                }
                Some(std::sync::Arc::new(BudgetAlerts {
                    url,
                    secret,
                    thresholds_percent: self.budgets.alert_thresholds_percent,
                }))
            }
        };
        Ok(Config {
            providers,
            models,
            limits: Limits {
                max_body_bytes: self.limits.max_body_bytes,
                first_byte_timeout_ms: self.limits.first_byte_timeout_ms.max(1),
                stall_timeout_ms: self.limits.stall_timeout_ms.max(1),
                json_timeout_ms: self.limits.json_timeout_ms.max(1),
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
                tenants,
                backend: self.rate_limits.backend,
            },
            cache: CacheSettings {
                enabled: self.cache.enabled,
                default_ttl_secs: self.cache.default_ttl_secs.max(1),
                max_entry_bytes: self.cache.max_entry_bytes,
                shared_across_tenants: self.cache.shared_across_tenants,
            },
            usage_retention_days: self.usage.retention_days.max(1),
            routing: RoutingSettings {
                heavy_prompt_tokens: self.routing.heavy_prompt_tokens,
                region: self.routing.region,
                retries: self.routing.retries.min(10),
                backoff_base_ms: self.routing.backoff_base_ms,
                connect_timeout_ms: self.routing.connect_timeout_ms.max(1),
                deadline_ms: self.routing.deadline_ms.max(1),
                circuit_failures: self.routing.circuit_failures.max(1),
                circuit_cooldown_ms: self.routing.circuit_cooldown_ms,
            },
            tasks: TaskSettings {
                ttl_secs: self.tasks.ttl_secs.max(60),
                webhook_secret: optional_secret(&self.tasks.webhook_secret),
            },
            responses: ResponsesSettings {
                ttl_secs: self.responses.ttl_secs.max(60),
            },
            budget_alerts,
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

    fn native_responses(&self, id: &str) -> bool {
        self.models.get(id).is_some_and(|m| {
            let mut targets = m.targets.iter().chain(&m.heavy_targets);
            targets.all(|t| self.serves_responses(*t))
        })
    }
}

impl Config {
    /// Whether a chain link serves the Responses API itself (runner pools
    /// never do).
    pub fn serves_responses(&self, t: TargetRef) -> bool {
        match t {
            TargetRef::Upstream(i) => self
                .providers
                .get(i)
                .is_some_and(|p| p.responses_api && p.kind == ProviderKind::Openai),
            TargetRef::Pool => false,
        }
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
        assert_eq!(c.models["m"].targets, vec![TargetRef::Upstream(0)]);
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

    /// A key pasted where its secret's name belongs is refused without
    /// being quoted, in every secret field.
    #[test]
    fn a_pasted_secret_value_is_never_echoed() {
        let key = "sk-proj-Abc123def456ghi789jkl012mno345pqr678stu901";
        for json in [
            OK.replace("\"K\"", &format!("\"{key}\"")),
            OK.replace(
                "\"models\"",
                &format!("\"admin\":{{\"token_secret\":\"{key}\"}},\"models\""),
            ),
            OK.replace(
                "\"models\"",
                &format!("\"tasks\":{{\"webhook_secret\":\"{key}\"}},\"models\""),
            ),
            OK.replace(
                "\"models\"",
                "\"admin\":{\"token_secret\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123\"},\"models\"",
            ),
        ] {
            let e = Config::from_json(&json, &secrets).unwrap_err();
            let shown = e.to_string();
            assert!(shown.contains("must be the name of a secret"), "{shown}");
            assert!(
                !shown.contains("Abc123") && !shown.contains("0123456789abcdef"),
                "{shown}"
            );
        }
        for name in ["K", "OPENAI_API_KEY", "_x", "INFERGATE_ANTHROPIC_API_KEY_PRODUCTION_EU"] {
            assert!(is_secret_name(name), "{name}");
        }
    }
}
