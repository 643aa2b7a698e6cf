//! infergate-spin-host: serves a Spin HTTP component (WASI 0.3,
//! `wasi:http/handler@0.3.0`) with the Spin interfaces the infergate
//! component imports, for the end-to-end suite and `make dev-spin`.
//!
//! It reads the same `spin.toml` that `spin up` would: application
//! variables (from `--var`, `SPIN_VARIABLE_<NAME>` or defaults), the
//! component's variables, key-value stores and `allowed_outbound_hosts`,
//! which it enforces. See NOTES.md for what was learned building it.
//!
//! # Layout
//! - `main.rs`: flags, engine and linker, the HTTP server.
//! - `manifest`: the part of spin.toml this host honours.
//! - `spin`: `spin:key-value` and `spin:variables` for the guest.
//! - `outbound`: the `allowed_outbound_hosts` check on outgoing requests.

mod keyvalue;
mod manifest;
mod outbound;
mod spin;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::server::conn::http1;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::error::Context as _;
use wasmtime::{bail, format_err, Result};
use wasmtime::{Engine, Store, StoreContextMut};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyHandler, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

const USAGE: &str = "\
usage: infergate-spin-host [options]

  --manifest PATH          spin.toml to read (default: spin.toml)
  --component ID           component to serve (default: the only one)
  --wasm PATH              use this component file instead of the manifest's source
  --listen ADDR            address to serve on (default 127.0.0.1:3000; SPIN_PORT sets the port;
                           port 0 picks a free one)
  --var NAME=VALUE         set an application variable (also SPIN_VARIABLE_<NAME>)
  --kv-file PATH           keep the default key-value store in this JSON file
  --kv-seed KEY=VALUE      put a key before serving (repeatable)
  --admin-listen ADDR      serve PUT/GET/DELETE /kv/<key> on this address, for tests
  --instance-reuse N       requests one instance may serve (default 128, as Spin for WASI 0.3
                           components; 1 gives a fresh instance per request)
  --instance-concurrency N requests one instance may serve at once (default 16, as Spin)
  --idle-instance-ms N     drop an idle instance after N ms (default 1000, as Spin)
  --bench-instantiate N    instantiate N times, print the timing, and exit
  --print-imports          print the component's imports and exit
";

struct Args {
    manifest: PathBuf,
    component: Option<String>,
    wasm: Option<PathBuf>,
    listen: SocketAddr,
    vars: BTreeMap<String, String>,
    kv_file: Option<PathBuf>,
    kv_seed: Vec<(String, String)>,
    admin_listen: Option<SocketAddr>,
    reuse: Reuse,
    bench: Option<usize>,
    print_imports: bool,
}

fn split_pair(s: &str, flag: &str) -> Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format_err!("{flag} wants NAME=VALUE, got `{s}`"))?;
    Ok((k.to_string(), v.to_string()))
}

