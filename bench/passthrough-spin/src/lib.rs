//! A bare pass-through Spin component: the baseline for the Spin rows of
//! `make bench`. It forwards the request to the `upstream_url` variable with
//! the upstream key and returns the upstream's response as it is (the host
//! streams its body through untouched). No validation, auth, limits, cache
//! or logging: whatever infergate adds over this is its overhead.
//!
//! With the `mode` variable set to `floor` it is the Spin twin of
//! bench/floor/worker.js instead: it parses the request body as JSON and
//! passes every response chunk through its own code, which is the least a
//! component that reads what it relays can do.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use spin_sdk::http::{FullBody, IntoResponse, Request};
use spin_sdk::wasip3::http::types::Response as WasiResponse;

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
async fn handle(req: Request) -> spin_sdk::http::Result<WasiResponse> {
    let base = spin_sdk::variables::get("upstream_url")
        .await
        .map_err(|e| spin_sdk::http::Error::Other(e.into()))?;
    let key = spin_sdk::variables::get("upstream_key").await.unwrap_or_default();
    let floor = spin_sdk::variables::get("mode").await.is_ok_and(|m| m == "floor");
    let (parts, mut body) = req.into_parts();
    // The request body is read whole, as infergate reads it (it validates
    // the JSON); only the floor touches the response body.
    let mut bytes = Vec::new();
    while let Some(Ok(frame)) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(chunk) = frame.into_data() {
            bytes.extend_from_slice(&chunk);
        }
    }
    if floor && !bytes.is_empty() {
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| spin_sdk::http::Error::Other(e.into()))?;
        bytes = serde_json::to_vec(&json).map_err(|e| spin_sdk::http::Error::Other(e.into()))?;
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
    let resp = spin_sdk::http::send(out).await?;
    Ok(if floor {
        let (parts, body) = resp.into_parts();
        http::Response::from_parts(parts, Relay(body)).into_response()?
    } else {
        resp.into_response()?
    })
}

/// The upstream body, each chunk copied through this component.
struct Relay<B>(B);

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for Relay<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.0)
            .poll_frame(cx)
            .map(|f| f.map(|r| r.map(|frame| frame.map_data(|d| Bytes::copy_from_slice(&d)))))
    }
}
