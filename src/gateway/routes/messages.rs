//! `POST /v1/messages`: Anthropic SDK clients through the same pipeline.
//!
//! The request is translated to an OpenAI chat request and validated by
//! the chat rules; from there it is authenticated, rate-limited, routed
//! and accounted exactly like `/v1/chat/completions`. Only the decoder
//! (here), the answer's shape ([`ClientFormat::Anthropic`]) and the error
//! shape (Anthropic's) differ. The client's own body is kept too: an
//! Anthropic upstream gets it unchanged (`wire::anthropic::passthrough`),
//! any other upstream the translation. The response cache is not used on
//! this route.

use std::rc::Rc;

use super::Decoded;
use crate::gateway::respond::ClientFormat;
use crate::gateway::upstream::attempt::Native;
use crate::gateway::upstream::target::NativeApi;
use crate::gateway::GatewayError;
use crate::wire::anthropic::client::{to_openai, MessagesRequest};
use crate::wire::anthropic::passthrough::FORWARDED_HEADERS;
use crate::wire::openai::validate::{parse_json_object, validate_chat};
use crate::wire::openai::ModelCatalog;

/// Stage 2 for `/v1/messages`. `max` is the body cap in bytes.
pub(crate) fn decode(
    body: &[u8],
    headers: &[(String, String)],
    max: usize,
    catalog: &dyn ModelCatalog,
) -> Result<Decoded, GatewayError> {
    let (inbound, object): (MessagesRequest, _) = parse_json_object(body, max)?;
    let chat = serde_json::to_vec(&serde_json::Value::Object(to_openai(&inbound))).unwrap_or_default();
    // The translated body may be a little larger than the original.
    let valid = validate_chat(&chat, max.saturating_mul(2), catalog)?;
    Ok(Decoded {
        valid,
        format: ClientFormat::Anthropic {
            thinking: inbound.wants_thinking(),
            native: Rc::new(Native {
                api: NativeApi::Messages,
                body: object,
                headers: headers
                    .iter()
                    .filter(|(k, _)| FORWARDED_HEADERS.iter().any(|f| k.eq_ignore_ascii_case(f)))
                    .cloned()
                    .collect(),
            }),
        },
    })
}
