//! Incremental Server-Sent Events codec.
//!
//! The decoder is synchronous and sans-I/O: push whatever bytes arrived,
//! then pull complete events. Upstreams split events at arbitrary byte
//! offsets (even inside a `\r\n` pair or a UTF-8 sequence), so nothing is
//! interpreted until a full line is buffered, and an event is only
//! dispatched at its blank line, as the WHATWG spec requires. A partial
//! frame just waits for more bytes.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if any (OpenAI omits it; Anthropic always sets it).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an SSE event exceeded {limit} bytes without terminating")]
    EventTooLarge { limit: usize },
}

/// Streaming SSE decoder.
#[derive(Debug)]
pub struct SseDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already scanned without finding a line end.
    scanned: usize,
    current: SseEvent,
    has_data: bool,
    max_event_bytes: usize,
    pending_bytes: usize,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new(1 << 20)
    }
}

impl SseDecoder {
    /// `max_event_bytes` bounds memory held for one event, so a hostile or
    /// broken upstream that never sends a blank line cannot grow it forever.
    pub fn new(max_event_bytes: usize) -> Self {
        SseDecoder {
            buf: Vec::new(),
            scanned: 0,
            current: SseEvent::default(),
            has_data: false,
            max_event_bytes,
            pending_bytes: 0,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event, if the buffered bytes hold one.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, SseError> {
        loop {
            let Some((line_end, next)) = self.find_line_end() else {
                if self.pending_bytes + self.buf.len() > self.max_event_bytes {
                    return Err(SseError::EventTooLarge {
                        limit: self.max_event_bytes,
                    });
                }
                return Ok(None);
            };
            let line = self.buf[..line_end].to_vec();
            self.buf.drain(..next);
            self.scanned = 0;
            self.pending_bytes += next;
            if line.is_empty() {
                self.pending_bytes = 0;
                if let Some(ev) = self.dispatch() {
                    return Ok(Some(ev));
                }
                continue;
            }
            if self.pending_bytes > self.max_event_bytes {
                return Err(SseError::EventTooLarge {
                    limit: self.max_event_bytes,
                });
            }
            self.field(&line);
        }
    }

    /// Find the end of the first line: `\n`, `\r\n` or a lone `\r`. A `\r`
    /// as the very last buffered byte is ambiguous (a `\n` may follow in
    /// the next chunk), so it waits.
    fn find_line_end(&mut self) -> Option<(usize, usize)> {
        let start = self.scanned;
        for i in start..self.buf.len() {
            match self.buf[i] {
                b'\n' => return Some((i, i + 1)),
                b'\r' => {
                    if i + 1 == self.buf.len() {
                        self.scanned = i;
                        return None;
                    }
                    let next = if self.buf[i + 1] == b'\n' { i + 2 } else { i + 1 };
                    return Some((i, next));
                }
                _ => {}
            }
        }
        self.scanned = self.buf.len();
        None
    }

    fn field(&mut self, line: &[u8]) {
        if line[0] == b':' {
            return; // comment / keep-alive
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(p) => {
                let mut v = &line[p + 1..];
                if v.first() == Some(&b' ') {
                    v = &v[1..];
                }
                (&line[..p], v)
            }
            None => (line, &line[line.len()..]),
        };
        // Lossy decoding: a stray invalid byte must not kill the stream, and
        // line splitting above guarantees UTF-8 sequences are whole here.
        let value = String::from_utf8_lossy(value);
        match name {
            b"data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(&value);
                self.has_data = true;
            }
            b"event" => self.current.event = Some(value.into_owned()),
            b"id" => self.current.id = Some(value.into_owned()),
            _ => {} // `retry` and unknown fields are ignored, per spec
        }
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let ev = std::mem::take(&mut self.current);
        let had = std::mem::replace(&mut self.has_data, false);
        // Per spec an event with no data lines is not dispatched.
        had.then_some(ev)
    }

    /// True when bytes of an unfinished event are still buffered; at end of
    /// stream that means the upstream cut off mid-event.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || self.has_data || self.current.event.is_some()
    }
}

