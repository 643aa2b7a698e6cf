//! Platform entry points. Each adapter converts the platform request into
//! [`crate::gateway::Request`], calls the core, and converts the result
//! back; platform types never leave its file.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod cloudflare;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod spin;
