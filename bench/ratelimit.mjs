// Rate-limit accuracy and cost under contention, per target and backend.
//
// 50 concurrent clients hammer one key limited to LIMIT requests a minute,
// for SECONDS inside one minute window, spread round-robin over 4 isolates:
// - Workers: 4 Workers (4 isolates) in one workerd, sharing one KV
//   namespace and the RATE_LIMITER Durable Object;
// - Spin: the test host with at most CLIENTS/4 requests per component
//   instance, so the clients are served by 4 instances sharing its store.
// Backends: `none` (the same key without limits: the baseline), `kv`
// (coalesced KV counters) and `strict` (the Durable Object / wasi:keyvalue
// atomics). Reports the overshoot, the limiter's store operations per
// request, and p50/p99 latency with what the limiter adds over `none` in
// the same run. Run: make bench-ratelimit
import { writeFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import { startUpstream } from "../tests/upstream/server.mjs";
import {
  gatewayConfig, post, admin, sleep, spawnSpinHost, spinVariable, ROOT, EDGE_SECRETS, UPSTREAM_KEY,
} from "../tests/e2e/harness.mjs";

const CLIENTS = Number(process.env.CLIENTS ?? 50);
const LIMIT = Number(process.env.LIMIT ?? 300);
const SECONDS = Number(process.env.SECONDS ?? 5);
const ISOLATES = Number(process.env.ISOLATES ?? 4);
const SERIAL_SECONDS = Number(process.env.SERIAL_SECONDS ?? 3);
const TARGETS = (process.env.TARGETS ?? "workers,spin").split(",");
const BACKENDS = (process.env.BACKENDS ?? "none,kv,strict").split(",");

/** `n` isolates of the built worker in one workerd: one URL each. */
async function startWorkersPool(upstream, config, n) {
  const { Miniflare } = await import("miniflare");
  const workers = Array.from({ length: n }, (_, i) => ({
    name: `edge${i}`,
    modules: true,
    scriptPath: path.join(ROOT, "build/index.js"),
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
    compatibilityDate: "2025-09-01",
    kvNamespaces: { KV: "bench-kv" },
    durableObjects: {
      RATE_LIMITER: i === 0 ? { className: "RateLimiter", useSQLite: true } : { className: "RateLimiter", scriptName: "edge0", useSQLite: true },
    },
    bindings: { INFERGATE_CONFIG: JSON.stringify(config), ...EDGE_SECRETS },
    unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
  }));
  // Drained, not kept: an unread pipe fills and stalls workerd.
  const mf = new Miniflare({ workers, host: "127.0.0.1", port: 0, handleRuntimeStdio: (out, err) => { out.resume(); err.resume(); } });
  await mf.ready;
  const bases = [];
  for (let i = 0; i < n; i++) bases.push((await mf.unsafeGetDirectURL(`edge${i}`)).origin);
  return {
    bases,
    // Counter operations (KV reads, rate-limit KV writes, Durable Object
    // calls), summed over the isolates.
    ops: async () => {
      let total = 0;
      for (const b of bases) {
        const st = (await admin(b, "GET", "/admin/stats")).body;
        total += (st.counter_kv_writes_by_kind.rl ?? 0) + st.counter_kv_reads + st.strict_store_calls;
      }
      return total;
    },
    close: () => mf.dispose(),
  };
}

async function startSpinPool(upstream, config, n) {
  const vars = {
    infergate_config: JSON.stringify(config),
    upstream_origin: upstream.url,
    ...Object.fromEntries(Object.entries(EDGE_SECRETS).map(([k, v]) => [spinVariable(k), v])),
  };
  const perInstance = String(Math.ceil(CLIENTS / n));
  const host = await spawnSpinHost({ vars, quiet: true, args: ["--instance-concurrency", perInstance] });
  return {
    bases: [host.base],
    // Every operation on the shared store, counted by the host.
    ops: async () => {
      const st = await (await fetch(`${host.adminBase}/stats`)).json();
      return Object.values(st).reduce((a, b) => a + b, 0);
    },
    close: host.close,
  };
}

/** One run: `limit` requests a minute on the key (`null`: none). */
async function runOnce(target, backend, limit, clients = CLIENTS, seconds = SECONDS) {
  const upstream = await startUpstream({ port: 0, delayMs: 0, chunks: 1, apiKey: UPSTREAM_KEY });
  const config = gatewayConfig(upstream.url, { rate_limits: { backend: backend === "strict" ? "strict" : "kv" } });
  const pool = target === "workers" ? await startWorkersPool(upstream, config, ISOLATES) : await startSpinPool(upstream, config, ISOLATES);
  try {
    const limits = limit == null ? {} : { requests_per_minute: limit };
    const k = (await admin(pool.bases[0], "POST", "/admin/keys", { name: "bench", tenant: "bench", ...limits })).body;
    // Warm every isolate (and its key cache) before measuring.
    await Promise.all(pool.bases.map((b) => fetch(`${b}/v1/models`, { headers: { authorization: `Bearer ${k.key}` } }).then((r) => r.arrayBuffer())));
    const inWindow = Date.now() % 60_000;
    if (inWindow > 60_000 - (seconds + 3) * 1000) await sleep(60_000 - inWindow + 500);
    const opsBefore = await pool.ops();
    const window = Math.floor(Date.now() / 60_000);
    const until = Date.now() + seconds * 1000;
    let ok = 0, limited = 0, other = 0;
    const latencies = [];
    async function client(i) {
      const base = pool.bases[i % pool.bases.length];
      while (Date.now() < until) {
        const t0 = performance.now();
        const r = await post(base, "/v1/chat/completions", { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }], max_tokens: 8 }, { key: k.key });
        await r.arrayBuffer();
        latencies.push(performance.now() - t0);
        if (Math.floor(Date.now() / 60_000) !== window) continue;
        if (r.status === 200) ok++;
        else if (r.status === 429) limited++;
        else other++;
      }
    }
    await Promise.all(Array.from({ length: clients }, (_, i) => client(i)));
    await sleep(1500); // let corrections and coalesced flushes land
    const ops = (await pool.ops()) - opsBefore;
    latencies.sort((a, b) => a - b);
    const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))];
    const sent = ok + limited + other;
    return { target, backend, sent, ok, limited, other, ops, p50: pct(50), p99: pct(99) };
  } finally {
    await pool.close();
    await upstream.close();
  }
}

