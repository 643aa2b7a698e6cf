// Shared pieces of the upstream test double: directive parsing, token
// counting, content planning and the fault-injecting SSE stream driver.
// Provider modules (openai.mjs, anthropic.mjs) only decide the wire format.

import { randomBytes } from 'node:crypto';

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

// Real IDs are random; tests should never depend on them, so random is the
// honest choice (it also catches proxies that cache or dedupe by id).
export function randomId(prefix, len = 24) {
  let s = '';
  for (const b of randomBytes(len)) s += ALNUM[b % ALNUM.length];
  return prefix + s;
}

// Token counting is deliberately trivial so tests can compute expectations by
// hand: one token per whitespace-separated word.
export function countWords(text) {
  if (typeof text !== 'string') return 0;
  return text.split(/\s+/).filter(Boolean).length;
}

export class DirectiveError extends Error {}

// Finds `MOCK{...}` in free text and parses the balanced JSON object after the
// literal MOCK. Strings inside the JSON are tracked so a "}" inside a string
// value does not end the object early.
export function extractMock(text) {
  const start = typeof text === 'string' ? text.indexOf('MOCK{') : -1;
  if (start < 0) return { directive: null, stripped: text ?? '' };
  const open = start + 4;
  let depth = 0;
  let inString = false;
  let escaped = false;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) {
      const directive = parseDirectiveJson(text.slice(open, i + 1), 'MOCK{...} directive');
      const before = text.slice(0, start).trimEnd();
      const after = text.slice(i + 1).trimStart();
      return { directive, stripped: [before, after].filter(Boolean).join(' ') };
    }
  }
  throw new DirectiveError('MOCK directive has unbalanced braces');
}

function parseDirectiveJson(json, where) {
  let value;
  try {
    value = JSON.parse(json);
  } catch (e) {
    throw new DirectiveError(`${where} is not valid JSON: ${e.message}`);
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    throw new DirectiveError(`${where} must be a JSON object`);
  }
  return value;
}

// Header first: it survives any body translation a proxy does. The text form
// exists for clients that cannot set headers (e.g. a real SDK behind the
// proxy). The first source found wins; the two are not merged.
export function resolveDirective(headers, lastUserText) {
  const header = headers['x-mock'];
  if (header !== undefined && header !== '') {
    const { stripped } = safeStrip(lastUserText);
    return { directive: parseDirectiveJson(header, 'x-mock header'), echoText: stripped };
  }
  const { directive, stripped } = extractMock(lastUserText ?? '');
  return { directive: directive ?? {}, echoText: stripped };
}

function safeStrip(text) {
  try {
    return extractMock(text ?? '');
  } catch {
    return { stripped: text ?? '' };
  }
}

// Splits text into at most `k` contiguous pieces of near-equal length, by code
// point so multi-byte characters are never cut in half.
export function splitText(text, k) {
  const cps = Array.from(text);
  const n = Math.min(k, cps.length);
  const pieces = [];
  for (let i = 0; i < n; i++) {
    pieces.push(cps.slice(Math.floor((i * cps.length) / n), Math.floor(((i + 1) * cps.length) / n)).join(''));
  }
  return pieces;
}

function nonNegInt(v, fallback) {
  const n = Number(v);
  return Number.isFinite(n) && n >= 0 ? Math.floor(n) : fallback;
}

// A value that satisfies a JSON Schema (the subset structured outputs
// take): what a model constrained to the schema would write. Every property
// is filled, strings say tok0, numbers are 0.
export function schemaInstance(schema, depth = 0) {
  if (!schema || typeof schema !== 'object' || depth > 8) return null;
  if ('const' in schema) return schema.const;
  if (Array.isArray(schema.enum) && schema.enum.length) return schema.enum[0];
  const alt = schema.anyOf ?? schema.oneOf;
  if (Array.isArray(alt) && alt.length) return schemaInstance(alt[0], depth + 1);
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== 'null') ?? 'null' : schema.type;
  switch (type) {
    case 'object': {
      const out = {};
      for (const [k, v] of Object.entries(schema.properties ?? {})) out[k] = schemaInstance(v, depth + 1);
      return out;
    }
    case 'array': return [schemaInstance(schema.items ?? {}, depth + 1)];
    case 'string': return 'tok0';
    case 'integer': case 'number': return schema.minimum ?? 0;
    case 'boolean': return true;
    default: return schema.properties ? schemaInstance({ ...schema, type: 'object' }, depth) : null;
  }
}

