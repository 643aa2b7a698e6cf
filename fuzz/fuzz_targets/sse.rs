//! The incremental SSE decoder. Arbitrary bytes are decoded whole and split
//! at pseudo-random points; both must give the same events (a chunk
//! boundary is never visible). Decoded events then go through the
//! OpenAI-compatible provider parser, the fold and the client encoder, and
//! encoding any event's data must decode back to the same data.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use common::{decode, provider, split};
use infergate::config::ProviderKind;
use infergate::wire::openai::encode::ClientEncoder;
use infergate::wire::ParseState;
use infergate::sse;
use infergate::stream::Fold;
use libfuzzer_sys::fuzz_target;

/// Small, so the event-size bound is exercised too.
const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, bytes)) = data.split_first() else {
        return;
    };
    let (whole, whole_err) = decode(&[bytes], LIMIT);
    let (pieces, pieces_err) = decode(&split(bytes, seed), LIMIT);
    if whole_err.is_none() && pieces_err.is_none() {
        assert_eq!(whole, pieces, "chunk boundaries changed the events");
    }

    let openai = provider(ProviderKind::Openai, false);
    let mut state = ParseState::default();
    let mut fold = Fold::new();
    let mut client = ClientEncoder::new(seed & 1 == 1);
    for ev in &whole {
        for e in openai.parse_event(&mut state, ev) {
            let _ = fold.push(&e);
            let _ = client.encode(e);
        }
        // Encoding is the inverse of decoding for anything without a CR
        // (a CR is a line break to the decoder).
        if !ev.data.contains('\r') {
            let (back, err) = decode(&[&sse::encode(None, &ev.data)], usize::MAX);
            assert!(err.is_none());
            assert_eq!(back.len(), 1);
            assert_eq!(back[0].data, ev.data);
        }
    }
    let _ = fold.finish();
});
