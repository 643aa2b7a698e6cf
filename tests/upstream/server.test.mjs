// Tests for the upstream double itself: `node --test tests/upstream/`.
// If these drift from the real providers, every proxy test built on the
// double silently tests the wrong thing, so the wire details are asserted.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startUpstream } from './server.mjs';
import { embedVector } from './openai.mjs';

const OPENAI = { authorization: 'Bearer sk-upstream-test', 'content-type': 'application/json' };
const ANTHROPIC = { 'x-api-key': 'sk-ant-upstream-test', 'anthropic-version': '2023-06-01', 'content-type': 'application/json' };

let up;
before(async () => {
  up = await startUpstream({ port: 0, delayMs: 5, chunks: 4 });
});
after(() => up.close());

const post = (path, headers, body) => fetch(up.url + path, { method: 'POST', headers, body: JSON.stringify(body) });
const chat = (content, extra = {}) => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }], ...extra });
const claude = (content, extra = {}) => ({ model: 'claude-x', max_tokens: 100, messages: [{ role: 'user', content }], ...extra });

// Reads an SSE body to the end, timestamping each event as it arrives.
async function readSse(res) {
  const events = [];
  let buf = '';
  const decoder = new TextDecoder();
  for await (const chunk of res.body) {
    buf += decoder.decode(chunk, { stream: true });
    let at;
    while ((at = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, at);
      buf = buf.slice(at + 2);
      const ev = { t: performance.now(), event: null, data: null };
      for (const line of frame.split('\n')) {
        if (line.startsWith('event: ')) ev.event = line.slice(7);
        if (line.startsWith('data: ')) ev.data = line.slice(6);
      }
      events.push(ev);
    }
  }
  assert.equal(buf, '', 'stream ended mid-frame');
  return events;
}

describe('openai chat completions', () => {
  test('stream with include_usage follows the documented chunk sequence', async () => {
    const res = await post('/v1/chat/completions', OPENAI, chat('hello there world', { stream: true, stream_options: { include_usage: true } }));
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/event-stream/);
    assert.equal(res.headers.get('content-length'), null);
    const events = await readSse(res);
    assert.equal(events.at(-1).data, '[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data));
    assert.equal(chunks.length, 1 + 4 + 1 + 1);
    const id = chunks[0].id;
    for (const c of chunks) {
      assert.equal(c.object, 'chat.completion.chunk');
      assert.equal(c.id, id);
      assert.equal(c.model, 'gpt-4o-mini');
      assert.ok('usage' in c);
    }
    assert.match(id, /^chatcmpl-/);
    assert.deepEqual(chunks[0].choices[0].delta, { role: 'assistant', content: '', refusal: null });
    const content = chunks.slice(1, 5).map((c) => c.choices[0].delta.content).join('');
    assert.equal(content, 'tok0 tok1 tok2 tok3');
    for (const c of chunks.slice(0, 5)) assert.equal(c.choices[0].finish_reason, null);
    assert.deepEqual(chunks[5].choices[0].delta, {});
    assert.equal(chunks[5].choices[0].finish_reason, 'stop');
    for (const c of chunks.slice(0, 6)) assert.equal(c.usage, null);
    const last = chunks[6];
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage.prompt_tokens, 3);
    assert.equal(last.usage.completion_tokens, 4);
    assert.equal(last.usage.total_tokens, 7);
  });

  test('stream without include_usage has no usage key', async () => {
    const res = await post('/v1/chat/completions', OPENAI, chat('hi', { stream: true }));
    const chunks = (await readSse(res)).slice(0, -1).map((e) => JSON.parse(e.data));
    for (const c of chunks) assert.ok(!('usage' in c));
  });

  test('non-streaming object, n choices, max_tokens truncation', async () => {
    const res = await post('/v1/chat/completions', OPENAI, chat('a b', { n: 2, max_tokens: 2 }));
    const body = await res.json();
    assert.equal(body.object, 'chat.completion');
    assert.equal(body.choices.length, 2);
    for (const [i, c] of body.choices.entries()) {
      assert.equal(c.index, i);
      assert.deepEqual(c.message, { role: 'assistant', content: 'tok0 tok1', refusal: null, annotations: [] });
      assert.equal(c.finish_reason, 'length');
      assert.equal(c.logprobs, null);
    }
    assert.deepEqual(
      [body.usage.prompt_tokens, body.usage.completion_tokens, body.usage.total_tokens],
      [2, 4, 6],
    );
  });

  test('tool_call directive streams the arguments', async () => {
    const args = { city: 'Paris', unit: 'c' };
    const res = await post('/v1/chat/completions', OPENAI, chat(`weather? MOCK${JSON.stringify({ tool_call: { name: 'get_weather', arguments: args } })}`, { stream: true }));
    const chunks = (await readSse(res)).slice(0, -1).map((e) => JSON.parse(e.data));
    const first = chunks[0].choices[0].delta.tool_calls[0];
    assert.equal(first.function.name, 'get_weather');
    assert.match(first.id, /^call_/);
    const argText = chunks.slice(1, -1).map((c) => c.choices[0].delta.tool_calls[0].function.arguments).join('');
    assert.deepEqual(JSON.parse(argText), args);
    assert.equal(chunks.at(-1).choices[0].finish_reason, 'tool_calls');
  });

  test('validation and auth use the real error shapes', async () => {
    let res = await post('/v1/chat/completions', OPENAI, { model: 'm' });
    assert.equal(res.status, 400);
    assert.deepEqual((await res.json()).error, { message: "Missing required parameter: 'messages'.", type: 'invalid_request_error', param: 'messages', code: 'missing_required_parameter' });
    res = await post('/v1/chat/completions', { ...OPENAI, authorization: 'Bearer sk-wrong-key-123' }, chat('hi'));
    assert.equal(res.status, 401);
    const err = (await res.json()).error;
    assert.equal(err.code, 'invalid_api_key');
    assert.match(err.message, /^Incorrect API key provided/);
  });
});