// Decides what the "model" outputs. `finish` is provider-neutral
// (stop | length | stop_sequence | tool); each provider maps it to its names.
// One piece == one streamed chunk == one completion token.
export function planOutput(d, { chunks, echoText, maxTokens, stop, schema }) {
  const k = nonNegInt(d.chunks, chunks);
  let pieces;
  let finish = 'stop';
  let stopSequence = null;
  let tool = null;
  if (d.tool_call && typeof d.tool_call === 'object') {
    const args = d.tool_call.arguments ?? {};
    tool = { name: String(d.tool_call.name ?? 'tool'), args: typeof args === 'string' ? args : JSON.stringify(args) };
    pieces = splitText(tool.args, k);
    finish = 'tool';
  } else {
    if (typeof d.content === 'string') pieces = splitText(d.content, k);
    else if (schema) pieces = splitText(JSON.stringify(schemaInstance(schema)), k);
    else if (d.echo) pieces = splitText(echoText ?? '', k);
    else pieces = Array.from({ length: k }, (_, i) => (i ? ` tok${i}` : 'tok0'));
    // Stop sequences are checked on the full text, as a real model stops
    // generating at the first match; pieces past the match are dropped.
    const stops = (Array.isArray(stop) ? stop : stop != null ? [stop] : []).filter((s) => typeof s === 'string' && s);
    if (stops.length) {
      const full = pieces.join('');
      let cut = -1;
      for (const s of stops) {
        const at = full.indexOf(s);
        if (at >= 0 && (cut < 0 || at < cut)) [cut, stopSequence] = [at, s];
      }
      if (cut >= 0) {
        const kept = [];
        let pos = 0;
        for (const p of pieces) {
          if (pos >= cut) break;
          kept.push(p.slice(0, cut - pos));
          pos += p.length;
        }
        pieces = kept;
        finish = 'stop_sequence';
      }
    }
  }
  if (maxTokens != null && pieces.length > maxTokens) {
    pieces = pieces.slice(0, Math.max(0, maxTokens));
    finish = 'length';
    stopSequence = null;
  }
  return { pieces, finish, stopSequence, tool, text: pieces.join('') };
}

// Resolves after `ms`, or early (with false) when the request is aborted.
// Infinity / huge values mean "until aborted": Node would otherwise clamp
// them to 1ms and fire immediately.
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    let timer;
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    if (Number.isFinite(ms) && ms <= 2 ** 31 - 1) {
      timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve(true);
      }, Math.max(0, ms));
    }
  });
}

// Directive usage overrides accept either provider's field names, so the same
// directive works whichever format the proxy translates to.
export function usageNumbers(prompt, completion, override) {
  const o = override && typeof override === 'object' ? override : {};
  return [o.prompt_tokens ?? o.input_tokens ?? prompt, o.completion_tokens ?? o.output_tokens ?? completion];
}

export function sendJson(ctx, status, obj, extraHeaders = {}) {
  if (ctx.res.headersSent || ctx.res.destroyed) return;
  const body = JSON.stringify(obj);
  ctx.res.writeHead(status, {
    ...ctx.baseHeaders,
    ...extraHeaders,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  });
  ctx.res.end(body);
}

// RST rather than FIN: that is what a crashed upstream or a dropped NAT entry
// looks like, and it must surface as an error, never as a clean end.
export function resetSocket(res) {
  const sock = res.socket;
  if (!sock || sock.destroyed) return;
  if (typeof sock.resetAndDestroy === 'function') sock.resetAndDestroy();
  else sock.destroy();
}

export const sseData = (obj) => `data: ${JSON.stringify(obj)}\n\n`;
export const sseEvent = (name, obj) => `event: ${name}\ndata: ${JSON.stringify(obj)}\n\n`;

