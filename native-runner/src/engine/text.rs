//! The tokenizer side of the model folder: encoding prompts, rendering the
//! chat template, and incremental detokenization.
//!
//! Chat prompts are built so that user text can never forge a turn: the
//! template is rendered with a placeholder for each message's content, so
//! the runner knows where every content span lies in the prompt. The prompt
//! is tokenized whole (the ids the model was trained on) unless a control
//! token was matched inside a content span; then the template's own text is
//! tokenized with special tokens recognised and the content with
//! `encode_special_tokens` on, so `<|im_end|>` typed by a user is plain
//! text, never the control token.

use anyhow::{anyhow, Result};
use minijinja::{context, Environment, Error as JinjaError, ErrorKind};
use tokenizers::Tokenizer;

use crate::model_dir::{ModelDir, ModelFolder};

/// Placeholder for message `i` while rendering: private-use characters that
/// no template emits and that a client's text containing them cannot turn
/// into structure (content is substituted after rendering, never rendered).
fn placeholder(i: usize) -> String {
    format!("{PLACEHOLDER_OPEN}{PLACEHOLDER_TAG}{i}{PLACEHOLDER_CLOSE}")
}

const PLACEHOLDER_OPEN: char = '\u{F8F0}';
const PLACEHOLDER_CLOSE: char = '\u{F8F1}';
const PLACEHOLDER_TAG: &str = "infergate-content-";

/// A piece of the rendered template: its own text, or message `i`'s content.
enum Segment<'a> {
    Template(&'a str),
    Content(usize),
}

/// Split the rendered template at the content placeholders, in one pass
/// (linear in the rendered length, whatever the number of messages). The
/// template may drop or reorder messages, so placeholders are taken wherever
/// they landed; text that only looks like one stays template text.
fn split_placeholders(rendered: &str, messages: usize) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut rest = rendered;
    let mut template_start = 0;
    let mut pos = 0;
    while let Some(at) = rest.find(PLACEHOLDER_OPEN) {
        let after = &rest[at + PLACEHOLDER_OPEN.len_utf8()..];
        let index = after
            .strip_prefix(PLACEHOLDER_TAG)
            .and_then(|t| t.split_once(PLACEHOLDER_CLOSE))
            .and_then(|(n, _)| n.parse::<usize>().ok().filter(|&i| i < messages).map(|i| (i, n.len())));
        let open = pos + at;
        match index {
            Some((i, digits)) => {
                out.push(Segment::Template(&rendered[template_start..open]));
                out.push(Segment::Content(i));
                let len = PLACEHOLDER_OPEN.len_utf8() + PLACEHOLDER_TAG.len() + digits + PLACEHOLDER_CLOSE.len_utf8();
                pos = open + len;
                template_start = pos;
            }
            None => pos = open + PLACEHOLDER_OPEN.len_utf8(),
        }
        rest = &rendered[pos..];
    }
    out.push(Segment::Template(&rendered[template_start..]));
    out.retain(|s| !matches!(s, Segment::Template("")));
    out
}

/// Encodes prompts, renders the chat template, decodes tokens. Shared
/// (read-only) by the HTTP handlers and the engine thread.
pub struct TextCodec {
    /// Recognises special tokens written in the text (template markup,
    /// completions prompts).
    tokenizer: Tokenizer,
    /// Treats special-token text as ordinary text (message content).
    literal: Tokenizer,
    template: Option<Environment<'static>>,
    bos_token: String,
    eos_token: String,
    template_knows_developer: bool,
    /// Ids of the added tokens marked special (control tokens).
    special_ids: std::collections::HashSet<u32>,
    vocab: usize,
}

