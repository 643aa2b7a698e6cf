#!/usr/bin/env node
// Local upstream test double for infergate: speaks the OpenAI and Anthropic
// wire formats (per their public API references) so end-to-end tests and the
// local dev stack never need a real provider. Plain Node 20, no npm deps.
//
// USAGE
//   node tests/upstream/server.mjs [--port 9100] [--host 127.0.0.1]
//        [--delay-ms 20] [--chunks 8] [--api-key sk-upstream-test]
//        [--anthropic-key sk-ant-upstream-test] [--log]
//   Env: UPSTREAM_PORT, UPSTREAM_HOST, UPSTREAM_DELAY_MS, UPSTREAM_CHUNKS,
//        UPSTREAM_API_KEY, UPSTREAM_ANTHROPIC_KEY, UPSTREAM_LOG=1 (flags win).
//   Prints `upstream listening on http://HOST:PORT` once ready; port 0 picks
//   a free port. An empty key (--api-key '') disables that auth check.
//   Programmatic: `const up = await startUpstream({port: 0, delayMs, chunks,
//   apiKey, anthropicKey})` -> {url, port, requests, close()}. Env vars are
//   NOT read there, so tests stay hermetic.
//
// ENDPOINTS
//   POST /v1/chat/completions, /v1/completions, /v1/embeddings,
//   /v1/responses (stateless: previous_response_id is a 400), GET /v1/models
//   and /v1/models/{id} (Authorization: Bearer <api-key>);
//   POST /v1/messages (x-api-key: <anthropic-key> + anthropic-version);
//   GET /v1/models with x-api-key and no Authorization -> Anthropic model list.
//   Control: GET /__health, GET /__requests (recorded requests, oldest first),
//   DELETE /__requests (clear). Control calls are not recorded. A recorded
//   request is {method, path, query, headers, body, time, closedAt,
//   abandoned}; body is parsed JSON, the raw string if it is not JSON, or
//   null when empty; closedAt (ms since the Unix epoch) is set when the
//   exchange ends, and abandoned says the proxy closed it before the answer
//   was complete.
//
// DIRECTIVE (per-request behaviour): the JSON object in header `x-mock`, or
//   else the object after the literal `MOCK` in the last user message's text
//   (chat: last role=user message, string or text parts; completions: last
//   string prompt; anthropic: text blocks of the last role=user message),
//   e.g. "hello MOCK{\"chunks\":3}". First source found wins (no merging).
//   Invalid JSON -> 400 so a typo never silently means "no directive".
//   status        HTTP error status (>=400) with the provider's error body.
//                 429 adds retry-after (seconds, `retry_after`, default 1) and
//                 rate-limit headers. error_type/error_message/error_code
//                 override the body.
//   stall_ms      wait before sending response headers.
//   chunks        content chunks (default --chunks); delay_ms between chunks
//                 (default --delay-ms).
//   content       exact output text, split into `chunks` near-equal pieces
//                 (fewer if shorter). echo:true -> the last user text with
//                 the MOCK{...} removed. Default: "tok0 tok1 ... tok{N-1}",
//                 one word per chunk (chunk i is "tok0" or " tok{i}").
//   tool_call     {name, arguments (object or JSON string)} -> a tool call
//                 whose argument JSON is streamed in `chunks` pieces.
//   reset_after   after N content chunks: TCP reset (no finish, no [DONE]).
//                 Non-streaming: reset without any response.
//   stall_after   after N content chunks: go silent for `stall_ms2` ms (then
//                 continue), or forever if stall_ms2 is absent. Streams only.
//                 (N counts content chunks; N=0 means right after the
//                 role/message_start preamble, N=total just before finish.)
//   sse_error_after after N chunks: provider mid-stream error, then close
//                 (OpenAI: `data: {"error":{...server_error}}`; Anthropic:
//                 `event: error` overloaded_error).
//   raw           replay: an array of SSE frames written byte for byte
//                 (`delay_ms` apart) instead of a generated stream; with
//                 keepalive_ms the connection then stays open sending only
//                 `: keepalive` comments. raw_json: a whole 200 JSON body.
//   finish_reason override (OpenAI or Anthropic names; mapped to the
//                 target format). stop_reason is an alias for Anthropic.
//   usage         {prompt_tokens|input_tokens, completion_tokens|output_tokens}.
//   Also honoured: max_tokens / max_completion_tokens (OpenAI; legacy
//   completions default 16, as the real API), max_tokens (Anthropic), stop /
//   stop_sequences (cut at first match). Over the limit -> truncated, finish
//   "length" / "max_tokens".
//
// TOKEN COUNTING: prompt tokens = whitespace-separated words in all message
//   text (system included; OpenAI text parts, Anthropic text + tool_result
//   blocks; token-array prompts count their length), minimum 1. Completion
//   tokens = content chunks actually planned (1 per chunk, times choices).

import http from 'node:http';
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { handleOpenAI, openaiNotFound } from './openai.mjs';
import { anthropicNotFound, handleAnthropic, looksAnthropic } from './anthropic.mjs';

const DEFAULTS = {
  port: 0, host: '127.0.0.1', delayMs: 20, chunks: 8,
  apiKey: 'sk-upstream-test', anthropicKey: 'sk-ant-upstream-test', log: false,
};

