//! The runner's one HTTP boundary error, rendered through the core's
//! [`infergate::wire::error::render`] so clients see the same OpenAI error
//! shape as from the edge.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use infergate::signing::SignatureError;
use infergate::wire::error::{kind, render, OpenAiError};
use infergate::wire::openai::ValidationError;

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error("Request refused: {0}.")]
    Unauthorized(SignatureError),
    #[error("The runner's queue is full; retry later.")]
    QueueFull,
    #[error("The model is still loading; retry later.")]
    NotReady,
    #[error("The runner is shutting down; retry on another runner.")]
    ShuttingDown,
    #[error("This model's maximum context length is {limit} tokens. However, you requested {requested} tokens ({prompt} in the prompt, {completion} for the completion). Please reduce the length of the prompt or the completion.")]
    ContextLength {
        param: String,
        limit: usize,
        requested: usize,
        prompt: usize,
        completion: usize,
    },
    #[error("Invalid value for '{param}': {reason}.")]
    Invalid { param: String, reason: String },
    #[error("'{param}' is not supported by this runner.")]
    Unsupported { param: &'static str },
    #[error("Could not read the request body.")]
    BodyRead,
    #[error("Request body is over the limit of {limit} bytes.")]
    BodyTooLarge { limit: usize },
    #[error("Unknown path {0}.")]
    NoRoute(String),
    #[error("Method {method} is not allowed on {path}.")]
    MethodNotAllowed { method: String, path: String },
    /// Details are logged where the failure happens; clients get no
    /// internals.
    #[error("The runner failed to generate a response.")]
    Engine,
}

impl RunnerError {
    pub fn invalid(param: impl Into<String>, reason: impl Into<String>) -> RunnerError {
        RunnerError::Invalid {
            param: param.into(),
            reason: reason.into(),
        }
    }
}

impl OpenAiError for RunnerError {
    fn status(&self) -> u16 {
        match self {
            RunnerError::Validation(v) => v.status(),
            RunnerError::Unauthorized(_) => 401,
            RunnerError::QueueFull => 429,
            RunnerError::NotReady | RunnerError::ShuttingDown => 503,
            RunnerError::ContextLength { .. }
            | RunnerError::Invalid { .. }
            | RunnerError::Unsupported { .. }
            | RunnerError::BodyRead => 400,
            RunnerError::BodyTooLarge { .. } => 413,
            RunnerError::NoRoute(_) => 404,
            RunnerError::MethodNotAllowed { .. } => 405,
            RunnerError::Engine => 500,
        }
    }
    fn error_type(&self) -> &'static str {
        match self {
            RunnerError::Validation(v) => v.error_type(),
            RunnerError::Unauthorized(_) => kind::AUTHENTICATION,
            RunnerError::QueueFull => kind::RATE_LIMIT,
            RunnerError::NotReady | RunnerError::ShuttingDown => kind::UNAVAILABLE,
            RunnerError::NoRoute(_) => kind::NOT_FOUND,
            RunnerError::Engine => kind::SERVER,
            _ => kind::INVALID_REQUEST,
        }
    }
    fn param(&self) -> Option<String> {
        match self {
            RunnerError::Validation(v) => v.param(),
            RunnerError::ContextLength { param, .. } => Some(param.clone()),
            RunnerError::Invalid { param, .. } => Some(param.clone()),
            RunnerError::Unsupported { param } => Some((*param).to_string()),
            _ => None,
        }
    }
    fn code(&self) -> Option<&'static str> {
        match self {
            RunnerError::Validation(v) => v.code(),
            RunnerError::Unauthorized(SignatureError::Missing(_)) => Some("missing_signature"),
            RunnerError::Unauthorized(SignatureError::Expired) => Some("signature_expired"),
            RunnerError::Unauthorized(_) => Some("invalid_signature"),
            RunnerError::QueueFull => Some("queue_full"),
            RunnerError::NotReady => Some("model_loading"),
            RunnerError::ShuttingDown => Some("shutting_down"),
            RunnerError::ContextLength { .. } => Some("context_length_exceeded"),
            RunnerError::Invalid { .. } => Some("invalid_value"),
            RunnerError::Unsupported { .. } => Some("unsupported_parameter"),
            RunnerError::BodyRead => Some("invalid_body"),
            RunnerError::BodyTooLarge { .. } => Some("request_too_large"),
            RunnerError::NoRoute(_) => Some("unknown_url"),
            RunnerError::MethodNotAllowed { .. } => Some("method_not_allowed"),
            RunnerError::Engine => Some("engine_error"),
        }
    }
    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            RunnerError::QueueFull | RunnerError::ShuttingDown => Some(1),
            RunnerError::NotReady => Some(2),
            _ => None,
        }
    }
}

impl IntoResponse for RunnerError {
    fn into_response(self) -> Response {
        let r = render(&self);
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, r.to_json()).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(secs) = r.retry_after_secs {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
