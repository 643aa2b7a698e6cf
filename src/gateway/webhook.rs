//! Outgoing webhooks (task results, budget alerts): a signed `POST`, tried
//! three times with backoff.
//!
//! The signature is the runners' request signature (`crate::signing`) over
//! the method, the URL's path and query, a timestamp and the body, with the
//! webhook secret; the receiver checks it the same way.

use super::upstream::attempt::with_timeout;
use crate::platform::{HttpClient, HttpRequest, Platform};
use crate::signing;

/// How long one delivery attempt may take.
const ATTEMPT_TIMEOUT_MS: u64 = 10_000;

/// POST `body` (JSON) to `url`, signed with `secret`; `what` names the
/// webhook in log lines (never the URL's query or the secret). Returns
/// whether a 2xx came back within three attempts (1 s and 2 s apart).
pub async fn deliver<P: Platform>(p: &P, url: &str, secret: &[u8], body: Vec<u8>, what: &str) -> bool {
    let path = url_path(url);
    for attempt in 0..3u32 {
        if attempt > 0 {
            p.sleep(1000 << (attempt - 1)).await;
        }
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        headers.extend(signing::signed_headers(secret, p.now_ms(), "POST", &path, &body));
        let req = HttpRequest {
            method: "POST",
            url: url.to_string(),
            headers,
            body: body.clone().into(),
            cancel_on_drop: true,
        };
        match with_timeout(p, ATTEMPT_TIMEOUT_MS, HttpClient::send(p, req)).await {
            Some(Ok(r)) if (200..300).contains(&r.status) => return true,
            Some(Ok(r)) => tracing::warn!(webhook = what, status = r.status, attempt, "webhook rejected"),
            _ => tracing::warn!(webhook = what, attempt, "webhook delivery failed"),
        }
    }
    false
}

/// The path (and query) of a URL, which the webhook signature covers.
pub fn url_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    match rest.find('/') {
        Some(i) => rest[i..].to_string(),
        None => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::url_path;

    #[test]
    fn webhook_path() {
        assert_eq!(url_path("http://127.0.0.1:9/hook?x=1"), "/hook?x=1");
        assert_eq!(url_path("https://example.test"), "/");
    }
}
