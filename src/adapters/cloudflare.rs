//! Cloudflare Workers adapter (`wasm32-unknown-unknown`, the `worker` crate).
//!
//! Thin by design: request in, core, response out. Binding and variable
//! names are the `const`s below; `JsValue`s and other Workers types stay in
//! this file. The gateway is built once per isolate and reused, so its
//! in-isolate caches (keys, rate-limit counters, circuits) survive between
//! requests the way Workers intends.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsCast;
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{self, ReadableStream, ReadableStreamDefaultReader};
use worker::{event, Context, Env};

use crate::gateway::bootstrap::{self, Host, Incoming};
use crate::gateway::{self, Body};
use crate::platform::{
    BodyStream, Charge, Charged, HttpClient, HttpError, HttpRequest, HttpResponse, KvError, KvStore, LocalBoxFuture,
    Runtime, StrictCounters, UPSTREAM_HEADERS_READ,
};

/// KV namespace binding holding keys, counters, cache and usage.
const KV_BINDING: &str = "KV";
/// Variable (or secret) holding the gateway config as JSON.
const CONFIG_VAR: &str = "INFERGATE_CONFIG";
/// The largest upstream body read whole (one `arrayBuffer()` promise)
/// rather than chunk by chunk, in bytes of its declared `content-length`.
const WHOLE_BODY_MAX: usize = 8 << 20;
/// Workers KV refuses shorter expirations.
const KV_MIN_TTL_SECS: u64 = 60;

/// Variables and secrets from the Worker's `Env`.
struct WorkersHost<'a>(&'a Env);

impl WorkersHost<'_> {
    fn string(&self, name: &str) -> Option<String> {
        self.0
            .secret(name)
            .map(|s| s.to_string())
            .or_else(|_| self.0.var(name).map(|v| v.to_string()))
            .ok()
            .filter(|v| !v.is_empty())
    }
}

impl Host for WorkersHost<'_> {
    fn config_var(&self) -> &'static str {
        CONFIG_VAR
    }
    fn config_hint(&self) -> &'static str {
        "define it in wrangler.toml [vars] or as a secret"
    }
    async fn config_json(&self) -> Option<String> {
        self.string(CONFIG_VAR)
    }
    async fn secret(&self, name: &str) -> Option<String> {
        self.string(name)
    }
}

/// A `MakeWriter` that hands each formatted line to `console.log`.
#[derive(Default)]
struct ConsoleWriter(Vec<u8>);

impl std::io::Write for ConsoleWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ConsoleWriter {
    fn drop(&mut self) {
        let line = String::from_utf8_lossy(&self.0);
        worker::console_log!("{}", line.trim_end());
    }
}

/// The Workers platform for one request. Bindings are looked up when
/// first used: most requests touch neither KV (keys and counters are
/// cached in the isolate) nor the Durable Object, and a binding's wrapper
/// costs several crossings into JS to build.
#[derive(Clone)]
struct Workers {
    env: Rc<Env>,
    kv: Rc<std::cell::OnceCell<worker::kv::KvStore>>,
    ctx: Rc<Context>,
    /// The strict rate-limit store, `None` inside when not bound (`durable`).
    limiter: Rc<std::cell::OnceCell<Option<worker::ObjectNamespace>>>,
}

impl Workers {
    fn kv(&self) -> Result<&worker::kv::KvStore, KvError> {
        if let Some(kv) = self.kv.get() {
            return Ok(kv);
        }
        let kv = self
            .env
            .kv(KV_BINDING)
            .map_err(|e| KvError::Unavailable(format!("KV binding `{KV_BINDING}`: {e}")))?;
        Ok(self.kv.get_or_init(|| kv))
    }

    fn limiter(&self) -> Option<&worker::ObjectNamespace> {
        self.limiter
            .get_or_init(|| self.env.durable_object(super::durable::LIMITER_BINDING).ok())
            .as_ref()
    }
}

impl StrictCounters for Workers {
    fn strict_missing(&self) -> Option<&'static str> {
        self.limiter()
            .is_none()
            .then_some("the RATE_LIMITER Durable Object binding (wrangler.toml)")
    }
    async fn charge(&self, shard: &str, charges: &[Charge]) -> Result<Charged, KvError> {
        super::durable::charge(self.limiter(), shard, charges).await
    }
}

