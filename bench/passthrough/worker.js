// A bare pass-through Worker: the baseline the edge benchmark compares
// infergate against. It forwards the request to UPSTREAM_URL with the
// upstream key and returns the upstream's response as is (bodies stream
// through untouched). No validation, auth, limits, cache or logging.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const headers = new Headers(request.headers);
    headers.delete("host");
    headers.set("authorization", `Bearer ${env.UPSTREAM_KEY}`);
    return fetch(env.UPSTREAM_URL + url.pathname + url.search, {
      method: request.method,
      headers,
      body: request.method === "GET" || request.method === "HEAD" ? undefined : request.body,
    });
  },
};
