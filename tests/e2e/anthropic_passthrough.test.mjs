// A Messages client in front of a Messages upstream: nothing is translated.
// The client's body reaches the upstream with every field (cache_control,
// thinking, is_error, image URLs, top_k, metadata) and its anthropic-beta
// header; the upstream's events reach a streaming client byte for byte, and
// a JSON client gets the Message they fold into, signatures and citations
// included. The same request to an OpenAI-compatible model is translated.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startStack, post, keyRecord } from "./harness.mjs";

const KEY = "ig-e2e-passthrough-key";
let stack;

before(async () => {
  stack = await startStack({
    configFn: (upstreamUrl) => ({
      providers: [
        { name: "local", kind: "openai", base_url: `${upstreamUrl}/v1`, api_key_secret: "LOCAL_UPSTREAM_KEY" },
        { name: "anthro", kind: "anthropic", base_url: `${upstreamUrl}/v1`, api_key_secret: "LOCAL_ANTHROPIC_KEY" },
      ],
      models: [
        { id: "gpt-4o-mini", targets: ["local"], context_window: 8192, max_output_tokens: 1024 },
        { id: "claude-test", upstream_model: "claude-upstream-name", targets: ["anthro"], context_window: 16384, max_output_tokens: 4096 },
      ],
    }),
  });
  await stack.seedKey(KEY, keyRecord("key_passthrough"));
});
after(async () => stack && (await stack.close()));

const ev = (obj) => `event: ${obj.type}\ndata: ${JSON.stringify(obj)}\n\n`;
// What the Messages API streams for extended thinking with a cited answer.
const RAW = [
  { type: "message_start", message: { id: "msg_01Pass", type: "message", role: "assistant", model: "claude-upstream-name", content: [], stop_reason: null, stop_sequence: null,
    usage: { input_tokens: 12, cache_creation_input_tokens: 0, cache_read_input_tokens: 2048, output_tokens: 1, service_tier: "standard" } } },
  { type: "content_block_start", index: 0, content_block: { type: "thinking", thinking: "" } },
  { type: "ping" },
  { type: "content_block_delta", index: 0, delta: { type: "thinking_delta", thinking: "The document says " } },
  { type: "content_block_delta", index: 0, delta: { type: "thinking_delta", thinking: "Paris." } },
  { type: "content_block_delta", index: 0, delta: { type: "signature_delta", signature: "EqQBCkYIARgC" } },
  { type: "content_block_delta", index: 0, delta: { type: "signature_delta", signature: "KkBsig==" } },
  { type: "content_block_stop", index: 0 },
  { type: "content_block_start", index: 1, content_block: { type: "text", text: "", citations: [] } },
  { type: "content_block_delta", index: 1, delta: { type: "citations_delta", citation: { type: "char_location", cited_text: "Paris is the capital", document_index: 0, start_char_index: 0, end_char_index: 20 } } },
  { type: "content_block_delta", index: 1, delta: { type: "text_delta", text: "Paris." } },
  { type: "content_block_stop", index: 1 },
  { type: "message_delta", delta: { stop_reason: "end_turn", stop_sequence: null }, usage: { output_tokens: 42 } },
  { type: "message_stop" },
].map(ev);

const request = (extra = {}) => ({
  model: "claude-test",
  max_tokens: 2048,
  top_k: 5,
  metadata: { user_id: "u-123" },
  thinking: { type: "enabled", budget_tokens: 1024 },
  // `ttl` and `scope` are the fields peers' translations have stripped.
  system: [{ type: "text", text: "Answer from the document.", cache_control: { type: "ephemeral", ttl: "1h", scope: "global" } }],
  messages: [
    { role: "user", content: [
      { type: "document", source: { type: "text", media_type: "text/plain", data: "Paris is the capital of France." }, citations: { enabled: true }, cache_control: { type: "ephemeral" } },
      { type: "image", source: { type: "url", url: "https://example.com/eiffel.png" } },
      { type: "text", text: "Capital?" },
    ] },
    { role: "assistant", content: [
      { type: "thinking", thinking: "Earlier thought.", signature: "sig-earlier" },
      { type: "tool_use", id: "toolu_01", name: "lookup", input: { q: "capital" } },
    ] },
    { role: "user", content: [
      { type: "tool_result", tool_use_id: "toolu_01", is_error: true, content: "lookup failed" },
      { type: "text", text: `Answer anyway. MOCK${JSON.stringify({ raw: RAW })}` },
    ] },
  ],
  tools: [{ name: "lookup", description: "Look up", input_schema: { type: "object" }, cache_control: { type: "ephemeral" } }],
  ...extra,
});

const lastUpstreamBody = () => stack.upstream.requests.at(-1);

test("the client's body and anthropic-beta header reach the upstream unchanged", async () => {
  const body = request({ stream: false });
  const res = await post(stack.base, "/v1/messages", body, { key: KEY, headers: { "anthropic-beta": "prompt-caching-2024-07-31" } });
  assert.equal(res.status, 200, await res.clone().text());
  const sent = lastUpstreamBody();
  assert.equal(sent.path, "/v1/messages");
  assert.equal(sent.headers["anthropic-beta"], "prompt-caching-2024-07-31");
  // Only the model is mapped: a JSON client's Message is asked for as JSON.
  assert.deepEqual(sent.body, { ...body, model: "claude-upstream-name" });
});

test("a streaming client gets the upstream's events byte for byte", async () => {
  const res = await post(stack.base, "/v1/messages", request({ stream: true }), { key: KEY });
  assert.equal(res.status, 200);
  assert.equal(await res.text(), RAW.join(""));
});

test("a JSON client gets the Message the events fold into, every field kept", async () => {
  const res = await post(stack.base, "/v1/messages", request({ stream: false }), { key: KEY });
  assert.equal(res.status, 200);
  const msg = await res.json();
  assert.equal(msg.id, "msg_01Pass");
  assert.equal(msg.model, "claude-upstream-name");
  assert.equal(msg.stop_reason, "end_turn");
  assert.deepEqual(msg.usage, { input_tokens: 12, cache_creation_input_tokens: 0, cache_read_input_tokens: 2048, output_tokens: 42, service_tier: "standard" });
  assert.deepEqual(msg.content[0], { type: "thinking", thinking: "The document says Paris.", signature: "EqQBCkYIARgCKkBsig==" });
  assert.equal(msg.content[1].text, "Paris.");
  assert.equal(msg.content[1].citations[0].cited_text, "Paris is the capital");
});

test("the same client on an OpenAI-compatible model is translated", async () => {
  const res = await post(stack.base, "/v1/messages", { model: "gpt-4o-mini", max_tokens: 64, messages: [{ role: "user", content: "Hello" }] }, { key: KEY });
  assert.equal(res.status, 200);
  const msg = await res.json();
  assert.equal(msg.type, "message");
  assert.equal(msg.content[0].type, "text");
  assert.equal(lastUpstreamBody().path, "/v1/chat/completions");
});
