//! One generating sequence: what happens to each token it samples.

use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::mpsc;

use super::detok::TextStream;
use super::sampling::Sampler;
use super::text::TextCodec;
use super::{FinishReason, GenerateRequest, SeqEvent};
use crate::metrics::Metrics;

pub(crate) struct Sequence {
    events: mpsc::UnboundedSender<SeqEvent>,
    sampler: Sampler,
    text: TextStream,
    prompt_len: usize,
    max_tokens: usize,
    generated: usize,
    /// The last sampled token: the next decode step's input.
    pub(crate) next_input: u32,
    arrived: Instant,
    last_token_at: Option<Instant>,
}

impl Sequence {
    pub(crate) fn new(req: GenerateRequest, prompt_len: usize) -> Sequence {
        Sequence {
            sampler: Sampler::new(req.params),
            text: TextStream::new(req.stop),
            prompt_len,
            max_tokens: req.max_tokens.max(1),
            generated: 0,
            next_input: 0,
            arrived: req.arrived,
            last_token_at: None,
            events: req.events,
        }
    }

    /// Most tokens this sequence can hold in the KV cache: prompt + max_tokens.
    pub(crate) fn worst_len(&self) -> usize {
        self.prompt_len + self.max_tokens
    }

    /// The client has gone (its receiver was dropped).
    pub(crate) fn is_cancelled(&self) -> bool {
        self.events.is_closed()
    }

    pub(crate) fn fail(&self) {
        let _ = self.events.send(SeqEvent::Failed);
    }

    /// Sample the next token from `logits` and report it. Returns whether
    /// the sequence goes on; `false` when it finished or its client left.
    pub(crate) fn accept(&mut self, logits: &[f32], codec: &TextCodec, eos: &[u32], metrics: &Metrics) -> bool {
        let token = self.sampler.sample(logits);
        let now = Instant::now();
        match self.last_token_at {
            None => metrics.ttft.observe(now - self.arrived),
            Some(t) => metrics.inter_token.observe(now - t),
        }
        self.last_token_at = Some(now);
        self.generated += 1;
        metrics.generated_tokens.fetch_add(1, Ordering::Relaxed);

        if eos.contains(&token) {
            let tail = self.text.finish(codec.tokenizer());
            return self.finish(FinishReason::Stop, tail, metrics);
        }
        let (delta, stopped) = self.text.push(codec.tokenizer(), token);
        if self.events.send(SeqEvent::Token { id: token, text: delta }).is_err() {
            Metrics::inc(&metrics.cancelled);
            return false;
        }
        if stopped {
            return self.finish(FinishReason::Stop, String::new(), metrics);
        }
        if self.generated >= self.max_tokens {
            let tail = self.text.finish(codec.tokenizer());
            return self.finish(FinishReason::Length, tail, metrics);
        }
        self.next_input = token;
        true
    }

    fn finish(&mut self, reason: FinishReason, text: String, metrics: &Metrics) -> bool {
        Metrics::inc(match reason {
            FinishReason::Stop => &metrics.finished_stop,
            FinishReason::Length => &metrics.finished_length,
        });
        let _ = self.events.send(SeqEvent::Finished {
            reason,
            text,
            prompt_tokens: self.prompt_len,
            completion_tokens: self.generated,
        });
        false
    }
}