fn positive(s: &str, flag: &str) -> Result<usize> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{flag} wants a number of at least 1, got `{s}`"),
    }
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        manifest: PathBuf::from("spin.toml"),
        component: None,
        wasm: None,
        listen: "127.0.0.1:3000".parse()?,
        vars: BTreeMap::new(),
        kv_file: None,
        kv_seed: Vec::new(),
        admin_listen: None,
        reuse: Reuse {
            total: 128,
            concurrent: 16,
            idle: Duration::from_millis(1000),
        },
        bench: None,
        print_imports: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format_err!("{flag} needs a value"));
        match flag.as_str() {
            "--manifest" => args.manifest = value()?.into(),
            "--component" => args.component = Some(value()?),
            "--wasm" => args.wasm = Some(value()?.into()),
            "--listen" => args.listen = value()?.parse::<SocketAddr>().context("--listen")?,
            "--var" => {
                let (k, v) = split_pair(&value()?, "--var")?;
                args.vars.insert(k, v);
            }
            "--kv-file" => args.kv_file = Some(value()?.into()),
            "--kv-seed" => args.kv_seed.push(split_pair(&value()?, "--kv-seed")?),
            "--admin-listen" => args.admin_listen = Some(value()?.parse::<SocketAddr>().context("--admin-listen")?),
            "--instance-reuse" => args.reuse.total = positive(&value()?, "--instance-reuse")?,
            "--instance-concurrency" => args.reuse.concurrent = positive(&value()?, "--instance-concurrency")?,
            "--idle-instance-ms" => {
                args.reuse.idle = Duration::from_millis(positive(&value()?, "--idle-instance-ms")? as u64)
            }
            "--bench-instantiate" => args.bench = Some(value()?.parse::<usize>().context("--bench-instantiate")?),
            "--print-imports" => args.print_imports = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown flag `{other}`\n\n{USAGE}"),
        }
    }
    if let Ok(port) = std::env::var("SPIN_PORT") {
        args.listen
            .set_port(port.parse::<u16>().context("SPIN_PORT must be a port number")?);
    }
    Ok(args)
}

/// The data of one store (one component instance).
struct Host {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: outbound::Policy,
    spin: spin::SpinCtx,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl spin::SpinView for Host {
    fn spin(&mut self) -> (&mut spin::SpinCtx, &mut ResourceTable) {
        (&mut self.spin, &mut self.table)
    }
}

/// Everything needed to make a fresh instance.
struct App {
    engine: Engine,
    pre: ProxyPre<Host>,
    kv: Arc<spin::KvData>,
    stores: Arc<Vec<String>>,
    variables: Arc<BTreeMap<String, String>>,
    outbound: Arc<Vec<manifest::HostPattern>>,
    reuse: Reuse,
}

/// Instance reuse, with Spin's defaults for WASI 0.3 components.
#[derive(Clone, Copy)]
struct Reuse {
    total: usize,
    concurrent: usize,
    idle: Duration,
}

impl App {
    fn new_store(&self) -> Store<Host> {
        let wasi = WasiCtxBuilder::new().inherit_stdout().inherit_stderr().build();
        Store::new(
            &self.engine,
            Host {
                table: ResourceTable::new(),
                wasi,
                http: WasiHttpCtx::new(),
                outbound: outbound::Policy::new(self.outbound.clone()),
                spin: spin::SpinCtx {
                    kv: self.kv.clone(),
                    allowed_stores: self.stores.clone(),
                    variables: self.variables.clone(),
                },
            },
        )
    }
}

impl HandlerState for App {
    type StoreData = Host;
    type WorkerExpiration = IdleExpiry;
    type WorkerState = Worker;

    async fn instantiate(&self) -> Result<Instance<Host, IdleExpiry, Worker>> {
        let mut store = self.new_store();
        let proxy = self.pre.instantiate_async(&mut store).await?;
        Ok(Instance {
            store,
            proxy,
            view: |h: &mut Host| h.http(),
            expiration: IdleExpiry {
                idle: self.reuse.idle,
                timer: None,
            },
            state: Worker { reuse: self.reuse },
        })
    }
}

/// An instance is dropped once it has been idle (no requests, no
/// post-return work) for `idle`; requests themselves have no deadline here.
struct IdleExpiry {
    idle: Duration,
    timer: Option<(Instant, Pin<Box<tokio::time::Sleep>>)>,
}

impl WorkerExpiration for IdleExpiry {
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>, status: WorkerStatus, since: Instant) -> Poll<()> {
        if status != WorkerStatus::Idle {
            self.timer = None;
            return Poll::Pending;
        }
        let idle = self.idle;
        let timer = match &mut self.timer {
            Some((s, t)) if *s == since => t,
            slot => {
                let deadline = tokio::time::Instant::from_std(since + idle);
                &mut slot.insert((since, Box::pin(tokio::time::sleep_until(deadline)))).1
            }
        };
        timer.as_mut().poll(cx)
    }
}