export async function startUpstream(opts = {}) {
  const o = { ...DEFAULTS };
  for (const [k, v] of Object.entries(opts)) if (v !== undefined) o[k] = v;
  const requests = [];
  // noDelay: each SSE chunk must hit the wire on its own, or timing tests
  // would measure Nagle instead of the proxy.
  const server = http.createServer({ noDelay: true }, (req, res) => {
    handle(req, res, o, requests).catch((err) => {
      if (res.headersSent) return res.destroy();
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: `upstream double crashed: ${err?.stack ?? err}`, type: 'server_error', param: null, code: null } }));
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address();
  const url = `http://${o.host.includes(':') ? `[${o.host}]` : o.host}:${port}`;
  let closing;
  return {
    url, port, requests, server,
    // Streams stalled "forever" hold their sockets open, so a plain
    // server.close() would never finish; cut every connection instead.
    close() {
      closing ??= new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

function control(req, res, path, requests) {
  const json = (status, obj) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(obj));
  };
  if (path === '/__health' && req.method === 'GET') return json(200, { status: 'ok', recorded: requests.length });
  if (path === '/__requests' && req.method === 'GET') return json(200, requests);
  if (path === '/__requests' && req.method === 'DELETE') {
    const cleared = requests.length;
    // In place: startUpstream() callers hold a reference to this array.
    requests.length = 0;
    return json(200, { cleared });
  }
  json(404, { error: `unknown control endpoint ${req.method} ${path}` });
}

async function handle(req, res, opts, requests) {
  const url = new URL(req.url, 'http://upstream');
  const path = url.pathname;
  const raw = await readBody(req);
  if (path.startsWith('/__')) return control(req, res, path, requests);

  let body = null;
  let jsonError = false;
  if (raw.length) {
    try {
      body = JSON.parse(raw);
    } catch {
      jsonError = true;
    }
  }
  // Recorded before auth/validation so tests can inspect exactly what the
  // proxy sent even when the double rejects it.
  const record = {
    method: req.method, path, query: Object.fromEntries(url.searchParams),
    headers: { ...req.headers }, body: jsonError ? raw : body, time: Date.now(),
    closedAt: null, abandoned: null,
  };
  requests.push(record);
  // When the exchange ended, and whether the proxy went away before the
  // answer was complete (a cancelled attempt).
  res.on('close', () => {
    record.closedAt = Date.now();
    record.abandoned = !res.writableFinished;
  });
  if (opts.log) {
    res.on('finish', () => console.error(`${req.method} ${req.url} -> ${res.statusCode}`));
  }

  // Aborted when the client goes away (or the response finishes), which
  // wakes any stall/delay so nothing keeps writing to a dead socket.
  const ac = new AbortController();
  res.on('close', () => ac.abort());
  const ctx = { req, res, method: req.method, path, body, jsonError, opts, signal: ac.signal, baseHeaders: {}, stream: false };

  const m = req.method;
  if (m === 'POST' && path === '/v1/chat/completions') return handleOpenAI(ctx, 'chat');
  if (m === 'POST' && path === '/v1/completions') return handleOpenAI(ctx, 'completions');
  if (m === 'POST' && path === '/v1/embeddings') return handleOpenAI(ctx, 'embeddings');
  if (m === 'POST' && path === '/v1/responses') return handleOpenAI(ctx, 'responses');
  if (m === 'POST' && path === '/v1/messages') return handleAnthropic(ctx, 'messages');
  if (m === 'GET' && path === '/v1/models') {
    return looksAnthropic(req) ? handleAnthropic(ctx, 'models') : handleOpenAI(ctx, 'models');
  }
  const model = /^\/v1\/models\/([^/]+)$/.exec(path);
  if (m === 'GET' && model) return handleOpenAI(ctx, 'models', decodeURIComponent(model[1]));
  return looksAnthropic(req) ? anthropicNotFound(ctx) : openaiNotFound(ctx);
}

const USAGE = `usage: node tests/upstream/server.mjs [--port 9100] [--host 127.0.0.1] [--delay-ms 20]
       [--chunks 8] [--api-key sk-upstream-test] [--anthropic-key sk-ant-upstream-test] [--log]`;

function cliOptions(argv, env) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      port: { type: 'string' }, host: { type: 'string' }, 'delay-ms': { type: 'string' },
      chunks: { type: 'string' }, 'api-key': { type: 'string' }, 'anthropic-key': { type: 'string' },
      log: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  const fromEnv = (k) => (env[k] === '' ? undefined : env[k]);
  const int = (v, name) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
    return n;
  };
  return {
    help: values.help,
    port: int(values.port ?? fromEnv('UPSTREAM_PORT'), 'port') ?? 9100,
    host: values.host ?? fromEnv('UPSTREAM_HOST'),
    delayMs: int(values['delay-ms'] ?? fromEnv('UPSTREAM_DELAY_MS'), 'delay-ms'),
    chunks: int(values.chunks ?? fromEnv('UPSTREAM_CHUNKS'), 'chunks'),
    apiKey: values['api-key'] ?? fromEnv('UPSTREAM_API_KEY'),
    anthropicKey: values['anthropic-key'] ?? fromEnv('UPSTREAM_ANTHROPIC_KEY'),
    log: values.log || env.UPSTREAM_LOG === '1',
  };
}

async function main() {
  let opts;
  try {
    opts = cliOptions(process.argv.slice(2), process.env);
  } catch (e) {
    console.error(`${e.message}\n${USAGE}`);
    process.exit(2);
  }
  if (opts.help) {
    console.log(USAGE);
    return;
  }
  const up = await startUpstream(opts);
  console.log(`upstream listening on ${up.url}`);
  const stop = () => up.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

function isMain() {
  try {
    return !!process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
  } catch {
    return false;
  }
}

if (isMain()) {
  main().catch((e) => {
    console.error(e?.stack ?? e);
    process.exit(1);
  });
}
