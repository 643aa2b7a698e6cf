"""Oracle tests for the converted all-MiniLM-L6-v2 folder (INFERGATE_EMBED_MODEL_DIR).

The reference is a float64 numpy BertModel over the original model.safetensors
(INFERGATE_MINILM_ZIP), then mean pooling and L2 normalization as modules.json says.
The ONNX side gets the same pooling here (the runner does it). Tolerance: cosine
between the ONNX and numpy sentence embeddings >= 0.999 (measured 1 - cos < 1e-12;
hidden states within 1.3e-6).
"""

from __future__ import annotations

import json
import os
import unittest

import numpy as np

from reference import MiniLM, require_path

MIN_COSINE = 0.999

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "Two men pushed carts through the woods.",
    "Infergate batches requests from many clients before they reach the model.",
    "Ünïcödé, emoji 🚀 and numbers 12345 survive tokenization.",
]

_state: dict = {}


def setUpModule():
    import onnxruntime as ort
    from tokenizers import Tokenizer

    d = require_path("INFERGATE_EMBED_MODEL_DIR", "dir")
    zip_path = require_path("INFERGATE_MINILM_ZIP", "file")
    for f in ("model.onnx", "tokenizer.json", "config.json", "modules.json", "1_Pooling/config.json",
              "sentence_bert_config.json"):
        if not os.path.isfile(os.path.join(d, f)):
            raise AssertionError(f"{d} lacks {f}: rerun scripts/setup-runner.sh")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    _state["sess"] = ort.InferenceSession(os.path.join(d, "model.onnx"), so, providers=["CPUExecutionProvider"])
    _state["tok"] = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    _state["tok"].no_padding()
    # as shipped: the file pads every row to a fixed 128 (and truncates there)
    _state["tok_file"] = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    _state["dir"] = d
    _state["ref"] = MiniLM(zip_path)


def onnx_embed(texts: list[str], padding: str = "longest") -> np.ndarray:
    """Right-padded batch -> mean over attention_mask -> L2 normalize (the runner's job)."""
    if padding == "longest":
        enc = _state["tok"].encode_batch(texts)
        n = max(len(e.ids) for e in enc)
        ids = np.array([e.ids + [0] * (n - len(e.ids)) for e in enc], np.int64)
        mask = np.array([e.attention_mask + [0] * (n - len(e.ids)) for e in enc], np.int64)
        types = np.zeros_like(ids)
    else:  # the tokenizer.json's own padding
        enc = _state["tok_file"].encode_batch(texts)
        ids = np.array([e.ids for e in enc], np.int64)
        mask = np.array([e.attention_mask for e in enc], np.int64)
        types = np.array([e.type_ids for e in enc], np.int64)
    h = _state["sess"].run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask,
                                                   "token_type_ids": types})[0]
    v = (h * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def ref_embed(text: str) -> np.ndarray:
    cache = _state.setdefault("ref_cache", {})
    if text not in cache:
        cache[text] = _state["ref"].embed(_state["tok"].encode(text).ids)
    return cache[text]


class TestMiniLM(unittest.TestCase):
    def test_contract(self):
        s = _state["sess"]
        self.assertEqual([i.name for i in s.get_inputs()], ["input_ids", "attention_mask", "token_type_ids"])
        self.assertEqual([o.name for o in s.get_outputs()], ["last_hidden_state"])
        self.assertEqual(s.get_outputs()[0].shape, ["batch", "seq", 384])
        with open(os.path.join(_state["dir"], "modules.json"), encoding="utf-8") as f:
            modules = json.load(f)
        self.assertEqual([m["type"].rsplit(".", 1)[-1] for m in modules], ["Transformer", "Pooling", "Normalize"])
        with open(os.path.join(_state["dir"], "1_Pooling", "config.json"), encoding="utf-8") as f:
            pooling = json.load(f)
        self.assertTrue(pooling["pooling_mode_mean_tokens"])

    def test_batched_padded_matches_reference(self):
        for padding in ("longest", "tokenizer"):
            got = onnx_embed(SENTENCES, padding)
            for row, text in enumerate(SENTENCES):
                cos = float(got[row] @ ref_embed(text))
                with self.subTest(padding=padding, text=text):
                    self.assertGreaterEqual(cos, MIN_COSINE)

    def test_hidden_state_matches_reference(self):
        ids = _state["tok"].encode(SENTENCES[3]).ids
        h = _state["sess"].run(None, {"input_ids": np.array([ids]), "attention_mask": np.ones((1, len(ids)), np.int64),
                                      "token_type_ids": np.zeros((1, len(ids)), np.int64)})[0][0]
        self.assertLessEqual(float(np.abs(h - _state["ref"].hidden(ids)).max()), 1e-4)

    def test_semantic_sanity(self):
        e = onnx_embed(SENTENCES[:3])
        self.assertGreater(float(e[0] @ e[1]), float(e[0] @ e[2]) + 0.2)


if __name__ == "__main__":
    unittest.main()
