//! The tokenizer side of the model folder: encoding prompts, the chat
//! template, and each token's raw bytes for incremental decoding.

use anyhow::{anyhow, Result};
use tokenizers::{DecoderWrapper, Tokenizer};

use crate::model_dir::{ChatTemplate, ModelDir};

/// Encodes prompts and knows every token's bytes. Shared (read-only) by the
/// HTTP handlers and the engine thread.
pub struct TextCodec {
    tokenizer: Tokenizer,
    /// Raw bytes of each token id; empty for special tokens, which are not
    /// part of the generated text (like `skip_special_tokens`).
    token_bytes: Vec<Vec<u8>>,
    template: ChatTemplate,
    vocab: usize,
}

impl TextCodec {
    pub fn load(model: &ModelDir) -> Result<TextCodec> {
        let path = model.tokenizer_path();
        let tokenizer = Tokenizer::from_file(&path).map_err(|e| anyhow!("cannot load {}: {e}", path.display()))?;
        let vocab = model.config.vocab_size;
        let tok_vocab = tokenizer.get_vocab_size(true);
        if tok_vocab > vocab {
            return Err(anyhow!(
                "{} has {tok_vocab} tokens but the model's vocab_size is {vocab}",
                path.display()
            ));
        }
        let byte_level = matches!(tokenizer.get_decoder(), Some(DecoderWrapper::ByteLevel(_)));
        let unicode_to_byte = gpt2_unicode_to_byte();
        let added = tokenizer.get_added_tokens_decoder();
        let token_bytes = (0..vocab as u32)
            .map(|id| {
                if let Some(t) = added.get(&id) {
                    return if t.special {
                        Vec::new()
                    } else {
                        t.content.clone().into_bytes()
                    };
                }
                match tokenizer.id_to_token(id) {
                    // Byte-level BPE: each char of the token string stands for one byte.
                    Some(tok) if byte_level => tok
                        .chars()
                        .map(|c| unicode_to_byte.get(&c).copied().unwrap_or(b'?'))
                        .collect(),
                    // Other tokenizers: a single token decodes to whole characters.
                    Some(_) => tokenizer.decode(&[id], false).unwrap_or_default().into_bytes(),
                    None => Vec::new(),
                }
            })
            .collect();
        Ok(TextCodec {
            tokenizer,
            token_bytes,
            template: model.config.chat_template.clone(),
            vocab,
        })
    }

    /// Token ids of `text`. Special tokens written in the text (such as the
    /// chat markers) are recognised; no BOS is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| anyhow!("tokenization failed: {e}"))
    }

    /// The prompt for a conversation, ending with the generation prompt.
    pub fn chat_prompt<'a>(&self, messages: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
        let mut out = String::new();
        for (role, content) in messages {
            out.push_str(
                &self
                    .template
                    .message
                    .replace("{role}", role)
                    .replace("{content}", content),
            );
        }
        out.push_str(&self.template.generation_prompt);
        out
    }

    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_bytes.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// Text of a token sequence (special tokens left out).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&i| self.token_bytes(i).iter().copied()).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn vocab(&self) -> usize {
        self.vocab
    }
}

/// Inverse of GPT-2's byte → printable-character map used by byte-level BPE.
fn gpt2_unicode_to_byte() -> std::collections::HashMap<char, u8> {
    let mut printable: Vec<u32> = (u32::from('!')..=u32::from('~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars = printable.clone();
    let mut n = 0;
    for b in 0..=255u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    printable
        .into_iter()
        .zip(chars)
        .filter_map(|(b, c)| Some((char::from_u32(c)?, b as u8)))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn gpt2_map_covers_all_bytes() {
        let m = super::gpt2_unicode_to_byte();
        assert_eq!(m.len(), 256);
        assert_eq!(m[&'Ġ'], b' ');
        assert_eq!(m[&'A'], b'A');
        assert_eq!(m[&'Ċ'], b'\n');
    }
}
