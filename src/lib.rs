//! infergate: an edge inference proxy.
//!
//! One sans-I/O core, compiled three ways: for Cloudflare Workers
//! (`wasm32-unknown-unknown`), for Spin (`wasm32-wasip2`) and natively for
//! the ONNX Runtime runner and the tests. The core never performs I/O and
//! never reads a clock; it talks to the world only through the traits in
//! [`platform`].
//!
//! # Layout
//! Dependencies point down this list, never up:
//! - `adapters/`: the thin Workers (wasm32-unknown-unknown) and Spin
//!   (wasm32-wasip2) entry points, compiled only for their targets.
//! - [`gateway`]: the one request pipeline (stage order documented on
//!   [`gateway::Gateway`]): routes, stages, upstream, respond.
//! - [`config`]: raw config → validated config; errors name the path.
//! - [`wire`]: one module per wire format (OpenAI, Anthropic), both
//!   directions in each, and the one place errors are rendered.
//! - [`stream`]: the neutral event model between formats, the upstream
//!   error type, usage, and the fold to one JSON answer.
//! - [`sse`]: the incremental SSE decoder and encoder.
//! - [`signing`]: HMAC-SHA256 signatures on edge → runner requests.
//! - [`platform`]: `KvStore`, `HttpClient`, `Runtime`; in-memory versions.

pub mod config;
pub mod gateway;
pub mod platform;
pub mod signing;
pub mod sse;
pub mod stream;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod adapters;
