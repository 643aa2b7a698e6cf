"""Greedy agreement between llama.cpp on the SmolLM2 GGUF and the converted ONNX folder.

    source scripts/runner-env.sh
    "$INFERGATE_PYTHON" -m unittest discover -s tests/oracle -p 'test_llamacpp_*' -v

Both sides start from the same prompt token ids (llama.cpp's tokenization) and decode
greedily (argmax) for N_TOKENS tokens each, never stopping at EOS, on 12 fixed prompts
(6 plain text, 6 ChatML chat prompts):
- llama.cpp: `llama-cpp-python` on $INFERGATE_SMOLLM2_GGUF, run by
  tests/oracle/llamacpp_greedy.py under $INFERGATE_LLAMA_PYTHON (llama.cpp's own venv,
  a subprocess because this test runs under the project venv);
- ONNX: onnxruntime-python on $INFERGATE_CHAT_MODEL_DIR/model.onnx with a KV-cache loop
  over the decoder contract (input_ids / attention_mask / position_ids / past_key_values.*
  in, last-position logits / present.* out), batch 1.
The table printed per prompt shows how many leading tokens agree and, at the first
difference, each side's token and how far the ONNX model ranks llama.cpp's token below
its own (the "ONNX gap", in logits).

Where the gaps come from: llama.cpp's CPU backend quantizes the activations to 8 bits
(Q8_0 / Q8_1 blocks) before every dot product with Q4_1 or Q8_0 weights, and keeps the KV
cache in fp16, while the ONNX model runs fp32 matmuls on the dequantized weights (the same
weight values, exactly). Measured on the first step of these prompts, the ONNX logits are
within 5e-5 of a float64 numpy forward pass (tests/oracle/reference.py), whereas the Q4_1
llama.cpp logits are 0.1-0.8 away on the top candidates (RMS 0.1-0.4 over the vocabulary).
Wherever the two best candidates are nearly tied the argmax can then flip, and after a
flip the continuations diverge for good. Systematic conversion errors (a wrong RoPE
layout, a missing norm, a wrong KV head mapping) show up instead as divergence on most
prompts, early, where the ONNX model prefers its token by a wide margin.

Hence two tests with two pass rules:
- test_greedy_agreement_fp32_weights: llama.cpp on the GGUF dequantized to fp32 by
  llama.cpp's own quantizer (LLAMA_FTYPE_ALL_F32, into a temporary file): no activation
  quantization. PASS RULE: at least 75% of the prompts (9 of 12) agree on all N_TOKENS
  tokens. (Measured: 12 of 12.)
- test_greedy_agreement_q4_1: llama.cpp on the Q4_1 GGUF as shipped. Full agreement on
  75% of the prompts is out of reach here (measured: 4 of 12; the chat prompts' first
  token alone is a near tie at margins 0.03-0.11). PASS RULE: every prompt either agrees on
  all N_TOKENS tokens or first differs at a near tie, where the ONNX model ranks
  llama.cpp's token at most NEAR_TIE_LOGITS (1.0) below its own; the full-agreement rate
  is printed with the table.
A third test checks that the folder's tokenizer.json (python `tokenizers`) encodes every
prompt to exactly llama.cpp's ids, so the runner sees the same prompts.

Missing environment variables or paths fail the tests (they never skip): run
`make setup`, then `source scripts/runner-env.sh`.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

N_TOKENS = 16
MIN_FULL_AGREEMENT = 0.75
NEAR_TIE_LOGITS = 1.0
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def chatml(user: str, system: str = SYSTEM) -> str:
    return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            "<|im_start|>assistant\n")


PROMPTS: list[tuple[str, str]] = [
    ("text", "Once upon a time there was"),
    ("text", "The quick brown fox jumps over the lazy dog. The lazy dog"),
    ("text", "The capital of France is"),
    ("text", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"),
    ("text", "Water boils at 100 degrees Celsius. At high altitude, water boils at"),
    ("text", "1, 2, 3, 4, 5,"),
    ("chat", chatml("What is the capital of France?")),
    ("chat", chatml("Write a haiku about the sea.")),
    ("chat", chatml("Explain what a CPU does in one sentence.")),
    ("chat", chatml("List three primary colors.")),
    ("chat", chatml("Hi!")),
    ("chat", chatml("Translate 'good morning' into Spanish.")),
]

ENV_HELP = "run `make setup` (scripts/setup-runner.sh), then `source scripts/runner-env.sh`"
HERE = os.path.dirname(os.path.abspath(__file__))


def require(var: str, kind: str) -> str:
    """The path in env var `var`; an AssertionError (a failure, not a skip) when unusable."""
    p = os.environ.get(var)
    if not p:
        raise AssertionError(f"{var} is not set: {ENV_HELP}")
    ok = {"dir": os.path.isdir, "file": os.path.isfile,
          "exe": lambda x: os.path.isfile(x) and os.access(x, os.X_OK)}[kind](p)
    if not ok:
        raise AssertionError(f"{var}={p} is not an existing {kind}: {ENV_HELP}")
    return p


def run_llama_cpp(python: str, request: dict) -> dict:
    p = subprocess.run([python, os.path.join(HERE, "llamacpp_greedy.py")], input=json.dumps(request), text=True,
                       capture_output=True, timeout=900)
    if p.returncode != 0:
        raise AssertionError(f"llamacpp_greedy.py failed (exit {p.returncode}):\n{p.stderr[-4000:]}")
    return json.loads(p.stdout)


class OnnxGreedy:
    """Batch-1 greedy decode with the KV cache over the folder's decoder contract."""

    def __init__(self, model_dir: str, threads: int) -> None:
        import numpy as np
        import onnxruntime as ort

        self.np = np
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        self.layers = cfg["num_hidden_layers"]
        self.kv_heads = cfg.get("num_key_value_heads", cfg.get("num_attention_heads"))
        self.head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), so,
                                         providers=["CPUExecutionProvider"])
        self.out_names = [o.name for o in self.sess.get_outputs()]

    def generate(self, ids: list[int], n: int) -> tuple[list[int], list]:
        """n greedy tokens and the logits (float32 [vocab]) each was chosen from."""
        np = self.np
        past = {f"past_key_values.{i}.{kv}": np.zeros((1, self.kv_heads, 0, self.head_dim), np.float32)
                for i in range(self.layers) for kv in ("key", "value")}
        cur, total = list(ids), len(ids)
        tokens, logits_per_step = [], []
        for _ in range(n):
            start = total - len(cur)
            feeds = {"input_ids": np.asarray([cur], np.int64),
                     "attention_mask": np.ones((1, total), np.int64),
                     "position_ids": np.arange(start, total, dtype=np.int64)[None], **past}
            out = dict(zip(self.out_names, self.sess.run(None, feeds)))
            logits = out["logits"][0, -1]
            best = int(logits.argmax())
            tokens.append(best)
            logits_per_step.append(logits.copy())
            past = {f"past_key_values.{i}.{kv}": out[f"present.{i}.{kv}"]
                    for i in range(self.layers) for kv in ("key", "value")}
            cur, total = [best], total + 1
        return tokens, logits_per_step


