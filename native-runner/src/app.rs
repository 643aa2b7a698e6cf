//! Assembling a runner: model folder + tokenizer (synchronous, fast), then
//! the HTTP state (answers 503 until ready), then the engine thread that
//! loads ONNX Runtime and the session and warms up.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tokio::sync::oneshot;

use crate::engine::encoder::Encoder;
use crate::engine::{self, session, DecoderModel, EngineConfig, EngineInbox, LoadInfo, SessionConfig, TextCodec};
use crate::metrics::Metrics;
use crate::model_dir::{EncoderDir, ModelDir, ModelFolder};
use crate::server::{AppState, Signing};

/// Everything needed to start a runner.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    pub model_dir: PathBuf,
    /// Defaults to `local/<folder name>`.
    pub model_id: Option<String>,
    /// A sentence-transformers encoder folder served at `/v1/embeddings`.
    pub embedding_model_dir: Option<PathBuf>,
    /// Defaults to `local/<folder name>` of the encoder folder.
    pub embedding_model_id: Option<String>,
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
    pub encoder: Option<EncoderDir>,
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
        let encoder = match &opts.embedding_model_dir {
            Some(d) => Some(
                EncoderDir::open(d)
                    .with_context(|| format!("cannot use the embedding model folder {}", d.display()))?,
            ),
            None => None,
        };
        let model_id = opts.model_id.clone().unwrap_or_else(|| model.default_model_id());
        let embedding_model_id = encoder
            .as_ref()
            .map(|e| opts.embedding_model_id.clone().unwrap_or_else(|| e.default_model_id()));
        if embedding_model_id.as_deref() == Some(model_id.as_str()) {
            bail!(
                "the chat and the embedding model both have the id {model_id}: set --model-id or --embedding-model-id"
            );
        }
        // The KV-cache budget also bounds one sequence: prompt + completion
        // must fit it alone, so the context clients see is the smaller of
        // the model's and the budget's.
        let per_token = 2 * model.config.num_layers * model.config.num_kv_heads * model.config.head_dim * 4;
        let context = model
            .config
            .context_length
            .min(opts.engine.kv_cache_bytes / per_token.max(1));
        if context < 2 {
            bail!("--kv-cache-memory is too small to hold even two tokens of this model");
        }
        let state = Arc::new(
            AppState::new(
                handle,
                codec.clone(),
                metrics.clone(),
                model_id,
                context,
                opts.signing.clone(),
                opts.max_body_bytes,
            )
            .with_embedding_model(embedding_model_id),
        );
        Ok(App {
            state,
            model,
            encoder,
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
        let (encoder, state) = (self.encoder.clone(), self.state.clone());
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
            if let Some(dir) = encoder {
                let t = Instant::now();
                let e = Encoder::load(env, &dir, &cfg)
                    .with_context(|| format!("cannot load the embedding model {}", dir.model_path().display()))?;
                // One real inference, so the first request does not pay for
                // ONNX Runtime's lazy initialisation.
                let probe = e.tokenize("warm up")?;
                e.embed(&[probe])?;
                tracing::info!(
                    "embedding model loaded on {} in {} ms ({} dimensions)",
                    e.device(),
                    t.elapsed().as_millis(),
                    e.dimensions()
                );
                state.set_encoder(Arc::new(e));
            }
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
