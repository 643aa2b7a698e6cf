"""Load generator for the runner benchmark (asyncio + httpx, streaming).

    python bench/runner/load.py --server runner http://127.0.0.1:18090 PID \\
        --server llama.cpp http://127.0.0.1:18092 PID --server FastAPI http://127.0.0.1:18091 PID \\
        --streams 1,4,16 --duration 6 --max-tokens 64 --out bench/results/runner.md

The first --server is the one the others are compared with (ratios are first / other).
Each server's model id is read from its GET /v1/models. For each concurrency level and
server in turn, N workers each send streaming greedy /v1/completions requests back to
back for a fixed duration (prompts from a fixed set, round robin). Measured per server:
  - aggregate generated tokens/s (completion tokens over the wall time of the level, the
    requests still in flight at the deadline included: they are waited for);
  - time to first token (request sent -> first chunk with text), p50/p99;
  - resident memory: /proc/PID/status VmRSS sampled every 50 ms during the level; its
    peak divided by the open streams is the memory per open stream. Idle RSS is taken
    after the warm-up, before the first level.
Completion tokens come from the usage chunk (`stream_options.include_usage`); a server
that sends none (llama-cpp-python's) is counted by its text chunks, one per token (a
chunk can hold more than one token only where a UTF-8 character spans tokens).
Also per server: decode ms/token (per request, time from the first to the last text chunk
over the tokens after the first; median). With --json PATH the raw numbers are written too.
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


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


TEXT_RE = re.compile(rb'"text": ?"(?!")')
TOKENS_RE = re.compile(rb'"completion_tokens": ?(\d+)')


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class RssSampler:
    """Peak VmRSS of one process while the `async with` block runs (50 ms samples)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_bytes(self.pid))
            await asyncio.sleep(self.interval)

    async def __aenter__(self) -> "RssSampler":
        self.peak = rss_bytes(self.pid)
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self.peak = max(self.peak, rss_bytes(self.pid))


async def one(client: httpx.AsyncClient, base: str, model: str, prompt: str, max_tokens: int,
              collect_text: bool = False) -> tuple[float, int, str, float]:
    """One streaming request: (TTFT seconds, completion tokens, text if collected,
    decode seconds per token after the first, NaN below 2 tokens).

    The body is scanned as raw bytes rather than parsed chunk by chunk: at
    thousands of chunks per second a per-line JSON parse in Python would make
    the client, not the server, the bottleneck.
    """
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    ttft = None
    last = t0
    raw = bytearray()
    async with client.stream("POST", f"{base}/v1/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{base}: HTTP {r.status_code}: {(await r.aread())[:200]!r}")
        async for part in r.aiter_raw():
            if ttft is None and TEXT_RE.search(part):
                ttft = time.perf_counter() - t0
            if TEXT_RE.search(part):
                last = time.perf_counter()
            raw += part
    m = TOKENS_RE.search(bytes(raw[-400:]))
    tokens = int(m.group(1)) if m else len(TEXT_RE.findall(raw))
    text = ""
    if collect_text:
        for line in raw.decode().splitlines():
            if line.startswith("data: {"):
                for ch in json.loads(line[6:]).get("choices", []):
                    text += ch.get("text") or ""
    decode = (last - t0 - ttft) / (tokens - 1) if ttft is not None and tokens > 1 else float("nan")
    return (ttft if ttft is not None else time.perf_counter() - t0), tokens, text, decode


def scrape(base: str) -> dict[str, float] | None:
    """The runner's own counters (None for a server without /metrics)."""
    try:
        r = httpx.get(f"{base}/metrics", timeout=5)
    except httpx.HTTPError:
        return None
    if r.status_code != 200 or "infergate_runner" not in r.text:
        return None
    out = {}
    for line in r.text.splitlines():
        for key in ("infergate_runner_time_to_first_token_seconds_sum", "infergate_runner_time_to_first_token_seconds_count",
                    "infergate_runner_generated_tokens_total", "infergate_runner_engine_steps_total"):
            if line.startswith(key + " "):
                out[key] = float(line.split()[1])
    return out


class Server:
    def __init__(self, name: str, url: str, pid: int) -> None:
        self.name, self.url, self.pid = name, url.rstrip("/"), pid
        self.model = ""
        self.idle_rss = 0

    def discover(self) -> None:
        r = httpx.get(f"{self.url}/v1/models", timeout=30)
        r.raise_for_status()
        self.model = r.json()["data"][0]["id"]


