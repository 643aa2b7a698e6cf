//! Chat Completions wire types (`POST /v1/chat/completions`).
//!
//! The types model what the gateway needs to *check* and *estimate*. They do
//! not need to model everything OpenAI accepts: the original JSON object is
//! kept next to the typed view and is what gets forwarded to
//! OpenAI-compatible upstreams, so a field a newer SDK sends survives the hop
//! even though this crate has never heard of it (`extra` catches those).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
#[cfg_attr(any(test, feature = "openapi"), schema(example = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 64})))]
pub struct ChatCompletionRequest {
    /// A model id from `GET /v1/models`.
    #[cfg_attr(any(test, feature = "openapi"), schema(example = "gpt-4o-mini"))]
    pub model: String,
    #[cfg_attr(any(test, feature = "openapi"), schema(min_items = 1))]
    pub messages: Vec<ChatMessage>,
    #[cfg_attr(any(test, feature = "openapi"), schema(minimum = 1))]
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[cfg_attr(any(test, feature = "openapi"), schema(minimum = 1))]
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    #[cfg_attr(any(test, feature = "openapi"), schema(minimum = 0.0, maximum = 2.0))]
    #[serde(default)]
    pub temperature: Option<f64>,
    #[cfg_attr(any(test, feature = "openapi"), schema(minimum = 0.0, maximum = 1.0))]
    #[serde(default)]
    pub top_p: Option<f64>,
    #[cfg_attr(any(test, feature = "openapi"), schema(minimum = 1, maximum = 128))]
    #[serde(default)]
    pub n: Option<u32>,
    /// Stream the answer as server-sent events (`chat.completion.chunk` objects, then `data: [DONE]`).
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub stop: Option<Stop>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[cfg_attr(any(test, feature = "openapi"), schema(minimum = -2.0, maximum = 2.0))]
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    #[cfg_attr(any(test, feature = "openapi"), schema(minimum = -2.0, maximum = 2.0))]
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    #[serde(default)]
    pub logit_bias: Option<Map<String, Value>>,
    #[serde(default)]
    pub logprobs: Option<bool>,
    #[cfg_attr(any(test, feature = "openapi"), schema(minimum = 0, maximum = 20))]
    #[serde(default)]
    pub top_logprobs: Option<u32>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub response_format: Option<ResponseFormat>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// Everything else, forwarded untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
pub struct ChatMessage {
    pub role: Role,
    #[serde(default)]
    pub content: Option<MessageContent>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
    #[serde(default)]
    pub refusal: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `content` is either a plain string or an array of typed parts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// A content part. `type` is kept as a string so new part kinds pass
/// through; validation checks the ones whose shape it knows.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub image_url: Option<Value>,
    #[serde(default)]
    pub refusal: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl MessageContent {
    /// The text a model would read, for token estimation. Non-text parts
    /// (images, audio, files) are counted by a fixed allowance elsewhere.
    pub fn text_len(&self) -> usize {
        match self {
            MessageContent::Text(s) => s.len(),
            MessageContent::Parts(parts) => parts
                .iter()
                .map(|p| p.text.as_deref().or(p.refusal.as_deref()).map_or(0, str::len))
                .sum(),
        }
    }

    /// Concatenated text of the content, for providers that want a string.
    pub fn joined_text(&self) -> String {
        match self {
            MessageContent::Text(s) => s.clone(),
            MessageContent::Parts(parts) => parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join(""),
        }
    }

    pub fn non_text_parts(&self) -> usize {
        match self {
            MessageContent::Text(_) => 0,
            MessageContent::Parts(parts) => parts.iter().filter(|p| p.kind != "text").count(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn as_vec(&self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s.clone()],
            Stop::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub function: Option<FunctionDef>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
pub struct FunctionDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
    #[serde(default)]
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
pub struct ToolCall {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub function: Option<FunctionCall>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
pub struct FunctionCall {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: Option<String>,
}

/// `"none" | "auto" | "required"` or `{"type":"function","function":{"name":..}}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum ToolChoice {
    Mode(String),
    Named(NamedToolChoice),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
pub struct NamedToolChoice {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub function: Option<NamedFunction>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
pub struct NamedFunction {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(any(test, feature = "openapi"), derive(utoipa::ToSchema))]
pub struct ResponseFormat {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub json_schema: Option<Value>,
}

/// The reasoning text of a message or delta: `reasoning_content` (vLLM,
/// DeepSeek and most OpenAI-compatible servers) or `reasoning` (others).
pub fn reasoning_of(v: &Value) -> Option<&str> {
    v["reasoning_content"]
        .as_str()
        .or_else(|| v["reasoning"].as_str())
        .filter(|t| !t.is_empty())
}
