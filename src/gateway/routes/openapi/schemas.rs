//! Response shapes the gateway produces as JSON values rather than through
//! a Rust type (folded streams, admin views, task records), written down
//! once here for the document. Nothing outside the document uses them.
//!
//! Keep them in step with what the handlers build: the schemathesis run
//! (`make schemathesis`) checks every response against these schemas.

#![allow(dead_code)]

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::stream::Usage;
use crate::wire::error::ErrorBody;
use crate::wire::openai::chat::{ChatCompletionRequest, ToolCall};

/// A non-streaming chat completion: the fold of the upstream's stream.
#[derive(Serialize, ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    /// Always `chat.completion`.
    #[schema(example = "chat.completion")]
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    pub model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    pub choices: Vec<ChatChoice>,
    /// Token usage as the upstream reported it; `null` if it reported none.
    #[schema(required = true)]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Serialize, ToSchema)]
pub struct ChatChoice {
    pub index: u64,
    pub message: AssistantMessage,
    #[schema(required = true)]
    pub logprobs: Option<Value>,
    /// `stop`, `length`, `tool_calls`, `content_filter`; `null` if the
    /// upstream gave none.
    #[schema(required = true)]
    pub finish_reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AssistantMessage {
    #[schema(example = "assistant")]
    pub role: String,
    #[schema(required = true)]
    pub content: Option<String>,
    #[schema(required = true)]
    pub refusal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
}

/// One server-sent event, as the stream carries it (`event:` and `data:`
/// lines, then a blank line). OpenAPI 3.1 describes a `text/event-stream`
/// body one event at a time.
#[derive(Serialize, ToSchema)]
pub struct ServerSentEvent {
    /// The event type: Anthropic-shaped streams name every event
    /// (`message_start`, ...), OpenAI-shaped ones none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The payload: one JSON object, or `[DONE]` at the end of an
    /// OpenAI-shaped stream.
    pub data: String,
}

/// One server-sent event of a streamed chat completion (`data: {...}`),
/// followed at the end by `data: [DONE]`. An error after the first byte
/// arrives as `data: {"error": {...}}` (the `ErrorBody` shape), then the
/// stream closes.
#[derive(Serialize, ToSchema)]
pub struct ChatCompletionChunk {
    pub id: String,
    /// Always `chat.completion.chunk`.
    #[schema(example = "chat.completion.chunk")]
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    /// Only on the last chunk, when `stream_options.include_usage` is true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Serialize, ToSchema)]
pub struct ChunkChoice {
    pub index: u64,
    /// The new part of the message: `role`, `content`, `tool_calls` fragments.
    pub delta: Map<String, Value>,
    pub finish_reason: Option<String>,
}

/// A non-streaming legacy completion: the fold of the upstream's stream.
#[derive(Serialize, ToSchema)]
pub struct TextCompletion {
    pub id: String,
    /// Always `text_completion`.
    #[schema(example = "text_completion")]
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<TextChoice>,
    #[schema(required = true)]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Serialize, ToSchema)]
pub struct TextChoice {
    pub index: u64,
    pub text: String,
    #[schema(required = true)]
    pub logprobs: Option<Value>,
    #[schema(required = true)]
    pub finish_reason: Option<String>,
}

/// The upstream's embeddings, passed through.
#[derive(Serialize, ToSchema)]
pub struct EmbeddingList {
    /// Always `list`.
    #[schema(example = "list")]
    pub object: String,
    pub data: Vec<Embedding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Serialize, ToSchema)]
pub struct Embedding {
    #[schema(example = "embedding")]
    pub object: String,
    pub index: u64,
    pub embedding: EmbeddingVector,
}

/// Floats, or base64 of little-endian `f32`s with `encoding_format: base64`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f64>),
    Base64(String),
}

/// `POST /v1/tasks`: a chat completion request, run in the background.
/// `stream` must be absent or false.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Summarise this"}],
    "max_tokens": 64}))]
pub struct TaskRequest {
    #[serde(flatten)]
    pub request: ChatCompletionRequest,
    /// Called once with the finished task (signed, see the README).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Queued,
    Running,
    Completed,
    Failed,
}

