"""SmolLM2 (llama architecture) GGUF -> ONNX decoder-with-past.

Weights: every quantized GGUF tensor is dequantized with the `gguf` package (fp32, the
default). With weights="int4" / "int4-fzp" the Q4_1 blocks are instead repacked bit for
bit into com.microsoft MatMulNBits (see _linear); the tied Q8_0 embedding / LM head and
the norms stay fp32 either way.

RoPE layout. llama.cpp's converter permutes the rows of attn_q / attn_k inside each
head so that its "normal" RoPE, which rotates ADJACENT pairs (x[2i], x[2i+1]), gives
the same result as Hugging Face's rotate-half RoPE on the unpermuted weights (pairs
(x[i], x[i+32])). We undo that permutation here and use rotate-half, so the graph and
its KV cache (present.*.key) have exactly the Hugging Face layout. The oracle test
(tests/oracle/) checks this against a numpy forward pass that keeps the GGUF order and
rotates adjacent pairs the way llama.cpp does; attention scores are invariant under
the same permutation of q and k, so the two must give the same logits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .graph import BOOL, FLOAT, INT64, MS_DOMAIN, Graph

MASK_VALUE = -1e9  # additive bias: finite, so a fully padded query row stays NaN-free
Q4_BLOCK = 32  # elements per Q4_1 block (and MatMulNBits block_size)


@dataclass(frozen=True)
class HParams:
    n_layer: int
    hidden: int
    n_head: int
    n_kv: int
    head_dim: int
    ffn: int
    vocab: int
    rope_theta: float
    rms_eps: float
    context: int


def field(reader, key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        if default is not None:
            return default
        raise KeyError(f"GGUF has no metadata key {key!r}")
    return f.contents()


def read_hparams(reader) -> HParams:
    arch = field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"expected a llama GGUF, got architecture {arch!r}")
    a = "llama."
    hidden = int(field(reader, a + "embedding_length"))
    n_head = int(field(reader, a + "attention.head_count"))
    head_dim = int(field(reader, a + "rope.dimension_count", hidden // n_head))
    if head_dim * n_head != hidden:
        raise ValueError("head_dim * heads != hidden: not a plain llama layout")
    return HParams(
        n_layer=int(field(reader, a + "block_count")),
        hidden=hidden,
        n_head=n_head,
        n_kv=int(field(reader, a + "attention.head_count_kv", n_head)),
        head_dim=head_dim,
        ffn=int(field(reader, a + "feed_forward_length")),
        vocab=int(field(reader, a + "vocab_size", len(field(reader, "tokenizer.ggml.tokens")))),
        rope_theta=float(field(reader, a + "rope.freq_base", 10000.0)),
        # stored as float32 1e-5 (9.99999974738e-06): keep that exact value
        rms_eps=float(field(reader, a + "attention.layer_norm_rms_epsilon")),
        context=int(field(reader, a + "context_length")),
    )


# ----------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------


def unpermute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's convert_hf_to_gguf `permute` on the rows (axis 0).

    llama.cpp stores HF row h*D + a*D/2 + i at h*D + 2*i + a. Works for dense [rows, in]
    and for packed blocks [rows, blocks, bytes] alike: whole rows move.
    """
    rows = w.shape[0]
    d = rows // n_head
    return w.reshape(n_head, d // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@dataclass
class Q4Weight:
    """One Q4_1 linear layer, blocks kept bit-exact (N = out features, K = in features)."""

    packed: np.ndarray  # uint8 [N, K/32, 16]; byte j = element 2j (low) | 2j+1 (high)
    scales: np.ndarray  # float32 [N, K/32]: the blocks' d
    mins: np.ndarray  # float32 [N, K/32]: the blocks' m; w = d * q + m
    n: int
    k: int

    def permute_rows(self, heads: int) -> None:
        self.packed, self.scales, self.mins = (unpermute_rows(a, heads) for a in (self.packed, self.scales, self.mins))


def q4_1_blocks(raw: np.ndarray, rows: int, cols: int) -> Q4Weight:
    """Repack GGUF Q4_1 blocks (fp16 d, fp16 m, 16 bytes of nibbles) for MatMulNBits.

    GGUF Q4_1: w[i] = d * q[i] + m, with q[0..15] in the low nibbles of qs[0..15] and
    q[16..31] in their high nibbles; MatMulNBits wants element 2j in the low nibble of
    byte j and 2j+1 in its high nibble.
    """
    kb = cols // Q4_BLOCK
    blocks = np.asarray(raw, dtype=np.uint8).reshape(rows, kb, 20)
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    m = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
    qs = blocks[..., 4:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)  # [rows, kb, 32] in element order
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    return Q4Weight(packed=np.ascontiguousarray(packed), scales=d, mins=m, n=rows, k=cols)


def concat_q4(parts: list[Q4Weight]) -> Q4Weight:
    """Stack several layers' output rows (fused QKV / gate-up): blocks run along K."""
    k = parts[0].k
    assert all(p.k == k for p in parts)
    return Q4Weight(
        packed=np.concatenate([p.packed for p in parts], axis=0),
        scales=np.concatenate([p.scales for p in parts], axis=0),
        mins=np.concatenate([p.mins for p in parts], axis=0),
        n=sum(p.n for p in parts),
        k=k,
    )


class GGUFWeights:
    """Reads the GGUF's tensors by name, dequantized (fp32) or as Q4 blocks."""

    def __init__(self, reader, hp: HParams, weights: str) -> None:
        import gguf

        self.gguf = gguf
        self.hp = hp
        self.weights = weights
        self.tensors = {t.name: t for t in reader.tensors}

    def dense(self, name: str) -> np.ndarray:
        """[out, in] float32 (the GGUF's ne1 x ne0), like a torch Linear weight."""
        t = self.tensors[name]
        w = self.gguf.quants.dequantize(t.data, t.tensor_type)
        return np.ascontiguousarray(w, dtype=np.float32)

    def linear(self, names: list[str], unpermute: list[int | None]):
        """A fused linear layer over several GGUF tensors (concatenated outputs).

        Returns float32 [in, out] for MatMul (fp32 mode) or a Q4Weight (int4 mode;
        only when every part is Q4_1, else it falls back to fp32).
        """
        Q41 = self.gguf.GGMLQuantizationType.Q4_1
        ts = [self.tensors[n] for n in names]
        if self.weights.startswith("int4") and all(t.tensor_type == Q41 for t in ts):
            parts = []
            for t, heads in zip(ts, unpermute):
                cols, rows = (int(x) for x in t.shape)  # GGUF shape is [ne0=in, ne1=out]
                q = q4_1_blocks(t.data, rows, cols)
                if heads:
                    q.permute_rows(heads)
                parts.append(q)
            return concat_q4(parts)
        mats = []
        for n, heads in zip(names, unpermute):
            w = self.dense(n)
            mats.append(unpermute_rows(w, heads) if heads else w)
        return np.ascontiguousarray(np.concatenate(mats, axis=0).T)


# ----------------------------------------------------------------------------------------
# Graph
# ----------------------------------------------------------------------------------------


def _linear(g: Graph, x: str, name: str, w, mode: str) -> str:
    if not isinstance(w, Q4Weight):
        return g.op("MatMul", [x, g.init(f"{name}.weight", w)])
    nbits = dict(domain=MS_DOMAIN, K=w.k, N=w.n, bits=4, block_size=Q4_BLOCK)
    if mode == "int4-fzp":
        # w = (q - zp) * d with float zp = -m/d. Exact, but ONNX Runtime 1.31's CPU
        # kernel has no fast path for float zero points (it dequantizes every call).
        # A block with d == 0 is the constant m: store it as (1 - 0) * m.
        flat = w.scales == 0
        packed = np.where(flat[..., None], np.uint8(0x11), w.packed)
        d = np.where(flat, w.mins, w.scales)
        zp = np.divide(-w.mins, w.scales, out=np.zeros_like(w.mins), where=~flat)
        b = g.init(f"{name}.weight_Q4", packed)
        s = g.init(f"{name}.weight_scales", d.reshape(-1))
        z = g.init(f"{name}.weight_zero_points", zp.reshape(-1).astype(np.float32))
        return g.op("MatMulNBits", [x, b, s, z], accuracy_level=0, **nbits)
    b = g.init(f"{name}.weight_Q4", w.packed)
    s = g.init(f"{name}.weight_scales", w.scales.reshape(-1))
    # w = d * q + m split in two exact parts: MatMulNBits with a zero uint8 zero point
    # (the fast, prepacked path) for d * q, plus the mins times each block's input sum:
    # sum_k x_k m_b(k) = sum_b m_b (sum_{k in b} x_k), a [.., K/32] x [K/32, N] MatMul.
    # accuracy_level 0 keeps fp32 activations (4 would quantize them to int8).
    kb = w.k // Q4_BLOCK
    z = g.init(f"{name}.weight_zero_points", np.zeros(w.n * ((kb + 1) // 2), np.uint8))
    y = g.op("MatMulNBits", [x, b, s, z], accuracy_level=0, **nbits)
    blocks = g.op("Reshape", [x, g.i64(f"shape_blocks_{w.k}", [0, 0, kb, Q4_BLOCK])])
    xs = g.op("ReduceSum", [blocks, g.i64("axis_last", [-1])], keepdims=0)  # [B, S, K/32]
    mins = g.init(f"{name}.weight_mins", np.ascontiguousarray(w.mins.T))  # [K/32, N]
    return g.op("Add", [y, g.op("MatMul", [xs, mins])])


def _rms_norm(g: Graph, x: str, w: str, eps: float) -> str:
    # Pow -> ReduceMean -> Add -> Sqrt -> Div -> Mul is the pattern ONNX Runtime fuses
    # into one SimplifiedLayerNormalization kernel at load time.
    sq = g.op("Pow", [x, g.f32("two", 2.0)])
    var = g.op("ReduceMean", [sq], axes=[-1], keepdims=1)
    std = g.op("Sqrt", [g.op("Add", [var, g.f32("rms_eps", eps)])])
    return g.op("Mul", [g.op("Div", [x, std]), w])


def _rope(g: Graph, x: str, cos: str, sin_signed: str, half: int) -> str:
    """x * cos + rotate_half(x) * sin, with rotate_half(x) = [-x2, x1].

    sin_signed is [-sin, sin], so rotate_half(x) * sin == [x2, x1] * sin_signed and no
    Neg is needed per layer.
    """
    x1, x2 = g.op("Split", [x, g.i64("rope_split", [half, half])], n_out=2, axis=-1)
    rot = g.op("Concat", [x2, x1], axis=-1)
    return g.op("Add", [g.op("Mul", [x, cos]), g.op("Mul", [rot, sin_signed])])


def build_graph(hp: HParams, W: GGUFWeights) -> Graph:
    g = Graph("smollm2")
    H, D, NH, KV, F = hp.hidden, hp.head_dim, hp.n_head, hp.n_kv, hp.ffn
    G = NH // KV  # query heads per KV head
    assert G * KV == NH

    ids = g.input("input_ids", INT64, ["batch", "seq"])
    am = g.input("attention_mask", INT64, ["batch", "total_seq"])
    pos = g.input("position_ids", INT64, ["batch", "seq"])
    past = []
    for i in range(hp.n_layer):
        past.append((g.input(f"past_key_values.{i}.key", FLOAT, ["batch", KV, "past_seq", D]),
                     g.input(f"past_key_values.{i}.value", FLOAT, ["batch", KV, "past_seq", D])))
    g.output("logits", FLOAT, ["batch", 1, hp.vocab])
    for i in range(hp.n_layer):
        g.output(f"present.{i}.key", FLOAT, ["batch", KV, "total_seq", D])
        g.output(f"present.{i}.value", FLOAT, ["batch", KV, "total_seq", D])

    # One [V, H] matrix serves the embedding Gather and the tied LM head (Gemm transB).
    emb = g.init("model.embed_tokens.weight", W.dense("token_embd.weight"))
    g.scope = "/model/embed_tokens"
    x = g.op("Gather", [emb, ids], axis=0)

    # RoPE tables from position_ids, once for all layers: [B, 1, S, D].
    g.scope = "/model/rotary_emb"
    inv = 1.0 / (hp.rope_theta ** (np.arange(0, D, 2, dtype=np.float64) / D))
    inv_full = g.f32("rope_inv_freq", np.concatenate([inv, inv]).astype(np.float32))
    sign = g.f32("rope_sin_sign", np.concatenate([-np.ones(D // 2), np.ones(D // 2)]).astype(np.float32))
    p = g.op("Unsqueeze", [g.op("Cast", [pos], to=FLOAT), g.i64("axis_last", [-1])])
    ang = g.op("Mul", [p, inv_full])  # [B, S, D] (each frequency twice)
    ax1 = g.i64("axis_1", [1])
    cos = g.op("Unsqueeze", [g.op("Cos", [ang]), ax1])
    sin_signed = g.op("Unsqueeze", [g.op("Mul", [g.op("Sin", [ang]), sign]), ax1])

    # Additive attention bias, once for all layers, shaped for the grouped attention
    # below: [B, 1, G*S, T]; row r is query r mod S (its absolute column P + r mod S).
    # Query at column c may see column j iff j <= c and attention_mask[j] == 1.
    g.scope = "/model/attn_bias"
    T = g.op("Shape", [am], start=1, end=2)
    S = g.op("Shape", [ids], start=1, end=2)
    ax0 = g.i64("axis_0", [0])
    T0 = g.op("Squeeze", [T, ax0])
    P0 = g.op("Squeeze", [g.op("Sub", [T, S]), ax0])
    zero, one = g.i64("zero", 0), g.i64("one", 1)
    q_col = g.op("Tile", [g.op("Range", [P0, T0, one]), g.i64("groups", [G])])  # [G*S]
    k_col = g.op("Range", [zero, T0, one])  # [T]
    causal = g.op("LessOrEqual", [g.op("Unsqueeze", [k_col, ax0]), g.op("Unsqueeze", [q_col, ax1])])
    real = g.op("Unsqueeze", [g.op("Cast", [am], to=BOOL), g.i64("axes_1_2", [1, 2])])  # [B,1,1,T]
    allowed = g.op("And", [causal, real])  # [B, 1, G*S, T]
    bias = g.op("Where", [allowed, g.f32("zero_f", 0.0), g.f32("mask_value", MASK_VALUE)])

    shape_q = g.i64("shape_heads_q", [0, 0, NH, D])
    shape_kv = g.i64("shape_heads_kv", [0, 0, KV, D])
    shape_grouped = g.i64("shape_grouped", [0, KV, -1, D])
    shape_ungrouped = g.i64("shape_ungrouped", [0, NH, -1, D])
    shape_hidden = g.i64("shape_hidden", [0, 0, H])
    split_qkv = g.i64("split_qkv", [NH * D, KV * D, KV * D])
    split_ffn = g.i64("split_gate_up", [F, F])
    scale = g.f32("attn_scale", 1.0 / np.sqrt(D))  # 1/8 for D=64: exact in fp32

    for i in range(hp.n_layer):
        pre = f"model.layers.{i}"
        blk = f"blk.{i}"
        g.scope = f"/model/layers.{i}/self_attn"
        h = _rms_norm(g, x, g.init(f"{pre}.input_layernorm.weight", W.dense(f"{blk}.attn_norm.weight")),
                      hp.rms_eps)
        wqkv = W.linear([f"{blk}.attn_q.weight", f"{blk}.attn_k.weight", f"{blk}.attn_v.weight"],
                        [NH, KV, None])
        q, k, v = g.op("Split", [_linear(g, h, f"{pre}.self_attn.qkv_proj", wqkv, W.weights), split_qkv],
                       n_out=3, axis=2)
        q = g.op("Transpose", [g.op("Reshape", [q, shape_q])], perm=[0, 2, 1, 3])  # [B, NH, S, D]
        k = g.op("Transpose", [g.op("Reshape", [k, shape_kv])], perm=[0, 2, 1, 3])  # [B, KV, S, D]
        v = g.op("Transpose", [g.op("Reshape", [v, shape_kv])], perm=[0, 2, 1, 3])
        q = _rope(g, q, cos, sin_signed, D // 2)
        k = _rope(g, k, cos, sin_signed, D // 2)
        pk, pv = past[i]
        k_all = g.op("Concat", [pk, k], axis=2, outputs=[f"present.{i}.key"])
        v_all = g.op("Concat", [pv, v], axis=2, outputs=[f"present.{i}.value"])
        # GQA without copying K/V: query heads kv*G .. kv*G+G-1 share KV head kv (HF's
        # repeat_kv order), so [B, NH, S, D] reshapes to [B, KV, G*S, D] and one batched
        # MatMul per KV head does the work of repeat_kv + attention.
        qg = g.op("Mul", [g.op("Reshape", [q, shape_grouped]), scale])
        scores = g.op("MatMul", [qg, g.op("Transpose", [k_all], perm=[0, 1, 3, 2])])  # [B,KV,G*S,T]
        probs = g.op("Softmax", [g.op("Add", [scores, bias])], axis=-1)
        ctx = g.op("Reshape", [g.op("MatMul", [probs, v_all]), shape_ungrouped])  # [B, NH, S, D]
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), shape_hidden])
        wo = W.linear([f"{blk}.attn_output.weight"], [None])
        x = g.op("Add", [x, _linear(g, ctx, f"{pre}.self_attn.o_proj", wo, W.weights)])

        g.scope = f"/model/layers.{i}/mlp"
        h = _rms_norm(g, x, g.init(f"{pre}.post_attention_layernorm.weight", W.dense(f"{blk}.ffn_norm.weight")),
                      hp.rms_eps)
        wgu = W.linear([f"{blk}.ffn_gate.weight", f"{blk}.ffn_up.weight"], [None, None])
        gate, up = g.op("Split", [_linear(g, h, f"{pre}.mlp.gate_up_proj", wgu, W.weights), split_ffn], n_out=2, axis=2)
        act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up])  # SiLU(gate) * up
        wd = W.linear([f"{blk}.ffn_down.weight"], [None])
        x = g.op("Add", [x, _linear(g, act, f"{pre}.mlp.down_proj", wd, W.weights)])

    # Only the last position's logits: rows are left-padded, so column -1 is always a
    # real token, and prefill never computes a [S, vocab] matrix.
    g.scope = "/model/lm_head"
    last = g.op("Gather", [x, g.i64("last", -1)], axis=1)  # [B, H]
    h = _rms_norm(g, last, g.init("model.norm.weight", W.dense("output_norm.weight")), hp.rms_eps)
    logits = g.op("Gemm", [h, emb], transB=1)  # [B, V]
    g.op("Unsqueeze", [logits, ax1], outputs=["logits"])
    return g


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