impl KvStore for Workers {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.kv()?
            .get(key)
            .bytes()
            .await
            .map_err(|e| KvError::Unavailable(e.to_string()))
    }
    async fn put(&self, key: &str, value: Vec<u8>, ttl_secs: Option<u64>) -> Result<(), KvError> {
        let mut b = self
            .kv()?
            .put_bytes(key, &value)
            .map_err(|e| KvError::Unavailable(e.to_string()))?;
        if let Some(ttl) = ttl_secs {
            b = b.expiration_ttl(ttl.max(KV_MIN_TTL_SECS));
        }
        b.execute().await.map_err(|e| KvError::Unavailable(e.to_string()))
    }
    async fn delete(&self, key: &str) -> Result<(), KvError> {
        self.kv()?
            .delete(key)
            .await
            .map_err(|e| KvError::Unavailable(e.to_string()))
    }
    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<String>, KvError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = self.kv()?.list().prefix(prefix.to_string());
            if let Some(c) = cursor.take() {
                q = q.cursor(c);
            }
            let page = q.execute().await.map_err(|e| KvError::Unavailable(e.to_string()))?;
            out.extend(page.keys.into_iter().map(|k| k.name));
            if page.list_complete || out.len() >= limit {
                break;
            }
            cursor = page.cursor;
            if cursor.is_none() {
                break;
            }
        }
        out.truncate(limit);
        Ok(out)
    }
}

/// Aborts the outbound fetch when dropped before its response arrives,
/// so a client that goes away (or a timeout) cancels the upstream request
/// instead of leaving it running. Once the response is here, [`JsBody`]
/// owns the transfer.
struct AbortOnDrop(Option<web_sys::AbortController>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.abort();
        }
    }
}

#[wasm_bindgen]
extern "C" {
    /// `{ done, value }`, what `ReadableStreamDefaultReader.read()` resolves to.
    type ReadResult;
    #[wasm_bindgen(method, getter)]
    fn done(this: &ReadResult) -> bool;
    #[wasm_bindgen(method, getter)]
    fn value(this: &ReadResult) -> js_sys::Uint8Array;
    /// A promise whose `catch` takes a plain function (js-sys wants a closure).
    type AnyPromise;
    #[wasm_bindgen(method, js_name = catch)]
    fn catch_with(this: &AnyPromise, f: &js_sys::Function);
}

thread_local! {
    /// Swallows the rejection of a `cancel()` nobody awaits.
    /// (A Rust closure made once and kept: `new Function` is eval, which
    /// Workers refuse.)
    static IGNORE: js_sys::Function = wasm_bindgen::closure::Closure::<dyn FnMut(wasm_bindgen::JsValue)>::new(|_| {})
        .into_js_value()
        .unchecked_into();
}

/// A JS body stream read as a Rust stream. Unlike the `worker` crate's
/// `ByteStream`, a body read to its end is simply let go: releasing the
/// reader's lock makes workerd build a TypeError (walking the wasm stack
/// for it) and cancelling costs more than reading the last chunk, and both
/// happened on every request. Only a body dropped before its end is
/// cancelled, which stops the transfer.
enum JsBody {
    /// Read chunk by chunk, one `reader.read()` per chunk.
    Reader {
        reader: Option<ReadableStreamDefaultReader>,
        read: Option<JsFuture>,
    },
    /// Read whole by `arrayBuffer()`: one promise for the body instead of
    /// one per chunk plus one for its end. Only for bodies whose declared
    /// length is within a cap, so it holds no more than a stream would.
    Whole(Option<JsFuture>),
}

impl JsBody {
    fn new(stream: &ReadableStream) -> Self {
        JsBody::Reader {
            reader: Some(stream.get_reader().unchecked_into()),
            read: None,
        }
    }

    fn whole(promise: js_sys::Promise) -> Self {
        JsBody::Whole(Some(JsFuture::from(promise)))
    }

