//! Parsing and validation: raw bytes in, a [`ValidRequest`] or a
//! [`ValidationError`] naming the field out.
//!
//! Order matters and is cheap-first: the size cap runs before any parsing so
//! a huge body costs nothing; JSON syntax is checked before types so the
//! error can say which it was; types are checked through
//! `serde_path_to_error` so a wrong type names its path (`messages[2].role`);
//! then range and consistency rules run on the typed view; the context-size
//! estimate runs last because it needs everything else to be sane.

use serde_json::{Map, Value};

use super::chat::{ChatCompletionRequest, MessageContent, Role, ToolChoice};
use super::completions::{CompletionRequest, EmbeddingRequest};
use crate::wire::error::{kind, OpenAiError};

/// Which OpenAI operation a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completion,
    Embedding,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completion => "/completions",
            Endpoint::Embedding => "/embeddings",
        }
    }
}

/// What validation needs to know about a configured model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelLimits {
    pub context_window: u32,
    pub max_output_tokens: u32,
}

/// Where validation looks models up; the validated config implements it.
pub trait ModelCatalog {
    fn model_limits(&self, id: &str) -> Option<ModelLimits>;
    /// Whether every upstream of model `id` serves the Responses API
    /// itself, so a Responses request may use what only it has (built-in
    /// tools).
    fn native_responses(&self, _id: &str) -> bool {
        false
    }
}

/// In unit tests: a catalog in which every model has these limits.
#[cfg(test)]
impl ModelCatalog for ModelLimits {
    fn model_limits(&self, _: &str) -> Option<ModelLimits> {
        Some(*self)
    }
}

/// The typed view of a request that passed validation.
#[derive(Debug, Clone)]
pub enum Parsed {
    Chat(Box<ChatCompletionRequest>),
    Completion(Box<CompletionRequest>),
    Embedding(Box<EmbeddingRequest>),
}

/// A request that passed every check. Later stages only ever see this type.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    pub endpoint: Endpoint,
    /// The client's JSON object exactly as sent, forwarded to
    /// OpenAI-compatible upstreams so unknown fields survive.
    pub body: Map<String, Value>,
    pub parsed: Parsed,
    pub model: String,
    pub stream: bool,
    /// Whether the *client* asked for a usage chunk.
    pub include_usage: bool,
    /// Estimated prompt tokens (over the whole batch for `n`/prompt arrays).
    pub prompt_tokens: u32,
    /// The completion budget the request may consume: max tokens × choices.
    pub max_output_tokens: u32,
    /// Greedy or seeded sampling: eligible for the deterministic cache.
    pub deterministic: bool,
}

impl ValidRequest {
    /// Tokens to reserve against a tokens/min limit before the call.
    pub fn reserved_tokens(&self) -> u64 {
        u64::from(self.prompt_tokens) + u64::from(self.max_output_tokens)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationError {
    #[error("Request body is {size} bytes, over the limit of {limit} bytes.")]
    BodyTooLarge { size: usize, limit: usize },
    #[error("We could not parse the JSON body of your request ({detail}). The body must be a JSON object.")]
    InvalidJson { detail: String },
    #[error("Missing required parameter: '{param}'.")]
    Missing { param: String },
    #[error("Invalid type for '{param}': {detail}.")]
    InvalidType { param: String, detail: String },
    #[error("Invalid value for '{param}': {reason}.")]
    Invalid { param: String, reason: String },
    #[error("The model `{model}` does not exist or you do not have access to it.")]
    ModelNotFound { model: String },
    #[error("This model's maximum context length is {limit} tokens. However, you requested about {requested} tokens ({prompt} in the prompt, {completion} for the completion). Please reduce the length of the prompt or the completion.")]
    ContextLength {
        param: &'static str,
        limit: u32,
        requested: u64,
        prompt: u32,
        completion: u32,
    },
}

impl OpenAiError for ValidationError {
    fn status(&self) -> u16 {
        match self {
            ValidationError::BodyTooLarge { .. } => 413,
            ValidationError::ModelNotFound { .. } => 404,
            _ => 400,
        }
    }
    fn error_type(&self) -> &'static str {
        kind::INVALID_REQUEST
    }
    fn param(&self) -> Option<String> {
        match self {
            ValidationError::BodyTooLarge { .. } | ValidationError::InvalidJson { .. } => None,
            ValidationError::Missing { param }
            | ValidationError::InvalidType { param, .. }
            | ValidationError::Invalid { param, .. } => Some(param.clone()),
            ValidationError::ModelNotFound { .. } => Some("model".into()),
            ValidationError::ContextLength { param, .. } => Some((*param).into()),
        }
    }
    fn code(&self) -> Option<&'static str> {
        match self {
            ValidationError::BodyTooLarge { .. } => Some("request_too_large"),
            ValidationError::InvalidJson { .. } => Some("invalid_json"),
            ValidationError::Missing { .. } => Some("missing_required_parameter"),
            ValidationError::InvalidType { .. } => Some("invalid_type"),
            ValidationError::Invalid { .. } => Some("invalid_value"),
            ValidationError::ModelNotFound { .. } => Some("model_not_found"),
            ValidationError::ContextLength { .. } => Some("context_length_exceeded"),
        }
    }
}

