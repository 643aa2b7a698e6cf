//! ONNX Runtime: loading the library, building the session on the chosen
//! device, and the two forward passes the scheduler needs (batched prefill
//! and one-token decode) over the Optimum decoder-with-past layout.

use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use ort::environment::Environment;
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{DynValue, Tensor};

use super::kv::{KvBatch, KvDims};
use crate::model_dir::{ModelDir, ModelFolder};

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    Cpu,
    Cuda,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to build the session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub device: Device,
    /// Refuse to start rather than fall back to the CPU.
    pub require_gpu: bool,
    pub intra_threads: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            device: Device::Cpu,
            require_gpu: false,
            intra_threads: 1,
        }
    }
}

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();

/// Load the ONNX Runtime shared library (once per process) and create the
/// environment. `ort::init_from` reports a missing or incompatible library
/// as an error, where the implicit load would panic.
pub fn load_library(path: &Path) -> Result<&'static Environment> {
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    if !path.is_file() {
        bail!(
            "the ONNX Runtime library {} does not exist (run `make setup`, or pass --ort-lib / set ORT_DYLIB_PATH)",
            path.display()
        );
    }
    let env = ort::init_from(path)
        .map_err(|e| anyhow!("cannot load the ONNX Runtime library {}: {e}", path.display()))?
        .with_name("infergate-runner")
        .with_telemetry(false)
        .build()
        .map_err(|e| anyhow!("cannot create the ONNX Runtime environment: {e}"))?;
    Ok(ENVIRONMENT.get_or_init(|| env))
}

/// Next-token logits, one row of `vocab` floats per sequence.
#[derive(Debug, Clone)]
pub struct Logits {
    data: Vec<f32>,
    vocab: usize,
}

impl Logits {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.vocab..(i + 1) * self.vocab]
    }
    pub fn rows(&self) -> usize {
        self.data.len() / self.vocab
    }
}

/// The decoder session and what is needed to feed it.
pub struct DecoderModel {
    session: Session,
    dims: KvDims,
    vocab: usize,
    context: usize,
    pad_id: i64,
    device: Device,
    past_names: Vec<String>,
    present_names: Vec<String>,
    /// Where `logits` are written: host memory.
    host_memory: MemoryInfo<'static>,
    /// Where `present.*` (the next step's past) are written: the device's
    /// own memory, so the cache stays there between steps.
    kv_memory: MemoryInfo<'static>,
}

impl DecoderModel {
    /// Build the session for `model`, on the requested device when possible.
    pub fn load(env: &Environment, model: &ModelDir, cfg: &SessionConfig) -> Result<DecoderModel> {
        let c = &model.config;
        let path = model.model_path();
        let (session, device) = build_session(env, &path, cfg)?;
        let mut past_names = Vec::new();
        let mut present_names = Vec::new();
        for i in 0..c.num_layers {
            for kind in ["key", "value"] {
                past_names.push(format!("past_key_values.{i}.{kind}"));
                present_names.push(format!("present.{i}.{kind}"));
            }
        }
        let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        for want in ["input_ids", "attention_mask", "position_ids"]
            .into_iter()
            .chain(past_names.iter().map(String::as_str))
        {
            if !inputs.contains(&want) {
                bail!(
                    "{} has no input `{want}` (inputs: {}); is config.json's num_layers right?",
                    path.display(),
                    inputs.join(", ")
                );
            }
        }
        Ok(DecoderModel {
            session,
            dims: KvDims {
                layers: c.num_layers,
                heads: c.num_kv_heads,
                head_dim: c.head_dim,
            },
            vocab: c.vocab_size,
            context: c.context_length,
            pad_id: i64::from(c.pad_token_id),
            device,
            past_names,
            present_names,
            host_memory: memory_info(AllocationDevice::CPU)?,
            kv_memory: match device {
                Device::Cpu => memory_info(AllocationDevice::CPU)?,
                Device::Cuda => memory_info(AllocationDevice::CUDA)?,
            },
        })
    }

    pub fn device(&self) -> Device {
        self.device
    }
    pub fn dims(&self) -> KvDims {
        self.dims
    }
    pub fn vocab(&self) -> usize {
        self.vocab
    }
    pub fn context(&self) -> usize {
        self.context
    }

