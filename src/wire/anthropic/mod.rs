//! Anthropic's Messages API, both directions.
//!
//! # Layout
//! - `client`: the `/v1/messages` front door. A Messages request becomes
//!   the equivalent chat request (validated by the chat rules); the answer
//!   goes back as Anthropic's SSE event sequence or a Message object.
//! - `upstream`: Anthropic as an upstream. A chat request becomes a
//!   Messages body; Anthropic's events come back as chat chunks.
//! - `passthrough`: a Messages client to a Messages upstream: the client's
//!   body goes up with only the model mapped, the upstream's events come
//!   back as they were sent (only `message_stop` is the gateway's, sent
//!   once it has judged the stream complete), with the chunk translation
//!   read on the side; and the fold of those events into one Message.
//! - `mod.rs` (this file): what both directions share: the API version
//!   and the two stop-reason maps, kept side by side so they stay inverse.

pub mod client;
pub mod passthrough;
pub mod upstream;

pub const API_VERSION: &str = "2023-06-01";

/// OpenAI `finish_reason` for an Anthropic `stop_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop", // end_turn, stop_sequence, pause_turn
    }
}

/// The OpenAI finish reason for a stop reason, checked against what the
/// content holds: `tool_use` with no tool call is a plain stop, and a plain
/// stop after tool calls is a tool-call turn.
pub(crate) fn finish_for_content(stop_reason: &str, has_tools: bool) -> &'static str {
    match finish_reason(stop_reason) {
        "tool_calls" if !has_tools => "stop",
        "stop" if has_tools => "tool_calls",
        f => f,
    }
}

/// Anthropic `stop_reason` for an OpenAI `finish_reason`.
pub fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// The stop reason, checked against what the content holds: tool calls end
/// a tool turn whatever the upstream said, and `tool_use` needs a call.
pub(crate) fn stop_for_content(finish: &str, has_tools: bool) -> &'static str {
    match stop_reason(finish) {
        "tool_use" if !has_tools => "end_turn",
        "end_turn" if has_tools => "tool_use",
        s => s,
    }
}

/// An Anthropic message id for an upstream completion id: `msg_` + the id,
/// unless it already is one (an Anthropic upstream's id comes back through
/// the OpenAI translation as `msg_…`; prefixing it again gave `msg_msg_…`).
pub(crate) fn message_id(upstream_id: &str) -> String {
    if upstream_id.starts_with("msg_") {
        upstream_id.to_string()
    } else {
        format!("msg_{upstream_id}")
    }
}
