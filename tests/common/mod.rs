//! What the core's integration tests share: a trait fake of the
//! platform (scripted upstream bytes, in-memory KV, a manual clock), a
//! gateway with one key, and log capture.
#![allow(dead_code)] // each test binary uses its own part

pub mod answer;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::Bytes;
use futures_executor::LocalPool;
use futures_util::task::LocalSpawnExt;
use futures_util::StreamExt;
use infergate::config::Config;
use infergate::gateway::stages::auth;
use infergate::gateway::{Body, Gateway, Request, Response};
use infergate::platform::memory::{MemoryCounters, MemoryKv};
use infergate::platform::*;
use serde_json::{json, Value};

#[derive(Clone)]
pub struct Fake {
    pub kv: MemoryKv,
    /// Upstream response: status and body chunks.
    pub upstream: Rc<RefCell<(u16, Vec<Bytes>)>>,
    pub sent: Rc<RefCell<Vec<HttpRequest>>>,
    pub spawner: futures_executor::LocalSpawner,
    pub now: Rc<Cell<u64>>,
    /// After its scripted chunks the upstream keeps the connection open
    /// and sends nothing more.
    pub hang: Rc<Cell<bool>>,
    /// Milliseconds that pass while each upstream chunk is in flight.
    pub tick_ms: Rc<Cell<u64>>,
    /// KV reads yield to other tasks once before they answer, as a real
    /// store's do, so requests in flight together interleave there.
    pub kv_yields: Rc<Cell<bool>>,
    /// The strict store (`rate_limits.backend: "strict"`).
    pub strict: MemoryCounters,
    /// The upstream streams even when asked for JSON, as some proxies do.
    pub always_streams: Rc<Cell<bool>>,
}

/// Pending once, then ready: a KV read that takes a turn of the executor.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

impl StrictCounters for Fake {
    fn strict_missing(&self) -> Option<&'static str> {
        None
    }
    /// A round trip to the store: requests in flight together reach it in
    /// turn, as they reach a Durable Object.
    async fn charge(&self, shard: &str, charges: &[Charge]) -> Result<Charged, KvError> {
        if self.kv_yields.get() {
            YieldOnce(false).await;
        }
        self.strict.charge(shard, charges).await
    }
}

impl KvStore for Fake {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        if self.kv_yields.get() {
            YieldOnce(false).await;
        }
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

impl HttpClient for Fake {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let streams = serde_json::from_slice::<Value>(&req.body).is_ok_and(|b| b["stream"] == true);
        self.sent.borrow_mut().push(req);
        let (status, mut chunks) = self.upstream.borrow().clone();
        // Asked for JSON, a provider answers JSON, not its stream.
        if !streams && !self.always_streams.get() && (200..300).contains(&status) {
            if let Some(body) = answer::json_answer(&chunks.concat()) {
                chunks = vec![Bytes::from(body)];
            }
        }
        let (now, tick) = (self.now.clone(), self.tick_ms.get());
        let body = futures_util::stream::iter(chunks).map(move |c| {
            now.set(now.get() + tick);
            Ok(c)
        });
        let body: BodyStream = if self.hang.get() {
            Box::pin(body.chain(futures_util::stream::pending()))
        } else {
            Box::pin(body)
        };
        Ok(HttpResponse {
            status,
            headers: vec![],
            body,
        })
    }
}

impl Runtime for Fake {
    fn spawn(&self, fut: LocalBoxFuture<()>) {
        self.spawner.spawn_local(fut).unwrap();
    }
    fn sleep(&self, _ms: u64) -> LocalBoxFuture<()> {
        // Time does not pass here: backoffs end at once, and timeouts never
        // win because a `Deadline` polls the (always ready) scripted
        // upstream first.
        Box::pin(futures_util::future::ready(()))
    }
    fn now_ms(&self) -> u64 {
        self.now.get()
    }
    fn monotonic_ms(&self) -> u64 {
        self.now.get()
    }
    /// Distinct values (ids must not collide), the same sequence every run.
    fn random_u64(&self) -> u64 {
        thread_local!(static NEXT: Cell<u64> = const { Cell::new(42) });
        NEXT.with(|n| {
            let v = n.get();
            n.set(
                v.wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407),
            );
            v
        })
    }
}

pub const KEY: &str = "ig-test-key";

