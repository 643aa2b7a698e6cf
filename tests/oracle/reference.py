"""Plain numpy forward passes used as oracles for the converted ONNX models.

Written straight from the architectures, sharing no code with tools/convert/:
- SmolLM2 reads the GGUF with `gguf`, keeps llama.cpp's tensor layout (Q/K rows in
  GGUF order) and rotates ADJACENT pairs (x[2i], x[2i+1]) the way llama.cpp's "normal"
  RoPE does for the llama architecture. The converter instead unpermutes Q/K to the
  Hugging Face layout and uses rotate-half RoPE, so agreement checks that conversion.
- MiniLM reads model.safetensors from the sentence-transformers zip and runs BertModel
  (post-LayerNorm, exact-erf GELU), then mean pooling and L2 normalization.
Activations are float64, so the oracle's own rounding error is negligible next to the
fp32 graph's.
"""

from __future__ import annotations

import io
import math
import os
import zipfile

import numpy as np

ENV_HELP = ("run `make setup` (scripts/setup-runner.sh downloads and converts the models), "
            "then `source scripts/runner-env.sh`")


def require_path(var: str, kind: str = "path") -> str:
    """The path in env var `var`; raises (a test failure, not a skip) when unusable."""
    p = os.environ.get(var)
    if not p:
        raise AssertionError(f"{var} is not set: {ENV_HELP}")
    if kind == "dir" and not os.path.isdir(p):
        raise AssertionError(f"{var}={p} is not a directory: {ENV_HELP}")
    if kind == "file" and not os.path.isfile(p):
        raise AssertionError(f"{var}={p} is not a file: {ENV_HELP}")
    return p


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class SmolLM2:
    """llama.cpp-style reference: one sequence, full recomputation, no cache."""

    def __init__(self, gguf_path: str) -> None:
        import gguf

        r = gguf.GGUFReader(gguf_path)

        def meta(key):
            return r.fields[key].contents()

        self.n_layer = int(meta("llama.block_count"))
        self.n_head = int(meta("llama.attention.head_count"))
        self.n_kv = int(meta("llama.attention.head_count_kv"))
        self.dim = int(meta("llama.embedding_length"))
        self.head_dim = self.dim // self.n_head
        self.eps = float(meta("llama.attention.layer_norm_rms_epsilon"))
        self.theta = float(meta("llama.rope.freq_base"))
        self.w: dict[str, np.ndarray] = {}
        for t in r.tensors:
            # dequantize -> [ne1, ne0] = [out, in]; float64 for the activations' sake
            self.w[t.name] = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)

    def rope_adjacent(self, x: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """llama.cpp LLAMA_ROPE_TYPE_NORM: rotate (x[2i], x[2i+1]) by pos * theta^(-2i/d)."""
        d = self.head_dim
        freq = self.theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)  # [d/2]
        ang = pos[:, None].astype(np.float64) * freq[None, :]  # [S, d/2]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]  # [S, 1, d/2]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * c - x1 * s
        out[..., 1::2] = x0 * s + x1 * c
        return out

    def forward(self, ids: list[int]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Last position's logits [vocab], and each layer's rotated K [S, n_kv, head_dim]
        in GGUF (interleaved) order."""
        w, S, D = self.w, len(ids), self.head_dim
        x = w["token_embd.weight"][np.asarray(ids)]  # [S, dim]
        pos = np.arange(S)
        causal = np.triu(np.full((S, S), -np.inf), k=1)
        keys = []
        for i in range(self.n_layer):
            b = f"blk.{i}."
            h = rms_norm(x, w[b + "attn_norm.weight"], self.eps)
            q = (h @ w[b + "attn_q.weight"].T).reshape(S, self.n_head, D)
            k = (h @ w[b + "attn_k.weight"].T).reshape(S, self.n_kv, D)
            v = (h @ w[b + "attn_v.weight"].T).reshape(S, self.n_kv, D)
            q, k = self.rope_adjacent(q, pos), self.rope_adjacent(k, pos)
            keys.append(k)
            out = np.empty((S, self.n_head, D))
            for hd in range(self.n_head):
                kv = hd // (self.n_head // self.n_kv)  # consecutive query heads share a KV head
                att = softmax(q[:, hd] @ k[:, kv].T / math.sqrt(D) + causal)
                out[:, hd] = att @ v[:, kv]
            x = x + out.reshape(S, -1) @ w[b + "attn_output.weight"].T
            h = rms_norm(x, w[b + "ffn_norm.weight"], self.eps)
            gate = h @ w[b + "ffn_gate.weight"].T
            up = h @ w[b + "ffn_up.weight"].T
            x = x + (gate / (1.0 + np.exp(-gate)) * up) @ w[b + "ffn_down.weight"].T
        last = rms_norm(x[-1], w["output_norm.weight"], self.eps)
        return w["token_embd.weight"] @ last, keys  # tied head: token_embd is the output

    @staticmethod
    def gguf_to_hf_order(k: np.ndarray) -> np.ndarray:
        """[.., D] interleaved (x0, x32, x1, x33, ...) -> rotate-half order (x0..x31, x32..x63)."""
        return np.concatenate([k[..., 0::2], k[..., 1::2]], axis=-1)


class MiniLM:
    """BertModel + mean pooling + L2 normalization, from the original safetensors."""

    def __init__(self, zip_path: str) -> None:
        import json

        from safetensors.numpy import load

        with zipfile.ZipFile(zip_path) as z:
            if zip_path.endswith(".whl"):
                z = zipfile.ZipFile(io.BytesIO(z.read("all_minilm_l6_v2/model.zip")))
            self.w = {k: v.astype(np.float64) for k, v in load(z.read("model.safetensors")).items()}
            cfg = json.loads(z.read("config.json"))
        self.n_layer = cfg["num_hidden_layers"]
        self.n_head = cfg["num_attention_heads"]
        self.eps = cfg["layer_norm_eps"]

    def layer_norm(self, x, name):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def dense(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def hidden(self, ids: list[int]) -> np.ndarray:
        """last_hidden_state [S, hidden] of one unpadded sequence (token types 0)."""
        w, S = self.w, len(ids)
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:S]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = self.layer_norm(x, "embeddings.LayerNorm")
        H = x.shape[-1]
        D = H // self.n_head
        for i in range(self.n_layer):
            p = f"encoder.layer.{i}."
            q, k, v = (self.dense(x, p + f"attention.self.{n}").reshape(S, self.n_head, D).transpose(1, 0, 2)
                       for n in ("query", "key", "value"))
            ctx = softmax(q @ k.transpose(0, 2, 1) / math.sqrt(D)) @ v  # [heads, S, D]
            attn = self.dense(ctx.transpose(1, 0, 2).reshape(S, H), p + "attention.output.dense")
            x = self.layer_norm(attn + x, p + "attention.output.LayerNorm")
            h = self.dense(x, p + "intermediate.dense")
            h = 0.5 * h * (1.0 + np.vectorize(math.erf)(h / math.sqrt(2.0)))
            x = self.layer_norm(self.dense(h, p + "output.dense") + x, p + "output.LayerNorm")
        return x

    def embed(self, ids: list[int]) -> np.ndarray:
        v = self.hidden(ids).mean(axis=0)
        return v / np.linalg.norm(v)