// Per backend two runs: one with a limit no client reaches (every request
// does the whole work: the added latency and the store operations), one at
// LIMIT (the overshoot).
const UNREACHED = 1_000_000_000;
const rows = [];
for (const target of TARGETS) {
  let base;
  for (const backend of BACKENDS) {
    const limit = backend === "none" ? null : UNREACHED;
    const r = await runOnce(target, backend, limit);
    // One client: the latency a request pays when nothing queues.
    const serial = await runOnce(target, backend, limit, 1, SERIAL_SECONDS);
    const perReq = r.ops / Math.max(1, r.sent);
    if (backend === "none") base = { ...r, perReq, serial };
    let acc = null;
    if (backend !== "none") acc = await runOnce(target, backend, LIMIT);
    const overshoot = acc ? `${acc.ok - LIMIT} (${((100 * (acc.ok - LIMIT)) / LIMIT).toFixed(1)} %)` : "n/a";
    const added = backend === "none" ? "baseline" : `${(r.p50 - base.p50).toFixed(2)} / ${(r.p99 - base.p99).toFixed(2)}`;
    const addedSerial = backend === "none" ? "baseline" : `${(serial.p50 - base.serial.p50).toFixed(2)} / ${(serial.p99 - base.serial.p99).toFixed(2)}`;
    // The limiter's share: the same measure minus the unlimited baseline's.
    const limiterOps = backend === "none" ? "baseline" : (perReq - base.perReq).toFixed(2);
    rows.push([
      target, backend, ISOLATES, `${serial.p50.toFixed(2)} / ${serial.p99.toFixed(2)}`, addedSerial,
      r.sent, `${r.p50.toFixed(2)} / ${r.p99.toFixed(2)}`, added, limiterOps,
      acc ? `${acc.sent} / ${acc.ok} / ${acc.limited}` : "n/a", overshoot,
    ]);
    console.error(`${target} ${backend}: ${JSON.stringify({ r, acc })}`);
  }
}
const md = [
  "# Rate limiter under contention, per target and backend",
  "",
  `Command: \`make bench-ratelimit\` (CLIENTS=${CLIENTS} LIMIT=${LIMIT}/min SECONDS=${SECONDS} SERIAL_SECONDS=${SERIAL_SECONDS} ISOLATES=${ISOLATES}). Measured ${new Date().toISOString()}. Latency and store operations come from runs whose limit no client reaches (every request does the whole work); the overshoot from a run at LIMIT.`,
  "Workers: the isolates are Workers in one workerd sharing a KV namespace and the RATE_LIMITER Durable Object. Spin: the test host with the clients spread over that many component instances sharing its store. `none` is the same key without limits, the latency baseline of its target. Store operations: on Workers the counter KV reads and rate-limit KV writes plus Durable Object calls the isolates report; on Spin every operation on the host's store; both minus the `none` row's.",
  "",
  `| target | backend | isolates | c=1 p50 / p99 ms | c=1 added p50 / p99 ms | c=${CLIENTS} requests | c=${CLIENTS} p50 / p99 ms | c=${CLIENTS} added p50 / p99 ms | limiter store ops / request | at LIMIT: sent / 200 / 429 | overshoot |`,
  "|---|---|---|---|---|---|---|---|---|---|---|",
  ...rows.map((r) => `| ${r.join(" | ")} |`),
  "",
].join("\n");
console.log(md);
mkdirSync(path.join(ROOT, "bench/results"), { recursive: true });
writeFileSync(path.join(ROOT, "bench/results/ratelimit.md"), md);
