//! The native runners. They speak the OpenAI wire format, so requests and
//! chunks are the `openai` provider's; what differs is authentication:
//! instead of a bearer key, each request is signed with HMAC-SHA256 over
//! its timestamp, method, path and body hash (`crate::signing`), which the
//! runner verifies inside a five-minute window.

use super::openai::OpenAi;
use super::{ParseState, ProviderApi, ProviderError};
use crate::api::ValidRequest;
use crate::config::{Provider, Secret};
use crate::platform::HttpRequest;
use crate::signing;
use crate::sse::SseEvent;
use crate::stream::StreamEvent;

#[derive(Debug, Clone)]
pub struct Runner {
    inner: OpenAi,
    secret: Option<Secret>,
}

impl Runner {
    pub fn new(p: &Provider) -> Self {
        Runner {
            inner: OpenAi::unauthenticated(&p.base_url),
            secret: p.api_key.clone(),
        }
    }
}

/// The path part of a URL, which the signature covers.
fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/", |i| &rest[i..])
}

impl ProviderApi for Runner {
    fn build_request(
        &self,
        req: &ValidRequest,
        upstream_model: &str,
        now_ms: u64,
    ) -> Result<HttpRequest, ProviderError> {
        let mut http = self.inner.build_request(req, upstream_model, now_ms)?;
        if let Some(secret) = &self.secret {
            let path = url_path(&http.url).to_string();
            let headers = signing::signed_headers(secret.expose().as_bytes(), now_ms, http.method, &path, &http.body);
            http.headers.extend(headers);
        }
        Ok(http)
    }

    fn parse_error(&self, status: u16, retry_after: Option<&str>, body: &[u8]) -> ProviderError {
        self.inner.parse_error(status, retry_after, body)
    }

    fn parse_event(&self, state: &mut ParseState, ev: &SseEvent) -> Vec<StreamEvent> {
        self.inner.parse_event(state, ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::validate::validate_chat;
    use crate::api::ModelLimits;

    const C: ModelLimits = ModelLimits {
        context_window: 100,
        max_output_tokens: 10,
    };

    #[test]
    fn requests_are_signed_not_bearer() {
        let p = Provider {
            name: "r".into(),
            kind: crate::config::ProviderKind::Openai,
            base_url: "http://runner:8090/v1".into(),
            api_key: Some(Secret::new("s3cret")),
            runner: None,
        };
        let req = validate_chat(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
            1 << 20,
            &C,
        )
        .unwrap();
        let http = Runner::new(&p).build_request(&req, "m", 1234).unwrap();
        assert!(!http.headers.iter().any(|(k, _)| k == "authorization"));
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
}
