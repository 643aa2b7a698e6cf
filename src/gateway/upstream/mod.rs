//! From an admitted request to the first event of an upstream's answer.
//!
//! # Layout
//! - `plan`: which targets, in what order: the model's chain or its heavy
//!   chain, the runner pool nearest first.
//! - `circuit`: per-target circuit breakers, shared across isolates via KV.
//! - `target`: one upstream as called: its wire format and credential.
//! - `attempt`: retries, backoff and failover across the plan, each
//!   attempt under one [`deadline::Deadline`].
//! - `deadline`: one re-armable timer on the runtime's monotonic clock.
//! - `events`: the upstream body as stream events, with the stall timer
//!   and the completeness rules.

pub mod attempt;
pub mod circuit;
pub mod deadline;
pub mod events;
pub mod plan;
pub mod target;
