//! Spin adapter (`wasm32-wasip2`, spin-sdk 7: a WASI 0.3 async component).
//!
//! The twin of `cloudflare.rs` and just as thin: request in, core, response
//! out, plus the platform traits. Variable and store names are the `const`s
//! below; spin-sdk and WASI types stay in this file.
//!
//! - **Config**: the Spin variable `infergate_config` holds the JSON. A secret
//!   the config names (`api_key_secret: "LOCAL_UPSTREAM_KEY"`) is read from
//!   the Spin variable of the same name in lower case, with every character
//!   outside `[a-z0-9_]` turned into `_` (`local_upstream_key`), because Spin
//!   variable names allow nothing else. An empty value counts as unset, so
//!   a manifest can declare a secret with `default = ""` and still get the
//!   "secret is not set" error when nobody supplied it.
//! - **KV**: Spin's default key-value store. Spin KV has no expiry, so a
//!   value written with a TTL is stored in an envelope carrying its expiry
//!   (see [`seal`]); `get` and `list` treat an expired value as absent and
//!   delete it. Values nobody reads again (past rate-limit windows, cold
//!   cache entries) are removed by a sweep: one write with a TTL in
//!   [`SWEEP_ONE_IN`] starts one in the background, which checks
//!   [`SWEEP_KEYS`] keys from a random place in the store. Every request
//!   writes a few values with TTLs, so expired ones are removed faster
//!   than they appear, and the store stays as large as what is live.
//! - **Background work** (`Runtime::spawn`) runs on wit-bindgen's task
//!   spawner: the component-model task of the request lives on after the
//!   response has been returned until every spawned future has finished, so
//!   the stream pump and the accounting step outlive the handler without
//!   holding the client.
//! - **Streaming**: the upstream body is read frame by frame and the client
//!   body is written chunk by chunk; nothing is buffered.
//!
//! Spin instantiates the component per request (or reuses an instance for
//! several), so the gateway is built once per instance and cached, like a
//! Workers isolate.

use std::cell::RefCell;
use std::future::poll_fn;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use spin_sdk::http::{FullBody, Request as SpinRequest};
use spin_sdk::key_value::Store;

use crate::gateway::bootstrap::{self, Host, Incoming};
use crate::gateway::{self, Body};
use crate::platform::{
    BodyStream, Charge, Charged, HttpClient, HttpError, HttpRequest, HttpResponse, KvError, KvStore, LocalBoxFuture,
    Runtime, StrictCounters, UPSTREAM_HEADERS_READ,
};

/// Spin variable holding the gateway config as JSON.
const CONFIG_VAR: &str = "infergate_config";
/// The key-value store (`key_value_stores` in spin.toml).
const KV_STORE: &str = "default";
/// Prefix of a value stored with an expiry: `#igkv1 <expires_at_ms>\n<value>`.
/// JSON never starts with `#`, so values written by other tools (raw JSON,
/// never expiring) are told apart from envelopes.
const ENVELOPE_MAGIC: &[u8] = b"#igkv1 ";
/// One write with a TTL in this many starts a sweep for expired values.
const SWEEP_ONE_IN: u64 = 16;
/// Keys one sweep reads (and deletes when expired).
const SWEEP_KEYS: usize = 256;
/// Request headers that belong to one hop and are never forwarded; wasi:http
/// refuses most of them anyway.
const HOP_BY_HOP: [&str; 8] = [
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "te",
    "proxy-connection",
    "content-length",
];

/// The Spin variable a secret named in the config is read from.
fn secret_variable(name: &str) -> String {
    name.chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect()
}

/// A variable's value; undefined and empty are both `None`. Provider
/// failures are logged by name only, never with a value.
async fn variable(name: &str) -> Option<String> {
    match spin_sdk::variables::get(name).await {
        Ok(v) if !v.is_empty() => Some(v),
        Ok(_) | Err(spin_sdk::variables::Error::Undefined(_)) => None,
        Err(_) => {
            tracing::warn!(variable = name, "could not read Spin variable");
            None
        }
    }
}

/// Spin variables: the config, and secrets under their Spin names.
struct SpinHost;

