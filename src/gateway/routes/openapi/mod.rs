//! The OpenAPI 3.1 documents of the edge and of the native runner, built
//! from the wire types' `ToSchema` derives.
//!
//! # Layout
//! - `mod.rs` (this file): the entry points, canonical serialisation and
//!   the freshness test.
//! - `parts`: tags, headers, parameters, shared error responses, builders.
//! - `edge`: the edge's routes, schemas and security schemes.
//! - `runner`: the native runner's routes.
//! - `schemas`: response shapes that exist only as JSON values in the code.
//! - `edge.json`, `runner.json`: the committed documents.
//!
//! This module is compiled for the unit tests and with the `openapi`
//! feature only. The wasm builds serve the committed output
//! ([`crate::gateway::routes::OPENAPI_JSON`], `edge.json` here) so they
//! carry no utoipa; the unit test `committed_documents_are_fresh` regenerates
//! both documents and fails when a committed file differs, and
//! `make openapi` rewrites them.

mod edge;
mod parts;
mod runner;
mod schemas;

use serde_json::{json, Map, Value};
use utoipa::openapi::OpenApi;

pub use edge::edge_document;
pub use runner::runner_document;

/// Serialise with object keys sorted at every level and two-space
/// indentation, so the output is byte-stable whatever serde_json features
/// the build unifies (`preserve_order` keeps insertion order otherwise).
pub fn to_canonical_json(doc: &OpenApi) -> String {
    fn sorted(v: Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut entries: Vec<(String, Value)> = m.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                let mut out = Map::new();
                for (k, v) in entries {
                    out.insert(k, sorted(v));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
            other => other,
        }
    }
    let value = serde_json::to_value(doc).unwrap_or_else(|e| json!({ "error": e.to_string() }));
    let mut s = serde_json::to_string_pretty(&sorted(value)).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str, committed: &str, generated: String) {
        if std::env::var_os("INFERGATE_UPDATE_OPENAPI").is_some() {
            let full = concat!(env!("CARGO_MANIFEST_DIR"), "/src/gateway/routes/openapi/");
            std::fs::write(format!("{full}{path}"), &generated).expect("write the document");
            return;
        }
        assert!(
            committed == generated,
            "src/gateway/routes/openapi/{path} is stale: run `make openapi` and commit the result"
        );
    }

    #[test]
    fn committed_documents_are_fresh() {
        check(
            "edge.json",
            crate::gateway::routes::OPENAPI_JSON,
            to_canonical_json(&edge_document()),
        );
        check(
            "runner.json",
            crate::gateway::routes::RUNNER_OPENAPI_JSON,
            to_canonical_json(&runner_document()),
        );
    }

    #[test]
    fn every_reference_resolves() {
        for doc in [edge_document(), runner_document()] {
            let v = serde_json::to_value(&doc).unwrap();
            let mut refs = Vec::new();
            collect_refs(&v, &mut refs);
            assert!(!refs.is_empty());
            for r in refs {
                let pointer = r.trim_start_matches('#');
                assert!(v.pointer(pointer).is_some(), "dangling $ref {r}");
            }
        }
    }

    fn collect_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| collect_refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn documents_every_edge_route() {
        let v = serde_json::to_value(edge_document()).unwrap();
        assert_eq!(v["openapi"], "3.1.0");
        for (path, method) in [
            ("/v1/chat/completions", "post"),
            ("/v1/completions", "post"),
            ("/v1/embeddings", "post"),
            ("/v1/models", "get"),
            ("/v1/messages", "post"),
            ("/v1/responses", "post"),
            ("/v1/responses/{id}", "get"),
            ("/v1/responses/{id}", "delete"),
            ("/v1/responses/{id}/input_items", "get"),
            ("/v1/tasks", "post"),
            ("/v1/tasks/{id}", "get"),
            ("/health", "get"),
            ("/ready", "get"),
            ("/openapi.json", "get"),
            ("/docs", "get"),
            ("/admin/keys", "post"),
            ("/admin/keys", "get"),
            ("/admin/keys/{id}", "get"),
            ("/admin/keys/{id}", "delete"),
            ("/admin/keys/{id}/rotate", "post"),
            ("/admin/usage", "get"),
            ("/admin/stats", "get"),
        ] {
            assert!(
                v["paths"][path][method].is_object(),
                "{method} {path} is not documented"
            );
        }
        let err = &v["components"]["schemas"]["ErrorDetail"];
        for field in ["message", "type", "param", "code"] {
            assert!(err["properties"][field].is_object(), "ErrorDetail lacks {field}");
            assert!(err["required"].as_array().unwrap().iter().any(|r| r == field));
        }
        let rate_limited = &v["components"]["responses"]["RateLimited"];
        assert!(rate_limited["headers"]["Retry-After"].is_object());
    }
}
