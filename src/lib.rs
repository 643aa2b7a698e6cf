//! infergate: an edge inference proxy.
//!
//! One sans-I/O core, compiled three ways: for Cloudflare Workers
//! (`wasm32-unknown-unknown`), for Spin (`wasm32-wasip2`) and natively for
//! the ONNX Runtime runner and the tests. The core never performs I/O and
//! never reads a clock; it talks to the world only through the traits in
//! [`platform`].
//!
//! # Layout
//! - [`api`]: OpenAI wire types, validation into `Valid*` types, error rendering.
//! - [`sse`]: the incremental SSE decoder and encoder.
//! - [`stream`]: the provider event model and the fold to a JSON response.
//! - [`config`]: raw config → validated config; errors name the path.
//! - [`gateway`]: the pipeline (stage order documented on [`gateway::Gateway`]).
//! - [`providers`]: one file per upstream kind.
//! - [`signing`]: HMAC-SHA256 signatures on edge → runner requests.
//! - [`platform`]: `KvStore`, `HttpClient`, `Runtime`; in-memory versions.
//! - `adapters`: the thin Workers (wasm32-unknown-unknown) and Spin
//!   (wasm32-wasip2) entry points, compiled only for their targets.

pub mod api;
pub mod config;
pub mod gateway;
pub mod platform;
pub mod providers;
pub mod signing;
pub mod sse;
pub mod stream;

#[cfg(target_arch = "wasm32")]
mod adapters;
