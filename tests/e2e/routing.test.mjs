// Routing across providers and a pool of real native runners, with faults:
// heavy prompts to the nearest runner, light ones to the upstream, failover
// before the first byte, SSE errors after it, circuits, slow clients, and
// the same conformance cases against every provider kind.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startStack, startRunner, post, readSse, admin, eventually, sleep, assertOpenAiError } from "./harness.mjs";

let stack, eu, us;
const HEAVY = 200; // tokens: prompt estimate + max_tokens above this go to runners

function routingConfig(upstreamUrl, target) {
  const runner = (name, r, region, continent, latitude, longitude) => ({
    name, url: `${r.url}/v1`, region, continent, latitude, longitude, models: ["gpt-4o-mini", "local/tiny-gpt"],
  });
  return {
    providers: [
      { name: "local", kind: "openai", base_url: `${upstreamUrl}/v1`, api_key_secret: "LOCAL_UPSTREAM_KEY" },
      { name: "anthro", kind: "anthropic", base_url: `${upstreamUrl}/v1`, api_key_secret: "LOCAL_ANTHROPIC_KEY" },
      { name: "nowhere", kind: "openai", base_url: "http://127.0.0.1:9/v1" },
    ],
    runners: [runner("runner-eu", eu, "eu", "EU", 50.1, 8.7), runner("runner-us", us, "us", "NA", 39.0, -77.5)],
    models: [
      // The runner serves the tiny model under its own name.
      { id: "gpt-4o-mini", targets: ["local"], upstream_model: "local/tiny-gpt", heavy_prompt_tokens: HEAVY, context_window: 512, max_output_tokens: 400 },
      { id: "local/tiny-gpt", context_window: 512, max_output_tokens: 400 },
      { id: "claude-test", targets: ["anthro"], context_window: 8192, max_output_tokens: 1024 },
      { id: "doomed", targets: ["@runners", "nowhere"], upstream_model: "local/tiny-gpt", context_window: 512, max_output_tokens: 400 },
    ],
    limits: { max_body_bytes: 64 * 1024, first_byte_timeout_ms: 5000, stall_timeout_ms: 3000, json_timeout_ms: 5000 },
    auth: { cache_ttl_ms: 1000, negative_cache_ttl_ms: 1000, cache_capacity: 1024 },
    // Spin has no request.cf: it is told its region.
    routing: { retries: 1, backoff_base_ms: 20, deadline_ms: 4000, circuit_failures: 2, circuit_cooldown_ms: 1500, ...(target === "spin" ? { region: "eu" } : {}) },
  };
}

before(async () => {
  eu = await startRunner();
  us = await startRunner();
  stack = await startStack({ configFn: routingConfig });
});
after(async () => {
  await stack?.close();
  await eu?.kill();
  await us?.kill();
});

