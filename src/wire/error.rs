//! The one place where errors become OpenAI-shaped HTTP responses.
//!
//! Every boundary has its own error enum (`ValidationError`, `AuthError`,
//! `UpstreamError`, `GatewayError`, `ConfigError`); each implements
//! [`OpenAiError`], and [`render`] is the only function that turns one into
//! `{"error":{"message","type","param","code"}}`. Keeping the rendering in one
//! place is what guarantees clients see the same shape whatever failed, and
//! that no variant can smuggle a secret into a body by formatting it ad hoc.

use crate::stream::UpstreamError;
use serde::Serialize;

/// What every boundary error must say about itself to be rendered.
pub trait OpenAiError: std::fmt::Display {
    /// HTTP status code.
    fn status(&self) -> u16;
    /// OpenAI's `type` field, also used as the metric / log label.
    fn error_type(&self) -> &'static str;
    /// The request field at fault, in dotted/indexed form (`messages[0].role`).
    fn param(&self) -> Option<String> {
        None
    }
    /// A stable machine-readable code (`invalid_api_key`, `model_not_found`).
    fn code(&self) -> Option<&'static str> {
        None
    }
    /// Seconds a client should wait before retrying (429 / 503).
    fn retry_after_secs(&self) -> Option<u64> {
        None
    }
    /// Headers that describe the error beyond `retry-after` (a 429's
    /// `x-ratelimit-*` for the limit that was hit).
    fn headers(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// The wire shape of an error body.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// What went wrong, for people.
    pub message: String,
    /// The error class, e.g. `invalid_request_error`, `authentication_error`, `rate_limit_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, e.g. `messages[0].role`.
    #[cfg_attr(any(test, feature = "openapi"), schema(required = true))]
    pub param: Option<String>,
    /// A stable machine-readable code, e.g. `invalid_api_key`, `model_not_found`.
    #[cfg_attr(any(test, feature = "openapi"), schema(required = true))]
    pub code: Option<String>,
}

/// A rendered error: status, JSON body and an optional `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedError {
    pub status: u16,
    pub body: ErrorBody,
    pub retry_after_secs: Option<u64>,
    pub headers: Vec<(String, String)>,
}

impl RenderedError {
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising a struct of strings cannot fail.
        serde_json::to_vec(&self.body).unwrap_or_default()
    }
}

/// Turn any boundary error into its OpenAI rendering.
pub fn render<E: OpenAiError + ?Sized>(err: &E) -> RenderedError {
    RenderedError {
        status: err.status(),
        body: ErrorBody {
            error: ErrorDetail {
                message: err.to_string(),
                kind: err.error_type().to_string(),
                param: err.param(),
                code: err.code().map(str::to_string),
            },
        },
        retry_after_secs: err.retry_after_secs(),
        headers: err.headers(),
    }
}

/// The same error in Anthropic's shape, for the `/v1/messages` route:
/// `{"type":"error","error":{"type","message"}}`, so Anthropic SDKs raise
/// their own exception classes.
pub fn render_anthropic<E: OpenAiError + ?Sized>(err: &E) -> (u16, Vec<u8>) {
    (
        err.status(),
        serde_json::to_vec(&anthropic_body(err)).unwrap_or_default(),
    )
}

/// The same error as an Anthropic in-stream `error` event, which the SDKs
/// raise like an HTTP error of that type.
pub fn anthropic_error_event<E: OpenAiError + ?Sized>(err: &E) -> Vec<u8> {
    crate::sse::encode(Some("error"), &anthropic_body(err).to_string())
}

fn anthropic_body<E: OpenAiError + ?Sized>(err: &E) -> serde_json::Value {
    let kind = match err.error_type() {
        kind::INVALID_REQUEST => "invalid_request_error",
        kind::AUTHENTICATION => "authentication_error",
        kind::PERMISSION => "permission_error",
        kind::NOT_FOUND => "not_found_error",
        kind::RATE_LIMIT | "insufficient_quota" => "rate_limit_error",
        kind::UNAVAILABLE => "overloaded_error",
        _ => "api_error",
    };
    serde_json::json!({"type": "error", "error": {"type": kind, "message": err.to_string()}})
}

impl OpenAiError for UpstreamError {
    fn status(&self) -> u16 {
        match self {
            UpstreamError::FirstByteTimeout { .. }
            | UpstreamError::AnswerTimeout { .. }
            | UpstreamError::Stalled { .. } => 504,
            UpstreamError::RateLimited { .. } => 429,
            UpstreamError::InvalidRequest { status, .. } => *status,
            UpstreamError::Unsupported { .. } => 400,
            _ => 502,
        }
    }
    fn error_type(&self) -> &'static str {
        match self {
            UpstreamError::FirstByteTimeout { .. }
            | UpstreamError::AnswerTimeout { .. }
            | UpstreamError::Stalled { .. } => kind::TIMEOUT,
            UpstreamError::RateLimited { .. } => kind::RATE_LIMIT,
            UpstreamError::InvalidRequest { .. } | UpstreamError::Unsupported { .. } => kind::INVALID_REQUEST,
            _ => kind::UPSTREAM,
        }
    }
    fn param(&self) -> Option<String> {
        match self {
            UpstreamError::InvalidRequest { param, .. } => param.clone(),
            _ => None,
        }
    }
    fn code(&self) -> Option<&'static str> {
        Some(match self {
            UpstreamError::Connect => "upstream_unreachable",
            UpstreamError::FirstByteTimeout { .. } | UpstreamError::AnswerTimeout { .. } => "upstream_timeout",
            UpstreamError::Stalled { .. } => "upstream_stalled",
            UpstreamError::Interrupted => "upstream_interrupted",
            UpstreamError::RateLimited { .. } => "upstream_rate_limited",
            UpstreamError::Unauthorized => "upstream_auth_failed",
            UpstreamError::InvalidRequest { .. } => "upstream_rejected_request",
            UpstreamError::Status { .. } => "upstream_error",
            UpstreamError::StreamError { .. } => "upstream_stream_error",
            UpstreamError::Malformed => "upstream_malformed_response",
            UpstreamError::Unfinished => "upstream_incomplete",
            UpstreamError::TooLarge { .. } => "upstream_response_too_large",
            UpstreamError::Unsupported { .. } => "unsupported_by_provider",
        })
    }
    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            UpstreamError::RateLimited { retry_after_secs } => *retry_after_secs,
            _ => None,
        }
    }
}

/// Error type strings used across boundaries, matching OpenAI's values.
pub mod kind {
    pub const INVALID_REQUEST: &str = "invalid_request_error";
    pub const AUTHENTICATION: &str = "authentication_error";
    pub const PERMISSION: &str = "permission_error";
    pub const NOT_FOUND: &str = "not_found_error";
    pub const RATE_LIMIT: &str = "rate_limit_error";
    pub const SERVER: &str = "server_error";
    pub const UPSTREAM: &str = "upstream_error";
    pub const UNAVAILABLE: &str = "service_unavailable";
    pub const TIMEOUT: &str = "timeout_error";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("bad thing in {0}")]
    struct Demo(String);
    impl OpenAiError for Demo {
        fn status(&self) -> u16 {
            400
        }
        fn error_type(&self) -> &'static str {
            kind::INVALID_REQUEST
        }
        fn param(&self) -> Option<String> {
            Some(self.0.clone())
        }
    }

    #[test]
    fn renders_openai_shape() {
        let r = render(&Demo("messages".into()));
        let v: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "messages");
        assert_eq!(v["error"]["message"], "bad thing in messages");
        assert!(v["error"]["code"].is_null());
        assert_eq!(r.status, 400);
    }
}