    /// Run the prompts from an empty cache, left-padded into one batch.
    /// Returns their caches and the logits after each prompt's last token.
    pub fn prefill(&mut self, prompts: &[&[u32]]) -> Result<(KvBatch, Logits)> {
        let b = prompts.len();
        let s = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
        if b == 0 || prompts.iter().any(|p| p.is_empty()) {
            bail!("prefill needs at least one non-empty prompt");
        }
        if s > self.context {
            bail!("a prompt of {s} tokens is over the context of {}", self.context);
        }
        let mut ids = vec![self.pad_id; b * s];
        let mut mask = vec![0i64; b * s];
        let mut pos = vec![0i64; b * s];
        for (r, p) in prompts.iter().enumerate() {
            let pad = s - p.len();
            for (j, &tok) in p.iter().enumerate() {
                ids[r * s + pad + j] = i64::from(tok);
                mask[r * s + pad + j] = 1;
                pos[r * s + pad + j] = j as i64;
            }
        }
        let empty = KvBatch::empty(self.dims, b)?;
        let lens = prompts.iter().map(|p| p.len()).collect();
        self.run(b, s, ids, mask, pos, &empty, lens, s)
    }

    /// Feed one token per row after the rows' caches; consumes the cache and
    /// returns the grown one (the `present.*` outputs, no copy).
    pub fn decode(&mut self, kv: KvBatch, tokens: &[u32]) -> Result<(KvBatch, Logits)> {
        let b = kv.rows();
        if b == 0 || tokens.len() != b {
            bail!(
                "decode needs one token per cache row ({} tokens, {b} rows)",
                tokens.len()
            );
        }
        let w = kv.width();
        let t = w + 1;
        if kv.lens().iter().any(|&l| l + 1 > self.context) {
            bail!("a sequence reached the context of {} tokens", self.context);
        }
        let ids = tokens.iter().map(|&x| i64::from(x)).collect();
        let mut mask = vec![0i64; b * t];
        let mut pos = Vec::with_capacity(b);
        for (r, &len) in kv.lens().iter().enumerate() {
            mask[r * t + (w - len)..(r + 1) * t].fill(1);
            pos.push(len as i64);
        }
        let lens = kv.lens().iter().map(|l| l + 1).collect();
        self.run(b, 1, ids, mask, pos, &kv, lens, t)
    }

    /// Prefill the next `chunk` of one sequence's prompt after its cache so
    /// far (`kv`: one row, from an earlier [`prefill`](Self::prefill) or
    /// chunk). Chunked prefill lets a long prompt join over several engine
    /// steps while the running batch keeps decoding between them.
    pub fn prefill_chunk(&mut self, kv: KvBatch, chunk: &[u32]) -> Result<(KvBatch, Logits)> {
        if kv.rows() != 1 || chunk.is_empty() {
            bail!("a prefill chunk needs one cache row and at least one token");
        }
        let len = kv.lens()[0];
        let w = kv.width();
        let s = chunk.len();
        if len + s > self.context {
            bail!("a prompt of {} tokens is over the context of {}", len + s, self.context);
        }
        let t = w + s;
        let ids = chunk.iter().map(|&x| i64::from(x)).collect();
        let mut mask = vec![0i64; t];
        mask[w - len..].fill(1);
        let pos = (len..len + s).map(|p| p as i64).collect();
        self.run(1, s, ids, mask, pos, &kv, vec![len + s], t)
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        b: usize,
        s: usize,
        ids: Vec<i64>,
        mask: Vec<i64>,
        pos: Vec<i64>,
        past: &KvBatch,
        new_lens: Vec<usize>,
        new_width: usize,
    ) -> Result<(KvBatch, Logits)> {
        let t = mask.len() / b;
        let tensor = |shape: [usize; 2], data: Vec<i64>| -> Result<DynValue> {
            let shape: Vec<i64> = shape.iter().map(|&x| x as i64).collect();
            Tensor::from_array((shape, data))
                .map(|t| t.into_dyn())
                .map_err(|e| anyhow!("creating an input tensor: {e}"))
        };
        // IoBinding: the `present.*` outputs are allocated where the model
        // runs (device memory under CUDA) and bound back as the next step's
        // `past_key_values.*` inputs, so the KV cache does not cross PCIe
        // between decode steps; only `logits` comes to the host. On the CPU
        // the same path runs with host memory.
        let mut binding = self
            .session
            .create_binding()
            .map_err(|e| anyhow!("creating the I/O binding: {e}"))?;
        let bind = |binding: &mut ort::session::IoBinding, name: &str, v: &DynValue| {
            binding
                .bind_input(name, v)
                .map_err(|e| anyhow!("binding input {name}: {e}"))
        };
        bind(&mut binding, "input_ids", &tensor([b, s], ids)?)?;
        bind(&mut binding, "attention_mask", &tensor([b, t], mask)?)?;
        bind(&mut binding, "position_ids", &tensor([b, s], pos)?)?;
        for (name, value) in self.past_names.iter().zip(past.tensors()) {
            bind(&mut binding, name, value)?;
        }
        binding
            .bind_output_to_device("logits", &self.host_memory)
            .map_err(|e| anyhow!("binding logits: {e}"))?;
        for name in &self.present_names {
            binding
                .bind_output_to_device(name.as_str(), &self.kv_memory)
                .map_err(|e| anyhow!("binding {name}: {e}"))?;
        }
        let mut outputs = self
            .session
            .run_binding(&binding)
            .map_err(|e| anyhow!("inference failed: {e}"))?;
        let logits = {
            let value = outputs
                .get("logits")
                .ok_or_else(|| anyhow!("the model has no `logits` output"))?;
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| anyhow!("reading logits: {e}"))?;
            let v = self.vocab;
            if shape.len() != 3 || shape[0] as usize != b || shape[2] as usize != v {
                bail!("unexpected logits shape {shape:?}");
            }
            let seq = shape[1] as usize;
            let mut last = Vec::with_capacity(b * v);
            for r in 0..b {
                let o = (r * seq + seq - 1) * v;
                last.extend_from_slice(&data[o..o + v]);
            }
            Logits { data: last, vocab: v }
        };
        let presents = self
            .present_names
            .iter()
            .map(|n| {
                outputs
                    .remove(n)
                    .ok_or_else(|| anyhow!("the model has no `{n}` output"))
            })
            .collect::<Result<Vec<DynValue>>>()?;
        Ok((KvBatch::from_outputs(self.dims, new_lens, new_width, presents), logits))
    }
}

