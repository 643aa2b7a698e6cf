#!/usr/bin/env python3
"""Speed of converted SmolLM2 folders with onnxruntime-python on the CPU.

  python tools/bench_smollm2.py DIR [DIR ...] [--threads 1] [--gguf PATH]

For each folder: model.onnx size, session load time, prefill of a 128-token prompt,
and decode time per step with a KV cache of ~100 tokens at batch 1 and batch 16 (the
median over the steps; per-token = per-step / batch). With --gguf, also the largest
last-position logit difference from the float64 numpy oracle (tests/oracle) over a
few prompts. Used to choose the default weight format (tools/README.md).

Times are process CPU time (time.process_time), not wall time: with one intra-op
thread ONNX Runtime computes on the calling thread, and CPU time stays meaningful on
a machine that other jobs keep busy. --wall switches to wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

clock = time.process_time


def load(path: str, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    t = clock()
    s = ort.InferenceSession(os.path.join(path, "model.onnx"), so, providers=["CPUExecutionProvider"])
    return s, clock() - t


class Runner:
    def __init__(self, sess, cfg):
        self.s = sess
        self.names = [o.name for o in sess.get_outputs()]
        self.L, self.kv, self.hd = cfg["num_hidden_layers"], cfg["num_key_value_heads"], cfg["head_dim"]

    def run(self, ids, past=None, past_len=0):
        b, n = ids.shape
        feed = {"input_ids": ids, "attention_mask": np.ones((b, past_len + n), np.int64),
                "position_ids": np.broadcast_to(np.arange(past_len, past_len + n), (b, n)).astype(np.int64)}
        for i in range(self.L):
            for k in ("key", "value"):
                feed[f"past_key_values.{i}.{k}"] = (past[f"present.{i}.{k}"] if past is not None
                                                    else np.zeros((b, self.kv, 0, self.hd), np.float32))
        out = dict(zip(self.names, self.s.run(None, feed)))
        return out["logits"], out

    def decode_ms(self, batch: int, past_len: int, steps: int) -> float:
        rng = np.random.default_rng(0)
        ids = rng.integers(100, 40000, (batch, past_len)).astype(np.int64)
        logits, past = self.run(ids)
        times = []
        for k in range(steps):
            nxt = logits[:, 0].argmax(-1)[:, None].astype(np.int64)
            t = clock()
            logits, past = self.run(nxt, past, past_len + k)
            times.append(clock() - t)
        return statistics.median(times) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--gguf", help="also report the max logit difference from the numpy oracle")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--wall", action="store_true", help="wall-clock instead of CPU time")
    args = ap.parse_args()
    if args.wall:
        global clock
        clock = time.perf_counter

    ref = None
    if args.gguf:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "oracle"))
        from reference import SmolLM2

        ref = SmolLM2(args.gguf)
    rows = []
    for d in args.dirs:
        with open(os.path.join(d, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        sess, load_s = load(d, args.threads)
        r = Runner(sess, cfg)
        prompt = np.random.default_rng(1).integers(100, 40000, (1, 128)).astype(np.int64)
        r.run(prompt)  # warm-up
        pre = []
        for _ in range(args.repeat):
            t = clock()
            r.run(prompt)
            pre.append(clock() - t)
        row = {
            "model": d,
            "weights": cfg.get("infergate", {}).get("weights", "?"),
            "size_mb": os.path.getsize(os.path.join(d, "model.onnx")) / 1e6,
            "load_s": load_s,
            "prefill128_ms": min(pre) * 1e3,
            "decode_b1_ms": r.decode_ms(1, 100, 4 * args.repeat),
            "decode_b16_ms": r.decode_ms(16, 100, 2 * args.repeat),
        }
        if ref is not None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
            diffs = []
            for p in ["The capital of France is",
                      "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
                      "def fibonacci(n):\n    "]:
                ids = tok.encode(p).ids
                got, _ = r.run(np.array([ids], np.int64))
                want, _ = ref.forward(ids)
                diffs.append(float(np.abs(got[0, 0] - want).max()))
                row.setdefault("argmax_equal", True)
                row["argmax_equal"] &= int(got[0, 0].argmax()) == int(want.argmax())
            row["max_logit_diff"] = max(diffs)
        rows.append(row)
        print(json.dumps(row), flush=True)
        del sess, r

    print("\n| weights | model.onnx | load | prefill 128 tok | decode b=1 (ms/tok) | decode b=16 (ms/step, ms/tok) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['weights']} | {row['size_mb']:.0f} MB | {row['load_s']:.2f} s | {row['prefill128_ms']:.0f} ms "
              f"| {row['decode_b1_ms']:.1f} | {row['decode_b16_ms']:.0f}, {row['decode_b16_ms'] / 16:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
