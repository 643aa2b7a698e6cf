//! `GET /openapi.json` and `GET /docs`: the API description and a page
//! that renders it.
//!
//! Both are static bytes compiled into the binary. The document is the
//! committed output of `routes/openapi` ([`super::OPENAPI_JSON`]), so the
//! wasm builds carry no schema generator. The page is plain HTML with a
//! small inline renderer: it fetches `openapi.json` from the same origin and
//! loads nothing else (its Content-Security-Policy says so), which keeps it
//! working on an edge with no outbound access and leaks no visit to a CDN.

use super::OPENAPI_JSON;
use crate::gateway::{GatewayError, Response};

const DOCS_HTML: &str = include_str!("docs.html");

/// Nothing but same-origin fetches and the page's own inline code.
const DOCS_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                        connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
                        frame-ancestors 'none'";

fn static_response(
    method: &str,
    path: &'static str,
    content_type: &str,
    body: &'static str,
) -> Result<Response, GatewayError> {
    if !matches!(method, "GET" | "HEAD") {
        return Err(GatewayError::MethodNotAllowed {
            method: method.to_string(),
            path: path.to_string(),
            allowed: "GET, HEAD",
        });
    }
    Ok(Response {
        status: 200,
        headers: vec![
            ("content-type".into(), content_type.into()),
            ("cache-control".into(), "public, max-age=300".into()),
        ],
        body: super::Body::Full(bytes::Bytes::from_static(body.as_bytes())),
    })
}

/// `GET /openapi.json`.
pub(crate) fn openapi(method: &str) -> Result<Response, GatewayError> {
    static_response(method, "/openapi.json", "application/json", OPENAPI_JSON)
}

/// `GET /docs`.
pub(crate) fn page(method: &str) -> Result<Response, GatewayError> {
    let mut resp = static_response(method, "/docs", "text/html; charset=utf-8", DOCS_HTML)?;
    resp.headers.push(("content-security-policy".into(), DOCS_CSP.into()));
    resp.headers.push(("x-content-type-options".into(), "nosniff".into()));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_committed_document_and_a_self_contained_page() {
        let r = openapi("GET").unwrap();
        assert_eq!(r.header("content-type"), Some("application/json"));
        let super::super::Body::Full(b) = r.body else { panic!() };
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["openapi"], "3.1.0");

        let r = page("HEAD").unwrap();
        assert!(r
            .header("content-security-policy")
            .unwrap()
            .contains("connect-src 'self'"));
        // No external assets: no absolute URLs in src/href attributes or fetches.
        for needle in [
            "src=\"http",
            "href=\"http",
            "src=\"//",
            "href=\"//",
            "fetch(\"http",
            "@import",
        ] {
            assert!(
                !DOCS_HTML.contains(needle),
                "docs page references an external asset: {needle}"
            );
        }
        assert!(
            DOCS_HTML.len() < 16 * 1024,
            "keep the page small: {} bytes",
            DOCS_HTML.len()
        );

        let Err(e) = openapi("POST") else {
            panic!("POST /openapi.json must be refused")
        };
        assert_eq!(crate::wire::error::OpenAiError::status(&e), 405);
    }
}
