//! Assembling a runner: model folder + tokenizer (synchronous, fast), then
//! the HTTP state (answers 503 until ready), then the engine thread that
//! loads ONNX Runtime and the session and warms up.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tokio::sync::oneshot;

use crate::engine::{self, session, DecoderModel, EngineConfig, EngineInbox, LoadInfo, SessionConfig, TextCodec};
use crate::metrics::Metrics;
use crate::model_dir::ModelDir;
use crate::server::{AppState, Signing};

/// Everything needed to start a runner.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    pub model_dir: PathBuf,
    /// Defaults to `model_id` from the folder's config.json.
    pub model_id: Option<String>,
    pub ort_lib: Option<PathBuf>,
    pub session: SessionConfig,
    pub engine: EngineConfig,
    pub signing: Signing,
    pub max_body_bytes: usize,
}

/// A runner whose HTTP state exists and whose engine may not run yet.
pub struct App {
    pub state: Arc<AppState>,
    pub model: ModelDir,
    inbox: Option<EngineInbox>,
    ort_lib: PathBuf,
    session: SessionConfig,
    engine: EngineConfig,
    codec: Arc<TextCodec>,
    metrics: Arc<Metrics>,
}

impl App {
    pub fn new(opts: RunnerOptions) -> Result<App> {
        let Some(ort_lib) = opts.ort_lib.clone() else {
            bail!("no ONNX Runtime library given: pass --ort-lib PATH or set ORT_DYLIB_PATH (`make setup` installs one; `scripts/runner-env.sh` prints the path)");
        };
        if !ort_lib.is_file() {
            bail!(
                "the ONNX Runtime library {} does not exist (run `make setup`, or fix --ort-lib / ORT_DYLIB_PATH)",
                ort_lib.display()
            );
        }
        let model = ModelDir::open(&opts.model_dir)
            .with_context(|| format!("cannot use the model folder {}", opts.model_dir.display()))?;
        let t = Instant::now();
        let codec = Arc::new(TextCodec::load(&model)?);
        tracing::info!(
            "tokenizer loaded from {} ({} tokens) in {} ms",
            model.tokenizer_path().display(),
            codec.vocab(),
            t.elapsed().as_millis()
        );
        let metrics = Arc::new(Metrics::default());
        let (handle, inbox) = engine::channel(&opts.engine, metrics.clone());
        let model_id = opts.model_id.clone().unwrap_or_else(|| model.config.model_id.clone());
        let state = Arc::new(AppState::new(
            handle,
            codec.clone(),
            metrics.clone(),
            model_id,
            model.config.context_length,
            opts.signing.clone(),
            opts.max_body_bytes,
        ));
        Ok(App {
            state,
            model,
            inbox: Some(inbox),
            ort_lib,
            session: opts.session,
            engine: opts.engine,
            codec,
            metrics,
        })
    }

    /// Start the engine thread. Its receiver reports whether loading and
    /// the warm-up worked; readiness flips only after both.
    ///
    /// # Panics
    /// When called twice.
    pub fn start_engine(&mut self) -> (JoinHandle<()>, oneshot::Receiver<Result<LoadInfo, String>>) {
        let inbox = self.inbox.take().expect("the engine is started once");
        let (lib, model, cfg) = (self.ort_lib.clone(), self.model.clone(), self.session.clone());
        let load = move || -> Result<DecoderModel> {
            tracing::info!("loading the ONNX Runtime library {}", lib.display());
            let env = session::load_library(&lib)?;
            tracing::info!(
                "loading the model {} (device {}, {} intra-op threads)",
                model.model_path().display(),
                cfg.device,
                cfg.intra_threads
            );
            let t = Instant::now();
            let m = DecoderModel::load(env, &model, &cfg)?;
            tracing::info!("model loaded on {} in {} ms", m.device(), t.elapsed().as_millis());
            Ok(m)
        };
        engine::start(
            inbox,
            load,
            self.codec.clone(),
            self.model.config.eos_token_ids.clone(),
            self.engine.clone(),
            self.metrics.clone(),
        )
    }
}
