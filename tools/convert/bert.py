"""all-MiniLM-L6-v2 (BERT) safetensors -> ONNX encoder returning last_hidden_state.

Pooling and normalization (modules.json: mean over attention_mask, then L2) stay in
the runner, so the graph is the plain Hugging Face BertModel encoder. Rows are padded
on the RIGHT (the tokenizer's own padding direction): position ids are 0..S-1 for
every row, as in BertModel, and padded keys are masked out of the attention.
"""

from __future__ import annotations

import numpy as np

from .graph import BOOL, FLOAT, INT64, Graph

MASK_VALUE = -1e9


def build_graph(w: dict[str, np.ndarray], cfg: dict) -> Graph:
    H = int(cfg["hidden_size"])
    NH = int(cfg["num_attention_heads"])
    D = H // NH
    L = int(cfg["num_hidden_layers"])
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    act = cfg.get("hidden_act", "gelu")
    if act != "gelu":  # HF "gelu" is the exact erf form; others would need other graphs
        raise ValueError(f"unsupported hidden_act {act!r}")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("only absolute position embeddings are supported")

    g = Graph("minilm")
    ids = g.input("input_ids", INT64, ["batch", "seq"])
    am = g.input("attention_mask", INT64, ["batch", "seq"])
    tt = g.input("token_type_ids", INT64, ["batch", "seq"])
    g.output("last_hidden_state", FLOAT, ["batch", "seq", H])

    def f32(name: str) -> np.ndarray:
        return np.asarray(w[name], dtype=np.float32)

    def linear(x: str, prefix: str, names: list[str], out_name: str) -> str:
        # torch Linear stores [out, in]; MatMul wants [in, out]. Several are fused by
        # concatenating their outputs (one MatMul for Q, K and V).
        wt = np.concatenate([f32(f"{prefix}{n}.weight") for n in names], axis=0).T
        b = np.concatenate([f32(f"{prefix}{n}.bias") for n in names])
        y = g.op("MatMul", [x, g.init(f"{out_name}.weight", wt)])
        return g.op("Add", [y, g.init(f"{out_name}.bias", b)])

    def layer_norm(x: str, prefix: str) -> str:
        return g.op("LayerNormalization", [x, g.init(f"{prefix}.weight", f32(f"{prefix}.weight")),
                                           g.init(f"{prefix}.bias", f32(f"{prefix}.bias"))],
                    axis=-1, epsilon=eps)

    g.scope = "/embeddings"
    ax0 = g.i64("axis_0", [0])
    S0 = g.op("Squeeze", [g.op("Shape", [ids], start=1, end=2), ax0])
    pos = g.op("Unsqueeze", [g.op("Range", [g.i64("zero", 0), S0, g.i64("one", 1)]), ax0])  # [1, S]
    x = g.op("Gather", [g.init("embeddings.word_embeddings.weight", f32("embeddings.word_embeddings.weight")),
                        ids], axis=0)
    x = g.op("Add", [x, g.op("Gather", [g.init("embeddings.position_embeddings.weight",
                                              f32("embeddings.position_embeddings.weight")), pos], axis=0)])
    x = g.op("Add", [x, g.op("Gather", [g.init("embeddings.token_type_embeddings.weight",
                                              f32("embeddings.token_type_embeddings.weight")), tt], axis=0)])
    x = layer_norm(x, "embeddings.LayerNorm")

    g.scope = "/attn_bias"
    real = g.op("Unsqueeze", [g.op("Cast", [am], to=BOOL), g.i64("axes_1_2", [1, 2])])  # [B,1,1,S]
    bias = g.op("Where", [real, g.f32("zero_f", 0.0), g.f32("mask_value", MASK_VALUE)])

    shape_heads = g.i64("shape_heads", [0, 0, NH, D])
    shape_hidden = g.i64("shape_hidden", [0, 0, H])
    split = g.i64("split_qkv", [H, H, H])
    scale = g.f32("attn_scale", 1.0 / np.sqrt(D))
    inv_sqrt2 = g.f32("inv_sqrt2", 1.0 / np.sqrt(2.0))
    half, one_f = g.f32("half", 0.5), g.f32("one_f", 1.0)

    for i in range(L):
        p = f"encoder.layer.{i}."
        g.scope = f"/encoder/layer.{i}/attention"
        qkv = linear(x, p + "attention.self.", ["query", "key", "value"], p + "attention.self.qkv")
        q, k, v = g.op("Split", [qkv, split], n_out=3, axis=2)
        q, k, v = (g.op("Transpose", [g.op("Reshape", [t, shape_heads])], perm=[0, 2, 1, 3]) for t in (q, k, v))
        kt = g.op("Transpose", [k], perm=[0, 1, 3, 2])
        scores = g.op("Add", [g.op("MatMul", [g.op("Mul", [q, scale]), kt]), bias])
        probs = g.op("Softmax", [scores], axis=-1)
        ctx = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, shape_hidden])
        attn = linear(ctx, p + "attention.output.", ["dense"], p + "attention.output.dense")
        x = layer_norm(g.op("Add", [attn, x]), p + "attention.output.LayerNorm")

        g.scope = f"/encoder/layer.{i}/mlp"
        h = linear(x, p + "intermediate.", ["dense"], p + "intermediate.dense")
        # exact GELU: 0.5 * h * (1 + erf(h / sqrt 2)); ONNX Runtime fuses it to Gelu
        erf = g.op("Erf", [g.op("Mul", [h, inv_sqrt2])])
        h = g.op("Mul", [g.op("Mul", [h, half]), g.op("Add", [erf, one_f])])
        out = linear(h, p + "output.", ["dense"], p + "output.dense")
        out_ln = f"{p}output.LayerNorm"
        if i == L - 1:
            g.op("LayerNormalization", [g.op("Add", [out, x]), g.init(f"{out_ln}.weight", f32(f"{out_ln}.weight")),
                                        g.init(f"{out_ln}.bias", f32(f"{out_ln}.bias"))],
                 axis=-1, epsilon=eps, outputs=["last_hidden_state"])
        else:
            x = layer_norm(g.op("Add", [out, x]), out_ln)
    return g