async def level(srv: Server, streams: int, duration: float, max_tokens: int) -> dict:
    limits = httpx.Limits(max_connections=streams + 4, max_keepalive_connections=streams + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=limits) as client:
        ttfts: list[float] = []
        decodes: list[float] = []
        tokens = 0
        requests = 0

        async def worker(w: int, stop_at: float) -> None:
            nonlocal tokens, requests
            i = w
            while time.perf_counter() < stop_at:
                t, n, _, dec = await one(client, srv.url, srv.model, PROMPTS[i % len(PROMPTS)], max_tokens)
                ttfts.append(t)
                if dec == dec:
                    decodes.append(dec)
                tokens += n
                requests += 1
                i += streams

        before = scrape(srv.url)
        async with RssSampler(srv.pid) as rss:
            start = time.perf_counter()
            await asyncio.gather(*(worker(w, start + duration) for w in range(streams)))
            elapsed = time.perf_counter() - start
        after = scrape(srv.url)
    res = {"tok_s": tokens / elapsed, "p50": pct(ttfts, 50) * 1000, "p99": pct(ttfts, 99) * 1000,
           "decode_ms": pct(decodes, 50) * 1000,
           "requests": requests, "tokens": tokens, "elapsed": elapsed, "peak_rss": rss.peak,
           "rss_per_stream": rss.peak / streams}
    if before and after:
        d = {k: after[k] - before.get(k, 0) for k in after}
        n = d.get("infergate_runner_time_to_first_token_seconds_count", 0)
        steps = d.get("infergate_runner_engine_steps_total", 0)
        res["server_ttft_ms"] = 1000 * d.get("infergate_runner_time_to_first_token_seconds_sum", 0) / n if n else float("nan")
        res["batch"] = d.get("infergate_runner_generated_tokens_total", 0) / steps if steps else float("nan")
    return res


async def warm_and_compare(servers: list[Server], max_tokens: int) -> dict[str, int]:
    """Warm every server up; count the prompts whose greedy text equals the first server's."""
    same = {s.name: 0 for s in servers[1:]}
    async with httpx.AsyncClient(timeout=httpx.Timeout(300.0)) as client:
        for p in PROMPTS:
            outs = [await one(client, s.url, s.model, p, max_tokens, collect_text=True) for s in servers]
            for s, o in zip(servers[1:], outs[1:]):
                if o[2] == outs[0][2]:
                    same[s.name] += 1
                else:
                    print(f"  {s.name} differs from {servers[0].name} for {p!r}:\n    {servers[0].name}: "
                          f"{outs[0][2][:120]!r}\n    {s.name}: {o[2][:120]!r}", flush=True)
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


