// OpenAI's Responses API: POST /v1/responses, streaming (the typed,
// sequence-numbered events) and not. Shapes follow the public API
// reference. The double keeps no state: `previous_response_id` is a 400,
// as from a provider that never stored the response, so a gateway that
// forwards one (instead of the conversation) fails its tests.

import { randomBytes } from 'node:crypto';
import { countWords, driveStream, planOutput, sendJson, sseEvent, usageNumbers } from './common.mjs';

const hex = (n) => randomBytes(n).toString('hex');
const now = () => Math.floor(Date.now() / 1000);

// Text of the last user item: a string input, or a message's string or
// input_text parts.
function lastUserText(input) {
  if (typeof input === 'string') return input;
  if (!Array.isArray(input)) return '';
  const m = input.findLast((i) => i?.role === 'user' && (i.type === undefined || i.type === 'message'));
  if (!m) return '';
  if (typeof m.content === 'string') return m.content;
  if (!Array.isArray(m.content)) return '';
  return m.content.filter((p) => p?.type === 'input_text').map((p) => p.text).join('\n');
}

function inputWords(input, instructions) {
  let n = countWords(typeof instructions === 'string' ? instructions : '');
  if (typeof input === 'string') return n + countWords(input);
  for (const i of Array.isArray(input) ? input : []) {
    if (typeof i?.content === 'string') n += countWords(i.content);
    else if (Array.isArray(i?.content)) for (const p of i.content) n += countWords(p?.text ?? '');
    else if (typeof i?.output === 'string') n += countWords(i.output);
    else if (typeof i?.arguments === 'string') n += countWords(i.arguments);
  }
  return n;
}

// ctx, the request body, `error(ctx, status, message, type, param, code)`,
// `prelude(ctx, text)` (directive, stall, injected status) and the
// mid-stream error frame come from the chat double.
export async function responses(ctx, { error, prelude, midStreamError }) {
  const b = ctx.body;
  if (b == null || typeof b !== 'object') return error(ctx, 400, 'We could not parse the JSON body of your request.', 'invalid_request_error');
  if (typeof b.model !== 'string') return error(ctx, 400, "Missing required parameter: 'model'.", 'invalid_request_error', 'model', 'missing_required_parameter');
  if (b.input === undefined) return error(ctx, 400, "Missing required parameter: 'input'.", 'invalid_request_error', 'input', 'missing_required_parameter');
  if (b.previous_response_id != null) {
    return error(ctx, 400, `Previous response with id '${b.previous_response_id}' not found.`, 'invalid_request_error', 'previous_response_id', 'previous_response_not_found');
  }
  ctx.stream = b.stream === true;
  const resolved = await prelude(ctx, lastUserText(b.input));
  if (!resolved) return;
  const d = resolved.directive;
  const format = b.text?.format;
  const plan = planOutput(d, {
    chunks: ctx.opts.chunks, echoText: resolved.echoText, maxTokens: b.max_output_tokens ?? null,
    schema: format?.type === 'json_schema' ? format.schema : undefined,
  });
  const [it, ot] = usageNumbers(Math.max(1, inputWords(b.input, b.instructions)), plan.pieces.length, d.usage);
  const usage = {
    input_tokens: it, input_tokens_details: { cached_tokens: 0 },
    output_tokens: ot, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: it + ot,
  };
  const id = `resp_${hex(24)}`;
  const itemId = plan.tool ? `fc_${hex(24)}` : `msg_${hex(24)}`;
  const callId = `call_${hex(12)}`;
  const incomplete = plan.finish === 'length';
  const status = incomplete ? 'incomplete' : 'completed';
  const base = {
    id, object: 'response', created_at: now(), status: 'in_progress', background: false, error: null,
    incomplete_details: null, instructions: b.instructions ?? null, max_output_tokens: b.max_output_tokens ?? null,
    model: `${b.model}-2024-07-18`, output: [], parallel_tool_calls: b.parallel_tool_calls ?? true,
    previous_response_id: null, reasoning: { effort: null, summary: null }, service_tier: 'default',
    store: b.store ?? true, temperature: b.temperature ?? 1, text: b.text ?? { format: { type: 'text' } },
    tool_choice: b.tool_choice ?? 'auto', tools: b.tools ?? [], top_p: b.top_p ?? 1, truncation: 'disabled',
    usage: null, user: b.user ?? null, metadata: b.metadata ?? {},
  };
  const part = (text) => ({ type: 'output_text', annotations: [], logprobs: [], text });
  const item = (text, st) => (plan.tool
    ? { id: itemId, type: 'function_call', status: st, arguments: text, call_id: callId, name: plan.tool.name }
    : { id: itemId, type: 'message', status: st, content: st === 'in_progress' ? [] : [part(text)], role: 'assistant' });
  const final = {
    ...base, status, usage, output: [item(plan.text, incomplete ? 'incomplete' : 'completed')],
    incomplete_details: incomplete ? { reason: 'max_output_tokens' } : null,
  };
  if (!ctx.stream) return sendJson(ctx, 200, final);

  let seq = 0;
  const ev = (type, fields) => sseEvent(type, { type, sequence_number: seq++, ...fields });
  const at = { item_id: itemId, output_index: 0 };
  const head = [
    ev('response.created', { response: base }),
    ev('response.in_progress', { response: base }),
    ev('response.output_item.added', { output_index: 0, item: item('', 'in_progress') }),
  ];
  if (!plan.tool) head.push(ev('response.content_part.added', { ...at, content_index: 0, part: part('') }));
  // Frames are numbered as they are made, so build them in stream order.
  const steps = plan.pieces.map((p) => plan.tool
    ? ev('response.function_call_arguments.delta', { ...at, delta: p })
    : ev('response.output_text.delta', { ...at, content_index: 0, delta: p, logprobs: [] }));
  const tail = plan.tool
    ? [ev('response.function_call_arguments.done', { ...at, arguments: plan.text })]
    : [ev('response.output_text.done', { ...at, content_index: 0, text: plan.text, logprobs: [] }),
      ev('response.content_part.done', { ...at, content_index: 0, part: part(plan.text) })];
  tail.push(ev('response.output_item.done', { output_index: 0, item: final.output[0] }));
  tail.push(ev(`response.${status}`, { response: final }));
  const errorFrame = sseEvent('error', { type: 'error', sequence_number: seq, code: 'server_error', message: JSON.parse(midStreamError.slice(6)).error.message, param: null });
  await driveStream(ctx, d, { head, steps, tail, errorFrame, delayMs: ctx.opts.delayMs });
}
