// Providers' responses replayed byte for byte (the double's `raw`
// directive): shapes from public bug reports against other gateways, each
// of which the edge must pass on Workers and on Spin.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startStack, post, readSse, keyRecord } from "./harness.mjs";

const KEY = "ig-e2e-replay-key";
let stack;

before(async () => {
  stack = await startStack();
  await stack.seedKey(KEY, keyRecord("key_replay"));
});
after(async () => stack && (await stack.close()));

const frame = (obj) => `data: ${JSON.stringify(obj)}\n\n`;
const chunk = (delta, finish = null, extra = {}) =>
  frame({ id: "c1", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta, finish_reason: finish }], ...extra });
const usage = frame({ id: "c1", object: "chat.completion.chunk", created: 1, model: "m", choices: [], usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 } });
// The directive travels in the prompt, so the edge forwards it unchanged.
const ask = (directive, extra = {}) => ({
  model: "gpt-4o-mini",
  messages: [{ role: "user", content: `go MOCK${JSON.stringify(directive)}` }],
  ...extra,
});
const timeout = () => AbortSignal.timeout(5000);

const parallel = ["San Francisco", "Tokyo", "Paris"].map((city, i) =>
  chunk({ tool_calls: [{ index: 0, id: `call_${i}`, type: "function", function: { name: "get_weather", arguments: JSON.stringify({ location: city }) } }] }));

test("parallel calls all at index 0 stay three calls, JSON and stream", async () => {
  const raw = [chunk({ role: "assistant", content: null }), ...parallel, chunk({}, "tool_calls"), usage, "data: [DONE]\n\n"];
  const res = await post(stack.base, "/v1/chat/completions", ask({ raw }), { key: KEY });
  assert.equal(res.status, 200);
  const calls = (await res.json()).choices[0].message.tool_calls;
  assert.deepEqual(calls.map((c) => c.function.arguments), ['{"location":"San Francisco"}', '{"location":"Tokyo"}', '{"location":"Paris"}']);
  const s = await post(stack.base, "/v1/chat/completions", ask({ raw }, { stream: true }), { key: KEY });
  const { events } = await readSse(s);
  const indices = events.map((e) => e.data).filter((d) => d !== "[DONE]").flatMap((d) => JSON.parse(d).choices?.[0]?.delta?.tool_calls ?? []).map((t) => t.index);
  assert.deepEqual(indices, [0, 1, 2]);
});

test("reasoning_content reaches the folded message", async () => {
  const raw = [chunk({ role: "assistant", reasoning_content: "Think" }), chunk({ reasoning_content: "ing.", content: "Hi" }), chunk({}, "stop"), usage, "data: [DONE]\n\n"];
  const res = await post(stack.base, "/v1/chat/completions", ask({ raw }), { key: KEY });
  const msg = (await res.json()).choices[0].message;
  assert.equal(msg.reasoning_content, "Thinking.");
  assert.equal(msg.content, "Hi");
});

test("a finished stream ends although the upstream keeps sending keep-alives", async () => {
  const raw = [chunk({ role: "assistant", content: "Hello" }), chunk({}, "stop"), usage];
  const started = Date.now();
  const s = await post(stack.base, "/v1/chat/completions", ask({ raw, keepalive_ms: 200 }, { stream: true }), { key: KEY, signal: timeout() });
  const { events } = await readSse(s);
  assert.equal(events.at(-1).data, "[DONE]");
  assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
  const j = await post(stack.base, "/v1/chat/completions", ask({ raw, keepalive_ms: 200 }), { key: KEY, signal: timeout() });
  assert.equal((await j.json()).choices[0].message.content, "Hello");
});

test("[DONE] without a finish_reason is an error, not an answer", async () => {
  const raw = [chunk({ role: "assistant", content: "Hel" }), "data: [DONE]\n\n"];
  const res = await post(stack.base, "/v1/chat/completions", ask({ raw }), { key: KEY });
  assert.equal(res.status, 502);
  await res.arrayBuffer();
});

test("embeddings: base64 asked, floats sent, base64 returned", async () => {
  const raw_json = { object: "list", data: [{ object: "embedding", index: 0, embedding: [0.5, -1.0, 0.25, 2.0] }], model: "m", usage: { prompt_tokens: 1, total_tokens: 1 } };
  const res = await post(stack.base, "/v1/embeddings", { model: "text-embedding-3-small", input: `x MOCK${JSON.stringify({ raw_json })}`, encoding_format: "base64" }, { key: KEY });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).data[0].embedding, "AAAAPwAAgL8AAIA+AAAAQA==");
});

test("/v1/messages with thinking: reasoning_content becomes a thinking block, then text", async () => {
  const raw = [chunk({ role: "assistant", reasoning_content: "Let me" }), chunk({ reasoning_content: " think.", content: "It is" }), chunk({ content: " 4." }, "stop"), usage, "data: [DONE]\n\n"];
  const body = {
    model: "gpt-4o-mini", max_tokens: 1000, stream: true, thinking: { type: "enabled", budget_tokens: 600 },
    messages: [{ role: "user", content: `2+2? MOCK${JSON.stringify({ raw })}` }],
  };
  const res = await post(stack.base, "/v1/messages", body, { key: KEY, signal: timeout() });
  assert.equal(res.status, 200, res.status === 200 ? "" : await res.text());
  const { events } = await readSse(res);
  const starts = events.map((e) => JSON.parse(e.data)).filter((e) => e.type === "content_block_start");
  assert.deepEqual(starts.map((e) => [e.index, e.content_block.type]), [[0, "thinking"], [1, "text"]]);
  const plain = await post(stack.base, "/v1/messages", { ...body, stream: false, thinking: undefined }, { key: KEY });
  const msg = await plain.json();
  assert.deepEqual(msg.content.map((b) => b.type), ["text"]);
});
