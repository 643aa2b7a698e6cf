//! The model folder: `model.onnx`, `tokenizer.json` and `config.json`.
//!
//! `config.json` is what the test-model generator (`tools/gen_test_model.py`)
//! writes. Unknown keys are tolerated (it carries documentation fields), but
//! every key the runner relies on is required and checked here, so a broken
//! folder fails at start-up with the file and key named rather than at the
//! first request.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The plain string-replacement chat template of the model folder.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatTemplate {
    /// Per message; `{role}` and `{content}` are replaced.
    pub message: String,
    /// Appended verbatim after the last message.
    pub generation_prompt: String,
}

/// `config.json` of a model folder.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelConfig {
    pub model_id: String,
    pub num_layers: usize,
    pub num_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: u32,
    pub chat_template: ChatTemplate,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelDirError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("{path}: {key} {reason}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        reason: String,
    },
    #[error("{0} is missing (a model folder holds model.onnx, tokenizer.json and config.json)")]
    Missing(PathBuf),
}

/// A checked model folder.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub dir: PathBuf,
    pub config: ModelConfig,
}

impl ModelDir {
    pub fn open(dir: &Path) -> Result<ModelDir, ModelDirError> {
        for f in ["model.onnx", "tokenizer.json", "config.json"] {
            let p = dir.join(f);
            if !p.is_file() {
                return Err(ModelDirError::Missing(p));
            }
        }
        let path = dir.join("config.json");
        let raw = std::fs::read(&path).map_err(|source| ModelDirError::Read {
            path: path.clone(),
            source,
        })?;
        let config: ModelConfig = serde_json::from_slice(&raw).map_err(|source| ModelDirError::Parse {
            path: path.clone(),
            source,
        })?;
        let invalid = |key, reason: &str| ModelDirError::Invalid {
            path: path.clone(),
            key,
            reason: reason.to_string(),
        };
        if config.num_layers == 0 || config.num_heads == 0 || config.head_dim == 0 {
            return Err(invalid("num_layers/num_heads/head_dim", "must be at least 1"));
        }
        if config.context_length < 2 {
            return Err(invalid("context_length", "must be at least 2"));
        }
        if config.pad_token_id as usize >= config.vocab_size {
            return Err(invalid("pad_token_id", "must be below vocab_size"));
        }
        if config.eos_token_ids.iter().any(|&id| id as usize >= config.vocab_size) {
            return Err(invalid("eos_token_ids", "must be below vocab_size"));
        }
        if config.model_id.trim().is_empty() {
            return Err(invalid("model_id", "must not be empty"));
        }
        Ok(ModelDir {
            dir: dir.to_path_buf(),
            config,
        })
    }

    pub fn model_path(&self) -> PathBuf {
        self.dir.join("model.onnx")
    }

    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join("tokenizer.json")
    }
}
