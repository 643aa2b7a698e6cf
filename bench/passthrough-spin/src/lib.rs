//! A bare pass-through Spin component: the baseline for the Spin row of
//! `make bench`. It forwards the request to the `upstream_url` variable with
//! the upstream key and returns the upstream's response as it is (the host
//! streams its body through untouched). No validation, auth, limits, cache
//! or logging: whatever infergate adds over this is its overhead.

use std::future::poll_fn;
use std::pin::Pin;

use bytes::Bytes;
use http_body::Body as _;
use spin_sdk::http::{FullBody, Request, Response};

/// Headers of one hop, which wasi:http refuses to forward.
const HOP_BY_HOP: [&str; 7] = [
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "te",
    "content-length",
];

#[spin_sdk::http_service]
async fn handle(req: Request) -> spin_sdk::http::Result<Response> {
    let base = spin_sdk::variables::get("upstream_url")
        .await
        .map_err(|e| spin_sdk::http::Error::Other(e.into()))?;
    let key = spin_sdk::variables::get("upstream_key").await.unwrap_or_default();
    let (parts, mut body) = req.into_parts();
    // The request body is read whole, as infergate reads it (it validates
    // the JSON); the response body is not touched.
    let mut bytes = Vec::new();
    while let Some(Ok(frame)) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(chunk) = frame.into_data() {
            bytes.extend_from_slice(&chunk);
        }
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = http::Request::builder()
        .method(parts.method.clone())
        .uri(format!("{}{path}", base.trim_end_matches('/')));
    for (k, v) in &parts.headers {
        if !HOP_BY_HOP.iter().any(|h| k.as_str().eq_ignore_ascii_case(h)) && k != http::header::AUTHORIZATION {
            out = out.header(k, v);
        }
    }
    let out = out
        .header(http::header::AUTHORIZATION, format!("Bearer {key}"))
        .body(FullBody::new(Bytes::from(bytes)))
        .map_err(spin_sdk::http::Error::HttpError)?;
    Ok(spin_sdk::http::send(out).await?)
}
