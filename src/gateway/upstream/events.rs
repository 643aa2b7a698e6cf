//! Upstream bytes → SSE events → provider events, with a stall timeout and
//! the edge's own judgement of when the stream is over.
//!
//! The upstream's framing is not trusted to end a stream: `[DONE]` may
//! follow a truncated answer, and a finished upstream may hold the
//! connection open with keep-alive comments for minutes. The stream is
//! complete when every choice has a `finish_reason` and usage has arrived
//! (or a short grace period for usage has passed); it then ends at once
//! and the upstream is drained briefly or cancelled. Only decoded events
//! count as progress for the stall timeout, so comments cannot keep a
//! silent upstream alive.

use std::collections::VecDeque;

use futures_util::StreamExt;

use super::deadline::Deadline;
use super::target::{NativeApi, Target};
use crate::platform::{BodyStream, Platform};
use crate::sse::SseDecoder;
use crate::stream::UpstreamError;
use crate::stream::{Completion, StreamEvent, ToolIndexer};
use crate::wire::ParseState;

/// How long a finished stream may take to reach its end of body before it
/// is cancelled instead (a few KB at most: usually just the close, which
/// arrives with the last event). Short, because a JSON client waits for it.
const DRAIN_MS: u64 = 100;
const DRAIN_MAX_BYTES: usize = 64 << 10;
/// How long every choice may have finished before usage arrives. Usage
/// follows the finish chunk at once when it comes at all.
const USAGE_GRACE_MS: u64 = 2_000;

pub struct UpstreamEvents<P: Platform> {
    body: BodyStream,
    decoder: SseDecoder,
    target: Target,
    state: ParseState,
    pending: VecDeque<StreamEvent>,
    finished: bool,
    /// Whether the stream finished properly (every choice has a finish
    /// reason).
    completed: bool,
    stall_ms: u64,
    /// While set, reads wait until this fixed time instead of a stall
    /// window from the last event (the first-byte timeout).
    hold_until: Option<u64>,
    deadline: Deadline<P>,
    /// When the last SSE event (not a comment) was decoded.
    progress_at: u64,
    /// When every choice had finished but usage had not yet come: the
    /// latest time to wait for it.
    grace_until: Option<u64>,
    track: Completion,
    tools: ToolIndexer,
}

impl<P: Platform> UpstreamEvents<P> {
    /// `stall_ms`: the longest silence between events. A `target` that
    /// forwarded the client's own request ([`Target::native`]) has each
    /// upstream event relayed as [`StreamEvent::Raw`] before its
    /// translation.
    pub fn new(body: BodyStream, target: Target, stall_ms: u64, deadline: Deadline<P>) -> Self {
        let now = deadline.platform().monotonic_ms();
        let state = ParseState {
            // Unix seconds, the `created` of chunks the gateway makes.
            created: deadline.platform().now_ms() / 1000,
            ..Default::default()
        };
        UpstreamEvents {
            body,
            decoder: SseDecoder::default(),
            target,
            state,
            pending: VecDeque::new(),
            finished: false,
            completed: false,
            stall_ms,
            hold_until: None,
            deadline,
            progress_at: now,
            grace_until: None,
            track: Completion::default(),
            tools: ToolIndexer::default(),
        }
    }

