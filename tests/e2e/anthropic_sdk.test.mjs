// The official Anthropic SDK (@anthropic-ai/sdk) against the edge's
// `POST /v1/messages`: the request is translated to the gateway's chat
// pipeline and answered by an OpenAI-compatible upstream or by the
// Anthropic upstream double, and the answer comes back in Anthropic's shape.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";
import { startStack, admin } from "./harness.mjs";

let stack, client;
before(async () => {
  stack = await startStack({
    configFn: (upstreamUrl) => ({
      providers: [
        { name: "local", kind: "openai", base_url: `${upstreamUrl}/v1`, api_key_secret: "LOCAL_UPSTREAM_KEY" },
        { name: "anthro", kind: "anthropic", base_url: `${upstreamUrl}/v1`, api_key_secret: "LOCAL_ANTHROPIC_KEY" },
      ],
      models: [
        { id: "gpt-4o-mini", targets: ["local"], context_window: 8192, max_output_tokens: 1024 },
        { id: "claude-test", targets: ["anthro"], context_window: 8192, max_output_tokens: 1024 },
      ],
    }),
  });
  const k = (await admin(stack.base, "POST", "/admin/keys", { name: "anthropic-sdk", tenant: "a" })).body;
  client = new Anthropic({ baseURL: stack.base, apiKey: k.key, maxRetries: 0 });
});
after(async () => stack && (await stack.close()));

for (const model of ["gpt-4o-mini", "claude-test"]) {
  test(`messages.create (${model})`, async () => {
    const msg = await client.messages.create({ model, max_tokens: 64, system: "be brief", messages: [{ role: "user", content: "Hello" }] });
    assert.equal(msg.type, "message");
    assert.equal(msg.role, "assistant");
    assert.equal(msg.content[0].type, "text");
    assert.equal(msg.content[0].text, "tok0 tok1 tok2 tok3 tok4 tok5");
    assert.equal(msg.stop_reason, "end_turn");
    assert.ok(msg.usage.output_tokens > 0 && msg.usage.input_tokens > 0);
  });

  test(`messages.stream with a tool call (${model})`, async () => {
    const args = { city: "Paris", days: [1, 2] };
    const stream = client.messages.stream({
      model,
      max_tokens: 200,
      tools: [{ name: "get_weather", input_schema: { type: "object" } }],
      messages: [{ role: "user", content: `MOCK${JSON.stringify({ tool_call: { name: "get_weather", arguments: args }, chunks: 5 })}` }],
    });
    const types = [];
    stream.on("streamEvent", (e) => types.push(e.type));
    const final = await stream.finalMessage();
    assert.equal(types[0], "message_start");
    assert.equal(types.at(-1), "message_stop");
    assert.ok(types.includes("content_block_delta"));
    const tool = final.content.find((b) => b.type === "tool_use");
    assert.equal(tool.name, "get_weather");
    assert.deepEqual(tool.input, args);
    assert.equal(final.stop_reason, "tool_use");
  });
}

test("max_tokens stops with stop_reason max_tokens, streamed text arrives in deltas", async () => {
  const stream = client.messages.stream({ model: "gpt-4o-mini", max_tokens: 3, messages: [{ role: "user", content: "Hi" }] });
  let text = "";
  stream.on("text", (t) => (text += t));
  const final = await stream.finalMessage();
  assert.equal(text, "tok0 tok1 tok2");
  assert.equal(final.stop_reason, "max_tokens");
  assert.equal(final.usage.output_tokens, 3);
});

test("errors come back in Anthropic's shape as the SDK's exception classes", async () => {
  const bad = new Anthropic({ baseURL: stack.base, apiKey: "nope", maxRetries: 0 });
  await assert.rejects(bad.messages.create({ model: "gpt-4o-mini", max_tokens: 8, messages: [{ role: "user", content: "x" }] }), Anthropic.AuthenticationError);
  await assert.rejects(client.messages.create({ model: "gpt-4o-mini", max_tokens: 8, messages: [] }), (e) => {
    assert.ok(e instanceof Anthropic.BadRequestError);
    assert.equal(e.error.type, "error");
    assert.equal(e.error.error.type, "invalid_request_error");
    return true;
  });
  await assert.rejects(client.messages.create({ model: "nope", max_tokens: 8, messages: [{ role: "user", content: "x" }] }), Anthropic.NotFoundError);
});
