// Anthropic Messages API wire format: POST /v1/messages (and GET /v1/models
// when called with Anthropic headers). Follows the public API reference,
// including the exact streaming event order and the top-level request_id on
// error bodies.

import {
  DirectiveError, countWords, driveStream, planOutput, preflight, randomId,
  resolveDirective, sendJson, sseEvent, usageNumbers,
} from './common.mjs';

const STOP = { stop: 'end_turn', length: 'max_tokens', stop_sequence: 'stop_sequence', tool: 'tool_use' };
// An OpenAI-flavoured directive (finish_reason "length") must still mean the
// right thing after a proxy routes the request to an Anthropic upstream.
const FROM_OPENAI = { stop: 'end_turn', length: 'max_tokens', tool_calls: 'tool_use', function_call: 'tool_use', content_filter: 'refusal' };

const ERRORS = {
  400: ['invalid_request_error', 'Invalid request.'],
  401: ['authentication_error', 'invalid x-api-key'],
  402: ['billing_error', 'Your credit balance is too low to access the Anthropic API.'],
  403: ['permission_error', 'Your API key does not have permission to use the specified resource.'],
  404: ['not_found_error', 'Not found'],
  413: ['request_too_large', 'Request exceeds the maximum allowed number of bytes.'],
  429: ['rate_limit_error', 'Number of request tokens has exceeded your per-minute rate limit (https://docs.anthropic.com/en/api/rate-limits); see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later. You may also contact sales at https://www.anthropic.com/contact-sales to discuss your options for a rate limit increase.'],
  500: ['api_error', 'Internal server error'],
  504: ['timeout_error', 'Request timed out'],
  529: ['overloaded_error', 'Overloaded'],
};

const MODELS = [
  ['claude-sonnet-4-20250514', 'Claude Sonnet 4', '2025-05-22T00:00:00Z'],
  ['claude-3-5-haiku-20241022', 'Claude Haiku 3.5', '2024-10-22T00:00:00Z'],
];

function error(ctx, status, type, message, headers = {}) {
  sendJson(ctx, status, { type: 'error', error: { type, message }, request_id: ctx.requestId }, headers);
}

function injectedError(ctx, status, d) {
  const [type, message] = ERRORS[status] ?? (status >= 500 ? ERRORS[500] : ERRORS[400]);
  const headers = {};
  if (status === 429) {
    const ra = d.retry_after ?? 1;
    Object.assign(headers, {
      'retry-after': String(ra),
      'anthropic-ratelimit-requests-limit': '50',
      'anthropic-ratelimit-requests-remaining': '0',
      'anthropic-ratelimit-requests-reset': new Date(Date.now() + ra * 1000).toISOString().replace(/\.\d+Z$/, 'Z'),
    });
  } else if (d.retry_after != null) {
    headers['retry-after'] = String(d.retry_after);
  }
  error(ctx, status, d.error_type ?? type, d.error_message ?? message, headers);
}