fn invalid(param: impl Into<String>, reason: impl Into<String>) -> ValidationError {
    ValidationError::Invalid {
        param: param.into(),
        reason: reason.into(),
    }
}

/// Tokens charged for a non-text part (image, audio, file) when estimating.
const NON_TEXT_PART_TOKENS: u32 = 85;
/// Per-message framing overhead OpenAI's chat format adds.
const PER_MESSAGE_TOKENS: u32 = 4;

/// Parse a JSON object body into `T`, with the same size cap and
/// field-naming errors as the API routes (used by the admin API).
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], max_body_bytes: usize) -> Result<T, ValidationError> {
    typed(&parse_object(body, max_body_bytes)?)
}

/// [`parse_json`], and the object it was read from.
pub fn parse_json_object<T: serde::de::DeserializeOwned>(
    body: &[u8],
    max_body_bytes: usize,
) -> Result<(T, Map<String, Value>), ValidationError> {
    let v = parse_object(body, max_body_bytes)?;
    let t = typed(&v)?;
    Ok((t, into_map(v)))
}

/// Check the body size, then parse it as a JSON object.
/// The object inside a value `parse_object` returned.
fn into_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Returns a `Value` that is always an object: the typed view is read from
/// it by reference and the map is then moved out, so a request body is
/// parsed once and never copied.
fn parse_object(body: &[u8], max_body_bytes: usize) -> Result<Value, ValidationError> {
    if body.len() > max_body_bytes {
        return Err(ValidationError::BodyTooLarge {
            size: body.len(),
            limit: max_body_bytes,
        });
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(other) => Err(ValidationError::InvalidJson {
            detail: format!("expected an object, got {}", json_kind(&other)),
        }),
        Err(e) => Err(ValidationError::InvalidJson { detail: e.to_string() }),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Deserialize the typed view, turning serde's message into one that names
/// the offending field by its full path.
fn typed<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, ValidationError> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let join = |field: &str| {
            if path == "." || path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            }
        };
        if let Some(rest) = inner.strip_prefix("missing field `") {
            let field = rest.split('`').next().unwrap_or(rest);
            return ValidationError::Missing { param: join(field) };
        }
        let detail = if inner.starts_with("data did not match any variant of untagged enum") {
            untagged_hint(&inner)
        } else {
            inner
        };
        ValidationError::InvalidType {
            param: if path == "." { "body".into() } else { path },
            detail,
        }
    })
}