impl Host for SpinHost {
    fn config_var(&self) -> &'static str {
        CONFIG_VAR
    }
    fn config_hint(&self) -> &'static str {
        "define it in spin.toml [variables] and map it in the component's variables"
    }
    async fn config_json(&self) -> Option<String> {
        variable(CONFIG_VAR).await
    }
    async fn secret(&self, name: &str) -> Option<String> {
        variable(&secret_variable(name)).await
    }
}

/// Wrap `value` with its expiry (Unix ms) in the envelope Spin KV needs for
/// TTLs. A value without expiry is stored as is, unless it could be
/// mistaken for an envelope, in which case it gets one that never expires
/// (`0`).
fn seal(value: Vec<u8>, expires_at_ms: Option<u64>) -> Vec<u8> {
    if expires_at_ms.is_none() && !value.starts_with(ENVELOPE_MAGIC) {
        return value;
    }
    let header = format!("{}\n", expires_at_ms.unwrap_or(0));
    let mut out = Vec::with_capacity(ENVELOPE_MAGIC.len() + header.len() + value.len());
    out.extend_from_slice(ENVELOPE_MAGIC);
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&value);
    out
}

/// The value inside `stored`, or `None` when it has expired at `now_ms`.
fn unseal(stored: &[u8], now_ms: u64) -> Option<&[u8]> {
    let Some(rest) = stored.strip_prefix(ENVELOPE_MAGIC) else {
        return Some(stored);
    };
    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
        return Some(stored);
    };
    let Some(expires) = std::str::from_utf8(&rest[..nl])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return Some(stored);
    };
    (expires == 0 || expires > now_ms).then(|| &rest[nl + 1..])
}

/// Delete the expired values among [`SWEEP_KEYS`] keys of the store,
/// starting at `offset` (mod the number of keys). Spin KV has no
/// compare-and-swap, so a value rewritten between the read and the delete
/// can be lost, as in `get`; only values being rewritten at the instant
/// they expire are exposed (counters, cache entries), and they are rebuilt.
async fn sweep(store: Rc<Store>, now_ms: u64, offset: u64) {
    let Ok(keys) = store.get_keys().await.collect().await else {
        return;
    };
    if keys.is_empty() {
        return;
    }
    let start = (offset % keys.len() as u64) as usize;
    for key in keys.iter().cycle().skip(start).take(SWEEP_KEYS.min(keys.len())) {
        if let Ok(Some(v)) = store.get(key).await {
            if v.starts_with(ENVELOPE_MAGIC) && unseal(&v, now_ms).is_none() {
                let _ = store.delete(key).await;
            }
        }
    }
}

fn kv_error(e: spin_sdk::key_value::Error) -> KvError {
    KvError::Unavailable(format!("{e:?}"))
}

/// The Spin platform for one request.
#[derive(Clone, Default)]
struct Spin {
    /// Opened on first use: `/health` never touches KV.
    store: Rc<RefCell<Option<Rc<Store>>>>,
}

impl Spin {
    async fn store(&self) -> Result<Rc<Store>, KvError> {
        if let Some(s) = self.store.borrow().clone() {
            return Ok(s);
        }
        let opened = Rc::new(Store::open(KV_STORE).await.map_err(kv_error)?);
        Ok(self.store.borrow_mut().get_or_insert(opened).clone())
    }
}

impl KvStore for Spin {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let store = self.store().await?;
        let Some(stored) = store.get(key).await.map_err(kv_error)? else {
            return Ok(None);
        };
        match unseal(&stored, self.now_ms()) {
            Some(v) => Ok(Some(v.to_vec())),
            None => {
                // Expired: nothing else will ever remove it. Spin KV has no
                // compare-and-swap, so a write racing this delete can be
                // lost; only entries rewritten at the instant they expire
                // (counters, cache) are exposed, and they are rebuilt.
                let _ = store.delete(key).await;
                Ok(None)
            }
        }
    }
    async fn put(&self, key: &str, value: Vec<u8>, ttl_secs: Option<u64>) -> Result<(), KvError> {
        let expires = ttl_secs.map(|t| self.now_ms().saturating_add(t.saturating_mul(1000)));
        let store = self.store().await?;
        store.set(key, seal(value, expires)).await.map_err(kv_error)?;
        let r = self.random_u64();
        if expires.is_some() && r.is_multiple_of(SWEEP_ONE_IN) {
            self.spawn(Box::pin(sweep(store, self.now_ms(), r / SWEEP_ONE_IN)));
        }
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), KvError> {
        let store = self.store().await?;
        store.delete(key).await.map_err(kv_error)
    }
    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<String>, KvError> {
        let store = self.store().await?;
        // Spin KV lists every key; filter, sort, then drop expired entries
        // until `limit` live ones are found.
        let mut keys: Vec<String> = store
            .get_keys()
            .await
            .collect()
            .await
            .map_err(kv_error)?
            .into_iter()
            .filter(|k| k.starts_with(prefix))
            .collect();
        keys.sort();
        let mut out = Vec::new();
        for key in keys {
            if out.len() >= limit {
                break;
            }
            // `get` deletes what has expired: the next listing reads less.
            if self.get(&key).await?.is_some() {
                out.push(key);
            }
        }
        Ok(out)
    }
}

