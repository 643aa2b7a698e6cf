// Rate limits under concurrency on each backend: ten requests at once on a
// key limited to 3 a minute admit exactly 3. On Workers the strict backend
// is the RATE_LIMITER Durable Object; on Spin it is wasi:keyvalue atomics,
// with the host running one request per component instance, so the ten
// requests are decided in ten different instances that share nothing but
// the store.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { createHash, createHmac } from "node:crypto";
import { startStack, post, admin, gatewayConfig, eventually, sleep, WEBHOOK_SECRET } from "./harness.mjs";

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

// On Spin the KV backend is exact per component instance only, and a burst
// starts instances: the host (like Spin) hands a request to a new instance
// whenever the busy one is not blocked on I/O. So this runs on Workers,
// where one workerd is one isolate; on Spin the strict backend is the exact
// one (above).
const spin = (process.env.INFERGATE_TARGET ?? "workers") === "spin";
test("kv backend: 10 at once in one isolate admit exactly 3", { skip: spin && "per instance on Spin, see above" }, async () => {
  const { admitted, statuses, stack } = await tenAtOnce("kv");
  try {
    assert.equal(admitted, 3, JSON.stringify(statuses));
  } finally {
    await stack.close();
  }
});

/** Records the POSTs it gets. */
async function hookDouble() {
  const calls = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      calls.push({ headers: req.headers, body, url: req.url });
      res.end("ok");
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    calls,
    url: `http://127.0.0.1:${server.address().port}/hooks/budget`,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

for (const backend of ["kv", "strict"]) {
  test(`${backend} backend: a $0.001 budget is refused once spent, and its alerts fire once per threshold, signed`, async () => {
    const hook = await hookDouble();
    const stack = await startStack({
      configFn: (url) => {
        const c = gatewayConfig(url, {
          rate_limits: { backend },
          budgets: { alert_webhook_url: hook.url },
        });
        // $1,000 per million tokens: each token costs $0.001.
        c.models[0].price = { input_per_mtok: 1000, output_per_mtok: 1000 };
        return c;
      },
    });
    try {
      const k = (await admin(stack.base, "POST", "/admin/keys", { name: "b", tenant: "alerts", monthly_budget_usd: 0.001 })).body;
      // The request that crosses the budget is served: its cost is known
      // only when it ends. The next is refused.
      const first = await post(stack.base, "/v1/chat/completions", chat, { key: k.key });
      assert.equal(first.status, 200);
      await first.json();
      assert.ok(await eventually(() => hook.calls.length >= 3, 5000), `alerts: ${hook.calls.length}`);
      let refused;
      assert.ok(await eventually(async () => {
        refused = await post(stack.base, "/v1/chat/completions", chat, { key: k.key });
        return refused.status === 429;
      }, 5000));
      const err = (await refused.json()).error;
      assert.equal(err.code, "insufficient_quota");
      assert.match(err.message, /monthly budget of this API key/);
      await sleep(1500);
      assert.equal(hook.calls.length, 3, "one alert per threshold, no more");
      const bodies = hook.calls.map((c) => JSON.parse(c.body));
      assert.deepEqual(bodies.map((b) => b.threshold_percent).sort((a, b) => a - b), [50, 80, 100]);
      for (const c of hook.calls) {
        const ts = c.headers["x-infergate-timestamp"];
        const hash = createHash("sha256").update(c.body).digest("hex");
        const want = "v1=" + createHmac("sha256", WEBHOOK_SECRET).update(`v1\n${ts}\nPOST\n/hooks/budget\n${hash}`).digest("hex");
        assert.equal(c.headers["x-infergate-signature"], want);
        assert.ok(!c.body.includes(WEBHOOK_SECRET));
      }
      assert.equal(bodies[0].key_id, k.id);
    } finally {
      await stack.close();
      hook.close();
    }
  });
}