fn memory_info(device: AllocationDevice<'static>) -> Result<MemoryInfo<'static>> {
    MemoryInfo::new(device, 0, AllocatorType::Device, MemoryType::Default)
        .map_err(|e| anyhow!("describing device memory: {e}"))
}

pub(crate) fn build_session(env: &Environment, path: &Path, cfg: &SessionConfig) -> Result<(Session, Device)> {
    let builder = || -> Result<ort::session::builder::SessionBuilder> {
        Session::builder(env)
            .map_err(|e| anyhow!("{e}"))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| anyhow!("{e}"))?
            .with_intra_threads(cfg.intra_threads.max(1))
            .map_err(|e| anyhow!("{e}"))
    };
    let commit = |mut b: ort::session::builder::SessionBuilder| -> Result<Session> {
        b.commit_from_file(path)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("cannot load the model {}", path.display()))
    };
    if cfg.device == Device::Cuda {
        match cuda_session(builder()?, path) {
            Ok(s) => return Ok((s, Device::Cuda)),
            Err(e) if cfg.require_gpu => {
                return Err(e.context("--require-gpu is set and the CUDA execution provider is unavailable"))
            }
            Err(e) => tracing::warn!(
                "CUDA execution provider unavailable, FALLING BACK TO CPU (pass --require-gpu to refuse instead): {e:#}"
            ),
        }
    }
    Ok((commit(builder()?)?, Device::Cpu))
}

/// Register the CUDA execution provider strictly (`error_on_failure`): ONNX
/// Runtime would otherwise fall back to the CPU without a word.
#[cfg(feature = "cuda")]
fn cuda_session(builder: ort::session::builder::SessionBuilder, path: &Path) -> Result<Session> {
    use ort::ep::ExecutionProvider;
    if !ort::ep::CUDA::is_available().unwrap_or(false) {
        bail!(
            "this ONNX Runtime library was built without the CUDA execution provider (use the onnxruntime-gpu build)"
        );
    }
    let ep = ort::ep::CUDA::default().build().error_on_failure();
    builder
        .with_execution_providers([ep])
        .map_err(|e| anyhow!("registering the CUDA execution provider: {e}"))?
        .commit_from_file(path)
        .map_err(|e| anyhow!("creating the CUDA session: {e}"))
}

#[cfg(not(feature = "cuda"))]
fn cuda_session(_builder: ort::session::builder::SessionBuilder, _path: &Path) -> Result<Session> {
    bail!("this runner was built without CUDA support (rebuild with `--features cuda`)")
}