/// An async task, as its creator sees it.
#[derive(Serialize, ToSchema)]
pub struct Task {
    #[schema(example = "task_0123456789abcdef0123456789abcdef")]
    pub id: String,
    /// Always `task`.
    #[schema(example = "task")]
    pub object: String,
    pub status: TaskStatus,
    /// Unix seconds.
    pub created_at: u64,
    #[schema(required = true)]
    pub completed_at: Option<u64>,
    /// The `chat.completion` once `completed`.
    #[schema(required = true)]
    pub result: Option<Map<String, Value>>,
    /// The error once `failed`.
    #[schema(required = true)]
    pub error: Option<ErrorBody>,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct Ready {
    #[schema(example = "ready")]
    pub status: String,
    /// Configured models.
    pub models: u64,
}

/// The runner's readiness.
#[derive(Serialize, ToSchema)]
pub struct RunnerReady {
    /// `ready`, `loading`, `stopped` or `shutting_down`.
    #[schema(example = "ready")]
    pub status: String,
    pub model: String,
    /// The execution provider in use (`cpu`, `cuda`) once loaded.
    #[schema(required = true)]
    pub device: Option<String>,
}

/// An API key as the admin API shows it: never the key itself.
#[derive(Serialize, ToSchema)]
pub struct ApiKey {
    #[schema(example = "key_0123456789abcdef")]
    pub id: String,
    /// Always `api_key`.
    #[schema(example = "api_key")]
    pub object: String,
    pub name: String,
    pub tenant: String,
    /// The key's last four characters.
    pub hint: String,
    /// Unix seconds.
    pub created_at: u64,
    pub revoked: bool,
    #[schema(required = true)]
    pub expires_at: Option<u64>,
    #[schema(required = true)]
    pub requests_per_minute: Option<u32>,
    #[schema(required = true)]
    pub tokens_per_minute: Option<u32>,
    #[schema(required = true)]
    pub monthly_token_budget: Option<u64>,
    /// Spend budget in USD per UTC day; `null` for none.
    #[schema(required = true)]
    pub daily_budget_usd: Option<f64>,
    /// Spend budget in USD per calendar month (UTC); `null` for none.
    #[schema(required = true)]
    pub monthly_budget_usd: Option<f64>,
    /// Models the key may use; `null` for all.
    #[schema(required = true)]
    pub models: Option<Vec<String>>,
}

/// `PATCH /admin/keys/{id}`: a number sets a budget, `null` removes it, an
/// absent field leaves it unchanged.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"monthly_budget_usd": 50.0, "daily_budget_usd": null}))]
pub struct UpdateKey {
    /// USD per UTC day.
    pub daily_budget_usd: Option<f64>,
    /// USD per calendar month (UTC).
    pub monthly_budget_usd: Option<f64>,
}

/// Spend of a key or a tenant against its budgets.
#[derive(Serialize, ToSchema)]
pub struct SpendReport {
    #[schema(example = "spend")]
    pub object: String,
    /// `key` or `tenant`.
    pub scope: String,
    /// Set for `scope: key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Set for `scope: tenant`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub daily: SpendPeriod,
    pub monthly: SpendPeriod,
}

/// Spend in one period.
#[derive(Serialize, ToSchema)]
pub struct SpendPeriod {
    /// `2026-11-30` (a UTC day) or `2026-11` (a month).
    pub period: String,
    /// USD spent in the period while a budget of this period was set.
    pub spent_usd: f64,
    /// `null` when no budget is set.
    #[schema(required = true)]
    pub budget_usd: Option<f64>,
    /// When the period ends, Unix seconds.
    pub resets_at: u64,
}

/// A new key (create or rotate): the only time the plaintext key is shown.
#[derive(Serialize, ToSchema)]
pub struct ApiKeyWithSecret {
    #[serde(flatten)]
    pub meta: ApiKey,
    /// The plaintext key; store it now, it cannot be shown again.
    pub key: String,
    /// After a rotation: when the old key stops working (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_key_expires_at: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyList {
    #[schema(example = "list")]
    pub object: String,
    pub data: Vec<ApiKey>,
    /// Whether more keys follow this page.
    pub has_more: bool,
    /// The id of the last key on this page (`after` for the next one).
    pub last_id: Option<String>,
}

/// Hourly usage of one key.
#[derive(Serialize, ToSchema)]
pub struct UsageReport {
    #[schema(example = "list")]
    pub object: String,
    pub key_id: String,
    /// Unix seconds.
    pub from: u64,
    /// Unix seconds.
    pub to: u64,
    pub data: Vec<crate::gateway::stages::usage::UsageRow>,
    /// The sum of `data` (its `hour` is empty).
    pub total: crate::gateway::stages::usage::UsageRow,
}

/// This isolate's counters (not global).
#[derive(Serialize, ToSchema)]
pub struct Stats {
    pub counter_kv_writes: u64,
    pub counter_kv_writes_by_kind: Map<String, Value>,
    pub counter_kv_reads: u64,
    /// Calls to the strict rate-limit store (`rate_limits.backend: strict`).
    pub strict_store_calls: u64,
    pub counter_keys_tracked: u64,
    pub auth_cache_entries: u64,
    /// The isolate's wasm linear memory: the core's high-water mark
    /// (`null` outside wasm).
    #[schema(required = true)]
    pub wasm_memory_bytes: Option<u64>,
    /// Circuit-breaker state per upstream this isolate has called.
    pub circuits: Vec<CircuitState>,
}

#[derive(Serialize, ToSchema)]
pub struct CircuitState {
    pub upstream: String,
    /// `closed`, `open` or `half_open`.
    pub state: String,
}

/// Anthropic Messages API request (`POST /v1/messages`). It is translated
/// to a chat request and validated by the chat rules; unknown fields are
/// ignored.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"model": "gpt-4o-mini", "max_tokens": 64, "messages": [{"role": "user", "content": "Say hello"}]}))]
pub struct AnthropicMessagesRequest {
    /// A model id from `GET /v1/models`.
    #[schema(example = "gpt-4o-mini")]
    pub model: String,
    #[schema(min_items = 1)]
    pub messages: Vec<AnthropicInMessage>,
    #[schema(minimum = 1)]
    pub max_tokens: u32,
    /// A string or text blocks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<AnthropicContent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    /// Anthropic's range is 0 to 1; the gateway accepts up to 2 and clamps
    /// it to 1 for Anthropic upstreams.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub top_p: Option<f64>,
    /// Stream Anthropic's event sequence (`message_start`,
    /// `content_block_delta`, ..., `message_stop`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<AnthropicTool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// `{"type": "enabled", "budget_tokens": N}` asks for the model's
    /// reasoning as `thinking` blocks (from OpenAI-compatible upstreams'
    /// `reasoning_content`); without it no reasoning is returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Map<String, Value>>,
    /// `{"format": {"type": "json_schema", "schema": {...}}}`: structured
    /// outputs (OpenAI-compatible upstreams get it as `response_format`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_config: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AnthropicRole {
    User,
    Assistant,
}

#[derive(Serialize, ToSchema)]
pub struct AnthropicInMessage {
    pub role: AnthropicRole,
    pub content: AnthropicContent,
}

/// A string, or content blocks (`text`, `image`, `tool_use`, `tool_result`).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum AnthropicContent {
    Text(String),
    Blocks(Vec<Map<String, Value>>),
}

