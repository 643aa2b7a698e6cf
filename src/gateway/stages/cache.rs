//! Exact-match response cache.
//!
//! Only deterministic requests (`temperature: 0` or a `seed`) are cached,
//! unless the client opts in with `x-infergate-cache-ttl: SECONDS`;
//! `x-infergate-cache: no-store` bypasses the cache both ways. The key is
//! the SHA-256 of a canonical JSON document (RFC 8785, JCS) holding the
//! tenant scope, the endpoint, the model, what the config resolves it to
//! (the upstream model and the target chain's names) and every
//! output-affecting parameter. So tenants never share entries (unless the
//! operator says so), a config remap does not serve the old mapping's
//! answers, and two requests that differ only in key order or in how a
//! number is written (`0`, `0.0`, `1e2`) share one.
//!
//! Entries store the provider's stream events, not a rendering of them: a
//! hit is replayed as SSE or folded into JSON, whichever the request asked
//! for, and a stream is only stored after its terminal event.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::wire::openai::validate::Endpoint;
use crate::wire::openai::{Usage, ValidRequest};

pub const HEADER_STATUS: &str = "x-infergate-cache";
pub const HEADER_TTL: &str = "x-infergate-cache-ttl";
const MAX_TTL_SECS: u64 = 365 * 86_400;

/// Body fields that do not change the output and so stay out of the key.
const NOT_OUTPUT_AFFECTING: &[&str] = &["stream", "stream_options", "user", "metadata", "store", "webhook_url"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheMode {
    /// Not cacheable or opted out: neither read nor written.
    Bypass,
    /// Look up `key`; on a miss store the answer for `ttl_secs`.
    Use { key: String, ttl_secs: u64 },
}

impl CacheMode {
    pub fn status(&self, hit: bool) -> &'static str {
        match (self, hit) {
            (CacheMode::Bypass, _) => "BYPASS",
            (_, true) => "HIT",
            (_, false) => "MISS",
        }
    }
}

/// What the config resolves a request's model to. Part of its cache key:
/// the same request to a remapped model is another question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub upstream_model: String,
    /// The target chain's provider names ([`crate::gateway::upstream::plan::chain_names`]).
    pub chain: Vec<String>,
    /// A Responses request's fields that its chat body does not carry
    /// (`wire::openai::responses::untranslated`); empty for every other
    /// route, and then not part of the key, so a Responses request that chat
    /// expresses whole shares entries with the same chat request.
    pub untranslated: Map<String, Value>,
}

/// Decide the cache mode for a request. Pure.
pub fn mode(
    req: &ValidRequest,
    resolved: &Resolved,
    headers: &[(String, String)],
    tenant: &str,
    shared: bool,
    default_ttl_secs: u64,
    enabled: bool,
) -> CacheMode {
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.trim())
    };
    if !enabled || header(HEADER_STATUS).is_some_and(|v| v.eq_ignore_ascii_case("no-store")) {
        return CacheMode::Bypass;
    }
    let opt_in = header(HEADER_TTL)
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|t| *t > 0);
    let ttl = match opt_in {
        Some(t) => t,
        None if req.deterministic => default_ttl_secs,
        None => return CacheMode::Bypass,
    };
    let scope = if shared { "*" } else { tenant };
    CacheMode::Use {
        key: cache_key(req, resolved, scope),
        ttl_secs: ttl.clamp(1, MAX_TTL_SECS),
    }
}

