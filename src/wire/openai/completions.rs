//! Legacy Completions (`POST /v1/completions`) and Embeddings
//! (`POST /v1/embeddings`) wire types. Both share the "prompt/input is a
//! string, a list of strings, a token list or a list of token lists" shape.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::chat::{Stop, StreamOptions};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
#[cfg_attr(any(test, feature = "openapi"), schema(example = json!({"model": "gpt-4o-mini", "prompt": "Once upon a time", "max_tokens": 16})))]
pub struct CompletionRequest {
    /// A model id from `GET /v1/models`.
    #[cfg_attr(any(test, feature = "openapi"), schema(example = "gpt-4o-mini"))]
    pub model: String,
    pub prompt: PromptInput,
    #[cfg_attr(any(test, feature = "openapi"), schema(minimum = 1))]
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[cfg_attr(any(test, feature = "openapi"), schema(minimum = 0.0, maximum = 2.0))]
    #[serde(default)]
    pub temperature: Option<f64>,
    #[cfg_attr(any(test, feature = "openapi"), schema(minimum = 0.0, maximum = 1.0))]
    #[serde(default)]
    pub top_p: Option<f64>,
    #[cfg_attr(any(test, feature = "openapi"), schema(minimum = 1, maximum = 128))]
    #[serde(default)]
    pub n: Option<u32>,
    #[cfg_attr(any(test, feature = "openapi"), schema(maximum = 20))]
    #[serde(default)]
    pub best_of: Option<u32>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub stop: Option<Stop>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub echo: Option<bool>,
    #[cfg_attr(any(test, feature = "openapi"), schema(minimum = 0, maximum = 5))]
    #[serde(default)]
    pub logprobs: Option<u32>,
    #[cfg_attr(any(test, feature = "openapi"), schema(minimum = -2.0, maximum = 2.0))]
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    #[cfg_attr(any(test, feature = "openapi"), schema(minimum = -2.0, maximum = 2.0))]
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A prompt or embedding input in any of OpenAI's four accepted shapes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum PromptInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenBatches(Vec<Vec<u32>>),
}

impl PromptInput {
    /// Number of independent prompts (a batch).
    pub fn len(&self) -> usize {
        match self {
            PromptInput::Text(_) | PromptInput::Tokens(_) => 1,
            PromptInput::Texts(v) => v.len(),
            PromptInput::TokenBatches(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Estimated tokens of the largest single prompt.
    pub fn max_estimated_tokens(&self) -> u32 {
        match self {
            PromptInput::Text(s) => estimate_text_tokens(s),
            PromptInput::Texts(v) => v.iter().map(|s| estimate_text_tokens(s)).max().unwrap_or(0),
            PromptInput::Tokens(t) => t.len() as u32,
            PromptInput::TokenBatches(v) => v.iter().map(|t| t.len() as u32).max().unwrap_or(0),
        }
    }

    /// Sum over the batch, used for token-based rate limits.
    pub fn total_estimated_tokens(&self) -> u32 {
        match self {
            PromptInput::Text(s) => estimate_text_tokens(s),
            PromptInput::Texts(v) => v.iter().map(|s| estimate_text_tokens(s)).sum(),
            PromptInput::Tokens(t) => t.len() as u32,
            PromptInput::TokenBatches(v) => v.iter().map(|t| t.len() as u32).sum(),
        }
    }

    /// The index of the first empty entry, if any (OpenAI rejects those).
    pub fn first_empty(&self) -> Option<Option<usize>> {
        match self {
            PromptInput::Text(s) if s.is_empty() => Some(None),
            PromptInput::Tokens(t) if t.is_empty() => Some(None),
            PromptInput::Texts(v) => v.iter().position(String::is_empty).map(Some),
            PromptInput::TokenBatches(v) => v.iter().position(Vec::is_empty).map(Some),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
#[cfg_attr(any(test, feature = "openapi"), schema(example = json!({"model": "text-embedding-3-small", "input": ["first text", "second text"]})))]
pub struct EmbeddingRequest {
    /// A model id from `GET /v1/models`.
    #[cfg_attr(any(test, feature = "openapi"), schema(example = "text-embedding-3-small"))]
    pub model: String,
    pub input: PromptInput,
    /// `float` (the default) or `base64`.
    #[serde(default)]
    pub encoding_format: Option<String>,
    #[cfg_attr(any(test, feature = "openapi"), schema(minimum = 1))]
    #[serde(default)]
    pub dimensions: Option<u32>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `GET /v1/models` response.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
pub struct ModelList {
    pub object: String,
    pub data: Vec<ModelObject>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
pub struct ModelObject {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
}

/// A rough, deliberately pessimistic token estimate: about four bytes per
/// token for English, never less than one per started word-ish unit. It
/// only has to be good enough for context checks, routing and rate-limit
/// reservations; the reservation is corrected to real usage afterwards.
pub fn estimate_text_tokens(s: &str) -> u32 {
    let by_bytes = s.len().div_ceil(4);
    let by_words = s.split_whitespace().count();
    by_bytes.max(by_words).min(u32::MAX as usize) as u32
}
