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
