"""Load generator for the runner benchmark (asyncio + httpx, streaming).

For each concurrency level, N workers each send streaming greedy
/v1/completions requests back to back for a fixed duration (prompts from a
fixed set, round robin). Measured per server:
  - aggregate generated tokens/s (completion tokens from the usage chunk,
    over the wall time of the level, in-flight requests included);
  - time to first token (request sent -> first chunk with text), p50/p99.
Writes a markdown table with runner/baseline ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import time

import httpx

PROMPTS = [
    "Once upon a time there was",
    "The quick brown fox jumps over the lazy dog. The lazy dog",
    "What is the capital of France?",
    "def generate(prompt, max_tokens=16):\n    tokens = tokenizer.encode(prompt)\n",
    "Hello! How are you today?",
    "An inference gateway receives requests from many users, puts them into a queue, batches them together and",
    "Numbers are important too: 0 1 2 3 4 5",
    "In the morning the birds sing, in the evening",
]
MODEL = "local/tiny-gpt"


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


async def one(client: httpx.AsyncClient, base: str, prompt: str, max_tokens: int) -> tuple[float, int, str]:
    body = {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    ttft = None
    tokens = 0
    text = ""
    async with client.stream("POST", f"{base}/v1/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{base}: HTTP {r.status_code}: {(await r.aread())[:200]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            c = json.loads(line[6:])
            for ch in c.get("choices", []):
                if ch.get("text"):
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                    text += ch["text"]
            if c.get("usage"):
                tokens = c["usage"]["completion_tokens"]
    return (ttft if ttft is not None else time.perf_counter() - t0), tokens, text


async def level(base: str, streams: int, duration: float, max_tokens: int) -> dict:
    limits = httpx.Limits(max_connections=streams + 4, max_keepalive_connections=streams + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(300.0), limits=limits) as client:
        ttfts: list[float] = []
        tokens = 0
        requests = 0
        start = time.perf_counter()
        stop_at = start + duration

        async def worker(w: int) -> None:
            nonlocal tokens, requests
            i = w
            while time.perf_counter() < stop_at:
                t, n, _ = await one(client, base, PROMPTS[i % len(PROMPTS)], max_tokens)
                ttfts.append(t)
                tokens += n
                requests += 1
                i += streams

        await asyncio.gather(*(worker(w) for w in range(streams)))
        elapsed = time.perf_counter() - start
    return {"tok_s": tokens / elapsed, "p50": pct(ttfts, 50) * 1000, "p99": pct(ttfts, 99) * 1000,
            "requests": requests, "tokens": tokens, "elapsed": elapsed}


async def warm_and_compare(runner: str, baseline: str, max_tokens: int) -> bool:
    """Warm both servers up and check they generate the same greedy text."""
    same = True
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0)) as client:
        for p in PROMPTS:
            _, nr, tr = await one(client, runner, p, max_tokens)
            _, nb, tb = await one(client, baseline, p, max_tokens)
            if (nr, tr) != (nb, tb):
                same = False
                print(f"  outputs differ for {p!r}: runner {nr} tokens {tr!r}, baseline {nb} tokens {tb!r}")
    return same


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runner", required=True)
    ap.add_argument("--baseline", required=True)
    ap.add_argument("--streams", default="1,4,16")
    ap.add_argument("--duration", type=float, default=6.0, help="seconds per level and server")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--intra-threads", type=int, default=1)
    ap.add_argument("--runner-flags", default="")
    ap.add_argument("--out", default="bench/results/runner.md")
    a = ap.parse_args()

    same = await warm_and_compare(a.runner, a.baseline, a.max_tokens)
    rows = []
    for n in [int(x) for x in a.streams.split(",")]:
        r = await level(a.runner, n, a.duration, a.max_tokens)
        b = await level(a.baseline, n, a.duration, a.max_tokens)
        rows.append((n, r, b))
        print(f"  {n:>2} streams: runner {r['tok_s']:8.0f} tok/s, TTFT p50 {r['p50']:6.1f} ms p99 {r['p99']:6.1f} ms | "
              f"baseline {b['tok_s']:8.0f} tok/s, TTFT p50 {b['p50']:6.1f} ms p99 {b['p99']:6.1f} ms", flush=True)

    head = (
        "| streams | runner tok/s | baseline tok/s | tok/s ratio | runner TTFT p50 / p99 (ms) "
        "| baseline TTFT p50 / p99 (ms) | TTFT p50 ratio | TTFT p99 ratio |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {n} | {r['tok_s']:.0f} | {b['tok_s']:.0f} | {r['tok_s'] / b['tok_s']:.2f}x "
        f"| {r['p50']:.1f} / {r['p99']:.1f} | {b['p50']:.1f} / {b['p99']:.1f} "
        f"| {r['p50'] / b['p50']:.2f} | {r['p99'] / b['p99']:.2f} |\n"
        for n, r, b in rows
    )
    md = f"""# Native runner vs Python baseline

Generated by `bench/runner/run.sh` on {datetime.date.today().isoformat()}.

- Machine: {os.cpu_count()} CPU cores ({cpu_name()}), {platform.system()} {platform.release()}.
- Model: `models/tiny-gpt` from `tools/gen_test_model.py` (2 layers, width 64, vocab 512), fp32, CPU.
- Workload: streaming `POST /v1/completions`, greedy, `max_tokens` {a.max_tokens}, {len(PROMPTS)} fixed prompts
  round robin; each stream sends its next request when the previous one ends, for {a.duration:.0f} s per level.
  Both servers were warmed up first; their greedy outputs for every prompt were {"identical" if same else "NOT identical"}.
- Both use **{a.intra_threads} ONNX Runtime intra-op thread(s)** (ONNX Runtime 1.31.1 CPU on both sides).
- Runner: `infergate-runner` release build, continuous batching (`{a.runner_flags or "default flags"}`).
- Baseline: `bench/runner/baseline_server.py`, FastAPI + uvicorn + onnxruntime-python with the same greedy
  KV-cache decode, naive per-request generation (no batching), one uvicorn worker.
- tok/s: completion tokens (from the usage chunk) / wall time of the level. TTFT: request sent to first
  text chunk. Ratios are runner / baseline: above 1 is better for tok/s, below 1 is better for TTFT.

{head}{body}"""
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        f.write(md)
    print()
    print(head + body)
    print(f"written to {a.out}")


if __name__ == "__main__":
    asyncio.run(main())
