// OpenAI wire format: /v1/chat/completions, /v1/completions, /v1/embeddings,
// /v1/models (and /v1/responses, in openai_responses.mjs). Shapes follow the
// public API reference, including fields a
// proxy should pass through untouched (refusal, annotations, *_details).

import { createHash, randomBytes } from 'node:crypto';
import { responses } from './openai_responses.mjs';
import {
  DirectiveError, countWords, driveStream, planOutput, preflight, randomId,
  resolveDirective, sendJson, sseData, usageNumbers,
} from './common.mjs';

const FINGERPRINT = 'fp_5f1a2b3c4d';
const FINISH = { stop: 'stop', length: 'length', stop_sequence: 'stop', tool: 'tool_calls' };
// Lets an Anthropic-flavoured directive (e.g. finish_reason "max_tokens")
// still mean the right thing when the proxy routes it to an OpenAI upstream.
const FROM_ANTHROPIC = { end_turn: 'stop', max_tokens: 'length', stop_sequence: 'stop', tool_use: 'tool_calls' };

const MODELS = [
  ['gpt-4o-mini', 1721172741], ['gpt-4o', 1715367049],
  ['gpt-3.5-turbo-instruct', 1692901427], ['text-embedding-3-small', 1705948997],
];

function error(ctx, status, message, type, param = null, code = null, headers = {}) {
  sendJson(ctx, status, { error: { message, type, param, code } }, headers);
}

// Injected error statuses, with the bodies the real API uses for them.
// error_message / error_type / error_code in the directive override them
// (e.g. to mimic insufficient_quota, which is also a 429).
function injectedError(ctx, status, d) {
  const ra = d.retry_after ?? 1;
  let [message, type, code] = ['The server had an error while processing your request. Sorry about that!', 'server_error', null];
  const headers = {};
  if (status === 429) {
    message = `Rate limit reached for ${ctx.body?.model ?? 'gpt-4o-mini'} in organization org-upstreamtest on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in ${ra}s. Visit https://platform.openai.com/account/rate-limits to learn more.`;
    [type, code] = ['requests', 'rate_limit_exceeded'];
    Object.assign(headers, {
      'retry-after': String(ra),
      'x-ratelimit-limit-requests': '3',
      'x-ratelimit-remaining-requests': '0',
      'x-ratelimit-reset-requests': `${ra}s`,
    });
  } else if (status === 401) {
    [message, type, code] = ['Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key'];
  } else if (status === 403) {
    [message, type, code] = ['Country, region, or territory not supported', 'request_forbidden', 'unsupported_country_region_territory'];
  } else if (status === 404) {
    [message, type, code] = [`The model \`${ctx.body?.model}\` does not exist or you do not have access to it.`, 'invalid_request_error', 'model_not_found'];
  } else if (status < 500) {
    [message, type] = ['Invalid request.', 'invalid_request_error'];
  } else if (status === 503) {
    message = 'The server is overloaded or not ready yet.';
  }
  if (status !== 429 && d.retry_after != null) headers['retry-after'] = String(d.retry_after);
  error(ctx, status, d.error_message ?? message, d.error_type ?? type, null, d.error_code ?? code, headers);
}

const MID_STREAM_ERROR = sseData({
  error: { message: 'The server had an error while processing your request. Sorry about that!', type: 'server_error', param: null, code: null },
});

function mask(key) {
  return key.length > 8 ? key.slice(0, 3) + '*'.repeat(key.length - 7) + key.slice(-4) : '*'.repeat(key.length);
}

function authorized(ctx) {
  const expected = ctx.opts.apiKey;
  if (!expected) return true;
  const m = /^Bearer\s+(.+)$/i.exec(ctx.req.headers.authorization ?? '');
  if (!m) {
    error(ctx, 401, "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.", 'invalid_request_error');
    return false;
  }
  if (m[1].trim() !== expected) {
    error(ctx, 401, `Incorrect API key provided: ${mask(m[1].trim())}. You can find your API key at https://platform.openai.com/account/api-keys.`, 'invalid_request_error', null, 'invalid_api_key');
    return false;
  }
  return true;
}

