//! The inference engine: an actor that owns the ONNX Runtime session and
//! the scheduler state (TGI's pattern).
//!
//! # Layout
//! - `mod.rs`: the public face: [`EngineHandle`] (admission control and
//!   submission), [`GenerateRequest`] / [`SeqEvent`], [`start`].
//! - `scheduler`: the engine thread's loop: intake, cancellation, admission
//!   within the token and KV-cache budgets, batched prefill, chunked prefill
//!   of long prompts, batched decode.
//! - `sequence`: one generating sequence: sampling, detokenization, stop
//!   conditions, events to its client.
//! - `session`: loading ONNX Runtime, device selection, the forward passes.
//! - `kv`: the running batch's left-padded KV cache.
//! - `sampling`: greedy / temperature / top-k / top-p, seeded.
//! - `text`: tokenizer, chat template (minijinja), incremental decoding.
//! - `detok`: stop strings over the decoded text stream.
//! - `encoder`: the sentence-embedding model behind `/v1/embeddings`.
//!
//! Requests reach the engine over a bounded channel; each sequence gets its
//! events back on its own unbounded channel, so a slow client never stalls
//! the batch (a sequence produces at most `max_tokens` events). The engine
//! runs on a dedicated OS thread because `Session::run` blocks and needs
//! `&mut Session`; the async runtime only ever does `try_send`.

pub mod detok;
pub mod encoder;
pub mod kv;
pub mod sampling;
mod scheduler;
mod sequence;
pub mod session;
pub mod text;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

pub use sampling::SamplingParams;
pub use session::{DecoderModel, Device, SessionConfig};
pub use text::TextCodec;

use crate::metrics::Metrics;

/// Scheduler limits.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Most sequences decoding together.
    pub max_batch_size: usize,
    /// Most tokens one step may process: the running sequences' decode
    /// tokens plus the padded prefill of the sequences joining. A prompt
    /// longer than this is still admitted, alone.
    pub max_batch_tokens: usize,
    /// Most sequences waiting to join; more are refused with 429.
    pub max_queue: usize,
    /// Prompts longer than this many tokens are prefilled in chunks of this
    /// size, one chunk per engine step, between decode steps.
    pub prefill_chunk: usize,
    /// KV-cache budget in bytes: sequences join only while the padded cache
    /// of everything admitted, grown to each one's `prompt + max_tokens`,
    /// fits (see the scheduler).
    pub kv_cache_bytes: usize,
    /// Sleep after each step: throttles generation for tests and demos.
    pub step_delay: Option<Duration>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_batch_size: 32,
            max_batch_tokens: 4096,
            max_queue: 256,
            prefill_chunk: 512,
            kv_cache_bytes: 4 << 30,
            step_delay: None,
        }
    }
}

/// One sequence to generate.
#[derive(Debug)]
pub struct GenerateRequest {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    /// Tokens to generate at most (`prompt + max_tokens` fits the context).
    pub max_tokens: usize,
    pub stop: Vec<String>,
    pub events: mpsc::UnboundedSender<SeqEvent>,
    /// When the request was accepted, for the time-to-first-token metric.
    pub arrived: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An EOS token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// What a sequence reports to its client.
#[derive(Debug, Clone, PartialEq)]
pub enum SeqEvent {
    /// One generated token and the text it completes (possibly empty while
    /// a character or a possible stop string is held back).
    Token { id: u32, text: String },
    /// The last event of a sequence that ended normally.
    Finished {
        reason: FinishReason,
        /// Held-back text released at the end.
        text: String,
        prompt_tokens: usize,
        completion_tokens: usize,
    },
    /// The engine failed; the details are in the runner's log.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    QueueFull,
    NotReady,
    Closed,
}

/// The submitting side: cheap to clone, used by the HTTP handlers.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<GenerateRequest>,
    metrics: Arc<Metrics>,
    max_queue: usize,
}

