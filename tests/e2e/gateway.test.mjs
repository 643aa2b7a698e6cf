// The edge's core path, end to end: an HTTP client → the built edge → the
// local upstream. Runs against whichever build INFERGATE_TARGET names.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startStack, post, readSse, assertOpenAiError, keyRecord, UPSTREAM_KEY } from "./harness.mjs";

const KEY = "ig-e2e-live-key";
const REVOKED = "ig-e2e-revoked-key";
const LIMITED = "ig-e2e-limited-key";
let stack;

before(async () => {
  stack = await startStack();
  await stack.seedKey(KEY, keyRecord("key_live"));
  await stack.seedKey(REVOKED, keyRecord("key_revoked", { revoked: true }));
  await stack.seedKey(LIMITED, keyRecord("key_limited", { models: ["text-embedding-3-small"] }));
});
after(async () => stack && (await stack.close()));

const chat = (extra = {}) => ({
  model: "gpt-4o-mini",
  messages: [{ role: "user", content: "Say hello" }],
  ...extra,
});

test("health and ready", async () => {
  const h = await fetch(stack.base + "/health");
  assert.equal(h.status, 200);
  assert.equal((await h.json()).status, "ok");
  const r = await fetch(stack.base + "/ready");
  assert.equal(r.status, 200);
});

test("non-streaming chat is the upstream's own JSON answer, with usage", async () => {
  const res = await post(stack.base, "/v1/chat/completions", chat(), { key: KEY });
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.object, "chat.completion");
  assert.equal(body.choices[0].message.role, "assistant");
  assert.equal(body.choices[0].message.content, "tok0 tok1 tok2 tok3 tok4 tok5");
  assert.equal(body.choices[0].finish_reason, "stop");
  assert.equal(body.usage.completion_tokens, 6);
  assert.equal(body.usage.prompt_tokens, 2);
  // The upstream saw our provider key, not the client's, and was asked
  // for JSON, as the client was.
  const seen = stack.upstream.requests.at(-1);
  assert.equal(seen.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
  assert.notEqual(seen.body.stream, true);
  assert.equal(seen.body.stream_options, undefined);
  assert.equal(seen.headers.accept?.includes("event-stream") ?? false, false);
});

test("a streaming client's upstream is asked to stream, with usage", async () => {
  const res = await post(stack.base, "/v1/chat/completions", chat({ stream: true }), { key: KEY });
  assert.equal(res.status, 200);
  await res.text();
  const seen = stack.upstream.requests.at(-1);
  assert.equal(seen.body.stream, true);
  assert.equal(seen.body.stream_options.include_usage, true);
});

test("x-request-id is accepted and returned; one is minted otherwise", async () => {
  const a = await post(stack.base, "/v1/chat/completions", chat(), { key: KEY, headers: { "x-request-id": "trace-123" } });
  assert.equal(a.headers.get("x-request-id"), "trace-123");
  await a.arrayBuffer();
  const b = await post(stack.base, "/v1/chat/completions", chat(), { key: KEY });
  assert.match(b.headers.get("x-request-id"), /^req_[0-9a-f]{32}$/);
  await b.arrayBuffer();
  const c = await fetch(stack.base + "/health", { headers: { "x-request-id": "bad id <script>" } });
  assert.match(c.headers.get("x-request-id"), /^req_/);
});

test("streaming chat arrives chunk by chunk, spread over time", async () => {
  const res = await post(stack.base, "/v1/chat/completions", chat({ stream: true, messages: [{ role: "user", content: 'hi MOCK{"chunks":6,"delay_ms":80}' }] }), { key: KEY });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^text\/event-stream/);
  const { events, error } = await readSse(res);
  assert.equal(error, null);
  assert.equal(events.at(-1).data, "[DONE]");
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data));
  const text = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
  assert.equal(text, "tok0 tok1 tok2 tok3 tok4 tok5");
  // No usage chunk and no usage field: the client did not ask for them.
  assert.ok(chunks.every((c) => !("usage" in c)), "usage leaked to a client that did not ask");
  // Chunks are forwarded as they arrive: the content chunks span at least
  // most of the upstream's 5 × 80 ms of inter-chunk delay.
  const contentTimes = events.filter((e) => e.data.includes('"content":"')).map((e) => e.at);
  const spread = contentTimes.at(-1) - contentTimes[0];
  assert.ok(spread >= 250, `chunks arrived within ${spread.toFixed(0)} ms: buffered?`);
  const gaps = contentTimes.slice(1).map((t, i) => t - contentTimes[i]);
  assert.ok(gaps.filter((g) => g >= 40).length >= 3, `gaps ${gaps.map((g) => g.toFixed(0))}`);
});

