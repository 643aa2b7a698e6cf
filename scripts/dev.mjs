// `make dev`: the local stack. Starts the local upstream (OpenAI and
// Anthropic wire formats), a native runner serving the real models
// (SmolLM2-135M-Instruct for chat, all-MiniLM-L6-v2 for embeddings, converted
// by scripts/setup-runner.sh),
// seeds a dev API key into the edge's local KV, and runs the edge: by default the built
// worker in workerd through `wrangler dev`; with `--target spin` (`make
// dev-spin`) the Spin component in the wasmtime test host (tests/spin-host).
// Everything it starts is stopped on Ctrl-C.
import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const TARGET = process.argv.includes("--target") ? process.argv[process.argv.indexOf("--target") + 1] : "workers";
if (!["workers", "spin"].includes(TARGET)) throw new Error(`unknown --target ${TARGET}`);
const PORT = TARGET === "spin" ? Number(process.env.SPIN_PORT ?? 3000) : Number(process.env.PORT ?? 8787);
const UPSTREAM_PORT = Number(process.env.UPSTREAM_PORT ?? 9100);
const UPSTREAM_KEY = "sk-local-upstream";
const ANTHROPIC_KEY = "sk-ant-local-upstream";
const RUNNER_PORT = Number(process.env.RUNNER_PORT ?? 8090);
const RUNNER_SECRET = `runner-${randomBytes(16).toString("hex")}`;
const DEV_KEY = process.env.INFERGATE_DEV_KEY || `ig-dev-${randomBytes(12).toString("hex")}`;
const ADMIN_TOKEN = process.env.INFERGATE_ADMIN_TOKEN || `adm-${randomBytes(16).toString("hex")}`;
const WEBHOOK_SECRET = process.env.INFERGATE_WEBHOOK_SECRET || `whsec-${randomBytes(16).toString("hex")}`;
const WRANGLER = path.join(ROOT, "node_modules/.bin/wrangler");
// The converted model folders (scripts/runner-env.sh exports them).
const CHAT_MODEL_DIR = process.env.INFERGATE_CHAT_MODEL_DIR;
const EMBED_MODEL_DIR = process.env.INFERGATE_EMBED_MODEL_DIR;
if (!CHAT_MODEL_DIR || !EMBED_MODEL_DIR) {
  console.error("INFERGATE_CHAT_MODEL_DIR / INFERGATE_EMBED_MODEL_DIR are not set: run `make dev` (it sources scripts/runner-env.sh)");
  process.exit(1);
}
const CHAT_MODEL = "local/smollm2-135m-instruct";
const EMBED_MODEL = "local/all-minilm-l6-v2";
const env = {
  ...process.env,
  WRANGLER_SEND_METRICS: "false",
  WRANGLER_SEND_ERROR_REPORTS: "false",
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
};

const children = [];
function start(cmd, args, name) {
  const child = spawn(cmd, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  const prefix = (s) => s.toString().split("\n").filter(Boolean).map((l) => `[${name}] ${l}`).join("\n") + "\n";
  child.stdout.on("data", (d) => process.stdout.write(prefix(d)));
  child.stderr.on("data", (d) => process.stderr.write(prefix(d)));
  child.on("exit", (code, sig) => {
    if (!stopping) {
      console.error(`${name} exited (${code ?? sig}); stopping the stack`);
      stop(1);
    }
  });
  children.push(child);
  return child;
}

let stopping = false;
function stop(code = 0) {
  stopping = true;
  for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
  setTimeout(() => process.exit(code), 500);
}
process.on("SIGINT", () => stop(0));
process.on("SIGTERM", () => stop(0));

async function waitFor(url, ms = 30000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not come up within ${ms} ms`);
}

const config = {
  providers: [
    { name: "local-upstream", kind: "openai", base_url: `http://127.0.0.1:${UPSTREAM_PORT}/v1`, api_key_secret: "LOCAL_UPSTREAM_KEY" },
    { name: "local-anthropic", kind: "anthropic", base_url: `http://127.0.0.1:${UPSTREAM_PORT}/v1`, api_key_secret: "LOCAL_ANTHROPIC_KEY" },
  ],
  runners: [
    { name: "local-runner", url: `http://127.0.0.1:${RUNNER_PORT}/v1`, region: "local", models: [CHAT_MODEL, EMBED_MODEL, "smollm2"] },
  ],
  models: [
    { id: "gpt-4o-mini", targets: ["local-upstream"], context_window: 128000, max_output_tokens: 16384, owned_by: "local-upstream" },
    { id: "claude-3-5-haiku-latest", targets: ["local-anthropic"], context_window: 200000, max_output_tokens: 8192, owned_by: "local-anthropic" },
    { id: "text-embedding-3-small", targets: ["local-upstream"], context_window: 8191, max_output_tokens: 1, owned_by: "local-upstream" },
    // Served by the runner only: SmolLM2-135M-Instruct and all-MiniLM-L6-v2.
    { id: CHAT_MODEL, context_window: 8192, max_output_tokens: 2048, owned_by: "local-runner" },
    // The edge's token estimate is conservative (about 4 characters a token,
    // where MiniLM's WordPiece averages more), so it gets headroom here; the
    // runner enforces the model's real 256-token limit with its tokenizer.
    { id: EMBED_MODEL, context_window: 512, max_output_tokens: 1, owned_by: "local-runner" },
    // Heavy-prompt routing: light requests (estimated prompt + max_tokens up
    // to 1024) go to the provider target, heavy ones to the runner pool.
    // `x-infergate-upstream` names the target that answered.
    { id: "smollm2", targets: ["local-upstream"], upstream_model: CHAT_MODEL, heavy_prompt_tokens: 1024, context_window: 8192, max_output_tokens: 2048, owned_by: "local-runner" },
  ],
  routing: { region: "local" },
};

