//! The core's own CPU per request, natively: the gateway on the in-memory
//! platform with a scripted upstream, no runtime, no I/O. `make bench`
//! reports it beside workerd's and the Spin host's per-request CPU, so a
//! regression in the Rust code shows apart from the runtimes' cost.
//!
//! `cargo run --release --example core_cpu [requests]` prints one JSON
//! object: microseconds per request for each shape, single-threaded (the
//! wall time of a loop with no I/O and nothing else running is its CPU
//! time).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use futures_executor::{LocalPool, LocalSpawner};
use futures_util::task::LocalSpawnExt;
use futures_util::StreamExt;
use infergate::config::Config;
use infergate::gateway::stages::auth;
use infergate::gateway::{Body, Gateway, Request};
use infergate::platform::memory::MemoryKv;
use infergate::platform::*;
use serde_json::json;

const KEY: &str = "ig-bench-key";

/// The platform: in-memory KV, an upstream that answers every streamed
/// call with the same SSE body and every other with the same JSON (each in
/// one chunk), and a clock that never moves.
#[derive(Clone)]
struct Bench {
    kv: MemoryKv,
    upstream: Rc<RefCell<Bytes>>,
    spawner: LocalSpawner,
}

impl KvStore for Bench {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.kv.get(key).await
    }
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Option<u64>) -> Result<(), KvError> {
        self.kv.put(key, value, ttl).await
    }
    async fn delete(&self, key: &str) -> Result<(), KvError> {
        self.kv.delete(key).await
    }
    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<String>, KvError> {
        self.kv.list(prefix, limit).await
    }
}

impl StrictCounters for Bench {}

impl HttpClient for Bench {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        // Asked for JSON (a JSON client of an OpenAI upstream), it answers
        // JSON, as the benchmark's upstream does.
        let streams = serde_json::from_slice::<serde_json::Value>(&req.body).is_ok_and(|b| b["stream"] == true);
        let body = if streams {
            self.upstream.borrow().clone()
        } else {
            upstream_json()
        };
        Ok(HttpResponse {
            status: 200,
            headers: vec![],
            body: Box::pin(futures_util::stream::iter([Ok(body)])),
        })
    }
}

impl Runtime for Bench {
    fn spawn(&self, fut: LocalBoxFuture<()>) {
        let _ = self.spawner.spawn_local(fut);
    }
    fn sleep(&self, _ms: u64) -> LocalBoxFuture<()> {
        Box::pin(futures_util::future::ready(()))
    }
    fn now_ms(&self) -> u64 {
        1_789_430_400_000
    }
    fn monotonic_ms(&self) -> u64 {
        0
    }
    fn random_u64(&self) -> u64 {
        7
    }
}

/// What `make bench`'s upstream sends for its small chat request: six
/// frames, the last with usage.
fn upstream_sse() -> Bytes {
    let mut s = String::new();
    for (i, t) in ["Hello", " there", ",", " how", " are", " you"].iter().enumerate() {
        let role = if i == 0 { r#""role":"assistant","# } else { "" };
        s += &format!("data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{{role}\"content\":\"{t}\"}},\"finish_reason\":null}}]}}\n\n");
    }
    s += "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":6,\"total_tokens\":15}}\n\n";
    s += "data: [DONE]\n\n";
    Bytes::from(s)
}

/// The same answer as one `chat.completion`.
fn upstream_json() -> Bytes {
    Bytes::from_static(br#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, how are you"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":6,"total_tokens":15}}"#)
}

fn setup(pool: &LocalPool) -> (Gateway, Bench) {
    let cfg = json!({
        "providers": [{"name": "up", "kind": "openai", "base_url": "http://up/v1", "api_key_secret": "UP"}],
        "models": [{"id": "m", "targets": ["up"]}],
        // Per-key limits on, as a real key would have.
        "rate_limits": {"default_requests_per_minute": 1_000_000_000u64, "default_tokens_per_minute": 4_000_000_000u64}
    });
    let config = Config::from_json(&cfg.to_string(), &|n| (n == "UP").then(|| "sk-up".into())).expect("config");
    let platform = Bench {
        kv: MemoryKv::default(),
        upstream: Rc::new(RefCell::new(upstream_sse())),
        spawner: pool.spawner(),
    };
    let rec = auth::KeyRecord {
        v: 1,
        id: "k1".into(),
        tenant: "t".into(),
        name: String::new(),
        revoked: false,
        expires_at_ms: None,
        models: None,
        requests_per_minute: None,
        tokens_per_minute: None,
        monthly_token_budget: None,
        daily_budget_micros: None,
        monthly_budget_micros: None,
    };
    let key = auth::storage_key(&auth::key_hash(KEY));
    futures_executor::block_on(platform.kv.put(&key, serde_json::to_vec(&rec).expect("record"), None)).expect("seed");
    (Gateway::new(config), platform)
}

/// Microseconds per request for `n` requests of one shape, after a warm-up.
fn measure(n: u32, path: &str, body: serde_json::Value) -> f64 {
    let mut pool = LocalPool::new();
    let (gw, platform) = setup(&pool);
    let auth = vec![("authorization".to_string(), format!("Bearer {KEY}"))];
    let body = body.to_string();
    let one = |pool: &mut LocalPool| {
        let req = Request::new("POST", path, auth.clone(), body.clone());
        let resp = pool.run_until(gw.handle(&platform, req));
        assert_eq!(resp.status, 200, "{path}");
        if let Body::Stream(s) = resp.body {
            pool.run_until(s.for_each(|_| async {}));
        }
        // The account stage and counter flushes run here, as `waitUntil`
        // work would: they are part of each request's cost.
        pool.run_until_stalled();
    };
    for _ in 0..n / 10 {
        one(&mut pool);
    }
    let t = Instant::now();
    for _ in 0..n {
        one(&mut pool);
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let msgs = json!([{"role": "user", "content": "Say hello in a few words."}]);
    let out = json!({
        "requests": n,
        "chat_json_us": measure(n, "/v1/chat/completions", json!({"model": "m", "messages": msgs, "max_tokens": 16})),
        "chat_sse_us": measure(n, "/v1/chat/completions", json!({"model": "m", "messages": msgs, "max_tokens": 16, "stream": true})),
        "messages_sse_us": measure(n, "/v1/messages", json!({"model": "m", "messages": msgs, "max_tokens": 16, "stream": true})),
        "responses_sse_us": measure(n, "/v1/responses", json!({"model": "m", "input": "Say hello in a few words.", "max_output_tokens": 16, "stream": true})),
    });
    println!("{out}");
}