    /// The request's body in one read, or chunk by chunk when its length
    /// is undeclared or past `cap` bytes (the core then refuses it at the
    /// cap without holding it whole).
    fn request(req: &web_sys::Request, declared: Option<usize>, cap: usize) -> Option<Self> {
        match declared {
            Some(0) => None,
            Some(n) if n <= cap => req.array_buffer().ok().map(JsBody::whole),
            _ => req.body().map(|b| JsBody::new(&b)),
        }
    }
}

impl Stream for JsBody {
    type Item = Result<Bytes, HttpError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Option<Self::Item>> {
        match &mut *self {
            JsBody::Whole(read) => {
                let Some(fut) = read.as_mut() else {
                    return Poll::Ready(None);
                };
                let result = ready!(Pin::new(fut).poll(cx));
                *read = None;
                Poll::Ready(match result {
                    // An empty body (a null one reads as empty) has no chunk.
                    Ok(buf) => {
                        let bytes = js_sys::Uint8Array::new(&buf).to_vec();
                        (!bytes.is_empty()).then(|| Ok(Bytes::from(bytes)))
                    }
                    Err(_) => Some(Err(HttpError::Interrupted("body stream error".into()))),
                })
            }
            JsBody::Reader { reader, read } => {
                let Some(r) = reader.as_ref() else {
                    return Poll::Ready(None);
                };
                let pending = read.get_or_insert_with(|| JsFuture::from(r.read()));
                let result = ready!(Pin::new(pending).poll(cx));
                *read = None;
                Poll::Ready(match result {
                    Ok(v) => {
                        let r: ReadResult = v.unchecked_into();
                        if r.done() {
                            *reader = None;
                            None
                        } else {
                            Some(Ok(Bytes::from(r.value().to_vec())))
                        }
                    }
                    Err(_) => {
                        *reader = None;
                        Some(Err(HttpError::Interrupted("body stream error".into())))
                    }
                })
            }
        }
    }
}

impl Drop for JsBody {
    fn drop(&mut self) {
        if let JsBody::Reader { reader, .. } = self {
            if let Some(reader) = reader.take() {
                IGNORE.with(|f| {
                    reader.cancel().unchecked_into::<AnyPromise>().catch_with(f);
                });
            }
        }
    }
}

impl HttpClient for Workers {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        // Errors from the JS side are reduced to their kind: their text can
        // include the URL, and header values must never reach a log.
        // `fetch(url, init)` straight from web-sys: no `Request` object is
        // built only to be taken apart again.
        // Method and headers cross as one JSON string, parsed into the
        // `RequestInit` (`{"method", "headers": [[name, value], ...]}`):
        // fetch builds its one `Headers` from it in workerd's own code, where
        // a `Headers` built here costs an object and a crossing per header.
        let init = init_json("method", req.method, &req.headers);
        let init: web_sys::RequestInit = js_sys::JSON::parse(&init)
            .map_err(|_| HttpError::Connect("invalid header".into()))?
            .unchecked_into();
        if !req.body.is_empty() {
            init.set_body(&js_sys::Uint8Array::from(&req.body[..]));
        }
        // An abort handle costs workerd tens of µs per fetch; a request the
        // core gives up on only by ending the client's request needs none,
        // as workerd cancels a request's outstanding fetches when it ends.
        let mut guard = AbortOnDrop(None);
        if req.cancel_on_drop {
            let controller = web_sys::AbortController::new().map_err(|_| HttpError::Connect("fetch failed".into()))?;
            init.set_signal(Some(&controller.signal()));
            guard.0 = Some(controller);
        }
        let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
        let resp = JsFuture::from(global.fetch_with_str_and_init(&req.url, &init))
            .await
            .map_err(|_| HttpError::Connect("fetch failed".into()))?;
        // The response is here: from now on cancelling the body stops the
        // transfer, and a body read to its end must not be aborted.
        guard.0 = None;
        let raw: web_sys::Response = resp.unchecked_into();
        let status = raw.status();
        // Only the headers the core reads, by name (one crossing each),
        // instead of iterating every header the upstream sent.
        let all = raw.headers();
        let headers: Vec<(String, String)> = UPSTREAM_HEADERS_READ
            .iter()
            .filter_map(|&name| all.get(name).ok().flatten().map(|v| (name.to_string(), v)))
            .collect();
        // A body of known, modest length that is not an event stream is
        // read in one promise: a JSON answer is only used whole.
        let whole = crate::gateway::bootstrap::declared_length(&headers).is_some_and(|n| n <= WHOLE_BODY_MAX)
            && !headers
                .iter()
                .any(|(k, v)| k == "content-type" && crate::platform::is_event_stream(v));
        // `arrayBuffer()` straight away: reading `body` first would make
        // workerd build a `ReadableStream` object only to check for one.
        let body: BodyStream = if whole {
            match raw.array_buffer() {
                Ok(p) => Box::pin(JsBody::whole(p)),
                Err(_) => Box::pin(futures_util::stream::iter([Err(HttpError::Interrupted(
                    "body already read".into(),
                ))])),
            }
        } else {
            match raw.body() {
                Some(s) => Box::pin(JsBody::new(&s)),
                None => Box::pin(futures_util::stream::empty()),
            }
        };
        Ok(HttpResponse { status, headers, body })
    }
}

