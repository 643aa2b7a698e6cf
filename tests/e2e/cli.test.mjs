// The operator CLI (`infergate keys ...`, `usage`, `spend`) against the
// running edge.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import path from "node:path";
import { existsSync } from "node:fs";
import { startStack, post, ROOT, ADMIN_TOKEN } from "./harness.mjs";

const run = promisify(execFile);
const BIN = path.join(ROOT, "target/debug/infergate");
let stack;
before(async () => {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run 'cargo build -p infergate-cli' (make test does)`);
  // Priced, so spend budgets have something to count: $0.001 a token.
  stack = await startStack({
    config: { models: [{ id: "gpt-4o-mini", targets: ["local"], context_window: 4096, max_output_tokens: 1024, price: { input_per_mtok: 1000, output_per_mtok: 1000 } }] },
  });
});
after(async () => stack && (await stack.close()));

const cli = async (...args) => {
  const { stdout } = await run(BIN, ["--url", stack.base, ...args], { env: { ...process.env, INFERGATE_ADMIN_TOKEN: ADMIN_TOKEN } });
  return JSON.parse(stdout);
};
const status = async (key) => {
  const r = await post(stack.base, "/v1/chat/completions", { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }, { key });
  await r.arrayBuffer();
  return r.status;
};

test("keys create | list | rotate | revoke, and usage", async () => {
  const created = await cli("keys", "create", "--name", "cli", "--tenant", "ops", "--rpm", "50", "--models", "gpt-4o-mini");
  assert.match(created.key, /^ig_/);
  assert.equal(created.requests_per_minute, 50);
  assert.deepEqual(created.models, ["gpt-4o-mini"]);
  assert.equal(await status(created.key), 200);
  const list = await cli("keys", "list");
  assert.ok(list.data.some((k) => k.id === created.id));
  assert.ok(!JSON.stringify(list).includes(created.key));
  const rotated = await cli("keys", "rotate", created.id, "--grace-seconds", "0");
  assert.equal(await status(rotated.key), 200);
  assert.equal(await status(created.key), 401);
  await cli("keys", "revoke", created.id);
  assert.equal(await status(rotated.key), 401);
  const usage = await cli("usage", "--key-id", created.id);
  assert.equal(usage.key_id, created.id);
  assert.ok(usage.total.requests >= 2);
});

test("errors are reported, not dumped", async () => {
  await assert.rejects(run(BIN, ["--url", stack.base, "--admin-token", "wrong", "keys", "list"]), (e) => {
    assert.match(e.stderr, /HTTP 401: Invalid admin token/);
    assert.ok(!e.stderr.includes("wrong"));
    return true;
  });
});

test("spend budgets: set at creation, refused once spent, shown and lifted", async () => {
  const created = await cli("keys", "create", "--name", "budget", "--tenant", "spenders", "--monthly-budget-usd", "0.001");
  assert.equal(created.monthly_budget_usd, 0.001);
  // The request that crosses the budget is served; the next is refused.
  assert.equal(await status(created.key), 200);
  const r = await post(stack.base, "/v1/chat/completions", { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }, { key: created.key });
  assert.equal(r.status, 429);
  const err = (await r.json()).error;
  assert.equal(err.type, "insufficient_quota");
  assert.equal(err.code, "insufficient_quota");
  assert.match(err.message, /monthly budget of this API key/);
  const spend = await cli("spend", "--key-id", created.id);
  assert.equal(spend.scope, "key");
  assert.equal(spend.monthly.budget_usd, 0.001);
  assert.ok(spend.monthly.spent_usd >= 0.001, JSON.stringify(spend));
  const lifted = await cli("keys", "budget", created.id, "--monthly-usd", "none", "--daily-usd", "100");
  assert.equal(lifted.monthly_budget_usd, null);
  assert.equal(lifted.daily_budget_usd, 100);
  // The key's record changed with it (this isolate at once).
  assert.equal(await status(created.key), 200);
});