thread_local! {
    /// Strict counters this instance wrote, with when they stop mattering
    /// (Unix ms): `wasi:keyvalue` has no expiry, so the instance deletes
    /// them once they have.
    static EXPIRING: RefCell<Vec<(String, u64)>> = const { RefCell::new(Vec::new()) };
}

/// `wasi:keyvalue/atomics` (Spin's default store, or Redis by runtime
/// config): each charge is an atomic increment, checked against its bound
/// after the fact and rolled back when it broke it, with the charges
/// before it. Nothing can overshoot; a request that is rolled back may
/// briefly make a concurrent one see a higher count and be refused too,
/// which errs on the side of the limit.
impl StrictCounters for Spin {
    fn strict_missing(&self) -> Option<&'static str> {
        None
    }
    async fn charge(&self, _shard: &str, charges: &[Charge]) -> Result<Charged, KvError> {
        use spin_sdk::experimental::wasi::keyvalue::{atomics, store};
        let err = |e: store::Error| KvError::Unavailable(format!("wasi:keyvalue: {e:?}"));
        let bucket = store::open(KV_STORE).map_err(err)?;
        let now = self.now_ms();
        let mut after: Vec<i64> = Vec::with_capacity(charges.len());
        for (i, c) in charges.iter().enumerate() {
            let rollback = |upto: usize| {
                for (done, _) in charges[..upto].iter().zip(&after).rev() {
                    let _ = atomics::increment(&bucket, &done.key, done.delta.saturating_neg());
                }
            };
            let new = match atomics::increment(&bucket, &c.key, c.delta) {
                Ok(n) => n,
                Err(e) => {
                    rollback(i);
                    return Err(err(e));
                }
            };
            let current = new.saturating_sub(c.delta);
            if !c.bound.admits(current, c.delta) {
                let _ = atomics::increment(&bucket, &c.key, c.delta.saturating_neg());
                rollback(i);
                return Ok(Charged::Refused { index: i, current });
            }
            after.push(new);
        }
        EXPIRING.with(|e| {
            let mut e = e.borrow_mut();
            e.retain(|(key, until)| *until > now || bucket.delete(key).is_err());
            for c in charges {
                let until = now.saturating_add(c.ttl_secs.saturating_mul(1000));
                match e.iter_mut().find(|(k, _)| k == &c.key) {
                    Some(entry) => entry.1 = entry.1.max(until),
                    None => e.push((c.key.clone(), until)),
                }
            }
        });
        // Atomics are cheap in the host: no grants, every request asks.
        let granted = vec![0; after.len()];
        Ok(Charged::Applied { after, granted })
    }
}

/// The kind of a wasi:http error (`ConnectionRefused`, `HttpRequestDenied`,
/// …) without its payload, which could echo request details into logs.
fn error_kind(e: &impl std::fmt::Debug) -> String {
    let full = format!("{e:?}");
    let end = full.find(['(', '{', ' ']).unwrap_or(full.len());
    full[..end].trim_start_matches("ErrorCode::").to_string()
}

