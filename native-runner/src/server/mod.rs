//! The HTTP side: routes, shared state, signature checks, graceful drain.
//!
//! # Layout
//! - `mod.rs`: [`AppState`], the router and [`serve`].
//! - `openai`: `POST /v1/completions` and `POST /v1/chat/completions`:
//!   request → engine sequences.
//! - `chunks`: engine events → OpenAI chunks → SSE, or folded to one JSON.
//! - `embeddings`: `POST /v1/embeddings` on the encoder model.
//! - `ops`: `/v1/models`, `/health`, `/ready`, `/metrics`, `/openapi.json`.
//!
//! Every `/v1/*` request is checked in this order: availability (503),
//! body size (413), signature (401), validation through the core (400/404),
//! context length with real token counts (400), queue room (429).

mod chunks;
mod embeddings;
mod openai;
mod ops;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Uri};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use futures_util::StreamExt;
use infergate::signing::{verify, SignedRequest, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use infergate::wire::openai::validate::{ModelCatalog, ModelLimits};

use crate::engine::encoder::Encoder;
use crate::engine::{EngineHandle, TextCodec};
use crate::error::RunnerError;
use crate::metrics::Metrics;

/// How `/v1/*` requests are authenticated.
#[derive(Clone)]
pub enum Signing {
    /// HMAC-SHA256 as the edge signs (see [`infergate::signing`]).
    Required { secret: Vec<u8>, window_ms: u64 },
    /// Local development only: anything goes.
    Disabled,
}

impl std::fmt::Debug for Signing {
    // Never print the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signing::Required { window_ms, .. } => {
                write!(f, "Required {{ secret: <redacted>, window_ms: {window_ms} }}")
            }
            Signing::Disabled => f.write_str("Disabled"),
        }
    }
}

/// Everything the handlers share.
pub struct AppState {
    pub engine: EngineHandle,
    pub codec: Arc<TextCodec>,
    pub metrics: Arc<Metrics>,
    pub model_id: String,
    pub context: usize,
    pub signing: Signing,
    pub max_body_bytes: usize,
    /// Unix seconds at start-up, reported as the model's `created`.
    pub created: u64,
    /// The id clients send for embeddings, when an encoder folder is served.
    pub embedding_model_id: Option<String>,
    /// Set by the engine thread once the encoder is loaded (before readiness).
    encoder: OnceLock<Arc<Encoder>>,
    /// Embedding requests in flight or waiting for the encoder, at most
    /// `--max-queue`; more are answered 429 at once.
    pub(crate) embedding_slots: Arc<tokio::sync::Semaphore>,
    draining: AtomicBool,
}

impl AppState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: EngineHandle,
        codec: Arc<TextCodec>,
        metrics: Arc<Metrics>,
        model_id: String,
        context: usize,
        signing: Signing,
        max_body_bytes: usize,
    ) -> AppState {
        let embedding_slots = Arc::new(tokio::sync::Semaphore::new(engine.max_queue()));
        AppState {
            engine,
            codec,
            metrics,
            model_id,
            context,
            signing,
            max_body_bytes,
            created: unix_secs(),
            embedding_model_id: None,
            encoder: OnceLock::new(),
            embedding_slots,
            draining: AtomicBool::new(false),
        }
    }

    /// Serve embeddings under `id` once [`set_encoder`](Self::set_encoder) ran.
    pub fn with_embedding_model(mut self, id: Option<String>) -> AppState {
        self.embedding_model_id = id;
        self
    }

    pub fn set_encoder(&self, encoder: Arc<Encoder>) {
        let _ = self.encoder.set(encoder);
    }

    pub fn encoder(&self) -> Option<Arc<Encoder>> {
        self.encoder.get().cloned()
    }

    /// Start refusing new work (503) while streams in flight finish.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    fn check_available(&self) -> Result<(), RunnerError> {
        let err = if self.is_draining() {
            RunnerError::ShuttingDown
        } else if !self.engine.is_ready() {
            RunnerError::NotReady
        } else {
            return Ok(());
        };
        Metrics::inc(&self.metrics.rejected_unavailable);
        Err(err)
    }

    /// What every `/v1/*` request passes before its route reads it:
    /// availability (503), body size (413), signature (401). Returns the body.
    async fn accept(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<bytes::Bytes, RunnerError> {
        self.check_available()?;
        let body = read_body(body, self.max_body_bytes).await?;
        self.authorize(method, uri, headers, &body)?;
        Ok(body)
    }

    fn authorize(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<(), RunnerError> {
        let Signing::Required { secret, window_ms } = &self.signing else {
            return Ok(());
        };
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let req = SignedRequest {
            timestamp: header(HEADER_TIMESTAMP),
            signature: header(HEADER_SIGNATURE),
            method: method.as_str(),
            path: uri.path(),
            body,
        };
        verify(secret, &req, now_ms, *window_ms).map_err(|e| {
            Metrics::inc(&self.metrics.unauthorized);
            tracing::warn!(path = uri.path(), "refused request: {e}");
            RunnerError::Unauthorized(e)
        })
    }
}

impl ModelCatalog for AppState {
    fn model_limits(&self, id: &str) -> Option<ModelLimits> {
        if id == self.model_id {
            return Some(ModelLimits {
                context_window: self.context as u32,
                max_output_tokens: self.context as u32,
            });
        }
        let encoder = self.encoder.get()?;
        (self.embedding_model_id.as_deref() == Some(id)).then(|| ModelLimits {
            context_window: encoder.max_tokens() as u32,
            max_output_tokens: 1,
        })
    }
}

pub(crate) fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Read the body, refusing more than `limit` bytes without buffering them.
async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, RunnerError> {
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| RunnerError::BodyRead)?;
        if buf.len() + chunk.len() > limit {
            return Err(RunnerError::BodyTooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/completions", post(openai::completions))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/models", get(ops::models))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .with_state(state)
}

/// Serve until `shutdown` resolves, then stop accepting connections and
/// wait for the responses in flight (streams included) to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let drain_state = state.clone();
    // Tokens go out as small writes: without TCP_NODELAY, Nagle's algorithm
    // and delayed ACKs hold them back for tens of milliseconds.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            drain_state.start_draining();
            tracing::info!("shutting down: no new connections, draining requests in flight");
        })
        .await
}
