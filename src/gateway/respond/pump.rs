//! The pump: an opened stream forwarded to a streaming client.
//!
//! A streamed response is driven by a *pump* task spawned on the platform's
//! background runner (`waitUntil` on Workers), not by the client's reads
//! alone. The pump pushes each encoded chunk into a small bounded channel
//! whose receiver is the response body: a chunk is forwarded as soon as it
//! is decoded (no buffering), a slow client applies backpressure through
//! the bound, and when the client leaves, the send fails and the pump drops
//! the upstream body, which cancels it. Its [`Outcome`] goes back to the
//! pipeline's account stage when the stream has ended, however it ended.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};

use super::super::stages::account::{Outcome, OutcomeSender};
use super::super::stages::cache::Recorder;
use super::super::upstream::events::UpstreamEvents;
use super::super::{Body, Response};
use super::{output_bytes, Encoder};
use crate::platform::Platform;
use crate::stream::{StreamEvent, Usage};
use crate::wire::error::OpenAiError;

/// Chunks in flight between the pump and a slow client.
const CHANNEL_DEPTH: usize = 16;

/// A response whose body is fed by a pump task; the pump sends its
/// [`Outcome`] on `outcome` when the stream has ended.
pub fn stream_response<P: Platform>(
    p: &P,
    events: Box<UpstreamEvents<P>>,
    first: StreamEvent,
    encoder: Encoder,
    recorder: Option<Recorder>,
    request_id: String,
    outcome: OutcomeSender,
) -> Response {
    let (tx, rx) = futures_channel::mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let pump = pump(p.clone(), events, first, encoder, tx, recorder, request_id);
    p.spawn(Box::pin(async move {
        // The receiver is gone only if accounting was cut short too.
        let _ = outcome.send(pump.await);
    }));
    Response {
        status: 200,
        headers: vec![
            ("content-type".into(), "text/event-stream; charset=utf-8".into()),
            ("cache-control".into(), "no-cache".into()),
        ],
        body: Body::Stream(Box::pin(rx.map(Ok))),
    }
}

/// Drive one stream to its end; its outcome is for the account stage.
async fn pump<P: Platform>(
    p: P,
    mut events: Box<UpstreamEvents<P>>,
    first: StreamEvent,
    mut enc: Encoder,
    mut tx: futures_channel::mpsc::Sender<Bytes>,
    mut recorder: Option<Recorder>,
    request_id: String,
) -> Outcome {
    let mut usage: Option<Usage> = None;
    // Output seen, for a token estimate when the stream dies before the
    // upstream reports usage.
    let mut output_chunks: u64 = 0;
    let mut output_len: usize = 0;
    let mut label = "ok";
    let mut complete = false;
    let mut finish_reason = None;
    let mut next = Some(first);
    while let Some(ev) = next {
        match &ev {
            StreamEvent::Raw(_) => {}
            StreamEvent::Usage(u) => usage = Some(*u),
            StreamEvent::Delta(chunk) => {
                if let Some(r) = recorder.as_mut() {
                    r.push(chunk);
                }
                let n = output_bytes(chunk);
                if n > 0 {
                    output_chunks = output_chunks.saturating_add(1);
                    output_len = output_len.saturating_add(n);
                }
            }
            StreamEvent::Done { finish_reason: f } => {
                complete = true;
                finish_reason = f.clone();
            }
            StreamEvent::Error(e) => {
                label = e.code().unwrap_or("upstream_error");
                tracing::warn!(request_id = %request_id, error = %e, "upstream failed mid-stream");
            }
        }
        let terminal = matches!(ev, StreamEvent::Done { .. } | StreamEvent::Error(_));
        if let Some(bytes) = enc.encode(ev) {
            if tx.send(Bytes::from(bytes)).await.is_err() {
                label = "client_disconnected";
                complete = false; // an aborted stream is never cached
                break; // dropping `events` cancels the upstream request
            }
        }
        if terminal {
            break;
        }
        next = events.next().await;
    }
    // The client's stream ends here; reading the upstream to its end (or
    // cancelling it) does not hold it up.
    drop(tx);
    events.drain().await;
    let entry = if complete {
        recorder.and_then(|r| r.finish(usage, finish_reason, p.now_ms()))
    } else {
        None
    };
    Outcome {
        status: 200,
        label,
        usage,
        entry,
        // A client that left is not an upstream failure: its reservation
        // stays charged, since the upstream may have generated the tokens.
        failed: !complete && label != "client_disconnected",
        output_seen: (output_len, output_chunks),
        record: enc.take_final(),
        ..Default::default()
    }
}
