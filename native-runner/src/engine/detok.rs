//! Incremental detokenization: token ids in, UTF-8 text deltas out, with
//! stop strings cut off.
//!
//! Two holdbacks keep what a client sees correct while it streams:
//! - [`DecodeState`] (the `tokenizers` crate's decode stream) holds the
//!   tokens of a character that is not complete yet (a byte-level BPE token
//!   can end in the middle of one), so no delta ever carries a replacement
//!   character for a split emoji.
//! - [`StopMatcher`] holds a suffix that could be the start of a stop
//!   string, so text that turns out to be part of a stop string is never
//!   sent.

use tokenizers::Tokenizer;

use super::text::DecodeState;

/// Cuts the text at the first stop string.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> StopMatcher {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    /// Append text; return what may be sent and whether a stop string
    /// was found (the stop string and everything after it are dropped).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        if self.stops.is_empty() {
            return (text.to_string(), false);
        }
        self.held.push_str(text);
        let hit = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min();
        if let Some(pos) = hit {
            let out = self.held[..pos].to_string();
            self.held.clear();
            return (out, true);
        }
        let keep = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.held, s))
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        (out, false)
    }

    /// End of stream without a stop string: release what was held back.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&k| stop.is_char_boundary(k) && text.ends_with(&stop[..k]))
        .unwrap_or(0)
}

/// Token ids to text deltas for one sequence: the tokenizer's decode
/// stream, then the stop strings.
#[derive(Debug, Default)]
pub struct TextStream {
    decode: DecodeState,
    stop: StopMatcher,
}

impl TextStream {
    pub fn new(stops: Vec<String>) -> TextStream {
        TextStream {
            decode: DecodeState::default(),
            stop: StopMatcher::new(stops),
        }
    }

    /// The delta for one more token, and whether a stop string ended it.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> (String, bool) {
        let text = self.decode.step(tokenizer, id);
        if text.is_empty() {
            return (text, false);
        }
        self.stop.push(&text)
    }

    /// The final delta when generation ends for another reason.
    pub fn finish(&mut self, tokenizer: &Tokenizer) -> String {
        let tail = self.decode.finish(tokenizer);
        let (mut out, stopped) = self.stop.push(&tail);
        if !stopped {
            out.push_str(&self.stop.finish());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_cut_and_hold_back() {
        let mut m = StopMatcher::new(vec!["END".into(), "\n\n".into()]);
        assert_eq!(m.push("hello E"), ("hello ".to_string(), false));
        assert_eq!(m.push("N"), (String::new(), false));
        assert_eq!(m.push("Dless"), (String::new(), true));
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("an E"), ("an ".to_string(), false));
        assert_eq!(m.push("ric"), ("Eric".to_string(), false));
        assert_eq!(m.push(" E"), (" ".to_string(), false));
        assert_eq!(m.finish(), "E");
        let mut m = StopMatcher::new(vec!["b".into(), "ab".into()]);
        assert_eq!(m.push("xab"), ("x".to_string(), true), "the earliest match wins");
    }
}