// Returns an error-sending closure for the first missing/invalid field, or null.
function validate(ctx, required) {
  const b = ctx.body;
  if (ctx.jsonError || !b || typeof b !== 'object' || Array.isArray(b)) {
    return () => error(ctx, 400, "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)", 'invalid_request_error');
  }
  for (const p of required) {
    if (b[p] == null) return () => error(ctx, 400, `Missing required parameter: '${p}'.`, 'invalid_request_error', p, 'missing_required_parameter');
  }
  if (b.n != null && !(Number.isInteger(b.n) && b.n >= 1 && b.n <= 128)) {
    return () => error(ctx, 400, `Invalid 'n': integer between 1 and 128 expected, got ${JSON.stringify(b.n)}.`, 'invalid_request_error', 'n', 'invalid_value');
  }
  return null;
}

// Directive + stall + injected status. Returns the directive, or null when
// a response has already been sent.
async function prelude(ctx, lastUserText) {
  let resolved;
  try {
    resolved = resolveDirective(ctx.req.headers, lastUserText);
  } catch (e) {
    if (!(e instanceof DirectiveError)) throw e;
    error(ctx, 400, e.message, 'invalid_request_error');
    return null;
  }
  const ok = await preflight(ctx, resolved.directive, (s, d) => injectedError(ctx, s, d));
  return ok ? resolved : null;
}

function finishReason(plan, d) {
  if (d.finish_reason != null) return FROM_ANTHROPIC[d.finish_reason] ?? d.finish_reason;
  return FINISH[plan.finish];
}

// Only text parts carry words; images/audio parts are ignored for counting.
function partsText(content) {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.filter((p) => p?.type === 'text' && typeof p.text === 'string').map((p) => p.text).join('\n');
}

const range = (n) => Array.from({ length: n }, (_, i) => i);
const now = () => Math.floor(Date.now() / 1000);

async function chatCompletions(ctx) {
  const b = ctx.body;
  const invalid = validate(ctx, ['model', 'messages']);
  if (invalid) return invalid();
  if (!Array.isArray(b.messages)) return error(ctx, 400, `Invalid type for 'messages': expected an array, but got ${typeof b.messages} instead.`, 'invalid_request_error', 'messages', 'invalid_type');
  if (!b.messages.length) return error(ctx, 400, "[] is too short - 'messages'", 'invalid_request_error', 'messages', 'empty_array');
  ctx.stream = b.stream === true;
  const lastUser = b.messages.findLast((m) => m?.role === 'user');
  const resolved = await prelude(ctx, partsText(lastUser?.content));
  if (!resolved) return;
  const d = resolved.directive;
  const n = b.n ?? 1;
  const plan = planOutput(d, {
    chunks: ctx.opts.chunks, echoText: resolved.echoText, stop: b.stop,
    maxTokens: b.max_completion_tokens ?? b.max_tokens ?? null,
    schema: b.response_format?.type === 'json_schema' ? b.response_format.json_schema?.schema : undefined,
  });
  const finish = finishReason(plan, d);
  const promptWords = b.messages.reduce((sum, m) => sum + countWords(partsText(m?.content)), 0);
  const [pt, ct] = usageNumbers(Math.max(1, promptWords), plan.pieces.length * n, d.usage);
  const usage = {
    prompt_tokens: pt, completion_tokens: ct, total_tokens: pt + ct,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
  };
  const id = randomId('chatcmpl-', 29);
  const created = now();
  const callIds = range(n).map(() => randomId('call_', 24));

  if (!ctx.stream) {
    const choices = range(n).map((i) => ({
      index: i,
      message: plan.tool
        ? { role: 'assistant', content: null, tool_calls: [{ id: callIds[i], type: 'function', function: { name: plan.tool.name, arguments: plan.text } }], refusal: null, annotations: [] }
        : { role: 'assistant', content: plan.text, refusal: null, annotations: [] },
      logprobs: null,
      finish_reason: finish,
    }));
    return sendJson(ctx, 200, { id, object: 'chat.completion', created, model: b.model, choices, usage, service_tier: 'default', system_fingerprint: FINGERPRINT });
  }

  // Per the API reference, with include_usage every chunk carries
  // "usage": null and one extra chunk with empty choices carries the totals.
  const includeUsage = b.stream_options?.include_usage === true;
  const chunk = (choices, u = null) => sseData({
    id, object: 'chat.completion.chunk', created, model: b.model, service_tier: 'default',
    system_fingerprint: FINGERPRINT, choices, ...(includeUsage ? { usage: u } : {}),
  });
  const choice = (index, delta, finishReason = null) => ({ index, delta, logprobs: null, finish_reason: finishReason });
  const head = range(n).map((i) => chunk([choice(i, plan.tool
    ? { role: 'assistant', content: null, tool_calls: [{ index: 0, id: callIds[i], type: 'function', function: { name: plan.tool.name, arguments: '' } }], refusal: null }
    : { role: 'assistant', content: '', refusal: null })]));
  const steps = plan.pieces.map((p) => range(n).map((i) => chunk([choice(i, plan.tool
    ? { tool_calls: [{ index: 0, function: { arguments: p } }] }
    : { content: p })])));
  const tail = range(n).map((i) => chunk([choice(i, {}, finish)]));
  if (includeUsage) tail.push(chunk([], usage));
  tail.push('data: [DONE]\n\n');
  await driveStream(ctx, d, { head, steps, tail, errorFrame: MID_STREAM_ERROR, delayMs: ctx.opts.delayMs });
}