impl Runtime for Workers {
    fn spawn(&self, mut fut: LocalBoxFuture<()>) {
        // Polled once here first: most work handed over (a request's
        // accounting) has nothing to wait on and finishes at once, and a
        // background task would cost a promise, a `waitUntil` and a
        // microtask hop for it. It is no later than the task would have
        // run: a task queued now runs in this same microtask checkpoint,
        // before workerd sees the handler's response. A future left
        // pending re-registers its waker when the task polls it.
        let noop = futures_util::task::noop_waker();
        if fut.as_mut().poll(&mut std::task::Context::from_waker(&noop)).is_ready() {
            return;
        }
        // The rest runs from here on whatever `waitUntil` says. It can
        // refuse: work woken after its request's context has ended (a
        // stream's pump after a long stall) has no request to extend, and
        // `Context::wait_until` would panic on that, which poisons the
        // isolate and hangs every later request.
        let promise = worker::wasm_bindgen_futures::future_to_promise(async move {
            fut.await;
            Ok(wasm_bindgen::JsValue::UNDEFINED)
        });
        let ctx: &worker::worker_sys::Context = (*self.ctx).as_ref();
        let _ = ctx.wait_until(&promise);
    }
    fn sleep(&self, ms: u64) -> LocalBoxFuture<()> {
        Box::pin(Timer::new(ms))
    }
    fn now_ms(&self) -> u64 {
        // Through a `Date` object, not `Date.now()`: with `Date.now()` the
        // stream relay's p99 in `make bench` went from about 5 ms to about
        // 100 ms (every run), for a reason not yet understood.
        worker::Date::now().as_millis()
    }
    fn monotonic_ms(&self) -> u64 {
        // Workers expose no monotonic clock to wasm beyond `Date.now()`,
        // which only advances on I/O; a running maximum keeps it from
        // ever stepping back within the isolate.
        thread_local!(static LAST: std::cell::Cell<u64> = const { std::cell::Cell::new(0) });
        let now = self.now_ms();
        LAST.with(|l| {
            let m = l.get().max(now);
            l.set(m);
            m
        })
    }
    fn memory_bytes(&self) -> Option<u64> {
        Some(super::wasm_memory_bytes())
    }
    fn random_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        u64::from_le_bytes(b)
    }
}

/// A `setTimeout` as a future. Unlike `worker::Delay`, it wakes the task
/// that polled it last, not the first: a `Deadline`'s timer is armed in the
/// request's task and then waited on by the stream pump's. Every timer
/// calls the same JS function with its id, rather than a closure of its
/// own: each closure is a JS function made and released per timer.
struct Timer {
    /// False when `setTimeout` refused: the timer counts as fired.
    armed: bool,
    id: u32,
    state: Rc<TimerState>,
}

#[derive(Default)]
struct TimerState {
    fired: std::cell::Cell<bool>,
    waker: RefCell<Option<std::task::Waker>>,
}