impl TextCodec {
    /// Load `tokenizer.json` and compile the chat template.
    ///
    /// Errors when the tokenizer cannot be read, has more tokens than the
    /// model's `vocab_size`, or the template does not compile.
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
        let special_ids = tokenizer
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| id)
            .collect();
        let mut literal = tokenizer.clone();
        literal.set_encode_special_tokens(true);
        let template = match &model.config.chat_template {
            Some(src) => Some(compile_template(src).map_err(|e| {
                anyhow!(
                    "{}: chat_template does not compile: {e}",
                    model.dir.join("tokenizer_config.json").display()
                )
            })?),
            None => None,
        };
        Ok(TextCodec {
            tokenizer,
            literal,
            template,
            bos_token: model.config.bos_token.clone().unwrap_or_default(),
            eos_token: model.config.eos_token.clone().unwrap_or_default(),
            template_knows_developer: model
                .config
                .chat_template
                .as_deref()
                .is_some_and(|t| t.contains("developer")),
            special_ids,
            vocab,
        })
    }

    /// Token ids of `text`. Special tokens written in the text are
    /// recognised (a completions prompt is raw model input); no BOS is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        encode_with(&self.tokenizer, text)
    }

    /// Whether the folder has a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.template.is_some()
    }

    /// Token ids of a conversation as the chat template lays it out, ending
    /// with the generation prompt. Message content is encoded literally:
    /// special-token text inside it stays text.
    ///
    /// Errors when the folder has no template or the template raises (for
    /// example on a role it does not accept).
    pub fn chat_prompt<'a>(&self, messages: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Vec<u32>> {
        let (rendered, contents) = self.render_chat(messages)?;
        let segments = split_placeholders(&rendered, contents.len());
        // The whole prompt, and where each message's content sits in it.
        let mut text = String::with_capacity(rendered.len());
        let mut spans = Vec::new();
        for seg in &segments {
            match *seg {
                Segment::Template(t) => text.push_str(t),
                Segment::Content(i) => {
                    spans.push((text.len(), text.len() + contents[i].len()));
                    text.push_str(contents[i]);
                }
            }
        }
        // Tokenized whole, the prompt gets exactly the ids the model was
        // trained on (BPE merges across a template/content boundary, such as
        // "\n" + "\nHi", stay merged). That is safe unless a special token
        // was matched inside a content span: then the content is encoded
        // literally, piece by piece.
        let whole = self
            .tokenizer
            .encode(text.as_str(), false)
            .map_err(|e| anyhow!("tokenization failed: {e}"))?;
        let forged = whole
            .get_ids()
            .iter()
            .zip(whole.get_offsets())
            .any(|(id, &(start, end))| {
                self.special_ids.contains(id) && spans.iter().any(|&(s, e)| start < e && end > s)
            });
        if !forged {
            return Ok(whole.get_ids().to_vec());
        }
        let mut ids = Vec::new();
        for seg in &segments {
            match *seg {
                Segment::Template(t) => ids.extend(encode_with(&self.tokenizer, t)?),
                Segment::Content(i) => ids.extend(encode_with(&self.literal, contents[i])?),
            }
        }
        Ok(ids)
    }

    /// The rendered template text with content placeholders, and the contents.
    fn render_chat<'a>(
        &self,
        messages: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(String, Vec<&'a str>)> {
        let env = self
            .template
            .as_ref()
            .ok_or_else(|| anyhow!("the model folder has no chat_template in tokenizer_config.json"))?;
        let mut contents = Vec::new();
        let mut list = Vec::new();
        for (i, (role, content)) in messages.into_iter().enumerate() {
            contents.push(content);
            list.push(context! { role => role, content => placeholder(i) });
        }
        let rendered = env
            .get_template("chat")
            .and_then(|t| {
                t.render(context! {
                    messages => list,
                    add_generation_prompt => true,
                    bos_token => self.bos_token,
                    eos_token => self.eos_token,
                })
            })
            .map_err(|e| anyhow!("{e}"))?;
        Ok((rendered, contents))
    }

    /// The chat prompt as text, content included (for logs and tests).
    pub fn chat_text<'a>(&self, messages: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<String> {
        let (rendered, contents) = self.render_chat(messages)?;
        Ok(split_placeholders(&rendered, contents.len())
            .iter()
            .map(|seg| match *seg {
                Segment::Template(t) => t,
                Segment::Content(i) => contents[i],
            })
            .collect())
    }

    /// Text of a token sequence, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.tokenizer.decode(ids, true).unwrap_or_default()
    }

    /// Text of a token sequence with its special tokens (an echoed prompt).
    pub fn decode_all(&self, ids: &[u32]) -> String {
        self.tokenizer.decode(ids, false).unwrap_or_default()
    }

    /// The role name to give the template: `developer` (OpenAI's newer name
    /// for `system`) becomes `system` unless the template knows `developer`,
    /// so its instructions are not rendered as an unknown turn.
    pub fn template_role<'a>(&self, role: &'a str) -> &'a str {
        if role == "developer" && !self.template_knows_developer {
            "system"
        } else {
            role
        }
    }

    /// The tokenizer, for [`DecodeState`].
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn vocab(&self) -> usize {
        self.vocab
    }
}

fn encode_with(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    tokenizer
        .encode(text, false)
        .map(|e| e.get_ids().to_vec())
        .map_err(|e| anyhow!("tokenization failed: {e}"))
}

/// A Jinja environment with the helpers Hugging Face templates call.
fn compile_template(src: &str) -> Result<Environment<'static>, JinjaError> {
    let mut env = Environment::new();
    // Python string methods (`.strip()`, `.startswith()`) that templates use.
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> Result<String, JinjaError> {
        Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
    });
    env.add_template_owned("chat", src.to_string())?;
    Ok(env)
}

/// Incremental detokenization of one sequence with the `tokenizers` crate's
/// decode stream: each token yields the text it completes, or nothing while
/// a character (a byte-level token can end inside one) is incomplete.
/// Special tokens yield nothing (`skip_special_tokens`).
#[derive(Debug, Default)]
pub struct DecodeState {
    ids: Vec<u32>,
    prefix: String,
    prefix_index: usize,
}

impl DecodeState {
    /// The text `id` completes (possibly empty).
    pub fn step(&mut self, tokenizer: &Tokenizer, id: u32) -> String {
        match tokenizers::step_decode_stream(
            tokenizer,
            vec![id],
            true,
            &mut self.ids,
            &mut self.prefix,
            &mut self.prefix_index,
        ) {
            Ok(text) => text.unwrap_or_default(),
            // The stream's invariant broke (a decoder that rewrites earlier
            // text): start over from this token rather than fail the request.
            Err(e) => {
                tracing::warn!("incremental detokenization restarted: {e}");
                *self = DecodeState::default();
                tokenizer.decode(&[id], true).unwrap_or_default()
            }
        }
    }

    /// End of stream: text still held back. The bytes of a character that
    /// never completed (generation stopped inside it, at `max_tokens`) are
    /// dropped rather than sent as U+FFFD.
    pub fn finish(&mut self, tokenizer: &Tokenizer) -> String {
        let all = tokenizer.decode(&self.ids, true).unwrap_or_default();
        let out = all
            .strip_prefix(self.prefix.as_str())
            .unwrap_or("")
            .trim_end_matches('\u{fffd}')
            .to_string();
        *self = DecodeState::default();
        out
    }
}