const MID_STREAM_ERROR = sseEvent('error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } });

// withToolResults: token counting includes tool_result text (it is prompt
// input); directive lookup does not (a MOCK must be typed by the "user").
function blocksText(content, withToolResults) {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((b) => (b?.type === 'text' ? b.text : withToolResults && b?.type === 'tool_result' ? blocksText(b.content, false) : ''))
    .filter((t) => typeof t === 'string' && t)
    .join('\n');
}

function checkHeaders(ctx) {
  const expected = ctx.opts.anthropicKey;
  const key = ctx.req.headers['x-api-key'];
  if (expected && !key) return error(ctx, 401, 'authentication_error', 'x-api-key header is required'), false;
  if (expected && key !== expected) return error(ctx, 401, 'authentication_error', 'invalid x-api-key'), false;
  if (!ctx.req.headers['anthropic-version']) return error(ctx, 400, 'invalid_request_error', 'anthropic-version: header is required'), false;
  return true;
}

function invalidBody(ctx) {
  const b = ctx.body;
  if (ctx.jsonError || !b || typeof b !== 'object' || Array.isArray(b)) return 'There was an issue with the format of your request: the body is not valid JSON.';
  for (const f of ['model', 'messages', 'max_tokens']) if (b[f] == null) return `${f}: Field required`;
  if (!Array.isArray(b.messages)) return 'messages: Input should be a valid list';
  if (!Number.isInteger(b.max_tokens)) return 'max_tokens: Input should be a valid integer';
  if (b.max_tokens < 1) return 'max_tokens: Input should be greater than or equal to 1';
  return null;
}

async function messages(ctx) {
  const bad = invalidBody(ctx);
  if (bad) return error(ctx, 400, 'invalid_request_error', bad);
  const b = ctx.body;
  ctx.stream = b.stream === true;
  const lastUser = b.messages.findLast((m) => m?.role === 'user');
  let resolved;
  try {
    resolved = resolveDirective(ctx.req.headers, blocksText(lastUser?.content, false));
  } catch (e) {
    if (!(e instanceof DirectiveError)) throw e;
    return error(ctx, 400, 'invalid_request_error', e.message);
  }
  const d = resolved.directive;
  if (!(await preflight(ctx, d, (s, dd) => injectedError(ctx, s, dd)))) return;

  const format = b.output_config?.format;
  const plan = planOutput(d, {
    chunks: ctx.opts.chunks, echoText: resolved.echoText, maxTokens: b.max_tokens, stop: b.stop_sequences,
    schema: format?.type === 'json_schema' ? format.schema : undefined,
  });
  const override = d.stop_reason ?? d.finish_reason;
  const stopReason = override != null ? (FROM_OPENAI[override] ?? override) : STOP[plan.finish];
  const stopSequence = stopReason === 'stop_sequence' ? plan.stopSequence : null;
  const promptWords = countWords(blocksText(b.system, false))
    + b.messages.reduce((s, m) => s + countWords(blocksText(m?.content, true)), 0);
  const [inputTokens, outputTokens] = usageNumbers(Math.max(1, promptWords), plan.pieces.length, d.usage);
  const id = randomId('msg_01', 22);
  const toolId = randomId('toolu_01', 22);
  const usage = (output) => ({ input_tokens: inputTokens, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: output });

  if (!ctx.stream) {
    let content;
    if (plan.tool) {
      let input = {};
      try {
        input = JSON.parse(plan.text);
      } catch {
        // Truncated arguments (max_tokens) are not valid JSON; real tool_use
        // blocks always carry an object.
      }
      content = [{ type: 'tool_use', id: toolId, name: plan.tool.name, input }];
    } else {
      content = [{ type: 'text', text: plan.text }];
    }
    return sendJson(ctx, 200, {
      id, type: 'message', role: 'assistant', model: b.model, content,
      stop_reason: stopReason, stop_sequence: stopSequence, usage: usage(outputTokens),
    });
  }

  // Event order as documented: message_start, content_block_start, ping,
  // content_block_delta*, content_block_stop, message_delta, message_stop.
  const head = [
    sseEvent('message_start', {
      type: 'message_start',
      message: { id, type: 'message', role: 'assistant', model: b.model, content: [], stop_reason: null, stop_sequence: null, usage: usage(1) },
    }),
    sseEvent('content_block_start', {
      type: 'content_block_start', index: 0,
      content_block: plan.tool ? { type: 'tool_use', id: toolId, name: plan.tool.name, input: {} } : { type: 'text', text: '' },
    }),
    sseEvent('ping', { type: 'ping' }),
  ];
  const steps = plan.pieces.map((p) => [sseEvent('content_block_delta', {
    type: 'content_block_delta', index: 0,
    delta: plan.tool ? { type: 'input_json_delta', partial_json: p } : { type: 'text_delta', text: p },
  })]);
  const tail = [
    sseEvent('content_block_stop', { type: 'content_block_stop', index: 0 }),
    sseEvent('message_delta', { type: 'message_delta', delta: { stop_reason: stopReason, stop_sequence: stopSequence }, usage: { output_tokens: outputTokens } }),
    sseEvent('message_stop', { type: 'message_stop' }),
  ];
  await driveStream(ctx, d, { head, steps, tail, errorFrame: MID_STREAM_ERROR, delayMs: ctx.opts.delayMs });
}

async function models(ctx) {
  ctx.stream = false;
  let d;
  try {
    d = resolveDirective(ctx.req.headers, '').directive;
  } catch (e) {
    return error(ctx, 400, 'invalid_request_error', e.message);
  }
  if (!(await preflight(ctx, d, (s, dd) => injectedError(ctx, s, dd)))) return;
  const data = MODELS.map(([id, display_name, created_at]) => ({ type: 'model', id, display_name, created_at }));
  sendJson(ctx, 200, { data, has_more: false, first_id: data[0].id, last_id: data.at(-1).id });
}

// A request "looks Anthropic" when it carries Anthropic auth/version headers
// and no OpenAI bearer token; used to pick the format of /v1/models and 404s.
export function looksAnthropic(req) {
  return !req.headers.authorization && (req.headers['x-api-key'] != null || req.headers['anthropic-version'] != null);
}

export function anthropicNotFound(ctx) {
  ctx.requestId = randomId('req_011C', 20);
  ctx.baseHeaders = { 'request-id': ctx.requestId };
  error(ctx, 404, 'not_found_error', 'Not Found');
}

// route: 'messages' | 'models'
export async function handleAnthropic(ctx, route) {
  ctx.requestId = randomId('req_011C', 20);
  ctx.baseHeaders = { 'request-id': ctx.requestId };
  if (!checkHeaders(ctx)) return;
  return route === 'messages' ? messages(ctx) : models(ctx);
}
