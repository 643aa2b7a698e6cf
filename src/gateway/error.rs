//! The gateway boundary's error: everything a request can fail with.

use crate::config::ConfigError;
use crate::platform::KvError;
use crate::stream::FoldError;
use crate::stream::UpstreamError;
use crate::wire::error::{kind, OpenAiError};
use crate::wire::openai::ValidationError;

use super::stages::auth::AuthError;
use super::stages::ratelimit::RateLimitError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    RateLimited(#[from] RateLimitError),
    #[error("The admin API is not enabled on this gateway (set the admin token secret).")]
    AdminDisabled,
    #[error("Invalid admin token.")]
    AdminUnauthorized,
    #[error("No {what} with id `{id}` exists.")]
    UnknownResource { what: &'static str, id: String },
    #[error("Invalid URL ({method} {path}).")]
    NotFound { method: String, path: String },
    #[error("Method {method} is not allowed on {path}; use {allowed}.")]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: &'static str,
    },
    #[error("{}", storage_message(.0))]
    Storage(#[from] KvError),
    #[error("The upstream stream ended before the response was complete.")]
    Incomplete,
    #[error("No upstream is available to serve this request; retry shortly.")]
    NoUpstream,
    #[error("The request body ended before it was complete.")]
    BodyInterrupted,
}

/// A store that failed may come back; one the platform does not have is
/// the deployment's fault, and says which.
fn storage_message(e: &KvError) -> String {
    match e {
        KvError::Unsupported(what) => {
            format!("The gateway is misconfigured: {what} is missing. An operator must fix the deployment.")
        }
        KvError::Unavailable(_) => "The gateway's key-value store is unavailable; retry shortly.".into(),
    }
}

impl From<FoldError> for GatewayError {
    fn from(e: FoldError) -> Self {
        match e {
            FoldError::Incomplete => GatewayError::Incomplete,
            FoldError::TooLarge { limit } => GatewayError::Upstream(UpstreamError::TooLarge { limit }),
            FoldError::Upstream(p) => GatewayError::Upstream(p),
        }
    }
}

impl OpenAiError for GatewayError {
    fn status(&self) -> u16 {
        match self {
            GatewayError::Validation(e) => e.status(),
            GatewayError::Auth(e) => e.status(),
            GatewayError::Upstream(e) => e.status(),
            GatewayError::Config(e) => e.status(),
            GatewayError::RateLimited(e) => e.status(),
            GatewayError::AdminDisabled | GatewayError::UnknownResource { .. } => 404,
            GatewayError::AdminUnauthorized => 401,
            GatewayError::NotFound { .. } => 404,
            GatewayError::MethodNotAllowed { .. } => 405,
            GatewayError::Storage(_) => 503,
            GatewayError::Incomplete => 502,
            GatewayError::NoUpstream => 503,
            GatewayError::BodyInterrupted => 400,
        }
    }
    fn error_type(&self) -> &'static str {
        match self {
            GatewayError::Validation(e) => e.error_type(),
            GatewayError::Auth(e) => e.error_type(),
            GatewayError::Upstream(e) => e.error_type(),
            GatewayError::Config(e) => e.error_type(),
            GatewayError::RateLimited(e) => e.error_type(),
            GatewayError::AdminUnauthorized => kind::AUTHENTICATION,
            GatewayError::AdminDisabled | GatewayError::UnknownResource { .. } => kind::NOT_FOUND,
            GatewayError::NotFound { .. } | GatewayError::MethodNotAllowed { .. } => kind::INVALID_REQUEST,
            GatewayError::Storage(_) => kind::UNAVAILABLE,
            GatewayError::Incomplete => kind::UPSTREAM,
            GatewayError::NoUpstream => kind::UNAVAILABLE,
            GatewayError::BodyInterrupted => kind::INVALID_REQUEST,
        }
    }
    fn param(&self) -> Option<String> {
        match self {
            GatewayError::Validation(e) => e.param(),
            GatewayError::Auth(e) => e.param(),
            GatewayError::Upstream(e) => e.param(),
            GatewayError::RateLimited(e) => e.param(),
            _ => None,
        }
    }
    fn code(&self) -> Option<&'static str> {
        match self {
            GatewayError::Validation(e) => e.code(),
            GatewayError::Auth(e) => e.code(),
            GatewayError::Upstream(e) => e.code(),
            GatewayError::Config(e) => e.code(),
            GatewayError::RateLimited(e) => e.code(),
            GatewayError::AdminDisabled => Some("admin_disabled"),
            GatewayError::AdminUnauthorized => Some("invalid_admin_token"),
            GatewayError::UnknownResource { .. } => Some("not_found"),
            GatewayError::NotFound { .. } => Some("unknown_url"),
            GatewayError::MethodNotAllowed { .. } => Some("method_not_allowed"),
            GatewayError::Storage(KvError::Unsupported(_)) => Some("gateway_misconfigured"),
            GatewayError::Storage(_) => Some("storage_unavailable"),
            GatewayError::Incomplete => Some("upstream_incomplete"),
            GatewayError::NoUpstream => Some("no_upstream_available"),
            GatewayError::BodyInterrupted => Some("body_interrupted"),
        }
    }
    fn headers(&self) -> Vec<(String, String)> {
        match self {
            GatewayError::RateLimited(e) => e.headers(),
            _ => Vec::new(),
        }
    }
    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            GatewayError::Upstream(e) => e.retry_after_secs(),
            GatewayError::RateLimited(e) => e.retry_after_secs(),
            GatewayError::Storage(KvError::Unavailable(_)) | GatewayError::NoUpstream => Some(1),
            _ => None,
        }
    }
}