struct Worker {
    reuse: Reuse,
}

impl WorkerState for Worker {
    type StoreData = Host;
    type RequestData = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.reuse.total {
            ShouldAccept::Never
        } else if concurrent >= self.reuse.concurrent {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _: StoreContextMut<'_, Host>,
        _: (),
        _: wasmtime::component::GuestTaskId,
    ) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync>> {
        Box::pin(std::future::pending())
    }

    fn drop(&self, _store: Store<Host>, result: Result<(), wasmtime::Error>) {
        if let Err(e) = result {
            eprintln!("spin-host: instance failed: {e:?}");
        }
    }
}

fn engine() -> Result<Engine> {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model_async(true);
    // For profiling the component with `perf`: a perf map names its
    // compiled functions (`perf report` reads /tmp/perf-<pid>.map).
    if std::env::var_os("INFERGATE_SPIN_HOST_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    Engine::new(&config)
}

fn linker(engine: &Engine) -> Result<Linker<Host>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    spin::add_to_linker(&mut linker)?;
    Ok(linker)
}

fn print_imports(engine: &Engine, component: &Component) {
    use wasmtime::component::types::ComponentItem;
    let ty = component.component_type();
    for (name, ext) in ty.imports(engine) {
        match ext.ty {
            ComponentItem::ComponentInstance(inst) => {
                let items: Vec<&str> = inst.exports(engine).map(|(n, _)| n).collect();
                println!("{name}: {}", items.join(", "));
            }
            _ => println!("{name}"),
        }
    }
    for (name, _) in ty.exports(engine) {
        println!("export {name}");
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type OutBody = UnsyncBoxBody<Bytes, BoxError>;

fn text_response(status: u16, text: String) -> hyper::Response<OutBody> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(text)).map_err(|e| match e {}).boxed_unsync())
        .expect("valid response")
}

async fn handle(handler: ProxyHandler<App>, req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<OutBody> {
    let (mut parts, body) = req.into_parts();
    // The guest sees an absolute URI, as behind Spin.
    if parts.uri.authority().is_none() {
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_string();
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        if let Ok(uri) = http::Uri::builder()
            .scheme("http")
            .authority(host)
            .path_and_query(pq)
            .build()
        {
            parts.uri = uri;
        }
    }
    let body = body.map_err(wasmtime_wasi_http::Error::from).boxed_unsync();
    let req = http::Request::from_parts(parts, body);
    match handler.handle((), req).await {
        Ok(resp) => resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()),
        Err(e) => {
            eprintln!("spin-host: request failed: {e:?}");
            text_response(500, "component failed to handle the request\n".into())
        }
    }
}

async fn serve(listener: tokio::net::TcpListener, handler: ProxyHandler<App>) -> Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        // Small SSE frames must leave at once.
        stream.set_nodelay(true)?;
        let h = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let h = h.clone();
                async move { Ok::<_, Infallible>(handle(h, req).await) }
            });
            if let Err(e) = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                if !e.is_incomplete_message() {
                    eprintln!("spin-host: connection error: {e}");
                }
            }
        });
    }
}

