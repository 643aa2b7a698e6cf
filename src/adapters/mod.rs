//! Platform entry points. Each adapter converts the platform request into
//! [`crate::gateway::Request`], calls the core, and converts the result
//! back; platform types never leave its file.
//!
//! # Layout
//! - `cloudflare`: Workers (`wasm32-unknown-unknown`, the `worker` crate).
//! - `durable`: the Workers strict rate-limit store, a Durable Object.
//! - `spin`: Spin (`wasm32-wasip2`, spin-sdk).
//! - `mod.rs` (this file): what only the wasm targets share: the JSON log
//!   subscriber and the linear-memory reading. Everything else both
//!   adapters need is in the core, `crate::gateway::bootstrap`.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod cloudflare;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod durable;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod spin;

/// JSON log lines, once per isolate, to the platform's log sink. No timer:
/// the default one calls `SystemTime::now()`, which panics on
/// `wasm32-unknown-unknown`, and both platforms stamp lines themselves.
fn init_tracing<W>(writer: W)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .json()
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_current_span(false)
            .with_writer(writer)
            .try_init();
    });
}

/// The linear memory of this wasm instance: everything the core holds
/// (caches, counters, streams in flight). It grows and never shrinks, so it
/// is the core's high-water mark.
fn wasm_memory_bytes() -> u64 {
    core::arch::wasm32::memory_size(0) as u64 * 65_536
}
