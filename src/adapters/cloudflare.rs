//! Cloudflare Workers adapter (`wasm32-unknown-unknown`, the `worker` crate).
//!
//! Thin by design: request in, core, response out. Binding and variable
//! names are the `const`s below; `JsValue`s and other Workers types stay in
//! this file. The gateway is built once per isolate and reused, so its
//! in-isolate caches (keys, later rate-limit counters) survive between
//! requests the way Workers intends.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use futures_util::StreamExt;
use worker::{event, Context, Env};

use crate::config::{Config, ConfigError, RawConfig};
use crate::gateway::{self, Body, Gateway};
use crate::platform::{
    BodyStream, HttpClient, HttpError, HttpRequest, HttpResponse, KvError, KvStore, LocalBoxFuture, Runtime,
};

/// KV namespace binding holding keys, counters, cache and usage.
const KV_BINDING: &str = "KV";
/// Variable (or secret) holding the gateway config as JSON.
const CONFIG_VAR: &str = "INFERGATE_CONFIG";
/// Workers KV refuses shorter expirations.
const KV_MIN_TTL_SECS: u64 = 60;

thread_local! {
    static GATEWAY: RefCell<Option<Rc<Result<Gateway, ConfigError>>>> = const { RefCell::new(None) };
}

fn gateway(env: &Env) -> Rc<Result<Gateway, ConfigError>> {
    if let Some(g) = GATEWAY.with(|g| g.borrow().clone()) {
        return g;
    }
    let built = Rc::new(build_gateway(env));
    GATEWAY.with(|g| *g.borrow_mut() = Some(built.clone()));
    built
}

fn string_binding(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .map(|s| s.to_string())
        .or_else(|_| env.var(name).map(|v| v.to_string()))
        .ok()
}

fn build_gateway(env: &Env) -> Result<Gateway, ConfigError> {
    let json = string_binding(env, CONFIG_VAR).ok_or_else(|| ConfigError::Invalid {
        path: CONFIG_VAR.into(),
        message: "is not set; define it in wrangler.toml [vars] or as a secret".into(),
    })?;
    let raw = RawConfig::parse(&json)?;
    let config: Config = raw.validate(&|name| string_binding(env, name))?;
    Ok(Gateway::new(config))
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

/// The Workers platform for one request.
#[derive(Clone)]
struct Workers {
    kv: Rc<worker::kv::KvStore>,
    ctx: Rc<Context>,
}

impl KvStore for Workers {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.kv
            .get(key)
            .bytes()
            .await
            .map_err(|e| KvError::Unavailable(e.to_string()))
    }
    async fn put(&self, key: &str, value: Vec<u8>, ttl_secs: Option<u64>) -> Result<(), KvError> {
        let mut b = self
            .kv
            .put_bytes(key, &value)
            .map_err(|e| KvError::Unavailable(e.to_string()))?;
        if let Some(ttl) = ttl_secs {
            b = b.expiration_ttl(ttl.max(KV_MIN_TTL_SECS));
        }
        b.execute().await.map_err(|e| KvError::Unavailable(e.to_string()))
    }
    async fn delete(&self, key: &str) -> Result<(), KvError> {
        self.kv
            .delete(key)
            .await
            .map_err(|e| KvError::Unavailable(e.to_string()))
    }
    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<String>, KvError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = self.kv.list().prefix(prefix.to_string());
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

/// Aborts the outbound fetch when dropped, so a client that goes away (or
/// a timeout) cancels the upstream request instead of leaving it running.
struct AbortOnDrop(Option<worker::AbortController>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.abort();
        }
    }
}

impl HttpClient for Workers {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        // Errors from the JS side are reduced to their kind: their text can
        // include the URL, and header values must never reach a log.
        let headers = worker::Headers::new();
        for (k, v) in &req.headers {
            headers
                .set(k, v)
                .map_err(|_| HttpError::Connect("invalid header".into()))?;
        }
        let mut init = worker::RequestInit::new();
        init.with_method(worker::Method::from(req.method.to_string()))
            .with_headers(headers);
        if !req.body.is_empty() {
            init.with_body(Some(js_sys::Uint8Array::from(&req.body[..]).into()));
        }
        let request = worker::Request::new_with_init(&req.url, &init)
            .map_err(|_| HttpError::Connect("invalid upstream URL".into()))?;
        let controller = worker::AbortController::default();
        let signal = controller.signal();
        let guard = AbortOnDrop(Some(controller));
        let mut resp = worker::Fetch::Request(request)
            .send_with_signal(&signal)
            .await
            .map_err(|_| HttpError::Connect("fetch failed".into()))?;
        let status = resp.status_code();
        let headers: Vec<(String, String)> = resp.headers().entries().collect();
        let stream = resp.stream().map_err(|_| HttpError::Interrupted("no body".into()))?;
        let body: BodyStream = Box::pin(stream.map(move |r| {
            let _keep = &guard;
            r.map(Bytes::from)
                .map_err(|_| HttpError::Interrupted("upstream body error".into()))
        }));
        Ok(HttpResponse { status, headers, body })
    }
}