def leading_agreement(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class LlamaCppAgreement(unittest.TestCase):
    q4: dict
    f32: dict
    onnx: list[tuple[list[int], list]]

    @classmethod
    def setUpClass(cls) -> None:
        model_dir = require("INFERGATE_CHAT_MODEL_DIR", "dir")
        gguf = require("INFERGATE_SMOLLM2_GGUF", "file")
        llama_python = require("INFERGATE_LLAMA_PYTHON", "exe")
        for f in ("model.onnx", "tokenizer.json", "config.json"):
            if not os.path.isfile(os.path.join(model_dir, f)):
                raise AssertionError(f"{model_dir} has no {f}: {ENV_HELP}")
        cls.model_dir = model_dir
        threads = int(os.environ.get("INFERGATE_ORACLE_THREADS", "2"))
        req = {"gguf": gguf, "prompts": [p for _, p in PROMPTS], "n_tokens": N_TOKENS, "threads": threads}
        cls.q4 = run_llama_cpp(llama_python, req)
        with tempfile.TemporaryDirectory(prefix="smollm2-f32-") as tmp:
            cls.f32 = run_llama_cpp(llama_python, {**req, "dequantize_to": os.path.join(tmp, "f32.gguf")})
        for a, b in zip(cls.q4["results"], cls.f32["results"]):
            if a["prompt_ids"] != b["prompt_ids"]:
                raise AssertionError("the Q4_1 and the fp32 GGUF tokenize a prompt differently")
        onnx = OnnxGreedy(model_dir, threads)
        cls.onnx = [onnx.generate(r["prompt_ids"], N_TOKENS) for r in cls.q4["results"]]

    def agreement(self, llama: dict, title: str) -> tuple[int, list[float], str]:
        """(prompts agreeing on every token, ONNX gap at each first difference, table)."""
        rows, full, gaps = [], 0, []
        for i, ((kind, prompt), r, (otoks, ologits)) in enumerate(zip(PROMPTS, llama["results"], self.onnx)):
            k = leading_agreement(r["tokens"], otoks)
            diff = ""
            if k == N_TOKENS:
                full += 1
            else:
                lt, ot = r["tokens"][k], otoks[k]
                gap = float(ologits[k][ot] - ologits[k][lt])
                gaps.append(gap)
                ltop = dict((t, v) for t, v in r["top"][k])
                lgap = f"{ltop[lt] - ltop[ot]:.3f}" if ot in ltop else f"> {ltop[lt] - r['top'][k][-1][1]:.3f}"
                diff = (f"llama.cpp {lt} / onnx {ot}; ONNX gap {gap:.3f}, llama.cpp gap {lgap}")
            short = prompt.replace("\n", "\\n")
            if kind == "chat":
                short = short.split("user\\n", 1)[1].split("<|im_end|>", 1)[0]
            rows.append(f"| {i + 1:>2} | {kind} | {short[:44]:<44} | {len(r['prompt_ids']):>3} | "
                        f"{k:>2}/{N_TOKENS} | {diff} |")
        table = (f"{title}\n\n| # | kind | prompt | prompt tokens | leading agreement | first difference: tokens; "
                 "how far each side ranks the other's token below its own (logits) |\n"
                 "|---:|---|---|---:|---:|---|\n" + "\n".join(rows) +
                 f"\n\n{full}/{len(PROMPTS)} prompts agree on all {N_TOKENS} greedy tokens; "
                 f"llama-cpp-python {llama['llama_cpp_version']}")
        print("\n" + table, file=sys.stderr)
        return full, gaps, table

    def test_greedy_agreement_fp32_weights(self) -> None:
        full, _, table = self.agreement(self.f32, "llama.cpp on the GGUF dequantized to fp32 vs ONNX")
        need = math.ceil(MIN_FULL_AGREEMENT * len(PROMPTS))
        self.assertGreaterEqual(full, need, f"fewer than {need} prompts agree on every token:\n{table}")

    def test_greedy_agreement_q4_1(self) -> None:
        full, gaps, table = self.agreement(self.q4, "llama.cpp on the Q4_1 GGUF vs ONNX")
        far = [g for g in gaps if g > NEAR_TIE_LOGITS]
        self.assertEqual(far, [], f"{len(far)} prompts first differ where the ONNX model prefers its token by more "
                                  f"than {NEAR_TIE_LOGITS} logit (not a near tie):\n{table}")

    def test_tokenizer_json_matches_llama_cpp(self) -> None:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(os.path.join(self.model_dir, "tokenizer.json"))
        mismatches = []
        for (kind, prompt), r in zip(PROMPTS, self.q4["results"]):
            ids = tok.encode(prompt, add_special_tokens=False).ids
            if ids != r["prompt_ids"]:
                k = leading_agreement(ids, r["prompt_ids"])
                mismatches.append(f"  {kind} {prompt[:40]!r}: tokenizer.json {ids[k:k + 6]} vs llama.cpp "
                                  f"{r['prompt_ids'][k:k + 6]} from position {k} "
                                  f"(lengths {len(ids)} / {len(r['prompt_ids'])})")
        if mismatches:
            print("tokenizer.json vs llama.cpp tokenization mismatches:\n" + "\n".join(mismatches), file=sys.stderr)
        self.assertEqual(mismatches, [], f"{len(mismatches)} of {len(PROMPTS)} prompts tokenize differently")


if __name__ == "__main__":
    unittest.main()
