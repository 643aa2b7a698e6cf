//! Upstream providers: one file per kind, a trait and a closed enum.
//!
//! # Layout
//! - `openai`: any OpenAI-compatible API; requests are forwarded as the
//!   client sent them (plus forced streaming and usage), chunks pass through.
//! - `anthropic`: the Messages API, translated both ways.
//! - `runner`: the native runners: OpenAI wire format, HMAC-signed.
//!
//! Provider methods are pure: they build an [`HttpRequest`], parse an error
//! body, and turn SSE events into [`StreamEvent`]s. The gateway owns all
//! I/O, timeouts and retries, so every provider gets them identically.
//! Dispatch is a `match` on [`ProviderImpl`], not a trait object: the set
//! of providers is closed and known at compile time.

pub mod anthropic;
pub mod openai;
pub mod runner;

use crate::api::error::{kind, OpenAiError};
use crate::api::ValidRequest;
use crate::config::{Provider, ProviderKind};
use crate::platform::HttpRequest;
use crate::sse::SseEvent;
use crate::stream::StreamEvent;

/// Failures talking to an upstream. Messages are written for API clients:
/// they never echo the upstream's own error text for auth failures, since
/// that text can contain (masked) provider keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("The upstream provider could not be reached.")]
    Connect,
    #[error("The upstream provider did not start responding within {timeout_ms} ms.")]
    FirstByteTimeout { timeout_ms: u64 },
    #[error("The upstream provider stopped sending data for {timeout_ms} ms.")]
    Stalled { timeout_ms: u64 },
    #[error("The connection to the upstream provider was interrupted.")]
    Interrupted,
    #[error("The upstream provider is rate limiting requests; retry later.")]
    RateLimited { retry_after_secs: Option<u64> },
    #[error("The upstream provider rejected the gateway's credentials.")]
    Unauthorized,
    #[error("{message}")]
    InvalidRequest {
        status: u16,
        message: String,
        param: Option<String>,
    },
    #[error("The upstream provider returned an error (HTTP {status}).")]
    Status { status: u16 },
    #[error("The upstream provider reported an error: {message}")]
    StreamError { message: String },
    #[error("The upstream provider sent a response the gateway could not parse.")]
    Malformed,
    #[error("The upstream provider ended its response without finishing it.")]
    Unfinished,
    #[error("The upstream provider's response exceeded {limit} bytes.")]
    TooLarge { limit: usize },
    #[error("The model's provider does not support {what}.")]
    Unsupported { what: &'static str },
}

impl OpenAiError for ProviderError {
    fn status(&self) -> u16 {
        match self {
            ProviderError::FirstByteTimeout { .. } | ProviderError::Stalled { .. } => 504,
            ProviderError::RateLimited { .. } => 429,
            ProviderError::InvalidRequest { status, .. } => *status,
            ProviderError::Unsupported { .. } => 400,
            _ => 502,
        }
    }
    fn error_type(&self) -> &'static str {
        match self {
            ProviderError::FirstByteTimeout { .. } | ProviderError::Stalled { .. } => kind::TIMEOUT,
            ProviderError::RateLimited { .. } => kind::RATE_LIMIT,
            ProviderError::InvalidRequest { .. } | ProviderError::Unsupported { .. } => kind::INVALID_REQUEST,
            _ => kind::UPSTREAM,
        }
    }
    fn param(&self) -> Option<String> {
        match self {
            ProviderError::InvalidRequest { param, .. } => param.clone(),
            _ => None,
        }
    }
    fn code(&self) -> Option<&'static str> {
        Some(match self {
            ProviderError::Connect => "upstream_unreachable",
            ProviderError::FirstByteTimeout { .. } => "upstream_timeout",
            ProviderError::Stalled { .. } => "upstream_stalled",
            ProviderError::Interrupted => "upstream_interrupted",
            ProviderError::RateLimited { .. } => "upstream_rate_limited",
            ProviderError::Unauthorized => "upstream_auth_failed",
            ProviderError::InvalidRequest { .. } => "upstream_rejected_request",
            ProviderError::Status { .. } => "upstream_error",
            ProviderError::StreamError { .. } => "upstream_stream_error",
            ProviderError::Malformed => "upstream_malformed_response",
            ProviderError::Unfinished => "upstream_incomplete",
            ProviderError::TooLarge { .. } => "upstream_response_too_large",
            ProviderError::Unsupported { .. } => "unsupported_by_provider",
        })
    }
    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ProviderError::RateLimited { retry_after_secs } => *retry_after_secs,
            _ => None,
        }
    }
}

