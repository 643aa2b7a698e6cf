"""The com.microsoft MatMulNBits forms `tools/convert_models.py --weights int4 / int4-fzp`
emit must run, with these exact semantics, on the onnxruntime CPU build the runner uses.

Both start from random GGUF-style Q4_1 blocks (w = d * q + m, 32 elements a block,
q[0..15] in the low nibbles and q[16..31] in the high nibbles of 16 bytes) repacked
the converter's way; the reference is x @ w.T in float64. No model files are needed.
"""

from __future__ import annotations

import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))

from convert import llama  # noqa: E402
from convert.graph import FLOAT, Graph  # noqa: E402

K, N = 96, 40  # 3 blocks per row


def gguf_q4_1(rng) -> tuple[np.ndarray, np.ndarray]:
    """Random Q4_1 tensor bytes [N, K/32 * 20] and its float64 value [N, K]."""
    kb = K // 32
    d = rng.uniform(0.001, 0.05, (N, kb)).astype(np.float16)
    m = rng.uniform(-0.4, 0.0, (N, kb)).astype(np.float16)
    d[0, 0] = 0  # a constant block (d == 0) must survive too
    q = rng.integers(0, 16, (N, kb, 32)).astype(np.uint8)
    qs = (q[..., :16] | (q[..., 16:] << 4)).astype(np.uint8)
    raw = np.concatenate([d[..., None].view(np.uint8), m[..., None].view(np.uint8), qs], axis=-1)
    w = q * d.astype(np.float64)[..., None] + m.astype(np.float64)[..., None]
    return raw.reshape(N, -1), w.reshape(N, K)


class TestMatMulNBits(unittest.TestCase):
    def run_linear(self, mode: str, x: np.ndarray, wq) -> np.ndarray:
        import onnxruntime as ort

        g = Graph("t")
        a = g.input("x", FLOAT, ["b", "s", K])
        y = llama._linear(g, a, "lin", wq, mode)
        g.op("Identity", [y], outputs=["y"])
        g.output("y", FLOAT, ["b", "s", N])
        m = g.model(doc="", metadata={})
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return s.run(None, {"x": x})[0]

    def test_q4_1_blocks_are_kept(self):
        rng = np.random.default_rng(7)
        raw, w = gguf_q4_1(rng)
        for mode in ("int4", "int4-fzp"):
            for rows in (1, 5):  # one row and many take different kernels
                x = rng.standard_normal((2, rows, K)).astype(np.float32)
                got = self.run_linear(mode, x, llama.q4_1_blocks(raw, N, K))
                want = x.astype(np.float64) @ w.T
                with self.subTest(mode=mode, rows=rows):
                    self.assertLess(float(np.abs(got - want).max()), 1e-4)

    def test_unpermute_moves_whole_rows(self):
        rng = np.random.default_rng(8)
        raw, w = gguf_q4_1(rng)
        q = llama.q4_1_blocks(raw, N, K)
        q.permute_rows(N // 8)  # 5 "heads" of 8 rows
        x = rng.standard_normal((1, 1, K)).astype(np.float32)
        got = self.run_linear("int4", x, q)
        want = x.astype(np.float64) @ llama.unpermute_rows(w, N // 8).T
        self.assertLess(float(np.abs(got - want).max()), 1e-4)


if __name__ == "__main__":
    unittest.main()