#[derive(Serialize, ToSchema)]
pub struct AnthropicTool {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Map<String, Value>>,
}

/// OpenAI Responses API request (`POST /v1/responses`). It is translated to
/// a chat request and validated by the chat rules, so every upstream kind
/// serves it; unknown fields are ignored.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"model": "gpt-4o-mini", "input": "Say hello", "max_output_tokens": 64}))]
pub struct ResponsesCreateRequest {
    /// A model id from `GET /v1/models`.
    #[schema(example = "gpt-4o-mini")]
    pub model: String,
    /// A string, or input items: messages (`role`, `content` as a string
    /// or `input_text` / `input_image` / `input_file` parts),
    /// `function_call` and `function_call_output`.
    pub input: ResponsesInput,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Function tools (`{"type": "function", "name", "parameters", "strict"}`).
    /// Built-in tools (`web_search`, `file_search`, ...) only for a model
    /// whose every upstream serves the Responses API itself; elsewhere they
    /// are a 400 on `tools[i].type`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Map<String, Value>>>,
    /// `auto`, `none`, `required` or `{"type": "function", "name": ...}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// `{"format": {"type": "text" | "json_object" | "json_schema", ...}}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_output_tokens: Option<u32>,
    /// `{"effort": "low" | "medium" | "high"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Map<String, Value>>,
    /// Up to 16 pairs; keys up to 64 characters, values strings up to 512.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `auto` drops the oldest turns when the conversation is longer than
    /// the model's context window; `disabled` (the default) answers that
    /// with a 400 `context_length_exceeded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncation: Option<ResponsesTruncation>,
    /// Keep the Response for 30 days (default `true`), for
    /// `GET /v1/responses/{id}` and `previous_response_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    /// Stream the typed Responses events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Continue a stored Response of the same tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResponsesTruncation {
    Auto,
    Disabled,
}