impl ProviderError {
    /// Whether trying again (here or on the next target) can help. Client
    /// errors cannot: the next provider would reject the request too.
    pub fn retryable(&self) -> bool {
        !matches!(
            self,
            ProviderError::InvalidRequest { .. } | ProviderError::Unsupported { .. }
        )
    }
}

/// Per-stream parsing state a provider may need between events.
#[derive(Debug, Default)]
pub struct ParseState {
    pub finish_reason: Option<String>,
    pub done: bool,
    /// Unix seconds, for chunks the gateway synthesises.
    pub created: u64,
    pub id: String,
    pub model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Content-block index → tool-call index (Anthropic).
    pub block_tools: std::collections::BTreeMap<u64, u64>,
    /// Tool blocks (by content index) whose arguments have been sent: one
    /// that ends with none sent gets `{}` (Anthropic).
    pub tool_args_sent: std::collections::BTreeSet<u64>,
    /// Tool blocks whose whole input came with their start (Anthropic).
    pub tool_input_given: std::collections::BTreeSet<u64>,
    pub tools: u64,
}

/// What every provider kind implements. All methods are pure: the clock
/// reading a signature needs is passed in.
pub trait ProviderApi {
    /// The upstream request for a validated client request.
    fn build_request(
        &self,
        req: &ValidRequest,
        upstream_model: &str,
        now_ms: u64,
    ) -> Result<HttpRequest, ProviderError>;
    /// Map a non-2xx upstream response to an error.
    fn parse_error(&self, status: u16, retry_after: Option<&str>, body: &[u8]) -> ProviderError;
    /// Turn one upstream SSE event into zero or more stream events.
    fn parse_event(&self, state: &mut ParseState, ev: &SseEvent) -> Vec<StreamEvent>;
}

/// The closed set of provider implementations.
#[derive(Debug, Clone)]
pub enum ProviderImpl {
    OpenAi(openai::OpenAi),
    Anthropic(anthropic::Anthropic),
    Runner(runner::Runner),
}

impl ProviderImpl {
    pub fn for_config(p: &Provider) -> ProviderImpl {
        if p.runner.is_some() {
            return ProviderImpl::Runner(runner::Runner::new(p));
        }
        match p.kind {
            ProviderKind::Openai => ProviderImpl::OpenAi(openai::OpenAi::new(p)),
            ProviderKind::Anthropic => ProviderImpl::Anthropic(anthropic::Anthropic::new(p)),
        }
    }
}

impl ProviderApi for ProviderImpl {
    fn build_request(
        &self,
        req: &ValidRequest,
        upstream_model: &str,
        now_ms: u64,
    ) -> Result<HttpRequest, ProviderError> {
        match self {
            ProviderImpl::OpenAi(p) => p.build_request(req, upstream_model, now_ms),
            ProviderImpl::Anthropic(p) => p.build_request(req, upstream_model, now_ms),
            ProviderImpl::Runner(p) => p.build_request(req, upstream_model, now_ms),
        }
    }
    fn parse_error(&self, status: u16, retry_after: Option<&str>, body: &[u8]) -> ProviderError {
        match self {
            ProviderImpl::OpenAi(p) => p.parse_error(status, retry_after, body),
            ProviderImpl::Anthropic(p) => p.parse_error(status, retry_after, body),
            ProviderImpl::Runner(p) => p.parse_error(status, retry_after, body),
        }
    }
    fn parse_event(&self, state: &mut ParseState, ev: &SseEvent) -> Vec<StreamEvent> {
        match self {
            ProviderImpl::OpenAi(p) => p.parse_event(state, ev),
            ProviderImpl::Anthropic(p) => p.parse_event(state, ev),
            ProviderImpl::Runner(p) => p.parse_event(state, ev),
        }
    }
}

/// `Retry-After` as seconds; HTTP dates are not worth parsing here, a
/// missing value just means "no hint".
pub fn parse_retry_after(v: Option<&str>) -> Option<u64> {
    v.and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| s.ceil() as u64)
}
