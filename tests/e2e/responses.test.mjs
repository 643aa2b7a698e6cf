// POST /v1/responses over an Anthropic upstream (the Anthropic double): the
// Responses request becomes chat, then Messages; the answer comes back as a
// Response object or the typed Responses events. The official SDK runs the
// same route against the OpenAI-compatible double and a real runner in
// tests/sdk/test_edge_openai_sdk.py (sdk.test.mjs).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startStack, post, readSse, keyRecord } from "./harness.mjs";

const KEY = "ig-e2e-responses-key";
let stack;

before(async () => {
  stack = await startStack({
    configFn: (upstreamUrl) => ({
      providers: [{ name: "anthro", kind: "anthropic", base_url: `${upstreamUrl}/v1`, api_key_secret: "LOCAL_ANTHROPIC_KEY" }],
      models: [{ id: "claude-test", targets: ["anthro"], context_window: 8192, max_output_tokens: 1024 }],
    }),
  });
  await stack.seedKey(KEY, keyRecord("key_responses"));
});
after(async () => stack && (await stack.close()));

test("a Response from an Anthropic upstream, JSON", async () => {
  const res = await post(stack.base, "/v1/responses", { model: "claude-test", input: "Hello", instructions: "be brief", max_output_tokens: 64 }, { key: KEY });
  assert.equal(res.status, 200, await res.clone().text());
  const r = await res.json();
  assert.equal(r.object, "response");
  assert.equal(r.status, "completed");
  assert.equal(r.output[0].type, "message");
  assert.equal(r.output[0].content[0].type, "output_text");
  assert.match(r.output[0].content[0].text, /^tok0/);
  assert.ok(r.usage.input_tokens > 0 && r.usage.output_tokens > 0);
  assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
  const sent = stack.upstream.requests.at(-1);
  assert.equal(sent.path, "/v1/messages");
  assert.equal(sent.body.system, "be brief");
  assert.equal(sent.body.max_tokens, 64);
});

test("a tool call from an Anthropic upstream, streamed as typed events", async () => {
  const args = { city: "Paris" };
  const body = {
    model: "claude-test", stream: true, max_output_tokens: 200,
    tools: [{ type: "function", name: "get_weather", parameters: { type: "object" } }],
    input: [{ role: "user", content: [{ type: "input_text", text: `MOCK${JSON.stringify({ tool_call: { name: "get_weather", arguments: args }, chunks: 4 })}` }] }],
  };
  const res = await post(stack.base, "/v1/responses", body, { key: KEY });
  assert.equal(res.status, 200);
  const { events } = await readSse(res);
  const parsed = events.map((e) => ({ event: e.event, ...JSON.parse(e.data) }));
  for (const e of parsed) assert.equal(e.event, e.type, "every event names its type");
  assert.deepEqual(parsed.map((e) => e.sequence_number), parsed.map((_, i) => i));
  assert.equal(parsed[0].type, "response.created");
  const last = parsed.at(-1);
  assert.equal(last.type, "response.completed");
  const call = last.response.output.find((o) => o.type === "function_call");
  assert.equal(call.name, "get_weather");
  assert.deepEqual(JSON.parse(call.arguments), args);
  const deltas = parsed.filter((e) => e.type === "response.function_call_arguments.delta").map((e) => e.delta).join("");
  assert.deepEqual(JSON.parse(deltas), args);
});