/// Headers as the core's name/value pairs (values that are not UTF-8 are
/// kept, lossily, rather than dropped).
fn header_pairs(h: &http::HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Turn an `http_body::Body` into the core's byte stream, frame by frame.
/// Dropping the stream drops the body, which closes the wasi:http stream and
/// so cancels the upstream request.
fn body_stream<B>(body: B) -> BodyStream
where
    B: HttpBody<Data = Bytes> + Unpin + 'static,
    B::Error: std::fmt::Debug,
{
    Box::pin(futures_util::stream::unfold(Some(body), |state| async move {
        let mut body = state?;
        loop {
            match poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                None => return None,
                Some(Err(e)) => {
                    let err = HttpError::Interrupted(error_kind(&e));
                    return Some((Err(err), None));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => return Some((Ok(data), Some(body))),
                    _ => continue, // empty chunks and trailers
                },
            }
        }
    }))
}

impl HttpClient for Spin {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let mut builder = http::Request::builder().method(req.method).uri(&req.url);
        for (k, v) in &req.headers {
            if !HOP_BY_HOP.iter().any(|h| k.eq_ignore_ascii_case(h)) {
                builder = builder.header(k, v);
            }
        }
        let request = builder
            .body(FullBody::new(req.body))
            .map_err(|_| HttpError::Connect("invalid upstream request".into()))?;
        // Errors are reduced to their kind: header values must never reach
        // a log (`allowed_outbound_hosts` refusals read `HttpRequestDenied`).
        let resp = spin_sdk::http::send(request)
            .await
            .map_err(|e| HttpError::Connect(error_kind(&e)))?;
        let status = resp.status().as_u16();
        let all = resp.headers();
        let headers = UPSTREAM_HEADERS_READ
            .iter()
            .filter_map(|&name| {
                let v = all.get(name)?;
                Some((name.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            })
            .collect();
        Ok(HttpResponse {
            status,
            headers,
            body: body_stream(resp.into_body()),
        })
    }
}

impl Runtime for Spin {
    fn spawn(&self, fut: LocalBoxFuture<()>) {
        spin_sdk::wit_bindgen::spawn(fut);
    }
    fn sleep(&self, ms: u64) -> LocalBoxFuture<()> {
        // wasi:clocks monotonic-clock@0.3 `wait-for`, an async import.
        Box::pin(spin_sdk::time::sleep(Duration::from_millis(ms)))
    }
    fn now_ms(&self) -> u64 {
        let now = spin_sdk::wasip3::clocks::system_clock::now();
        let secs = u64::try_from(now.seconds).unwrap_or(0);
        secs * 1000 + u64::from(now.nanoseconds / 1_000_000)
    }
    fn monotonic_ms(&self) -> u64 {
        // wasi:clocks monotonic-clock: nanoseconds from an arbitrary origin.
        spin_sdk::wasip3::clocks::monotonic_clock::now() / 1_000_000
    }
    fn random_u64(&self) -> u64 {
        spin_sdk::wasip3::random::random::get_random_u64()
    }
    fn memory_bytes(&self) -> Option<u64> {
        Some(super::wasm_memory_bytes())
    }
}

/// The response body handed to Spin: a full body, or the core's stream
/// forwarded one chunk per frame as each chunk arrives.
enum OutBody {
    Full(Option<Bytes>),
    Stream(BodyStream),
}

impl HttpBody for OutBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match self.get_mut() {
            OutBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            OutBody::Stream(s) => s.as_mut().poll_next(cx).map(|o| o.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, OutBody::Full(None))
    }
}

fn to_spin(resp: gateway::Response) -> http::Response<OutBody> {
    let body = match resp.body {
        Body::Full(b) => OutBody::Full(Some(b)),
        Body::Stream(s) => OutBody::Stream(s),
    };
    let mut out = http::Response::new(body);
    *out.status_mut() = http::StatusCode::from_u16(resp.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    let headers = out.headers_mut();
    for (k, v) in &resp.headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
    out
}

#[spin_sdk::http_service]
async fn handle(req: SpinRequest) -> http::Response<OutBody> {
    // JSON lines to the stderr, which Spin collects per component.
    super::init_tracing(std::io::stderr);
    let gw = bootstrap::isolate_gateway(&SpinHost).await;
    let incoming = Incoming {
        method: req.method().as_str().to_string(),
        // The core routes on the path and reads admin query parameters from it.
        path: req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string(),
        headers: header_pairs(req.headers()),
        body: Some(body_stream(req.into_body())),
        geo: None,
    };
    to_spin(bootstrap::serve(&gw, &SpinHost, incoming, || Ok(Spin::default())).await)
}
