//! OpenAI's wire format: Chat Completions, Completions and Embeddings.
//!
//! # Layout
//! - `chat`: Chat Completions request types.
//! - `completions`: legacy Completions, Embeddings and the model list.
//! - `embeddings`: embedding vectors in the encoding the client asked for.
//! - `validate`: the client direction in: raw bytes → [`ValidRequest`] or
//!   an error naming the field.
//! - `encode`: the client direction out: stream events → SSE chunks.
//! - `upstream`: both directions with an OpenAI-compatible upstream: the
//!   forwarded body out, its SSE chunks in.
//! - `responses`: the Responses API over chat, both directions: requests
//!   to chat, a folded completion to a Response, a stream to its typed
//!   events.

pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod encode;
pub mod responses;
pub mod upstream;
pub mod validate;

pub use crate::stream::Usage;
pub use validate::{Endpoint, ModelCatalog, ModelLimits, ValidRequest, ValidationError};
