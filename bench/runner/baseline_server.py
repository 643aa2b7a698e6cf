"""Python baseline for the runner benchmark: FastAPI + uvicorn + onnxruntime.

Serves the same model folder with the same greedy decode and KV cache, as an
OpenAI-compatible streaming `POST /v1/completions`, the way the FastAPI
model-serving guides do it: naive per-request generation. Each request runs
its own prefill + decode loop in Starlette's thread pool against one shared
InferenceSession (ONNX Runtime releases the GIL inside `run`), with no
batching across requests.

The folder is a Hugging Face style decoder folder (model.onnx, tokenizer.json,
config.json with num_hidden_layers / num_key_value_heads / head_dim /
vocab_size, generation_config.json with eos_token_id), as the converted
SmolLM2 folder ($INFERGATE_CHAT_MODEL_DIR); the older tiny-gpt keys
(num_layers / num_heads / eos_token_ids / context_length) are read too. The
graph may return logits for the last position only ([b, 1, vocab]).

    python bench/runner/baseline_server.py --model-dir "$INFERGATE_CHAT_MODEL_DIR" --port 8091 --intra-threads 2
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from tokenizers import Tokenizer


class Model:
    def __init__(self, model_dir: Path, intra_threads: int) -> None:
        cfg = self.cfg = json.loads((model_dir / "config.json").read_text())
        gen_path = model_dir / "generation_config.json"
        gen = json.loads(gen_path.read_text()) if gen_path.exists() else {}
        so = ort.SessionOptions()
        so.intra_op_num_threads = intra_threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(str(model_dir / "model.onnx"), so, providers=["CPUExecutionProvider"])
        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.layers = cfg.get("num_hidden_layers", cfg.get("num_layers"))
        # The KV cache has the key/value heads (3 for SmolLM2's grouped-query attention).
        self.heads = cfg.get("num_key_value_heads", cfg.get("num_attention_heads", cfg.get("num_heads")))
        self.head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        eos = gen.get("eos_token_id", cfg.get("eos_token_id", cfg.get("eos_token_ids")))
        self.eos = set(eos if isinstance(eos, list) else [eos])
        self.context = cfg.get("max_position_embeddings", cfg.get("context_length"))
        self.model_id = cfg.get("model_id") or model_dir.resolve().name
        self.out_names = [o.name for o in self.sess.get_outputs()]

    def generate(self, ids: list[int], max_tokens: int):
        """Greedy decoding with the KV cache; yields token ids."""
        past = [np.zeros((1, self.heads, 0, self.head_dim), np.float32) for _ in range(2 * self.layers)]
        cur = list(ids)
        n = len(ids)
        for _ in range(max_tokens):
            p = n - len(cur)
            feeds = {
                "input_ids": np.asarray([cur], np.int64),
                "attention_mask": np.ones((1, n), np.int64),
                "position_ids": np.arange(p, n, dtype=np.int64)[None],
            }
            for i in range(self.layers):
                feeds[f"past_key_values.{i}.key"] = past[2 * i]
                feeds[f"past_key_values.{i}.value"] = past[2 * i + 1]
            out = dict(zip(self.out_names, self.sess.run(None, feeds)))
            past = [out[f"present.{i}.{k}"] for i in range(self.layers) for k in ("key", "value")]
            nxt = int(out["logits"][0, -1].argmax())
            yield nxt
            if nxt in self.eos:
                return
            cur = [nxt]
            n += 1


def build_app(model: Model, model_id: str) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": model_id, "object": "model", "created": 0, "owned_by": "baseline"}]}

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await request.json()
        if body.get("model") != model_id:
            raise HTTPException(404, "model not found")
        prompt = body["prompt"]
        max_tokens = int(body.get("max_tokens", 16))
        ids = model.tok.encode(prompt, add_special_tokens=False).ids
        if len(ids) + max_tokens > model.context:
            raise HTTPException(400, "context length exceeded")
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        cid = "cmpl-" + uuid.uuid4().hex[:16]
        created = int(time.time())

        def chunk(text: str, finish: str | None) -> dict:
            return {"id": cid, "object": "text_completion", "created": created, "model": model_id,
                    "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}

        def run():
            out_ids: list[int] = []
            sent = ""
            finish = "length"
            for t in model.generate(ids, max_tokens):
                out_ids.append(t)
                if t in model.eos:
                    finish = "stop"
                    break
                text = model.tok.decode(out_ids)
                if text.endswith("\ufffd"):
                    continue  # incomplete UTF-8: wait for the next token
                if len(text) > len(sent):
                    yield text[len(sent):]
                    sent = text
            text = model.tok.decode([t for t in out_ids if t not in model.eos])
            yield (text[len(sent):], finish, len(out_ids))

        if not body.get("stream"):
            parts = list(run())
            text = "".join(p for p in parts[:-1]) + parts[-1][0]
            c = chunk(text, parts[-1][1])
            c["usage"] = {"prompt_tokens": len(ids), "completion_tokens": parts[-1][2],
                          "total_tokens": len(ids) + parts[-1][2]}
            return JSONResponse(c)

        def sse():  # a sync generator: Starlette iterates it in its thread pool
            for item in run():
                if isinstance(item, tuple):
                    tail, finish, n = item
                    if tail:
                        yield f"data: {json.dumps(chunk(tail, None))}\n\n"
                    yield f"data: {json.dumps(chunk('', finish))}\n\n"
                    if include_usage:
                        u = {"id": cid, "object": "text_completion", "created": created, "model": model_id,
                             "choices": [], "usage": {"prompt_tokens": len(ids), "completion_tokens": n,
                                                      "total_tokens": len(ids) + n}}
                        yield f"data: {json.dumps(u)}\n\n"
                    yield "data: [DONE]\n\n"
                else:
                    yield f"data: {json.dumps(chunk(item, None))}\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream")

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True, type=Path)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8091)
    ap.add_argument("--intra-threads", type=int, default=1)
    ap.add_argument("--model-id", help="the id clients send as `model` (default: config.json model_id, else the folder name)")
    a = ap.parse_args()
    model = Model(a.model_dir, a.intra_threads)
    list(model.generate(model.tok.encode("Hello", add_special_tokens=False).ids, 2))  # warm-up
    uvicorn.run(build_app(model, a.model_id or model.model_id), host=a.host, port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