// Legacy prompt may be a string, array of strings, a token array or an array
// of token arrays; each prompt gets its own n choices.
function normalizePrompt(prompt) {
  if (typeof prompt === 'string') return [prompt];
  if (!Array.isArray(prompt) || !prompt.length) return null;
  if (prompt.every((t) => Number.isInteger(t))) return [prompt];
  if (prompt.every((p) => typeof p === 'string' || (Array.isArray(p) && p.every(Number.isInteger)))) return prompt;
  return null;
}

async function completions(ctx) {
  const b = ctx.body;
  const invalid = validate(ctx, ['model', 'prompt']);
  if (invalid) return invalid();
  const prompts = normalizePrompt(b.prompt);
  if (!prompts) return error(ctx, 400, "'$.prompt' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.", 'invalid_request_error', 'prompt');
  ctx.stream = b.stream === true;
  const resolved = await prelude(ctx, prompts.findLast((p) => typeof p === 'string') ?? '');
  if (!resolved) return;
  const d = { ...resolved.directive, tool_call: undefined };
  const perPrompt = b.n ?? 1;
  const n = prompts.length * perPrompt;
  // The legacy endpoint really does default max_tokens to 16.
  const maxTokens = 'max_tokens' in b ? b.max_tokens : 16;
  const plan = planOutput(d, { chunks: ctx.opts.chunks, echoText: resolved.echoText, maxTokens, stop: b.stop });
  const finish = finishReason(plan, d);
  const promptWords = prompts.reduce((s, p) => s + (typeof p === 'string' ? countWords(p) : p.length), 0);
  const [pt, ct] = usageNumbers(Math.max(1, promptWords), plan.pieces.length * n, d.usage);
  const usage = { prompt_tokens: pt, completion_tokens: ct, total_tokens: pt + ct };
  const id = randomId('cmpl-', 29);
  const created = now();

  if (!ctx.stream) {
    const choices = range(n).map((i) => ({ text: plan.text, index: i, logprobs: null, finish_reason: finish }));
    return sendJson(ctx, 200, { id, object: 'text_completion', created, model: b.model, system_fingerprint: FINGERPRINT, choices, usage });
  }
  const includeUsage = b.stream_options?.include_usage === true;
  const chunk = (choices, u = null) => sseData({
    id, object: 'text_completion', created, choices, model: b.model,
    system_fingerprint: FINGERPRINT, ...(includeUsage ? { usage: u } : {}),
  });
  const choice = (index, text, finishReason = null) => ({ text, index, logprobs: null, finish_reason: finishReason });
  const steps = plan.pieces.map((p) => range(n).map((i) => chunk([choice(i, p)])));
  const tail = range(n).map((i) => chunk([choice(i, '', finish)]));
  if (includeUsage) tail.push(chunk([], usage));
  tail.push('data: [DONE]\n\n');
  await driveStream(ctx, d, { head: [], steps, tail, errorFrame: MID_STREAM_ERROR, delayMs: ctx.opts.delayMs });
}

