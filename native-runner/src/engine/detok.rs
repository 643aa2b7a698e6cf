//! Incremental detokenization: token bytes in, UTF-8 text deltas out, with
//! stop strings cut off.
//!
//! Two holdbacks keep what a client sees correct while it streams:
//! - [`Utf8Assembler`] holds the bytes of a character that is not complete
//!   yet (a byte-level BPE token can end in the middle of one), so no
//!   delta ever carries a replacement character for a split emoji.
//! - [`StopMatcher`] holds a suffix that could be the start of a stop
//!   string, so text that turns out to be part of a stop string is never
//!   sent.

/// Turns a byte stream into valid UTF-8 chunks.
#[derive(Debug, Default)]
pub struct Utf8Assembler {
    pending: Vec<u8>,
}

impl Utf8Assembler {
    /// Append bytes; return the text that is now complete. Bytes that can
    /// never become valid become U+FFFD at once; an incomplete trailing
    /// sequence waits.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // The prefix was just checked to be valid UTF-8.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                    }
                }
            }
        }
    }

    /// End of stream: whatever is held can no longer complete.
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

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

/// Token bytes to text deltas for one sequence.
#[derive(Debug, Default)]
pub struct TextStream {
    utf8: Utf8Assembler,
    stop: StopMatcher,
}

impl TextStream {
    pub fn new(stops: Vec<String>) -> TextStream {
        TextStream {
            utf8: Utf8Assembler::default(),
            stop: StopMatcher::new(stops),
        }
    }

    /// The delta for one more token, and whether a stop string ended it.
    pub fn push(&mut self, bytes: &[u8]) -> (String, bool) {
        let text = self.utf8.push(bytes);
        if text.is_empty() {
            return (text, false);
        }
        self.stop.push(&text)
    }

    /// The final delta when generation ends for another reason.
    pub fn finish(&mut self) -> String {
        let tail = self.utf8.finish();
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
    fn holds_back_split_characters() {
        let mut a = Utf8Assembler::default();
        let crab = "🦀".as_bytes(); // 4 bytes
        assert_eq!(a.push(b"hi "), "hi ");
        assert_eq!(a.push(&crab[..1]), "");
        assert_eq!(a.push(&crab[1..3]), "");
        assert_eq!(a.push(&[crab[3], b'!']), "🦀!");
        let e = "é".as_bytes();
        assert_eq!(a.push(&[b'x', e[0]]), "x");
        assert_eq!(a.push(&e[1..]), "é");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut a = Utf8Assembler::default();
        assert_eq!(a.push(&[b'a', 0xff, b'b']), "a\u{fffd}b");
        // a lead byte followed by a non-continuation byte is invalid at once
        assert_eq!(a.push(&[0xe2, b'c']), "\u{fffd}c");
        // an incomplete sequence at the very end is flushed lossily
        assert_eq!(a.push(&[0xe2, 0x82]), "");
        assert_eq!(a.finish(), "\u{fffd}");
        assert_eq!(a.finish(), "");
    }

    #[test]
    fn every_split_of_a_mixed_string_reassembles() {
        let s = "Grüße 東京 🦀🚀 👩‍👩‍👧 done";
        let b = s.as_bytes();
        for cut in 0..=b.len() {
            let mut a = Utf8Assembler::default();
            let mut out = a.push(&b[..cut]);
            out += &a.push(&b[cut..]);
            out += &a.finish();
            assert_eq!(out, s, "split at {cut}");
        }
        // one byte at a time: never a replacement character
        let mut a = Utf8Assembler::default();
        let out: String = b.iter().map(|x| a.push(&[*x])).collect();
        assert_eq!(out, s);
    }

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

    #[test]
    fn text_stream_combines_both() {
        let mut t = TextStream::new(vec!["🚀".into()]);
        let rocket = "🚀".as_bytes();
        assert_eq!(t.push(b"go "), ("go ".to_string(), false));
        assert_eq!(t.push(&rocket[..2]), (String::new(), false));
        assert_eq!(t.push(&rocket[2..]), (String::new(), true));
        let mut t = TextStream::new(vec![]);
        assert_eq!(t.push(&rocket[..2]), (String::new(), false));
        assert_eq!(t.finish(), "\u{fffd}");
    }
}
