//! [`UpstreamError`]: the upstream boundary's one error type.
//!
//! It lives beside the event model because a stream carries it
//! ([`super::StreamEvent::Error`]); how it is shown to a client (status,
//! type, code) is decided with every other error, in `crate::wire::error`.

/// Failures talking to an upstream. Messages are written for API clients:
/// they never echo the upstream's own error text for auth failures, since
/// that text can contain (masked) provider keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("The upstream provider could not be reached.")]
    Connect,
    #[error("The upstream provider did not start responding within {timeout_ms} ms.")]
    FirstByteTimeout { timeout_ms: u64 },
    /// A JSON answer (no events) not whole within `limits.json_timeout_ms`.
    /// Not retried (the attempt settles it): the wait is as long as a
    /// generation may take, and the client has waited it already.
    #[error("The upstream provider did not answer within {timeout_ms} ms.")]
    AnswerTimeout { timeout_ms: u64 },
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

impl UpstreamError {
    /// Whether trying again (here or on the next target) can help. Client
    /// errors cannot: the next provider would reject the request too.
    pub fn retryable(&self) -> bool {
        !matches!(
            self,
            UpstreamError::InvalidRequest { .. } | UpstreamError::Unsupported { .. }
        )
    }
}