/// The test side channel: `PUT /kv/<key>` (body = value), `GET /kv/<key>`,
/// `DELETE /kv/<key>`, `GET /kv` (the keys, one per line), `GET /stats`
/// (store operations so far by kind, JSON). Keys are percent-decoded.
async fn admin(listener: tokio::net::TcpListener, kv: Arc<spin::KvData>) -> Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let kv = kv.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let kv = kv.clone();
                async move {
                    let path = req.uri().path().to_string();
                    let method = req.method().clone();
                    let body = req.into_body().collect().await.map(|c| c.to_bytes());
                    let resp = match (method.as_str(), path.strip_prefix("/kv/")) {
                        ("GET", None) if path == "/kv" => text_response(200, kv.keys().join("\n")),
                        ("GET", None) if path == "/stats" => {
                            text_response(200, serde_json::to_string(&kv.ops()).unwrap_or_default())
                        }
                        ("PUT", Some(k)) => match body {
                            Ok(b) => {
                                kv.set(percent_decode(k), b.to_vec());
                                text_response(204, String::new())
                            }
                            Err(_) => text_response(400, "bad body\n".into()),
                        },
                        ("GET", Some(k)) => match kv.get(&percent_decode(k)) {
                            Some(v) => {
                                hyper::Response::new(Full::new(Bytes::from(v)).map_err(|e| match e {}).boxed_unsync())
                            }
                            None => text_response(404, "no such key\n".into()),
                        },
                        ("DELETE", Some(k)) => {
                            kv.delete(&percent_decode(k));
                            text_response(204, String::new())
                        }
                        _ => text_response(404, "not found\n".into()),
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let comp = manifest::load(&args.manifest, args.component.as_deref(), &args.vars)?;
    let wasm = args.wasm.clone().unwrap_or(comp.source.clone());
    let engine = engine()?;
    let t0 = Instant::now();
    let component =
        Component::from_file(&engine, &wasm).with_context(|| format!("loading component {}", wasm.display()))?;
    let compile_ms = t0.elapsed().as_secs_f64() * 1e3;
    if args.print_imports {
        print_imports(&engine, &component);
        return Ok(());
    }
    let linker = linker(&engine)?;
    let instance_pre = linker.instantiate_pre(&component)?;
    let pre = ProxyPre::P3(
        wasmtime_wasi_http::p3::bindings::ServicePre::new(instance_pre)
            .context("the component does not export wasi:http/handler@0.3.0")?,
    );
    let kv = Arc::new(spin::KvData::open(args.kv_file.clone(), &args.kv_seed)?);
    let app = App {
        engine: engine.clone(),
        pre,
        kv: kv.clone(),
        stores: Arc::new(comp.key_value_stores.clone()),
        variables: Arc::new(comp.variables.clone()),
        outbound: Arc::new(comp.allowed_outbound_hosts.clone()),
        reuse: args.reuse,
    };

    // Instantiation cost with the component pre-instantiated: what a new
    // instance costs (every request when instances are not reused).
    let rounds = args.bench.unwrap_or(20).max(1);
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        // A fresh store (WASI context, tables) plus instantiation.
        let t = Instant::now();
        let mut store = app.new_store();
        let proxy = app.pre.instantiate_async(&mut store).await?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        drop((proxy, store));
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let p90 = times[(times.len() * 9 / 10).min(times.len() - 1)];
    eprintln!(
        "spin-host: component {} compiled in {compile_ms:.0} ms; instantiation (pre-instantiated) median {median:.3} ms, p90 {p90:.3} ms over {rounds}",
        wasm.display()
    );
    if args.bench.is_some() {
        println!(
            "instantiate_median_ms={median:.3} instantiate_p90_ms={p90:.3} rounds={rounds} compile_ms={compile_ms:.0}"
        );
        return Ok(());
    }

    let handler = ProxyHandler::new(app);
    if let Some(addr) = args.admin_listen {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("spin-host: admin on http://{}", listener.local_addr()?);
        tokio::spawn(admin(listener, kv));
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let secret_names: Vec<&str> = comp.secrets.iter().map(String::as_str).collect();
    eprintln!(
        "spin-host: component `{}`: variables [{}] (secret: [{}]), stores {:?}, allowed_outbound_hosts {} entries",
        comp.id,
        comp.variables.keys().cloned().collect::<Vec<_>>().join(", "),
        secret_names.join(", "),
        comp.key_value_stores,
        comp.allowed_outbound_hosts.len()
    );
    println!("spin-host: serving on http://{}", listener.local_addr()?);
    tokio::select! {
        r = serve(listener, handler) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
