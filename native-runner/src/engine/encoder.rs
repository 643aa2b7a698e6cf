//! The sentence-embedding model behind `POST /v1/embeddings`: a BERT-style
//! encoder (`input_ids`, `attention_mask`, optional `token_type_ids` →
//! `last_hidden_state`), pooled and normalized as sentence-transformers
//! does for the folder (`1_Pooling/config.json`, `modules.json`).
//!
//! Encoder calls are short and independent, so there is no scheduler: the
//! HTTP handler runs [`Encoder::embed`] on the blocking pool and the session
//! is behind a mutex. Inputs of one request are padded into batches of at
//! most [`MAX_BATCH`] rows.

use std::borrow::Cow;
use std::sync::Mutex;

use anyhow::{anyhow, bail, Result};
use ort::environment::Environment;
use ort::session::{Session, SessionInputValue};
use ort::value::Tensor;
use tokenizers::Tokenizer;

use super::session::{build_session, Device, SessionConfig};
use crate::model_dir::{EncoderDir, ModelFolder, Pooling};

/// Rows per encoder run; a request with more inputs runs several batches.
pub const MAX_BATCH: usize = 32;

/// A loaded encoder folder.
pub struct Encoder {
    session: Mutex<Session>,
    tokenizer: Tokenizer,
    dir: EncoderDir,
    token_type_ids: bool,
    pad_id: u32,
    device: Device,
}

impl Encoder {
    /// Load the tokenizer and build the session on the requested device.
    ///
    /// Errors when a file is unreadable or the graph lacks `input_ids`,
    /// `attention_mask` or the `last_hidden_state` output.
    pub fn load(env: &Environment, dir: &EncoderDir, cfg: &SessionConfig) -> Result<Encoder> {
        let path = dir.tokenizer_path();
        let mut tokenizer = Tokenizer::from_file(&path).map_err(|e| anyhow!("cannot load {}: {e}", path.display()))?;
        // Length is checked per input (400 naming it) and padding is done
        // here per batch, so the file's own truncation and padding are off.
        tokenizer
            .with_truncation(None)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        tokenizer.with_padding(None);
        let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);
        let (session, device) = build_session(env, &dir.model_path(), cfg)?;
        let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        for want in ["input_ids", "attention_mask"] {
            if !inputs.contains(&want) {
                bail!("{} has no input `{want}`", dir.model_path().display());
            }
        }
        let token_type_ids = inputs.contains(&"token_type_ids");
        if !session.outputs().iter().any(|o| o.name() == "last_hidden_state") {
            bail!("{} has no output `last_hidden_state`", dir.model_path().display());
        }
        Ok(Encoder {
            session: Mutex::new(session),
            tokenizer,
            dir: dir.clone(),
            token_type_ids,
            pad_id,
            device,
        })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Width of one embedding.
    pub fn dimensions(&self) -> usize {
        self.dir.dimensions
    }

    /// Tokens in the tokenizer's vocabulary (token-array inputs must be below it).
    pub fn vocab(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Longest input in tokens, special tokens included.
    pub fn max_tokens(&self) -> usize {
        self.dir.max_tokens
    }

    /// Token ids of `text` with the model's special tokens (`[CLS] … [SEP]`).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer
            .encode(text, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| anyhow!("tokenization failed: {e}"))
    }

    /// One pooled (and, when the folder says so, unit-length) vector of
    /// [`dimensions`](Self::dimensions) floats per input, in order.
    pub fn embed(&self, inputs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(inputs.len());
        for batch in inputs.chunks(MAX_BATCH) {
            out.extend(self.embed_batch(batch)?);
        }
        Ok(out)
    }

    fn embed_batch(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let b = batch.len();
        let s = batch.iter().map(Vec::len).max().unwrap_or(0);
        if b == 0 || s == 0 {
            bail!("embedding needs non-empty inputs");
        }
        let mut ids = vec![i64::from(self.pad_id); b * s];
        let mut mask = vec![0i64; b * s];
        for (r, row) in batch.iter().enumerate() {
            for (j, &t) in row.iter().enumerate() {
                ids[r * s + j] = i64::from(t);
                mask[r * s + j] = 1;
            }
        }
        let tensor = |data: Vec<i64>| -> Result<SessionInputValue<'static>> {
            Tensor::from_array((vec![b as i64, s as i64], data))
                .map(|t| SessionInputValue::from(t.into_dyn()))
                .map_err(|e| anyhow!("creating an input tensor: {e}"))
        };
        let mut feed: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
            ("input_ids".into(), tensor(ids)?),
            ("attention_mask".into(), tensor(mask.clone())?),
        ];
        if self.token_type_ids {
            feed.push(("token_type_ids".into(), tensor(vec![0; b * s])?));
        }
        let mut session = self
            .session
            .lock()
            .map_err(|_| anyhow!("the encoder session is poisoned"))?;
        let outputs = session.run(feed).map_err(|e| anyhow!("inference failed: {e}"))?;
        let (shape, hidden) = outputs
            .get("last_hidden_state")
            .ok_or_else(|| anyhow!("the model has no `last_hidden_state` output"))?
            .try_extract_tensor::<f32>()
            .map_err(|e| anyhow!("reading last_hidden_state: {e}"))?;
        let h = self.dir.dimensions;
        if shape.len() != 3 || shape[0] as usize != b || shape[1] as usize != s || shape[2] as usize != h {
            bail!("unexpected last_hidden_state shape {shape:?}");
        }
        Ok((0..b)
            .map(|r| {
                let rows = &hidden[r * s * h..(r + 1) * s * h];
                let mut v = pool(rows, &mask[r * s..(r + 1) * s], h, self.dir.pooling);
                if self.dir.normalize {
                    normalize(&mut v);
                }
                v
            })
            .collect())
    }
}

/// Pool `[seq, h]` token vectors into one `h`-vector.
pub fn pool(tokens: &[f32], mask: &[i64], h: usize, pooling: Pooling) -> Vec<f32> {
    match pooling {
        Pooling::Cls => tokens[..h].to_vec(),
        Pooling::Mean => {
            let mut sum = vec![0f32; h];
            let mut n = 0f32;
            for (j, &m) in mask.iter().enumerate() {
                if m != 0 {
                    for (acc, x) in sum.iter_mut().zip(&tokens[j * h..(j + 1) * h]) {
                        *acc += x;
                    }
                    n += 1.0;
                }
            }
            // sentence-transformers clamps the count to 1e-9.
            let n = n.max(1e-9);
            sum.iter_mut().for_each(|x| *x /= n);
            sum
        }
    }
}

/// Scale to unit L2 length (torch's `F.normalize`: the norm is clamped to 1e-12).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_pooling_ignores_padding() {
        // two real tokens and one padded one, h = 2
        let tokens = [1.0, 2.0, 3.0, 4.0, 100.0, 100.0];
        assert_eq!(pool(&tokens, &[1, 1, 0], 2, Pooling::Mean), vec![2.0, 3.0]);
        assert_eq!(pool(&tokens, &[1, 1, 0], 2, Pooling::Cls), vec![1.0, 2.0]);
    }

    #[test]
    fn normalize_gives_unit_length() {
        let mut v = vec![3.0, 4.0];
        normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut z = vec![0.0, 0.0];
        normalize(&mut z);
        assert_eq!(z, vec![0.0, 0.0]);
    }
}
