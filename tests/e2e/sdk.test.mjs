// The official OpenAI Python SDK against the edge, with real runners behind
// it (tests/sdk/test_edge_openai_sdk.py). Needs INFERGATE_PYTHON from
// scripts/runner-env.sh.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { startStack, startRunner, admin, ROOT } from "./harness.mjs";

const CHAT = "local/smollm2-135m-instruct";
const EMBED = "local/all-minilm-l6-v2";

let stack, eu, us, real;
before(async () => {
  for (const v of ["INFERGATE_CHAT_MODEL_DIR", "INFERGATE_EMBED_MODEL_DIR"]) {
    assert.ok(process.env[v], `${v} is not set: run 'make setup', then 'source scripts/runner-env.sh'`);
  }
  eu = await startRunner();
  us = await startRunner();
  // The real models: SmolLM2-135M-Instruct and all-MiniLM-L6-v2.
  real = await startRunner({
    readyMs: 180000,
    extraArgs: ["--model-dir", process.env.INFERGATE_CHAT_MODEL_DIR, "--model-id", CHAT,
      "--embedding-model-dir", process.env.INFERGATE_EMBED_MODEL_DIR, "--embedding-model-id", EMBED],
  });
  const runner = (name, r, region, continent, models) => ({ name, url: `${r.url}/v1`, region, continent, models });
  stack = await startStack({
    configFn: (upstreamUrl, target) => ({
      providers: [
        { name: "local", kind: "openai", base_url: `${upstreamUrl}/v1`, api_key_secret: "LOCAL_UPSTREAM_KEY" },
        // The Anthropic double, for the Responses API over a Messages upstream.
        { name: "anthro", kind: "anthropic", base_url: `${upstreamUrl}/v1`, api_key_secret: "LOCAL_ANTHROPIC_KEY" },
        // The same double serving the Responses API itself: forwarded, not translated.
        { name: "native", kind: "openai", base_url: `${upstreamUrl}/v1`, api_key_secret: "LOCAL_UPSTREAM_KEY", responses_api: true },
      ],
      runners: [
        runner("runner-eu", eu, "eu", "EU", ["gpt-4o-mini", "local/tiny-gpt"]),
        runner("runner-us", us, "us", "NA", ["gpt-4o-mini", "local/tiny-gpt"]),
        runner("runner-real", real, "eu", "EU", [CHAT, EMBED, "smollm2"]),
      ],
      models: [
        { id: "gpt-4o-mini", targets: ["local"], upstream_model: "local/tiny-gpt", heavy_prompt_tokens: 200, context_window: 512, max_output_tokens: 400 },
        { id: "local/tiny-gpt", context_window: 512, max_output_tokens: 400 },
        { id: "claude-test", targets: ["anthro"], context_window: 8192, max_output_tokens: 1024 },
        { id: "gpt-4o-native", targets: ["native"], upstream_model: "gpt-4o-mini", context_window: 8192, max_output_tokens: 1024 },
        { id: CHAT, context_window: 8192, max_output_tokens: 2048 },
        { id: EMBED, context_window: 512, max_output_tokens: 1 }, // as make dev: the runner enforces the real 256
        // make dev's heavy-routing model: light to the provider, heavy to the runner.
        { id: "smollm2", targets: ["local"], upstream_model: CHAT, heavy_prompt_tokens: 1024, context_window: 8192, max_output_tokens: 2048 },
      ],
      routing: target === "spin" ? { region: "eu" } : {},
    }),
  });
});
after(async () => {
  await stack?.close();
  await eu?.kill();
  await us?.kill();
  await real?.kill();
});

test("openai-python: streaming and not, light and heavy, errors as SDK exceptions", async () => {
  const python = process.env.INFERGATE_PYTHON;
  assert.ok(python, "INFERGATE_PYTHON is not set: source scripts/runner-env.sh");
  const k = (await admin(stack.base, "POST", "/admin/keys", { name: "sdk", tenant: "sdk" })).body;
  const child = spawn(python, ["-m", "unittest", "-v", path.join(ROOT, "tests/sdk/test_edge_openai_sdk.py")], {
    env: { ...process.env, INFERGATE_BASE_URL: stack.base, INFERGATE_KEY: k.key },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const code = await new Promise((r) => child.on("exit", r));
  console.log(out.split("\n").map((l) => "# " + l).join("\n"));
  assert.equal(code, 0, out);
});