/// The receiving side, handed to [`start`].
pub struct EngineInbox {
    rx: mpsc::Receiver<GenerateRequest>,
}

/// The channel pair. It exists before the model is loaded so the HTTP
/// server can answer (503) while loading.
pub fn channel(cfg: &EngineConfig, metrics: Arc<Metrics>) -> (EngineHandle, EngineInbox) {
    let (tx, rx) = mpsc::channel(cfg.max_queue.max(1));
    (
        EngineHandle {
            tx,
            metrics,
            max_queue: cfg.max_queue,
        },
        EngineInbox { rx },
    )
}

impl EngineHandle {
    /// Most sequences that can wait at once (`--max-queue`).
    pub fn max_queue(&self) -> usize {
        self.max_queue
    }

    pub fn is_ready(&self) -> bool {
        self.metrics.ready.load(Ordering::Acquire)
    }

    /// Queue all sequences of one request, or none: the queue slots are
    /// reserved together, so a request is never half-accepted for lack of
    /// room.
    pub fn submit(&self, reqs: Vec<GenerateRequest>) -> Result<(), SubmitError> {
        if !self.is_ready() {
            return Err(SubmitError::NotReady);
        }
        let n = reqs.len();
        self.metrics
            .queue_depth
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q + n <= self.max_queue).then_some(q + n)
            })
            .map_err(|_| SubmitError::QueueFull)?;
        let mut sent = 0;
        for r in reqs {
            match self.tx.try_send(r) {
                Ok(()) => sent += 1,
                Err(e) => {
                    // Give back the slots of the sequences never sent; the
                    // sent ones are dropped by the engine once the caller
                    // drops their receivers.
                    self.metrics.queue_depth.fetch_sub(n - sent, Ordering::AcqRel);
                    return Err(match e {
                        mpsc::error::TrySendError::Full(_) => SubmitError::QueueFull,
                        mpsc::error::TrySendError::Closed(_) => SubmitError::Closed,
                    });
                }
            }
        }
        Ok(())
    }
}

/// What loading reported.
#[derive(Debug, Clone)]
pub struct LoadInfo {
    pub device: Device,
    pub warmup: Duration,
}

/// Start the engine thread: it runs `load` (the library and the session),
/// warms up with one real inference, flips readiness, then serves `inbox`
/// until every [`EngineHandle`] is dropped and the work in flight is done.
pub fn start<F>(
    inbox: EngineInbox,
    load: F,
    codec: Arc<TextCodec>,
    eos: Vec<u32>,
    cfg: EngineConfig,
    metrics: Arc<Metrics>,
) -> (JoinHandle<()>, oneshot::Receiver<Result<LoadInfo, String>>)
where
    F: FnOnce() -> anyhow::Result<DecoderModel> + Send + 'static,
{
    let (done_tx, done_rx) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("infergate-engine".into())
        .spawn(move || {
            let loaded = load().and_then(|mut model| {
                let warmup = scheduler::warm_up(&mut model, &codec)?;
                Ok((model, warmup))
            });
            let (model, warmup) = match loaded {
                Ok(x) => x,
                Err(e) => {
                    let _ = done_tx.send(Err(format!("{e:#}")));
                    return;
                }
            };
            let device = model.device();
            metrics.set_device(device.as_str());
            let _ready = ReadyGuard::set(&metrics.ready);
            let _ = done_tx.send(Ok(LoadInfo { device, warmup }));
            scheduler::Scheduler::new(model, codec, eos, cfg, metrics.clone(), inbox.rx).run();
        })
        .expect("spawning the engine thread");
    (thread, done_rx)
}

/// Readiness is true exactly while the engine loop runs, even if it panics.
struct ReadyGuard<'a>(&'a AtomicBool);

impl<'a> ReadyGuard<'a> {
    fn set(flag: &'a AtomicBool) -> Self {
        flag.store(true, Ordering::Release);
        ReadyGuard(flag)
    }
}

impl Drop for ReadyGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
