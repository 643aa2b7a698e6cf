//! The command line.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;
use infergate::signing::DEFAULT_WINDOW_MS;

use crate::engine::{Device, EngineConfig, SessionConfig};
use crate::server::Signing;
use crate::RunnerOptions;

/// infergate native runner: serves a decoder-only ONNX model over an
/// OpenAI-compatible API (/v1/completions, /v1/chat/completions, streaming
/// or not) with ONNX Runtime and continuous batching.
///
/// Requests to /v1/* must carry the edge's HMAC signature
/// (x-infergate-timestamp, x-infergate-signature); set the shared secret
/// with INFERGATE_RUNNER_SECRET, or pass --insecure-dev on a development
/// machine. /health, /ready and /metrics are open.
#[derive(Debug, Parser)]
#[command(name = "infergate-runner", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    /// Decoder model folder in the Hugging Face layout: model.onnx (decoder
    /// with past), tokenizer.json, config.json, and optionally
    /// generation_config.json and tokenizer_config.json (chat template).
    #[arg(
        long,
        env = "INFERGATE_MODEL_DIR",
        value_name = "DIR",
        default_value = "models/tiny-gpt"
    )]
    pub model_dir: PathBuf,

    /// Model id clients send in `model` [default: local/<folder name>].
    #[arg(long, value_name = "ID")]
    pub model_id: Option<String>,

    /// Sentence-transformers encoder folder served at /v1/embeddings
    /// (model.onnx, tokenizer.json, config.json, modules.json,
    /// 1_Pooling/config.json).
    #[arg(long, env = "INFERGATE_EMBEDDING_MODEL_DIR", value_name = "DIR")]
    pub embedding_model_dir: Option<PathBuf>,

    /// Model id of the embedding model [default: local/<folder name>].
    #[arg(long, value_name = "ID")]
    pub embedding_model_id: Option<String>,

    /// The ONNX Runtime shared library (libonnxruntime.so.1.31.x).
    #[arg(long, env = "ORT_DYLIB_PATH", value_name = "PATH")]
    pub ort_lib: Option<PathBuf>,

    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8090)]
    pub port: u16,

    /// Where inference runs. With `cuda`, an unavailable CUDA execution
    /// provider is logged and the CPU is used instead, unless --require-gpu.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,

    /// With --device cuda: refuse to start when CUDA cannot be used.
    #[arg(long)]
    pub require_gpu: bool,

    /// ONNX Runtime intra-op threads. One is fastest for small models on
    /// small CPUs; batching, not threads, gives the throughput.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub intra_threads: usize,

    /// Most sequences decoding together in one batch.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub max_batch_size: usize,

    /// Token budget of one engine step: running sequences' decode tokens
    /// plus the padded prefill of joining ones (a longer prompt still runs,
    /// alone).
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub max_batch_tokens: usize,

    /// Most sequences waiting to join the batch; more are answered 429.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_queue: usize,

    /// Prompts longer than this are prefilled N tokens per engine step,
    /// between decode steps, so running streams keep flowing.
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub prefill_chunk: usize,

    /// KV-cache budget in MiB. A sequence joins the batch only while the
    /// cache of everything admitted, grown to prompt + max_tokens, fits; it
    /// also caps one request's prompt + max_tokens.
    #[arg(long, default_value_t = 4096, value_name = "MIB")]
    pub kv_cache_memory: usize,

    /// Largest accepted request body.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    pub max_body_bytes: usize,

    /// Shared HMAC secret for the edge's request signatures. Prefer the
    /// environment variable: command lines are visible to other users.
    #[arg(long, env = "INFERGATE_RUNNER_SECRET", hide_env_values = true, value_name = "SECRET")]
    pub signing_secret: Option<Secret>,

    /// Accept signed requests whose timestamp is at most this far off.
    #[arg(long, default_value_t = DEFAULT_WINDOW_MS / 1000, value_name = "SECS")]
    pub signature_window_secs: u64,

    /// Development only: serve /v1/* without checking signatures.
    #[arg(long)]
    pub insecure_dev: bool,

    /// After SIGINT/SIGTERM, wait at most this long for streams in flight.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub drain_timeout_secs: u64,

    /// Sleep this long after every engine step (slows generation down for
    /// tests and demos).
    #[arg(long, hide = true, value_name = "MS")]
    pub step_delay_ms: Option<u64>,
}

/// A secret from the command line or the environment; `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(String);

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Cli {
    pub fn options(&self) -> Result<RunnerOptions> {
        let signing = match (&self.signing_secret, self.insecure_dev) {
            (_, true) => Signing::Disabled,
            (Some(Secret(s)), false) if !s.is_empty() => Signing::Required {
                secret: s.as_bytes().to_vec(),
                window_ms: self.signature_window_secs.saturating_mul(1000),
            },
            _ => bail!(
                "no signing secret: set INFERGATE_RUNNER_SECRET (or --signing-secret) to the secret the edge signs with, \
                 or pass --insecure-dev to serve without signature checks on a development machine"
            ),
        };
        if self.max_batch_size == 0 || self.max_batch_tokens == 0 || self.max_queue == 0 || self.prefill_chunk == 0 {
            bail!("--max-batch-size, --max-batch-tokens, --max-queue and --prefill-chunk must be at least 1");
        }
        Ok(RunnerOptions {
            model_dir: self.model_dir.clone(),
            model_id: self.model_id.clone(),
            embedding_model_dir: self.embedding_model_dir.clone(),
            embedding_model_id: self.embedding_model_id.clone(),
            ort_lib: self.ort_lib.clone(),
            session: SessionConfig {
                device: self.device,
                require_gpu: self.require_gpu,
                intra_threads: self.intra_threads.max(1),
            },
            engine: EngineConfig {
                max_batch_size: self.max_batch_size,
                max_batch_tokens: self.max_batch_tokens,
                max_queue: self.max_queue,
                prefill_chunk: self.prefill_chunk,
                kv_cache_bytes: self.kv_cache_memory.saturating_mul(1 << 20),
                step_delay: self.step_delay_ms.map(Duration::from_millis),
            },
            signing,
            max_body_bytes: self.max_body_bytes,
        })
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let cli = Cli::try_parse_from(["infergate-runner", "--signing-secret", "hunter2-very-secret"]).unwrap();
        let opts = cli.options().unwrap();
        for dump in [format!("{cli:?}"), format!("{opts:?}")] {
            assert!(!dump.contains("hunter2"), "{dump}");
        }
        assert!(matches!(opts.signing, Signing::Required { .. }));
    }

    #[test]
    fn a_secret_or_insecure_dev_is_required() {
        let cli = Cli::try_parse_from(["infergate-runner"]).unwrap();
        if std::env::var_os("INFERGATE_RUNNER_SECRET").is_none() {
            assert!(cli.options().is_err());
        }
        let dev = Cli::try_parse_from(["infergate-runner", "--insecure-dev"]).unwrap();
        assert!(matches!(dev.options().unwrap().signing, Signing::Disabled));
    }
}