thread_local! {
    /// Timers armed and not yet fired or dropped, by id.
    static TIMERS: RefCell<std::collections::HashMap<u32, Rc<TimerState>>> = RefCell::default();
    static NEXT_TIMER: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    /// The one `setTimeout` callback: marks its timer fired and wakes it.
    static FIRE: js_sys::Function = wasm_bindgen::closure::Closure::<dyn FnMut(u32)>::new(|id: u32| {
        if let Some(state) = TIMERS.with(|t| t.borrow_mut().remove(&id)) {
            state.fired.set(true);
            if let Some(w) = state.waker.borrow_mut().take() {
                w.wake();
            }
        }
    })
    .into_js_value()
    .unchecked_into();
}

impl Timer {
    fn new(ms: u64) -> Self {
        let state = Rc::new(TimerState::default());
        let id = NEXT_TIMER.with(|n| {
            let id = n.get();
            n.set(id.wrapping_add(1));
            id
        });
        TIMERS.with(|t| t.borrow_mut().insert(id, Rc::clone(&state)));
        let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
        let armed = FIRE.with(|f| {
            global
                .set_timeout_with_callback_and_timeout_and_arguments_1(
                    f,
                    i32::try_from(ms).unwrap_or(i32::MAX),
                    &wasm_bindgen::JsValue::from(id),
                )
                .is_ok()
        });
        Timer { armed, id, state }
    }
}

