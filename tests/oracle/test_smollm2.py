"""Oracle tests for the converted SmolLM2 folder (INFERGATE_CHAT_MODEL_DIR).

The reference is tests/oracle/reference.py: a float64 numpy forward pass straight from
the GGUF (INFERGATE_SMOLLM2_GGUF) in llama.cpp's layout. Tolerances:
- last-position logits: max |onnx - numpy| <= 1e-3 (measured ~5e-5) and same argmax;
- KV cache / padding / batching against the same ONNX model alone: <= 5e-4 (measured:
  exactly 0 with fp32 weights, ~1e-4 with --weights int4, whose MatMulNBits kernel
  differs for one row and for many). Mask or position bugs give differences of 0.1+.
"""

from __future__ import annotations

import json
import os
import unittest

import numpy as np

from reference import SmolLM2, require_path

LOGIT_TOL = 1e-3
SELF_TOL = 5e-4

CHATML = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
          "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
PROMPTS = [
    "The capital of France is",
    CHATML,
    "def fibonacci(n):\n    ",
    "1, 2, 3, 4, 5, 6,",
    "Once upon a time, in a land far away, there lived a dragon who loved émigrés' books about 日本.",
    "Q: What is 12 + 30?\nA:",
]

_state: dict = {}


def load_json(name: str):
    with open(os.path.join(_state["dir"], name), encoding="utf-8") as f:
        return json.load(f)


def setUpModule():
    import onnxruntime as ort
    from tokenizers import Tokenizer

    model_dir = require_path("INFERGATE_CHAT_MODEL_DIR", "dir")
    gguf_path = require_path("INFERGATE_SMOLLM2_GGUF", "file")
    for f in ("model.onnx", "tokenizer.json", "config.json", "generation_config.json", "tokenizer_config.json"):
        if not os.path.isfile(os.path.join(model_dir, f)):
            raise AssertionError(f"{model_dir} lacks {f}: rerun scripts/setup-runner.sh")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1  # as the runner on this 2-core machine
    _state["sess"] = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), so,
                                          providers=["CPUExecutionProvider"])
    _state["tok"] = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    _state["dir"] = model_dir
    _state["ref"] = SmolLM2(gguf_path)
    _state["ref_cache"] = {}


def ref_forward(ids):
    key = tuple(ids)
    if key not in _state["ref_cache"]:
        _state["ref_cache"][key] = _state["ref"].forward(list(ids))
    return _state["ref_cache"][key]


class Model:
    """Thin driver for the ONNX decoder: left-padded batches and a KV cache."""

    def __init__(self):
        self.s = _state["sess"]
        self.out_names = [o.name for o in self.s.get_outputs()]
        cfg = load_json("config.json")
        self.L, self.kv, self.hd = cfg["num_hidden_layers"], cfg["num_key_value_heads"], cfg["head_dim"]
        self.pad = cfg["pad_token_id"]

    def prefill(self, rows: list[list[int]]):
        """Left-pads the rows; returns (logits [B, V], state)."""
        n = max(map(len, rows))
        ids = np.array([[self.pad] * (n - len(r)) + r for r in rows], np.int64)
        mask = np.array([[0] * (n - len(r)) + [1] * len(r) for r in rows], np.int64)
        past = {f"past_key_values.{i}.{k}": np.zeros((len(rows), self.kv, 0, self.hd), np.float32)
                for i in range(self.L) for k in ("key", "value")}
        return self._run(ids, mask, past)

    def step(self, state, next_ids: list[int]):
        mask = np.concatenate([state["mask"], np.ones((len(next_ids), 1), np.int64)], axis=1)
        past = {f"past_key_values.{i}.{k}": state["out"][f"present.{i}.{k}"]
                for i in range(self.L) for k in ("key", "value")}
        return self._run(np.array(next_ids, np.int64)[:, None], mask, past)

    def _run(self, ids, mask, past):
        # positions count real tokens only: 0..len-1 at real columns, 0 on pads
        pos_all = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
        feed = {"input_ids": ids, "attention_mask": mask, "position_ids": pos_all[:, -ids.shape[1]:], **past}
        out = dict(zip(self.out_names, self.s.run(None, feed)))
        return out["logits"][:, 0, :], {"mask": mask, "out": out}


class TestContract(unittest.TestCase):
    def test_io_names_and_shapes(self):
        s = _state["sess"]
        ins = {i.name: i for i in s.get_inputs()}
        outs = {o.name: o for o in s.get_outputs()}
        self.assertEqual(list(ins)[:3], ["input_ids", "attention_mask", "position_ids"])
        self.assertEqual(len(ins), 3 + 60)
        self.assertEqual(len(outs), 1 + 60)
        self.assertEqual(ins["past_key_values.29.value"].shape, ["batch", 3, "past_seq", 64])
        self.assertEqual(outs["logits"].shape, ["batch", 1, 49152])
        self.assertEqual(outs["present.0.key"].shape, ["batch", 3, "total_seq", 64])
        for name in ("input_ids", "attention_mask", "position_ids"):
            self.assertEqual(ins[name].type, "tensor(int64)")

    def test_config_files(self):
        cfg = load_json("config.json")
        for k, v in {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
                     "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                     "head_dim": 64, "vocab_size": 49152, "rope_theta": 100000.0, "rms_norm_eps": 1e-5,
                     "max_position_embeddings": 8192, "bos_token_id": 1, "eos_token_id": 2,
                     "pad_token_id": 2, "tie_word_embeddings": True}.items():
            self.assertEqual(cfg[k], v, k)
        gen = load_json("generation_config.json")
        self.assertIn(2, gen["eos_token_id"])
        tc = load_json("tokenizer_config.json")
        self.assertIn("<|im_start|>", tc["chat_template"])
        self.assertEqual((tc["eos_token"], tc["pad_token"], tc["model_max_length"]), ("<|im_end|>", "<|im_end|>", 8192))
        self.assertFalse(tc["add_bos_token"])
        self.assertEqual(tc["added_tokens_decoder"]["1"]["content"], "<|im_start|>")