// Deterministic, L2-normalised pseudo-embedding: sha256 of the input (and of
// "input#k" for further blocks) read as uint32s mapped to [-1, 1). Values are
// rounded to float32 so the JSON and base64 encodings decode identically.
export function embedVector(input, dims) {
  const key = typeof input === 'string' ? input : JSON.stringify(input);
  const raw = [];
  for (let block = 0; raw.length < dims; block++) {
    const h = createHash('sha256').update(block ? `${key}#${block}` : key).digest();
    for (let o = 0; o < h.length && raw.length < dims; o += 4) raw.push((h.readUInt32LE(o) / 2 ** 32) * 2 - 1);
  }
  const norm = Math.sqrt(raw.reduce((s, v) => s + v * v, 0)) || 1;
  return raw.map((v) => Math.fround(v / norm));
}

function toBase64(vec) {
  const buf = Buffer.alloc(vec.length * 4);
  vec.forEach((v, i) => buf.writeFloatLE(v, i * 4));
  return buf.toString('base64');
}

async function embeddings(ctx) {
  const b = ctx.body;
  const invalid = validate(ctx, ['model', 'input']);
  if (invalid) return invalid();
  const inputs = typeof b.input === 'string' ? [b.input] : normalizePrompt(b.input);
  if (!inputs || inputs.some((x) => x.length === 0)) {
    return error(ctx, 400, "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.", 'invalid_request_error', 'input');
  }
  const dims = b.dimensions ?? 8;
  // The real API refuses more dimensions than the model has (3072 at most).
  if (!Number.isInteger(dims) || dims < 1 || dims > 3072) return error(ctx, 400, `Invalid value for 'dimensions': ${JSON.stringify(b.dimensions)}.`, 'invalid_request_error', 'dimensions', 'invalid_value');
  const format = b.encoding_format ?? 'float';
  if (format !== 'float' && format !== 'base64') return error(ctx, 400, `Invalid value for 'encoding_format': ${JSON.stringify(format)}. Supported values are: 'float' and 'base64'.`, 'invalid_request_error', 'encoding_format', 'invalid_value');
  ctx.stream = false;
  const resolved = await prelude(ctx, inputs.findLast((x) => typeof x === 'string') ?? '');
  if (!resolved) return;
  const data = inputs.map((inp, index) => {
    const vec = embedVector(inp, dims);
    return { object: 'embedding', index, embedding: format === 'base64' ? toBase64(vec) : vec };
  });
  const words = inputs.reduce((s, x) => s + (typeof x === 'string' ? countWords(x) : x.length), 0);
  const [pt] = usageNumbers(Math.max(1, words), 0, resolved.directive.usage);
  sendJson(ctx, 200, { object: 'list', data, model: b.model, usage: { prompt_tokens: pt, total_tokens: pt } });
}

const modelObject = ([id, created]) => ({ id, object: 'model', created, owned_by: 'system' });

async function models(ctx, id) {
  ctx.stream = false;
  const resolved = await prelude(ctx, '');
  if (!resolved) return;
  if (id === undefined) return sendJson(ctx, 200, { object: 'list', data: MODELS.map(modelObject) });
  const found = MODELS.find(([m]) => m === id);
  if (!found) return error(ctx, 404, `The model '${id}' does not exist`, 'invalid_request_error', 'model', 'model_not_found');
  sendJson(ctx, 200, modelObject(found));
}

export function openaiNotFound(ctx) {
  ctx.baseHeaders = { 'x-request-id': `req_${randomBytes(16).toString('hex')}` };
  error(ctx, 404, `Invalid URL (${ctx.method} ${ctx.path})`, 'invalid_request_error');
}

// route: 'chat' | 'completions' | 'embeddings' | 'responses' | 'models'; modelId for
// GET /v1/models/{id}.
export async function handleOpenAI(ctx, route, modelId) {
  ctx.baseHeaders = { 'x-request-id': `req_${randomBytes(16).toString('hex')}`, 'openai-version': '2020-10-01' };
  if (!authorized(ctx)) return;
  if (route === 'chat') return chatCompletions(ctx);
  if (route === 'completions') return completions(ctx);
  if (route === 'embeddings') return embeddings(ctx);
  if (route === 'responses') return responses(ctx, { error, prelude, midStreamError: MID_STREAM_ERROR });
  return models(ctx, modelId);
}
