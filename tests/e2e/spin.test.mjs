// Spin only: what the Spin build adds on top of the shared suite. The test
// host enforces spin.toml's allowed_outbound_hosts the way Spin does.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startStack, post, keyRecord, eventually } from "./harness.mjs";

const spinOnly = (process.env.INFERGATE_TARGET ?? "workers") !== "spin" && "Spin target only";

test("an upstream outside allowed_outbound_hosts is refused, cleanly", { skip: spinOnly }, async () => {
  // The config points at the local upstream; the manifest allows another origin.
  const stack = await startStack({ spinVars: { upstream_origin: "http://127.0.0.1:9", webhook_hosts: "http://127.0.0.1:9" } });
  try {
    await stack.seedKey("ig-e2e-spin-key", keyRecord("key_spin"));
    const res = await post(stack.base, "/v1/chat/completions", { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }, { key: "ig-e2e-spin-key" });
    assert.ok(res.status >= 500 && res.status < 600, `status ${res.status}`);
    const body = await res.json();
    assert.equal(typeof body.error?.code, "string");
    assert.equal(stack.upstream.requests.length, 0, "the refused request must never leave the host");
    await eventually(() => /HttpRequestDenied/.test(stack.logs()), 2000);
    assert.match(stack.logs(), /refused outbound request to http:\/\/127\.0\.0\.1:\d+: not in allowed_outbound_hosts/);
    assert.match(stack.logs(), /HttpRequestDenied/);
  } finally {
    await stack.close();
  }
});

test("the component's stderr is the log: one JSON line per request", { skip: spinOnly }, async () => {
  const stack = await startStack();
  try {
    const res = await fetch(stack.base + "/health", { headers: { "x-request-id": "spin-log-check" } });
    assert.equal(res.status, 200);
    await res.text();
    // Child-process output arrives on its own schedule: wait for the line.
    const line = await eventually(() =>
      stack
        .logs()
        .split("\n")
        .find((l) => l.includes('"spin-log-check"')),
    2000);
    assert.ok(line, "no log line for the request");
    assert.equal(JSON.parse(line).fields.path, "/health");
  } finally {
    await stack.close();
  }
});

// Spin KV has no expiry of its own: without a sweep, every cache entry and
// rate-limit window ever written would stay. 1,200 requests each store a
// cache entry that lives 1 s: the number of entries must level off at
// about what is live, not grow with every request.
test("the store stays flat under a soak of short-lived writes", { skip: spinOnly }, async (t) => {
  const stack = await startStack({ config: { cache: { enabled: true } }, upstream: { delayMs: 0 } });
  try {
    await stack.seedKey("ig-e2e-soak-key", keyRecord("key_soak"));
    const cached = async () => (await stack.kvKeys()).filter((k) => k.startsWith("v2:cache:")).length;
    const samples = [];
    const started = Date.now();
    const N = 1200;
    for (let i = 0; i < N; i++) {
      const res = await post(
        stack.base,
        "/v1/chat/completions",
        { model: "gpt-4o-mini", temperature: 0, max_tokens: 4, messages: [{ role: "user", content: `soak ${i}` }] },
        { key: "ig-e2e-soak-key", headers: { "x-infergate-cache-ttl": "1" } },
      );
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      if (i % 100 === 99) samples.push(await cached());
    }
    const rate = N / ((Date.now() - started) / 1000);
    const secondHalf = samples.slice(samples.length / 2);
    const firstHalf = samples.slice(0, samples.length / 2);
    const what = `cache entries every 100 requests: ${samples} at ${rate.toFixed(0)} req/s, 1 s TTL`;
    t.diagnostic(what);
    // About `rate` entries are live at once; the sweep lags a little.
    assert.ok(Math.max(...secondHalf) < 3 * rate + 100, what);
    assert.ok(Math.max(...secondHalf) <= 1.5 * Math.max(...firstHalf) + 50, `still growing: ${what}`);
  } finally {
    await stack.close();
  }
});
