// The official OpenAI Python SDK against the edge, with real runners behind
// it (tests/sdk/test_edge_openai_sdk.py). Needs INFERGATE_PYTHON from
// scripts/runner-env.sh.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { startStack, startRunner, admin, ROOT } from "./harness.mjs";

let stack, eu, us;
before(async () => {
  eu = await startRunner();
  us = await startRunner();
  const runner = (name, r, region, continent) => ({ name, url: `${r.url}/v1`, region, continent, models: ["gpt-4o-mini", "local/tiny-gpt"] });
  stack = await startStack({
    configFn: (upstreamUrl, target) => ({
      providers: [{ name: "local", kind: "openai", base_url: `${upstreamUrl}/v1`, api_key_secret: "LOCAL_UPSTREAM_KEY" }],
      runners: [runner("runner-eu", eu, "eu", "EU"), runner("runner-us", us, "us", "NA")],
      models: [
        { id: "gpt-4o-mini", targets: ["local"], upstream_model: "local/tiny-gpt", heavy_prompt_tokens: 200, context_window: 512, max_output_tokens: 400 },
        { id: "local/tiny-gpt", context_window: 512, max_output_tokens: 400 },
      ],
      routing: target === "spin" ? { region: "eu" } : {},
    }),
  });
});
after(async () => {
  await stack?.close();
  await eu?.kill();
  await us?.kill();
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