const secrets = {
  LOCAL_UPSTREAM_KEY: UPSTREAM_KEY,
  LOCAL_ANTHROPIC_KEY: ANTHROPIC_KEY,
  INFERGATE_RUNNER_SECRET: RUNNER_SECRET,
  INFERGATE_ADMIN_TOKEN: ADMIN_TOKEN,
  INFERGATE_WEBHOOK_SECRET: WEBHOOK_SECRET,
};
const record = { v: 1, id: "key_dev", tenant: "dev", name: "dev key", revoked: false };
const devKeyEntry = [`v1:key:${createHash("sha256").update(DEV_KEY).digest("hex")}`, JSON.stringify(record)];

/** Workers: vars in .dev.vars (gitignored), the key in wrangler's local KV. */
function startWorkersEdge() {
  writeFileSync(
    path.join(ROOT, ".dev.vars"),
    [`INFERGATE_CONFIG='${JSON.stringify(config)}'`, ...Object.entries(secrets).map(([k, v]) => `${k}=${v}`), ""].join("\n"),
  );
  const put = spawnSync(WRANGLER, ["kv", "key", "put", "--local", "--binding", "KV", ...devKeyEntry], {
    cwd: ROOT,
    env,
    encoding: "utf8",
  });
  if (put.status !== 0) {
    console.error(put.stderr || put.stdout);
    process.exit(1);
  }
  start(WRANGLER, ["dev", "--local", "--ip", "127.0.0.1", "--port", String(PORT), "--show-interactive-dev-session=false"], "edge");
  return "workerd via wrangler, local KV in .wrangler/state";
}

/** Spin: Spin variables through the environment (a config secret name maps to
 * its lower-case variable), KV in .spin/kv.json, served by the test host. */
function startSpinEdge() {
  const cache = process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache");
  const bin = process.env.INFERGATE_SPIN_HOST || path.join(cache, "infergate/spin-host-target/release/infergate-spin-host");
  const vars = {
    infergate_config: JSON.stringify(config),
    upstream_origin: `http://127.0.0.1:${UPSTREAM_PORT}`,
    webhook_hosts: "http://127.0.0.1:*", // also lets the local runner through
    ...Object.fromEntries(Object.entries(secrets).map(([k, v]) => [k.toLowerCase().replace(/[^a-z0-9_]/g, "_"), v])),
  };
  for (const [k, v] of Object.entries(vars)) env[`SPIN_VARIABLE_${k.toUpperCase()}`] = v;
  mkdirSync(path.join(ROOT, ".spin"), { recursive: true });
  const args = ["--manifest", "spin.toml", "--listen", `127.0.0.1:${PORT}`, "--kv-file", ".spin/kv.json", "--kv-seed", devKeyEntry.join("=")];
  start(bin, args, "edge");
  return "Spin component in the wasmtime test host, KV in .spin/kv.json";
}

start(process.execPath, [path.join(ROOT, "tests/upstream/server.mjs"), "--port", String(UPSTREAM_PORT), "--api-key", UPSTREAM_KEY, "--anthropic-key", ANTHROPIC_KEY, "--delay-ms", "40"], "upstream");
await waitFor(`http://127.0.0.1:${UPSTREAM_PORT}/__health`);
// The runner verifies the edge's signatures, as in production.
env.INFERGATE_RUNNER_SECRET = RUNNER_SECRET;
start(
  path.join(ROOT, "target/release/infergate-runner"),
  ["--port", String(RUNNER_PORT), "--model-dir", CHAT_MODEL_DIR, "--model-id", CHAT_MODEL, "--embedding-model-dir", EMBED_MODEL_DIR, "--embedding-model-id", EMBED_MODEL, "--intra-threads", "2"],
  "runner",
);
await waitFor(`http://127.0.0.1:${RUNNER_PORT}/ready`, 120000);
delete env.INFERGATE_RUNNER_SECRET;
const edgeInfo = TARGET === "spin" ? startSpinEdge() : startWorkersEdge();
await waitFor(`http://127.0.0.1:${PORT}/health`, 60000);

const base = `http://127.0.0.1:${PORT}`;
console.log(`
infergate dev stack is up
  edge      ${base}  (${edgeInfo})
  upstream  http://127.0.0.1:${UPSTREAM_PORT}  (local OpenAI + Anthropic double: gpt-4o-mini, claude-3-5-haiku-latest)
  runner    http://127.0.0.1:${RUNNER_PORT}  (ONNX Runtime: ${CHAT_MODEL}, ${EMBED_MODEL}; signed requests only)
  models    ${CHAT_MODEL} (runner), ${EMBED_MODEL} (runner, embeddings),
            smollm2 (light prompts -> local-upstream, heavy ones -> local-runner)

  dev API key:  ${DEV_KEY}
  admin token:  ${ADMIN_TOKEN}   (infergate keys list --url ${base} --admin-token ...)

  curl ${base}/v1/chat/completions -H "Authorization: Bearer ${DEV_KEY}" \\
    -H "content-type: application/json" \\
    -d '{"model":"${CHAT_MODEL}","messages":[{"role":"user","content":"Hello, who are you?"}],"max_tokens":128,"stream":true}'

Ctrl-C stops everything.`);
