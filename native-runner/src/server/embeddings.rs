//! `POST /v1/embeddings`: the encoder model, OpenAI's request and response
//! shapes (`encoding_format` `float` or `base64`, usage in real tokens).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use infergate::wire::openai::completions::PromptInput;
use infergate::wire::openai::validate::{validate_embedding, Parsed};
use serde_json::{json, Value};

use super::AppState;
use crate::error::RunnerError;
use crate::metrics::Metrics;

pub(crate) async fn embeddings(
    State(st): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(st, method, uri, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn handle(
    st: Arc<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RunnerError> {
    let body = st.accept(&method, &uri, &headers, body).await?;
    let valid = validate_embedding(&body, st.max_body_bytes, &*st)?;
    let Parsed::Embedding(req) = &valid.parsed else {
        return Err(RunnerError::Engine);
    };
    let Some(encoder) = st.encoder() else {
        return Err(RunnerError::invalid(
            "model",
            format!("'{}' is a chat model; this runner serves no embedding model", req.model),
        ));
    };
    if st.embedding_model_id.as_deref() != Some(req.model.as_str()) {
        return Err(RunnerError::invalid(
            "model",
            format!(
                "'{}' is a chat model; embeddings are served by '{}'",
                req.model,
                st.embedding_model_id.as_deref().unwrap_or_default()
            ),
        ));
    }
    if let Some(d) = req.dimensions {
        if d as usize != encoder.dimensions() {
            return Err(RunnerError::invalid(
                "dimensions",
                format!("this model only produces {} dimensions", encoder.dimensions()),
            ));
        }
    }
    let single = matches!(req.input, PromptInput::Text(_) | PromptInput::Tokens(_));
    let param = |i: usize| {
        if single {
            "input".to_string()
        } else {
            format!("input[{i}]")
        }
    };
    let vocab = encoder.vocab();
    let inputs: Vec<Vec<u32>> = match &req.input {
        PromptInput::Text(s) => vec![tokenize(&encoder, s, param(0))?],
        PromptInput::Texts(v) => v
            .iter()
            .enumerate()
            .map(|(i, s)| tokenize(&encoder, s, param(i)))
            .collect::<Result<_, _>>()?,
        PromptInput::Tokens(t) => vec![t.clone()],
        PromptInput::TokenBatches(v) => v.clone(),
    };
    for (i, ids) in inputs.iter().enumerate() {
        if let Some(t) = ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(RunnerError::invalid(
                param(i),
                format!("token id {t} is not below the vocabulary size {vocab}"),
            ));
        }
        if ids.len() > encoder.max_tokens() {
            return Err(RunnerError::ContextLength {
                param: param(i),
                limit: encoder.max_tokens(),
                requested: ids.len(),
                prompt: ids.len(),
                completion: 0,
            });
        }
    }
    let prompt_tokens: usize = inputs.iter().map(Vec::len).sum();
    let Ok(slot) = st.embedding_slots.clone().try_acquire_owned() else {
        Metrics::inc(&st.metrics.rejected_queue_full);
        return Err(RunnerError::QueueFull);
    };
    let enc = encoder.clone();
    let vectors = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        enc.embed(&inputs)
    })
    .await
    .map_err(|e| {
        tracing::error!("embedding task failed: {e}");
        RunnerError::Engine
    })?
    .map_err(|e| {
        tracing::error!("embedding failed: {e:#}");
        RunnerError::Engine
    })?;
    let base64 = req.encoding_format.as_deref() == Some("base64");
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                // OpenAI's base64 format: little-endian float32.
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                // Each f32 widened exactly to f64: the JSON number is the same
                // value a base64 client decodes.
                Value::Array(v.iter().map(|&x| json!(f64::from(x))).collect())
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": req.model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }))
    .into_response())
}

fn tokenize(encoder: &crate::engine::encoder::Encoder, text: &str, param: String) -> Result<Vec<u32>, RunnerError> {
    encoder
        .tokenize(text)
        .map_err(|_| RunnerError::invalid(param, "cannot be tokenized"))
}
