//! The engine thread's loop: continuous batching.
//!
//! Each step:
//! 1. take new requests off the channel (blocking only when idle);
//! 2. drop sequences whose client has gone, waiting or running;
//! 3. admit waiting sequences, oldest first, while the batch size, the
//!    step's token budget and the KV-cache budget allow. Short prompts are
//!    prefilled together (left-padded, one run), sample their first token
//!    and join the running batch. A prompt longer than the prefill chunk
//!    takes the one chunked-prefill slot instead;
//! 4. prefill one chunk of the sequence in that slot (it joins the batch
//!    after its last chunk), so a long prompt never stalls running decodes
//!    for more than one chunk per step;
//! 5. run one decode step over the whole running batch and sample a token
//!    for every sequence; finished ones leave the batch.
//!
//! KV-cache admission: the left-padded cache holds `rows × longest row`
//! tokens, so a sequence joins only while `rows × longest (prompt +
//! max_tokens)` of everything admitted stays within the byte budget. A
//! sequence that joined can therefore always run to `max_tokens` without
//! the cache outgrowing the budget; one that does not fit waits, in order.
//!
//! The order of `running` always equals the row order of the KV batch.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::mpsc;

use super::kv::KvBatch;
use super::sequence::Sequence;
use super::session::DecoderModel;
use super::text::TextCodec;
use super::{EngineConfig, GenerateRequest};
use crate::metrics::Metrics;

pub(crate) struct Scheduler {
    model: DecoderModel,
    codec: Arc<TextCodec>,
    eos: Vec<u32>,
    cfg: EngineConfig,
    metrics: Arc<Metrics>,
    rx: mpsc::Receiver<GenerateRequest>,
    waiting: VecDeque<(Vec<u32>, Sequence)>,
    running: Vec<Sequence>,
    kv: Option<KvBatch>,
    /// The sequence whose long prompt is being prefilled chunk by chunk.
    chunked: Option<ChunkedPrefill>,
    /// Cache bytes per token (all layers, key and value).
    bytes_per_token: usize,
}

/// A long prompt part-way through its prefill.
struct ChunkedPrefill {
    prompt: Vec<u32>,
    /// Prompt tokens already in `kv`.
    done: usize,
    kv: Option<KvBatch>,
    seq: Sequence,
}

impl Scheduler {
    pub(crate) fn new(
        model: DecoderModel,
        codec: Arc<TextCodec>,
        eos: Vec<u32>,
        cfg: EngineConfig,
        metrics: Arc<Metrics>,
        rx: mpsc::Receiver<GenerateRequest>,
    ) -> Scheduler {
        let bytes_per_token = model.dims().bytes_per_token();
        Scheduler {
            bytes_per_token,
            chunked: None,
            model,
            codec,
            eos,
            cfg,
            metrics,
            rx,
            waiting: VecDeque::new(),
            running: Vec::new(),
            kv: None,
        }
    }

    pub(crate) fn run(mut self) {
        loop {
            if self.waiting.is_empty() && self.running.is_empty() && self.chunked.is_none() {
                self.publish();
                match self.rx.blocking_recv() {
                    Some(r) => self.enqueue(r),
                    // Every handle is gone and nothing is in flight.
                    None => break,
                }
            }
            while let Ok(r) = self.rx.try_recv() {
                self.enqueue(r);
            }
            self.drop_cancelled();
            self.admit();
            self.prefill_next_chunk();
            self.decode();
            self.metrics.steps.fetch_add(1, Ordering::Relaxed);
            self.publish();
            if let Some(d) = self.cfg.step_delay {
                std::thread::sleep(d);
            }
        }
        tracing::info!("engine stopped");
    }

    fn enqueue(&mut self, mut r: GenerateRequest) {
        let prompt = std::mem::take(&mut r.prompt);
        let seq = Sequence::new(r, prompt.len());
        self.waiting.push_back((prompt, seq));
    }

    fn publish(&self) {
        self.metrics.running.store(self.running.len(), Ordering::Relaxed);
        let bytes = self.kv.as_ref().map_or(0, KvBatch::bytes);
        self.metrics.kv_cache_bytes.store(bytes, Ordering::Relaxed);
    }

