//! The Anthropic provider's request translation: any request that passes
//! chat validation must translate to a Messages API body (or refuse with
//! `Unsupported`) without panicking, with alternating roles and the
//! required `max_tokens`.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use common::{Catalog, MAX_BODY};
use infergate::wire::openai::validate::{validate_chat, Parsed};
use infergate::wire::anthropic::upstream::messages_body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(valid) = validate_chat(data, MAX_BODY, &Catalog) else {
        return;
    };
    let Parsed::Chat(chat) = &valid.parsed else {
        unreachable!("validate_chat returns a chat request");
    };
    let Ok(body) = messages_body(chat, "claude", None) else {
        return;
    };
    assert!(body["max_tokens"].as_u64().is_some_and(|m| m >= 1));
    assert_eq!(body["stream"], true);
    let turns = body["messages"].as_array().expect("messages is an array");
    for pair in turns.windows(2) {
        assert_ne!(pair[0]["role"], pair[1]["role"], "roles must alternate");
    }
    let _ = serde_json::to_vec(&body).expect("serialisable");
});
