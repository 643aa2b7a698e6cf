#!/usr/bin/env python3
"""Generate a tiny, deterministic GPT-2-style decoder-only test model for infergate.

Writes a Hugging Face-layout model folder into --out:

  model.onnx              decoder-with-past (Optimum input/output names), one file
  tokenizer.json          byte-level BPE in Hugging Face `tokenizers` format
  config.json             transformers model config (layers, heads, vocab, context, EOS)
  generation_config.json  EOS and pad ids
  tokenizer_config.json   the ChatML chat template (Jinja) and special tokens

The weights are random (fixed seed), so the model says nothing sensible, but it is
a real transformer: learned token + position embeddings, pre-LayerNorm blocks with
causal multi-head attention over a KV cache, a GELU MLP, a final LayerNorm and a
separate (untied) LM head.  Built with onnx.helper + numpy only.

Running the script twice with the same arguments gives byte-identical files; the
sha256 of each file is printed.  With --verify (the default) the model and the
tokenizer are checked with onnxruntime and the python `tokenizers` package.

Usage:
  python3 tools/gen_test_model.py --out DIR [--layers 2 --heads 4 --hidden 64
                                             --vocab 512 --context 512 --seed 1234]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17  # LayerNormalization needs opset >= 17
IR_VERSION = 8  # the IR version that goes with opset 17; onnxruntime 1.31 reads it
LN_EPS = 1e-5
MASK_VALUE = -1e9  # additive bias for masked positions (finite: fully masked rows stay NaN-free)

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END]  # ids vocab-3, vocab-2, vocab-1

CHAT_MESSAGE = "<|im_start|>{role}\n{content}<|im_end|>\n"
CHAT_GENERATION_PROMPT = "<|im_start|>assistant\n"

# Small embedded corpus used to learn the BPE merges.  Changing it changes the
# tokenizer (and therefore every hash), so leave it alone unless that is the point.
CORPUS = """\
Once upon a time there was a little model that lived inside a test folder. It could not
think very well, but it was very fast, and every morning it woke up and said hello to the
world. The world did not answer, so the model went back to predicting the next token.

The quick brown fox jumps over the lazy dog. The lazy dog does not mind; it is sleeping in
the sun. A fox, a dog, a cat and a bird are sitting together under the old tree near the
river. They are talking about the weather, the time of the day and the things they want
to eat for dinner tonight.

user
What is the capital of France?
assistant
The capital of France is Paris. It is known for the Eiffel Tower, the Louvre museum and
its many small cafes.

user
Can you write a short poem about the sea?
assistant
The sea is wide, the sea is deep,
it sings the sailors off to sleep.
The waves come in, the waves go out,
and that is what the sea is about.

system
You are a helpful assistant. Answer the question of the user in a short and friendly way.
If you do not know the answer, say that you do not know it.

Numbers are important too: 0 1 2 3 4 5 6 7 8 9 10 11 12 20 42 100 256 512 1024 2048 4096.
The year 2024 came after 2023, and 2025 comes after 2024. One, two, three, four, five,
six, seven, eight, nine, ten.

def generate(prompt, max_tokens=16):
    tokens = tokenizer.encode(prompt)
    for step in range(max_tokens):
        logits = model(tokens)
        next_token = int(logits[-1].argmax())
        tokens.append(next_token)
    return tokenizer.decode(tokens)

fn main() {
    let message = String::from("hello, world");
    println!("{}", message);
}

An inference gateway receives requests from many users, puts them into a queue, batches
them together and sends them to the model. The model returns the logits for the next
token, the gateway samples a token, and the process repeats until the end of the text
or until the maximum number of tokens is reached. Streaming responses send each new
token to the client as soon as it is ready.

Testing is the process of checking that the program does what it should do. A good test
is small, fast and deterministic: it gives the same result every time it runs.

In the morning the birds sing, in the evening the stars come out. People walk along the
streets, talk with their friends, read books and drink coffee. Children play in the park
while their parents watch them from the benches. The city is busy and the noise of the
cars never really stops, but at night everything becomes quiet again.

