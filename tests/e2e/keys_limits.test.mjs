// Keys, rate limits, cache, usage and tasks, end to end against the built
// edge. Keys are created through the admin API, as an operator would.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import http from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { startStack, startWorkers, post, readSse, admin, eventually, sleep, assertOpenAiError, sha256hex, ADMIN_TOKEN, WEBHOOK_SECRET } from "./harness.mjs";

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => stack && (await stack.close()));

const chat = (content = "Say hello", extra = {}) => ({ model: "gpt-4o-mini", messages: [{ role: "user", content }], ...extra });
async function newKey(extra = {}) {
  const r = await admin(stack.base, "POST", "/admin/keys", { name: "t", tenant: "acme", ...extra });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body;
}

test("admin API: token required, key shown once, only its hash stored", async () => {
  const denied = await admin(stack.base, "GET", "/admin/keys", undefined, "wrong-token");
  assert.equal(denied.status, 401);
  assertOpenAiError(denied.body, { code: "invalid_admin_token" });
  const bad = await admin(stack.base, "POST", "/admin/keys", { name: "x", tenant: "has space" });
  assert.equal(bad.status, 400);
  assertOpenAiError(bad.body, { param: "tenant" });
  const unknownField = await admin(stack.base, "POST", "/admin/keys", { name: "x", tenant: "t", rpm: 3 });
  assert.equal(unknownField.status, 400);

  const created = await newKey({ requests_per_minute: 100 });
  assert.match(created.key, /^ig_[0-9a-f]{48}$/);
  assert.match(created.id, /^key_/);
  const list = await admin(stack.base, "GET", "/admin/keys");
  assert.equal(list.status, 200);
  const listed = list.body.data.find((k) => k.id === created.id);
  assert.ok(listed);
  assert.equal(listed.hint, "…" + created.key.slice(-4));
  assert.ok(!JSON.stringify(list.body).includes(created.key));
  if (stack.kvDump) {
    const dump = JSON.stringify(await stack.kvDump());
    assert.ok(!dump.includes(created.key), "plaintext key persisted");
    assert.ok(dump.includes(createHash("sha256").update(created.key).digest("hex")));
  }
  const ok = await post(stack.base, "/v1/chat/completions", chat(), { key: created.key });
  assert.equal(ok.status, 200);
  await ok.json();
  for (const s of [created.key, ADMIN_TOKEN]) assert.ok(!stack.logs().includes(s), "secret in logs");
});

