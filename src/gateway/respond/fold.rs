//! The fold: an opened stream drained into one JSON answer, for clients
//! that did not ask to stream (and for tasks).

use super::super::stages::cache::Recorder;
use super::super::upstream::events::UpstreamEvents;
use super::super::upstream::target::NativeApi;
use super::{output_bytes, Failure};
use crate::platform::Platform;
use crate::stream::{Fold, StreamEvent, Usage};
use crate::wire::anthropic::passthrough::MessageFold;
use crate::wire::openai::responses::native::ResponseFold;
use serde_json::Value;

/// Drain an opened stream into one JSON response (non-streaming clients),
/// recording chunks for the cache.
pub async fn fold_stream<P: Platform>(
    mut events: Box<UpstreamEvents<P>>,
    first: StreamEvent,
    recorder: &mut Option<Recorder>,
) -> Result<Folded, Failure> {
    let mut fold = Fold::new();
    // Text seen, which the account stage charges when the stream fails.
    let mut seen = (0usize, 0u64);
    let mut own = match events.native() {
        Some(NativeApi::Messages) => Some(OwnFold::Message(MessageFold::default())),
        Some(NativeApi::Responses) => Some(OwnFold::Response(ResponseFold::default())),
        None => None,
    };
    let mut finish_reason = None;
    let mut next = Some(first);
    while let Some(ev) = next {
        match (&ev, own.as_mut()) {
            (StreamEvent::Raw(raw), Some(OwnFold::Message(m))) => m.push(raw),
            (StreamEvent::Raw(raw), Some(OwnFold::Response(r))) => r.push(raw),
            _ => {}
        }
        if let StreamEvent::Delta(chunk) = &ev {
            if let Some(r) = recorder.as_mut() {
                r.push(chunk);
            }
            let n = output_bytes(chunk);
            if n > 0 {
                seen = (seen.0.saturating_add(n), seen.1.saturating_add(1));
            }
        }
        if let StreamEvent::Done { finish_reason: f } = &ev {
            finish_reason = f.clone();
        }
        fold.push(&ev).map_err(|e| Failure::after(e.into(), seen))?;
        next = events.next().await;
    }
    // Inline rather than spawned: a finished body ends at once, and work
    // spawned from a task that may itself be background work (tasks) must
    // not outlive the context it was started in.
    events.drain().await;
    let usage = fold.usage();
    Ok(Folded {
        body: fold.finish().map_err(|e| Failure::after(e.into(), seen))?,
        usage,
        finish_reason,
        native: own.and_then(|o| match o {
            OwnFold::Message(m) => m.finish(),
            OwnFold::Response(r) => r.finish(),
        }),
    })
}

/// The upstream's own object, folded from its relayed events.
enum OwnFold {
    Message(MessageFold),
    Response(ResponseFold),
}

/// A stream folded into one answer.
pub struct Folded {
    /// The `chat.completion` / `text_completion` object.
    pub body: Value,
    pub usage: Option<Usage>,
    pub finish_reason: Option<String>,
    /// The upstream's own Message or Response, when its events were
    /// relayed.
    pub native: Option<Value>,
}
