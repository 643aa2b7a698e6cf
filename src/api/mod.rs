//! OpenAI-compatible wire types and their validation.
//!
//! # Layout
//! - `chat`: Chat Completions request types.
//! - `completions`: legacy Completions, Embeddings, model list and usage.
//! - `validate`: raw bytes → [`validate::ValidRequest`] or a field-naming error.
//! - `error`: the single place that renders any boundary error as OpenAI JSON.

pub mod chat;
pub mod completions;
pub mod error;
pub mod validate;

pub use completions::Usage;
pub use error::{render, OpenAiError, RenderedError};
pub use validate::{Endpoint, ModelCatalog, ModelLimits, ValidRequest, ValidationError};