    /// The next event. After `Done` or `Error` it returns `None`. `Done`
    /// comes only when every choice has finished; a stream that ends (or
    /// says `[DONE]`) before that yields an error, so a truncated answer
    /// can never pass for a complete one.
    pub async fn next(&mut self) -> Option<StreamEvent> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some(self.emit(ev));
            }
            if self.finished {
                return None;
            }
            if self.track.complete() {
                return Some(self.done());
            }
            match self.decoder.next_event() {
                Ok(Some(ev)) => {
                    self.progress_at = self.deadline.platform().monotonic_ms();
                    let evs = self.target.parse_event(&mut self.state, &ev);
                    if self.target.relays(&ev) {
                        self.pending.push_back(StreamEvent::Raw(ev));
                    }
                    self.pending.extend(evs);
                    continue;
                }
                Ok(None) => {}
                Err(_) => return self.fail(UpstreamError::Malformed),
            }
            let now = self.deadline.platform().monotonic_ms();
            if self.track.finished() && self.grace_until.is_none() {
                self.grace_until = Some(now.saturating_add(USAGE_GRACE_MS.min(self.stall_ms)));
            }
            let stall_at = self
                .hold_until
                .unwrap_or_else(|| self.progress_at.saturating_add(self.stall_ms));
            let at = self.grace_until.map_or(stall_at, |g| g.min(stall_at));
            // A drip of comments is always ready before the timer fires, so
            // the clock is checked here too, not only by the timer.
            if now >= at {
                return Some(self.expired());
            }
            self.deadline.set(at);
            match self.deadline.run(self.body.next()).await {
                None => return Some(self.expired()),
                Some(None) | Some(Some(Err(_))) if self.track.finished() => return Some(self.done()),
                Some(None) | Some(Some(Err(_))) => return self.fail(UpstreamError::Interrupted),
                Some(Some(Ok(bytes))) => self.decoder.push(&bytes),
            }
        }
    }

    /// Track a provider event on its way out; the provider's own end of
    /// stream counts only if the choices finished.
    fn emit(&mut self, ev: StreamEvent) -> StreamEvent {
        match ev {
            StreamEvent::Delta(mut chunk) => {
                self.tools.apply(&mut chunk);
                let ev = StreamEvent::Delta(chunk);
                self.track.observe(&ev);
                ev
            }
            StreamEvent::Usage(_) => {
                self.track.observe(&ev);
                ev
            }
            StreamEvent::Done { .. } if self.track.finished() => self.done(),
            StreamEvent::Done { .. } => {
                self.finished = true;
                self.pending.clear();
                StreamEvent::Error(UpstreamError::Unfinished)
            }
            StreamEvent::Error(_) => {
                self.finished = true;
                self.pending.clear();
                ev
            }
            StreamEvent::Raw(_) => ev,
        }
    }

    fn done(&mut self) -> StreamEvent {
        self.finished = true;
        self.completed = true;
        self.pending.clear();
        StreamEvent::Done {
            finish_reason: self.track.finish_reason(),
        }
    }

    /// The wait ran out: the usage grace of a finished stream, or a stall.
    fn expired(&mut self) -> StreamEvent {
        if self.track.finished() {
            return self.done();
        }
        self.finished = true;
        StreamEvent::Error(UpstreamError::Stalled {
            timeout_ms: self.stall_ms,
        })
    }

    /// The client API whose events are relayed as [`StreamEvent::Raw`],
    /// when the upstream speaks it.
    pub fn native(&self) -> Option<NativeApi> {
        self.target.native()
    }

    /// The next event, waiting no later than `at` for it; `None` when that
    /// passes first.
    pub async fn next_by(&mut self, at: u64) -> Option<Option<StreamEvent>> {
        self.hold_until = Some(at);
        let ev = self.next().await;
        self.hold_until = None;
        match ev {
            Some(StreamEvent::Error(UpstreamError::Stalled { .. })) => None,
            ev => Some(ev),
        }
    }

    fn fail(&mut self, e: UpstreamError) -> Option<StreamEvent> {
        self.finished = true;
        Some(StreamEvent::Error(e))
    }

    /// Finish a completed stream by reading its body to the end, so the
    /// transfer completes instead of being cancelled: a cancel costs more
    /// than the last read on Workers, and a completed connection can be
    /// reused. An upstream that stays open past the short drain window
    /// (keep-alives after the end) is cancelled; anything else is dropped
    /// (cancelled) at once.
    pub async fn drain(mut self) {
        if !self.completed {
            return;
        }
        self.deadline.set_in(DRAIN_MS.min(self.stall_ms));
        let mut read = 0usize;
        while let Some(Some(Ok(b))) = self.deadline.run(self.body.next()).await {
            read += b.len();
            if read > DRAIN_MAX_BYTES || self.deadline.platform().monotonic_ms() >= self.deadline.at() {
                return;
            }
        }
    }
}
