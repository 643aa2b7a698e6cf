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
import re
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


TEXT_RE = re.compile(rb'"text": ?"(?!")')
TOKENS_RE = re.compile(rb'"completion_tokens": ?(\d+)')


async def one(client: httpx.AsyncClient, base: str, prompt: str, max_tokens: int,
              collect_text: bool = False) -> tuple[float, int, str]:
    """One streaming request: (TTFT seconds, completion tokens, text if collected).

    The body is scanned as raw bytes rather than parsed chunk by chunk: at
    thousands of chunks per second a per-line JSON parse in Python would make
    the client, not the server, the bottleneck.
    """
    body = {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    ttft = None
    raw = bytearray()
    async with client.stream("POST", f"{base}/v1/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{base}: HTTP {r.status_code}: {(await r.aread())[:200]!r}")
        async for part in r.aiter_raw():
            if ttft is None and TEXT_RE.search(part):
                ttft = time.perf_counter() - t0
            raw += part
    tail = bytes(raw[-400:])
    m = TOKENS_RE.search(tail)
    tokens = int(m.group(1)) if m else 0
    text = ""
    if collect_text:
        for line in raw.decode().splitlines():
            if line.startswith("data: {"):
                for ch in json.loads(line[6:]).get("choices", []):
                    text += ch.get("text") or ""
    return (ttft if ttft is not None else time.perf_counter() - t0), tokens, text


def scrape(base: str) -> dict[str, float] | None:
    """The runner's own counters (None for a server without /metrics)."""
    try:
        r = httpx.get(f"{base}/metrics", timeout=5)
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    out = {}
    for line in r.text.splitlines():
        for key in ("infergate_runner_time_to_first_token_seconds_sum", "infergate_runner_time_to_first_token_seconds_count",
                    "infergate_runner_generated_tokens_total", "infergate_runner_engine_steps_total"):
            if line.startswith(key + " "):
                out[key] = float(line.split()[1])
    return out


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

        before = scrape(base)
        await asyncio.gather(*(worker(w) for w in range(streams)))
        elapsed = time.perf_counter() - start
        after = scrape(base)
    res = {"tok_s": tokens / elapsed, "p50": pct(ttfts, 50) * 1000, "p99": pct(ttfts, 99) * 1000,
           "requests": requests, "tokens": tokens, "elapsed": elapsed}
    if before and after:
        d = {k: after[k] - before.get(k, 0) for k in after}
        n = d.get("infergate_runner_time_to_first_token_seconds_count", 0)
        steps = d.get("infergate_runner_engine_steps_total", 0)
        res["server_ttft_ms"] = 1000 * d.get("infergate_runner_time_to_first_token_seconds_sum", 0) / n if n else float("nan")
        res["batch"] = d.get("infergate_runner_generated_tokens_total", 0) / steps if steps else float("nan")
    return res


async def warm_and_compare(runner: str, baseline: str, max_tokens: int) -> bool:
    """Warm both servers up and check they generate the same greedy text."""
    same = True
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0)) as client:
        for p in PROMPTS:
            _, nr, tr = await one(client, runner, p, max_tokens, collect_text=True)
            _, nb, tb = await one(client, baseline, p, max_tokens, collect_text=True)
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

    load_before = os.getloadavg()[0]
    same = await warm_and_compare(a.runner, a.baseline, a.max_tokens)
    rows = []
    for n in [int(x) for x in a.streams.split(",")]:
        r = await level(a.runner, n, a.duration, a.max_tokens)
        b = await level(a.baseline, n, a.duration, a.max_tokens)
        rows.append((n, r, b))
        print(f"  {n:>2} streams: runner {r['tok_s']:8.0f} tok/s, TTFT p50 {r['p50']:6.1f} ms p99 {r['p99']:6.1f} ms "
              f"(server-side TTFT mean {r.get('server_ttft_ms', float('nan')):.2f} ms, mean batch {r.get('batch', float('nan')):.1f}) | "
              f"baseline {b['tok_s']:8.0f} tok/s, TTFT p50 {b['p50']:6.1f} ms p99 {b['p99']:6.1f} ms", flush=True)

    load_after = os.getloadavg()[0]
    head = (
        "| streams | runner tok/s | baseline tok/s | tok/s ratio | runner TTFT p50 / p99 (ms) "
        "| baseline TTFT p50 / p99 (ms) | TTFT p50 ratio | TTFT p99 ratio | runner server-side TTFT mean (ms) "
        "| runner mean batch |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {n} | {r['tok_s']:.0f} | {b['tok_s']:.0f} | {r['tok_s'] / b['tok_s']:.2f}x "
        f"| {r['p50']:.1f} / {r['p99']:.1f} | {b['p50']:.1f} / {b['p99']:.1f} "
        f"| {r['p50'] / b['p50']:.2f} | {r['p99'] / b['p99']:.2f} "
        f"| {r.get('server_ttft_ms', float('nan')):.2f} | {r.get('batch', float('nan')):.1f} |\n"
        for n, r, b in rows
    )
    md = f"""# Native runner vs Python baseline

Generated by `bench/runner/run.sh` on {datetime.date.today().isoformat()}.

- Machine: {os.cpu_count()} CPU cores ({cpu_name()}), {platform.system()} {platform.release()}; 1-minute load
  average {load_before:.1f} before and {load_after:.1f} after the run (other work on the machine skews results).
- Model: `models/tiny-gpt` from `tools/gen_test_model.py` (2 layers, width 64, vocab 512), fp32, CPU.
- Workload: streaming `POST /v1/completions`, greedy, `max_tokens` {a.max_tokens}, {len(PROMPTS)} fixed prompts
  round robin; each stream sends its next request when the previous one ends, for {a.duration:.0f} s per level.
  Both servers were warmed up first; their greedy outputs for every prompt were {"identical" if same else "NOT identical"}.
- Both use **{a.intra_threads} ONNX Runtime intra-op thread(s)** (ONNX Runtime 1.31.1 CPU on both sides).
- Runner: `infergate-runner` release build, continuous batching (`{a.runner_flags or "default flags"}`).
- Baseline: `bench/runner/baseline_server.py`, FastAPI + uvicorn + onnxruntime-python with the same greedy
  KV-cache decode, naive per-request generation (no batching), one uvicorn worker.
- tok/s: completion tokens (from the usage chunk) / wall time of the level. TTFT: request sent to first
  text chunk, measured by the client. Ratios are runner / baseline: above 1 is better for tok/s, below 1 is
  better for TTFT. The runner's own view from `/metrics` is added: mean TTFT inside the server (accepted ->
  first token) and the mean running batch per engine step.
- The load generator is one Python process on the same machine. At high stream counts it competes with the
  servers for the CPU cores and adds its own queueing to the client-side TTFT (compare with the server-side
  column); the client, not the runner, then limits the achieved batch size and tokens/s.

{head}{body}"""
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        f.write(md)
    print()
    print(head + body)
    print(f"written to {a.out}")


if __name__ == "__main__":
    asyncio.run(main())
