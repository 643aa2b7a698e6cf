//! One upstream as the gateway calls it: where it is, which wire format it
//! speaks and how the gateway authenticates to it.
//!
//! Everything here is pure: it builds an [`HttpRequest`], maps an error
//! body, and turns SSE events into [`StreamEvent`]s through the wire
//! modules. The attempt owns all I/O, timeouts and retries, so every
//! upstream gets them identically.

use serde_json::{Map, Value};

use crate::config::{Credential, ProviderKind, Upstream};
use crate::platform::HttpRequest;
use crate::signing;
use crate::sse::SseEvent;
use crate::stream::{StreamEvent, UpstreamError};
use crate::wire::openai::ValidRequest;
use crate::wire::{anthropic, openai, Answer, ParseState};

/// A client API whose requests an upstream may take unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeApi {
    /// Anthropic's Messages API (`/messages`).
    Messages,
    /// OpenAI's Responses API (`/responses`).
    Responses,
}

/// A configured upstream, ready to be called.
#[derive(Debug, Clone)]
pub struct Target {
    base_url: String,
    kind: ProviderKind,
    credential: Credential,
    responses_api: bool,
    /// Set for an attempt that forwards the client's own request: the
    /// events are in that API's format, and relayed.
    native: Option<NativeApi>,
}

impl Target {
    pub fn for_config(u: &Upstream) -> Target {
        Target {
            base_url: u.base_url.clone(),
            kind: u.kind,
            credential: u.credential.clone(),
            responses_api: u.responses_api,
            native: None,
        }
    }

    /// Whether it speaks Anthropic's Messages API.
    pub fn is_anthropic(&self) -> bool {
        self.kind == ProviderKind::Anthropic
    }

    /// Whether it takes a request of `api` unchanged.
    pub fn serves(&self, api: NativeApi) -> bool {
        match api {
            NativeApi::Messages => self.is_anthropic(),
            NativeApi::Responses => self.responses_api && self.kind == ProviderKind::Openai,
        }
    }

    /// This target for an attempt that forwards a request of `api`
    /// unchanged: its events are parsed, and relayed, as that API's.
    pub fn forwarding(&self, api: Option<NativeApi>) -> Target {
        Target {
            native: api,
            ..self.clone()
        }
    }

    /// The API whose request this attempt forwarded unchanged.
    pub fn native(&self) -> Option<NativeApi> {
        self.native
    }

    /// Whether an upstream event goes to the client as it came.
    pub fn relays(&self, ev: &SseEvent) -> bool {
        match self.native {
            None => false,
            Some(NativeApi::Messages) => anthropic::passthrough::relayed(ev),
            Some(NativeApi::Responses) => true,
        }
    }

    /// Whether it answers a request in the client's own format: an OpenAI
    /// client's request (`native` is `None`) at an OpenAI-compatible
    /// upstream, or a client's own request it takes unchanged.
    pub fn speaks_client(&self, native: Option<NativeApi>) -> bool {
        match native {
            None => self.kind == ProviderKind::Openai,
            Some(api) => self.serves(api),
        }
    }

    /// The upstream request for a validated client request. `whole`: ask
    /// for the answer as one JSON body (only where [`Self::speaks_client`];
    /// a translated request always streams).
    ///
    /// `now_ms` (milliseconds since the Unix epoch) goes into a runner's
    /// signature. Returns `UpstreamError::Unsupported` when the wire
    /// format has no counterpart for the endpoint.
    pub fn build_request(
        &self,
        req: &ValidRequest,
        upstream_model: &str,
        now_ms: u64,
        whole: bool,
    ) -> Result<HttpRequest, UpstreamError> {
        let (path, body) = match self.kind {
            ProviderKind::Openai => (
                req.endpoint.path(),
                openai::upstream::request_body(req, upstream_model, whole),
            ),
            ProviderKind::Anthropic => ("/messages", anthropic::upstream::request_body(req, upstream_model)?),
        };
        Ok(self.request(path, body, now_ms))
    }

    /// Read a whole JSON answer (see [`Self::build_request`]) in the
    /// format this attempt asked for; the errors are the wire module's.
    /// `bytes` as received, `body` the same parsed.
    pub fn parse_answer(&self, bytes: bytes::Bytes, body: Value) -> Result<Answer, UpstreamError> {
        match self.native {
            Some(NativeApi::Messages) => anthropic::passthrough::parse_message(bytes, body),
            Some(NativeApi::Responses) => openai::responses::native::parse_response(bytes, body),
            None => openai::upstream::parse_answer(bytes, body),
        }
    }

