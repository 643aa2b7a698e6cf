// Methods a route does not support: 405 with an `Allow` header listing the
// ones it does (RFC 9110), for every route, including methods the `worker`
// crate does not know (it maps those to GET). Found by schemathesis.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startStack, assertOpenAiError, ADMIN_TOKEN } from "./harness.mjs";

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => stack && (await stack.close()));

const cases = [
  ["QUERY", "/health", "GET, HEAD"],
  ["DELETE", "/ready", "GET, HEAD"],
  ["PROPFIND", "/docs", "GET, HEAD"],
  ["POST", "/openapi.json", "GET, HEAD"],
  ["POST", "/v1/models", "GET"],
  ["QUERY", "/v1/models", "GET"],
  ["GET", "/v1/chat/completions", "POST"],
  ["PUT", "/v1/embeddings", "POST"],
  ["GET", "/v1/messages", "POST"],
  ["GET", "/v1/responses", "POST"],
  ["PATCH", "/v1/responses/resp_1", "GET, DELETE"],
  ["POST", "/v1/responses/resp_1/input_items", "GET"],
  ["GET", "/v1/tasks", "POST"],
  ["DELETE", "/v1/tasks/task_123", "GET"],
];

for (const [method, path, allow] of cases) {
  test(`${method} ${path} is a 405 allowing ${allow}`, async () => {
    const res = await fetch(stack.base + path, { method });
    assert.equal(res.status, 405);
    assert.equal(res.headers.get("allow"), allow);
    assertOpenAiError(await res.json(), { code: "method_not_allowed" });
  });
}

test("admin routes answer 405 with Allow for a wrong method, 404 for unknown paths", async () => {
  const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
  for (const [method, path, allow] of [
    ["PUT", "/admin/keys", "GET, POST"],
    ["PUT", "/admin/keys/key_1", "GET, PATCH, DELETE"],
    ["POST", "/admin/spend", "GET"],
    ["GET", "/admin/keys/key_1/rotate", "POST"],
    ["POST", "/admin/usage", "GET"],
    ["QUERY", "/admin/stats", "GET"],
  ]) {
    const res = await fetch(stack.base + path, { method, headers: auth });
    assert.equal(res.status, 405, `${method} ${path}`);
    assert.equal(res.headers.get("allow"), allow);
  }
  const res = await fetch(stack.base + "/admin/nothing", { headers: auth });
  assert.equal(res.status, 404);
  const nested = await fetch(stack.base + "/v1/tasks/a/b");
  assert.equal(nested.status, 404);
});