    fn leave_queue(&self, n: usize) {
        if n > 0 {
            self.metrics.queue_depth.fetch_sub(n, Ordering::AcqRel);
        }
    }

    fn drop_cancelled(&mut self) {
        let before = self.waiting.len();
        self.waiting.retain(|(_, s)| !s.is_cancelled());
        let gone = before - self.waiting.len();
        self.leave_queue(gone);
        self.metrics.cancelled.fetch_add(gone as u64, Ordering::Relaxed);
        if self.chunked.as_ref().is_some_and(|c| c.seq.is_cancelled()) {
            self.chunked = None;
            Metrics::inc(&self.metrics.cancelled);
        }

        let keep: Vec<usize> = (0..self.running.len())
            .filter(|&i| !self.running[i].is_cancelled())
            .collect();
        if keep.len() < self.running.len() {
            let gone = self.running.len() - keep.len();
            self.metrics.cancelled.fetch_add(gone as u64, Ordering::Relaxed);
            tracing::debug!(gone, "dropping sequences whose client disconnected");
            self.retain_rows(&keep);
        }
    }

    /// Keep the listed running rows (ascending), in the batch and the cache.
    fn retain_rows(&mut self, keep: &[usize]) {
        let mut i = 0;
        self.running.retain(|_| {
            let k = keep.binary_search(&i).is_ok();
            i += 1;
            k
        });
        match self.kv.take().map(|kv| kv.select(keep)) {
            Some(Ok(kv)) => self.kv = (kv.rows() > 0).then_some(kv),
            Some(Err(e)) => self.fail_running(&e),
            None => {}
        }
    }

    fn fail_running(&mut self, e: &anyhow::Error) {
        tracing::error!("engine step failed, failing {} sequences: {e:#}", self.running.len());
        self.metrics
            .failed
            .fetch_add(self.running.len() as u64, Ordering::Relaxed);
        for s in self.running.drain(..) {
            s.fail();
        }
        self.kv = None;
    }

    /// Whether `rows` sequences whose longest worst case is `longest`
    /// tokens fit the KV-cache budget.
    fn kv_fits(&self, rows: usize, longest: usize) -> bool {
        rows.saturating_mul(longest).saturating_mul(self.bytes_per_token) <= self.cfg.kv_cache_bytes
    }

    /// Pick the sequences that join this step; a long prompt at the front
    /// moves into the chunked-prefill slot instead when it is free.
    fn pick(&mut self) -> Vec<(Vec<u32>, Sequence)> {
        let mut picked: Vec<(Vec<u32>, Sequence)> = Vec::new();
        let mut longest = 0;
        let chunk_rows = usize::from(self.chunked.is_some());
        let chunk_tokens = self
            .chunked
            .as_ref()
            .map_or(0, |c| self.cfg.prefill_chunk.min(c.prompt.len() - c.done));
        let decode_tokens = self.running.len() + chunk_tokens;
        let mut worst = self
            .running
            .iter()
            .chain(self.chunked.as_ref().map(|c| &c.seq))
            .map(Sequence::worst_len)
            .max()
            .unwrap_or(0);
        while let Some((prompt, seq)) = self.waiting.front() {
            let rows = self.running.len() + chunk_rows + picked.len() + 1;
            if rows > self.cfg.max_batch_size {
                break;
            }
            let w = worst.max(seq.worst_len());
            if !self.kv_fits(rows, w) {
                break;
            }
            if prompt.len() > self.cfg.prefill_chunk {
                if self.chunked.is_none() && picked.is_empty() {
                    if let Some((prompt, seq)) = self.waiting.pop_front() {
                        self.leave_queue(1);
                        self.chunked = Some(ChunkedPrefill {
                            prompt,
                            done: 0,
                            kv: None,
                            seq,
                        });
                    }
                }
                break;
            }
            let l = longest.max(prompt.len());
            let prefill_tokens = (picked.len() + 1) * l;
            if !picked.is_empty() && decode_tokens + prefill_tokens > self.cfg.max_batch_tokens {
                break;
            }
            longest = l;
            worst = w;
            if let Some(p) = self.waiting.pop_front() {
                picked.push(p);
            }
        }
        self.leave_queue(picked.len());
        picked
    }