/// A string, or input items.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ResponsesInput {
    Text(String),
    Items(Vec<Map<String, Value>>),
}

/// A Response object (`object: response`).
#[derive(Serialize, ToSchema)]
pub struct ResponseObject {
    #[schema(example = "resp_0123456789abcdef0123456789abcdef")]
    pub id: String,
    #[schema(example = "response")]
    pub object: String,
    /// Unix seconds.
    pub created_at: u64,
    /// `completed`, `incomplete`, `failed` (or `in_progress` in stream events).
    pub status: String,
    pub model: String,
    /// Items: `reasoning`, `message` (`output_text` parts), `function_call`.
    pub output: Vec<Map<String, Value>>,
    /// `input_tokens`, `output_tokens`, `total_tokens` and their details.
    pub usage: Option<Map<String, Value>>,
    pub error: Option<Map<String, Value>>,
    /// `{"reason": "max_output_tokens" | "content_filter"}` when incomplete.
    pub incomplete_details: Option<Map<String, Value>>,
    pub previous_response_id: Option<String>,
    pub store: bool,
    #[serde(flatten)]
    pub echoed: Map<String, Value>,
}

/// A stored Response's input items.
#[derive(Serialize, ToSchema)]
pub struct ResponseItemList {
    #[schema(example = "list")]
    pub object: String,
    pub data: Vec<Map<String, Value>>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

/// What `DELETE /v1/responses/{id}` answers.
#[derive(Serialize, ToSchema)]
pub struct ResponseDeleted {
    pub id: String,
    #[schema(example = "response")]
    pub object: String,
    pub deleted: bool,
}

/// Anthropic Messages API response (`type: message`).
#[derive(Serialize, ToSchema)]
pub struct AnthropicMessage {
    pub id: String,
    #[schema(example = "message")]
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(example = "assistant")]
    pub role: String,
    /// Content blocks (`text`, `tool_use`).
    pub content: Vec<Map<String, Value>>,
    pub model: Value,
    /// `end_turn`, `max_tokens`, `tool_use`, `stop_sequence`, `refusal`.
    pub stop_reason: Option<String>,
    pub stop_sequence: Option<String>,
    pub usage: AnthropicUsage,
}

#[derive(Serialize, ToSchema)]
pub struct AnthropicUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Anthropic's error shape: `/v1/messages` answers errors this way so
/// Anthropic SDKs raise their own exception classes.
#[derive(Serialize, ToSchema)]
pub struct AnthropicError {
    #[schema(example = "error")]
    #[serde(rename = "type")]
    pub kind: String,
    pub error: AnthropicErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct AnthropicErrorDetail {
    /// `invalid_request_error`, `authentication_error`, `permission_error`,
    /// `not_found_error`, `rate_limit_error`, `overloaded_error`, `api_error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}
