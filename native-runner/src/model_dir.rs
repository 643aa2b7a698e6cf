//! Model folders in the Hugging Face layout.
//!
//! A decoder folder holds `model.onnx` (decoder with past, the Optimum
//! input/output names), `tokenizer.json`, `config.json` (the transformers
//! model config), and optionally `generation_config.json` (EOS ids) and
//! `tokenizer_config.json` (the Jinja `chat_template`). Any export in that
//! layout loads: `tools/convert_models.py` writes SmolLM2 this way, and so
//! does `tools/gen_test_model.py` for the small test model.
//!
//! An encoder folder (sentence-transformers) holds `model.onnx`,
//! `tokenizer.json`, `config.json`, and optionally `modules.json`,
//! `1_Pooling/config.json` and `sentence_bert_config.json`.
//!
//! Every key the runner relies on is checked here, so a broken folder fails
//! at start-up with the file and key named rather than at the first request.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

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
    #[error("{0} is missing (a model folder holds model.onnx, tokenizer.json and config.json, as Hugging Face lays them out)")]
    Missing(PathBuf),
}

/// `eos_token_id` is an integer or a list of integers in transformers configs.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<u32> {
        match self {
            OneOrMany::One(x) => vec![x],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The keys of a transformers `config.json` that the decoder runner reads.
#[derive(Debug, Clone, Deserialize)]
struct RawDecoderConfig {
    num_hidden_layers: usize,
    num_attention_heads: usize,
    /// Grouped-query attention: KV heads; absent means one per query head.
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    hidden_size: usize,
    vocab_size: usize,
    max_position_embeddings: usize,
    eos_token_id: Option<OneOrMany>,
    pad_token_id: Option<u32>,
    bos_token_id: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Default)]
struct RawGenerationConfig {
    eos_token_id: Option<OneOrMany>,
}

/// `bos_token` / `eos_token` are a string or an `AddedToken` object.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum TokenText {
    Text(String),
    Object { content: String },
}