    /// A `POST {base_url}{path}` with `body`, asking for SSE when the body
    /// streams, authenticated as the credential says.
    pub fn request(&self, path: &str, body: Map<String, Value>, now_ms: u64) -> HttpRequest {
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if body.get("stream") == Some(&Value::Bool(true)) {
            headers.push(("accept".into(), "text/event-stream".into()));
        }
        if self.is_anthropic() {
            headers.push(("anthropic-version".into(), anthropic::API_VERSION.into()));
        }
        let body = bytes::Bytes::from(serde_json::to_vec(&Value::Object(body)).unwrap_or_default());
        match (&self.credential, self.kind) {
            (Credential::None, _) => {}
            (Credential::ApiKey(k), ProviderKind::Openai) => {
                headers.push(("authorization".into(), format!("Bearer {}", k.expose())));
            }
            (Credential::ApiKey(k), ProviderKind::Anthropic) => {
                headers.push(("x-api-key".into(), k.expose().to_string()));
            }
            (Credential::SigningSecret(s), _) => {
                let signed_path = url_path(&self.base_url).trim_end_matches('/').to_string() + path;
                headers.extend(signing::signed_headers(
                    s.expose().as_bytes(),
                    now_ms,
                    "POST",
                    &signed_path,
                    &body,
                ));
            }
        }
        HttpRequest {
            method: "POST",
            url: format!("{}{}", self.base_url, path),
            headers,
            body,
            cancel_on_drop: true,
        }
    }

    /// Map a non-2xx upstream response to an error.
    pub fn parse_error(&self, status: u16, retry_after: Option<&str>, body: &[u8]) -> UpstreamError {
        match self.kind {
            ProviderKind::Openai => openai::upstream::parse_error(status, retry_after, body),
            ProviderKind::Anthropic => anthropic::upstream::parse_error(status, retry_after, body),
        }
    }

    /// Turn one upstream SSE event into zero or more stream events.
    pub fn parse_event(&self, state: &mut ParseState, ev: &SseEvent) -> Vec<StreamEvent> {
        if self.native == Some(NativeApi::Responses) {
            return openai::responses::native::parse_event(state, ev);
        }
        match self.kind {
            ProviderKind::Openai => openai::upstream::parse_event(state, ev),
            ProviderKind::Anthropic => anthropic::upstream::parse_event(state, ev),
        }
    }
}

/// The path part of a URL, which a runner's signature covers.
fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/", |i| &rest[i..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::wire::openai::validate::validate_chat;
    use crate::wire::openai::ModelLimits;

    const C: ModelLimits = ModelLimits {
        context_window: 100,
        max_output_tokens: 10,
    };

    fn target(kind: ProviderKind, credential: Credential) -> Target {
        Target::for_config(&Upstream {
            name: "r".into(),
            kind,
            base_url: "http://runner:8090/v1".into(),
            credential,
            runner: None,
            responses_api: false,
        })
    }

    fn chat() -> ValidRequest {
        validate_chat(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
            1 << 20,
            &C,
        )
        .unwrap()
    }

    #[test]
    fn runner_requests_are_signed_not_bearer() {
        let t = target(ProviderKind::Openai, Credential::SigningSecret(Secret::new("s3cret")));
        let http = t.build_request(&chat(), "m", 1234, false).unwrap();
        assert!(!http.headers.iter().any(|(k, _)| k == "authorization"));
        assert!(!http.headers.iter().any(|(_, v)| v.contains("s3cret")));
        let get = |n: &str| http.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        let signed = signing::SignedRequest {
            timestamp: get(signing::HEADER_TIMESTAMP),
            signature: get(signing::HEADER_SIGNATURE),
            method: "POST",
            path: "/v1/chat/completions",
            body: &http.body,
        };
        assert_eq!(signing::verify(b"s3cret", &signed, 1234, 1000), Ok(()));
    }

    #[test]
    fn each_format_gets_its_own_key_header() {
        let key = || Credential::ApiKey(Secret::new("sk-up"));
        let oa = target(ProviderKind::Openai, key())
            .build_request(&chat(), "m", 0, false)
            .unwrap();
        assert!(oa.headers.contains(&("authorization".into(), "Bearer sk-up".into())));
        assert!(oa.url.ends_with("/v1/chat/completions"));
        let an = target(ProviderKind::Anthropic, key())
            .build_request(&chat(), "m", 0, false)
            .unwrap();
        assert!(an.headers.contains(&("x-api-key".into(), "sk-up".into())));
        assert!(an.headers.iter().any(|(k, _)| k == "anthropic-version"));
        assert!(!an.headers.iter().any(|(k, _)| k == "authorization"));
        assert!(an.url.ends_with("/v1/messages"));
    }
}