/// Untagged enums give serde no way to say what was expected; say it here.
fn untagged_hint(msg: &str) -> String {
    let ty = msg.rsplit(' ').next().unwrap_or("");
    match ty {
        "MessageContent" => "expected a string or an array of content parts".into(),
        "Stop" => "expected a string or an array of strings".into(),
        "PromptInput" => {
            "expected a string, an array of strings, an array of token ids or an array of token-id arrays".into()
        }
        "ToolChoice" => {
            "expected \"none\", \"auto\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":...}}".into()
        }
        _ => "value has the wrong shape".into(),
    }
}

fn check_range(param: &str, v: Option<f64>, lo: f64, hi: f64) -> Result<(), ValidationError> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) || x.is_nan() => Err(invalid(
            param,
            format!("{x} is out of range; expected a number between {lo} and {hi}"),
        )),
        _ => Ok(()),
    }
}

fn check_model(model: &str, catalog: &dyn ModelCatalog) -> Result<ModelLimits, ValidationError> {
    if model.trim().is_empty() {
        return Err(invalid("model", "must be a non-empty model id"));
    }
    catalog
        .model_limits(model)
        .ok_or_else(|| ValidationError::ModelNotFound {
            model: model.to_string(),
        })
}

fn check_stop(stop: &Option<super::chat::Stop>) -> Result<(), ValidationError> {
    if let Some(stop) = stop {
        let v = stop.as_vec();
        if v.len() > 4 {
            return Err(invalid("stop", "at most 4 stop sequences are allowed"));
        }
        if let Some(i) = v.iter().position(String::is_empty) {
            let param = match stop {
                super::chat::Stop::One(_) => "stop".to_string(),
                super::chat::Stop::Many(_) => format!("stop[{i}]"),
            };
            return Err(invalid(param, "stop sequences must not be empty"));
        }
    }
    Ok(())
}

fn check_stream_options(stream: bool, has_options: bool) -> Result<(), ValidationError> {
    if has_options && !stream {
        return Err(invalid(
            "stream_options",
            "'stream_options' is only allowed when 'stream' is true",
        ));
    }
    Ok(())
}

fn check_n(n: Option<u32>) -> Result<u32, ValidationError> {
    match n {
        None => Ok(1),
        Some(n) if (1..=128).contains(&n) => Ok(n),
        Some(n) => Err(invalid("n", format!("{n} is out of range; expected 1 to 128"))),
    }
}

fn check_max_tokens(param: &str, v: Option<u32>, limits: ModelLimits) -> Result<Option<u32>, ValidationError> {
    match v {
        Some(0) => Err(invalid(param, "must be at least 1")),
        Some(m) if m > limits.max_output_tokens => Err(invalid(
            param,
            format!(
                "{m} is more than this model's maximum of {} output tokens",
                limits.max_output_tokens
            ),
        )),
        other => Ok(other),
    }
}

fn check_context(
    param: &'static str,
    prompt: u32,
    completion: u32,
    limits: ModelLimits,
) -> Result<(), ValidationError> {
    let requested = u64::from(prompt) + u64::from(completion);
    if requested > u64::from(limits.context_window) {
        return Err(ValidationError::ContextLength {
            param,
            limit: limits.context_window,
            requested,
            prompt,
            completion,
        });
    }
    Ok(())
}