// Common prelude for generation endpoints: pre-header stall, then an injected
// error status. Returns false when the response has already been decided.
export async function preflight(ctx, d, sendError) {
  const stall = Number(d.stall_ms);
  if (stall > 0 && !(await sleep(stall, ctx.signal))) return false;
  if (Array.isArray(d.raw)) {
    await replayRaw(ctx, d);
    return false;
  }
  if (d.raw_json !== undefined) {
    sendJson(ctx, 200, d.raw_json);
    return false;
  }
  const status = Number(d.status);
  if (Number.isInteger(status) && status >= 400 && status <= 599) {
    sendError(status, d);
    return false;
  }
  if (!ctx.stream && d.reset_after != null) {
    // Non-streaming: the headers and part of the JSON body go out, then
    // the connection is reset, as when a provider dies mid-answer.
    const partial = '{"id":"chatcmpl-reset","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"tok0 tok1';
    ctx.res.writeHead(200, { ...ctx.baseHeaders, 'content-type': 'application/json', 'content-length': String(partial.length + 4096) });
    ctx.res.write(partial, async () => {
      await sleep(15, ctx.signal);
      resetSocket(ctx.res);
    });
    return false;
  }
  return true;
}

// Replays a provider's response byte for byte (`raw`: SSE frames, each
// written as given, `delay_ms` apart). With `keepalive_ms` the connection
// then stays open, sending only `: keepalive` comments until the client
// goes, as some upstreams do after their last event.
async function replayRaw(ctx, d) {
  const { res, signal } = ctx;
  res.writeHead(200, { ...ctx.baseHeaders, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
  const delay = nonNegInt(d.delay_ms, 0);
  for (const frame of d.raw) {
    if (res.destroyed) return;
    res.write(String(frame));
    if (delay && !(await sleep(delay, signal))) return;
  }
  const every = nonNegInt(d.keepalive_ms, 0);
  while (every && !res.destroyed) {
    if (!(await sleep(every, signal))) return;
    res.write(': keepalive\n\n');
  }
  res.end();
}

// Drives one SSE response. `steps[k]` holds the frames for content chunk k
// (one frame per choice). Faults are evaluated after k chunks have been sent,
// so `reset_after: 0` fires right after the preamble and `reset_after: N`
// (N == number of chunks) fires just before the finish frames.
export async function driveStream(ctx, d, { head, steps, tail, errorFrame, delayMs }) {
  const { res, signal } = ctx;
  res.writeHead(200, {
    ...ctx.baseHeaders,
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
  });
  // Headers go out now so clients see the 200 before the first token, the
  // way a real provider behaves while the model is still thinking.
  res.flushHeaders();
  const send = (frame) =>
    new Promise((resolve) => {
      if (signal.aborted || res.destroyed) return resolve();
      signal.addEventListener('abort', resolve, { once: true });
      // Waiting for the write callback means the bytes reached the kernel,
      // so a later reset cannot swallow chunks the test expects to arrive.
      res.write(frame, () => {
        signal.removeEventListener('abort', resolve);
        resolve();
      });
    });
  const delay = nonNegInt(d.delay_ms, delayMs);
  for (const f of head) await send(f);
  for (let k = 0; ; k++) {
    if (signal.aborted) return;
    if (d.reset_after != null && Number(d.reset_after) === k) {
      // Small grace so the peer has read what we sent before the RST lands.
      await sleep(15, signal);
      resetSocket(res);
      return;
    }
    if (d.sse_error_after != null && Number(d.sse_error_after) === k) {
      await send(errorFrame);
      res.end();
      return;
    }
    if (d.stall_after != null && Number(d.stall_after) === k) {
      const ms = d.stall_ms2 != null ? Number(d.stall_ms2) : Infinity;
      if (!(await sleep(ms, signal))) return;
    }
    if (k === steps.length) break;
    if (k > 0 && delay > 0 && !(await sleep(delay, signal))) return;
    for (const f of steps[k]) await send(f);
  }
  for (const f of tail) await send(f);
  res.end();
}