pub fn setup(pool: &LocalPool) -> (Gateway, Fake) {
    setup_with(
        pool,
        json!({
            "providers": [{"name": "up", "kind": "openai", "base_url": "http://up/v1", "api_key_secret": "UP"}],
            "models": [{"id": "m", "targets": ["up"]}]
        }),
    )
}

pub fn setup_with(pool: &LocalPool, cfg: Value) -> (Gateway, Fake) {
    let config = Config::from_json(&cfg.to_string(), &|n| (n == "UP").then(|| "sk-up".into())).unwrap();
    let fake = Fake {
        kv: MemoryKv::default(),
        upstream: Rc::new(RefCell::new((200, vec![]))),
        sent: Rc::default(),
        spawner: pool.spawner(),
        now: Rc::new(Cell::new(1_000)),
        hang: Rc::default(),
        tick_ms: Rc::default(),
        kv_yields: Rc::default(),
        strict: MemoryCounters::default(),
        always_streams: Rc::new(Cell::new(false)),
    };
    seed_key(&fake, KEY, "k1", "t");
    (Gateway::new(config), fake)
}

/// A key record with no limits: id `id`, tenant `tenant`.
pub fn key_record(id: &str, tenant: &str) -> auth::KeyRecord {
    auth::KeyRecord {
        v: 1,
        id: id.into(),
        tenant: tenant.into(),
        name: String::new(),
        revoked: false,
        expires_at_ms: None,
        models: None,
        requests_per_minute: None,
        tokens_per_minute: None,
        monthly_token_budget: None,
        daily_budget_micros: None,
        monthly_budget_micros: None,
    }
}

/// Store `key_record(id, tenant)` for the API key `key`.
pub fn seed_key(fake: &Fake, key: &str, id: &str, tenant: &str) {
    put_record(fake, key, &key_record(id, tenant));
}

/// Store `rec` as the record of API key `key` (replacing its record).
pub fn put_record(fake: &Fake, key: &str, rec: &auth::KeyRecord) {
    futures_executor::block_on(fake.kv.put(
        &auth::storage_key(&auth::key_hash(key)),
        serde_json::to_vec(rec).unwrap(),
        None,
    ))
    .unwrap();
}

pub fn chat(stream: bool) -> Request {
    Request {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![("authorization".into(), format!("Bearer {KEY}"))],
        body: Ok(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream})
                .to_string()
                .into(),
        ),
        geo: None,
    }
}

pub fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Bytes> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut out = vec![];
    let mut last = 0;
    for p in points {
        out.push(Bytes::copy_from_slice(&bytes[last..p]));
        last = p;
    }
    out.push(Bytes::copy_from_slice(&bytes[last..]));
    out
}

pub fn run(pool: &mut LocalPool, gw: &Gateway, fake: &Fake, req: Request) -> (Response, Vec<u8>) {
    let mut resp = pool.run_until(gw.handle(fake, req));
    let body = std::mem::replace(&mut resp.body, Body::Full(Bytes::new()));
    let bytes = match body {
        Body::Full(b) => b.to_vec(),
        Body::Stream(s) => pool.run_until(s.map(|c| c.unwrap().to_vec()).concat()),
    };
    (resp, bytes)
}

thread_local! {
    /// This thread's captured log bytes, while [`capture_logs`] runs.
    static CAPTURED: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
}

/// Writes into the calling thread's capture buffer (and drops lines logged
/// outside a capture).
struct ThreadLogs;

impl std::io::Write for ThreadLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURED.with(|c| {
            if let Some(v) = c.borrow_mut().as_mut() {
                v.extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Run `f` with this thread's log lines captured (only this test's).
///
/// One global subscriber, installed once, writes per thread. A scoped
/// subscriber (`with_default`) is not enough while other test threads run:
/// a callsite they hit first can cache "no interest" before this thread's
/// scope exists, and the line is then never logged here.
pub fn capture_logs(f: impl FnOnce()) -> String {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let sub = tracing_subscriber::fmt()
            .json()
            .without_time()
            .with_writer(|| ThreadLogs)
            .finish();
        tracing::subscriber::set_global_default(sub).expect("no other global subscriber in this test binary");
    });
    CAPTURED.with(|c| *c.borrow_mut() = Some(Vec::new()));
    f();
    let bytes = CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default();
    String::from_utf8(bytes).unwrap()
}
