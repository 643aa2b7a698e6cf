// End-to-end harness: brings up the local upstream and the edge under test,
// and hands the tests a base URL. The suite is written against HTTP only, so
// the same tests run against every edge build; INFERGATE_TARGET picks which
// (`workers`: the built worker in workerd via Miniflare, the default;
// `spin`: the Spin component in the wasmtime test host, tests/spin-host).
import { createHash } from "node:crypto";
import { spawn } from "node:child_process";
import { readFileSync, existsSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { startUpstream } from "../upstream/server.mjs";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const UPSTREAM_KEY = "sk-upstream-e2e";
export const ADMIN_TOKEN = "admin-e2e-token-0123456789";
export const WEBHOOK_SECRET = "whsec-e2e-0123456789";
export const RUNNER_SECRET = "runner-e2e-secret-0123456789";
export const ANTHROPIC_KEY = "sk-ant-upstream-e2e";
/** Secrets by the name the config gives them; every edge gets the same. */
export const EDGE_SECRETS = {
  LOCAL_UPSTREAM_KEY: UPSTREAM_KEY,
  INFERGATE_ADMIN_TOKEN: ADMIN_TOKEN,
  INFERGATE_WEBHOOK_SECRET: WEBHOOK_SECRET,
  INFERGATE_RUNNER_SECRET: RUNNER_SECRET,
  LOCAL_ANTHROPIC_KEY: ANTHROPIC_KEY,
};

export function gatewayConfig(upstreamUrl, overrides = {}) {
  return {
    providers: [
      { name: "local", kind: "openai", base_url: `${upstreamUrl}/v1`, api_key_secret: "LOCAL_UPSTREAM_KEY" },
    ],
    models: [
      { id: "gpt-4o-mini", targets: ["local"], context_window: 4096, max_output_tokens: 1024 },
      { id: "aliased", targets: ["local"], upstream_model: "upstream-name", context_window: 4096, max_output_tokens: 1024 },
      { id: "text-embedding-3-small", targets: ["local"], context_window: 8191, max_output_tokens: 1 },
    ],
    limits: { max_body_bytes: 64 * 1024, first_byte_timeout_ms: 2000, stall_timeout_ms: 1500, json_timeout_ms: 2500 },
    auth: { cache_ttl_ms: 1000, negative_cache_ttl_ms: 1000, cache_capacity: 1024 },
    // Fault-injection tests share one upstream, so the circuit breaker is
    // effectively off here; routing.test.mjs turns it on.
    routing: { retries: 1, backoff_base_ms: 50, deadline_ms: 3000, circuit_failures: 1000 },
    ...overrides,
  };
}

export function keyRecord(id, extra = {}) {
  return { v: 1, id, tenant: extra.tenant ?? "t-" + id, name: id, revoked: false, ...extra };
}

export const sha256hex = (s) => createHash("sha256").update(s).digest("hex");

/** One edge in workerd. Edges given the same `kvPersist` folder share KV
 * (like isolates of one deployment), which the rate-limit bench uses. */
export async function startWorkers(upstream, config, { kvPersist, quiet = false } = {}) {
  const { Miniflare } = await import("miniflare");
  // Worker console output is collected (tests assert what logs must not
  // contain) and echoed only when INFERGATE_E2E_LOGS=1. `quiet` discards it,
  // as the benchmarks do for every edge they compare.
  let logs = "";
  const collect = (stream) => stream.on("data", (d) => {
    if (quiet) return;
    logs += d.toString();
    if (process.env.INFERGATE_E2E_LOGS === "1") process.stderr.write(d);
  });
  const mf = new Miniflare({
    handleRuntimeStdio(stdout, stderr) {
      collect(stdout);
      collect(stderr);
    },
    host: "127.0.0.1",
    port: 0,
    modules: true,
    scriptPath: path.join(ROOT, "build/index.js"),
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
    compatibilityDate: "2025-09-01",
    kvNamespaces: ["KV"],
    ...(kvPersist ? { kvPersist } : {}),
    // The strict rate-limit store, as wrangler.toml declares it.
    durableObjects: { RATE_LIMITER: { className: "RateLimiter", useSQLite: true } },
    // A client in Frankfurt, as Cloudflare's request.cf would describe it.
    cf: { continent: "EU", colo: "FRA", country: "DE", latitude: "50.11", longitude: "8.68" },
    bindings: {
      INFERGATE_CONFIG: JSON.stringify(config),
      ...EDGE_SECRETS,
    },
  });
  const url = await mf.ready;
  const kv = await mf.getKVNamespace("KV");
  return {
    base: url.origin,
    seedKey: async (plaintext, record) => kv.put(`v1:key:${sha256hex(plaintext)}`, JSON.stringify(record)),
    // Raw KV access from outside the edge's isolate.
    kvGet: (key) => kv.get(key),
    kvPut: (key, value) => kv.put(key, value),
    logs: () => logs,
    // Every stored key and value, for asserting what is (not) persisted.
    kvDump: async () => {
      const out = {};
      let cursor;
      do {
        const page = await kv.list({ cursor });
        for (const k of page.keys) out[k.name] = await kv.get(k.name);
        cursor = page.list_complete ? undefined : page.cursor;
      } while (cursor);
      return out;
    },
    close: () => mf.dispose(),
  };
}

/** The Spin variable a config secret name maps to (see src/adapters/spin.rs). */
export const spinVariable = (name) => name.toLowerCase().replace(/[^a-z0-9_]/g, "_");

/** The wasmtime test host (`scripts/spin-host.sh` builds it) serving the
 * component of `manifest` with these Spin variables. */
export async function spawnSpinHost({ manifest = path.join(ROOT, "spin.toml"), vars = {}, quiet = false, args: extraArgs = [] } = {}) {
  const cache = process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache");
  const bin = process.env.INFERGATE_SPIN_HOST || path.join(cache, "infergate/spin-host-target/release/infergate-spin-host");
  const env = { ...process.env };
  delete env.SPIN_PORT; // it would override --listen
  for (const [k, v] of Object.entries(vars)) env[`SPIN_VARIABLE_${k.toUpperCase()}`] = v;
  const args = ["--manifest", manifest, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", ...extraArgs];
  const child = spawn(bin, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let logs = "";
  let base, adminBase;
  const ready = new Promise((resolve, reject) => {
    const collect = (d) => {
      if (quiet && base && adminBase) return;
      logs += d.toString();
      if (process.env.INFERGATE_E2E_LOGS === "1") process.stderr.write(d);
      base ??= logs.match(/serving on (http:\/\/\S+)/)?.[1];
      adminBase ??= logs.match(/admin on (http:\/\/\S+)/)?.[1];
      if (base && adminBase) resolve();
    };
    child.stdout.on("data", collect);
    child.stderr.on("data", collect);
    child.on("error", (e) => reject(new Error(`${bin}: ${e.message}; run scripts/spin-host.sh`)));
    child.on("exit", (code) => reject(new Error(`spin host exited (${code}) before serving:\n${logs}`)));
    setTimeout(() => reject(new Error(`spin host did not come up within 30 s:\n${logs}`)), 30000).unref();
  });
  const exited = new Promise((r) => child.on("exit", r));
  try {
    await ready;
  } catch (e) {
    child.kill();
    throw e;
  }
  return {
    base,
    adminBase,
    logs: () => logs,
    close: async () => {
      child.kill();
      await exited;
    },
  };
}

/** The Spin component (spin.toml's source) served by the wasmtime test host
 * (`scripts/spin-host.sh` builds it), with the config and secrets as Spin
 * variables. Keys are seeded through the host's test-only admin listener. */
export async function startSpin(upstream, config, { spinVars = {}, quiet = false, hostArgs = [] } = {}) {
  const vars = {
    infergate_config: JSON.stringify(config),
    upstream_origin: upstream.url,
    // Runners and task webhooks listen on random local ports.
    webhook_hosts: "http://127.0.0.1:*",
    ...Object.fromEntries(Object.entries(EDGE_SECRETS).map(([k, v]) => [spinVariable(k), v])),
    ...spinVars,
  };
  const host = await spawnSpinHost({ vars, quiet, args: hostArgs });
  const kvUrl = (key) => `${host.adminBase}/kv/${encodeURIComponent(key)}`;
  return {
    base: host.base,
    seedKey: async (plaintext, record) => {
      const res = await fetch(kvUrl(`v1:key:${sha256hex(plaintext)}`), { method: "PUT", body: JSON.stringify(record) });
      if (!res.ok) throw new Error(`seeding a key: ${res.status}`);
    },
    // Raw access to the store every instance of the host shares.
    kvGet: async (key) => {
      const res = await fetch(kvUrl(key));
      if (res.status === 404) return null;
      if (!res.ok) throw new Error(`reading ${key}: ${res.status}`);
      return res.text();
    },
    kvPut: async (key, value) => {
      const res = await fetch(kvUrl(key), { method: "PUT", body: value });
      if (!res.ok) throw new Error(`writing ${key}: ${res.status}`);
    },
    logs: host.logs,
    kvKeys: async () => (await (await fetch(`${host.adminBase}/kv`)).text()).split("\n").filter(Boolean),
    kvDump: async () => {
      const keys = (await (await fetch(`${host.adminBase}/kv`)).text()).split("\n").filter(Boolean);
      const out = {};
      for (const k of keys) out[k] = await (await fetch(kvUrl(k))).text();
      return out;
    },
    close: host.close,
  };
}

/** Start the upstream and the edge. Returns {base, upstream, seedKey, close}. */
export async function startStack({ config: configOverrides = {}, configFn, upstream: upOpts = {}, kvPersist, spinVars, spinHostArgs } = {}) {
  const upstream = await startUpstream({ port: 0, delayMs: 30, chunks: 6, apiKey: UPSTREAM_KEY, anthropicKey: ANTHROPIC_KEY, ...upOpts });
  const target = process.env.INFERGATE_TARGET ?? "workers";
  // `configFn(upstreamUrl, target)` replaces the default config entirely.
  const config = configFn ? configFn(upstream.url, target) : gatewayConfig(upstream.url, configOverrides);
  let edge;
  if (target === "workers") edge = await startWorkers(upstream, config, { kvPersist });
  else if (target === "spin") edge = await startSpin(upstream, config, { spinVars, hostArgs: spinHostArgs });
  else throw new Error(`unknown INFERGATE_TARGET ${target}`);
  return {
    ...edge,
    upstream,
    target,
    config,
    close: async () => {
      await edge.close();
      await upstream.close();
    },
  };
}

/** POST JSON to the edge with a key. */
export async function post(base, p, body, { key, headers = {}, signal } = {}) {
  return fetch(base + p, {
    method: "POST",
    signal,
    headers: {
      "content-type": "application/json",
      ...(key ? { authorization: `Bearer ${key}` } : {}),
      ...headers,
    },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** Read an SSE response, recording each event's arrival time. */
export async function readSse(res) {
  const events = [];
  const decoder = new TextDecoder();
  let buf = "";
  const reader = res.body.getReader();
  let error = null;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const frame = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = frame
          .split("\n")
          .filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).trimStart())
          .join("\n");
        const event = frame.split("\n").find((l) => l.startsWith("event:"))?.slice(6).trim();
        if (data) events.push({ data, event, at: performance.now() });
      }
    }
  } catch (e) {
    error = e;
  }
  return { events, rest: buf, error };
}

/** Call the admin API. */
export async function admin(base, method, p, body, token = ADMIN_TOKEN) {
  const res = await fetch(base + p, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Poll `fn` until it returns a truthy value or `ms` pass. */
export async function eventually(fn, ms = 5000, step = 50) {
  const until = Date.now() + ms;
  let last;
  while (Date.now() < until) {
    last = await fn();
    if (last) return last;
    await sleep(step);
  }
  return last;
}

export function assertOpenAiError(body, { type, param, code } = {}) {
  if (!body || typeof body.error !== "object") throw new Error(`not an OpenAI error: ${JSON.stringify(body)}`);
  const e = body.error;
  for (const k of ["message", "type", "param", "code"]) {
    if (!(k in e)) throw new Error(`error lacks '${k}': ${JSON.stringify(body)}`);
  }
  if (typeof e.message !== "string" || !e.message) throw new Error("empty message");
  if (type !== undefined && e.type !== type) throw new Error(`type ${e.type} != ${type}`);
  if (param !== undefined && e.param !== param) throw new Error(`param ${e.param} != ${param}`);
  if (code !== undefined && e.code !== code) throw new Error(`code ${e.code} != ${code}`);
}

/**
 * Start a real native runner (target/debug/infergate-runner) with the test
 * model. Needs ORT_DYLIB_PATH and INFERGATE_MODEL_DIR (scripts/runner-env.sh).
 * Returns {url, port, kill(signal), exited}.
 */
export async function startRunner({ port = 0, extraArgs = [], readyMs = 30000 } = {}) {
  const bin = path.join(ROOT, "target/debug/infergate-runner");
  for (const [name, v] of [["runner binary", bin], ["ORT_DYLIB_PATH", process.env.ORT_DYLIB_PATH], ["INFERGATE_MODEL_DIR", process.env.INFERGATE_MODEL_DIR]]) {
    if (!v || !existsSync(v)) throw new Error(`${name} missing (${v}); run 'make setup' and 'cargo build -p infergate-runner', then 'source scripts/runner-env.sh'`);
  }
  const child = spawn(bin, ["--port", String(port), ...extraArgs], {
    env: { ...process.env, INFERGATE_RUNNER_SECRET: RUNNER_SECRET, RUST_LOG: process.env.RUST_LOG ?? "warn,infergate_runner=info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  const exited = new Promise((r) => child.on("exit", r));
  const url = await new Promise((resolve, reject) => {
    const onData = (d) => {
      log += d.toString();
      const m = log.match(/listening on (http:\/\/[0-9.]+:\d+)/);
      if (m) resolve(m[1]);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => reject(new Error(`runner exited (${code}): ${log}`)));
    setTimeout(() => reject(new Error(`runner did not start: ${log}`)), 30000);
  });
  const until = Date.now() + readyMs;
  for (;;) {
    try {
      if ((await fetch(url + "/ready")).ok) break;
    } catch {}
    if (Date.now() > until) throw new Error(`runner did not become ready within ${readyMs} ms: ${log}`);
    await sleep(100);
  }
  return {
    url,
    port: Number(new URL(url).port),
    log: () => log,
    exited,
    kill: async (signal = "SIGKILL") => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
        await exited;
      }
    },
  };
}

export const readJson = (f) => JSON.parse(readFileSync(f, "utf8"));
