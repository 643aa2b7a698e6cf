//! `POST /v1/messages`: Anthropic SDK clients through the same pipeline.
//!
//! The request is translated to an OpenAI chat request and validated by
//! the chat rules; from there it is authenticated, rate-limited, routed
//! and accounted exactly like `/v1/chat/completions`. Only the decoder
//! (here), the answer's shape ([`ClientFormat::Anthropic`]) and the error
//! shape (Anthropic's) differ. The response cache is not used on this
//! route.

use super::Decoded;
use crate::gateway::respond::ClientFormat;
use crate::gateway::GatewayError;
use crate::wire::anthropic::client::{to_openai, MessagesRequest};
use crate::wire::openai::validate::{parse_json, validate_chat};
use crate::wire::openai::ModelCatalog;

/// Stage 2 for `/v1/messages`. `max` is the body cap in bytes.
pub(crate) fn decode(body: &[u8], max: usize, catalog: &dyn ModelCatalog) -> Result<Decoded, GatewayError> {
    let inbound: MessagesRequest = parse_json(body, max)?;
    let chat = serde_json::to_vec(&serde_json::Value::Object(to_openai(&inbound))).unwrap_or_default();
    // The translated body may be a little larger than the original.
    let valid = validate_chat(&chat, max.saturating_mul(2), catalog)?;
    Ok(Decoded {
        valid,
        format: ClientFormat::Anthropic {
            thinking: inbound.wants_thinking(),
        },
    })
}