async function key() {
  const r = await admin(stack.base, "POST", "/admin/keys", { name: "routing", tenant: "routing" });
  return r.body;
}
// Not deterministic, so never answered from the cache: every request here
// must really reach an upstream.
const chat = (extra = {}) => ({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Once upon a time" }], ...extra });
const NO_STORE = { "x-infergate-cache": "no-store" };
const heavy = (extra = {}) => chat({ max_tokens: HEAVY + 20, ...extra });
const light = (extra = {}) => chat({ max_tokens: 16, ...extra });

test("heavy prompts go to the nearest runner, light ones to the upstream; x-infergate-upstream says which", async () => {
  const k = await key();
  const l = await post(stack.base, "/v1/chat/completions", light(), { key: k.key });
  assert.equal(l.status, 200);
  assert.equal(l.headers.get("x-infergate-upstream"), "local");
  assert.match((await l.json()).choices[0].message.content, /^tok0/);
  const h = await post(stack.base, "/v1/chat/completions", heavy({ max_tokens: HEAVY + 20 }), { key: k.key });
  assert.equal(h.status, 200);
  assert.equal(h.headers.get("x-infergate-upstream"), "runner-eu");
  const body = await h.json();
  assert.ok(body.choices[0].message.content.length > 0);
  assert.doesNotMatch(body.choices[0].message.content, /tok0 tok1/);
  // The tiny model is sampled and may emit EOS: the count must agree with
  // how the answer ended.
  const finish = body.choices[0].finish_reason;
  if (finish === "length") assert.equal(body.usage.completion_tokens, HEAVY + 20);
  else {
    assert.equal(finish, "stop");
    assert.ok(body.usage.completion_tokens > 0 && body.usage.completion_tokens < HEAVY + 20, `${body.usage.completion_tokens} tokens`);
  }
  // A model only runners serve needs no threshold.
  const only = await post(stack.base, "/v1/completions", { model: "local/tiny-gpt", prompt: "Hello", max_tokens: 8, stream: true }, { key: k.key });
  assert.equal(only.headers.get("x-infergate-upstream"), "runner-eu");
  const { events } = await readSse(only);
  assert.equal(events.at(-1).data, "[DONE]");
  assert.ok(events.length >= 9, `${events.length} events`);
});

test("a runner killed before the first byte: the next target serves the request", async () => {
  const k = await key();
  const t0 = performance.now();
  const warm = await post(stack.base, "/v1/chat/completions", heavy({ stream: true, max_tokens: HEAVY + 5 }), { key: k.key });
  const normalTtfb = performance.now() - t0;
  await readSse(warm);
  const port = eu.port;
  await eu.kill("SIGKILL");
  const t1 = performance.now();
  const res = await post(stack.base, "/v1/chat/completions", heavy({ stream: true, max_tokens: HEAVY + 5 }), { key: k.key });
  const failoverTtfb = performance.now() - t1;
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-infergate-upstream"), "runner-us");
  const { events, error } = await readSse(res);
  assert.equal(error, null);
  assert.equal(events.at(-1).data, "[DONE]");
  console.log(`# failover: first byte after ${failoverTtfb.toFixed(1)} ms with runner-eu dead vs ${normalTtfb.toFixed(1)} ms healthy (added ${(failoverTtfb - normalTtfb).toFixed(1)} ms)`);
  eu = await startRunner({ port });
});

test("a runner killed after the first byte: SSE error event, clean close, usage so far accounted", async () => {
  const slow = await startRunner({ extraArgs: ["--step-delay-ms", "40"] });
  const cfg = { ...stack.config, runners: [{ name: "runner-slow", url: `${slow.url}/v1`, region: "eu", models: ["local/tiny-gpt"] }] };
  const local = await startStack({ configFn: () => cfg });
  try {
    const k = (await admin(local.base, "POST", "/admin/keys", { name: "s", tenant: "s" })).body;
    const res = await post(local.base, "/v1/completions", { model: "local/tiny-gpt", prompt: "Hello", max_tokens: 200, stream: true }, { key: k.key });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let text = "";
    while (!text.includes("data: {", text.indexOf("data: {") + 1)) text += dec.decode((await reader.read()).value, { stream: true });
    await slow.kill("SIGKILL");
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += dec.decode(value, { stream: true });
    }
    const frames = text.split("\n\n").filter(Boolean).map((f) => f.replace(/^data: /, ""));
    assertOpenAiError(JSON.parse(frames.at(-1)), { code: "upstream_interrupted" });
    assert.ok(!text.includes("[DONE]"));
    const usage = await eventually(async () => {
      const r = await admin(local.base, "GET", `/admin/usage?key_id=${k.id}`);
      return r.body.total.requests === 1 && r.body.total.completion_tokens > 0 ? r.body.total : null;
    }, 5000);
    assert.ok(usage, "usage so far was not accounted");
    assert.ok(usage.completion_tokens < 200);
  } finally {
    await local.close();
    await slow.kill();
  }
});

test("all targets down: 503 in OpenAI's shape within the deadline", async () => {
  const dead = await startRunner();
  const cfg = { ...stack.config, runners: [{ name: "runner-dead", url: `${dead.url}/v1`, region: "eu", models: ["local/tiny-gpt"] }] };
  await dead.kill("SIGKILL");
  const local = await startStack({ configFn: () => cfg });
  try {
    const k = (await admin(local.base, "POST", "/admin/keys", { name: "d", tenant: "d" })).body;
    const t0 = performance.now();
    const res = await post(local.base, "/v1/chat/completions", chat({ model: "doomed", max_tokens: 8 }), { key: k.key });
    const took = performance.now() - t0;
    assert.equal(res.status, 503);
    assert.ok(res.headers.get("retry-after"));
    assertOpenAiError(await res.json(), { type: "service_unavailable", code: "no_upstream_available" });
    assert.ok(took < 4000 + 500, `took ${took} ms, deadline 4000 ms`);
  } finally {
    await local.close();
  }
});

test("the circuit opens after repeated failures and closes again after a successful probe", async () => {
  const k = await key();
  const port = eu.port;
  await eu.kill("SIGKILL");
  // Two failed attempts (one request with one retry) open runner-eu's circuit.
  const r1 = await post(stack.base, "/v1/chat/completions", heavy(), { key: k.key });
  assert.equal(r1.headers.get("x-infergate-upstream"), "runner-us");
  await r1.arrayBuffer();
  const stats = (await admin(stack.base, "GET", "/admin/stats")).body;
  const circuit = (st, name) => st.circuits.find((c) => c.upstream === name)?.state;
  assert.equal(circuit(stats, "runner-eu"), "open");
  // While open, runner-eu is skipped at once.
  const r2 = await post(stack.base, "/v1/chat/completions", heavy({ max_tokens: HEAVY + 2 }), { key: k.key });
  assert.equal(r2.headers.get("x-infergate-upstream"), "runner-us");
  await r2.arrayBuffer();
  eu = await startRunner({ port });
  await sleep(1600); // the cooldown
  const r3 = await post(stack.base, "/v1/chat/completions", heavy({ max_tokens: HEAVY + 3 }), { key: k.key });
  assert.equal(r3.headers.get("x-infergate-upstream"), "runner-eu", "the half-open probe should go to runner-eu");
  await r3.arrayBuffer();
  const after = (await admin(stack.base, "GET", "/admin/stats")).body;
  assert.equal(circuit(after, "runner-eu"), "closed");
});

test("a slow client does not stall other streams", async () => {
  const k = await key();
  // A long stream nobody reads: it fills its buffers and waits.
  const stuck = await post(stack.base, "/v1/chat/completions", { model: "claude-test", stream: true, max_tokens: 1000, messages: [{ role: "user", content: 'MOCK{"chunks":1000,"delay_ms":0}' }] }, { key: k.key });
  assert.equal(stuck.status, 200);
  const t0 = performance.now();
  const others = await Promise.all(
    Array.from({ length: 5 }, async () => {
      const r = await post(stack.base, "/v1/chat/completions", light({ stream: true }), { key: k.key });
      const { events } = await readSse(r);
      return events.at(-1).data;
    }),
  );
  const took = performance.now() - t0;
  assert.deepEqual(others, Array(5).fill("[DONE]"));
  assert.ok(took < 3000, `other streams took ${took} ms`);
  await stuck.body.cancel();
});

// The same cases against every provider kind: OpenAI-compatible (the
// upstream double), Anthropic (the double's Messages API, translated) and a
// real runner.
const KINDS = [
  { kind: "openai", model: "gpt-4o-mini", max: 6, upstream: /^local$/ },
  { kind: "anthropic", model: "claude-test", max: 6, upstream: /^anthro$/ },
  { kind: "runner", model: "local/tiny-gpt", max: 6, upstream: /^runner-(eu|us)$/ },
];
for (const c of KINDS) {
  test(`conformance (${c.kind}): stream and fold agree, usage adds up, finish_reason is OpenAI's`, async () => {
    const k = await key();
    // Greedy, so the stream and the JSON answer must be the same text; the
    // upstream double is told to produce more than max_tokens.
    const body = { model: c.model, messages: [{ role: "system", content: "be brief" }, { role: "user", content: 'Tell me a story MOCK{"chunks":12}' }], max_tokens: c.max, temperature: 0 };
    const s = await post(stack.base, "/v1/chat/completions", { ...body, stream: true, stream_options: { include_usage: true } }, { key: k.key, headers: NO_STORE });
    assert.equal(s.status, 200);
    assert.match(s.headers.get("x-infergate-upstream"), c.upstream);
    const { events } = await readSse(s);
    assert.equal(events.at(-1).data, "[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data));
    assert.equal(chunks[0].object, "chat.completion.chunk");
    assert.equal(chunks[0].choices[0].delta.role, "assistant");
    const streamed = chunks.map((ch) => ch.choices[0]?.delta?.content ?? "").join("");
    const finish = chunks.map((ch) => ch.choices[0]?.finish_reason).filter(Boolean);
    assert.deepEqual(finish, ["length"]);
    const usage = chunks.at(-1).usage;
    assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
    assert.equal(usage.completion_tokens, c.max);
    const j = await post(stack.base, "/v1/chat/completions", body, { key: k.key, headers: NO_STORE });
    const folded = await j.json();
    assert.equal(folded.object, "chat.completion");
    assert.equal(folded.choices[0].message.content, streamed);
    assert.equal(folded.choices[0].finish_reason, "length");
    assert.deepEqual(folded.usage.completion_tokens, usage.completion_tokens);
  });
}

for (const c of KINDS.filter((k) => k.kind !== "runner")) {
  test(`conformance (${c.kind}): streamed tool calls keep ids, names and arguments`, async () => {
    const k = await key();
    const args = { city: "Paris", units: "metric", days: [1, 2, 3], note: 'quote " and \\ backslash' };
    const body = {
      model: c.model,
      max_tokens: 50,
      messages: [{ role: "user", content: `MOCK${JSON.stringify({ tool_call: { name: "get_weather", arguments: args }, chunks: 7 })}` }],
      tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }],
    };
    const s = await post(stack.base, "/v1/chat/completions", { ...body, stream: true }, { key: k.key });
    const { events } = await readSse(s);
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data));
    const calls = chunks.flatMap((ch) => ch.choices[0]?.delta?.tool_calls ?? []);
    assert.ok(calls.length >= 3, `arguments should stream in pieces, got ${calls.length} fragments`);
    assert.ok(calls[0].id, "first fragment carries the id");
    assert.equal(calls[0].function.name, "get_weather");
    assert.ok(calls.every((f) => f.index === 0));
    const joined = calls.map((f) => f.function?.arguments ?? "").join("");
    assert.deepEqual(JSON.parse(joined), args);
    assert.equal(chunks.map((ch) => ch.choices[0]?.finish_reason).filter(Boolean)[0], "tool_calls");
    const j = await (await post(stack.base, "/v1/chat/completions", body, { key: k.key })).json();
    const call = j.choices[0].message.tool_calls[0];
    assert.equal(call.function.name, "get_weather");
    assert.deepEqual(JSON.parse(call.function.arguments), args);
    assert.equal(j.choices[0].finish_reason, "tool_calls");
  });
}
