//! `POST /v1/messages`: Anthropic SDK clients through the same pipeline.
//!
//! The request is translated to an OpenAI chat request and validated by
//! the chat rules, then authenticated, rate-limited, routed and accounted
//! exactly like `/v1/chat/completions`; only the outer shapes differ. The
//! response cache is not used on this route.

use bytes::Bytes;

use super::accounting::{Accounting, Outcome};
use super::cache::CacheMode;
use super::proxy::{self, Encoder, Opened};
use super::{Body, Gateway, GatewayError, Request, RequestCtx, Response};
use crate::api::error::{render_anthropic, OpenAiError};
use crate::api::messages::{to_message, to_openai, AnthropicEncoder, MessagesRequest};
use crate::api::validate::{parse_json, validate_chat};
use crate::platform::Platform;

impl Gateway {
    /// Never fails: errors are rendered in Anthropic's shape here.
    pub(crate) async fn messages<P: Platform>(&self, p: &P, req: &Request, ctx: &mut RequestCtx) -> Response {
        match self.messages_inner(p, req, ctx).await {
            Ok(r) => r,
            Err(e) => {
                ctx.log(e.status(), p.now_ms(), e.error_type(), None);
                let (status, body) = render_anthropic(&e);
                let mut r = Response {
                    status,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: Body::Full(Bytes::from(body)),
                };
                if let Some(s) = e.retry_after_secs() {
                    r.headers.push(("retry-after".into(), s.to_string()));
                }
                r
            }
        }
    }

    async fn messages_inner<P: Platform>(
        &self,
        p: &P,
        req: &Request,
        ctx: &mut RequestCtx,
    ) -> Result<Response, GatewayError> {
        let max = self.config.limits.max_body_bytes;
        let inbound: MessagesRequest = parse_json(&req.body, max)?;
        let body = serde_json::to_vec(&serde_json::Value::Object(to_openai(&inbound))).unwrap_or_default();
        // The translated body may be a little larger than the original.
        let valid = validate_chat(&body, max.saturating_mul(2), &*self.config)?;
        ctx.model = Some(valid.model.clone());
        ctx.stream = valid.stream;
        let (principal, admission) = self.admit(p, req, ctx, &valid).await?;
        let rl_headers = admission.headers.clone();
        let acct = self.accounting(&principal, &valid, Some(admission), CacheMode::Bypass, ctx);
        let opened = match proxy::open_upstream(self, p, ctx, &valid).await {
            Ok(o) => o,
            Err(e) => {
                acct.finish_later(p, Accounting::failed_outcome(&e));
                return Err(e);
            }
        };
        let Opened::Stream { events, first } = opened else {
            return Err(crate::providers::ProviderError::Malformed.into());
        };
        let mut resp = if valid.stream {
            proxy::stream_response(
                p,
                events,
                first,
                Encoder::Anthropic(AnthropicEncoder::new(inbound.wants_thinking())),
                None,
                acct,
            )
        } else {
            let (completion, usage, _) = proxy::fold_stream(events, first, &mut None).await?;
            let outcome = Outcome {
                status: 200,
                label: "ok",
                usage,
                ..Default::default()
            };
            acct.finish_later(p, outcome);
            Response::json(200, &to_message(&completion, inbound.wants_thinking()))
        };
        resp.headers.extend(rl_headers);
        if let Some(u) = &ctx.upstream {
            resp.headers.push((super::pipeline::UPSTREAM_HEADER.into(), u.clone()));
        }
        Ok(resp)
    }
}