fn is_valid_function_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Validate `POST /v1/chat/completions`.
pub fn validate_chat(
    body: &[u8],
    max_body_bytes: usize,
    catalog: &dyn ModelCatalog,
) -> Result<ValidRequest, ValidationError> {
    let value = parse_object(body, max_body_bytes)?;
    let req: ChatCompletionRequest = typed(&value)?;
    let map = into_map(value);
    let limits = check_model(&req.model, catalog)?;

    if req.messages.is_empty() {
        return Err(invalid("messages", "must contain at least one message"));
    }
    let mut prompt_tokens: u32 = 3;
    for (i, m) in req.messages.iter().enumerate() {
        let needs_content = matches!(m.role, Role::System | Role::Developer | Role::User | Role::Tool);
        let has_tool_calls = m.tool_calls.as_ref().is_some_and(|t| !t.is_empty());
        match &m.content {
            None if needs_content => {
                return Err(ValidationError::Missing {
                    param: format!("messages[{i}].content"),
                })
            }
            None if m.role == Role::Assistant && !has_tool_calls && m.refusal.is_none() => {
                return Err(invalid(
                    format!("messages[{i}].content"),
                    "an assistant message needs 'content' or 'tool_calls'",
                ))
            }
            Some(MessageContent::Parts(parts)) => {
                if parts.is_empty() && m.role != Role::Assistant {
                    return Err(invalid(format!("messages[{i}].content"), "must not be an empty array"));
                }
                for (j, p) in parts.iter().enumerate() {
                    if p.kind == "text" && p.text.is_none() {
                        return Err(ValidationError::Missing {
                            param: format!("messages[{i}].content[{j}].text"),
                        });
                    }
                    if p.kind == "image_url" && p.image_url.is_none() {
                        return Err(ValidationError::Missing {
                            param: format!("messages[{i}].content[{j}].image_url"),
                        });
                    }
                }
            }
            _ => {}
        }
        if m.role == Role::Tool && m.tool_call_id.as_deref().is_none_or(str::is_empty) {
            return Err(ValidationError::Missing {
                param: format!("messages[{i}].tool_call_id"),
            });
        }
        if let Some(calls) = &m.tool_calls {
            for (j, c) in calls.iter().enumerate() {
                if c.function
                    .as_ref()
                    .and_then(|f| f.name.as_deref())
                    .is_none_or(str::is_empty)
                {
                    return Err(ValidationError::Missing {
                        param: format!("messages[{i}].tool_calls[{j}].function.name"),
                    });
                }
            }
        }
        let text = m.content.as_ref().map_or(0, |c| estimate_len_tokens(c.text_len()));
        let parts = m.content.as_ref().map_or(0, |c| c.non_text_parts() as u32);
        let calls = m.tool_calls.as_ref().map_or(0, |c| {
            estimate_len_tokens(serde_json::to_string(c).map_or(0, |s| s.len()))
        });
        prompt_tokens = prompt_tokens
            .saturating_add(PER_MESSAGE_TOKENS)
            .saturating_add(text)
            .saturating_add(parts.saturating_mul(NON_TEXT_PART_TOKENS))
            .saturating_add(calls);
    }

    check_range("temperature", req.temperature, 0.0, 2.0)?;
    check_range("top_p", req.top_p, 0.0, 1.0)?;
    check_range("presence_penalty", req.presence_penalty, -2.0, 2.0)?;
    check_range("frequency_penalty", req.frequency_penalty, -2.0, 2.0)?;
    let n = check_n(req.n)?;
    check_stop(&req.stop)?;
    if let Some(t) = req.top_logprobs {
        if t > 20 {
            return Err(invalid(
                "top_logprobs",
                format!("{t} is out of range; expected 0 to 20"),
            ));
        }
        if req.logprobs != Some(true) {
            return Err(invalid("top_logprobs", "requires 'logprobs' to be true"));
        }
    }
    let max_tokens = check_max_tokens("max_tokens", req.max_tokens, limits)?;
    let max_completion = check_max_tokens("max_completion_tokens", req.max_completion_tokens, limits)?;

    let mut function_names = Vec::new();
    if let Some(tools) = &req.tools {
        if tools.len() > 128 {
            return Err(invalid("tools", "at most 128 tools are allowed"));
        }
        for (i, t) in tools.iter().enumerate() {
            if t.kind != "function" {
                continue; // newer tool kinds are the upstream's to judge
            }
            let Some(f) = &t.function else {
                return Err(ValidationError::Missing {
                    param: format!("tools[{i}].function"),
                });
            };
            if !is_valid_function_name(&f.name) {
                return Err(invalid(
                    format!("tools[{i}].function.name"),
                    "must be 1 to 64 characters of a-z, A-Z, 0-9, underscores and dashes",
                ));
            }
            if f.parameters.as_ref().is_some_and(|p| !p.is_object()) {
                return Err(ValidationError::InvalidType {
                    param: format!("tools[{i}].function.parameters"),
                    detail: "expected an object (a JSON Schema)".into(),
                });
            }
            function_names.push(f.name.as_str());
            prompt_tokens =
                prompt_tokens.saturating_add(estimate_len_tokens(serde_json::to_string(t).map_or(0, |s| s.len())));
        }
    }
    match &req.tool_choice {
        Some(ToolChoice::Mode(m)) if !matches!(m.as_str(), "none" | "auto" | "required") => {
            return Err(invalid("tool_choice", "expected \"none\", \"auto\" or \"required\""));
        }
        Some(ToolChoice::Mode(m)) if m == "required" && function_names.is_empty() => {
            return Err(invalid(
                "tool_choice",
                "\"required\" needs at least one tool in 'tools'",
            ));
        }
        Some(ToolChoice::Named(named)) => {
            let Some(f) = &named.function else {
                return Err(ValidationError::Missing {
                    param: "tool_choice.function".into(),
                });
            };
            if !function_names.contains(&f.name.as_str()) {
                return Err(invalid(
                    "tool_choice.function.name",
                    format!("no tool named '{}' is defined in 'tools'", f.name),
                ));
            }
        }
        _ => {}
    }
    if let Some(rf) = &req.response_format {
        match rf.kind.as_str() {
            "text" | "json_object" => {}
            "json_schema" => {
                let js = rf.json_schema.as_ref().unwrap_or(&Value::Null);
                let name = js.get("name").and_then(Value::as_str);
                match name {
                    None | Some("") => {
                        return Err(ValidationError::Missing {
                            param: "response_format.json_schema.name".into(),
                        })
                    }
                    Some(n) if !is_valid_function_name(n) => {
                        return Err(invalid(
                            "response_format.json_schema.name",
                            "must be 1 to 64 characters of a-z, A-Z, 0-9, underscores and dashes",
                        ))
                    }
                    Some(_) => {}
                }
                // A schema that is not one would reach the upstream (or be
                // dropped on the way to Anthropic) and constrain nothing.
                if js.get("schema").is_some_and(|s| !s.is_object()) {
                    return Err(ValidationError::InvalidType {
                        param: "response_format.json_schema.schema".into(),
                        detail: "expected an object (a JSON Schema)".into(),
                    });
                }
                if js.get("strict").is_some_and(|s| !s.is_boolean() && !s.is_null()) {
                    return Err(ValidationError::InvalidType {
                        param: "response_format.json_schema.strict".into(),
                        detail: "expected a boolean".into(),
                    });
                }
            }
            other => {
                return Err(invalid(
                    "response_format.type",
                    format!("'{other}' is not one of 'text', 'json_object', 'json_schema'"),
                ))
            }
        }
    }

    let stream = req.stream.unwrap_or(false);
    check_stream_options(stream, req.stream_options.is_some())?;
    let include_usage = req
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);

    let per_choice = max_completion.or(max_tokens);
    // A request without a limit may use whatever context is left, so that is
    // what gets reserved; the reservation is corrected after the stream.
    let completion_budget = per_choice.unwrap_or_else(|| {
        limits
            .max_output_tokens
            .min(limits.context_window.saturating_sub(prompt_tokens))
    });
    check_context("messages", prompt_tokens, per_choice.unwrap_or(0), limits)?;

    Ok(ValidRequest {
        endpoint: Endpoint::Chat,
        deterministic: req.temperature == Some(0.0) || req.seed.is_some(),
        model: req.model.clone(),
        stream,
        include_usage,
        prompt_tokens,
        max_output_tokens: completion_budget.saturating_mul(n),
        parsed: super::validate::Parsed::Chat(Box::new(req)),
        body: map,
    })
}