describe('anthropic messages', () => {
  test('stream follows the documented event sequence', async () => {
    const res = await post('/v1/messages', ANTHROPIC, claude('hello there', { stream: true, system: 'be brief' }));
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/event-stream/);
    const events = await readSse(res);
    assert.deepEqual(events.map((e) => e.event), [
      'message_start', 'content_block_start', 'ping',
      'content_block_delta', 'content_block_delta', 'content_block_delta', 'content_block_delta',
      'content_block_stop', 'message_delta', 'message_stop',
    ]);
    const data = events.map((e) => JSON.parse(e.data));
    for (const [i, d] of data.entries()) assert.equal(d.type, events[i].event);
    const msg = data[0].message;
    assert.match(msg.id, /^msg_/);
    assert.deepEqual([msg.type, msg.role, msg.model, msg.content, msg.stop_reason], ['message', 'assistant', 'claude-x', [], null]);
    assert.equal(msg.usage.input_tokens, 4);
    assert.equal(msg.usage.output_tokens, 1);
    assert.deepEqual(data[1].content_block, { type: 'text', text: '' });
    assert.equal(data.slice(3, 7).map((d) => d.delta.text).join(''), 'tok0 tok1 tok2 tok3');
    for (const d of data.slice(3, 7)) assert.equal(d.delta.type, 'text_delta');
    assert.deepEqual(data[8].delta, { stop_reason: 'end_turn', stop_sequence: null });
    assert.deepEqual(data[8].usage, { output_tokens: 4 });
  });

  test('non-streaming tool_use and max_tokens', async () => {
    let res = await post('/v1/messages', { ...ANTHROPIC, 'x-mock': JSON.stringify({ tool_call: { name: 'f', arguments: { a: 1 } } }) }, claude('go'));
    let body = await res.json();
    assert.equal(body.stop_reason, 'tool_use');
    assert.equal(body.content[0].type, 'tool_use');
    assert.deepEqual(body.content[0].input, { a: 1 });
    res = await post('/v1/messages', ANTHROPIC, claude('go', { max_tokens: 3 }));
    body = await res.json();
    assert.deepEqual(body.content, [{ type: 'text', text: 'tok0 tok1 tok2' }]);
    assert.equal(body.stop_reason, 'max_tokens');
    assert.deepEqual([body.usage.input_tokens, body.usage.output_tokens], [1, 3]);
  });

  test('required headers and fields', async () => {
    const { 'anthropic-version': _, ...noVersion } = ANTHROPIC;
    let res = await post('/v1/messages', noVersion, claude('hi'));
    assert.equal(res.status, 400);
    assert.equal((await res.json()).error.type, 'invalid_request_error');
    res = await post('/v1/messages', ANTHROPIC, { model: 'c', messages: [] });
    assert.equal(res.status, 400);
    assert.equal((await res.json()).error.message, 'max_tokens: Field required');
    res = await post('/v1/messages', { ...ANTHROPIC, 'x-api-key': 'nope' }, claude('hi'));
    assert.equal(res.status, 401);
    assert.equal((await res.json()).error.type, 'authentication_error');
  });

  test('sse_error_after sends an error event and closes', async () => {
    const res = await post('/v1/messages', ANTHROPIC, claude('x MOCK{"sse_error_after":2}', { stream: true }));
    const events = await readSse(res);
    assert.equal(events.filter((e) => e.event === 'content_block_delta').length, 2);
    assert.equal(events.at(-1).event, 'error');
    assert.deepEqual(JSON.parse(events.at(-1).data), { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } });
  });
});

