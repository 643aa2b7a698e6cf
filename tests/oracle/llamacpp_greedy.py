"""llama.cpp side of the greedy agreement oracle (test_llamacpp_agreement.py).

Runs under llama.cpp's own venv ($INFERGATE_LLAMA_PYTHON, built by
scripts/setup-llama.sh), not the project venv, so the test spawns it:

    $INFERGATE_LLAMA_PYTHON tests/oracle/llamacpp_greedy.py < request.json

Request (stdin, JSON):
  {"gguf": PATH, "prompts": [str, ...], "n_tokens": N, "threads": T,
   "dequantize_to": PATH (optional), "kv_f32": bool (optional)}
With "dequantize_to", llama.cpp's own quantizer first writes the GGUF with every
weight dequantized to fp32 (LLAMA_FTYPE_ALL_F32) to that path, and the model is
loaded from there; "kv_f32" keeps the KV cache in fp32 instead of llama.cpp's
default fp16.

Reply (stdout, JSON): {"llama_cpp_version", "system_info", "gguf", "results":
[{"prompt_ids": [...], "tokens": [...], "top": [[[token, logit], ...], ...]}, ...]}
prompt_ids: llama.cpp's tokenization of the prompt (no BOS added, special tokens
such as <|im_start|> parsed); tokens: N greedy (argmax) continuations, never
stopping at EOS; top[k]: the 5 best (token, logit) pairs at step k.
"""

from __future__ import annotations

import ctypes
import json
import sys

import numpy as np
import llama_cpp
from llama_cpp import Llama

TOP = 5


def main() -> None:
    req = json.load(sys.stdin)
    threads = req.get("threads", 2)
    gguf = req["gguf"]
    if req.get("dequantize_to"):
        p = llama_cpp.llama_model_quantize_default_params()
        p.ftype = llama_cpp.LLAMA_FTYPE_ALL_F32
        p.allow_requantize = True
        p.nthread = threads
        gguf = req["dequantize_to"]
        if llama_cpp.llama_model_quantize(req["gguf"].encode(), gguf.encode(), ctypes.byref(p)) != 0:
            sys.exit(f"llama_model_quantize to F32 failed for {req['gguf']}")
    kv = {"type_k": llama_cpp.GGML_TYPE_F32, "type_v": llama_cpp.GGML_TYPE_F32} if req.get("kv_f32") else {}
    llm = Llama(model_path=gguf, n_ctx=1024, n_batch=512, n_threads=threads, n_threads_batch=threads,
                logits_all=False, verbose=False, seed=0, **kv)
    n_vocab = llm.n_vocab()
    results = []
    for prompt in req["prompts"]:
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        tokens, top = [], []
        for _ in range(req["n_tokens"]):
            # Llama.eval keeps no logits unless logits_all; only the batch's last position
            # has output logits, so the context's logits buffer is that row.
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).copy()
            best = np.argsort(-logits, kind="stable")[:TOP]  # ties: the lowest id, as argmax
            top.append([[int(t), float(logits[t])] for t in best])
            tokens.append(int(best[0]))
            llm.eval([int(best[0])])
        results.append({"prompt_ids": [int(t) for t in ids], "tokens": tokens, "top": top})
    json.dump({"llama_cpp_version": llama_cpp.__version__, "gguf": gguf,
               "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
               "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