fn estimate_len_tokens(bytes: usize) -> u32 {
    bytes.div_ceil(4).min(u32::MAX as usize) as u32
}

/// Validate `POST /v1/completions`.
pub fn validate_completion(
    body: &[u8],
    max_body_bytes: usize,
    catalog: &dyn ModelCatalog,
) -> Result<ValidRequest, ValidationError> {
    let value = parse_object(body, max_body_bytes)?;
    let req: CompletionRequest = typed(&value)?;
    let map = into_map(value);
    let limits = check_model(&req.model, catalog)?;
    if req.prompt.is_empty() {
        return Err(invalid("prompt", "must contain at least one prompt"));
    }
    if let Some(idx) = req.prompt.first_empty() {
        let param = idx.map_or("prompt".to_string(), |i| format!("prompt[{i}]"));
        return Err(invalid(param, "prompts must not be empty"));
    }
    check_range("temperature", req.temperature, 0.0, 2.0)?;
    check_range("top_p", req.top_p, 0.0, 1.0)?;
    check_range("presence_penalty", req.presence_penalty, -2.0, 2.0)?;
    check_range("frequency_penalty", req.frequency_penalty, -2.0, 2.0)?;
    let n = check_n(req.n)?;
    if let Some(best_of) = req.best_of {
        if best_of < n || best_of > 20 {
            return Err(invalid("best_of", "must be between 'n' and 20"));
        }
    }
    if let Some(lp) = req.logprobs {
        if lp > 5 {
            return Err(invalid("logprobs", format!("{lp} is out of range; expected 0 to 5")));
        }
    }
    check_stop(&req.stop)?;
    // OpenAI's default for the legacy endpoint is 16 tokens.
    let max_tokens = check_max_tokens("max_tokens", req.max_tokens, limits)?.unwrap_or(16);
    let prompt_max = req.prompt.max_estimated_tokens();
    check_context("prompt", prompt_max, max_tokens, limits)?;
    let stream = req.stream.unwrap_or(false);
    check_stream_options(stream, req.stream_options.is_some())?;
    let include_usage = req
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let batch = req.prompt.len() as u32;
    Ok(ValidRequest {
        endpoint: Endpoint::Completion,
        deterministic: req.temperature == Some(0.0) || req.seed.is_some(),
        model: req.model.clone(),
        stream,
        include_usage,
        prompt_tokens: req.prompt.total_estimated_tokens(),
        max_output_tokens: max_tokens.saturating_mul(n).saturating_mul(batch),
        parsed: Parsed::Completion(Box::new(req)),
        body: map,
    })
}

