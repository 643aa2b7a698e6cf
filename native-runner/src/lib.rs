//! infergate's native runner: serves a decoder-only ONNX model over an
//! OpenAI-compatible API with ONNX Runtime, continuous batching and
//! streaming, and sentence embeddings from an encoder model.
//!
//! # Layout
//! - [`cli`]: the command line (clap) and its translation to [`RunnerOptions`].
//! - [`app`]: assembly: model folder, tokenizer, HTTP state, engine start.
//! - [`model_dir`]: decoder and encoder folders in the Hugging Face layout.
//! - [`engine`]: the actor that owns the ORT session: scheduler, KV cache,
//!   sampling, detokenization (see its own layout).
//! - [`server`]: axum routes, signature checks, SSE and folded responses.
//! - [`metrics`]: Prometheus text exposition.
//! - [`error`]: the one HTTP error type, rendered by the core.
//!
//! The core crate `infergate` supplies the wire types and their validation,
//! the SSE encoder, the stream fold, error rendering and request signing,
//! so the runner speaks exactly the dialect the edge does.

pub mod app;
pub mod cli;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod model_dir;
pub mod server;

pub use app::{App, RunnerOptions};
