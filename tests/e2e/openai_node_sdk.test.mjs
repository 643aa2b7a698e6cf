// The official OpenAI node SDK (`openai`) against the edge's Responses API,
// on each kind of upstream: the OpenAI-compatible double over chat, the
// Anthropic double, the OpenAI double serving /v1/responses itself
// (forwarded, not translated) and a runner. The Python SDK runs the same
// route in tests/sdk/test_edge_openai_sdk.py (sdk.test.mjs).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startStack, startRunner, admin, eventually } from "./harness.mjs";

// model id -> the upstream that serves it
const UPSTREAMS = {
  "gpt-4o-mini": "local",
  "claude-test": "anthro",
  "gpt-4o-native": "native",
  "local/tiny-gpt": "runner-eu",
};
const mock = (d) => `go MOCK${JSON.stringify(d)}`;

let stack, runner;
before(async () => {
  runner = await startRunner();
  stack = await startStack({
    configFn: (upstreamUrl) => ({
      providers: [
        { name: "local", kind: "openai", base_url: `${upstreamUrl}/v1`, api_key_secret: "LOCAL_UPSTREAM_KEY" },
        { name: "anthro", kind: "anthropic", base_url: `${upstreamUrl}/v1`, api_key_secret: "LOCAL_ANTHROPIC_KEY" },
        { name: "native", kind: "openai", base_url: `${upstreamUrl}/v1`, api_key_secret: "LOCAL_UPSTREAM_KEY", responses_api: true },
      ],
      runners: [{ name: "runner-eu", url: `${runner.url}/v1`, region: "eu", continent: "EU", models: ["local/tiny-gpt"] }],
      models: [
        { id: "gpt-4o-mini", targets: ["local"], context_window: 8192, max_output_tokens: 1024 },
        { id: "claude-test", targets: ["anthro"], context_window: 8192, max_output_tokens: 1024 },
        { id: "gpt-4o-native", targets: ["native"], upstream_model: "gpt-4o-mini", context_window: 8192, max_output_tokens: 1024 },
        { id: "local/tiny-gpt", context_window: 512, max_output_tokens: 400 },
      ],
    }),
  });
});
after(async () => {
  await stack?.close();
  await runner?.kill();
});

async function client(name) {
  const k = (await admin(stack.base, "POST", "/admin/keys", { name, tenant: "node-sdk" })).body;
  return { k, openai: new OpenAI({ baseURL: `${stack.base}/v1`, apiKey: k.key, maxRetries: 0, timeout: 60000 }) };
}

for (const [model, upstream] of Object.entries(UPSTREAMS)) {
  test(`responses.stream: deltas, response.completed and the usage recorded (${model})`, async () => {
    const { k, openai } = await client(`node-${model}`);
    const stream = openai.responses.stream({ model, input: "Hello there", max_output_tokens: 16 });
    const types = [];
    let text = "";
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === "response.output_text.delta") text += event.delta;
    }
    const final = await stream.finalResponse();
    assert.deepEqual(types.slice(0, 2), ["response.created", "response.in_progress"]);
    assert.ok(["response.completed", "response.incomplete"].includes(types.at(-1)), types.join(" "));
    assert.ok(text.length > 0);
    assert.equal(text, final.output_text);
    if (upstream !== "runner-eu") assert.match(final.output_text, /^tok0/);
    assert.ok(final.usage.output_tokens > 0);
    // What the key is charged is what the upstream reported.
    const report = await eventually(async () => {
      const r = await admin(stack.base, "GET", `/admin/usage?key_id=${k.id}`);
      return r.body.total.requests === 1 ? r.body : null;
    });
    assert.ok(report, "usage never recorded");
    assert.equal(report.total.prompt_tokens, final.usage.input_tokens);
    assert.equal(report.total.completion_tokens, final.usage.output_tokens);
    // Stored, and served back as streamed.
    const got = await openai.responses.retrieve(final.id);
    assert.equal(got.output_text, final.output_text);
    // And replayed as events: the text deltas add up, the last event is the
    // stored Response.
    const events = [];
    for await (const e of await openai.responses.retrieve(final.id, { stream: true })) events.push(e);
    const replayed = events.filter((e) => e.type === "response.output_text.delta").map((e) => e.delta).join("");
    assert.equal(replayed, final.output_text);
    assert.equal(events.at(-1).type, `response.${final.status}`);
    assert.equal(events.at(-1).response.id, final.id);
  });
}

for (const model of ["gpt-4o-mini", "claude-test", "gpt-4o-native"]) {
  test(`a streamed tool loop through previous_response_id (${model})`, async () => {
    const { openai } = await client(`node-tools-${model}`);
    const tools = [{ type: "function", name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } }];
    const stream = openai.responses.stream({
      model, tools, max_output_tokens: 64,
      input: mock({ tool_call: { name: "get_weather", arguments: { city: "Paris" } }, chunks: 4 }),
    });
    let args = "";
    for await (const e of stream) if (e.type === "response.function_call_arguments.delta") args += e.delta;
    const first = await stream.finalResponse();
    const call = first.output.find((o) => o.type === "function_call");
    assert.equal(call.name, "get_weather");
    assert.equal(args, call.arguments);
    assert.deepEqual(JSON.parse(call.arguments), { city: "Paris" });
    const second = await openai.responses.create({
      model, tools, max_output_tokens: 16, previous_response_id: first.id,
      // The double answers the last user message: a plain one, after the
      // tool's output, gets text.
      input: [{ type: "function_call_output", call_id: call.call_id, output: "sunny" }, { role: "user", content: "so?" }],
    });
    assert.equal(second.status, "completed");
    assert.equal(second.previous_response_id, first.id);
    assert.match(second.output_text, /^tok0/);
  });
}

test("a mid-stream upstream failure ends in response.failed, which the SDK raises", async () => {
  const { openai } = await client("node-failure");
  for (const model of ["gpt-4o-mini", "gpt-4o-native"]) {
    const stream = openai.responses.stream({ model, input: mock({ sse_error_after: 2, chunks: 5 }), max_output_tokens: 64 });
    const types = [];
    await assert.rejects(async () => {
      for await (const e of stream) types.push(e.type);
      await stream.finalResponse();
    }, model);
    assert.ok(types.includes("response.output_text.delta"), `${model}: ${types.join(" ")}`);
  }
});
