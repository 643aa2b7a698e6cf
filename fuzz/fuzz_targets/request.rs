//! Request parse + validate for every API route. Arbitrary bytes are the
//! body of a chat, completions, embeddings or Anthropic messages request
//! (the first byte picks which). Validation must answer a `Valid*` request
//! or a 4xx naming the field, never panic; a valid request must also get
//! through the cache-key builder and every provider's request builder.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use common::{providers, Catalog, MAX_BODY};
use infergate::wire::error::{render, OpenAiError};
use infergate::wire::anthropic::client::{to_openai, MessagesRequest};
use infergate::wire::openai::validate::{parse_json, validate_chat, validate_completion, validate_embedding, ModelCatalog};
use infergate::gateway::stages::cache;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let result = match which % 4 {
        0 => validate_chat(body, MAX_BODY, &Catalog),
        1 => validate_completion(body, MAX_BODY, &Catalog),
        2 => validate_embedding(body, MAX_BODY, &Catalog),
        _ => parse_json::<MessagesRequest>(body, MAX_BODY).and_then(|m| {
            let chat = serde_json::to_vec(&serde_json::Value::Object(to_openai(&m))).unwrap_or_default();
            validate_chat(&chat, MAX_BODY * 2, &Catalog)
        }),
    };
    match result {
        Ok(valid) => {
            assert!(
                Catalog.model_limits(&valid.model).is_some(),
                "validated an unknown model"
            );
            let headers = vec![("x-infergate-cache-ttl".to_string(), "120".to_string())];
            let resolved = cache::Resolved {
                upstream_model: valid.model.clone(),
                chain: vec!["p".into()],
                untranslated: Default::default(),
            };
            let _ = cache::mode(&valid, &resolved, &headers, "tenant", false, 3600, true);
            let _ = cache::mode(&valid, &resolved, &[], "tenant", true, 3600, true);
            for p in providers() {
                let _ = p.build_request(&valid, "upstream-model", 1_700_000_000_000);
            }
        }
        Err(e) => {
            assert!((400..500).contains(&e.status()), "status {} for {e}", e.status());
            let rendered = render(&e);
            assert!(!rendered.body.error.message.is_empty());
            let _ = rendered.to_json();
        }
    }
});
