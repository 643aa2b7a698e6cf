"""Hugging Face tokenizer files from a GGUF's `tokenizer.ggml.*` metadata.

Only the byte-level BPE kind SmolLM2 uses (`tokenizer.ggml.model` = gpt2, pre-tokenizer
`smollm`) is supported: llama.cpp's "smollm" pre-tokenizer is the two regexes
`\\p{N}` (each digit alone) and GPT-2's, which in `tokenizers` terms is
Sequence[Digits(individual_digits), ByteLevel(use_regex)]. Any other `pre` value would
need a different pre-tokenizer, so it is refused rather than guessed.
"""

from __future__ import annotations

from .llama import field

TOKEN_TYPE_CONTROL = 3  # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL -> HF special added token
TOKEN_TYPE_NORMAL = 1
MAX_LENGTH = 8192


def build(reader) -> tuple[dict, dict, dict]:
    """Returns (tokenizer.json, tokenizer_config.json, special_tokens_map.json) as dicts."""
    model = field(reader, "tokenizer.ggml.model")
    pre = field(reader, "tokenizer.ggml.pre")
    if model != "gpt2" or pre != "smollm":
        raise ValueError(f"unsupported GGUF tokenizer {model!r}/{pre!r} (only gpt2/smollm)")
    tokens = list(field(reader, "tokenizer.ggml.tokens"))
    types = [int(t) for t in field(reader, "tokenizer.ggml.token_type")]
    merges = list(field(reader, "tokenizer.ggml.merges"))
    if len(tokens) != len(types) or len(set(tokens)) != len(tokens):
        raise ValueError("GGUF token list has duplicates or a token_type length mismatch")
    unknown = sorted(set(types) - {TOKEN_TYPE_NORMAL, TOKEN_TYPE_CONTROL})
    if unknown:
        raise ValueError(f"unhandled GGUF token types {unknown}")
    for m in merges:
        # byte-level symbols never contain a plain space, so "a b" splits unambiguously
        if len(m.split(" ")) != 2:
            raise ValueError(f"odd merge {m!r}")

    special = [(i, t) for i, (t, ty) in enumerate(zip(tokens, types)) if ty == TOKEN_TYPE_CONTROL]
    added = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i, t in special
    ]
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Digits", "individual_digits": True},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            ],
        },
        # offsets only: adds no tokens (the GGUF says add_bos_token = false)
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(tokens)},
            # legacy "a b" strings, as in the GGUF: every tokenizers version reads them
            "merges": merges,
        },
    }

    def tok_of(key: str):
        return tokens[int(field(reader, key))] if key in reader.fields else None

    bos, eos = tok_of("tokenizer.ggml.bos_token_id"), tok_of("tokenizer.ggml.eos_token_id")
    pad, unk = tok_of("tokenizer.ggml.padding_token_id"), tok_of("tokenizer.ggml.unknown_token_id")
    if bool(field(reader, "tokenizer.ggml.add_bos_token", False)):
        raise ValueError("GGUF asks for a BOS token: the post-processor would need it")
    extra = [t for _, t in special if t in ("<|im_start|>", "<|im_end|>")]
    cfg = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                     "single_word": False, "special": True}
            for i, t in special
        },
        "additional_special_tokens": extra,
        "bos_token": bos,
        "chat_template": field(reader, "tokenizer.chat_template"),  # verbatim Jinja
        "clean_up_tokenization_spaces": False,
        "eos_token": eos,
        "model_max_length": MAX_LENGTH,
        "pad_token": pad,
        "tokenizer_class": "GPT2Tokenizer",
        "unk_token": unk,
        "vocab_size": len(tokens),
    }
    smap = {"additional_special_tokens": extra, "bos_token": bos, "eos_token": eos,
            "pad_token": pad, "unk_token": unk}
    return tok, cfg, smap


def check(tokenizer_json: str, special_ids: dict[str, int]) -> None:
    """Round trips with the python `tokenizers` package (the runner uses the same crate)."""
    from tokenizers import Tokenizer

    t = Tokenizer.from_str(tokenizer_json)
    texts = [
        "Hello, world! How are you today?",
        "  leading and trailing spaces  \n\n\ttabs\r\n",
        "Numbers: 0 7 42 1234567890 3.14159 -12e5 2024-06-01",
        "Unicode: naïve café, Größe, 日本語のテキスト, Ελληνικά, русский, עברית, हिन्दी",
        "Emoji: 👋🌍 🧑‍💻 👨‍👩‍👧‍👦 ✨🎉",
        "def f(x):\n    return {'a': [1, 2, 3], \"b\": x ** 2}  # comment\n",
        "fn main() { println!(\"{}\", 1 + 2); }",
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "\x00\x01 control \u200b zero-width \ufeff",
    ]
    for s in texts:
        ids = t.encode(s).ids
        back = t.decode(ids, skip_special_tokens=False)
        if back != s:
            raise AssertionError(f"tokenizer round trip failed: {s!r} -> {back!r}")
    for s, i in special_ids.items():
        if t.encode(s).ids != [i]:
            raise AssertionError(f"special token {s!r} does not encode as [{i}]")
    # individual digits: "2024" is four tokens
    if len(t.encode("2024").ids) != 4:
        raise AssertionError("digits are not split one by one")
