// Rate limits under concurrency on each backend: ten requests at once on a
// key limited to 3 a minute admit exactly 3. On Workers the strict backend
// is the RATE_LIMITER Durable Object; on Spin it is wasi:keyvalue atomics,
// with the host running one request per component instance, so the ten
// requests are decided in ten different instances that share nothing but
// the store.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startStack, post, admin } from "./harness.mjs";

const chat = { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }], max_tokens: 16 };

async function tenAtOnce(backend, spinHostArgs) {
  const stack = await startStack({
    config: { rate_limits: { backend, tenants: { acme: { tokens_per_minute: 100000 } } } },
    upstream: { delayMs: 20, chunks: 2 },
    spinHostArgs,
  });
  try {
    const k = (await admin(stack.base, "POST", "/admin/keys", {
      name: "rpm3", tenant: "acme", requests_per_minute: 3, monthly_budget_usd: 100,
    })).body;
    const res = await Promise.all(Array.from({ length: 10 }, () => post(stack.base, "/v1/chat/completions", chat, { key: k.key })));
    const bodies = await Promise.all(res.map((r) => r.json()));
    const statuses = res.map((r) => r.status);
    const refused = bodies.filter((_, i) => statuses[i] === 429);
    const admitted = statuses.filter((s) => s === 200).length;
    return { admitted, statuses, refused, res, stack, key: k };
  } catch (e) {
    await stack.close();
    throw e;
  }
}

test("strict backend: 10 at once on an RPM-3 key admit exactly 3, the rest a 429 naming the limit", async () => {
  // One request per instance on Spin: every request is its own isolate.
  const { admitted, statuses, refused, res, stack, key } = await tenAtOnce("strict", ["--instance-concurrency", "1"]);
  try {
    assert.equal(admitted, 3, JSON.stringify(statuses));
    assert.equal(refused.length, 7);
    for (const b of refused) {
      assert.equal(b.error.code, "rate_limit_exceeded");
      assert.match(b.error.message, /requests of this API key: limit 3 per minute/);
    }
    const limited = res.find((r) => r.status === 429);
    assert.ok(Number(limited.headers.get("retry-after")) >= 1);
    const ok = res.find((r) => r.status === 200);
    assert.equal(ok.headers.get("x-ratelimit-limit-requests"), "3");
    // The admin API reads spend from the strict store (the model has no
    // price here, so nothing was spent).
    const spend = await admin(stack.base, "GET", `/admin/spend?key_id=${key.id}`);
    assert.equal(spend.status, 200, JSON.stringify(spend.body));
    assert.equal(spend.body.monthly.budget_usd, 100);
    assert.equal(spend.body.monthly.spent_usd, 0);
  } finally {
    await stack.close();
  }
});

test("kv backend: 10 at once in one isolate admit exactly 3", async () => {
  // On Spin, one instance: the one that created the key stays up (an
  // instance that had gone idle would make the ten start ten instances,
  // across which the KV backend is approximate by design).
  const { admitted, statuses, stack } = await tenAtOnce("kv", ["--idle-instance-ms", "60000"]);
  try {
    assert.equal(admitted, 3, JSON.stringify(statuses));
  } finally {
    await stack.close();
  }
});