/// `v2:cache:<sha256 of the canonical request>`.
///
/// Key format versions (the prefix and the hashed document's `v` move
/// together; a new derivation bumps both, so old entries are never read):
/// - v1: `serde_json`'s sorted `Map` as the canonical form; no upstream
///   model or chain.
/// - v2: RFC 8785 (JCS) through `serde_jcs`, which sorts keys and writes
///   numbers the ECMAScript way itself, whatever `serde_json` features
///   another crate turns on (`preserve_order` would unsort `Map`); adds the
///   resolved upstream model and target chain.
pub fn cache_key(req: &ValidRequest, resolved: &Resolved, scope: &str) -> String {
    let mut body = req.body.clone();
    for k in NOT_OUTPUT_AFFECTING {
        body.remove(*k);
    }
    // The stored body is in the requested encoding; floats are the default.
    if body.get("encoding_format").and_then(Value::as_str) == Some("float") {
        body.remove("encoding_format");
    }
    let endpoint = match req.endpoint {
        Endpoint::Chat => "chat",
        Endpoint::Completion => "completion",
        Endpoint::Embedding => "embedding",
    };
    let mut doc = serde_json::json!({
        "v": 2,
        "scope": scope,
        "endpoint": endpoint,
        "model": req.model,
        "upstream_model": resolved.upstream_model,
        "chain": resolved.chain,
        "request": Value::Object(body),
    });
    if !resolved.untranslated.is_empty() {
        doc["responses"] = Value::Object(resolved.untranslated.clone());
    }
    // JCS fails only on values JSON cannot hold (non-finite floats), which
    // a parsed request never has; an empty text would still be one key.
    let text = serde_jcs::to_string(&doc).unwrap_or_default();
    format!("v2:cache:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

/// What is stored under a cache key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CacheEntry {
    pub v: u32,
    /// The stream's chunks in order (chat / completions), usage removed.
    #[serde(default)]
    pub chunks: Vec<Map<String, Value>>,
    #[serde(default)]
    pub usage: Option<Usage>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// A whole JSON body (embeddings).
    #[serde(default)]
    pub body: Option<Value>,
    pub created_ms: u64,
}

impl CacheEntry {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A stored entry that does not parse (an older format, corruption) is
    /// a miss, never an error.
    pub fn decode(raw: &[u8]) -> Option<CacheEntry> {
        serde_json::from_slice::<CacheEntry>(raw).ok().filter(|e| e.v == 1)
    }
}

/// Collects a stream's chunks for storage; gives up past the size cap.
#[derive(Debug)]
pub struct Recorder {
    pub chunks: Vec<Map<String, Value>>,
    bytes: usize,
    max_bytes: usize,
    overflowed: bool,
}

impl Recorder {
    pub fn new(max_bytes: usize) -> Self {
        Recorder {
            chunks: Vec::new(),
            bytes: 0,
            max_bytes,
            overflowed: false,
        }
    }

    pub fn push(&mut self, chunk: &Map<String, Value>) {
        if self.overflowed {
            return;
        }
        let mut c = chunk.clone();
        // Usage is stored once, separately; a usage-only chunk is dropped.
        let had_usage = c.remove("usage").is_some_and(|u| u.is_object());
        if had_usage && c.get("choices").and_then(Value::as_array).is_none_or(Vec::is_empty) {
            return;
        }
        self.bytes += serde_json::to_string(&c).map_or(0, |s| s.len());
        if self.bytes > self.max_bytes {
            self.overflowed = true;
            self.chunks.clear();
            return;
        }
        self.chunks.push(c);
    }

    /// Whether a whole body of `bytes` may be stored (embeddings).
    pub fn fits(&self, bytes: usize) -> bool {
        bytes <= self.max_bytes
    }

    /// The entry to store, if the stream fit.
    pub fn finish(self, usage: Option<Usage>, finish_reason: Option<String>, now_ms: u64) -> Option<CacheEntry> {
        (!self.overflowed).then_some(CacheEntry {
            v: 1,
            chunks: self.chunks,
            usage,
            finish_reason,
            body: None,
            created_ms: now_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::openai::validate::validate_chat;
    use crate::wire::openai::ModelLimits;
    use serde_json::json;

    const C: ModelLimits = ModelLimits {
        context_window: 1000,
        max_output_tokens: 100,
    };

    fn req(v: Value) -> ValidRequest {
        validate_chat(v.to_string().as_bytes(), 1 << 20, &C).unwrap()
    }

    fn resolved(upstream_model: &str, chain: &[&str]) -> Resolved {
        Resolved {
            untranslated: Map::new(),
            upstream_model: upstream_model.into(),
            chain: chain.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn cache_key(r: &ValidRequest, scope: &str) -> String {
        super::cache_key(r, &resolved("m", &["up"]), scope)
    }

    #[test]
    fn key_holds_the_upstream_model_and_the_chain() {
        let a = req(json!({"model":"m","temperature":0,"messages":[{"role":"user","content":"x"}]}));
        let base = super::cache_key(&a, &resolved("m-v1", &["up"]), "t");
        assert!(base.starts_with("v2:cache:"), "{base}");
        assert_ne!(base, super::cache_key(&a, &resolved("m-v2", &["up"]), "t"));
        assert_ne!(base, super::cache_key(&a, &resolved("m-v1", &["other"]), "t"));
        assert_ne!(base, super::cache_key(&a, &resolved("m-v1", &["up", "other"]), "t"));
        assert_eq!(base, super::cache_key(&a, &resolved("m-v1", &["up"]), "t"));
    }

    /// Parsed from text, so the request's own spelling is what varies:
    /// key order at every depth, and numbers written several ways.
    #[test]
    fn key_ignores_key_order_and_number_spelling() {
        let parse = |s: &str| validate_chat(s.as_bytes(), 1 << 20, &C).unwrap();
        let a = parse(
            r#"{"model":"m","temperature":0,"top_p":1,"seed":100,"messages":[{"role":"user","content":"x"}],
                "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"n":{"type":"number","maximum":0.5,"minimum":10000000000000000}}}}}],
                "logit_bias":{"50256":-100,"11":1.5}}"#,
        );
        let b = parse(
            r#"{"logit_bias":{"11":15e-1,"50256":-1E2},"tools":[{"function":{"parameters":{"properties":{"n":{"minimum":1e16,"maximum":5e-1,"type":"number"}},"type":"object"},"name":"f"},"type":"function"}],
                "messages":[{"content":"x","role":"user"}],"seed":100,"top_p":1.0,"temperature":0.0,"model":"m"}"#,
        );
        assert_eq!(cache_key(&a, "t"), cache_key(&b, "t"));
        let c = parse(r#"{"model":"m","temperature":0,"top_p":0.9,"messages":[{"role":"user","content":"x"}]}"#);
        assert_ne!(cache_key(&a, "t"), cache_key(&c, "t"));
    }

    #[test]
    fn key_is_canonical_and_scoped() {
        let a = req(json!({"model":"m","temperature":0,"messages":[{"role":"user","content":"x"}],"stream":true}));
        let b = req(json!({"messages":[{"content":"x","role":"user"}],"temperature":0.0,"model":"m","user":"u"}));
        assert_eq!(cache_key(&a, "t1"), cache_key(&b, "t1"));
        assert_ne!(cache_key(&a, "t1"), cache_key(&a, "t2"));
        let c = req(json!({"model":"m","temperature":0,"messages":[{"role":"user","content":"y"}]}));
        assert_ne!(cache_key(&a, "t1"), cache_key(&c, "t1"));
        let d = req(json!({"model":"m","temperature":0,"max_tokens":5,"messages":[{"role":"user","content":"x"}]}));
        assert_ne!(cache_key(&a, "t1"), cache_key(&d, "t1"));
    }

    #[test]
    fn mode_rules() {
        let det = req(json!({"model":"m","temperature":0,"messages":[{"role":"user","content":"x"}]}));
        let rnd = req(json!({"model":"m","messages":[{"role":"user","content":"x"}]}));
        let h = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let r = resolved("m", &["up"]);
        let mode = |req: &ValidRequest, h: &[(String, String)], t: &str, s: bool, ttl: u64, on: bool| {
            mode(req, &r, h, t, s, ttl, on)
        };
        assert!(matches!(
            mode(&det, &[], "t", false, 600, true),
            CacheMode::Use { ttl_secs: 600, .. }
        ));
        assert_eq!(mode(&rnd, &[], "t", false, 600, true), CacheMode::Bypass);
        assert!(matches!(
            mode(&rnd, &h(HEADER_TTL, "120"), "t", false, 600, true),
            CacheMode::Use { ttl_secs: 120, .. }
        ));
        assert_eq!(
            mode(&det, &h(HEADER_STATUS, "no-store"), "t", false, 600, true),
            CacheMode::Bypass
        );
        assert_eq!(mode(&det, &[], "t", false, 600, false), CacheMode::Bypass);
    }

    /// The stored body is in the client's encoding, so the encoding (with
    /// `float` and its default spelled alike) and `dimensions` are keyed.
    #[test]
    fn embedding_keys_hold_encoding_and_dimensions() {
        let emb = |v: Value| {
            let r = crate::wire::openai::validate::validate_embedding(v.to_string().as_bytes(), 1 << 20, &C).unwrap();
            cache_key(&r, "t")
        };
        let plain = emb(json!({"model":"m","input":"x"}));
        assert_eq!(plain, emb(json!({"model":"m","input":"x","encoding_format":"float"})));
        assert_ne!(plain, emb(json!({"model":"m","input":"x","encoding_format":"base64"})));
        assert_ne!(plain, emb(json!({"model":"m","input":"x","dimensions":4})));
    }
}