/// Encode one event. Multi-line data becomes several `data:` lines so the
/// receiver's decoder reassembles it exactly.
pub fn encode(event: Option<&str>, data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    if let Some(e) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(e.as_bytes());
        out.push(b'\n');
    }
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// The terminator OpenAI-compatible clients wait for.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::default();
        let mut out = vec![];
        for c in chunks {
            d.push(c);
            while let Some(e) = d.next_event().unwrap() {
                out.push(e);
            }
        }
        out
    }

    #[test]
    fn decodes_openai_and_anthropic_frames() {
        let s = b"data: {\"a\":1}\n\nevent: message_start\ndata: {}\n\n: ping\n\ndata: [DONE]\n\n";
        let evs = decode_all(&[s]);
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].data, "{\"a\":1}");
        assert_eq!(evs[1].event.as_deref(), Some("message_start"));
        assert_eq!(evs[2].data, "[DONE]");
    }

    #[test]
    fn crlf_split_across_chunks() {
        let evs = decode_all(&[b"data: x\r", b"\n\r", b"\ndata: y\r\r\n"]);
        assert_eq!(evs.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(), ["x", "y"]);
    }

    #[test]
    fn multiline_data_roundtrips() {
        let enc = encode(Some("e"), "line1\nline2");
        let evs = decode_all(&[&enc]);
        assert_eq!(evs[0].data, "line1\nline2");
        assert_eq!(evs[0].event.as_deref(), Some("e"));
    }

    #[test]
    fn partial_event_is_held() {
        let mut d = SseDecoder::default();
        d.push(b"data: {\"x\":");
        assert_eq!(d.next_event().unwrap(), None);
        assert!(d.has_partial());
        d.push(b"1}\n\n");
        assert_eq!(d.next_event().unwrap().unwrap().data, "{\"x\":1}");
        assert!(!d.has_partial());
    }

    #[test]
    fn unterminated_event_is_bounded() {
        let mut d = SseDecoder::new(64);
        d.push(&[b'a'; 100]);
        assert!(d.next_event().is_err());
    }

    fn stream_strategy() -> impl Strategy<Value = Vec<u8>> {
        let ev = (
            proptest::option::of("[a-z_]{1,8}"),
            proptest::collection::vec("[ -~é€😀]{0,20}", 1..3),
            prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
        );
        proptest::collection::vec(ev, 1..8).prop_map(|evs| {
            let mut out = Vec::new();
            for (name, lines, eol) in evs {
                if let Some(n) = name {
                    out.extend_from_slice(format!("event: {n}{eol}").as_bytes());
                }
                for l in lines {
                    out.extend_from_slice(format!("data: {l}{eol}").as_bytes());
                }
                out.extend_from_slice(format!(": comment{eol}").as_bytes());
                out.extend_from_slice(eol.as_bytes());
            }
            out
        })
    }

    proptest! {
        /// Any split of a byte stream yields the same events as one push.
        #[test]
        fn any_split_yields_same_events(bytes in stream_strategy(), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12)) {
            let whole = decode_all(&[&bytes]);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks: Vec<&[u8]> = vec![];
            let mut last = 0;
            for p in points { chunks.push(&bytes[last..p]); last = p; }
            chunks.push(&bytes[last..]);
            prop_assert_eq!(decode_all(&chunks), whole);
        }

        /// Encoding then decoding returns the data unchanged, byte by byte.
        #[test]
        fn encode_decode_roundtrip(data in "[^\r]{0,64}", name in proptest::option::of("[a-z]{1,6}")) {
            let enc = encode(name.as_deref(), &data);
            let single: Vec<&[u8]> = enc.chunks(1).collect();
            let evs = decode_all(&single);
            prop_assert_eq!(evs.len(), 1);
            prop_assert_eq!(&evs[0].data, &data);
            prop_assert_eq!(evs[0].event.clone(), name);
        }

        /// Arbitrary garbage never panics.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut d = SseDecoder::new(256);
            d.push(&bytes);
            while let Ok(Some(_)) = d.next_event() {}
        }
    }
}
