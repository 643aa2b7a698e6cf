//! Exact-match response cache.
//!
//! Only deterministic requests (`temperature: 0` or a `seed`) are cached,
//! unless the client opts in with `x-infergate-cache-ttl: SECONDS`;
//! `x-infergate-cache: no-store` bypasses the cache both ways. The key is
//! the SHA-256 of a canonical JSON document holding the tenant scope, the
//! endpoint, the model and every output-affecting parameter, so tenants
//! never share entries (unless the operator says so) and two requests that
//! differ only in key order or in `0` vs `0.0` share one.
//!
//! Entries store the provider's stream events, not a rendering of them: a
//! hit is replayed as SSE or folded into JSON, whichever the request asked
//! for, and a stream is only stored after its terminal event.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::api::validate::Endpoint;
use crate::api::{Usage, ValidRequest};

pub const HEADER_STATUS: &str = "x-infergate-cache";
pub const HEADER_TTL: &str = "x-infergate-cache-ttl";
/// Workers KV refuses expirations under a minute.
const MIN_TTL_SECS: u64 = 60;
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

/// Decide the cache mode for a request. Pure.
pub fn mode(
    req: &ValidRequest,
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
        key: cache_key(req, scope),
        ttl_secs: ttl.clamp(MIN_TTL_SECS, MAX_TTL_SECS),
    }
}

/// `v1:cache:<sha256 of the canonical request>`.
pub fn cache_key(req: &ValidRequest, scope: &str) -> String {
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
    let mut doc = Map::new();
    doc.insert("v".into(), 1.into());
    doc.insert("scope".into(), scope.into());
    doc.insert("endpoint".into(), endpoint.into());
    doc.insert("model".into(), req.model.clone().into());
    doc.insert("request".into(), canonical(Value::Object(body)));
    // serde_json's Map is ordered by key (no `preserve_order`), so this
    // serialisation is canonical.
    let text = serde_json::to_string(&Value::Object(doc)).unwrap_or_default();
    format!("v1:cache:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

/// Normalise numbers so `0` and `0.0` hash alike.
fn canonical(v: Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(canonical).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, canonical(v))).collect()),
        other => other,
    }
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
    use crate::api::validate::validate_chat;
    use crate::api::ModelLimits;
    use serde_json::json;

    const C: ModelLimits = ModelLimits {
        context_window: 1000,
        max_output_tokens: 100,
    };

    fn req(v: Value) -> ValidRequest {
        validate_chat(v.to_string().as_bytes(), 1 << 20, &C).unwrap()
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
            let r = crate::api::validate::validate_embedding(v.to_string().as_bytes(), 1 << 20, &C).unwrap();
            cache_key(&r, "t")
        };
        let plain = emb(json!({"model":"m","input":"x"}));
        assert_eq!(plain, emb(json!({"model":"m","input":"x","encoding_format":"float"})));
        assert_ne!(plain, emb(json!({"model":"m","input":"x","encoding_format":"base64"})));
        assert_ne!(plain, emb(json!({"model":"m","input":"x","dimensions":4})));
    }
}
