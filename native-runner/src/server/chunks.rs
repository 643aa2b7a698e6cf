//! Engine events → OpenAI chunk objects, then either SSE frames or, for a
//! non-streaming request, the core's fold of those same chunks into one
//! response (streaming is the only path).

use std::pin::Pin;

use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use infergate::stream::Usage;
use infergate::stream::{Fold, StreamEvent};
use infergate::wire::error::render;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::engine::SeqEvent;
use crate::error::RunnerError;

/// Events of all choices of a request, tagged with the choice index.
pub(crate) type Events = Pin<Box<dyn Stream<Item = (usize, SeqEvent)> + Send>>;

pub(crate) fn merge(receivers: Vec<mpsc::UnboundedReceiver<SeqEvent>>) -> Events {
    let streams = receivers.into_iter().enumerate().map(|(i, rx)| {
        stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
            .map(move |e| (i, e))
            .boxed()
    });
    Box::pin(stream::select_all(streams))
}

/// Builds the chunks of one response.
pub(crate) struct ChunkMaker {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub chat: bool,
    pub include_usage: bool,
    pub choices: usize,
    /// Prompt tokens of the whole request (each prompt once, whatever `n`).
    pub prompt_tokens: u64,
    /// Completion `echo`: the prompt text of each choice.
    pub echo: Option<Vec<String>>,
    pub finished: usize,
    pub completion_tokens: u64,
}

impl ChunkMaker {
    fn chunk(&self, index: usize, text: &str, finish: Option<&str>, role: bool) -> Value {
        let choice = if self.chat {
            let delta = match (role, finish) {
                (true, _) => json!({"role": "assistant", "content": text}),
                (false, Some(_)) if text.is_empty() => json!({}),
                _ => json!({"content": text}),
            };
            json!({"index": index, "delta": delta, "logprobs": null, "finish_reason": finish})
        } else {
            json!({"index": index, "text": text, "logprobs": null, "finish_reason": finish})
        };
        let mut c = json!({
            "id": self.id,
            "object": if self.chat { "chat.completion.chunk" } else { "text_completion" },
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        });
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        c
    }

    /// Chunks sent before any token: the assistant role (chat) or the echoed
    /// prompt (completions with `echo`).
    pub(crate) fn opening(&self) -> Vec<Value> {
        if self.chat {
            return (0..self.choices).map(|i| self.chunk(i, "", None, true)).collect();
        }
        match &self.echo {
            Some(texts) => texts
                .iter()
                .enumerate()
                .map(|(i, t)| self.chunk(i, t, None, false))
                .collect(),
            None => Vec::new(),
        }
    }

    /// Chunks for one engine event; `Err` when the engine failed.
    pub(crate) fn on_event(&mut self, index: usize, ev: SeqEvent) -> Result<Vec<Value>, RunnerError> {
        match ev {
            SeqEvent::Token { text, .. } if text.is_empty() => Ok(Vec::new()),
            SeqEvent::Token { text, .. } => Ok(vec![self.chunk(index, &text, None, false)]),
            SeqEvent::Finished {
                reason,
                text,
                completion_tokens,
                ..
            } => {
                self.finished += 1;
                self.completion_tokens += completion_tokens as u64;
                let mut out = Vec::new();
                if !text.is_empty() {
                    out.push(self.chunk(index, &text, None, false));
                }
                out.push(self.chunk(index, "", Some(reason.as_str()), false));
                Ok(out)
            }
            SeqEvent::Failed => Err(RunnerError::Engine),
        }
    }

    pub(crate) fn complete(&self) -> bool {
        self.finished == self.choices
    }

    pub(crate) fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens: self.prompt_tokens + self.completion_tokens,
        }
    }

    /// The `stream_options.include_usage` chunk: no choices, only usage.
    fn usage_chunk(&self) -> Value {
        json!({
            "id": self.id,
            "object": if self.chat { "chat.completion.chunk" } else { "text_completion" },
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": self.usage(),
        })
    }
}

fn sse(chunks: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        out.extend_from_slice(&infergate::sse::encode(None, &c.to_string()));
    }
    out
}

fn sse_error(err: &RunnerError) -> Vec<u8> {
    let body = render(err).to_json();
    infergate::sse::encode(None, &String::from_utf8_lossy(&body))
}

enum Phase {
    Streaming,
    Ended,
}

/// The SSE body: opening chunks, one frame per event, then the usage chunk
/// (if asked for) and `[DONE]`. A failure after the headers went out is an
/// error event followed by a clean end of stream.
pub(crate) fn sse_body(
    maker: ChunkMaker,
    events: Events,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> {
    let opening = Bytes::from(sse(&maker.opening()));
    let rest = stream::unfold(
        (maker, events, Phase::Streaming),
        |(mut maker, mut events, phase)| async move {
            if let Phase::Ended = phase {
                return None;
            }
            let (bytes, phase) = match events.next().await {
                Some((i, ev)) => match maker.on_event(i, ev) {
                    Ok(chunks) => {
                        let mut out = sse(&chunks);
                        if maker.complete() {
                            if maker.include_usage {
                                out.extend_from_slice(&sse(&[maker.usage_chunk()]));
                            }
                            out.extend_from_slice(infergate::sse::DONE);
                            (out, Phase::Ended)
                        } else {
                            (out, Phase::Streaming)
                        }
                    }
                    Err(e) => (sse_error(&e), Phase::Ended),
                },
                // Every sender is gone before every choice finished: the engine
                // stopped under us.
                None => (sse_error(&RunnerError::Engine), Phase::Ended),
            };
            Some((Ok(Bytes::from(bytes)), (maker, events, phase)))
        },
    );
    stream::once(async move { Ok(opening) })
        .filter(|b: &Result<Bytes, _>| std::future::ready(b.as_ref().is_ok_and(|b| !b.is_empty())))
        .chain(rest)
}

/// The non-streaming response: the fold of the same chunks.
pub(crate) async fn fold(mut maker: ChunkMaker, mut events: Events) -> Result<Value, RunnerError> {
    let mut fold = Fold::new();
    let push = |fold: &mut Fold, chunks: Vec<Value>| {
        for c in chunks {
            if let Value::Object(m) = c {
                let _ = fold.push(&StreamEvent::Delta(m));
            }
        }
    };
    push(&mut fold, maker.opening());
    while !maker.complete() {
        let Some((i, ev)) = events.next().await else {
            return Err(RunnerError::Engine);
        };
        let chunks = maker.on_event(i, ev)?;
        push(&mut fold, chunks);
    }
    let _ = fold.push(&StreamEvent::Usage(maker.usage()));
    let _ = fold.push(&StreamEvent::Done { finish_reason: None });
    fold.finish().map_err(|_| RunnerError::Engine)
}