describe('faults', () => {
  test('429 carries retry-after and the provider error body', async () => {
    let res = await post('/v1/chat/completions', { ...OPENAI, 'x-mock': '{"status":429,"retry_after":7}' }, chat('hi', { stream: true }));
    assert.equal(res.status, 429);
    assert.equal(res.headers.get('retry-after'), '7');
    const err = (await res.json()).error;
    assert.deepEqual([err.type, err.code, err.param], ['requests', 'rate_limit_exceeded', null]);
    res = await post('/v1/messages', ANTHROPIC, claude('hi MOCK{"status":429}'));
    assert.equal(res.status, 429);
    assert.equal(res.headers.get('retry-after'), '1');
    const body = await res.json();
    assert.equal(body.type, 'error');
    assert.equal(body.error.type, 'rate_limit_error');
    res = await post('/v1/messages', ANTHROPIC, claude('hi MOCK{"status":529}'));
    assert.equal((await res.json()).error.type, 'overloaded_error');
  });

  test('reset_after aborts the stream: no finish chunk, no [DONE]', async () => {
    // Node reports a mid-body reset on the response and/or the request;
    // either way the data received so far is what matters.
    let data = '';
    const result = await new Promise((resolve) => {
      const req = http.request(`${up.url}/v1/chat/completions`, { method: 'POST', headers: OPENAI }, (res) => {
        res.on('data', (c) => (data += c));
        res.on('error', (error) => resolve({ error, complete: res.complete }));
        res.on('end', () => resolve({ error: null, complete: res.complete }));
      });
      req.on('error', (error) => resolve({ error, complete: false }));
      req.end(JSON.stringify(chat('go MOCK{"reset_after":2}', { stream: true })));
    });
    assert.ok(result.error, 'client saw an error');
    assert.equal(result.complete, false);
    assert.equal((data.match(/"content":"[^"]+"/g) ?? []).length, 2);
    assert.ok(!data.includes('[DONE]'));
    assert.ok(!data.includes('"finish_reason":"stop"'));
  });

  test('reset_after surfaces as a fetch error too', async () => {
    const res = await post('/v1/messages', ANTHROPIC, claude('go MOCK{"reset_after":1}', { stream: true }));
    await assert.rejects(readSse(res));
  });

  test('chunks are spread in time by delay_ms', async () => {
    const t0 = performance.now();
    const res = await post('/v1/chat/completions', OPENAI, chat('go MOCK{"chunks":5,"delay_ms":60}', { stream: true }));
    const events = await readSse(res);
    const content = events.filter((e) => e.data !== '[DONE]' && JSON.parse(e.data).choices[0]?.delta?.content);
    assert.equal(content.length, 5);
    // Lower bounds only: a loaded machine can only make gaps longer.
    for (let i = 1; i < content.length; i++) assert.ok(content[i].t - content[i - 1].t >= 45, `gap ${i}`);
    assert.ok(content.at(-1).t - t0 >= 4 * 60 - 10);
  });

  test('stall_ms delays headers; stall_after pauses mid-stream', async () => {
    let t0 = performance.now();
    const res = await post('/v1/chat/completions', { ...OPENAI, 'x-mock': '{"stall_ms":150}' }, chat('hi'));
    assert.equal(res.status, 200);
    assert.ok(performance.now() - t0 >= 140);
    await res.json();
    t0 = performance.now();
    const sres = await post('/v1/chat/completions', OPENAI, chat('hi MOCK{"stall_after":1,"stall_ms2":150,"delay_ms":0}', { stream: true }));
    const events = await readSse(sres);
    assert.equal(events.at(-1).data, '[DONE]');
    const contentTimes = events.filter((e) => /"content":"[^"]/.test(e.data)).map((e) => e.t);
    assert.ok(contentTimes[1] - contentTimes[0] >= 140);
  });
});

describe('other endpoints and control', () => {
  test('embeddings are deterministic; base64 matches float', async () => {
    const body = { model: 'text-embedding-3-small', input: ['alpha', 'beta gamma'], dimensions: 12 };
    const f = await (await post('/v1/embeddings', OPENAI, body)).json();
    const b = await (await post('/v1/embeddings', OPENAI, { ...body, encoding_format: 'base64' })).json();
    assert.equal(f.object, 'list');
    assert.deepEqual(f.usage, { prompt_tokens: 3, total_tokens: 3 });
    assert.equal(f.data[0].embedding.length, 12);
    assert.deepEqual(f.data[0].embedding, embedVector('alpha', 12));
    const buf = Buffer.from(b.data[1].embedding, 'base64');
    const decoded = Array.from({ length: 12 }, (_, i) => buf.readFloatLE(i * 4));
    assert.deepEqual(decoded, f.data[1].embedding);
  });

  test('legacy completions and models', async () => {
    const c = await (await post('/v1/completions', OPENAI, { model: 'gpt-3.5-turbo-instruct', prompt: 'say MOCK{"content":"hello world","chunks":2}' })).json();
    assert.equal(c.object, 'text_completion');
    assert.equal(c.choices[0].text, 'hello world');
    const m = await (await fetch(`${up.url}/v1/models`, { headers: OPENAI })).json();
    assert.equal(m.object, 'list');
    assert.ok(m.data.every((x) => x.object === 'model' && x.id && x.owned_by && Number.isInteger(x.created)));
  });

  test('requests are recorded and can be cleared', async () => {
    await fetch(`${up.url}/__requests`, { method: 'DELETE' });
    await post('/v1/chat/completions', { ...OPENAI, 'x-trace': 'abc' }, chat('record me'));
    const recorded = await (await fetch(`${up.url}/__requests`)).json();
    assert.equal(recorded.length, 1);
    assert.equal(recorded[0].path, '/v1/chat/completions');
    assert.equal(recorded[0].headers['x-trace'], 'abc');
    assert.equal(recorded[0].body.messages[0].content, 'record me');
    assert.equal(up.requests.length, 1);
    assert.equal((await (await fetch(`${up.url}/__health`)).json()).status, 'ok');
  });

  test('CLI prints the listening line and exits on SIGTERM', async () => {
    const script = fileURLToPath(new URL('./server.mjs', import.meta.url));
    const child = spawn(process.execPath, [script, '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const line = await new Promise((resolve) => child.stdout.once('data', (d) => resolve(String(d).trim())));
    assert.match(line, /^upstream listening on http:\/\/127\.0\.0\.1:\d+$/);
    const health = await fetch(`${line.split(' ').at(-1)}/__health`);
    assert.equal(health.status, 200);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  });
});