    /// Run one chunk of the chunked-prefill slot; after the last one the
    /// sequence samples its first token and joins the running batch.
    fn prefill_next_chunk(&mut self) {
        let Some(mut c) = self.chunked.take() else { return };
        let end = (c.done + self.cfg.prefill_chunk).min(c.prompt.len());
        let chunk = &c.prompt[c.done..end];
        let result = match c.kv.take() {
            None => self.model.prefill(&[chunk]),
            Some(kv) => self.model.prefill_chunk(kv, chunk),
        };
        let (kv, logits) = match result {
            Ok(x) => x,
            Err(e) => {
                tracing::error!("chunked prefill failed: {e:#}");
                Metrics::inc(&self.metrics.failed);
                c.seq.fail();
                return;
            }
        };
        self.metrics
            .prompt_tokens
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        c.done = end;
        if c.done < c.prompt.len() {
            c.kv = Some(kv);
            self.chunked = Some(c);
            return;
        }
        if !c.seq.accept(logits.row(0), &self.codec, &self.eos, &self.metrics) {
            return;
        }
        let merged = match self.kv.take() {
            Some(running) => running.append(kv),
            None => Ok(kv),
        };
        self.running.push(c.seq);
        match merged {
            Ok(kv) => self.kv = Some(kv),
            Err(e) => self.fail_running(&e),
        }
    }

    fn admit(&mut self) {
        let picked = self.pick();
        if picked.is_empty() {
            return;
        }
        let prompts: Vec<&[u32]> = picked.iter().map(|(p, _)| p.as_slice()).collect();
        let tokens: usize = prompts.iter().map(|p| p.len()).sum();
        self.metrics.prompt_tokens.fetch_add(tokens as u64, Ordering::Relaxed);
        let (new_kv, logits) = match self.model.prefill(&prompts) {
            Ok(x) => x,
            Err(e) => {
                tracing::error!("prefill of {} sequences failed: {e:#}", picked.len());
                self.metrics.failed.fetch_add(picked.len() as u64, Ordering::Relaxed);
                for (_, s) in picked {
                    s.fail();
                }
                return;
            }
        };
        let mut keep = Vec::new();
        let mut joined = Vec::new();
        for (i, (_, mut seq)) in picked.into_iter().enumerate() {
            if seq.accept(logits.row(i), &self.codec, &self.eos, &self.metrics) {
                keep.push(i);
                joined.push(seq);
            }
        }
        if joined.is_empty() {
            return;
        }
        let merged = new_kv.select(&keep).and_then(|new_kv| match self.kv.take() {
            Some(kv) => kv.append(new_kv),
            None => Ok(new_kv),
        });
        self.running.extend(joined);
        match merged {
            Ok(kv) => self.kv = Some(kv),
            Err(e) => self.fail_running(&e),
        }
    }

    fn decode(&mut self) {
        let Some(kv) = self.kv.take() else { return };
        let tokens: Vec<u32> = self.running.iter().map(|s| s.next_input).collect();
        match self.model.decode(kv, &tokens) {
            Ok((kv, logits)) => {
                let (codec, eos, metrics) = (&self.codec, &self.eos, &self.metrics);
                let keep: Vec<usize> = self
                    .running
                    .iter_mut()
                    .enumerate()
                    .filter_map(|(i, s)| s.accept(logits.row(i), codec, eos, metrics).then_some(i))
                    .collect();
                self.kv = Some(kv);
                if keep.len() < self.running.len() {
                    self.retain_rows(&keep);
                }
            }
            Err(e) => self.fail_running(&e),
        }
    }
}

/// One real prefill and decode, so the first request does not pay for ONNX
/// Runtime's lazy initialisation.
pub(crate) fn warm_up(model: &mut DecoderModel, codec: &TextCodec) -> Result<Duration> {
    let t = Instant::now();
    let mut prompt = codec.encode("Hello, world")?;
    if prompt.is_empty() {
        prompt.push(0);
    }
    let (kv, logits) = model.prefill(&[&prompt])?;
    let next = super::sampling::argmax(logits.row(0));
    model.decode(kv, &[next])?;
    Ok(t.elapsed())
}