test("stream_options.include_usage yields the usage chunk last", async () => {
  const res = await post(stack.base, "/v1/chat/completions", chat({ stream: true, stream_options: { include_usage: true } }), { key: KEY });
  const { events } = await readSse(res);
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data));
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage.completion_tokens, 6);
  assert.ok(chunks.slice(0, -1).every((c) => c.usage === null));
});

test("legacy completions and embeddings proxy through", async () => {
  const c = await post(stack.base, "/v1/completions", { model: "gpt-4o-mini", prompt: "Once upon", max_tokens: 4 }, { key: KEY });
  assert.equal(c.status, 200);
  const cb = await c.json();
  assert.equal(cb.object, "text_completion");
  assert.equal(cb.choices[0].text, "tok0 tok1 tok2 tok3");
  assert.equal(cb.choices[0].finish_reason, "length");
  const e = await post(stack.base, "/v1/embeddings", { model: "text-embedding-3-small", input: ["a", "b"] }, { key: KEY });
  assert.equal(e.status, 200);
  const eb = await e.json();
  assert.equal(eb.data.length, 2);
  assert.equal(eb.data[1].index, 1);
  assert.ok(Array.isArray(eb.data[0].embedding));
});

test("unknown fields pass through and the model name is mapped", async () => {
  const res = await post(stack.base, "/v1/chat/completions", { ...chat(), model: "aliased", brand_new_param: { x: 1 }, store: true }, { key: KEY });
  assert.equal(res.status, 200);
  await res.json();
  const seen = stack.upstream.requests.at(-1).body;
  assert.equal(seen.model, "upstream-name");
  assert.deepEqual(seen.brand_new_param, { x: 1 });
  assert.equal(seen.store, true);
});

test("GET /v1/models lists the key's models", async () => {
  const all = await (await fetch(stack.base + "/v1/models", { headers: { authorization: `Bearer ${KEY}` } })).json();
  assert.equal(all.object, "list");
  assert.deepEqual(all.data.map((m) => m.id).sort(), ["aliased", "gpt-4o-mini", "text-embedding-3-small"]);
  const some = await (await fetch(stack.base + "/v1/models", { headers: { authorization: `Bearer ${LIMITED}` } })).json();
  assert.deepEqual(some.data.map((m) => m.id), ["text-embedding-3-small"]);
});

test("401s: missing, unknown and revoked keys; x-api-key works", async () => {
  for (const key of [undefined, "nope", REVOKED]) {
    const res = await post(stack.base, "/v1/chat/completions", chat(), { key });
    assert.equal(res.status, 401, `key ${key}`);
    const body = await res.json();
    assertOpenAiError(body, { type: "authentication_error", code: "invalid_api_key" });
    if (key) assert.ok(!JSON.stringify(body).includes(key), "key echoed in error");
  }
  const ok = await post(stack.base, "/v1/chat/completions", chat(), { headers: { "x-api-key": KEY } });
  assert.equal(ok.status, 200);
  await ok.arrayBuffer();
  const denied = await post(stack.base, "/v1/chat/completions", chat(), { key: LIMITED });
  assert.equal(denied.status, 403);
  assertOpenAiError(await denied.json(), { type: "permission_error", param: "model" });
});

