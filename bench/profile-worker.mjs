// Where the Workers build spends its CPU: a V8 CPU profile of workerd
// (through Miniflare's inspector) while wrk sends the small chat request of
// `make bench` (a) for PROFILE_SECONDS. Prints self time by category (the
// core's wasm, the JS glue, garbage collection, workerd's own "program"
// time) and the top functions. Run: `make build && node bench/profile-worker.mjs`
// (`KEEP_NAMES=1 make build` keeps the wasm function names; a plain build
// strips them, and its wasm functions show by index only).
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import WebSocket from "ws";
import { startUpstream } from "../tests/upstream/server.mjs";
import { gatewayConfig, admin, ROOT, EDGE_SECRETS, UPSTREAM_KEY } from "../tests/e2e/harness.mjs";

const SECONDS = Number(process.env.PROFILE_SECONDS ?? 8);
const CONNECTIONS = Number(process.env.PROFILE_CONNECTIONS ?? 8);
const INSPECTOR = 9339;

const upstream = await startUpstream({ port: 0, delayMs: 0, chunks: 6, apiKey: UPSTREAM_KEY });
const config = gatewayConfig(upstream.url, {
  limits: { max_body_bytes: 64 * 1024, first_byte_timeout_ms: 30000, stall_timeout_ms: 30000 },
});
const { Miniflare } = await import("miniflare");
const mf = new Miniflare({
  host: "127.0.0.1",
  port: 0,
  inspectorPort: INSPECTOR,
  modules: true,
  scriptPath: path.join(ROOT, "build/index.js"),
  modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
  compatibilityDate: "2025-09-01",
  kvNamespaces: ["KV"],
  bindings: { INFERGATE_CONFIG: JSON.stringify(config), ...EDGE_SECRETS },
  handleRuntimeStdio: (out, err) => {
    out.resume();
    err.resume();
  },
});
const base = (await mf.ready).origin;
const key = (await admin(base, "POST", "/admin/keys", { name: "profile", tenant: "p" })).body.key;

const targets = await (await fetch(`http://127.0.0.1:${INSPECTOR}/json`)).json();
const target = targets.find((t) => t.webSocketDebuggerUrl) ?? targets[0];
const ws = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((r, j) => {
  ws.once("open", r);
  ws.once("error", j);
});
let next = 1;
const pending = new Map();
ws.on("message", (m) => {
  const msg = JSON.parse(m.toString());
  if (msg.id && pending.has(msg.id)) {
    pending.get(msg.id)(msg);
    pending.delete(msg.id);
  }
});
const send = (method, params = {}) =>
  new Promise((r) => {
    const id = next++;
    pending.set(id, r);
    ws.send(JSON.stringify({ id, method, params }));
  });

const body = JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Say hello in a few words." }], max_tokens: 16 });
const dir = mkdtempSync(path.join(os.tmpdir(), "ig-prof-"));
const script = path.join(dir, "post.lua");
writeFileSync(
  script,
  ['wrk.method = "POST"', `wrk.body = ${JSON.stringify(body)}`, 'wrk.headers["Content-Type"] = "application/json"', `wrk.headers["Authorization"] = "Bearer ${key}"`].join("\n"),
);
const wrk = (s) => promisify(execFile)("wrk", ["-t", String(Math.min(2, CONNECTIONS)), "-c", String(CONNECTIONS), "-d", `${s}s`, "-s", script, `${base}/v1/chat/completions`]);
await wrk(2); // warm-up: JIT, key cache
await send("Profiler.enable");
await send("Profiler.setSamplingInterval", { interval: 100 });
await send("Profiler.start");
const { stdout } = await wrk(SECONDS);
const { result } = await send("Profiler.stop");
const requests = Number(stdout.match(/(\d+) requests in/)?.[1] ?? 0);

const profile = result.profile;
const dt = (profile.endTime - profile.startTime) / Math.max(1, profile.samples.length); // µs per sample
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map();
const category = new Map();
for (const id of profile.samples) {
  const n = byId.get(id);
  const f = n.callFrame;
  const name = f.functionName || "(anonymous)";
  const isWasm = f.url.endsWith(".wasm") || /^(\$|wasm-function)/.test(name) || f.url.includes("wasm://");
  const cat = name.startsWith("(") ? name : isWasm ? "wasm (the core and its bindings)" : "JS glue";
  category.set(cat, (category.get(cat) ?? 0) + dt);
  const label = `${name} ${isWasm ? "[wasm]" : f.url ? `[${path.basename(f.url)}:${f.lineNumber}]` : ""}`;
  self.set(label, (self.get(label) ?? 0) + dt);
}
const perReq = (us) => (requests ? (us / requests).toFixed(1) : "?");
const busy = [...category.entries()].filter(([c]) => c !== "(idle)").reduce((a, [, v]) => a + v, 0);
console.log(`# workerd CPU profile: ${requests} requests in ${SECONDS} s, ${CONNECTIONS} connections; ${perReq(busy)} µs sampled busy time per request\n`);
console.log("| category | µs per request | share of busy |\n|---|---|---|");
for (const [c, v] of [...category.entries()].sort((a, b) => b[1] - a[1])) {
  if (c === "(idle)") continue;
  console.log(`| ${c} | ${perReq(v)} | ${((100 * v) / busy).toFixed(1)} % |`);
}
console.log("\n| function (self time) | µs per request |\n|---|---|");
for (const [l, v] of [...self.entries()].filter(([l]) => !l.startsWith("(idle)")).sort((a, b) => b[1] - a[1]).slice(0, 30)) {
  console.log(`| ${l.replaceAll("|", "\\|")} | ${perReq(v)} |`);
}
ws.close();
await mf.dispose();
await upstream.close();