impl Runtime for Workers {
    fn spawn(&self, fut: LocalBoxFuture<()>) {
        self.ctx.wait_until(fut);
    }
    fn sleep(&self, ms: u64) -> LocalBoxFuture<()> {
        Box::pin(worker::Delay::from(std::time::Duration::from_millis(ms)))
    }
    fn now_ms(&self) -> u64 {
        worker::Date::now().as_millis()
    }
    fn random_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        u64::from_le_bytes(b)
    }
}

/// Read the body up to `limit + 1` bytes: enough for the core to tell
/// "too large" without ever holding an unbounded body.
async fn read_body(req: &mut worker::Request, limit: usize) -> Bytes {
    let declared = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Bytes::from(vec![0u8; limit + 1]);
    }
    let Ok(mut stream) = req.stream() else {
        return Bytes::new();
    };
    let mut out = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        out.extend_from_slice(&chunk);
        if out.len() > limit {
            out.truncate(limit + 1);
            break;
        }
    }
    Bytes::from(out)
}

fn to_worker(resp: gateway::Response) -> worker::Result<worker::Response> {
    let headers = worker::Headers::new();
    for (k, v) in &resp.headers {
        headers.append(k, v)?;
    }
    let out = match resp.body {
        Body::Full(b) => worker::Response::from_bytes(b.to_vec())?,
        Body::Stream(s) => worker::Response::from_stream(s.map(|r| {
            r.map(|b| b.to_vec())
                .map_err(|_| worker::Error::RustError("stream interrupted".into()))
        }))?,
    };
    Ok(out.with_status(resp.status).with_headers(headers))
}

/// The client's location from `request.cf`, for choosing the nearest runner.
fn geo(req: &worker::Request) -> Option<crate::gateway::route::Geo> {
    let cf = req.cf()?;
    let (lat, lon) = cf
        .coordinates()
        .map_or((None, None), |(a, b)| (Some(f64::from(a)), Some(f64::from(b))));
    Some(crate::gateway::route::Geo {
        continent: cf.continent(),
        colo: Some(cf.colo()),
        latitude: lat,
        longitude: lon,
    })
}

#[event(fetch)]
async fn fetch(mut req: worker::Request, env: Env, ctx: Context) -> worker::Result<worker::Response> {
    // JSON lines to the Workers console (`wrangler tail`, Logpush).
    super::init_tracing(ConsoleWriter::default);
    let gw = gateway(&env);
    let limit = gw.as_ref().as_ref().map_or(1 << 20, |g| g.config.limits.max_body_bytes);
    // The method as the client sent it: `Request::method()` maps methods
    // the `worker` crate does not know (QUERY, PROPFIND, ...) to GET, which
    // would route them like GETs instead of answering 405.
    let method = req.inner().method();
    let body = if matches!(method.as_str(), "GET" | "HEAD") {
        Bytes::new()
    } else {
        read_body(&mut req, limit).await
    };
    // The core routes on the path and reads admin query parameters from
    // it. The raw URL string is split by hand: `Request::url()` would link
    // the `url` crate and its IDNA tables (~170 KB of wasm) for this alone.
    let raw_url = req.inner().url();
    let after_scheme = raw_url.split_once("://").map_or(raw_url.as_str(), |(_, r)| r);
    let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]).to_string();
    let core_req = gateway::Request {
        method,
        path,
        headers: req.headers().entries().collect(),
        body,
        geo: geo(&req),
    };
    let gw = match gw.as_ref() {
        Ok(g) => g,
        Err(e) => return to_worker(gateway::unconfigured_response(e, &core_req)),
    };
    let kv = env
        .kv(KV_BINDING)
        .map_err(|e| worker::Error::RustError(format!("KV binding `{KV_BINDING}`: {e}")))?;
    let platform = Workers {
        kv: Rc::new(kv),
        ctx: Rc::new(ctx),
    };
    to_worker(gw.handle(&platform, core_req).await)
}