test("400s name the field", async () => {
  const cases = [
    ["{not json", null, "invalid_json"],
    [JSON.stringify([1, 2]), null, "invalid_json"],
    [{ messages: [{ role: "user", content: "x" }] }, "model", "missing_required_parameter"],
    [{ model: "gpt-4o-mini" }, "messages", "missing_required_parameter"],
    [{ model: "gpt-4o-mini", messages: [] }, "messages", "invalid_value"],
    [{ model: "gpt-4o-mini", messages: [{ role: "robot", content: "x" }] }, "messages[0].role", "invalid_type"],
    [{ model: "gpt-4o-mini", messages: [{ role: "user", content: 5 }] }, "messages[0].content", "invalid_type"],
    [chat({ temperature: 3 }), "temperature", "invalid_value"],
    [chat({ top_p: -0.1 }), "top_p", "invalid_value"],
    [chat({ max_tokens: 0 }), "max_tokens", "invalid_value"],
    [chat({ max_tokens: "ten" }), "max_tokens", "invalid_type"],
    [chat({ n: 0 }), "n", "invalid_value"],
    [chat({ stream_options: { include_usage: true } }), "stream_options", "invalid_value"],
    [chat({ tool_choice: "sometimes" }), "tool_choice", "invalid_value"],
    [chat({ tools: [{ type: "function", function: { name: "bad name!" } }] }), "tools[0].function.name", "invalid_value"],
    [chat({ messages: [{ role: "user", content: "x".repeat(20000) }] }), "messages", "context_length_exceeded"],
  ];
  for (const [body, param, code] of cases) {
    const res = await post(stack.base, "/v1/chat/completions", body, { key: KEY });
    assert.equal(res.status, 400, `${JSON.stringify(body).slice(0, 80)}`);
    assertOpenAiError(await res.json(), { type: "invalid_request_error", param, code });
  }
  const nf = await post(stack.base, "/v1/chat/completions", chat({ model: "no-such-model" }), { key: KEY });
  assert.equal(nf.status, 404);
  assertOpenAiError(await nf.json(), { param: "model", code: "model_not_found" });
});

test("oversized body is a 413 before parsing; unknown routes are 404/405 JSON", async () => {
  const big = await post(stack.base, "/v1/chat/completions", "x".repeat(70 * 1024), { key: KEY });
  assert.equal(big.status, 413);
  assertOpenAiError(await big.json(), { code: "request_too_large" });
  const nf = await fetch(stack.base + "/v1/nope");
  assert.equal(nf.status, 404);
  assertOpenAiError(await nf.json(), { code: "unknown_url" });
  const na = await fetch(stack.base + "/v1/chat/completions");
  assert.equal(na.status, 405);
  assertOpenAiError(await na.json(), { code: "method_not_allowed" });
});

test("upstream 500 becomes a 502 in OpenAI's shape; 429 keeps Retry-After", async () => {
  const res = await post(stack.base, "/v1/chat/completions", chat({ messages: [{ role: "user", content: 'MOCK{"status":500}' }] }), { key: KEY });
  assert.equal(res.status, 502);
  assertOpenAiError(await res.json(), { type: "upstream_error", code: "upstream_error" });
  const rl = await post(stack.base, "/v1/chat/completions", chat({ messages: [{ role: "user", content: 'MOCK{"status":429,"retry_after":7}' }] }), { key: KEY });
  assert.equal(rl.status, 429);
  assert.equal(rl.headers.get("retry-after"), "7");
  assertOpenAiError(await rl.json(), { type: "rate_limit_error" });
  // A streaming request that fails before its first byte is a clean HTTP error too.
  const s = await post(stack.base, "/v1/chat/completions", chat({ stream: true, messages: [{ role: "user", content: 'MOCK{"status":503}' }] }), { key: KEY });
  assert.equal(s.status, 502);
  assertOpenAiError(await s.json());
});

test("upstream reset mid-stream → SSE error event, then a clean close", async () => {
  const res = await post(stack.base, "/v1/chat/completions", chat({ stream: true, messages: [{ role: "user", content: 'MOCK{"reset_after":3}' }] }), { key: KEY });
  assert.equal(res.status, 200);
  const { events, error, rest } = await readSse(res);
  assert.equal(error, null, "the client stream must close cleanly");
  assert.equal(rest, "");
  const last = JSON.parse(events.at(-1).data);
  assertOpenAiError(last, { code: "upstream_interrupted" });
  const content = events.slice(0, -1).map((e) => JSON.parse(e.data).choices[0].delta.content ?? "").join("");
  assert.equal(content, "tok0 tok1 tok2");
  assert.ok(!events.some((e) => e.data === "[DONE]"));
});