impl Future for Timer {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.state.fired.get() || !self.armed {
            return Poll::Ready(());
        }
        let mut w = self.state.waker.borrow_mut();
        if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *w = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Timer {
    /// Forgets the timer without `clearTimeout`: when it fires, [`FIRE`]
    /// finds no entry and wakes nothing. A request gives up on a handful
    /// of timers at most (one per attempt's deadline, one per webhook
    /// try), each waits no longer than its timeout, and workerd cancels a
    /// request's pending timers when the request ends, so none fires on
    /// another request's behalf; `clearTimeout` on every request's answer
    /// deadline cost workerd more than the timer's wait does.
    fn drop(&mut self) {
        if !self.state.fired.get() {
            TIMERS.with(|t| t.borrow_mut().remove(&self.id));
        }
    }
}

/// `{"<field>": value, "headers": [[name, value], ...]}` for a
/// `RequestInit` or `ResponseInit`, serialized straight from the borrowed
/// pairs (no `serde_json::Value` copy of them on every request).
fn init_json(field: &str, value: impl serde::Serialize, headers: &[(String, String)]) -> String {
    use serde::ser::{SerializeMap, Serializer};
    let mut out = Vec::with_capacity(64 + headers.iter().map(|(k, v)| k.len() + v.len() + 6).sum::<usize>());
    let mut ser = serde_json::Serializer::new(&mut out);
    let written = (|| {
        let mut map = ser.serialize_map(Some(2))?;
        map.serialize_entry(field, &value)?;
        map.serialize_entry("headers", headers)?;
        map.end()
    })();
    // Strings and numbers always serialize, and serde_json writes UTF-8.
    debug_assert!(written.is_ok());
    String::from_utf8(out).unwrap_or_default()
}

/// The core's answer as the `Response` workerd sends. The status and
/// headers cross into JS as one JSON string for a `ResponseInit`
/// (`{"status": u16, "headers": [[name, value], ...]}`): `JSON.parse`
/// and the constructor read it in workerd's own code, where a `Headers`
/// built in Rust costs a crossing and two string decodes per header.
fn to_web(resp: gateway::Response) -> worker::Result<web_sys::Response> {
    let init = init_json("status", resp.status, &resp.headers);
    let init: web_sys::ResponseInit = js_sys::JSON::parse(&init)?.unchecked_into();
    let out = match resp.body {
        Body::Full(b) if b.is_empty() => web_sys::Response::new_with_opt_str_and_init(None, &init)?,
        // A copy in JS, not a view of wasm memory: the body is sent after
        // this returns, and the memory is reused by then.
        Body::Full(b) => {
            web_sys::Response::new_with_opt_buffer_source_and_init(Some(&js_sys::Uint8Array::from(&b[..])), &init)?
        }
        Body::Stream(s) => {
            let relay = worker::Response::from_stream(
                s.map(|r| r.map_err(|_| worker::Error::RustError("stream interrupted".into()))),
            )?;
            let worker::ResponseBody::Stream(stream) = relay.body() else {
                return Err(worker::Error::RustError("stream body expected".into()));
            };
            web_sys::Response::new_with_opt_readable_stream_and_init(Some(stream), &init)?
        }
    };
    Ok(out)
}

/// The client's location from `request.cf`, for choosing the nearest runner.
fn geo(req: &worker::Request) -> Option<crate::gateway::upstream::plan::Geo> {
    let cf = req.cf()?;
    let (lat, lon) = cf
        .coordinates()
        .map_or((None, None), |(a, b)| (Some(f64::from(a)), Some(f64::from(b))));
    Some(crate::gateway::upstream::plan::Geo {
        continent: cf.continent(),
        colo: Some(cf.colo()),
        latitude: lat,
        longitude: lon,
    })
}

/// Runs once, when the isolate instantiates the module: makes the Rust
/// futures executor schedule its wake-ups as reactions of a resolved
/// promise rather than through the global `queueMicrotask`. Both run in
/// the same microtask checkpoint, in the same order; workerd's
/// `queueMicrotask` also wraps every callback it is given in a handle of
/// its own, and a request wakes the executor several times (each body
/// read, the fetch, each timer). The executor picks its way when it is
/// first used, from whether the global has a `queueMicrotask`; so the
/// global hides it only for that moment, and is then restored.
#[wasm_bindgen(start)]
fn choose_executor_schedule() {
    let global = js_sys::global();
    let key = wasm_bindgen::JsValue::from_str("queueMicrotask");
    let own = js_sys::Object::has_own(&global, &key);
    let saved = js_sys::Reflect::get(&global, &key).unwrap_or(wasm_bindgen::JsValue::UNDEFINED);
    if js_sys::Reflect::set(&global, &key, &wasm_bindgen::JsValue::UNDEFINED) != Ok(true) {
        return;
    }
    worker::wasm_bindgen_futures::spawn_local(async {});
    if own {
        let _ = js_sys::Reflect::set(&global, &key, &saved);
    } else {
        let _ = js_sys::Reflect::delete_property(&global, &key);
    }
}

// The raw request, not `worker::Request`: converting to that reads
// `request.cf` and re-splits the URL on every request, both crossings into
// JS that the core mostly does not need.
#[event(fetch)]
async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> worker::Result<web_sys::Response> {
    // JSON lines to the Workers console (`wrangler tail`, Logpush).
    super::init_tracing(ConsoleWriter::default);
    let host = WorkersHost(&env);
    let gw = bootstrap::isolate_gateway(&host).await;
    // The core routes on the path and reads admin query parameters from
    // it. The raw URL string is split by hand: `Request::url()` would link
    // the `url` crate and its IDNA tables (~170 KB of wasm) for this alone.
    let raw_url = req.url();
    let after_scheme = raw_url.split_once("://").map_or(raw_url.as_str(), |(_, r)| r);
    let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]).to_string();
    let headers: Vec<(String, String)> = worker::Headers(req.headers()).entries().collect();
    let declared = bootstrap::declared_length(&headers);
    let incoming = Incoming {
        // The method as the client sent it: `worker::Method` maps methods
        // it does not know (QUERY, PROPFIND, ...) to GET, which would route
        // them like GETs instead of answering 405.
        method: req.method(),
        path,
        body: JsBody::request(
            &req,
            declared,
            bootstrap::body_limit(&gw).saturating_add(bootstrap::DISCARD_MAX),
        ),
        headers,
        // Only runner pools are routed by distance.
        geo: match gw.as_ref() {
            Ok(g) if g.config.routes_by_location() => geo(&worker::Request::from(req)),
            _ => None,
        },
    };
    let platform = || {
        // One property read, not the binding's whole wrapper: a missing
        // binding is a misconfiguration to report at once.
        if js_sys::Reflect::get(&env, &KV_BINDING.into()).map_or(true, |b| b.is_undefined()) {
            return Err(format!("KV binding `{KV_BINDING}` is not bound"));
        }
        Ok(Workers {
            env: Rc::new(env.clone()),
            kv: Rc::default(),
            ctx: Rc::new(ctx),
            limiter: Rc::default(),
        })
    };
    to_web(bootstrap::serve(&gw, &host, incoming, platform).await)
}