def mib(b: float) -> str:
    return f"{b / 2**20:.0f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b and a == a and b == b else "n/a"


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", action="append", nargs=3, metavar=("NAME", "URL", "PID"), required=True,
                    help="a server to measure; the first is the reference of the ratios")
    ap.add_argument("--streams", default="1,4,16")
    ap.add_argument("--duration", type=float, default=6.0, help="seconds per level and server")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--title", default="Native runner vs llama.cpp vs FastAPI baseline (SmolLM2-135M-Instruct, CPU)")
    ap.add_argument("--generated-by", default="bench/runner/run.sh")
    ap.add_argument("--notes", default="", help="markdown bullet lines describing the servers (added to the report)")
    ap.add_argument("--out", default="bench/results/runner.md")
    ap.add_argument("--json", help="also write the raw numbers here")
    a = ap.parse_args()

    servers = [Server(n, u, int(p)) for n, u, p in a.server]
    for s in servers:
        if not rss_bytes(s.pid):
            raise SystemExit(f"{s.name}: no process {s.pid} to sample memory from (the server's PID)")
        s.discover()
    load_before = os.getloadavg()[0]
    same = await warm_and_compare(servers, a.max_tokens)
    for s in servers:
        s.idle_rss = rss_bytes(s.pid)
    levels = [int(x) for x in a.streams.split(",")]
    res: dict[int, dict[str, dict]] = {}
    for n in levels:
        res[n] = {}
        for s in servers:
            r = res[n][s.name] = await level(s, n, a.duration, a.max_tokens)
            extra = (f", server-side TTFT mean {r['server_ttft_ms']:.1f} ms, mean batch {r['batch']:.1f}"
                     if "batch" in r else "")
            print(f"  {n:>2} streams {s.name:>10}: {r['tok_s']:7.1f} tok/s, TTFT p50 {r['p50']:7.1f} ms "
                  f"p99 {r['p99']:7.1f} ms, decode {r['decode_ms']:.1f} ms/token, peak RSS {mib(r['peak_rss'])} MiB ({r['requests']} requests, "
                  f"{r['elapsed']:.1f} s{extra})", flush=True)
    load_after = os.getloadavg()[0]

    ref, others = servers[0], servers[1:]

    def table(cols: list[tuple[str, str, object]], rows: list) -> str:
        """Markdown table: cols are (header, alignment, row -> cell)."""
        return ("| " + " | ".join(h for h, _, _ in cols) + " |\n|" + "|".join(al for _, al, _ in cols) + "|\n"
                + "".join("| " + " | ".join(f(r) for _, _, f in cols) + " |\n" for r in rows))

    def R(name: str, key: str):
        return lambda n: res[n][name][key]

    cols = [("streams", "---:", str)]
    cols += [(f"{s.name} tok/s", "---:", lambda n, s=s: f"{R(s.name, 'tok_s')(n):.1f}") for s in servers]
    cols += [(f"{ref.name} / {o.name} tok/s", "---:",
              lambda n, o=o: f"**{ratio(R(ref.name, 'tok_s')(n), R(o.name, 'tok_s')(n))}x**") for o in others]
    cols += [(f"{s.name} TTFT p50 / p99 (ms)", "---:",
              lambda n, s=s: f"{R(s.name, 'p50')(n):.0f} / {R(s.name, 'p99')(n):.0f}") for s in servers]
    cols += [(f"{ref.name} / {o.name} TTFT p50", "---:",
              lambda n, o=o: ratio(R(ref.name, 'p50')(n), R(o.name, 'p50')(n))) for o in others]
    cols += [(f"{s.name} decode ms/token p50", "---:", lambda n, s=s: f"{R(s.name, 'decode_ms')(n):.1f}")
             for s in servers]
    perf = table(cols, levels)
    mcols = [("server", "---", lambda s: s.name), ("idle RSS (MiB)", "---:", lambda s: mib(s.idle_rss))]
    mcols += [(f"peak RSS @{n} (MiB)", "---:", lambda s, n=n: mib(res[n][s.name]["peak_rss"])) for n in levels]
    mcols += [(f"peak RSS / open stream @{n} (MiB)", "---:", lambda s, n=n: mib(res[n][s.name]["rss_per_stream"]))
              for n in levels]
    mcols += [(f"(peak - idle) / open stream @{n} (MiB)", "---:",
               lambda s, n=n: f"{(res[n][s.name]['peak_rss'] - s.idle_rss) / n / 2**20:.1f}") for n in levels]
    mem = table(mcols, servers)
    mratio = "".join(
        f"- {ref.name} / {o.name} memory per open stream: "
        + ", ".join(f"{ratio(res[n][ref.name]['rss_per_stream'], res[n][o.name]['rss_per_stream'])} @{n}" for n in levels)
        + "\n" for o in others)
    runner_rows = ""
    if all("batch" in res[n][ref.name] for n in levels):
        runner_rows = (f"\n{ref.name}'s own view from `/metrics` (mean TTFT inside the server, accepted -> first "
                       "token; mean running batch per engine step): "
                       + "; ".join(f"@{n}: {res[n][ref.name]['server_ttft_ms']:.1f} ms, batch "
                                   f"{res[n][ref.name]['batch']:.1f}" for n in levels) + ".\n")
    agreement = ("- Warm-up: every prompt once per server. Greedy texts equal to " + ref.name + "'s: "
                 + "; ".join(f"{o.name} {same[o.name]}/{len(PROMPTS)}" for o in others) + ".\n") if others else ""
    ratios = (f" Ratios are {ref.name} / other: above 1 is better for tok/s, below 1 is better for TTFT."
              if others else "")

    md = f"""# {a.title}

Generated by `{a.generated_by}` on {datetime.date.today().isoformat()}.

- Machine: {os.cpu_count()} CPU cores ({cpu_name()}), {platform.system()} {platform.release()}; 1-minute load
  average {load_before:.1f} before and {load_after:.1f} after the run (other work on the machine skews results).
- Workload: streaming `POST /v1/completions`, greedy (`temperature` 0), `max_tokens` {a.max_tokens}, {len(PROMPTS)}
  fixed prompts round robin; each stream sends its next request when the previous one ends, for
  {a.duration:.0f} s per level (requests in flight at the deadline are waited for and counted). One server is
  loaded at a time; the others sit idle.
{a.notes.rstrip()}
{agreement}- tok/s: completion tokens / wall time of the level (from the usage chunk; a server that sends none is
  counted by its text chunks). TTFT: request sent to first text chunk, measured by the client. Decode
  ms/token: per request, (last chunk - first chunk) / (tokens - 1), median over the level's requests.{ratios}
- Memory: VmRSS of each server process sampled every 50 ms; peak during the level divided by the open
  streams. It includes the weights, so at low stream counts it is dominated by the model, not by
  per-stream state; (peak - idle) / open streams is what each open stream added.
- The load generator is one Python process on the same machine; at high stream counts it competes with
  the servers for the CPU.

{perf}
{mem}
{mratio}{runner_rows}"""
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        f.write(md)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"levels": {str(n): res[n] for n in levels},
                       "idle_rss": {s.name: s.idle_rss for s in servers}, "same_text": same}, f, indent=1)
    print()
    print(perf)
    print(mem + mratio)
    print(f"written to {a.out}")


if __name__ == "__main__":
    asyncio.run(main())
