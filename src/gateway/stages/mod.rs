//! The stages between a decoded request and the upstream, and the one
//! after the answer.
//!
//! # Layout
//! - `auth`: API keys by SHA-256: the record, the bounded isolate cache,
//!   and the authenticate stage (cache, then KV, then the pure check).
//! - `ratelimit`: requests and tokens per minute and the monthly token
//!   budget, behind the `RateLimitBackend` trait.
//! - `strict`: the strict backend: every limit a request touches charged
//!   in one all-or-nothing step by the platform's strict store.
//! - `budget`: spend budgets in USD per key and tenant, per day and
//!   month, and their threshold alerts (pure; `ratelimit` reserves them).
//! - `counters`: KV counters coalesced per isolate, shared by rate limits
//!   and usage.
//! - `cache`: exact-match cache keys, modes and stored entries.
//! - `usage`: hourly usage buckets and their cost.
//! - `account`: the last stage: correct the reservation, add usage, store
//!   a cacheable answer, write the log line; once per admitted request.
//!
//! Dependencies point one way: `account` uses `ratelimit`, `usage`,
//! `cache` and `counters`; none of them uses `account`.

pub mod account;
pub mod auth;
pub mod budget;
pub mod cache;
pub mod counters;
pub mod ratelimit;
pub mod strict;
pub mod usage;
