//! Operational endpoints: `/v1/models`, `/health`, `/ready`, `/metrics`,
//! `/openapi.json`, and the JSON 404 for everything else.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use infergate::wire::openai::completions::{ModelList, ModelObject};
use serde_json::json;

use super::{read_body, AppState};
use crate::error::RunnerError;

pub(crate) async fn models(
    State(st): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let checked = async {
        let body = read_body(body, st.max_body_bytes).await?;
        st.authorize(&method, &uri, &headers, &body)
    };
    if let Err(e) = checked.await {
        return e.into_response();
    }
    let model = |id: &str| ModelObject {
        id: id.to_string(),
        object: "model".into(),
        created: st.created,
        owned_by: "infergate".into(),
    };
    let mut data = vec![model(&st.model_id)];
    data.extend(st.embedding_model_id.as_deref().map(model));
    Json(ModelList {
        object: "list".into(),
        data,
    })
    .into_response()
}

/// Liveness: the process serves HTTP.
pub(crate) async fn health() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Readiness: the model is loaded and warmed up, and not draining.
pub(crate) async fn ready(State(st): State<Arc<AppState>>) -> Response {
    let device = st.metrics.device();
    let (status, state) = if st.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting_down")
    } else if st.engine.is_ready() {
        (StatusCode::OK, "ready")
    } else if device.is_some() {
        // The engine ran and stopped.
        (StatusCode::SERVICE_UNAVAILABLE, "stopped")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "loading")
    };
    let mut resp = (
        status,
        Json(json!({"status": state, "model": st.model_id, "device": device})),
    )
        .into_response();
    if status != StatusCode::OK {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(2));
    }
    resp
}

pub(crate) async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        st.metrics.render(),
    )
        .into_response()
}

/// The runner's OpenAPI 3.1 document: generated with the edge's from the
/// core's wire types (`infergate::gateway::routes::openapi`) and committed, so it lists
/// exactly the routes above. Unsigned, like the other operational routes.
pub(crate) async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        infergate::gateway::routes::RUNNER_OPENAPI_JSON,
    )
        .into_response()
}

pub(crate) async fn not_found(uri: Uri) -> Response {
    RunnerError::NoRoute(uri.path().to_string()).into_response()
}

pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    RunnerError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
    .into_response()
}