Hello! How are you today? I am fine, thank you. What are you doing? I am reading a book
about machines that learn. That sounds interesting; tell me more about it, please.
"""


# ----------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character map (same as `tokenizers`)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(
        range(ord("\xae"), ord("\xff") + 1)
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def train_bpe(corpus: str, num_tokens: int) -> tuple[list[str], list[tuple[str, str]]]:
    """Deterministic byte-level BPE training.

    Returns (tokens, merges): tokens[i] is the string of id i (256 byte tokens first,
    in byte order, then one token per learned merge), merges in rank order.
    """
    from tokenizers import pre_tokenizers

    b2u = bytes_to_unicode()
    tokens = [b2u[b] for b in range(256)]
    known = set(tokens)
    merges: list[tuple[str, str]] = []

    # Same pre-tokenization the tokenizer uses at encode time (already byte-level mapped).
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    word_counts: dict[str, int] = {}
    for piece, _ in pre.pre_tokenize_str(corpus):
        word_counts[piece] = word_counts.get(piece, 0) + 1
    words = [(list(w), c) for w, c in sorted(word_counts.items())]

    while len(tokens) < num_tokens:
        pair_counts: dict[tuple[str, str], int] = {}
        for syms, c in words:
            for a, b in zip(syms, syms[1:]):
                pair_counts[(a, b)] = pair_counts.get((a, b), 0) + c
        if not pair_counts:
            break  # corpus exhausted; the caller pads with reserved tokens
        # highest count first, ties broken by the pair itself -> fully deterministic
        (a, b), _ = min(pair_counts.items(), key=lambda kv: (-kv[1], kv[0]))
        merged = a + b
        merges.append((a, b))
        if merged not in known:
            known.add(merged)
            tokens.append(merged)
        for i, (syms, c) in enumerate(words):
            if len(syms) < 2:
                continue
            out = []
            j = 0
            while j < len(syms):
                if j + 1 < len(syms) and syms[j] == a and syms[j + 1] == b:
                    out.append(merged)
                    j += 2
                else:
                    out.append(syms[j])
                    j += 1
            words[i] = (out, c)
    return tokens, merges


def build_tokenizer_json(vocab_size: int) -> tuple[dict, dict[str, int]]:
    n_special = len(SPECIAL_TOKENS)
    tokens, merges = train_bpe(CORPUS, vocab_size - n_special)
    vocab = {t: i for i, t in enumerate(tokens)}
    # Only for a --vocab larger than the embedded corpus supports (~929 with the defaults):
    # fill the gap with never-produced special tokens <|reserved_N|>.
    reserved = [f"<|reserved_{k}|>" for k in range(vocab_size - n_special - len(tokens))]
    if reserved:
        print(f"note: corpus exhausted after {len(merges)} merges; added {len(reserved)} <|reserved_N|> tokens",
              file=sys.stderr)
    special_ids = {}
    added = []
    for k, s in enumerate(reserved + SPECIAL_TOKENS):
        sid = len(tokens) + k
        vocab[s] = sid  # also in the model vocab (like GPT-2), so every id decodes
        special_ids[s] = sid
        added.append(
            {
                "id": sid,
                "content": s,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
        )
    assert len(vocab) == vocab_size
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": True,
            "use_regex": True,
        },
        "post_processor": {
            "type": "ByteLevel",
            "add_prefix_space": True,
            "trim_offsets": False,
            "use_regex": True,
        },
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": True,
            "trim_offsets": True,
            "use_regex": True,
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            # legacy "a b" strings: understood by every tokenizers version
            # (byte-level symbols never contain a plain space)
            "merges": [f"{a} {b}" for a, b in merges],
        },
    }
    return tok, special_ids


# ----------------------------------------------------------------------------------------
# ONNX model
# ----------------------------------------------------------------------------------------


class GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def uniq(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def init(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def const_i64(self, name: str, values) -> str:
        return self.init(name, np.array(values, dtype=np.int64))

    def const_f32(self, name: str, value: float) -> str:
        return self.init(name, np.array(value, dtype=np.float32))

    def op(self, op_type: str, inputs: list[str], name: str | None = None, outputs: list[str] | None = None, **attrs) -> str:
        node_name = name or self.uniq(op_type)
        outs = outputs or [node_name + "_out"]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=node_name, **attrs))
        return outs[0]


def make_weights(rng: np.random.Generator, L: int, E: int, V: int, C: int, added_ids: list[int]) -> dict[str, np.ndarray]:
    """Random weights.  Scales are chosen so that attention is neither uniform nor one-hot
    and the logits have a std of a few units (sampling gives varied tokens)."""

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    w: dict[str, np.ndarray] = {}
    w["wte"] = normal((V, E), 1.0)
    w["wpe"] = normal((C, E), 0.5)
    for i in range(L):
        p = f"h.{i}."
        w[p + "ln_1.weight"] = (1.0 + normal((E,), 0.1)).astype(np.float32)
        w[p + "ln_1.bias"] = normal((E,), 0.05)
        for n in ("q", "k", "v"):
            w[p + f"attn.{n}.weight"] = normal((E, E), 1.0 / np.sqrt(E))
            w[p + f"attn.{n}.bias"] = normal((E,), 0.05)
        w[p + "attn.o.weight"] = normal((E, E), 0.5 / np.sqrt(E))
        w[p + "attn.o.bias"] = normal((E,), 0.05)
        w[p + "ln_2.weight"] = (1.0 + normal((E,), 0.1)).astype(np.float32)
        w[p + "ln_2.bias"] = normal((E,), 0.05)
        w[p + "mlp.fc.weight"] = normal((E, 4 * E), 1.0 / np.sqrt(E))
        w[p + "mlp.fc.bias"] = normal((4 * E,), 0.05)
        w[p + "mlp.proj.weight"] = normal((4 * E, E), 0.5 / np.sqrt(4 * E))
        w[p + "mlp.proj.bias"] = normal((E,), 0.05)
    w["ln_f.weight"] = (1.0 + normal((E,), 0.1)).astype(np.float32)
    w["ln_f.bias"] = normal((E,), 0.05)
    w["lm_head.weight"] = normal((E, V), 0.35)  # stored [E, V]: logits = h @ W
    # Damp the output columns of the added (special) tokens and of the byte tokens that are not
    # printable ASCII (control bytes except \t and \n, 0x7f-0xff): their logits get ~1/10 of
    # the usual spread, so random generation rarely stops early on an EOS id and mostly
    # produces valid, printable UTF-8.  They remain possible when sampling.
    damp = [b for b in range(256) if (b < 0x20 and b not in (0x09, 0x0A)) or b >= 0x7F]
    damp += list(added_ids)
    w["lm_head.weight"][:, damp] *= np.float32(0.1)
    return w


def build_model(L: int, H: int, E: int, V: int, C: int, seed: int, added_ids: list[int]) -> onnx.ModelProto:
    assert E % H == 0
    D = E // H
    rng = np.random.default_rng(seed)
    w = make_weights(rng, L, E, V, C, added_ids)
    g = GraphBuilder()
    for k, arr in w.items():
        g.init(k, arr)

    F, I64 = TensorProto.FLOAT, TensorProto.INT64
    inputs = [
        helper.make_tensor_value_info("input_ids", I64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info("attention_mask", I64, ["batch_size", "total_sequence_length"]),
        helper.make_tensor_value_info("position_ids", I64, ["batch_size", "sequence_length"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", F, ["batch_size", "sequence_length", V])]
    for i in range(L):
        for kv in ("key", "value"):
            inputs.append(
                helper.make_tensor_value_info(
                    f"past_key_values.{i}.{kv}", F, ["batch_size", H, "past_sequence_length", D]
                )
            )
            outputs.append(
                helper.make_tensor_value_info(f"present.{i}.{kv}", F, ["batch_size", H, "total_sequence_length", D])
            )

    # constants
    c_zero_f = g.const_f32("const_zero_f", 0.0)
    c_mask_f = g.const_f32("const_mask_value", MASK_VALUE)
    c_scale = g.const_f32("const_attn_scale", 1.0 / np.sqrt(D))
    c_half = g.const_f32("const_half", 0.5)
    c_one_f = g.const_f32("const_one_f", 1.0)
    c_inv_sqrt2 = g.const_f32("const_inv_sqrt2", 1.0 / np.sqrt(2.0))
    c_zero_i = g.const_i64("const_zero_i", 0)
    c_one_i = g.const_i64("const_one_i", 1)
    ax0 = g.const_i64("axes_0", [0])
    ax1 = g.const_i64("axes_1", [1])
    ax01 = g.const_i64("axes_0_1", [0, 1])
    ax12 = g.const_i64("axes_1_2", [1, 2])
    shp_bshd = g.const_i64("shape_b_s_h_d", [0, 0, H, D])
    shp_bse = g.const_i64("shape_b_s_e", [0, 0, E])

    # ---- attention bias [B, 1, S, T]: causal (query at absolute P+j sees keys <= P+j)
    #      AND attention_mask[b, k] != 0.  P = T - S.
    S1 = g.op("Shape", ["input_ids"], name="seq_len", start=1, end=2)  # [1]
    T1 = g.op("Shape", ["attention_mask"], name="total_len", start=1, end=2)  # [1]
    P1 = g.op("Sub", [T1, S1], name="past_len")
    S0 = g.op("Squeeze", [S1, ax0], name="seq_len_scalar")
    T0 = g.op("Squeeze", [T1, ax0], name="total_len_scalar")
    P0 = g.op("Squeeze", [P1, ax0], name="past_len_scalar")
    q_rel = g.op("Range", [c_zero_i, S0, c_one_i], name="query_range")
    q_abs = g.op("Add", [q_rel, P0], name="query_pos")
    q_col = g.op("Unsqueeze", [q_abs, ax1], name="query_pos_col")  # [S, 1]
    k_abs = g.op("Range", [c_zero_i, T0, c_one_i], name="key_range")
    k_row = g.op("Unsqueeze", [k_abs, ax0], name="key_pos_row")  # [1, T]
    causal = g.op("LessOrEqual", [k_row, q_col], name="causal")  # [S, T] bool
    causal4 = g.op("Unsqueeze", [causal, ax01], name="causal_4d")  # [1, 1, S, T]
    keep = g.op("Cast", ["attention_mask"], name="mask_bool", to=TensorProto.BOOL)  # [B, T]
    keep4 = g.op("Unsqueeze", [keep, ax12], name="mask_4d")  # [B, 1, 1, T]
    allowed = g.op("And", [causal4, keep4], name="allowed")  # [B, 1, S, T]
    bias = g.op("Where", [allowed, c_zero_f, c_mask_f], name="attn_bias")  # [B, 1, S, T] f32

    # ---- embeddings
    tok = g.op("Gather", ["wte", "input_ids"], name="tok_emb", axis=0)
    pos = g.op("Gather", ["wpe", "position_ids"], name="pos_emb", axis=0)
    x = g.op("Add", [tok, pos], name="embed")

    def linear(inp: str, wname: str, bname: str, name: str) -> str:
        mm = g.op("MatMul", [inp, wname], name=name + "_matmul")
        return g.op("Add", [mm, bname], name=name + "_add")

    def split_heads(t: str, name: str) -> str:
        r = g.op("Reshape", [t, shp_bshd], name=name + "_reshape")
        return g.op("Transpose", [r], name=name + "_transpose", perm=[0, 2, 1, 3])  # [B, H, S, D]

    for i in range(L):
        p = f"h.{i}."
        n = f"layer{i}"
        h1 = g.op("LayerNormalization", [x, p + "ln_1.weight", p + "ln_1.bias"], name=n + "_ln_1", axis=-1, epsilon=LN_EPS)
        q = split_heads(linear(h1, p + "attn.q.weight", p + "attn.q.bias", n + "_q"), n + "_q")
        k = split_heads(linear(h1, p + "attn.k.weight", p + "attn.k.bias", n + "_k"), n + "_k")
        v = split_heads(linear(h1, p + "attn.v.weight", p + "attn.v.bias", n + "_v"), n + "_v")
        k_all = g.op("Concat", [f"past_key_values.{i}.key", k], name=n + "_present_key", outputs=[f"present.{i}.key"], axis=2)
        v_all = g.op("Concat", [f"past_key_values.{i}.value", v], name=n + "_present_value", outputs=[f"present.{i}.value"], axis=2)
        k_t = g.op("Transpose", [k_all], name=n + "_key_t", perm=[0, 1, 3, 2])  # [B, H, D, T]
        scores = g.op("MatMul", [q, k_t], name=n + "_scores")  # [B, H, S, T]
        scores = g.op("Mul", [scores, c_scale], name=n + "_scores_scaled")
        scores = g.op("Add", [scores, bias], name=n + "_scores_masked")
        probs = g.op("Softmax", [scores], name=n + "_probs", axis=-1)
        ctx = g.op("MatMul", [probs, v_all], name=n + "_context")  # [B, H, S, D]
        ctx = g.op("Transpose", [ctx], name=n + "_context_t", perm=[0, 2, 1, 3])  # [B, S, H, D]
        ctx = g.op("Reshape", [ctx, shp_bse], name=n + "_context_merge")  # [B, S, E]
        attn = linear(ctx, p + "attn.o.weight", p + "attn.o.bias", n + "_attn_out")
        x = g.op("Add", [x, attn], name=n + "_residual_1")

        h2 = g.op("LayerNormalization", [x, p + "ln_2.weight", p + "ln_2.bias"], name=n + "_ln_2", axis=-1, epsilon=LN_EPS)
        f = linear(h2, p + "mlp.fc.weight", p + "mlp.fc.bias", n + "_fc")
        # exact GELU: 0.5 * f * (1 + erf(f / sqrt(2)))  (Gelu op needs opset 20)
        e = g.op("Erf", [g.op("Mul", [f, c_inv_sqrt2], name=n + "_gelu_div")], name=n + "_gelu_erf")
        e = g.op("Add", [e, c_one_f], name=n + "_gelu_add")
        f = g.op("Mul", [g.op("Mul", [f, c_half], name=n + "_gelu_half"), e], name=n + "_gelu")
        mlp = linear(f, p + "mlp.proj.weight", p + "mlp.proj.bias", n + "_proj")
        x = g.op("Add", [x, mlp], name=n + "_residual_2")

    hf = g.op("LayerNormalization", [x, "ln_f.weight", "ln_f.bias"], name="ln_f", axis=-1, epsilon=LN_EPS)
    g.op("MatMul", [hf, "lm_head.weight"], name="lm_head", outputs=["logits"])

    graph = helper.make_graph(g.nodes, "tiny_gpt_decoder_with_past", inputs, outputs, initializer=g.inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="infergate-gen-test-model",
        producer_version="1",
        doc_string="Tiny random GPT-2-style decoder with KV cache (test model, weights are random).",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


# The ChatML template as Jinja, the way tokenizer_config.json carries it.
CHAT_TEMPLATE_JINJA = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def make_config(L: int, H: int, E: int, V: int, C: int, seed: int, special_ids: dict[str, int]) -> dict[str, dict]:
    """The Hugging Face files of the folder: config.json, generation_config.json,
    tokenizer_config.json. The runner reads any decoder folder laid out this way."""
    eos = [special_ids[IM_END], special_ids[ENDOFTEXT]]
    config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "num_hidden_layers": L,
        "num_attention_heads": H,
        "num_key_value_heads": H,
        "head_dim": E // H,
        "hidden_size": E,
        "vocab_size": V,
        "max_position_embeddings": C,
        "eos_token_id": eos,
        "bos_token_id": special_ids[ENDOFTEXT],
        "pad_token_id": special_ids[ENDOFTEXT],
        "torch_dtype": "float32",
        "infergate_test_model": {"seed": seed, "weights": "random"},
    }
    generation = {"bos_token_id": special_ids[ENDOFTEXT], "eos_token_id": eos, "pad_token_id": special_ids[ENDOFTEXT]}
    tokenizer_config = {
        "chat_template": CHAT_TEMPLATE_JINJA,
        "bos_token": None,
        "eos_token": IM_END,
        "pad_token": ENDOFTEXT,
        "model_max_length": C,
        "add_bos_token": False,
    }
    return {"config.json": config, "generation_config.json": generation, "tokenizer_config.json": tokenizer_config}


# ----------------------------------------------------------------------------------------
# Verification
# ----------------------------------------------------------------------------------------


class Runner:
    def __init__(self, model_path: str, L: int, H: int, D: int, opt_level) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = opt_level
        so.intra_op_num_threads = 1
        self.sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
        self.L, self.H, self.D = L, H, D
        self.out_names = [o.name for o in self.sess.get_outputs()]

    def empty_past(self, batch: int) -> list[np.ndarray]:
        return [np.zeros((batch, self.H, 0, self.D), np.float32) for _ in range(2 * self.L)]

    def run(self, ids, mask, pos, past):
        feeds = {
            "input_ids": np.asarray(ids, np.int64),
            "attention_mask": np.asarray(mask, np.int64),
            "position_ids": np.asarray(pos, np.int64),
        }
        for i in range(self.L):
            feeds[f"past_key_values.{i}.key"] = past[2 * i]
            feeds[f"past_key_values.{i}.value"] = past[2 * i + 1]
        outs = self.sess.run(None, feeds)
        d = dict(zip(self.out_names, outs))
        presents = []
        for i in range(self.L):
            presents += [d[f"present.{i}.key"], d[f"present.{i}.value"]]
        return d["logits"], presents


def left_pad(prompts: list[list[int]], pad_id: int):
    """Left-pad; position_ids = cumsum(mask) - 1, with padding positions set to 0."""
    n = max(len(p) for p in prompts)
    ids = np.full((len(prompts), n), pad_id, np.int64)
    mask = np.zeros((len(prompts), n), np.int64)
    for b, p in enumerate(prompts):
        ids[b, n - len(p):] = p
        mask[b, n - len(p):] = 1
    pos = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    return ids, mask, pos


def verify(out_dir: str, L: int, H: int, E: int, V: int, C: int) -> bool:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    D = E // H
    ok = True
    tol = 1e-4

    def check(name: str, cond: bool, detail: str = "") -> None:
        nonlocal ok
        ok &= bool(cond)
        print(f"  [{'PASS' if cond else 'FAIL'}] {name}{(' - ' + detail) if detail else ''}")

    with open(os.path.join(out_dir, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    tk = Tokenizer.from_file(os.path.join(out_dir, "tokenizer.json"))
    pad = cfg["pad_token_id"]

    def prompt_ids(text: str) -> list[int]:
        # keep test prompts short enough for small --context / tiny --vocab
        return tk.encode(text).ids[: C // 4]

    # ---------------- tokenizer
    print("tokenizer:")
    check("vocab size == model vocab", tk.get_vocab_size(with_added_tokens=True) == V, str(tk.get_vocab_size()))
    samples = [
        "Hello, world!",
        "  leading and trailing spaces  \n\n\ttabs\r\n",
        "Grüße aus Köln — naïve café, 東京, Привет, مرحبا, 🦀🚀 emoji 👩‍👩‍👧",
        "\x00\x01 control \x7f bytes \u2028 line sep",
        "def f(x):\n    return x ** 2  # comment\n",
        "",
    ]
    rt = all(tk.decode(tk.encode(s).ids, skip_special_tokens=False) == s for s in samples)
    check("encode->decode round-trips UTF-8 text", rt)
    rng = np.random.default_rng(7)
    rand_ok = True
    for _ in range(200):
        cps = rng.integers(1, 0x2FFFF, size=int(rng.integers(0, 40)))
        s = "".join(chr(int(c)) for c in cps if not (0xD800 <= int(c) <= 0xDFFF))
        if tk.decode(tk.encode(s).ids, skip_special_tokens=False) != s:
            rand_ok = False
            print("    round-trip failure:", repr(s))
            break
    check("round-trips 200 random unicode strings", rand_ok)
    for s in SPECIAL_TOKENS:
        ids = tk.encode(s).ids
        check(f"special {s} is one token", ids == [tk.token_to_id(s)], str(ids))
    chat = CHAT_MESSAGE.replace("{role}", "user").replace("{content}", "Hi there!") + CHAT_GENERATION_PROMPT
    enc = tk.encode(chat)
    check(
        "chat prompt tokenizes with markers",
        enc.ids[0] == tk.token_to_id(IM_START) and tk.token_to_id(IM_END) in enc.ids
        and tk.decode(enc.ids, skip_special_tokens=False) == chat,
        f"{len(enc.ids)} tokens",
    )
    print(f"    'Once upon a time there was' -> {tk.encode('Once upon a time there was').tokens}")

    # ---------------- model
    levels = [("ORT_ENABLE_ALL", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
              ("ORT_DISABLE_ALL", ort.GraphOptimizationLevel.ORT_DISABLE_ALL)]
    ref_logits = {}
    for lname, level in levels:
        print(f"model ({lname}):")
        r = Runner(os.path.join(out_dir, "model.onnx"), L, H, D, level)

        # (3) empty past, shapes
        ids, mask, pos = left_pad([prompt_ids("The quick brown fox"), prompt_ids("Hi")], pad)
        logits, presents = r.run(ids, mask, pos, r.empty_past(2))
        Bsz, S = ids.shape
        shapes_ok = logits.shape == (Bsz, S, V) and all(p.shape == (Bsz, H, S, D) for p in presents)
        check("past_seq=0 (empty past) works, output shapes", shapes_ok and np.isfinite(logits).all(),
              f"logits {logits.shape}, present {presents[0].shape}")
        ref_logits[lname] = logits
        lg1, pr1 = r.run([[5]], [[1]], [[0]], r.empty_past(1))
        check("single token, no past", lg1.shape == (1, 1, V) and pr1[0].shape == (1, H, 1, D))

        # (1) greedy with cache vs full recompute
        prompt = prompt_ids("Once upon a time there was")
        steps = 16
        seq = list(prompt)
        past = r.empty_past(1)
        cache_tokens, cache_logits = [], []
        cur = list(prompt)
        for t in range(steps):
            P = len(seq) - len(cur)
            lg, past_new = r.run([cur], [[1] * len(seq)], [list(range(P, len(seq)))], past)
            # present == concat(past, new)
            if t > 0:
                assert all(np.array_equal(pn[:, :, :P], po) for pn, po in zip(past_new, past))
            past = past_new
            nxt = int(lg[0, -1].argmax())
            cache_tokens.append(nxt)
            cache_logits.append(lg[0, -1])
            seq.append(nxt)
            cur = [nxt]
        full_tokens, max_diff = [], 0.0
        seq = list(prompt)
        for t in range(steps):
            lg, _ = r.run([seq], [[1] * len(seq)], [list(range(len(seq)))], r.empty_past(1))
            nxt = int(lg[0, -1].argmax())
            full_tokens.append(nxt)
            max_diff = max(max_diff, float(np.abs(lg[0, -1] - cache_logits[t]).max()))
            seq.append(nxt)
        check("greedy 16 tokens: KV cache == full recompute", cache_tokens == full_tokens and max_diff < tol,
              f"max |dlogit| {max_diff:.2e}, distinct tokens {len(set(cache_tokens))}/16")
        print(f"    greedy ids: {cache_tokens}")
        print(f"    greedy text: {tk.decode(cache_tokens)!r}")

        # (2) left-padded batch of 3 prompts vs each alone, then 8 cached decode steps
        prompts = [prompt_ids(s) for s in ["Hello", "What is the capital of France?",
                                              "The sea is wide, the sea is deep, it sings the sailors"]]
        ids, mask, pos = left_pad(prompts, pad)
        lg, past = r.run(ids, mask, pos, r.empty_past(3))
        solo = []
        d_first = 0.0
        for b, p in enumerate(prompts):
            lgs, ps = r.run([p], [[1] * len(p)], [list(range(len(p)))], r.empty_past(1))
            solo.append((lgs, ps, list(p)))
            d_first = max(d_first, float(np.abs(lgs[0, -1] - lg[b, -1]).max()))
        check("left-padded batch of 3 (lens %s) == solo next-token logits" % [len(p) for p in prompts],
              d_first < tol, f"max |dlogit| {d_first:.2e}")
        # continue decoding greedily: batch with cache vs each prompt alone with cache
        d_dec, same = 0.0, True
        nxt_b = lg[:, -1].argmax(-1)
        for step in range(8):
            mask = np.concatenate([mask, np.ones((3, 1), np.int64)], axis=1)
            pos = mask.sum(1, keepdims=True) - 1
            lg, past = r.run(nxt_b[:, None], mask, pos, past)
            for b in range(3):
                lgs, ps, sq = solo[b]
                tok_b = int(lgs[0, -1].argmax())
                if tok_b != int(nxt_b[b]):
                    same = False
                sq.append(tok_b)
                lgs, ps = r.run([[tok_b]], [[1] * len(sq)], [[len(sq) - 1]], ps)
                solo[b] = (lgs, ps, sq)
                d_dec = max(d_dec, float(np.abs(lgs[0, -1] - lg[b, -1]).max()))
            nxt_b = lg[:, -1].argmax(-1)
        check("left-padded batch, 8 cached decode steps == solo", same and d_dec < tol, f"max |dlogit| {d_dec:.2e}")

        # full context: one pass over C tokens == (C-8) then 8 with cache
        long = (np.arange(C) * 7919 % (V - 3)).astype(np.int64)[None]
        lg_full, _ = r.run(long, np.ones_like(long), np.arange(C)[None], r.empty_past(1))
        a = C - 8
        _, pa = r.run(long[:, :a], np.ones((1, a), np.int64), np.arange(a)[None], r.empty_past(1))
        lg_b, pb = r.run(long[:, a:], np.ones((1, C), np.int64), np.arange(a, C)[None], pa)
        d_ctx = float(np.abs(lg_full[0, a:] - lg_b[0]).max())
        check(f"full context ({C} positions), chunked prefill with cache", d_ctx < tol and pb[0].shape[2] == C,
              f"max |dlogit| {d_ctx:.2e}")

        # logits are not degenerate; sampling gives varied tokens
        srng = np.random.default_rng(0)
        seq = prompt_ids("Hello")
        lg, past = r.run([seq], [[1] * len(seq)], [list(range(len(seq)))], r.empty_past(1))
        sampled = []
        for _ in range(32):
            z = lg[0, -1].astype(np.float64)
            pr = np.exp(z - z.max())
            pr /= pr.sum()
            t = int(srng.choice(V, p=pr))
            sampled.append(t)
            seq.append(t)
            lg, past = r.run([[t]], [[1] * len(seq)], [[len(seq) - 1]], past)
        std = float(lg_full[0].std(axis=-1).mean())
        check("sampling (T=1) gives varied tokens", len(set(sampled)) >= 8,
              f"{len(set(sampled))}/32 distinct, mean logit std {std:.2f}")

    d_lv = float(np.abs(ref_logits["ORT_ENABLE_ALL"] - ref_logits["ORT_DISABLE_ALL"]).max())
    check("optimized vs unoptimized graph agree", d_lv < tol, f"max |dlogit| {d_lv:.2e}")
    return ok


# ----------------------------------------------------------------------------------------


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (created if missing)")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=512, help="model and tokenizer vocab size (>= 260)")
    ap.add_argument("--context", type=int, default=512, help="max positions (size of the position table)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--verify", dest="verify", action="store_true", default=True, help="verify with onnxruntime (default)")
    ap.add_argument("--no-verify", dest="verify", action="store_false")
    a = ap.parse_args()

    if a.hidden % a.heads:
        ap.error("--hidden must be divisible by --heads")
    if a.vocab < 256 + len(SPECIAL_TOKENS) + 1:
        ap.error("--vocab must be >= 260 (256 byte tokens + 3 specials + 1 merge)")
    if a.layers < 1 or a.context < 64:
        ap.error("need --layers >= 1 and --context >= 64")

    t0 = time.perf_counter()
    os.makedirs(a.out, exist_ok=True)
    tok_json, special_ids = build_tokenizer_json(a.vocab)
    added_ids = sorted(t["id"] for t in tok_json["added_tokens"])
    model = build_model(a.layers, a.heads, a.hidden, a.vocab, a.context, a.seed, added_ids)
    cfg = make_config(a.layers, a.heads, a.hidden, a.vocab, a.context, a.seed, special_ids)

    names = ("model.onnx", "tokenizer.json", "config.json", "generation_config.json", "tokenizer_config.json")
    paths = {n: os.path.join(a.out, n) for n in names}
    with open(paths["model.onnx"], "wb") as f:
        f.write(model.SerializeToString(deterministic=True))
    with open(paths["tokenizer.json"], "w", encoding="utf-8", newline="\n") as f:
        json.dump(tok_json, f, ensure_ascii=False, indent=2)
        f.write("\n")
    for name, content in cfg.items():
        with open(paths[name], "w", encoding="utf-8", newline="\n") as f:
            json.dump(content, f, ensure_ascii=False, indent=2)
            f.write("\n")
    t_gen = time.perf_counter() - t0

    total = 0
    for n, p in paths.items():
        size = os.path.getsize(p)
        total += size
        print(f"{sha256(p)}  {size:>8}  {p}")
    print(f"total {total} bytes, generated in {t_gen:.2f}s")

    if not a.verify:
        return 0
    t1 = time.perf_counter()
    ok = verify(a.out, a.layers, a.heads, a.hidden, a.vocab, a.context)
    print(f"verification {'PASS' if ok else 'FAIL'} ({time.perf_counter() - t1:.2f}s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
