//! Shared test setup: the real ONNX Runtime library and the real generated
//! test model, and an in-process runner on an ephemeral port.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use infergate_runner::engine::{session, DecoderModel, EngineConfig, SessionConfig};
use infergate_runner::model_dir::ModelDir;
use infergate_runner::server::{self, AppState, Signing};
use infergate_runner::{App, RunnerOptions};
use tokio::sync::oneshot;

const SETUP_HINT: &str = "run `make setup` (scripts/setup-runner.sh), then `source scripts/runner-env.sh`";

fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_default()
        .join("infergate")
}

/// `ORT_DYLIB_PATH`, else where scripts/setup-runner.sh puts the library.
pub fn ort_lib() -> PathBuf {
    let p = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("onnxruntime-1.31.1/libonnxruntime.so.1.31.1"));
    assert!(
        p.is_file(),
        "the ONNX Runtime library {} is missing: {SETUP_HINT}",
        p.display()
    );
    p
}

/// `INFERGATE_MODEL_DIR`, else the repository's models/tiny-gpt.
pub fn model_dir() -> PathBuf {
    let p = std::env::var_os("INFERGATE_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/tiny-gpt"));
    assert!(
        p.join("model.onnx").is_file(),
        "the test model {} is missing: {SETUP_HINT}",
        p.display()
    );
    p
}

pub fn open_model() -> ModelDir {
    ModelDir::open(&model_dir()).expect("opening the model folder")
}

pub fn load_model(dir: &ModelDir) -> DecoderModel {
    let env = session::load_library(&ort_lib()).expect("loading ONNX Runtime");
    DecoderModel::load(env, dir, &SessionConfig::default()).expect("loading the model")
}

pub fn options(signing: Signing, engine: EngineConfig) -> RunnerOptions {
    RunnerOptions {
        model_dir: model_dir(),
        model_id: None,
        embedding_model_dir: None,
        embedding_model_id: None,
        ort_lib: Some(ort_lib()),
        session: SessionConfig::default(),
        engine,
        signing,
        max_body_bytes: 1 << 20,
    }
}

/// A runner serving on 127.0.0.1:<ephemeral>.
pub struct TestServer {
    pub base: String,
    pub state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    app: Option<App>,
    engine: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Serve without starting the engine (the runner is "loading").
    pub async fn unloaded(opts: RunnerOptions) -> TestServer {
        let app = App::new(opts).expect("assembling the runner");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(server::serve(listener, app.state.clone(), async move {
            let _ = rx.await;
        }));
        TestServer {
            base,
            state: app.state.clone(),
            stop: Some(tx),
            server: Some(server),
            app: Some(app),
            engine: None,
        }
    }

    /// Load the model and wait until ready.
    pub async fn load(&mut self) {
        let app = self.app.as_mut().unwrap();
        let (thread, loaded) = app.start_engine();
        loaded.await.unwrap().expect("loading the model");
        self.engine = Some(thread);
    }

    pub async fn start(opts: RunnerOptions) -> TestServer {
        let mut s = TestServer::unloaded(opts).await;
        s.load().await;
        s
    }

    pub async fn start_default() -> TestServer {
        TestServer::start(options(Signing::Disabled, EngineConfig::default())).await
    }

    /// POST a JSON body.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// POST a JSON body; the status and the JSON answer.
    pub async fn post_json(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self.post(path, body).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Graceful shutdown: stop accepting, drain, stop the engine.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), s).await;
        }
        self.app.take();
    }

    /// A metric's value from /metrics.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(self.url("/metrics")).await.unwrap().text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("metric {name} not found in:\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// Poll a metric until `pred` holds (or fail after `secs`).
    pub async fn wait_metric(&self, name: &str, secs: u64, pred: impl Fn(f64) -> bool) -> f64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.metric(name).await;
            if pred(v) {
                return v;
            }
            assert!(tokio::time::Instant::now() < deadline, "{name} stayed at {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|ev| {
            let lines: Vec<&str> = ev.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            (!lines.is_empty()).then(|| lines.join("\n"))
        })
        .collect()
}

/// Text and finish reason of choice 0 from parsed SSE chunks (chat or completion).
pub fn stream_text(chunks: &[serde_json::Value]) -> (String, Option<String>) {
    let mut text = String::new();
    let mut finish = None;
    for c in chunks {
        for ch in c["choices"].as_array().into_iter().flatten() {
            if let Some(t) = ch["text"].as_str() {
                text.push_str(t);
            }
            if let Some(t) = ch["delta"]["content"].as_str() {
                text.push_str(t);
            }
            if let Some(f) = ch["finish_reason"].as_str() {
                finish = Some(f.to_string());
            }
        }
    }
    (text, finish)
}
