// Rate-limit accuracy under contention, against the built worker in workerd.
//
// 50 concurrent clients hammer one key whose limit is N requests/minute for
// a few seconds inside one minute window. Reports how many requests were
// admitted beyond N (the overshoot) and how many KV writes per second the
// coalesced counters made for that key's window counter. Run: make bench-ratelimit
import { writeFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { startStack, startWorkers, post, admin, sleep, ROOT } from "../tests/e2e/harness.mjs";

const CLIENTS = Number(process.env.CLIENTS ?? 50);
const LIMIT = Number(process.env.LIMIT ?? 300);
const SECONDS = Number(process.env.SECONDS ?? 5);

// One run per isolate count: 1 isolate shows the in-isolate accuracy; 2 and
// 4 separate workerd processes sharing one KV store show what eventual
// consistency across isolates costs.
const results = [];
for (const isolates of (process.env.ISOLATES ?? "1,2,4").split(",").map(Number)) {
  results.push(await runOnce(isolates));
}
const header = "| isolates | clients | limit/min | sent | admitted | 429 | overshoot | window-counter KV writes | KV writes/s per key | p50 / p99 ms |";
const md = [
  "# Rate limiter under contention (KV backend, workerd)",
  "",
  `Command: \`make bench-ratelimit\` (CLIENTS=${CLIENTS} LIMIT=${LIMIT} SECONDS=${SECONDS}). Measured ${new Date().toISOString()}.`,
  "Isolates are separate workerd processes sharing one local KV store; clients are spread over them round-robin.",
  "",
  header,
  "|---|---|---|---|---|---|---|---|---|---|",
  ...results.map((r) => `| ${r.join(" | ")} |`),
  "",
].join("\n");
console.log(md);
mkdirSync(path.join(ROOT, "bench/results"), { recursive: true });
writeFileSync(path.join(ROOT, "bench/results/ratelimit.md"), md);

async function runOnce(isolates) {
const kvPersist = mkdtempSync(path.join(os.tmpdir(), "ig-rl-"));
const stack = await startStack({ upstream: { delayMs: 0, chunks: 1 }, kvPersist });
const extra = [];
for (let i = 1; i < isolates; i++) extra.push(await startWorkers(stack.upstream, stack.config, { kvPersist }));
const bases = [stack.base, ...extra.map((e) => e.base)];
try {
  const k = (await admin(stack.base, "POST", "/admin/keys", { name: "bench", tenant: "bench", requests_per_minute: LIMIT })).body;
  // Start inside a fresh window with room for the whole run.
  const inWindow = Date.now() % 60_000;
  if (inWindow > 60_000 - (SECONDS + 3) * 1000) await sleep(60_000 - inWindow + 500);
  const statsBefore = (await admin(stack.base, "GET", "/admin/stats")).body;
  const window = Math.floor(Date.now() / 60_000);
  const until = Date.now() + SECONDS * 1000;
  let ok = 0, limited = 0, other = 0;
  const latencies = [];
  async function client(i) {
    const base = bases[i % bases.length];
    while (Date.now() < until) {
      const t0 = performance.now();
      const r = await post(base, "/v1/chat/completions", { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }, { key: k.key });
      await r.arrayBuffer();
      latencies.push(performance.now() - t0);
      if (Math.floor(Date.now() / 60_000) !== window) continue; // crossed into the next window
      if (r.status === 200) ok++;
      else if (r.status === 429) limited++;
      else other++;
    }
  }
  const t0 = Date.now();
  await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i)));
  const elapsed = (Date.now() - t0) / 1000;
  await sleep(1500); // let the last coalesced flush land
  let rlWrites = 0;
  for (const b of bases) {
    const st = (await admin(b, "GET", "/admin/stats")).body;
    rlWrites += st.counter_kv_writes_by_kind.rl ?? 0;
  }
  rlWrites -= statsBefore.counter_kv_writes_by_kind?.rl ?? 0;
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))].toFixed(1);
  const overshoot = ok - LIMIT;
  return [
    isolates,
    CLIENTS,
    LIMIT,
    ok + limited + other,
    ok,
    limited,
    `${overshoot} (${((100 * overshoot) / LIMIT).toFixed(1)} %)`,
    rlWrites,
    (rlWrites / elapsed).toFixed(2),
    `${pct(50)} / ${pct(99)}`,
  ];
} finally {
  for (const e of extra) await e.close();
  await stack.close();
  rmSync(kvPersist, { recursive: true, force: true });
}
}