class TestTokenizer(unittest.TestCase):
    def test_round_trip(self):
        tok = _state["tok"]
        for text in ["Hello, world!", "  spaces   and\ttabs\n\nnewlines ", "emoji 👋🏽🧑‍💻 ✨",
                     "naïve café — Größe — 東京 — Ελληνικά — עברית", "x = [i**2 for i in range(10)]  # ok",
                     "3.14159 and 1234567890", CHATML]:
            ids = tok.encode(text).ids
            self.assertEqual(tok.decode(ids, skip_special_tokens=False), text)

    def test_special_tokens_and_digits(self):
        tok = _state["tok"]
        self.assertEqual(tok.encode("<|endoftext|><|im_start|><|im_end|>").ids, [0, 1, 2])
        self.assertEqual(tok.encode("<|im_start|>user\n").ids[0], 1)
        self.assertEqual(len(tok.encode("12345").ids), 5)  # Digits(individual_digits)
        self.assertEqual(tok.encode("Hello").ids, tok.encode("Hello", add_special_tokens=True).ids)  # no BOS
        self.assertEqual(tok.get_vocab_size(), 49152)


class TestAgainstNumpy(unittest.TestCase):
    def test_last_logits_match_reference(self):
        m = Model()
        for p in PROMPTS:
            ids = _state["tok"].encode(p).ids
            got, _ = m.prefill([ids])
            want, _ = ref_forward(ids)
            diff = float(np.abs(got[0] - want).max())
            with self.subTest(prompt=p[:30], tokens=len(ids)):
                self.assertLessEqual(diff, LOGIT_TOL)
                self.assertEqual(int(got[0].argmax()), int(want.argmax()))

    def test_kv_cache_layout_is_hugging_face(self):
        # present.*.key holds the rotated keys in rotate-half (HF) order, [B, kv, T, D]
        ids = _state["tok"].encode(PROMPTS[0]).ids
        _, st = Model().prefill([ids])
        _, keys = ref_forward(ids)
        for layer in (0, 29):
            got = st["out"][f"present.{layer}.key"][0].transpose(1, 0, 2)  # [T, kv, D]
            want = SmolLM2.gguf_to_hf_order(keys[layer])
            self.assertLessEqual(float(np.abs(got - want).max()), LOGIT_TOL)

    def test_cached_decode_equals_recompute(self):
        m = Model()
        seq = _state["tok"].encode(CHATML).ids
        logits, st = m.prefill([seq])
        for _ in range(4):
            seq = seq + [int(logits[0].argmax())]
            logits, st = m.step(st, [seq[-1]])
            full, _ = m.prefill([seq])
            self.assertLessEqual(float(np.abs(logits[0] - full[0]).max()), SELF_TOL)
        # and the last step against the oracle (one numpy pass: they cost seconds)
        want, _ = ref_forward(seq)
        self.assertLessEqual(float(np.abs(logits[0] - want).max()), LOGIT_TOL)
        self.assertEqual(int(logits[0].argmax()), int(want.argmax()))

    def test_greedy_answer_is_sensible(self):
        # A wrong RoPE / head layout still gives finite logits but not this answer.
        m = Model()
        seq = _state["tok"].encode(CHATML).ids
        logits, st = m.prefill([seq])
        out = []
        for _ in range(8):
            out.append(int(logits[0].argmax()))
            logits, st = m.step(st, [out[-1]])
        self.assertIn("Paris", _state["tok"].decode(out))


class TestBatching(unittest.TestCase):
    def test_left_padded_batch_equals_alone(self):
        m = Model()
        a = _state["tok"].encode(PROMPTS[4]).ids
        b = _state["tok"].encode(PROMPTS[0]).ids
        self.assertGreater(len(a), len(b) + 5)
        batch, st = m.prefill([a, b])
        alone = [m.prefill([a]), m.prefill([b])]
        for row in range(2):
            self.assertLessEqual(float(np.abs(batch[row] - alone[row][0][0]).max()), SELF_TOL)
        self.assertTrue(all(np.isfinite(st["out"]["present.29.value"]).flat))  # pad rows stay finite
        # three cached steps, batched vs alone
        nxt = [int(batch[0].argmax()), int(batch[1].argmax())]
        singles = [alone[0][1], alone[1][1]]
        for _ in range(3):
            batch, st = m.step(st, nxt)
            for row in range(2):
                one, singles[row] = m.step(singles[row], [nxt[row]])
                self.assertLessEqual(float(np.abs(batch[row] - one[0]).max()), SELF_TOL)
            nxt = [int(batch[0].argmax()), int(batch[1].argmax())]

    def test_batched_rows_match_reference(self):
        m = Model()
        rows = [_state["tok"].encode(p).ids for p in PROMPTS[:3]]
        got, _ = m.prefill(rows)
        for row, ids in enumerate(rows):
            want, _ = ref_forward(ids)
            self.assertLessEqual(float(np.abs(got[row] - want).max()), LOGIT_TOL)


if __name__ == "__main__":
    unittest.main()
