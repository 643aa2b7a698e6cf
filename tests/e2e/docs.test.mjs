// GET /openapi.json and the /docs page, in a real browser: Debian's
// chromium (scripts/setup.sh installs it) driven by playwright-core, loading
// the page from the edge under test. The page must render the operations
// from the document and must not fetch anything but the edge itself.
// A screenshot goes to tests/e2e/artifacts/docs-<target>.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { startStack, ROOT } from "./harness.mjs";

const CHROMIUM = process.env.INFERGATE_CHROMIUM || "/usr/bin/chromium";
const ARTIFACTS = path.join(ROOT, "tests/e2e/artifacts");
// Every operation of the edge document (src/gateway/routes/openapi/edge.json).
const MIN_OPERATIONS = 18;

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => stack && (await stack.close()));

test("GET /openapi.json is the OpenAPI 3.1 document of every edge route", async () => {
  const res = await fetch(stack.base + "/openapi.json");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /application\/json/);
  assert.ok(res.headers.get("x-request-id"));
  const doc = await res.json();
  assert.equal(doc.openapi, "3.1.0");
  for (const p of ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/v1/messages", "/v1/responses", "/v1/responses/{id}", "/v1/responses/{id}/input_items", "/v1/tasks", "/v1/tasks/{id}", "/health", "/ready", "/admin/keys", "/admin/keys/{id}", "/admin/keys/{id}/rotate", "/admin/usage", "/admin/stats"]) {
    assert.ok(doc.paths[p], `${p} is documented`);
  }
  assert.deepEqual(Object.keys(doc.components.schemas.ErrorDetail.properties).sort(), ["code", "message", "param", "type"]);
  const post = await fetch(stack.base + "/openapi.json", { method: "POST" });
  assert.equal(post.status, 405);
});

test("GET /docs is self-contained HTML", async () => {
  const res = await fetch(stack.base + "/docs");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /text\/html/);
  assert.match(res.headers.get("content-security-policy"), /default-src 'none'/);
  const html = await res.text();
  assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//, "no external assets");
});

test("/docs renders the operations in headless Chromium", {
  // In CI a missing browser must fail the run, not silently skip it.
  skip: !existsSync(CHROMIUM) && process.env.CI !== "true" && `${CHROMIUM} is not installed (scripts/setup.sh installs it)`,
}, async () => {
  const { chromium } = await import("playwright-core");
  const profile = mkdtempSync(path.join(os.tmpdir(), "infergate-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 1400 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const requested = [];
    const errors = [];
    page.on("request", (r) => requested.push(r.url()));
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("console", (m) => m.type() === "error" && errors.push(m.text()));

    const res = await page.goto(stack.base + "/docs", { waitUntil: "load" });
    assert.equal(res.status(), 200);
    await page.waitForSelector("body[data-rendered=true]", { timeout: 15000 });

    const ops = page.locator("details.op");
    assert.ok((await ops.count()) >= MIN_OPERATIONS, `at least ${MIN_OPERATIONS} operations render, got ${await ops.count()}`);
    for (const tag of ["OpenAI API", "Anthropic API", "Tasks", "Admin", "Operations"]) {
      assert.ok(await page.locator("section.tag h2", { hasText: tag }).isVisible(), `tag ${tag} is shown`);
    }
    const chat = page.locator("#op-createChatCompletion");
    assert.ok(await chat.isVisible());
    assert.match(await chat.locator(":scope > summary").innerText(), /post\s*\/v1\/chat\/completions/i);
    await chat.locator(":scope > summary").click();
    const body = chat.locator(":scope > .body");
    assert.ok(await body.isVisible());
    const text = await body.innerText();
    for (const needle of ["Request body", "ChatCompletionRequest", "messages", "temperature", "x-infergate-cache", "Responses", "429", "Retry-After", "ErrorBody"]) {
      assert.ok(text.includes(needle), `the chat operation shows ${needle}`);
    }
    // Named schemas expand on demand.
    await page.locator("#op-createChatCompletion details.ref > summary", { hasText: "ChatMessage" }).first().click();
    // (The toggle event that renders them fires after the click returns.)
    await page.locator("#op-createChatCompletion .prop", { hasText: "tool_call_id" }).first().waitFor({ state: "visible", timeout: 5000 });

    const origin = new URL(stack.base).origin;
    const foreign = requested.filter((u) => new URL(u).origin !== origin);
    assert.deepEqual(foreign, [], "the page loads nothing from elsewhere");
    assert.ok(requested.some((u) => u.endsWith("/openapi.json")), "the page fetched the document");
    assert.deepEqual(errors, [], "no script errors");

    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = path.join(ARTIFACTS, `docs-${stack.target}.png`);
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: shot });
    assert.ok(existsSync(shot));
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
});
