//! `POST /v1/completions` and `POST /v1/chat/completions`.
//!
//! The core validates the request (types, ranges, model, estimated
//! context); this module then works with real token counts: it tokenizes
//! the prompts, checks them against the context, turns the request into one
//! engine sequence per choice and answers as a stream or as one JSON body.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use infergate::wire::openai::chat::{ChatCompletionRequest, MessageContent, Role};
use infergate::wire::openai::completions::{CompletionRequest, PromptInput};
use infergate::wire::openai::validate::{validate_chat, validate_completion, Parsed, ValidRequest};
use serde_json::Value;
use tokio::sync::mpsc;

use super::chunks::{self, ChunkMaker};
use super::{unix_secs, AppState};
use crate::engine::{GenerateRequest, SamplingParams, SubmitError};
use crate::error::RunnerError;
use crate::metrics::Metrics;

pub(crate) async fn completions(
    State(st): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(st, false, method, uri, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub(crate) async fn chat_completions(
    State(st): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(st, true, method, uri, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// What a request asks the engine for, with real token counts.
struct Plan {
    /// One entry per distinct prompt.
    prompts: Vec<Vec<u32>>,
    /// Choices per prompt.
    n: usize,
    max_tokens: usize,
    params: SamplingParams,
    stop: Vec<String>,
    echo: bool,
    /// The prompt strings as sent, one per prompt (`None` for token prompts).
    prompt_texts: Vec<Option<String>>,
}

async fn handle(
    st: Arc<AppState>,
    chat: bool,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RunnerError> {
    let body = st.accept(&method, &uri, &headers, body).await?;
    let valid = if chat {
        validate_chat(&body, st.max_body_bytes, &*st)?
    } else {
        validate_completion(&body, st.max_body_bytes, &*st)?
    };
    if valid.model != st.model_id {
        return Err(RunnerError::invalid(
            "model",
            format!("'{}' is an embedding model; use POST /v1/embeddings", valid.model),
        ));
    }
    let plan = match &valid.parsed {
        Parsed::Chat(req) => plan_chat(&st, req)?,
        Parsed::Completion(req) => plan_completion(&st, req)?,
        Parsed::Embedding(_) => return Err(RunnerError::Unsupported { param: "input" }),
    };
    respond(&st, chat, &valid, plan).await
}

async fn respond(st: &AppState, chat: bool, valid: &ValidRequest, plan: Plan) -> Result<Response, RunnerError> {
    let arrived = Instant::now();
    let mut receivers = Vec::new();
    let mut reqs = Vec::new();
    for prompt in &plan.prompts {
        for j in 0..plan.n {
            let (tx, rx) = mpsc::unbounded_channel();
            let mut params = plan.params.clone();
            // n choices of one seeded request must differ, yet stay reproducible.
            params.seed = params.seed.map(|s| s.wrapping_add(j as u64));
            reqs.push(GenerateRequest {
                prompt: prompt.clone(),
                params,
                max_tokens: plan.max_tokens,
                stop: plan.stop.clone(),
                events: tx,
                arrived,
            });
            receivers.push(rx);
        }
    }
    if reqs.len() > st.engine.max_queue() {
        // 429 would invite retries that can never succeed.
        return Err(RunnerError::invalid(
            "n",
            format!(
                "this request needs {} sequences (prompts × n); this runner queues at most {}",
                reqs.len(),
                st.engine.max_queue()
            ),
        ));
    }
    st.engine.submit(reqs).map_err(|e| {
        Metrics::inc(match e {
            SubmitError::QueueFull => &st.metrics.rejected_queue_full,
            _ => &st.metrics.rejected_unavailable,
        });
        match e {
            SubmitError::QueueFull => RunnerError::QueueFull,
            SubmitError::NotReady => RunnerError::NotReady,
            SubmitError::Closed => RunnerError::ShuttingDown,
        }
    })?;
    let echo = plan.echo.then(|| {
        plan.prompts
            .iter()
            .zip(&plan.prompt_texts)
            .flat_map(|(p, text)| {
                // The client's own string when it sent one; token prompts
                // are decoded with their special tokens, as sent.
                let t = text.clone().unwrap_or_else(|| st.codec.decode_all(p));
                std::iter::repeat_n(t, plan.n)
            })
            .collect()
    });
    let maker = ChunkMaker {
        id: format!(
            "{}-{:016x}",
            if chat { "chatcmpl" } else { "cmpl" },
            crate::engine::sampling::fresh_id()
        ),
        created: unix_secs(),
        model: st.model_id.clone(),
        chat,
        include_usage: valid.include_usage,
        choices: receivers.len(),
        prompt_tokens: plan.prompts.iter().map(|p| p.len() as u64).sum(),
        echo,
        finished: 0,
        completion_tokens: 0,
    };
    let events = chunks::merge(receivers);
    if valid.stream {
        let mut resp = Body::from_stream(chunks::sse_body(maker, events)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        return Ok(resp);
    }
    Ok(Json(chunks::fold(maker, events).await?).into_response())
}

#[allow(clippy::too_many_arguments)]
fn sampling(
    st: &AppState,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<i64>,
    presence: Option<f64>,
    frequency: Option<f64>,
    logit_bias: Option<&serde_json::Map<String, Value>>,
    extra: &serde_json::Map<String, Value>,
) -> Result<SamplingParams, RunnerError> {
    let top_k = match extra.get("top_k") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(k) => Some(k.min(st.codec.vocab() as u64) as usize),
            None => return Err(RunnerError::invalid("top_k", "must be a non-negative integer")),
        },
    };
    Ok(SamplingParams {
        temperature: temperature.unwrap_or(1.0) as f32,
        top_k,
        top_p: top_p.unwrap_or(1.0) as f32,
        seed: seed.map(|s| s as u64),
        presence_penalty: presence.unwrap_or(0.0) as f32,
        frequency_penalty: frequency.unwrap_or(0.0) as f32,
        logit_bias: parse_logit_bias(st, logit_bias)?,
    })
}

/// OpenAI's `logit_bias`: token id (as a string key) → bias from -100 to 100.
/// Both endpoints take it, so both parse it here.
fn parse_logit_bias(
    st: &AppState,
    bias: Option<&serde_json::Map<String, Value>>,
) -> Result<Vec<(u32, f32)>, RunnerError> {
    let Some(bias) = bias else { return Ok(Vec::new()) };
    bias.iter()
        .map(|(k, v)| {
            let id = k.parse::<u32>().ok().filter(|&id| (id as usize) < st.codec.vocab());
            let b = v.as_f64().filter(|b| (-100.0..=100.0).contains(b));
            match (id, b) {
                (Some(id), Some(b)) => Ok((id, b as f32)),
                _ => Err(RunnerError::invalid(
                    format!("logit_bias.{k}"),
                    "keys must be token ids in the vocabulary and values numbers from -100 to 100",
                )),
            }
        })
        .collect()
}

/// The `logit_bias` field of a request's extra fields (completions carry it
/// there); a non-object is a 400 naming the field.
fn extra_logit_bias(
    extra: &serde_json::Map<String, Value>,
) -> Result<Option<&serde_json::Map<String, Value>>, RunnerError> {
    match extra.get("logit_bias") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(RunnerError::invalid(
            "logit_bias",
            "must be an object mapping token ids to biases",
        )),
    }
}

fn context_error(param: impl Into<String>, limit: usize, prompt: usize, completion: usize) -> RunnerError {
    RunnerError::ContextLength {
        param: param.into(),
        limit,
        requested: prompt + completion,
        prompt,
        completion,
    }
}

fn plan_completion(st: &AppState, req: &CompletionRequest) -> Result<Plan, RunnerError> {
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(RunnerError::Unsupported { param: "suffix" });
    }
    if req.logprobs.is_some() {
        return Err(RunnerError::Unsupported { param: "logprobs" });
    }
    if req.best_of.is_some_and(|b| b != req.n.unwrap_or(1)) {
        return Err(RunnerError::Unsupported { param: "best_of" });
    }
    let vocab = st.codec.vocab() as u32;
    let check_ids = |ids: &[u32], param: String| -> Result<Vec<u32>, RunnerError> {
        match ids.iter().find(|&&t| t >= vocab) {
            Some(t) => Err(RunnerError::invalid(
                param,
                format!("token id {t} is not below the vocabulary size {vocab}"),
            )),
            None => Ok(ids.to_vec()),
        }
    };
    let encode = |s: &str| {
        st.codec
            .encode(s)
            .map_err(|_| RunnerError::invalid("prompt", "cannot be tokenized"))
    };
    let prompts = match &req.prompt {
        PromptInput::Text(s) => vec![encode(s)?],
        PromptInput::Texts(v) => v.iter().map(|s| encode(s)).collect::<Result<_, _>>()?,
        PromptInput::Tokens(t) => vec![check_ids(t, "prompt".into())?],
        PromptInput::TokenBatches(v) => v
            .iter()
            .enumerate()
            .map(|(i, t)| check_ids(t, format!("prompt[{i}]")))
            .collect::<Result<_, _>>()?,
    };
    // OpenAI's default for this endpoint.
    let max_tokens = req.max_tokens.unwrap_or(16) as usize;
    for (i, p) in prompts.iter().enumerate() {
        if p.is_empty() {
            let param = if prompts.len() == 1 {
                "prompt".into()
            } else {
                format!("prompt[{i}]")
            };
            return Err(RunnerError::invalid(param, "tokenizes to nothing"));
        }
        if p.len() + max_tokens > st.context {
            let param = if prompts.len() == 1 {
                "prompt".to_string()
            } else {
                format!("prompt[{i}]")
            };
            return Err(context_error(param, st.context, p.len(), max_tokens));
        }
    }
    Ok(Plan {
        n: req.n.unwrap_or(1) as usize,
        max_tokens,
        params: sampling(
            st,
            req.temperature,
            req.top_p,
            req.seed,
            req.presence_penalty,
            req.frequency_penalty,
            extra_logit_bias(&req.extra)?,
            &req.extra,
        )?,
        stop: req.stop.as_ref().map(|s| s.as_vec()).unwrap_or_default(),
        echo: req.echo.unwrap_or(false),
        prompt_texts: match &req.prompt {
            PromptInput::Text(s) => vec![Some(s.clone())],
            PromptInput::Texts(v) => v.iter().cloned().map(Some).collect(),
            PromptInput::Tokens(_) => vec![None],
            PromptInput::TokenBatches(v) => vec![None; v.len()],
        },
        prompts,
    })
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::Developer => "developer",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
        Role::Function => "function",
    }
}

fn plan_chat(st: &AppState, req: &ChatCompletionRequest) -> Result<Plan, RunnerError> {
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(RunnerError::Unsupported { param: "tools" });
    }
    if req.logprobs == Some(true) {
        return Err(RunnerError::Unsupported { param: "logprobs" });
    }
    if req.response_format.as_ref().is_some_and(|f| f.kind != "text") {
        return Err(RunnerError::Unsupported {
            param: "response_format",
        });
    }
    for key in ["functions", "function_call"] {
        if req.extra.get(key).is_some_and(|v| !v.is_null()) {
            return Err(RunnerError::Unsupported { param: key });
        }
    }
    // A text-only model must not answer as if an image or audio part had
    // never been sent.
    for (i, m) in req.messages.iter().enumerate() {
        if let Some(MessageContent::Parts(parts)) = &m.content {
            if let Some(j) = parts.iter().position(|p| p.kind != "text") {
                return Err(RunnerError::invalid(
                    format!("messages[{i}].content[{j}]"),
                    format!("'{}' parts are not supported by this text-only model", parts[j].kind),
                ));
            }
        }
    }
    let texts: Vec<(&'static str, String)> = req
        .messages
        .iter()
        .map(|m| {
            (
                st.codec.template_role(role_name(m.role)),
                m.content.as_ref().map(|c| c.joined_text()).unwrap_or_default(),
            )
        })
        .collect();
    let prompt = st
        .codec
        .chat_prompt(texts.iter().map(|(r, c)| (*r, c.as_str())))
        .map_err(|e| RunnerError::invalid("messages", format!("the model's chat template refused them: {e}")))?;
    let requested = req.max_completion_tokens.or(req.max_tokens).map(|m| m as usize);
    let max_tokens = requested.unwrap_or_else(|| st.context.saturating_sub(prompt.len()));
    if max_tokens == 0 || prompt.len() + max_tokens > st.context {
        return Err(context_error("messages", st.context, prompt.len(), max_tokens.max(1)));
    }
    let params = sampling(
        st,
        req.temperature,
        req.top_p,
        req.seed,
        req.presence_penalty,
        req.frequency_penalty,
        req.logit_bias.as_ref(),
        &req.extra,
    )?;
    Ok(Plan {
        prompts: vec![prompt],
        n: req.n.unwrap_or(1) as usize,
        max_tokens,
        params,
        stop: req.stop.as_ref().map(|s| s.as_vec()).unwrap_or_default(),
        echo: false,
        prompt_texts: vec![None],
    })
}