/// A named template of the list form of `chat_template`.
#[derive(Debug, Clone, Deserialize)]
struct NamedTemplate {
    name: String,
    template: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawChatTemplate {
    One(String),
    Named(Vec<NamedTemplate>),
}

#[derive(Debug, Clone, Deserialize, Default)]
struct RawTokenizerConfig {
    chat_template: Option<RawChatTemplate>,
    bos_token: Option<TokenText>,
    eos_token: Option<TokenText>,
}

/// A checked decoder configuration.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// Transformer blocks: one `past_key_values.N.{key,value}` pair each.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// KV heads (`num_key_value_heads`); the KV cache is `[batch, kv_heads, seq, head_dim]`.
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    /// Tokens of prompt + completion at most (`max_position_embeddings`).
    pub context_length: usize,
    /// Generation ends at any of these (generation_config.json, else config.json).
    pub eos_token_ids: Vec<u32>,
    /// Input id used on padded positions (masked, so any valid id works).
    pub pad_token_id: u32,
    /// Jinja chat template (tokenizer_config.json `chat_template`), when the model has one.
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

/// A checked decoder model folder.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub dir: PathBuf,
    pub config: ModelConfig,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelDirError> {
    let raw = std::fs::read(path).map_err(|source| ModelDirError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&raw).map_err(|source| ModelDirError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Read `path` when it exists; a missing optional file is `T::default()`.
fn read_optional<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T, ModelDirError> {
    if path.is_file() {
        read_json(path)
    } else {
        Ok(T::default())
    }
}

fn require_files(dir: &Path) -> Result<(), ModelDirError> {
    for f in ["model.onnx", "tokenizer.json", "config.json"] {
        let p = dir.join(f);
        if !p.is_file() {
            return Err(ModelDirError::Missing(p));
        }
    }
    Ok(())
}

impl ModelDir {
    /// Open and check a decoder folder. Errors name the file and the key.
    pub fn open(dir: &Path) -> Result<ModelDir, ModelDirError> {
        require_files(dir)?;
        let path = dir.join("config.json");
        let c: RawDecoderConfig = read_json(&path)?;
        let generation: RawGenerationConfig = read_optional(&dir.join("generation_config.json"))?;
        let tok: RawTokenizerConfig = read_optional(&dir.join("tokenizer_config.json"))?;
        let invalid = |key, reason: &str| ModelDirError::Invalid {
            path: path.clone(),
            key,
            reason: reason.to_string(),
        };
        if c.num_hidden_layers == 0 || c.num_attention_heads == 0 || c.hidden_size == 0 {
            return Err(invalid(
                "num_hidden_layers/num_attention_heads/hidden_size",
                "must be at least 1",
            ));
        }
        let num_kv_heads = c.num_key_value_heads.unwrap_or(c.num_attention_heads);
        if num_kv_heads == 0 || !c.num_attention_heads.is_multiple_of(num_kv_heads) {
            return Err(invalid(
                "num_key_value_heads",
                "must divide num_attention_heads (grouped-query attention)",
            ));
        }
        let head_dim = match c.head_dim {
            Some(d) if d > 0 => d,
            Some(_) => return Err(invalid("head_dim", "must be at least 1")),
            None if c.hidden_size.is_multiple_of(c.num_attention_heads) => c.hidden_size / c.num_attention_heads,
            None => {
                return Err(invalid(
                    "head_dim",
                    "is absent and hidden_size is not a multiple of num_attention_heads",
                ))
            }
        };
        if c.max_position_embeddings < 2 {
            return Err(invalid("max_position_embeddings", "must be at least 2"));
        }
        let eos_token_ids = generation
            .eos_token_id
            .or(c.eos_token_id)
            .map(OneOrMany::into_vec)
            .unwrap_or_default();
        if eos_token_ids.is_empty() {
            return Err(invalid(
                "eos_token_id",
                "is missing (in generation_config.json or config.json): generation could never stop",
            ));
        }
        if eos_token_ids.iter().any(|&id| id as usize >= c.vocab_size) {
            return Err(invalid("eos_token_id", "must be below vocab_size"));
        }
        let pad_token_id = c.pad_token_id.or(c.bos_token_id).unwrap_or(eos_token_ids[0]);
        if pad_token_id as usize >= c.vocab_size {
            return Err(invalid("pad_token_id", "must be below vocab_size"));
        }
        let chat_template = match tok.chat_template {
            None => None,
            Some(RawChatTemplate::One(t)) => Some(t),
            // transformers picks the one named "default".
            Some(RawChatTemplate::Named(list)) => list
                .iter()
                .find(|t| t.name == "default")
                .or(list.first())
                .map(|t| t.template.clone()),
        };
        let text = |t: Option<TokenText>| {
            t.map(|t| match t {
                TokenText::Text(s) | TokenText::Object { content: s } => s,
            })
        };
        Ok(ModelDir {
            dir: dir.to_path_buf(),
            config: ModelConfig {
                num_layers: c.num_hidden_layers,
                num_heads: c.num_attention_heads,
                num_kv_heads,
                head_dim,
                vocab_size: c.vocab_size,
                context_length: c.max_position_embeddings,
                eos_token_ids,
                pad_token_id,
                chat_template,
                bos_token: text(tok.bos_token),
                eos_token: text(tok.eos_token),
            },
        })
    }
}

/// The files every model folder has, decoder or encoder.
pub trait ModelFolder {
    /// The folder.
    fn dir(&self) -> &Path;

    /// The model id a folder serves by default: `local/<folder name>`.
    fn default_model_id(&self) -> String {
        default_model_id(self.dir())
    }

    fn model_path(&self) -> PathBuf {
        self.dir().join("model.onnx")
    }

    fn tokenizer_path(&self) -> PathBuf {
        self.dir().join("tokenizer.json")
    }
}

impl ModelFolder for ModelDir {
    fn dir(&self) -> &Path {
        &self.dir
    }
}

impl ModelFolder for EncoderDir {
    fn dir(&self) -> &Path {
        &self.dir
    }
}

fn default_model_id(dir: &Path) -> String {
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into());
    format!("local/{name}")
}

/// How token vectors become one sentence vector (sentence-transformers'
/// `1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the positions the attention mask marks real.
    Mean,
    /// The first position (`[CLS]`).
    Cls,
}

/// A checked sentence-transformers encoder folder.
#[derive(Debug, Clone)]
pub struct EncoderDir {
    pub dir: PathBuf,
    /// Width of one embedding (`hidden_size`).
    pub dimensions: usize,
    /// Longest input in tokens (`sentence_bert_config.json` `max_seq_length`,
    /// else `max_position_embeddings`).
    pub max_tokens: usize,
    pub pooling: Pooling,
    /// `modules.json` has a `Normalize` module: unit-length vectors.
    pub normalize: bool,
}

impl EncoderDir {
    /// Open and check an encoder folder. Errors name the file and the key.
    pub fn open(dir: &Path) -> Result<EncoderDir, ModelDirError> {
        require_files(dir)?;
        let path = dir.join("config.json");
        let c: Value = read_json(&path)?;
        let int = |key: &'static str| -> Result<usize, ModelDirError> {
            c.get(key)
                .and_then(Value::as_u64)
                .filter(|&v| v > 0)
                .map(|v| v as usize)
                .ok_or_else(|| ModelDirError::Invalid {
                    path: path.clone(),
                    key,
                    reason: "must be a positive integer".into(),
                })
        };
        let dimensions = int("hidden_size")?;
        let max_positions = int("max_position_embeddings")?;
        let st: Value = read_optional::<Option<Value>>(&dir.join("sentence_bert_config.json"))?.unwrap_or(Value::Null);
        let max_tokens = st
            .get("max_seq_length")
            .and_then(Value::as_u64)
            .map_or(max_positions, |m| (m as usize).min(max_positions));
        let pooling_path = dir.join("1_Pooling/config.json");
        let pool: Value = read_optional::<Option<Value>>(&pooling_path)?.unwrap_or(Value::Null);
        let flag = |k: &str| pool.get(k).and_then(Value::as_bool).unwrap_or(false);
        let pooling = if flag("pooling_mode_cls_token") {
            Pooling::Cls
        } else if pool.is_null() || flag("pooling_mode_mean_tokens") {
            Pooling::Mean
        } else {
            return Err(ModelDirError::Invalid {
                path: pooling_path,
                key: "pooling_mode_*",
                reason: "only mean and CLS pooling are supported".into(),
            });
        };
        let modules: Value = read_optional::<Option<Value>>(&dir.join("modules.json"))?.unwrap_or(Value::Null);
        let normalize = modules.as_array().is_some_and(|m| {
            m.iter().any(|x| {
                x.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.ends_with("Normalize"))
            })
        });
        Ok(EncoderDir {
            dir: dir.to_path_buf(),
            dimensions,
            max_tokens,
            pooling,
            normalize,
        })
    }
}