/// Validate `POST /v1/embeddings`.
pub fn validate_embedding(
    body: &[u8],
    max_body_bytes: usize,
    catalog: &dyn ModelCatalog,
) -> Result<ValidRequest, ValidationError> {
    let value = parse_object(body, max_body_bytes)?;
    let req: EmbeddingRequest = typed(&value)?;
    let map = into_map(value);
    let limits = check_model(&req.model, catalog)?;
    if req.input.is_empty() {
        return Err(invalid("input", "must contain at least one input"));
    }
    if req.input.len() > 2048 {
        return Err(invalid("input", "at most 2048 inputs are allowed per request"));
    }
    if let Some(idx) = req.input.first_empty() {
        let param = idx.map_or("input".to_string(), |i| format!("input[{i}]"));
        return Err(invalid(param, "inputs must not be empty"));
    }
    if let Some(fmt) = &req.encoding_format {
        if fmt != "float" && fmt != "base64" {
            return Err(invalid("encoding_format", "expected 'float' or 'base64'"));
        }
    }
    if req.dimensions == Some(0) {
        return Err(invalid("dimensions", "must be at least 1"));
    }
    let largest = req.input.max_estimated_tokens();
    check_context("input", largest, 0, limits)?;
    Ok(ValidRequest {
        endpoint: Endpoint::Embedding,
        deterministic: true,
        model: req.model.clone(),
        stream: false,
        include_usage: false,
        prompt_tokens: req.input.total_estimated_tokens(),
        max_output_tokens: 0,
        parsed: Parsed::Embedding(Box::new(req)),
        body: map,
    })
}
