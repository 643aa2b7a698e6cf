// The floor for any Worker that reads what it relays: the benchmark's
// second baseline beside the bare pass-through (bench/passthrough). It
// parses the request body and passes every response chunk through a
// TransformStream, doing nothing else with either: no validation, auth,
// limits, cache, SSE parsing or logging.
//
// A Worker that returns its upstream's response untouched lets workerd pump
// the body natively, without entering the isolate again; once the isolate
// touches the chunks (as infergate must, to translate, count and record
// them), each one costs a trip through it. This worker measures that trip
// alone, so the report can tell the runtime's share from infergate's.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const body = request.method === "GET" || request.method === "HEAD" ? undefined : JSON.stringify(await request.json());
    const upstream = await fetch(env.UPSTREAM_URL + url.pathname + url.search, {
      method: request.method,
      headers: { "content-type": "application/json", authorization: `Bearer ${env.UPSTREAM_KEY}` },
      body,
    });
    const relay = new TransformStream({
      transform(chunk, controller) {
        controller.enqueue(chunk);
      },
    });
    return new Response(upstream.body.pipeThrough(relay), upstream);
  },
};