test("non-streaming request whose upstream resets mid-answer is a 502, not a truncated answer", async () => {
  const res = await post(stack.base, "/v1/chat/completions", chat({ messages: [{ role: "user", content: 'MOCK{"reset_after":2}' }] }), { key: KEY });
  assert.equal(res.status, 502);
  assertOpenAiError(await res.json(), { code: "upstream_interrupted" });
});

test("upstream stall before the first byte → 504 within the deadline (json_timeout_ms, not retried, for a JSON answer); every attempt given up on is cancelled upstream", async () => {
  for (const stream of [false, true]) {
    const seen = stack.upstream.requests.length;
    const t0 = performance.now();
    const res = await post(stack.base, "/v1/chat/completions", chat({ stream, messages: [{ role: "user", content: 'MOCK{"stall_ms":5000}' }] }), { key: KEY });
    const took = performance.now() - t0;
    const answeredAt = Date.now();
    assert.equal(res.status, 504);
    const err = await res.json();
    assertOpenAiError(err, { type: "timeout_error", code: "upstream_timeout" });
    // A stream: 2000 ms to its first byte, retried within the deadline; a
    // JSON answer: 2500 ms for all of it, once.
    assert.match(err.error.message, stream ? /start responding within \d+ ms/ : /answer within 2500 ms/);
    assert.ok(took < 4000, `took ${took} ms`);
    // The upstream would have answered at 5000 ms. No attempt may run on
    // after the edge gave up on it: a JSON answer's one attempt ends with
    // the client's request, a stream's first attempt before its retry.
    const attempts = stack.upstream.requests.slice(seen);
    assert.equal(attempts.length, stream ? 2 : 1, `attempts: ${attempts.length}`);
    for (let i = 0; i < 50 && attempts.some((a) => a.closedAt === null); i++) await new Promise((r) => setTimeout(r, 20));
    for (const a of attempts) assert.equal(a.abandoned, true, "each attempt's connection was closed before its answer");
    assert.ok(attempts.at(-1).closedAt <= answeredAt + 1000, `last attempt closed ${attempts.at(-1).closedAt - answeredAt} ms after the answer`);
    if (stream) assert.ok(attempts[0].closedAt <= attempts[1].time + 200, `first attempt closed ${attempts[0].closedAt - attempts[1].time} ms after the retry began`);
  }
});

test("upstream stall mid-stream → SSE error event after the stall timeout", async () => {
  const res = await post(stack.base, "/v1/chat/completions", chat({ stream: true, messages: [{ role: "user", content: 'MOCK{"stall_after":2}' }] }), { key: KEY });
  const { events, error } = await readSse(res);
  assert.equal(error, null);
  assertOpenAiError(JSON.parse(events.at(-1).data), { code: "upstream_stalled" });
});

test("a provider error event mid-stream is relayed as an error event", async () => {
  const res = await post(stack.base, "/v1/chat/completions", chat({ stream: true, messages: [{ role: "user", content: 'MOCK{"sse_error_after":2}' }] }), { key: KEY });
  const { events } = await readSse(res);
  assertOpenAiError(JSON.parse(events.at(-1).data), { code: "upstream_stream_error" });
});

test("logs carry no key material and no prompt text", async () => {
  const secretPrompt = "my-very-private-prompt-text";
  const res = await post(stack.base, "/v1/chat/completions", chat({ messages: [{ role: "user", content: secretPrompt }] }), { key: KEY });
  assert.equal(res.status, 200);
  await res.json();
  await new Promise((r) => setTimeout(r, 100));
  const logs = stack.logs();
  assert.ok(logs.includes("key_live"), "the request log line names the key id");
  for (const s of [KEY, UPSTREAM_KEY, secretPrompt]) assert.ok(!logs.includes(s), `logs contain ${s}`);
});

test("tool calls stream through and fold", async () => {
  const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }];
  const msg = [{ role: "user", content: 'MOCK{"tool_call":{"name":"get_weather","arguments":{"city":"Paris"}}}' }];
  const res = await post(stack.base, "/v1/chat/completions", chat({ tools, messages: msg }), { key: KEY });
  assert.equal(res.status, 200);
  const body = await res.json();
  const call = body.choices[0].message.tool_calls[0];
  assert.equal(call.function.name, "get_weather");
  assert.deepEqual(JSON.parse(call.function.arguments), { city: "Paris" });
  assert.equal(body.choices[0].finish_reason, "tool_calls");
});