/** The status of `GET /v1/models` with `key`: authenticated, no upstream. */
async function modelsStatus(base, key) {
  const r = await fetch(`${base}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
  await r.arrayBuffer();
  return r.status;
}

test("the isolate that revokes a key refuses it at once, though it had it cached", async () => {
  const k = await newKey();
  assert.equal(await modelsStatus(stack.base, k.key), 200); // now cached in the isolate
  assert.equal((await admin(stack.base, "DELETE", `/admin/keys/${k.id}`)).status, 200);
  assert.equal(await modelsStatus(stack.base, k.key), 401, "the revoking isolate still honoured the key from its cache");
});

test("another isolate honours a revoked key it had cached until auth.cache_ttl_ms (1000) has passed, then refuses it", async () => {
  const kvPersist = await mkdtemp(path.join(os.tmpdir(), "infergate-revoke-"));
  // Edge A caches the key; the revocation comes from outside A, so only
  // A's cache TTL can make A refuse it. A is a fresh edge: on Spin one
  // instance of a fresh host serves all of A's requests below (the host
  // retires an instance after 128 requests or 1 s idle).
  const a = await startStack({ kvPersist });
  const ttl = a.config.auth.cache_ttl_ms;
  let b;
  try {
    let revoke;
    if (a.target === "workers") {
      // B: a second workerd process on the same KV, as another isolate of
      // the deployment; the revocation goes through its admin API.
      b = await startWorkers(a.upstream, a.config, { kvPersist });
      revoke = async (k) => {
        assert.equal((await admin(b.base, "DELETE", `/admin/keys/${k.id}`)).status, 200);
        // B reads the revocation back from KV at once: from here on, a 200
        // from A can only come from A's cache.
        assert.equal(await modelsStatus(b.base, k.key), 401);
      };
    } else {
      // The test host's instances share one in-memory store, but the host
      // picks the instance for each request, so the DELETE cannot be sent
      // to another one; and two hosts share no store (`--kv-file` is read
      // once at start and rewritten whole on each change). So the
      // revocation is written straight into the shared store, as another
      // instance's DELETE /admin/keys/{id} writes it: the key's record
      // with `revoked: true`.
      revoke = async (k) => {
        const name = `v1:key:${sha256hex(k.key)}`;
        const record = JSON.parse(await a.kvGet(name));
        assert.equal(record.id, k.id);
        await a.kvPut(name, JSON.stringify({ ...record, revoked: true }));
      };
    }
    const created = await admin(a.base, "POST", "/admin/keys", { name: "ttl", tenant: "acme" });
    assert.equal(created.status, 201);
    const k = created.body;
    const warmStart = Date.now();
    assert.equal(await modelsStatus(a.base, k.key), 200); // A caches the key
    const warmEnd = Date.now();
    await revoke(k);
    const probes = [];
    while (Date.now() < warmEnd + ttl + 300) {
      const sentAt = Date.now();
      const status = await modelsStatus(a.base, k.key);
      probes.push({ sentAt, answeredAt: Date.now(), status });
      await sleep(20);
    }
    // A cached the key between warmStart and warmEnd: a probe answered
    // before warmStart + ttl was authenticated from the cache, one sent
    // after warmEnd + ttl from KV.
    const seen = JSON.stringify(probes.map((p) => [p.sentAt - warmStart, p.status]));
    const honoured = probes.filter((p) => p.answeredAt < warmStart + ttl);
    const refused = probes.filter((p) => p.sentAt >= warmEnd + ttl);
    assert.ok(honoured.length > 0, `the revocation took until ${probes[0]?.sentAt - warmStart} ms; nothing left to probe within the TTL`);
    assert.ok(honoured.every((p) => p.status === 200), `A refused the key within its TTL, so it did not serve it from its cache ([ms after caching, status]: ${seen})`);
    assert.ok(refused.length > 0, `no probe after the TTL: ${seen}`);
    assert.ok(refused.every((p) => p.status === 401), `A still honoured the key after its TTL ([ms after caching, status]: ${seen})`);
  } finally {
    await b?.close();
    await a.close();
    await rm(kvPersist, { recursive: true, force: true });
  }
});

test("rotation: the new key works at once, the old one until the grace period ends", async () => {
  const k = await newKey();
  const rot = await admin(stack.base, "POST", `/admin/keys/${k.id}/rotate`, { grace_seconds: 2 });
  assert.equal(rot.status, 200);
  assert.notEqual(rot.body.key, k.key);
  const call = async (key) => {
    const r = await post(stack.base, "/v1/chat/completions", chat(), { key });
    await r.arrayBuffer();
    return r.status;
  };
  assert.equal(await call(rot.body.key), 200);
  assert.equal(await call(k.key), 200);
  await sleep(2300);
  assert.equal(await call(k.key), 401);
  assert.equal(await call(rot.body.key), 200);
});

test("requests/min: 429 with Retry-After at the limit, OpenAI's headers before it", async () => {
  const k = await newKey({ requests_per_minute: 3 });
  const statuses = [];
  let last;
  for (let i = 0; i < 4; i++) {
    last = await post(stack.base, "/v1/chat/completions", chat(), { key: k.key });
    statuses.push(last.status);
    if (i === 0) {
      assert.equal(last.headers.get("x-ratelimit-limit-requests"), "3");
      assert.equal(last.headers.get("x-ratelimit-remaining-requests"), "2");
      assert.match(last.headers.get("x-ratelimit-reset-requests"), /^(\d+ms|[\d.]+s|\d+m\d+s)$/);
    }
    if (i < 3) await last.arrayBuffer();
  }
  assert.deepEqual(statuses, [200, 200, 200, 429]);
  const retry = Number(last.headers.get("retry-after"));
  assert.ok(retry >= 1 && retry <= 60, `retry-after ${retry}`);
  assertOpenAiError(await last.json(), { type: "rate_limit_error", code: "rate_limit_exceeded" });
});

test("tokens/min: reservation = prompt + max_tokens, corrected to real usage afterwards", async () => {
  const k = await newKey({ tokens_per_minute: 100 });
  const r1 = await post(stack.base, "/v1/chat/completions", chat("hi", { max_tokens: 60 }), { key: k.key });
  assert.equal(r1.status, 200);
  assert.equal(r1.headers.get("x-ratelimit-limit-tokens"), "100");
  const remaining = Number(r1.headers.get("x-ratelimit-remaining-tokens"));
  assert.ok(remaining <= 40, `remaining ${remaining}: the reservation must include max_tokens`);
  const used = (await r1.json()).usage.total_tokens;
  assert.ok(used < 20);
  // Once the first answer is accounted, its unused reservation is released,
  // so a second request of the same size fits (it would not without it).
  const status = await eventually(async () => {
    const r = await post(stack.base, "/v1/chat/completions", chat("hi", { max_tokens: 60 }), { key: k.key });
    await r.arrayBuffer();
    return r.status === 200 ? 200 : null;
  }, 3000);
  assert.equal(status, 200);
  const big = await post(stack.base, "/v1/chat/completions", chat("hi", { max_tokens: 500 }), { key: k.key });
  assert.equal(big.status, 429);
  assertOpenAiError(await big.json(), { code: "request_too_large" });
});

test("cache: a second identical deterministic request is a HIT, as JSON and as SSE", async () => {
  const k = await newKey();
  const body = chat("cache me please", { temperature: 0 });
  const before = stack.upstream.requests.length;
  const miss = await post(stack.base, "/v1/chat/completions", body, { key: k.key });
  assert.equal(miss.headers.get("x-infergate-cache"), "MISS");
  const missBody = await miss.json();
  const hit = await eventually(async () => {
    const r = await post(stack.base, "/v1/chat/completions", body, { key: k.key });
    return r.headers.get("x-infergate-cache") === "HIT" ? r : (await r.arrayBuffer(), null);
  }, 3000);
  assert.ok(hit, "no HIT");
  const hitBody = await hit.json();
  assert.equal(hitBody.choices[0].message.content, missBody.choices[0].message.content);
  assert.deepEqual(hitBody.usage.total_tokens, missBody.usage.total_tokens);
  // The same entry replayed as SSE, with the usage chunk when asked for.
  const sse = await post(stack.base, "/v1/chat/completions", { ...body, stream: true, stream_options: { include_usage: true } }, { key: k.key });
  assert.equal(sse.headers.get("x-infergate-cache"), "HIT");
  assert.match(sse.headers.get("content-type"), /^text\/event-stream/);
  const { events } = await readSse(sse);
  assert.equal(events.at(-1).data, "[DONE]");
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data));
  assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? "").join(""), missBody.choices[0].message.content);
  assert.equal(chunks.at(-1).usage.total_tokens, missBody.usage.total_tokens);
  assert.equal(stack.upstream.requests.length, before + 1, "a HIT must not reach the upstream");
});

test("cache: streamed MISS is stored after its terminal event and served to a JSON request", async () => {
  const k = await newKey();
  const body = chat("stream then json", { seed: 7 });
  const s = await post(stack.base, "/v1/chat/completions", { ...body, stream: true }, { key: k.key });
  assert.equal(s.headers.get("x-infergate-cache"), "MISS");
  const { events } = await readSse(s);
  const text = events.slice(0, -1).map((e) => JSON.parse(e.data).choices[0]?.delta?.content ?? "").join("");
  const hit = await eventually(async () => {
    const r = await post(stack.base, "/v1/chat/completions", body, { key: k.key });
    return r.headers.get("x-infergate-cache") === "HIT" ? r : (await r.arrayBuffer(), null);
  }, 3000);
  assert.ok(hit);
  assert.equal((await hit.json()).choices[0].message.content, text);
});

test("cache: no HIT across tenants; BYPASS for sampling and no-store; opt-in by TTL header", async () => {
  const a = await newKey({ tenant: "tenant-a" });
  const b = await newKey({ tenant: "tenant-b" });
  const body = chat("tenant isolation", { temperature: 0 });
  const r1 = await post(stack.base, "/v1/chat/completions", body, { key: a.key });
  await r1.json();
  await eventually(async () => {
    const r = await post(stack.base, "/v1/chat/completions", body, { key: a.key });
    await r.arrayBuffer();
    return r.headers.get("x-infergate-cache") === "HIT";
  }, 3000);
  const other = await post(stack.base, "/v1/chat/completions", body, { key: b.key });
  assert.equal(other.headers.get("x-infergate-cache"), "MISS");
  await other.arrayBuffer();
  const sampled = await post(stack.base, "/v1/chat/completions", chat("random", { temperature: 1 }), { key: a.key });
  assert.equal(sampled.headers.get("x-infergate-cache"), "BYPASS");
  await sampled.arrayBuffer();
  const noStore = await post(stack.base, "/v1/chat/completions", body, { key: a.key, headers: { "x-infergate-cache": "no-store" } });
  assert.equal(noStore.headers.get("x-infergate-cache"), "BYPASS");
  await noStore.arrayBuffer();
  const optIn = await post(stack.base, "/v1/chat/completions", chat("opt in", { temperature: 1 }), { key: a.key, headers: { "x-infergate-cache-ttl": "120" } });
  assert.equal(optIn.headers.get("x-infergate-cache"), "MISS");
  await optIn.arrayBuffer();
});

test("cache: an aborted stream is never cached", async () => {
  const k = await newKey();
  const body = chat('abort me MOCK{"chunks":10,"delay_ms":100}', { temperature: 0, stream: true });
  const ac = new AbortController();
  const res = await post(stack.base, "/v1/chat/completions", body, { key: k.key, headers: {} , signal: ac.signal });
  const reader = res.body.getReader();
  await reader.read();
  ac.abort();
  await reader.cancel().catch(() => {});
  await sleep(1500); // the upstream would have finished by now
  const again = await post(stack.base, "/v1/chat/completions", { ...body, stream: false }, { key: k.key });
  assert.equal(again.headers.get("x-infergate-cache"), "MISS");
  await again.arrayBuffer();
});

test("usage totals equal the upstream's usage, streaming included; a client that leaves is still accounted", async () => {
  const k = await newKey();
  let prompt = 0;
  let completion = 0;
  for (const stream of [false, true, false, true]) {
    const r = await post(stack.base, "/v1/chat/completions", chat(`usage run ${stream} MOCK{"chunks":${stream ? 5 : 3}}`, stream ? { stream, stream_options: { include_usage: true } } : {}), { key: k.key });
    let usage;
    if (stream) usage = JSON.parse((await readSse(r)).events.at(-2).data).usage;
    else usage = (await r.json()).usage;
    prompt += usage.prompt_tokens;
    completion += usage.completion_tokens;
  }
  const report = await eventually(async () => {
    const r = await admin(stack.base, "GET", `/admin/usage?key_id=${k.id}`);
    return r.body.total.requests === 4 && r.body.total.prompt_tokens === prompt ? r.body : null;
  }, 5000);
  assert.ok(report, "usage never converged");
  assert.equal(report.total.prompt_tokens, prompt);
  assert.equal(report.total.completion_tokens, completion);
  assert.equal(report.total.requests, 4);
  assert.equal(report.data.length, 1);
  assert.match(report.data[0].hour, /^\d{4}-\d\d-\d\dT\d\d:00:00Z$/);
  // A streaming client that hangs up early is still accounted, with the
  // output it received so far.
  const leaver = await newKey();
  const ac = new AbortController();
  const res = await post(stack.base, "/v1/chat/completions", chat('leave MOCK{"chunks":6,"delay_ms":80}', { stream: true }), { key: leaver.key, signal: ac.signal });
  const reader = res.body.getReader();
  await reader.read();
  ac.abort();
  await reader.cancel().catch(() => {});
  const left = await eventually(async () => {
    const r = await admin(stack.base, "GET", `/admin/usage?key_id=${leaver.id}`);
    return r.body.total.requests === 1 ? r.body : null;
  }, 5000);
  assert.ok(left, "the abandoned request was not accounted");
  assert.ok(left.total.completion_tokens >= 1 && left.total.completion_tokens < 6, JSON.stringify(left.total));
});

// A task's webhook is redelivered only after a failed attempt: 1 s after
// the first, 2 s after the second, three attempts in all (see
// src/gateway/tasks.rs). Checks for extra deliveries wait out that whole
// schedule, plus slack for the post-response work and the clocks.
const WEBHOOK_RETRIES_MS = 1000 + 2000;
const WEBHOOK_SLACK_MS = 700;

/** A webhook receiver answering `statuses` in turn (the last one
 * repeats), recording each call and when it arrived. */
async function webhookDouble(statuses = [200]) {
  const calls = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      calls.push({ headers: req.headers, body, url: req.url, at: Date.now() });
      res.statusCode = statuses[Math.min(calls.length, statuses.length) - 1];
      res.end(res.statusCode < 300 ? "ok" : "try later");
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    calls,
    url: `http://127.0.0.1:${server.address().port}/hooks/infergate`,
    // The edge may hold a keep-alive connection open.
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** Wait until the retry schedule that starts with `first` is over. */
const outlastRetries = (first) => sleep(first.at + WEBHOOK_RETRIES_MS + WEBHOOK_SLACK_MS - Date.now());

function assertSignedWebhook(c) {
  const ts = c.headers["x-infergate-timestamp"];
  const bodyHash = createHash("sha256").update(c.body).digest("hex");
  const expect = "v1=" + createHmac("sha256", WEBHOOK_SECRET).update(`v1\n${ts}\nPOST\n/hooks/infergate\n${bodyHash}`).digest("hex");
  assert.equal(c.headers["x-infergate-signature"], expect);
}

test("a task completes, is readable only by its key, and its webhook fires once, signed", async () => {
  const hook = await webhookDouble([200]);
  try {
    const k = await newKey();
    const other = await newKey();
    const sub = await post(stack.base, "/v1/tasks", { ...chat("task please"), webhook_url: hook.url }, { key: k.key });
    assert.equal(sub.status, 202);
    const task = await sub.json();
    assert.match(task.id, /^task_/);
    assert.equal(task.status, "queued");
    const done = await eventually(async () => {
      const r = await fetch(`${stack.base}/v1/tasks/${task.id}`, { headers: { authorization: `Bearer ${k.key}` } });
      const b = await r.json();
      return b.status === "completed" ? b : null;
    }, 5000);
    assert.ok(done, "task never completed");
    assert.equal(done.result.object, "chat.completion");
    assert.equal(done.result.choices[0].message.content, "tok0 tok1 tok2 tok3 tok4 tok5");
    const foreign = await fetch(`${stack.base}/v1/tasks/${task.id}`, { headers: { authorization: `Bearer ${other.key}` } });
    assert.equal(foreign.status, 404);
    assert.ok(await eventually(() => hook.calls.length >= 1, 3000), "the webhook never fired");
    await outlastRetries(hook.calls[0]);
    assert.equal(hook.calls.length, 1, "webhook must fire exactly once");
    const c = hook.calls[0];
    assertSignedWebhook(c);
    assert.equal(JSON.parse(c.body).id, task.id);
    assert.equal(JSON.parse(c.body).status, "completed");
    const badHook = await post(stack.base, "/v1/tasks", { ...chat(), webhook_url: "ftp://x" }, { key: k.key });
    assert.equal(badHook.status, 400);
    assertOpenAiError(await badHook.json(), { param: "webhook_url" });
  } finally {
    hook.close();
  }
});

test("a webhook answered 503 is redelivered once, 1 s later, and not again after the 2xx", async () => {
  const hook = await webhookDouble([503, 200]);
  try {
    const k = await newKey();
    const sub = await post(stack.base, "/v1/tasks", { ...chat("task with a flaky hook"), webhook_url: hook.url }, { key: k.key });
    assert.equal(sub.status, 202);
    const task = await sub.json();
    assert.ok(await eventually(() => hook.calls.length >= 2, 6000), `${hook.calls.length} deliveries: a failed one must be retried`);
    await outlastRetries(hook.calls[0]);
    assert.equal(hook.calls.length, 2, "one failed delivery, one retry, nothing after the 2xx");
    const gap = hook.calls[1].at - hook.calls[0].at;
    assert.ok(gap >= 950 && gap < 2000, `the retry came ${gap} ms after the first attempt, not after the 1 s backoff`);
    for (const c of hook.calls) {
      assertSignedWebhook(c);
      assert.equal(JSON.parse(c.body).id, task.id);
      assert.equal(JSON.parse(c.body).status, "completed");
    }
  } finally {
    hook.close();
  }
});
